//! The plaintext inside a secret file: a Kuma-shaped TOML document.
//!
//! ```toml
//! type = "Secret"          # or "GlobalSecret"
//! mesh = "payments"        # required for Secret, forbidden for GlobalSecret
//! name = "db-password"
//! data = "c2VjcmV0"        # base64 of the raw bytes
//! [labels]                 # optional, string values
//! team = "core"
//! ```
//!
//! Parsing is done on an untyped TOML table, field by field, rather than with
//! serde's derive: serde's messages quote the offending *value*
//! (``invalid type: integer `1234` ``), and a value in this document may be the
//! secret itself. Every error here names a key and a line, never a value.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox};
use serde::Serialize;
use sha2::Digest as _;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::problem::{line_of, Diagnostic};
use crate::scope::{validate_mesh, validate_name, NameError, Scope, SecretId};

/// Default limit of decoded data bytes, as a Kubernetes Secret.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1024 * 1024;

/// A document never legitimately nests; this bounds the parser's recursion
/// on hostile input long before any stack is at risk.
const MAX_BRACKETS: usize = 64;

/// Secret bytes. Zeroed on drop; `Debug` shows only the length.
pub struct SecretData(SecretBox<[u8]>);

impl SecretData {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretData(SecretBox::new(bytes.into_boxed_slice()))
    }

    /// The bytes, for the few places that must see them (encrypt, serve).
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data in standard padded base64, zeroed on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.expose()))
    }
}

impl Clone for SecretData {
    fn clone(&self) -> Self {
        SecretData::new(self.expose().to_vec())
    }
}

impl PartialEq for SecretData {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretData([REDACTED {} bytes])", self.len())
    }
}

/// A decoded secret document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Scope and name, as the document states them.
    pub id: SecretId,
    /// The secret bytes.
    pub data: SecretData,
    /// Optional labels.
    pub labels: BTreeMap<String, String>,
}

/// Why a document is invalid. No variant carries secret bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DocumentError {
    /// The plaintext is not UTF-8 text.
    #[error("document is not UTF-8 text")]
    NotUtf8,
    /// Too many tables or arrays for a secret document.
    #[error("document is too deeply nested or complex to be a secret document")]
    TooComplex,
    /// TOML syntax error.
    #[error("invalid TOML: {message}")]
    Syntax {
        /// The parser's message (which does not quote values).
        message: String,
        /// Line of the error.
        line: Option<usize>,
    },
    /// A key that the schema does not know.
    #[error("unknown key \"{key}\"")]
    UnknownKey {
        /// The key.
        key: String,
        /// Its line.
        line: usize,
    },
    /// A required key is missing.
    #[error("{key}: cannot be empty")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A key of the wrong TOML type.
    #[error("{key}: must be {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What it must be.
        expected: &'static str,
        /// Its line.
        line: usize,
    },
    /// `type` is neither Secret nor GlobalSecret.
    #[error("type: must be \"Secret\" or \"GlobalSecret\", not \"{found}\"")]
    UnknownType {
        /// What was found (a resource type, not secret).
        found: String,
        /// Its line.
        line: usize,
    },
    /// A GlobalSecret with a mesh.
    #[error("mesh cannot be set on global secret")]
    MeshOnGlobal {
        /// Line of `mesh`.
        line: usize,
    },
    /// A Secret without a mesh.
    #[error("mesh: cannot be empty")]
    MissingMesh,
    /// Invalid name or mesh.
    #[error("{error}")]
    Name {
        /// Which rule.
        error: NameError,
        /// Its line.
        line: Option<usize>,
    },
    /// `data` is empty.
    #[error("data: cannot be empty")]
    EmptyData {
        /// Its line.
        line: Option<usize>,
    },
    /// `data` is not standard padded base64.
    #[error("data: must be valid base64 (standard alphabet, padded)")]
    InvalidBase64 {
        /// Its line.
        line: usize,
    },
    /// Decoded data larger than the store's limit.
    #[error("data: {size} bytes exceed the limit of {limit} bytes")]
    TooLarge {
        /// Decoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The document's identity differs from its path's.
    #[error("document is {found} but its path says {expected}")]
    Mismatch {
        /// What the document says.
        found: SecretId,
        /// What the path says.
        expected: SecretId,
    },
}

