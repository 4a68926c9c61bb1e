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

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use thiserror::Error;
use toml::Value;

use crate::problem::{line_of, Diagnostic, Problem};
use crate::scope::{validate_mesh, validate_name, Scope, SecretId};
use crate::store::{Store, StoreError};

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

/// Why a policy is invalid, or a reference does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// Not valid TOML.
    #[error("invalid TOML: {message}")]
    Syntax {
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
    /// The policy's type is not one meshseal handles.
    #[error("type: unsupported policy type {0:?} (meshseal handles ExternalService, MeshExternalService and MeshGateway)")]
    UnsupportedType(String),
    /// The document's mesh or name disagrees with its path.
    #[error("{field}: {found:?} does not match its path ({expected:?})")]
    Mismatch {
        /// `mesh` or `name`.
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
    /// Kuma's text for a global secret used by a mesh policy.
    #[error("{field}: global-scoped secret \"{name}\" cannot be used in mesh policies")]
    GlobalSecret {
        /// Dotted path.
        field: String,
        /// The secret.
        name: String,
    },
    /// A builtin backend's CA secrets are missing.
    #[error("mtls.backends[{backend}]: builtin CA secrets are missing ({missing})")]
    BuiltinMissing {
        /// The backend.
        backend: String,
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
            PolicyError::UnsupportedType(_) => "unsupported-policy",
            PolicyError::Mismatch { .. } => "scope-mismatch",
            PolicyError::NotFound { .. } => "missing-secret",
            PolicyError::GlobalSecret { .. } => "global-secret-in-policy",
            PolicyError::BuiltinMissing { .. } => "builtin-ca-missing",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            PolicyError::NotFound { name, mesh, .. } => Some(format!(
                "create it with `meshseal create secret {name} -m {mesh} --from-file FILE`; a policy can only use secrets of its own mesh"
            )),
            PolicyError::GlobalSecret { name, .. } => Some(format!(
                "global secrets are internal; create a mesh-scoped copy: `meshseal create secret {name} -m MESH --from-file FILE`"
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
            _ => None,
        }
    }
}

/// The secret names a builtin backend needs: `<mesh>.ca-builtin-cert-<backend>`
/// and `<mesh>.ca-builtin-key-<backend>`, as Kuma names them.
pub fn builtin_secret_names(mesh: &str, backend: &str) -> (String, String) {
    (
        format!("{mesh}.ca-builtin-cert-{backend}"),
        format!("{mesh}.ca-builtin-key-{backend}"),
    )
}

fn field(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: path.to_string(),
        message: message.into(),
    }
}

/// Parses a data source table at `path`.
pub fn parse_source(path: &str, value: &Value) -> Result<DataSource, PolicyError> {
    let Value::Table(t) = value else {
        return Err(field(path, "must be a data source table ({ secret = \"name\" }, { inline = \"<base64>\" }, { inlineString = \"…\" } or { file = \"/path\" })"));
    };
    if t.len() != 1 {
        return Err(field(
            path,
            "must have exactly one of secret, inline, inlineString, file",
        ));
    }
    let (k, v) = t.iter().next().expect("one entry");
    let s = v
        .as_str()
        .ok_or_else(|| field(&format!("{path}.{k}"), "must be a string"))?;
    match k.as_str() {
        "secret" => {
            validate_name(s).map_err(|e| field(&format!("{path}.secret"), e.to_string()))?;
            Ok(DataSource::Secret(s.to_string()))
        }
        "inline" => BASE64
            .decode(s)
            .map(DataSource::Inline)
            .map_err(|_| field(&format!("{path}.inline"), "must be valid base64")),
        "inlineString" => Ok(DataSource::InlineString(s.to_string())),
        "file" => {
            if s.is_empty() {
                Err(field(&format!("{path}.file"), "cannot be empty"))
            } else {
                Ok(DataSource::File(s.to_string()))
            }
        }
        other => Err(field(
            path,
            format!("unknown data source {other:?}: use secret, inline, inlineString or file"),
        )),
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_table().and_then(|t| t.get(key))
}

fn opt_source(
    v: &Value,
    key: &str,
    path: &str,
    out: &mut Vec<SourceRef>,
) -> Result<Option<DataSource>, PolicyError> {
    match get(v, key) {
        None => Ok(None),
        Some(s) => {
            let field = format!("{path}.{key}");
            let source = parse_source(&field, s)?;
            out.push(SourceRef {
                field,
                source: source.clone(),
            });
            Ok(Some(source))
        }
    }
}

impl Policy {
    /// Parses `meshes/<mesh>/mesh.toml` (`name` None) or
    /// `meshes/<mesh>/policies/<name>.toml`.
    pub fn parse(text: &str, mesh: &str, name: Option<&str>) -> Result<Policy, PolicyError> {
        if text.bytes().filter(|b| matches!(b, b'[' | b'{')).count() > 4096 {
            return Err(field("(document)", "too deeply nested or complex"));
        }
        let doc: toml::Table = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            message: e.message().trim_end().to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
        })?;
        let doc = Value::Table(doc);
        let ty = get(&doc, "type")
            .and_then(Value::as_str)
            .ok_or_else(|| field("type", "cannot be empty"))?;
        let kind = match (ty, name) {
            ("Mesh", None) => PolicyKind::Mesh,
            ("ExternalService", Some(_)) => PolicyKind::ExternalService,
            ("MeshExternalService", Some(_)) => PolicyKind::MeshExternalService,
            ("MeshGateway", Some(_)) => PolicyKind::MeshGateway,
            (_, None) => return Err(field("type", "mesh.toml must hold type = \"Mesh\"")),
            (other, Some(_)) => return Err(PolicyError::UnsupportedType(other.to_string())),
        };
        let doc_name = get(&doc, "name")
            .and_then(Value::as_str)
            .ok_or_else(|| field("name", "cannot be empty"))?;
        // A Mesh is named after its folder; a policy after its file.
        let (expected, mesh_field) = match name {
            None => (mesh, None),
            Some(n) => (n, get(&doc, "mesh").and_then(Value::as_str)),
        };
        if name.is_some() && validate_mesh(expected).is_err() {
            // The API serves policies by name with the same rule, so a file
            // named otherwise could never be read: say so here, in check.
            return Err(field("name", NAME_RULE));
        }
        if doc_name != expected {
            return Err(PolicyError::Mismatch {
                field: "name",
                found: doc_name.to_string(),
                expected: expected.to_string(),
            });
        }
        if name.is_some() {
            let m = mesh_field.ok_or_else(|| field("mesh", "cannot be empty"))?;
            if m != mesh {
                return Err(PolicyError::Mismatch {
                    field: "mesh",
                    found: m.to_string(),
                    expected: mesh.to_string(),
                });
            }
        }
        let mut policy = Policy {
            kind,
            mesh: mesh.to_string(),
            name: doc_name.to_string(),
            sources: Vec::new(),
            backends: Vec::new(),
        };
        match kind {
            PolicyKind::Mesh => policy.parse_mesh(&doc)?,
            PolicyKind::ExternalService => {
                if let Some(tls) = get(&doc, "networking").and_then(|n| get(n, "tls")) {
                    for k in ["caCert", "clientCert", "clientKey"] {
                        opt_source(tls, k, "networking.tls", &mut policy.sources)?;
                    }
                }
            }
            PolicyKind::MeshExternalService => {
                if let Some(v) = get(&doc, "tls").and_then(|t| get(t, "verification")) {
                    let path = "tls.verification";
                    opt_source(v, "caCert", path, &mut policy.sources)?;
                    let cert = opt_source(v, "clientCert", path, &mut policy.sources)?;
                    let key = opt_source(v, "clientKey", path, &mut policy.sources)?;
                    if cert.is_some() != key.is_some() {
                        return Err(field(path, "clientCert and clientKey must be set together"));
                    }
                }
            }
            PolicyKind::MeshGateway => {
                if let Some(listeners) = get(&doc, "listeners") {
                    let listeners = listeners
                        .as_array()
                        .ok_or_else(|| field("listeners", "must be an array"))?;
                    for (i, l) in listeners.iter().enumerate() {
                        let Some(certs) = get(l, "tls").and_then(|t| get(t, "certificates")) else {
                            continue;
                        };
                        let path = format!("listeners[{i}].tls.certificates");
                        let certs = certs
                            .as_array()
                            .ok_or_else(|| field(&path, "must be an array"))?;
                        for (j, c) in certs.iter().enumerate() {
                            let f = format!("{path}[{j}]");
                            let source = parse_source(&f, c)?;
                            policy.sources.push(SourceRef { field: f, source });
                        }
                    }
                }
            }
        }
        Ok(policy)
    }

    fn parse_mesh(&mut self, doc: &Value) -> Result<(), PolicyError> {
        let Some(mtls) = get(doc, "mtls") else {
            return Ok(());
        };
        let backends = match get(mtls, "backends") {
            None => &Vec::new(),
            Some(b) => b
                .as_array()
                .ok_or_else(|| field("mtls.backends", "must be an array"))?,
        };
        for (i, b) in backends.iter().enumerate() {
            let name = get(b, "name")
                .and_then(Value::as_str)
                .ok_or_else(|| field(&format!("mtls.backends[{i}].name"), "cannot be empty"))?;
            let path = format!("mtls.backends[{name}]");
            let ty = get(b, "type").and_then(Value::as_str).unwrap_or("");
            let backend = match ty {
                "builtin" => Backend {
                    name: name.to_string(),
                    builtin: true,
                    cert: None,
                    key: None,
                },
                "provided" => {
                    let conf = get(b, "conf")
                        .ok_or_else(|| field(&format!("{path}.conf"), "cannot be empty"))?;
                    let conf_path = format!("{path}.conf");
                    let cert = opt_source(conf, "cert", &conf_path, &mut self.sources)?
                        .ok_or_else(|| field(&format!("{conf_path}.cert"), "cannot be empty"))?;
                    let key = opt_source(conf, "key", &conf_path, &mut self.sources)?
                        .ok_or_else(|| field(&format!("{conf_path}.key"), "cannot be empty"))?;
                    Backend {
                        name: name.to_string(),
                        builtin: false,
                        cert: Some(cert),
                        key: Some(key),
                    }
                }
                other => {
                    return Err(field(
                        &format!("{path}.type"),
                        format!("unsupported backend type {other:?} (builtin or provided)"),
                    ))
                }
            };
            if self.backends.iter().any(|x| x.name == backend.name) {
                return Err(field(&path, "duplicate backend name"));
            }
            self.backends.push(backend);
        }
        if let Some(enabled) = get(mtls, "enabled_backend").and_then(Value::as_str) {
            if !enabled.is_empty() && !self.backends.iter().any(|b| b.name == enabled) {
                return Err(field(
                    "mtls.enabled_backend",
                    format!(
                        "has to be set to one of the backends in the mesh (no backend {enabled:?})"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The secret names this policy references, with their fields.
    pub fn secret_refs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sources.iter().filter_map(|s| match &s.source {
            DataSource::Secret(name) => Some((s.field.as_str(), name.as_str())),
            _ => None,
        })
    }

    /// Checks every reference with Kuma's scope rule. `exists` tells whether a
    /// secret file is present. Every problem is returned.
    pub fn resolve(&self, exists: &dyn Fn(&SecretId) -> bool) -> Vec<PolicyError> {
        let mut problems = Vec::new();
        for (field, name) in self.secret_refs() {
            let mesh_id = SecretId {
                scope: Scope::Mesh(self.mesh.clone()),
                name: name.to_string(),
            };
            if exists(&mesh_id) {
                continue;
            }
            let global_id = SecretId {
                scope: Scope::Global,
                name: name.to_string(),
            };
            problems.push(if exists(&global_id) {
                PolicyError::GlobalSecret {
                    field: field.to_string(),
                    name: name.to_string(),
                }
            } else {
                PolicyError::NotFound {
                    field: field.to_string(),
                    name: name.to_string(),
                    mesh: self.mesh.clone(),
                }
            });
        }
        for b in self.backends.iter().filter(|b| b.builtin) {
            let (cert, key) = builtin_secret_names(&self.mesh, &b.name);
            let missing: Vec<String> = [cert, key]
                .into_iter()
                .filter(|n| {
                    !exists(&SecretId {
                        scope: Scope::Mesh(self.mesh.clone()),
                        name: n.clone(),
                    })
                })
                .collect();
            if !missing.is_empty() {
                problems.push(PolicyError::BuiltinMissing {
                    backend: b.name.clone(),
                    missing: missing.join(", "),
                    mesh: self.mesh.clone(),
                });
            }
        }
        problems
    }

    /// Where this policy lives, relative to the store root.
    pub fn path(&self) -> std::path::PathBuf {
        let dir = Path::new("meshes").join(&self.mesh);
        match self.kind {
            PolicyKind::Mesh => dir.join("mesh.toml"),
            _ => dir.join("policies").join(format!("{}.toml", self.name)),
        }
    }
}

/// Every policy of a mesh in the work tree (mesh.toml first), each parsed or
/// its problem.
pub fn load_mesh_policies(store: &Store, mesh: &str) -> Vec<Result<Policy, Problem>> {
    let dir = Path::new("meshes").join(mesh);
    let mut files: Vec<(std::path::PathBuf, Option<String>)> = vec![(dir.join("mesh.toml"), None)];
    if let Ok(rd) = std::fs::read_dir(store.root().join(dir.join("policies"))) {
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".toml")
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        files.extend(
            names
                .into_iter()
                .map(|n| (dir.join("policies").join(format!("{n}.toml")), Some(n))),
        );
    }
    let mut out = Vec::new();
    for (rel, name) in files {
        let bytes = match store.read_file(&rel, 1024 * 1024) {
            Ok(b) => b,
            Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.push(Err(Problem::at(&rel, &e)));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        out.push(Policy::parse(&text, mesh, name.as_deref()).map_err(|e| Problem::at(&rel, &e)));
    }
    out
}

/// The policies (path and field) that reference a secret.
pub fn references_to(store: &Store, id: &SecretId) -> Vec<(std::path::PathBuf, String)> {
    let Scope::Mesh(mesh) = &id.scope else {
        return Vec::new(); // mesh policies can never use global secrets
    };
    let mut refs = Vec::new();
    for policy in load_mesh_policies(store, mesh).into_iter().flatten() {
        for (field, name) in policy.secret_refs() {
            if name == id.name {
                refs.push((policy.path(), field.to_string()));
            }
        }
        for b in policy.backends.iter().filter(|b| b.builtin) {
            let (cert, key) = builtin_secret_names(mesh, &b.name);
            if id.name == cert || id.name == key {
                refs.push((policy.path(), format!("mtls.backends[{}]", b.name)));
            }
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str = r#"
type = "Mesh"
name = "pay"
[mtls]
enabled_backend = "ca-1"
[[mtls.backends]]
name = "ca-1"
type = "provided"
[mtls.backends.conf]
cert = { secret = "ca-cert" }
key = { secret = "ca-key" }
[[mtls.backends]]
name = "ca-2"
type = "builtin"
"#;

    fn exists_in(ids: &[SecretId]) -> impl Fn(&SecretId) -> bool + '_ {
        move |id| ids.contains(id)
    }

    fn mid(m: &str, n: &str) -> SecretId {
        SecretId::new(Scope::Mesh(m.into()), n).unwrap()
    }

    #[test]
    fn policy_file_names_follow_the_api_rule() {
        let text =
            |n: &str| format!("type = \"ExternalService\"\nmesh = \"pay\"\nname = \"{n}\"\n");
        assert!(Policy::parse(&text("web_1.v2"), "pay", Some("web_1.v2")).is_ok());
        for bad in ["Web", ".hidden", "a b", "x%2f"] {
            let e = Policy::parse(&text(bad), "pay", Some(bad)).unwrap_err();
            assert!(e.to_string().contains("policy file name"), "{bad}: {e}");
        }
    }

    #[test]
    fn mesh_backends_and_references() {
        let p = Policy::parse(MESH, "pay", None).unwrap();
        assert_eq!(p.backends.len(), 2);
        let refs: Vec<_> = p.secret_refs().collect();
        assert_eq!(
            refs,
            vec![
                ("mtls.backends[ca-1].conf.cert", "ca-cert"),
                ("mtls.backends[ca-1].conf.key", "ca-key")
            ]
        );
        let all = [
            mid("pay", "ca-cert"),
            mid("pay", "ca-key"),
            mid("pay", "pay.ca-builtin-cert-ca-2"),
            mid("pay", "pay.ca-builtin-key-ca-2"),
        ];
        assert!(p.resolve(&exists_in(&all)).is_empty());
        let problems = p.resolve(&exists_in(&all[..2]));
        assert!(matches!(problems[0], PolicyError::BuiltinMissing { .. }));
    }

    #[test]
    fn kuma_scope_rule_texts() {
        let p = Policy::parse(MESH, "pay", None).unwrap();
        let ids = [
            SecretId::new(Scope::Global, "ca-cert").unwrap(),
            mid("other", "ca-key"),
        ];
        let problems = p.resolve(&exists_in(&ids));
        assert_eq!(
            problems[0].to_string(),
            "mtls.backends[ca-1].conf.cert: global-scoped secret \"ca-cert\" cannot be used in mesh policies"
        );
        assert_eq!(
            problems[1].to_string(),
            "mtls.backends[ca-1].conf.key: could not load data: resource not found: type=\"Secret\" name=\"ca-key\" mesh=\"pay\""
        );
    }

    #[test]
    fn policy_types() {
        let es = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking]\naddress = \"httpbin.org:443\"\n[networking.tls]\ncaCert = { secret = \"ca\" }\nclientCert = { inline = \"YQ==\" }\n";
        let p = Policy::parse(es, "pay", Some("bin")).unwrap();
        assert_eq!(p.sources.len(), 2);
        let mes = "type = \"MeshExternalService\"\nmesh = \"pay\"\nname = \"x\"\n[tls.verification]\nclientCert = { secret = \"c\" }\n";
        assert!(Policy::parse(mes, "pay", Some("x"))
            .unwrap_err()
            .to_string()
            .contains("clientCert and clientKey must be set together"));
        let gw = "type = \"MeshGateway\"\nmesh = \"pay\"\nname = \"gw\"\n[[listeners]]\nport = 443\n[listeners.tls]\ncertificates = [{ secret = \"a\" }, { file = \"/x\" }]\n";
        let p = Policy::parse(gw, "pay", Some("gw")).unwrap();
        assert_eq!(
            p.secret_refs().next(),
            Some(("listeners[0].tls.certificates[0]", "a"))
        );
        assert!(matches!(
            Policy::parse(es, "other", Some("bin")),
            Err(PolicyError::Mismatch { field: "mesh", .. })
        ));
        let two = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking.tls]\ncaCert = { secret = \"ca\", file = \"/x\" }\n";
        assert!(Policy::parse(two, "pay", Some("bin"))
            .unwrap_err()
            .to_string()
            .contains("exactly one of"));
    }
}
