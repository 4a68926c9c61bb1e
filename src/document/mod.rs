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

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use sha2::Digest as _;
use toml::de::{DeTable, DeValue};
use zeroize::Zeroizing;

use crate::problem::line_of;
use crate::scope::{validate_mesh, validate_name, Scope, SecretId};

mod data;
mod error;
#[cfg(test)]
mod tests;

pub use data::{check_data, decode_data, SecretData};
pub use error::DocumentError;

/// Default limit of decoded data bytes, as a Kubernetes Secret.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1024 * 1024;

/// A document never legitimately nests; this bounds the parser's recursion
/// on hostile input long before any stack is at risk.
const MAX_BRACKETS: usize = 64;

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

/// A parsed document whose strings are wiped when it goes out of scope,
/// on every path out of [`Document::parse`]: its `data` string is the
/// secret in base64. toml's borrowing parse is used (no owned copy of the
/// table is made): a string without escapes is a slice of the plaintext,
/// which its owner wipes; a string the parser had to copy is owned here,
/// and wiped here.
struct Wiped<'i>(DeTable<'i>);

impl Drop for Wiped<'_> {
    fn drop(&mut self) {
        for (_, value) in self.0.iter_mut() {
            wipe(value.get_mut());
        }
    }
}

/// Zeroes every string a TOML value owns (and empties it).
fn wipe(value: &mut DeValue<'_>) {
    match value {
        DeValue::String(Cow::Owned(s)) => zeroize::Zeroize::zeroize(s),
        DeValue::Array(items) => items.iter_mut().for_each(|v| wipe(v.get_mut())),
        DeValue::Table(t) => t.iter_mut().for_each(|(_, v)| wipe(v.get_mut())),
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
        let table = Wiped(
            DeTable::parse(text)
                .map_err(|e| DocumentError::Syntax {
                    message: e.message().trim_end().to_string(),
                    line: e.span().map(|s| line_of(text, s.start)),
                })?
                .into_inner(),
        );

        let mut kind = None;
        let mut mesh = None;
        let mut name = None;
        let mut data = None;
        let mut labels = BTreeMap::new();
        // In key order, whatever the order in the file: of several problems,
        // the same one is told first.
        let mut entries: Vec<_> = table.0.iter().collect();
        entries.sort_by(|a, b| a.0.get_ref().cmp(b.0.get_ref()));
        for (key, value) in entries {
            let line = line_of(text, value.span().start);
            let key_line = line_of(text, key.span().start);
            let as_str = |k: &str| match value.get_ref() {
                DeValue::String(s) => Ok((s.as_ref(), line)),
                _ => Err(DocumentError::WrongType {
                    key: k.to_string(),
                    expected: "a string",
                    line,
                }),
            };
            match key.get_ref().as_ref() {
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

fn parse_labels(
    value: &DeValue<'_>,
    line: usize,
) -> Result<BTreeMap<String, String>, DocumentError> {
    let DeValue::Table(table) = value else {
        return Err(DocumentError::WrongType {
            key: "labels".to_string(),
            expected: "a table",
            line,
        });
    };
    table
        .iter()
        .map(|(k, v)| match v.get_ref() {
            DeValue::String(s) => Ok((k.get_ref().to_string(), s.to_string())),
            _ => Err(DocumentError::WrongType {
                key: format!("labels.{}", k.get_ref()),
                expected: "a string",
                line,
            }),
        })
        .collect()
}
