//! Why a document is invalid: a key and a line, never a value.

use thiserror::Error;

use crate::problem::Diagnostic;
use crate::scope::{NameError, SecretId};

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
