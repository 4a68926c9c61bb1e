//! `meshseal.toml`: the store's format version and limits. Optional; every key
//! has a default.
//!
//! ```toml
//! version = 1
//! store_id = "5c1d0a3f9e27b846"   # made by `init`; binds signed files (SPEC 9)
//! signatures = "required"         # writing commands refuse without -S
//! [limits]
//! max_data_bytes = 1048576   # decoded bytes per secret, as a Kubernetes Secret
//! ```

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::document::DEFAULT_MAX_DATA_BYTES;
use crate::problem::{line_of, Diagnostic};

/// The store format this build reads and writes.
pub const STORE_VERSION: u32 = 1;
/// File name at the store root.
pub const CONFIG_FILE: &str = "meshseal.toml";

/// Store configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Store format version.
    #[serde(default = "default_version")]
    pub version: u32,
    /// This store's identity, named in every v2 header stanza and scope
    /// file header, so a signed file copied from another store does not
    /// verify here. Made by `init` (or the first admin command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    /// Whether writing commands refuse to write without a sign key.
    #[serde(default, skip_serializing_if = "Signatures::is_optional")]
    pub signatures: Signatures,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Size limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest decoded secret, in bytes.
    #[serde(default = "default_max_data")]
    pub max_data_bytes: usize,
}

/// `signatures = "optional" | "required"`: a guard for people, not the
/// boundary (that is the verifier's trust root, SPEC 9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signatures {
    /// Writing without a sign key writes unsigned files.
    #[default]
    Optional,
    /// Writing commands refuse without a sign key.
    Required,
}

impl Signatures {
    fn is_optional(&self) -> bool {
        *self == Signatures::Optional
    }
}

/// A new random store id: 16 lowercase hex digits.
pub fn new_store_id() -> String {
    let bytes: [u8; 8] = rand::random();
    crate::recipients::hex(&bytes)
}

/// Whether `id` can be a store id: 8 to 64 of `[0-9a-z-]`, so it is one
/// word in a header stanza and a scope file's first line.
pub fn is_valid_store_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

fn default_version() -> u32 {
    STORE_VERSION
}

fn default_max_data() -> usize {
    DEFAULT_MAX_DATA_BYTES
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: STORE_VERSION,
            store_id: None,
            signatures: Signatures::Optional,
            limits: Limits::default(),
        }
    }
}

/// Why `meshseal.toml` is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Not valid TOML or not the schema.
    #[error("invalid store config: {message}")]
    Invalid {
        /// The parser's message.
        message: String,
        /// Line.
        line: Option<usize>,
    },
    /// Written by a newer meshseal.
    #[error(
        "store format version {0} is not supported by this meshseal (supports {STORE_VERSION})"
    )]
    Version(u32),
}

impl Diagnostic for ConfigError {
    fn code(&self) -> &'static str {
        "invalid-config"
    }
    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Version(_) => Some("upgrade meshseal".to_string()),
            ConfigError::Invalid { .. } => {
                Some("meshseal.toml knows `version`, `store_id`, `signatures = \"optional\" | \"required\"` and `[limits] max_data_bytes`".to_string())
            }
        }
    }
    fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => *line,
            ConfigError::Version(_) => None,
        }
    }
}

impl Config {
    /// Parses `meshseal.toml`.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            message: e.message().trim_end().to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
        })?;
        if config.version != STORE_VERSION {
            return Err(ConfigError::Version(config.version));
        }
        if let Some(id) = &config.store_id {
            if !is_valid_store_id(id) {
                return Err(ConfigError::Invalid {
                    message: "store_id must be 8 to 64 of [0-9a-z-]".to_string(),
                    line: text
                        .lines()
                        .position(|l| l.trim_start().starts_with("store_id"))
                        .map(|i| i + 1),
                });
            }
        }
        if config.limits.max_data_bytes == 0 {
            return Err(ConfigError::Invalid {
                message: "limits.max_data_bytes must be positive".to_string(),
                line: None,
            });
        }
        Ok(config)
    }

    /// The largest ciphertext file worth reading: base64 and armor each grow
    /// the data by 4/3, plus headers and TOML keys.
    pub fn max_file_bytes(&self) -> usize {
        self.limits.max_data_bytes.saturating_mul(2) + 64 * 1024
    }

    /// The largest plaintext document worth decrypting.
    pub fn max_plaintext_bytes(&self) -> usize {
        self.limits.max_data_bytes.saturating_mul(4) / 3 + 64 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse("version = 1\n[limits]\nmax_data_bytes = 10\n").unwrap();
        assert_eq!(c.limits.max_data_bytes, 10);
        assert_eq!(Config::parse("version = 2"), Err(ConfigError::Version(2)));
        let e = Config::parse("version = 1\nbogus = 3\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
        let c =
            Config::parse("store_id = \"0123456789abcdef\"\nsignatures = \"required\"\n").unwrap();
        assert_eq!(c.store_id.as_deref(), Some("0123456789abcdef"));
        assert_eq!(c.signatures, Signatures::Required);
        let e = Config::parse("version = 1\nstore_id = \"a b\"\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(Config::parse("signatures = \"maybe\"").is_err());
        assert!(is_valid_store_id(&new_store_id()));
    }
}
