//! Policies that use secrets: the Mesh resource (`meshes/<m>/mesh.toml`) and
//! `meshes/<m>/policies/*.toml` (ExternalService, MeshExternalService,
//! MeshGateway).
//!
//! Only the parts that touch secrets are modelled: the data sources (exactly
//! one of `secret`, `inline`, `inlineString`, `file`) and the mTLS backends.
//! Everything else in a policy is Kuma's business and passes through
//! unjudged, so real Kuma policies with selectors and rules still load.
//!
//! Kuma's scope rule: a `secret` reference resolves only to a Secret of the
//! policy's own mesh. Naming a global secret is an error; another mesh's
//! secret is simply not found.
//!
//! The schema (`parse`) knows nothing of files; `resolve` judges references
//! against the secrets present; `load` reads a mesh's policy files through
//! the store's one text reader.

use std::path::{Path, PathBuf};

mod error;
mod load;
mod parse;
mod resolve;

pub use error::{InUse, PolicyError, PolicyFileError, Reference};
pub use load::{ensure_unused, load_mesh, load_mesh_policies, references_to};
pub use parse::parse_source;

/// The rule for policy names, which are file names: the mesh name rule, so
/// that nothing path-like can be a name. The API refuses other names with it.
pub const NAME_RULE: &str = "invalid characters: a policy file name must consist of lower case alphanumeric characters, '-', '_' or '.', and must not start with '.'";

/// The policy types meshseal understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// `mesh.toml`.
    Mesh,
    /// Kuma's ExternalService.
    ExternalService,
    /// Kuma's MeshExternalService.
    MeshExternalService,
    /// Kuma's MeshGateway.
    MeshGateway,
}

impl PolicyKind {
    /// The Kuma type name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Mesh => "Mesh",
            PolicyKind::ExternalService => "ExternalService",
            PolicyKind::MeshExternalService => "MeshExternalService",
            PolicyKind::MeshGateway => "MeshGateway",
        }
    }
}

/// Where a data source's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A Secret of the policy's mesh.
    Secret(String),
    /// Base64 bytes in the policy (not secret: policies are plaintext).
    Inline(Vec<u8>),
    /// A string in the policy.
    InlineString(String),
    /// A file on the data plane's host.
    File(String),
}

/// One data source and where it sits in the policy (`mtls.backends[ca-1].conf.cert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// Dotted path of the field.
    pub field: String,
    /// The source.
    pub source: DataSource,
}

/// An mTLS backend of a Mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its name.
    pub name: String,
    /// `builtin` or `provided`.
    pub builtin: bool,
    /// For provided: the cert source.
    pub cert: Option<DataSource>,
    /// For provided: the key source.
    pub key: Option<DataSource>,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its type.
    pub kind: PolicyKind,
    /// Its mesh (from its path).
    pub mesh: String,
    /// Its name.
    pub name: String,
    /// Every data source, in document order.
    pub sources: Vec<SourceRef>,
    /// mTLS backends (Mesh only).
    pub backends: Vec<Backend>,
}

/// The secret names a builtin backend needs: `<mesh>.ca-builtin-cert-<backend>`
/// and `<mesh>.ca-builtin-key-<backend>`, as Kuma names them.
pub fn builtin_secret_names(mesh: &str, backend: &str) -> (String, String) {
    (
        format!("{mesh}.ca-builtin-cert-{backend}"),
        format!("{mesh}.ca-builtin-key-{backend}"),
    )
}

/// The CA secrets of one builtin backend: Kuma finds them by name, not by a
/// reference in the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinCa<'a> {
    /// The backend's name.
    pub backend: &'a str,
    /// `<mesh>.ca-builtin-cert-<backend>`.
    pub cert: String,
    /// `<mesh>.ca-builtin-key-<backend>`.
    pub key: String,
}

impl BuiltinCa<'_> {
    /// The backend's field, `mtls.backends[<backend>]`.
    pub fn field(&self) -> String {
        format!("mtls.backends[{}]", self.backend)
    }
}

impl Policy {
    /// The CA secrets of every builtin backend (Mesh only), in order.
    pub fn builtin_cas(&self) -> impl Iterator<Item = BuiltinCa<'_>> {
        self.backends.iter().filter(|b| b.builtin).map(|b| {
            let (cert, key) = builtin_secret_names(&self.mesh, &b.name);
            BuiltinCa {
                backend: &b.name,
                cert,
                key,
            }
        })
    }

    /// Where this policy lives, relative to the store root.
    pub fn path(&self) -> PathBuf {
        let dir = Path::new("meshes").join(&self.mesh);
        match self.kind {
            PolicyKind::Mesh => dir.join("mesh.toml"),
            _ => dir.join("policies").join(format!("{}.toml", self.name)),
        }
    }
}