impl Diagnostic for DocumentError {
    fn code(&self) -> &'static str {
        match self {
            DocumentError::NotUtf8 | DocumentError::TooComplex | DocumentError::Syntax { .. } => {
                "invalid-document"
            }
            DocumentError::UnknownKey { .. } => "unknown-key",
            DocumentError::MissingKey { .. }
            | DocumentError::WrongType { .. }
            | DocumentError::UnknownType { .. }
            | DocumentError::MeshOnGlobal { .. }
            | DocumentError::MissingMesh => "invalid-document",
            DocumentError::Name { error, .. } => error.code(),
            DocumentError::EmptyData { .. } | DocumentError::InvalidBase64 { .. } => "invalid-data",
            DocumentError::TooLarge { .. } => "data-too-large",
            DocumentError::Mismatch { .. } => "scope-mismatch",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            DocumentError::Mismatch { expected, .. } => Some(format!(
                "a ciphertext is bound to its scope and name and cannot be moved or renamed; \
                 recreate it as {expected} (e.g. `meshseal apply`)"
            )),
            DocumentError::TooLarge { .. } => Some(
                "raise `max_data_bytes` under [limits] in meshseal.toml if this is intended"
                    .to_string(),
            ),
            DocumentError::UnknownKey { .. } => {
                Some("a secret document has only type, mesh, name, data and [labels]".to_string())
            }
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            DocumentError::Syntax { line, .. }
            | DocumentError::Name { line, .. }
            | DocumentError::EmptyData { line } => *line,
            DocumentError::UnknownKey { line, .. }
            | DocumentError::WrongType { line, .. }
            | DocumentError::UnknownType { line, .. }
            | DocumentError::MeshOnGlobal { line }
            | DocumentError::InvalidBase64 { line } => Some(*line),
            _ => None,
        }
    }
}

type SpannedTable = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;

/// A parsed document whose strings are wiped when it goes out of scope,
/// on every path out of [`Document::parse`]: its `data` string is the
/// secret in base64, and a plain `String` would be freed as it is.
struct Wiped(SpannedTable);

impl Drop for Wiped {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            wipe(value.get_mut());
        }
    }
}

/// Zeroes every string in a TOML value (and empties it).
fn wipe(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) => zeroize::Zeroize::zeroize(s),
        toml::Value::Array(items) => items.iter_mut().for_each(wipe),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| wipe(v)),
        _ => {}
    }
}

impl Document {
    /// A document from its parts.
    pub fn new(id: SecretId, data: SecretData) -> Self {
        Document {
            id,
            data,
            labels: BTreeMap::new(),
        }
    }

    /// Parses and validates a plaintext document. `max_data_bytes` bounds the
    /// decoded data.
    pub fn parse(plaintext: &[u8], max_data_bytes: usize) -> Result<Document, DocumentError> {
        let text = std::str::from_utf8(plaintext).map_err(|_| DocumentError::NotUtf8)?;
        let brackets = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
        if brackets > MAX_BRACKETS {
            return Err(DocumentError::TooComplex);
        }
        let table = Wiped(toml::from_str(text).map_err(|e| DocumentError::Syntax {
            message: e.message().trim_end().to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
        })?);

        let mut kind = None;
        let mut mesh = None;
        let mut name = None;
        let mut data = None;
        let mut labels = BTreeMap::new();
        for (key, value) in &table.0 {
            let line = line_of(text, value.span().start);
            let key_line = line_of(text, key.span().start);
            let as_str = |k: &str| match value.get_ref() {
                toml::Value::String(s) => Ok((s.as_str(), line)),
                _ => Err(DocumentError::WrongType {
                    key: k.to_string(),
                    expected: "a string",
                    line,
                }),
            };
            match key.get_ref().as_str() {
                "type" => kind = Some(as_str("type")?),
                "mesh" => mesh = Some(as_str("mesh")?),
                "name" => name = Some(as_str("name")?),
                "data" => data = Some(as_str("data")?),
                "labels" => labels = parse_labels(value.get_ref(), line)?,
                other => {
                    return Err(DocumentError::UnknownKey {
                        key: other.to_string(),
                        line: key_line,
                    })
                }
            }
        }

        let (kind, kind_line) = kind.ok_or(DocumentError::MissingKey { key: "type" })?;
        let scope = match kind {
            "GlobalSecret" => {
                if let Some((_, line)) = mesh {
                    return Err(DocumentError::MeshOnGlobal { line });
                }
                Scope::Global
            }
            "Secret" => {
                let (mesh, line) = mesh.ok_or(DocumentError::MissingMesh)?;
                validate_mesh(mesh).map_err(|error| DocumentError::Name {
                    error,
                    line: Some(line),
                })?;
                Scope::Mesh(mesh.to_string())
            }
            other => {
                return Err(DocumentError::UnknownType {
                    found: other.chars().take(64).collect(),
                    line: kind_line,
                })
            }
        };
        let (name, name_line) = name.ok_or(DocumentError::MissingKey { key: "name" })?;
        validate_name(name).map_err(|error| DocumentError::Name {
            error,
            line: Some(name_line),
        })?;
        let (encoded, data_line) = data.ok_or(DocumentError::EmptyData { line: None })?;
        let data = decode_data(encoded, max_data_bytes).map_err(|e| match e {
            DocumentError::EmptyData { .. } => DocumentError::EmptyData {
                line: Some(data_line),
            },
            DocumentError::InvalidBase64 { .. } => DocumentError::InvalidBase64 { line: data_line },
            other => other,
        })?;
        Ok(Document {
            id: SecretId {
                scope,
                name: name.to_string(),
            },
            data,
            labels,
        })
    }

