//! Kuma's own resources, in Kuma's own shapes: the Mesh resource
//! (`meshes/<m>/mesh.yaml` or `mesh.toml`) and `meshes/<m>/policies/*.yaml`,
//! `*.yml`, `*.toml` (any resources, several per file). YAML in both of
//! Kuma's forms, Universal and Kubernetes; TOML mirrors Universal YAML.
//!
//! Only the parts that touch secrets are modelled: the data sources (Kuma's
//! `secret` / `inline` / `inlineString` / `file`, or the newer `type` +
//! `secretRef` / `file` / `insecureInline` / `envVar`) and the mTLS backends
//! of Mesh (ExternalService, MeshExternalService, MeshGateway, MeshIdentity,
//! MeshTrust; Kong Mesh's CA backends, MeshOPA and identity extensions). Everything else in a resource is Kuma's business and passes
//! through unjudged; kinds meshseal does not know load and are listed.
//!
//! Kuma's scope rule: a `secret` reference resolves only to a Secret of the
//! policy's own mesh. Naming a global secret is an error; another mesh's
//! secret is simply not found.
//!
//! The schema (`parse`) knows nothing of files; `resolve` judges references
//! against the secrets present; `load` reads a mesh's policy files through
//! the store's one text reader. `forms` converts a resource between Kuma's
//! Universal and Kubernetes forms, `resource` keeps a resource's document
//! beside its parse (for `export`), `place` decides where `apply -f`
//! writes each one, and `unique` finds a resource defined in two files.

use std::path::PathBuf;

mod error;
mod forms;
mod kong;
mod load;
mod parse;
mod place;
mod resolve;
mod resource;
mod resources;
mod sources;
mod unique;

pub use error::{list_references, InUse, PolicyError, PolicyFileError, Reference};
pub use forms::{same_resource, to_kubernetes, to_universal, without_server_fields, Form};
pub use load::{
    ensure_unused, is_policy_file_name, load_mesh, load_mesh_policies, load_mesh_resource,
    load_mesh_resources, mesh_names, references_to,
};
pub use parse::{mesh_files, KUMA_API_VERSION, MAX_DOCUMENTS};
pub use place::{place, PlaceError, Placed, RESOURCE_FILE_MODE};
pub use resolve::Presence;
pub use resource::{describe, Resource};
pub use sources::parse_source;
pub use unique::{duplicates, Duplicate};

/// The rule for policy file names: the mesh name rule, so
/// that nothing path-like can be a name. The API refuses other names with it.
pub const NAME_RULE: &str = "invalid characters: a policy file name must consist of lower case alphanumeric characters, '-', '_' or '.', and must not start with '.'";

/// The kind of a resource: the ones whose secrets meshseal judges, and
/// any other (loaded and listed, not judged).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyKind {
    /// Kuma's Mesh (`mesh.yaml` / `mesh.toml`).
    Mesh,
    /// Kuma's ExternalService.
    ExternalService,
    /// Kuma's MeshExternalService.
    MeshExternalService,
    /// Kuma's MeshGateway.
    MeshGateway,
    /// Kuma's MeshIdentity (2.12+).
    MeshIdentity,
    /// Kuma's MeshTrust (2.12+).
    MeshTrust,
    /// Kong Mesh's MeshOPA.
    MeshOpa,
    /// Any other kind, by its Kuma type name.
    Other(String),
}

impl PolicyKind {
    /// The Kuma type name.
    pub fn as_str(&self) -> &str {
        match self {
            PolicyKind::Mesh => "Mesh",
            PolicyKind::ExternalService => "ExternalService",
            PolicyKind::MeshExternalService => "MeshExternalService",
            PolicyKind::MeshGateway => "MeshGateway",
            PolicyKind::MeshIdentity => "MeshIdentity",
            PolicyKind::MeshTrust => "MeshTrust",
            PolicyKind::MeshOpa => "MeshOPA",
            PolicyKind::Other(name) => name,
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

/// One data source and where it sits in the resource, by Kuma's field path
/// (`mtls.backends[0].conf.cert`, `spec.tls.verification.caCert`).
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
    /// Its field path (`mtls.backends[0]`, `spec.mtls.backends[0]`).
    pub field: String,
    /// `builtin` (else `provided`, or a Kong Mesh backend not judged).
    pub builtin: bool,
    /// For provided: the cert source.
    pub cert: Option<DataSource>,
    /// For provided: the key source.
    pub key: Option<DataSource>,
}

/// One parsed resource (a document of a policy file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its type.
    pub kind: PolicyKind,
    /// Its mesh (its folder's; the document must agree).
    pub mesh: String,
    /// Its name.
    pub name: String,
    /// Its file, relative to the store root.
    pub file: PathBuf,
    /// Its document's place in the file, from 1.
    pub document: usize,
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
    /// The backend's field path.
    pub field: &'a str,
    /// `<mesh>.ca-builtin-cert-<backend>`.
    pub cert: String,
    /// `<mesh>.ca-builtin-key-<backend>`.
    pub key: String,
}

impl BuiltinCa<'_> {
    /// The backend's field, `mtls.backends[<index>]`.
    pub fn field(&self) -> String {
        self.field.to_string()
    }
}

impl Policy {
    /// The CA secrets of every builtin backend (Mesh only), in order.
    pub fn builtin_cas(&self) -> impl Iterator<Item = BuiltinCa<'_>> {
        self.backends.iter().filter(|b| b.builtin).map(|b| {
            let (cert, key) = builtin_secret_names(&self.mesh, &b.name);
            BuiltinCa {
                backend: &b.name,
                field: &b.field,
                cert,
                key,
            }
        })
    }

    /// The file this resource is in, relative to the store root.
    pub fn path(&self) -> PathBuf {
        self.file.clone()
    }

    /// A key unique to this resource: its file, then its document's place
    /// (`meshes/m/policies/x.yaml/2`), so that the resources of one file
    /// sort together below it.
    pub fn key(&self) -> PathBuf {
        self.file.join(self.document.to_string())
    }
}
