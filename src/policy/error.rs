//! Why a policy is invalid ([`PolicyError`], about its text), why a policy
//! file could not be used ([`PolicyFileError`], which names the file), and
//! why a secret cannot be deleted ([`InUse`]).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::kuma::describe;
use crate::problem::Diagnostic;
use crate::scope::SecretId;
use crate::store::StoreError;

/// Why a policy is invalid, or a reference does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// Not valid TOML or YAML.
    #[error("invalid {format}: {message}")]
    Syntax {
        /// `TOML` or `YAML`.
        format: &'static str,
        /// The parser's message.
        message: String,
        /// Line.
        line: Option<usize>,
    },
    /// A field has the wrong shape.
    #[error("{field}: {message}")]
    Field {
        /// Dotted path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// One document of a file of several is invalid.
    #[error("document {index}: {source}")]
    InDocument {
        /// Its place in the file, from 1.
        index: usize,
        /// What is wrong.
        source: Box<PolicyError>,
    },
    /// A mesh folder holds both `mesh.yaml` and `mesh.toml`.
    #[error("both mesh.yaml and mesh.toml define the Mesh {mesh:?}")]
    TwoMeshFiles {
        /// The mesh.
        mesh: String,
    },
    /// Two resources of one kind and mesh share a name: Kuma's store
    /// refuses the second (its resource manager's text).
    #[error("resource already exists: type={kind:?} name={name:?} mesh={mesh:?} (also defined in {other})")]
    Duplicate {
        /// The Kuma type name.
        kind: String,
        /// The name.
        name: String,
        /// The mesh.
        mesh: String,
        /// The other definition (`document 2`, or its file, and document
        /// when several).
        other: String,
    },
    /// The document's mesh or name disagrees with its path.
    #[error("{field}: {found:?} does not match its path ({expected:?})")]
    Mismatch {
        /// `mesh`, `name`, `metadata.labels["kuma.io/mesh"]`...
        field: &'static str,
        /// What the document says.
        found: String,
        /// What the path says.
        expected: String,
    },
    /// Kuma's text for a missing secret.
    #[error("{field}: could not load data: resource not found: type=\"Secret\" name=\"{name}\" mesh=\"{mesh}\"")]
    NotFound {
        /// Dotted path.
        field: String,
        /// The secret.
        name: String,
        /// The mesh.
        mesh: String,
    },
    /// A referenced secret's file is there but does not open with the key
    /// given (not missing: `mtls init` or `create` would be wrong advice).
    #[error("{field}: cannot decrypt secret(s) {names} of mesh {mesh:?} with the given identities: the file exists")]
    CannotDecrypt {
        /// Dotted path.
        field: String,
        /// The secret names.
        names: String,
        /// The mesh.
        mesh: String,
    },
    /// Kuma's text for a global secret used by a mesh policy.
    #[error("{field}: global-scoped secret \"{name}\" cannot be used in mesh policies")]
    GlobalSecret {
        /// Dotted path.
        field: String,
        /// The secret.
        name: String,
    },
    /// A builtin backend's CA secrets are missing.
    #[error("{field}: builtin CA secrets are missing ({missing})")]
    BuiltinMissing {
        /// The backend's field path.
        field: String,
        /// The missing secret names.
        missing: String,
        /// The mesh.
        mesh: String,
    },
}

impl Diagnostic for PolicyError {
    fn code(&self) -> &'static str {
        match self {
            PolicyError::Syntax { .. } | PolicyError::Field { .. } => "invalid-policy",
            PolicyError::InDocument { source, .. } => source.code(),
            PolicyError::TwoMeshFiles { .. } | PolicyError::Duplicate { .. } => "duplicate-policy",
            PolicyError::Mismatch { .. } => "scope-mismatch",
            PolicyError::NotFound { .. } => "missing-secret",
            PolicyError::GlobalSecret { .. } => "global-secret-in-policy",
            PolicyError::BuiltinMissing { .. } => "builtin-ca-missing",
            PolicyError::CannotDecrypt { .. } => "cannot-decrypt",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            PolicyError::InDocument { source, .. } => source.hint(),
            PolicyError::TwoMeshFiles { .. } => {
                Some("keep one of the two files".to_string())
            }
            PolicyError::Duplicate { .. } => Some(
                "a name is unique per kind and mesh: remove one definition, or rename it"
                    .to_string(),
            ),
            PolicyError::NotFound { name, mesh, .. } => Some(format!(
                "create it with `meshseal create secret {name} -m {mesh} --from-file FILE`; a policy can only use secrets of its own mesh"
            )),
            PolicyError::GlobalSecret { name, .. } => Some(format!(
                "global secrets are internal; create a mesh-scoped copy: `meshseal create secret {name} -m MESH --from-file FILE`"
            )),
            PolicyError::CannotDecrypt { mesh, .. } => Some(format!(
                "use an identity among meshes/{mesh}/recipients.txt (-i FILE or MESHSEAL_IDENTITY)"
            )),
            PolicyError::BuiltinMissing { mesh, .. } => {
                Some(format!("run `meshseal mtls init -m {mesh}`"))
            }
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Syntax { line, .. } => *line,
            PolicyError::InDocument { source, .. } => source.line(),
            _ => None,
        }
    }
}

/// A policy file could not be read, or is not a valid policy.
#[derive(Debug, Error)]
pub enum PolicyFileError {
    /// The file could not be read (a link, too large, not UTF-8...).
    #[error("{source}")]
    Read {
        /// The policy file, relative to the store root.
        file: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The file's text is not a valid policy.
    #[error("{source}")]
    Invalid {
        /// The policy file, relative to the store root.
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: PolicyError,
    },
}

impl PolicyFileError {
    fn source_diagnostic(&self) -> &dyn Diagnostic {
        match self {
            PolicyFileError::Read { source, .. } => source,
            PolicyFileError::Invalid { source, .. } => source,
        }
    }
}

impl Diagnostic for PolicyFileError {
    fn code(&self) -> &'static str {
        self.source_diagnostic().code()
    }

    fn hint(&self) -> Option<String> {
        self.source_diagnostic().hint()
    }

    fn line(&self) -> Option<usize> {
        self.source_diagnostic().line()
    }

    fn file(&self) -> Option<&Path> {
        match self {
            PolicyFileError::Read { file, .. } | PolicyFileError::Invalid { file, .. } => {
                Some(file)
            }
        }
    }
}

/// Where a resource uses a secret: its file and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The policy file, relative to the store root.
    pub file: PathBuf,
    /// The field (`networking.tls.caCert`, `mtls.backends[0]`).
    pub field: String,
}

/// A secret cannot be deleted: policies still use it.
#[derive(Debug, Error)]
#[error("{} is in use by {}", describe(.id), list_references(.users))]
pub struct InUse {
    /// The secret.
    pub id: SecretId,
    /// Its file, relative to the store root.
    pub file: PathBuf,
    /// Every use.
    pub users: Vec<Reference>,
}

/// The uses of a secret as errors name them: `FILE (FIELD), …`.
pub fn list_references(users: &[Reference]) -> String {
    users
        .iter()
        .map(|r| format!("{} ({})", r.file.display(), r.field))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Diagnostic for InUse {
    fn code(&self) -> &'static str {
        "in-use"
    }

    fn hint(&self) -> Option<String> {
        Some("change those policies first, or delete anyway with --force".to_string())
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.file)
    }
}