    /// Checks that the document is the secret its path says it is.
    pub fn bind(&self, expected: &SecretId) -> Result<(), DocumentError> {
        if &self.id == expected {
            Ok(())
        } else {
            Err(DocumentError::Mismatch {
                found: self.id.clone(),
                expected: expected.clone(),
            })
        }
    }

    /// The TOML plaintext, zeroed on drop.
    pub fn to_toml(&self) -> Zeroizing<String> {
        self.render(&self.data.to_base64())
    }

    /// The document with `data` replaced by its length and a sha256 prefix,
    /// for diffs that must show *that* a secret changed, not its value.
    pub fn to_toml_redacted(&self) -> String {
        let digest = sha2::Sha256::digest(self.data.expose());
        let summary = format!(
            "<redacted: {} bytes, sha256:{}>",
            self.data.len(),
            crate::recipients::hex(&digest[..4])
        );
        self.render(&summary).to_string()
    }

    fn render(&self, data: &str) -> Zeroizing<String> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            mesh: Option<&'a str>,
            name: &'a str,
            data: &'a str,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            labels: &'a BTreeMap<String, String>,
        }
        let out = Out {
            kind: self.id.scope.resource_type(),
            mesh: self.id.scope.mesh_name(),
            name: &self.id.name,
            data,
            labels: &self.labels,
        };
        Zeroizing::new(toml::to_string(&out).expect("a document always serializes"))
    }
}

/// Decodes base64 `data` with the checks Kuma applies: non-empty, valid, bounded.
pub fn decode_data(encoded: &str, max_data_bytes: usize) -> Result<SecretData, DocumentError> {
    if encoded.is_empty() {
        return Err(DocumentError::EmptyData { line: None });
    }
    // base64 expands 3 bytes to 4: refuse oversized input before allocating,
    // reporting the decoded size (exact for well-formed padded input).
    let padding = encoded
        .bytes()
        .rev()
        .take_while(|&b| b == b'=')
        .count()
        .min(2);
    let decoded = (encoded.len() / 4 * 3).saturating_sub(padding);
    if decoded > max_data_bytes {
        return Err(DocumentError::TooLarge {
            size: decoded,
            limit: max_data_bytes,
        });
    }
    let bytes = Zeroizing::new(
        BASE64
            .decode(encoded.as_bytes())
            .map_err(|_| DocumentError::InvalidBase64 { line: 0 })?,
    );
    check_data(&bytes, max_data_bytes)?;
    Ok(SecretData::new(bytes.to_vec()))
}

/// Checks raw data bytes: non-empty and within the limit.
pub fn check_data(bytes: &[u8], max_data_bytes: usize) -> Result<(), DocumentError> {
    if bytes.is_empty() {
        return Err(DocumentError::EmptyData { line: None });
    }
    if bytes.len() > max_data_bytes {
        return Err(DocumentError::TooLarge {
            size: bytes.len(),
            limit: max_data_bytes,
        });
    }
    Ok(())
}

fn parse_labels(
    value: &toml::Value,
    line: usize,
) -> Result<BTreeMap<String, String>, DocumentError> {
    let toml::Value::Table(table) = value else {
        return Err(DocumentError::WrongType {
            key: "labels".to_string(),
            expected: "a table",
            line,
        });
    };
    table
        .iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(DocumentError::WrongType {
                key: format!("labels.{k}"),
                expected: "a string",
                line,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = DEFAULT_MAX_DATA_BYTES;

    fn mesh_id(m: &str, n: &str) -> SecretId {
        SecretId::new(Scope::Mesh(m.into()), n).unwrap()
    }

    #[test]
    fn wipe_reaches_every_string() {
        let mut v: toml::Value = toml::from_str::<toml::Table>(
            "data = \"c2VjcmV0\"\nlabels = { a = \"x\", deep = [\"y\", { z = \"w\" }] }\nn = 1\n",
        )
        .unwrap()
        .into();
        wipe(&mut v);
        let text = toml::to_string(&v).unwrap();
        for gone in ["c2VjcmV0", "\"x\"", "\"y\"", "\"w\""] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        assert!(text.contains("n = 1"), "{text}");
    }

    #[test]
    fn parses_a_mesh_secret() {
        let doc = Document::parse(
            b"type = \"Secret\"\nmesh = \"pay\"\nname = \"db\"\ndata = \"c2VjcmV0\"\n[labels]\nteam = \"core\"\n",
            LIMIT,
        )
        .unwrap();
        assert_eq!(doc.id, mesh_id("pay", "db"));
        assert_eq!(doc.data.expose(), b"secret");
        assert_eq!(doc.labels["team"], "core");
        assert_eq!(doc.bind(&mesh_id("pay", "db")), Ok(()));
        assert!(matches!(
            doc.bind(&mesh_id("other", "db")),
            Err(DocumentError::Mismatch { .. })
        ));
    }

    #[test]
    fn round_trips_through_toml() {
        let mut doc = Document::new(
            SecretId::new(Scope::Global, "ca").unwrap(),
            SecretData::new(vec![0, 1, 2, 255]),
        );
        doc.labels.insert("a".into(), "b".into());
        let text = doc.to_toml();
        assert!(!text.contains("mesh"));
        assert_eq!(Document::parse(text.as_bytes(), LIMIT).unwrap(), doc);
    }

    #[test]
    fn kuma_rules() {
        let parse = |s: &str| Document::parse(s.as_bytes(), LIMIT).unwrap_err();
        assert!(matches!(
            parse("type = \"GlobalSecret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"YQ==\""),
            DocumentError::MeshOnGlobal { line: 2 }
        ));
        assert_eq!(
            parse("type = \"GlobalSecret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"YQ==\"")
                .to_string(),
            "mesh cannot be set on global secret"
        );
        assert!(matches!(
            parse("type = \"Secret\"\nname = \"a\"\ndata = \"YQ==\""),
            DocumentError::MissingMesh
        ));
        assert!(matches!(
            parse("type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"\""),
            DocumentError::EmptyData { line: Some(4) }
        ));
        assert!(matches!(
            parse("type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"!!!\""),
            DocumentError::InvalidBase64 { line: 4 }
        ));
        assert!(matches!(
            parse("type = \"Secret\"\nmesh = \"m\"\nname = \"A\"\ndata = \"YQ==\""),
            DocumentError::Name {
                error: NameError::InvalidName,
                line: Some(3)
            }
        ));
        assert!(matches!(
            parse(
                "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"YQ==\"\npassword = \"x\""
            ),
            DocumentError::UnknownKey { line: 5, .. }
        ));
        assert!(matches!(
            parse("type = \"Secret\"\ntype = \"Secret\""),
            DocumentError::Syntax { .. }
        ));
        assert!(matches!(
            parse("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
            DocumentError::TooComplex
        ));
        assert!(matches!(
            Document::parse(b"\xff\xfe", LIMIT).unwrap_err(),
            DocumentError::NotUtf8
        ));
    }

    #[test]
    fn size_limit() {
        let data = BASE64.encode(vec![7u8; 11]);
        let text = format!("type = \"GlobalSecret\"\nname = \"a\"\ndata = \"{data}\"");
        assert!(Document::parse(text.as_bytes(), 11).is_ok());
        assert!(matches!(
            Document::parse(text.as_bytes(), 10).unwrap_err(),
            DocumentError::TooLarge {
                size: 11,
                limit: 10
            }
        ));
    }

    #[test]
    fn errors_never_quote_values() {
        for text in [
            "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = 8675309",
            "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = 8675309x",
            "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"8675309",
            "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = [\"8675309\"]",
        ] {
            let err = Document::parse(text.as_bytes(), LIMIT).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("8675309"), "{err:?}");
        }
    }

    #[test]
    fn debug_redacts() {
        let d = SecretData::new(b"hunter2".to_vec());
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}
