//! The schema: a policy file's text, one or several Kuma resources, parsed
//! field by field into the parts that touch secrets, with Kuma's field
//! paths and texts in every error and every violation of a document at once.
//!
//! YAML and TOML are both read into one JSON-shaped tree, so a single walker
//! judges Universal YAML, Kubernetes YAML and TOML alike. The rules follow
//! Kuma's validators (kumahq/kuma v2.14.3 and main):
//! `pkg/core/resources/apis/mesh/mesh_validator.go`,
//! `pkg/plugins/ca/provided/manager.go`, `pkg/core/datasource/validator.go`,
//! `pkg/core/resources/apis/mesh/gateway_validator.go`,
//! `pkg/core/resources/apis/meshexternalservice/api/v1alpha1/validator.go`,
//! `pkg/core/resources/apis/meshidentity/api/v1alpha1/validator.go`,
//! `pkg/core/resources/apis/meshtrust/api/v1alpha1/validator.go`,
//! `api/common/v1alpha1/datasource/datasource.go`.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::{Backend, DataSource, Policy, PolicyError, PolicyFileError, PolicyKind, SourceRef};
use crate::problem::line_of;
use crate::scope::{validate_name, StorePath};

/// The most documents one policy file may hold.
pub const MAX_DOCUMENTS: usize = 1000;

/// The most mTLS backends a Mesh may have (Kuma's `AllowedMTLSBackends`).
const MAX_MTLS_BACKENDS: usize = 1;

/// The most certificates of a TERMINATE gateway listener (RSA and ECDSA).
const MAX_GATEWAY_CERTIFICATES: usize = 2;

/// The API version of Kuma's Kubernetes resources.
const KUMA_API_VERSION: &str = "kuma.io/v1alpha1";

/// The label that names a Kubernetes resource's mesh.
const MESH_LABEL: &str = "kuma.io/mesh";

/// The files that may hold a mesh's Mesh resource, in the order read.
pub fn mesh_files(mesh: &str) -> [std::path::PathBuf; 2] {
    let dir = Path::new("meshes").join(mesh);
    [dir.join("mesh.yaml"), dir.join("mesh.toml")]
}

fn field(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: path.to_string(),
        message: message.into(),
    }
}

fn at(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().and_then(|t| t.get(key))
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key).and_then(Value::as_str)
}

/// The variants of Kuma's classic data source (`system.v1alpha1.DataSource`;
/// `common.v1alpha1.DataSource` has no `file`).
const CLASSIC_VARIANTS: &[&str] = &["secret", "inline", "inlineString", "file"];

/// Parses a classic data source (`{ secret = "name" }`...) at `path`,
/// allowing the variants in `allowed`.
fn classic_source(
    path: &str,
    value: &Value,
    allowed: &[&str],
) -> Result<DataSource, Vec<PolicyError>> {
    let Value::Object(t) = value else {
        return Err(vec![field(
            path,
            format!("must be a data source: one of {}", allowed.join(", ")),
        )]);
    };
    if let Some(k) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(vec![field(
            &at(path, k),
            format!(
                "unknown field: a data source is one of {}",
                allowed.join(", ")
            ),
        )]);
    }
    if t.is_empty() {
        // Kuma's text (pkg/core/datasource/validator.go).
        return Err(vec![field(
            path,
            "data source has to be chosen. Available sources: secret, file, inline",
        )]);
    }
    if t.len() > 1 {
        return Err(vec![field(
            path,
            format!("must have exactly one of {}", allowed.join(", ")),
        )]);
    }
    let (k, v) = t.iter().next().expect("one entry");
    let s = v
        .as_str()
        .ok_or_else(|| vec![field(&at(path, k), "must be a string")])?;
    if s.is_empty() {
        return Err(vec![field(&at(path, k), "cannot be empty")]);
    }
    match k.as_str() {
        "secret" => {
            validate_name(s).map_err(|e| vec![field(&at(path, "secret"), e.to_string())])?;
            Ok(DataSource::Secret(s.to_string()))
        }
        "inline" => BASE64
            .decode(s)
            .map(DataSource::Inline)
            .map_err(|_| vec![field(&at(path, "inline"), "must be valid base64")]),
        "inlineString" => Ok(DataSource::InlineString(s.to_string())),
        _ => Ok(DataSource::File(s.to_string())),
    }
}

/// The types of Kuma's SecureDataSource
/// (`api/common/v1alpha1/datasource/datasource.go`).
const SECURE_TYPES: &[&str] = &["EnvVar", "InsecureInline", "File", "Secret"];

/// Parses a SecureDataSource (`type` + `secretRef` / `file` /
/// `insecureInline` / `envVar`) at `path`, allowing the types in `allowed`.
/// `Ok(None)` for an environment variable (read by Kuma's control plane,
/// nothing meshseal can resolve).
fn secure_source(
    path: &str,
    value: &Value,
    allowed: &[&str],
) -> Result<Option<DataSource>, Vec<PolicyError>> {
    let Value::Object(t) = value else {
        return Err(vec![field(path, "must be a data source with a type")]);
    };
    let known = ["type", "secretRef", "file", "insecureInline", "envVar"];
    if let Some(k) = t.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(vec![field(&at(path, k), "unknown field")]);
    }
    let ty = get_str(value, "type").unwrap_or("");
    if !allowed.contains(&ty) {
        return Err(vec![field(
            &at(path, "type"),
            format!("{ty} must be one of: {}", allowed.join(", ")),
        )]);
    }
    let variant = match ty {
        "EnvVar" => "envVar",
        "InsecureInline" => "insecureInline",
        "File" => "file",
        _ => "secretRef",
    };
    // Exactly one variant: the one its type names.
    let mut errors: Vec<PolicyError> = t
        .keys()
        .filter(|k| *k != "type" && *k != variant)
        .map(|k| {
            field(
                &at(path, k),
                format!("must not be defined when type is {ty}"),
            )
        })
        .collect();
    let vpath = at(path, variant);
    let Some(inner) = t.get(variant) else {
        errors.push(field(&vpath, "must be defined"));
        return Err(errors);
    };
    let inner_str = |key: &str, errors: &mut Vec<PolicyError>| -> Option<String> {
        match get(inner, key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::String(_)) | None => {
                errors.push(field(&at(&vpath, key), "must be defined"));
                None
            }
            Some(_) => {
                errors.push(field(&at(&vpath, key), "must be a string"));
                None
            }
        }
    };
    let source = match ty {
        "Secret" => {
            match get_str(inner, "kind") {
                Some("Secret") => {}
                other => errors.push(field(
                    &at(&vpath, "kind"),
                    format!("{} must be one of: Secret", other.unwrap_or("")),
                )),
            }
            inner_str("name", &mut errors).and_then(|n| match validate_name(&n) {
                Ok(()) => Some(DataSource::Secret(n)),
                Err(e) => {
                    errors.push(field(&at(&vpath, "name"), e.to_string()));
                    None
                }
            })
        }
        "File" => inner_str("path", &mut errors).and_then(|p| {
            if p.contains("..") {
                errors.push(field(
                    &at(&vpath, "path"),
                    format!("file path contains directory traversal sequence: {p}"),
                ));
                None
            } else if !p.starts_with('/') {
                errors.push(field(
                    &at(&vpath, "path"),
                    format!("file path must be absolute: {p}"),
                ));
                None
            } else {
                Some(DataSource::File(p))
            }
        }),
        "InsecureInline" => inner_str("value", &mut errors).map(DataSource::InlineString),
        _ => {
            inner_str("name", &mut errors);
            None
        }
    };
    if errors.is_empty() {
        Ok(source)
    } else {
        Err(errors)
    }
}

/// Parses `{ secret = "name" }`, `{ inline = "<base64>" }`... at `path`: the
/// one reader of every data source field a resource may hold. Classic
/// sources only: kept for callers that parse one field.
pub fn parse_source(path: &str, value: &toml::Value) -> Result<DataSource, PolicyError> {
    let value = serde_json::to_value(value).map_err(|e| field(path, e.to_string()))?;
    classic_source(path, &value, CLASSIC_VARIANTS).map_err(|mut e| e.remove(0))
}

/// What a data source field may hold.
#[derive(Clone, Copy)]
enum SourceShape {
    /// Classic only, with these variants.
    Classic(&'static [&'static str]),
    /// Classic (Kuma 2.14) or SecureDataSource (Kuma main) with these types.
    Either(&'static [&'static str], &'static [&'static str]),
    /// SecureDataSource only.
    Secure(&'static [&'static str]),
}

/// Collects a resource's sources and violations.
struct Walk<'a> {
    sources: &'a mut Vec<SourceRef>,
    errors: &'a mut Vec<PolicyError>,
}

impl Walk<'_> {
    /// Reads the data source at `path`; `false` when it is invalid.
    fn source(&mut self, path: &str, value: &Value, shape: SourceShape) -> bool {
        let secure = get(value, "type").is_some();
        let parsed = match shape {
            SourceShape::Classic(variants) => classic_source(path, value, variants).map(Some),
            SourceShape::Either(variants, _) if !secure => {
                classic_source(path, value, variants).map(Some)
            }
            SourceShape::Either(_, types) | SourceShape::Secure(types) => {
                secure_source(path, value, types)
            }
        };
        match parsed {
            Ok(Some(source)) => {
                self.sources.push(SourceRef {
                    field: path.to_string(),
                    source,
                });
                true
            }
            Ok(None) => true,
            Err(e) => {
                self.errors.extend(e);
                false
            }
        }
    }

    /// The array at `key` of `v`, or an error when it is not one.
    fn array<'v>(&mut self, v: &'v Value, key: &str, path: &str) -> &'v [Value] {
        match get(v, key) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(_) => {
                self.errors.push(field(path, "must be an array"));
                &[]
            }
        }
    }
}

/// A document's header: its kind, name, mesh, and the body holding its
/// fields with that body's path prefix.
struct Header<'a> {
    kind: &'a str,
    name: &'a str,
    name_field: &'static str,
    /// The mesh and the field that says it, `None` when absent.
    mesh: Option<(&'a str, &'static str)>,
    kubernetes: bool,
}

fn header(doc: &Value) -> Result<Header<'_>, PolicyError> {
    if !doc.is_object() {
        return Err(field("(document)", "must be a mapping (a Kuma resource)"));
    }
    if let Some(api) = get(doc, "apiVersion") {
        if api.as_str() != Some(KUMA_API_VERSION) {
            return Err(field(
                "apiVersion",
                format!("must be {KUMA_API_VERSION} (a Kuma resource)"),
            ));
        }
        let kind = get_str(doc, "kind")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| field("kind", "cannot be empty"))?;
        let meta = get(doc, "metadata").ok_or_else(|| field("metadata", "cannot be empty"))?;
        let name = get_str(meta, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| field("metadata.name", "cannot be empty"))?;
        let label = get(meta, "labels").and_then(|l| get_str(l, MESH_LABEL));
        let mesh = match (get_str(doc, "mesh"), label) {
            (Some(m), Some(l)) if m != l => {
                return Err(PolicyError::Mismatch {
                    field: "metadata.labels[\"kuma.io/mesh\"]",
                    found: l.to_string(),
                    expected: m.to_string(),
                })
            }
            (Some(m), _) => Some((m, "mesh")),
            (None, Some(l)) => Some((l, "metadata.labels[\"kuma.io/mesh\"]")),
            (None, None) => None,
        };
        return Ok(Header {
            kind,
            name,
            name_field: "metadata.name",
            mesh,
            kubernetes: true,
        });
    }
    let kind = get_str(doc, "type")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| field("type", "cannot be empty"))?;
    let name = get_str(doc, "name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| field("name", "cannot be empty"))?;
    Ok(Header {
        kind,
        name,
        name_field: "name",
        mesh: get_str(doc, "mesh").map(|m| (m, "mesh")),
        kubernetes: false,
    })
}

/// Kubernetes' label rules as Kuma's API server applies them to every
/// resource's labels (pkg/api-server/resource_endpoints.go: apimachinery's
/// IsQualifiedName and IsValidLabelValue, with their texts).
fn label_problems(labels: &Value, path: &str) -> Vec<PolicyError> {
    const NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    const PREFIX_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let Some(map) = labels.as_object() else {
        return vec![field(path, "must be a mapping of strings")];
    };
    let name_ok = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    };
    let mut errors = Vec::new();
    for (k, v) in map {
        let at_key = format!("{path}[{k:?}]");
        let mut push = |m: String| errors.push(field(&at_key, m));
        let (prefix, name) = match k.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        if name.contains('/') {
            push(format!("a qualified name {NAME_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
        } else {
            if let Some(p) = prefix {
                if p.is_empty() {
                    push("prefix part must be non-empty".to_string());
                } else if p.len() > 253 {
                    push("prefix part must be no more than 253 characters".to_string());
                } else if validate_name(p).is_err() {
                    push(format!("prefix part {PREFIX_RULE}"));
                }
            }
            if name.is_empty() {
                push("name part must be non-empty".to_string());
            } else if name.len() > 63 {
                push("name part must be no more than 63 characters".to_string());
            } else if !name_ok(name) {
                push(format!("name part {NAME_RULE}"));
            }
        }
        match v.as_str() {
            None => push("must be a string".to_string()),
            Some(v) if v.len() > 63 => push("must be no more than 63 characters".to_string()),
            Some(v) if !v.is_empty() && !name_ok(v) => push(VALUE_RULE.to_string()),
            Some(_) => {}
        }
    }
    errors
}

fn kind_of(name: &str) -> PolicyKind {
    match name {
        "Mesh" => PolicyKind::Mesh,
        "ExternalService" => PolicyKind::ExternalService,
        "MeshExternalService" => PolicyKind::MeshExternalService,
        "MeshGateway" => PolicyKind::MeshGateway,
        "MeshIdentity" => PolicyKind::MeshIdentity,
        "MeshTrust" => PolicyKind::MeshTrust,
        other => PolicyKind::Other(other.to_string()),
    }
}

/// Where a document sits: its folder's mesh, and whether it is the Mesh file.
#[derive(Clone, Copy)]
struct Place<'a> {
    mesh: &'a str,
    mesh_file: bool,
    toml: bool,
}

/// Parses one document into a resource, or every violation it has.
fn parse_document(
    doc: &Value,
    place: Place<'_>,
    file: &Path,
    index: usize,
) -> Result<Policy, Vec<PolicyError>> {
    let h = header(doc).map_err(|e| vec![e])?;
    let kind = kind_of(h.kind);
    let mut errors = Vec::new();
    match (place.mesh_file, &kind) {
        (true, PolicyKind::Mesh) | (false, PolicyKind::Other(_)) => {}
        (true, _) => errors.push(field(
            if h.kubernetes { "kind" } else { "type" },
            format!(
                "{} must hold the Mesh resource, not a {}",
                file.display(),
                h.kind
            ),
        )),
        (false, PolicyKind::Mesh) => errors.push(field(
            if h.kubernetes { "kind" } else { "type" },
            format!(
                "a Mesh belongs in meshes/{}/mesh.yaml (or mesh.toml), not among its policies",
                place.mesh
            ),
        )),
        (false, _) => {}
    }
    if let Err(e) = validate_name(h.name) {
        errors.push(field(h.name_field, e.to_string()));
    }
    let (labels, labels_path) = if h.kubernetes {
        (
            get(doc, "metadata").and_then(|m| get(m, "labels")),
            "metadata.labels",
        )
    } else {
        (get(doc, "labels"), "labels")
    };
    if let Some(labels) = labels {
        errors.extend(label_problems(labels, labels_path));
        // Kuma's API server: a Universal resource's label and its mesh agree.
        if let (false, Some(l), Some((m, _))) = (h.kubernetes, get_str(labels, MESH_LABEL), h.mesh)
        {
            if l != m {
                errors.push(field(
                    &format!("labels[{MESH_LABEL:?}]"),
                    "kuma.io/mesh label must not differ from mesh set on resource",
                ));
            }
        }
    }
    if kind == PolicyKind::Mesh {
        // A Mesh is its own mesh: named after its folder.
        if h.name != place.mesh {
            errors.push(PolicyError::Mismatch {
                field: h.name_field,
                found: h.name.to_string(),
                expected: place.mesh.to_string(),
            });
        }
    } else {
        match h.mesh {
            Some((m, f)) if m != place.mesh => errors.push(PolicyError::Mismatch {
                field: f,
                found: m.to_string(),
                expected: place.mesh.to_string(),
            }),
            Some(_) => {}
            // Kuma on Kubernetes puts an unlabelled resource in "default".
            None if h.kubernetes && place.mesh != "default" => errors.push(PolicyError::Mismatch {
                field: "metadata.labels[\"kuma.io/mesh\"]",
                found: "default".to_string(),
                expected: place.mesh.to_string(),
            }),
            None if h.kubernetes => {}
            None => errors.push(field("mesh", "cannot be empty")),
        }
    }
    let mut policy = Policy {
        kind: kind.clone(),
        mesh: place.mesh.to_string(),
        name: h.name.to_string(),
        file: file.to_path_buf(),
        document: index,
        sources: Vec::new(),
        backends: Vec::new(),
    };
    // Mesh, ExternalService and MeshGateway keep their fields at the top in
    // Universal and under `spec` on Kubernetes; the newer resources always
    // under `spec`.
    let spec = get(doc, "spec");
    let (body, prefix) = match &kind {
        PolicyKind::Mesh | PolicyKind::ExternalService | PolicyKind::MeshGateway
            if !h.kubernetes =>
        {
            (Some(doc), "")
        }
        _ => (spec, "spec"),
    };
    let mut walk = Walk {
        sources: &mut policy.sources,
        errors: &mut errors,
    };
    if let Some(body) = body {
        match &kind {
            PolicyKind::Mesh => {
                policy.backends = mesh_backends(&mut walk, body, prefix);
            }
            PolicyKind::ExternalService => external_service(&mut walk, body, prefix),
            PolicyKind::MeshExternalService => {
                // meshseal's older TOML kept `tls` at the top.
                match (body, get(doc, "tls")) {
                    (b, _) if get(b, "tls").is_some() => {
                        mesh_external_service(&mut walk, b, prefix)
                    }
                    (_, Some(_)) if place.toml => mesh_external_service(&mut walk, doc, ""),
                    _ => {}
                }
            }
            PolicyKind::MeshGateway => mesh_gateway(&mut walk, body, prefix, place.toml),
            PolicyKind::MeshIdentity => mesh_identity(&mut walk, body, prefix),
            PolicyKind::MeshTrust => mesh_trust(&mut walk, body, prefix),
            PolicyKind::Other(_) => {}
        }
    } else if kind == PolicyKind::MeshExternalService && place.toml && get(doc, "tls").is_some() {
        mesh_external_service(&mut walk, doc, "");
    } else if kind == PolicyKind::MeshTrust {
        walk.errors
            .push(field("spec.caBundles", "must not be empty"));
    }
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

/// Mesh `mtls` (mesh_validator.go, provided/manager.go).
fn mesh_backends(walk: &mut Walk<'_>, body: &Value, prefix: &str) -> Vec<Backend> {
    let mut backends: Vec<Backend> = Vec::new();
    let Some(mtls) = get(body, "mtls") else {
        return backends;
    };
    let mtls_path = at(prefix, "mtls");
    let list_path = at(&mtls_path, "backends");
    let list = walk.array(mtls, "backends", &list_path);
    if list.len() > MAX_MTLS_BACKENDS {
        walk.errors.push(field(
            &list_path,
            format!("cannot have more than {MAX_MTLS_BACKENDS} backends"),
        ));
    }
    for (i, b) in list.iter().enumerate() {
        let path = format!("{list_path}[{i}]");
        let name = get_str(b, "name").unwrap_or("");
        if name.is_empty() {
            walk.errors
                .push(field(&at(&path, "name"), "cannot be empty"));
            continue;
        }
        if backends.iter().any(|x| x.name == name) {
            walk.errors.push(field(
                &at(&path, "name"),
                format!("{name:?} name is already used for another backend"),
            ));
            continue;
        }
        let ty = get_str(b, "type").unwrap_or("");
        let mut backend = Backend {
            name: name.to_string(),
            field: path.clone(),
            builtin: ty == "builtin",
            cert: None,
            key: None,
        };
        match ty {
            "builtin" => {
                // Its secrets are named after the mesh and the backend.
                if let Err(e) = validate_name(&format!("m.ca-builtin-cert-{name}")) {
                    walk.errors.push(field(&at(&path, "name"), e.to_string()));
                }
            }
            "provided" => {
                let conf_path = at(&path, "conf");
                let conf = get(b, "conf").cloned().unwrap_or(Value::Object(Map::new()));
                for (key, slot) in [("cert", &mut backend.cert), ("key", &mut backend.key)] {
                    let p = at(&conf_path, key);
                    match get(&conf, key) {
                        None => walk.errors.push(field(&p, "has to be defined")),
                        Some(v) => {
                            let before = walk.sources.len();
                            if walk.source(&p, v, SourceShape::Classic(CLASSIC_VARIANTS)) {
                                *slot = walk.sources.get(before).map(|s| s.source.clone());
                            }
                        }
                    }
                }
            }
            // Kong Mesh's CA backends: not judged.
            "vault" | "acmpca" | "certmanager" => {}
            other => walk.errors.push(field(
                &at(&path, "type"),
                format!("unsupported backend type {other:?} (builtin or provided)"),
            )),
        }
        backends.push(backend);
    }
    let enabled = get_str(mtls, "enabledBackend").or_else(|| get_str(mtls, "enabled_backend"));
    if let Some(enabled) = enabled {
        if !enabled.is_empty() && !backends.iter().any(|b| b.name == enabled) {
            walk.errors.push(field(
                &at(&mtls_path, "enabledBackend"),
                "has to be set to one of the backends in the mesh",
            ));
        }
    }
    backends
}

/// ExternalService `networking.tls` (external_service_validator.go).
fn external_service(walk: &mut Walk<'_>, body: &Value, prefix: &str) {
    let Some(tls) = get(body, "networking").and_then(|n| get(n, "tls")) else {
        return;
    };
    let path = at(prefix, "networking.tls");
    for k in ["caCert", "clientCert", "clientKey"] {
        if let Some(v) = get(tls, k) {
            walk.source(&at(&path, k), v, SourceShape::Classic(CLASSIC_VARIANTS));
        }
    }
}

/// MeshExternalService `spec.tls.verification` (its validator.go: a
/// classic source in 2.14, a SecureDataSource of type Secret or
/// InsecureInline on main).
fn mesh_external_service(walk: &mut Walk<'_>, body: &Value, prefix: &str) {
    let Some(v) = get(body, "tls").and_then(|t| get(t, "verification")) else {
        return;
    };
    let path = at(prefix, "tls.verification");
    let shape = SourceShape::Either(
        &["secret", "inline", "inlineString"],
        &["Secret", "InsecureInline"],
    );
    for k in ["caCert", "clientCert", "clientKey"] {
        if let Some(s) = get(v, k) {
            walk.source(&at(&path, k), s, shape);
        }
    }
    match (
        get(v, "clientCert").is_some(),
        get(v, "clientKey").is_some(),
    ) {
        (true, false) => walk.errors.push(field(
            &at(&path, "clientKey"),
            "must be defined when clientCert is defined",
        )),
        (false, true) => walk.errors.push(field(
            &at(&path, "clientCert"),
            "must be defined when clientKey is defined",
        )),
        _ => {}
    }
}

/// MeshGateway `conf.listeners[].tls` (gateway_validator.go). meshseal's
/// older TOML kept `listeners` at the top.
fn mesh_gateway(walk: &mut Walk<'_>, body: &Value, prefix: &str, toml: bool) {
    let (holder, list_prefix) = match get(body, "conf") {
        Some(conf) => (conf, at(prefix, "conf")),
        None if toml && get(body, "listeners").is_some() => (body, prefix.to_string()),
        None => return,
    };
    let list_path = at(&list_prefix, "listeners");
    let listeners = walk.array(holder, "listeners", &list_path);
    for (i, l) in listeners.iter().enumerate() {
        let Some(tls) = get(l, "tls") else {
            continue;
        };
        let tls_path = format!("{list_path}[{i}].tls");
        let certs_path = at(&tls_path, "certificates");
        let certs = walk.array(tls, "certificates", &certs_path);
        let cross_mesh = get(l, "crossMesh")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if get_str(tls, "mode") == Some("TERMINATE") && !cross_mesh {
            if certs.is_empty() {
                walk.errors.push(field(
                    &certs_path,
                    "cannot be empty in TLS termination mode",
                ));
            } else if certs.len() > MAX_GATEWAY_CERTIFICATES {
                walk.errors.push(field(
                    &certs_path,
                    format!("cannot have more than {MAX_GATEWAY_CERTIFICATES} certificates"),
                ));
            }
        }
        for (j, c) in certs.iter().enumerate() {
            walk.source(
                &format!("{certs_path}[{j}]"),
                c,
                SourceShape::Classic(CLASSIC_VARIANTS),
            );
        }
    }
}

/// MeshIdentity `spec.provider.bundled.ca` (meshidentity validator.go).
fn mesh_identity(walk: &mut Walk<'_>, spec: &Value, prefix: &str) {
    let Some(provider) = get(spec, "provider") else {
        return;
    };
    if get_str(provider, "type") != Some("Bundled") {
        return; // Spire and extensions hold no secret
    }
    let path = at(prefix, "provider.bundled");
    let Some(bundled) = get(provider, "bundled") else {
        walk.errors
            .push(field(&path, "configuration needs to be defined"));
        return;
    };
    let autogenerate = get(bundled, "autogenerate")
        .and_then(|a| get(a, "enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ca_path = at(&path, "ca");
    match (autogenerate, get(bundled, "ca")) {
        (true, Some(_)) => walk.errors.push(field(
            &ca_path,
            "shouldn't be defined once using autogenerated",
        )),
        (true, None) => {}
        (false, None) => walk.errors.push(field(&ca_path, "must be defined")),
        (false, Some(ca)) => {
            for k in ["certificate", "privateKey"] {
                let p = at(&ca_path, k);
                match get(ca, k) {
                    None => walk.errors.push(field(&p, "must be defined")),
                    Some(v) => {
                        walk.source(&p, v, SourceShape::Secure(SECURE_TYPES));
                    }
                }
            }
        }
    }
}

/// MeshTrust `spec.caBundles` (meshtrust validator.go): PEM bundles in the
/// resource itself, no secret.
fn mesh_trust(walk: &mut Walk<'_>, spec: &Value, prefix: &str) {
    let path = at(prefix, "caBundles");
    let bundles = walk.array(spec, "caBundles", &path);
    if bundles.is_empty() {
        walk.errors.push(field(&path, "must not be empty"));
    }
    for (i, b) in bundles.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match get_str(b, "type").unwrap_or("") {
            "Pem" => match get(b, "pem") {
                None => walk.errors.push(field(&at(&p, "pem"), "must be defined")),
                Some(pem) => {
                    let value = get_str(pem, "value").unwrap_or("");
                    let is_cert = pem_rfc7468::decode_vec(value.trim().as_bytes())
                        .is_ok_and(|(label, _)| label == "CERTIFICATE");
                    if !is_cert {
                        walk.errors.push(field(
                            &at(&p, "pem.value"),
                            "provided certificate has incorrect format",
                        ));
                    }
                }
            },
            other => walk.errors.push(field(
                &at(&p, "type"),
                format!("{other} must be one of: Pem"),
            )),
        }
    }
}

/// The documents of a file: YAML (one or several, `---`-separated) or TOML
/// (one). Empty YAML documents are skipped.
fn documents(text: &str, toml: bool) -> Result<Vec<Value>, PolicyError> {
    if toml {
        if text.bytes().filter(|b| matches!(b, b'[' | b'{')).count() > 4096 {
            return Err(field("(document)", "too deeply nested or complex"));
        }
        let doc: toml::Table = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            format: "TOML",
            message: e.message().trim_end().to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
        })?;
        let value = serde_json::to_value(doc).map_err(|e| field("(document)", e.to_string()))?;
        return Ok(vec![value]);
    }
    let mut docs = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        if docs.len() >= MAX_DOCUMENTS {
            return Err(field(
                "(document)",
                format!("a policy file holds at most {MAX_DOCUMENTS} documents"),
            ));
        }
        let value = Value::deserialize(de).map_err(|e| PolicyError::Syntax {
            format: "YAML",
            message: e.to_string(),
            line: e.location().map(|l| l.line()),
        })?;
        docs.push(value);
    }
    Ok(docs)
}

impl Policy {
    /// Parses a policy file's text: every resource it holds, or every
    /// violation of every document (prefixed `document N:` when the file
    /// holds several). `mesh_file` is true for `mesh.yaml` / `mesh.toml`.
    pub fn parse_text(
        file: &Path,
        text: &str,
        mesh: &str,
        mesh_file: bool,
    ) -> Result<Vec<Policy>, Vec<PolicyError>> {
        let toml = file.extension().is_some_and(|x| x == "toml");
        let docs = documents(text, toml).map_err(|e| vec![e])?;
        let counted: Vec<(usize, &Value)> = docs
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.is_null())
            .map(|(i, d)| (i + 1, d))
            .collect();
        let several = counted.len() > 1;
        let place = Place {
            mesh,
            mesh_file,
            toml,
        };
        let mut policies: Vec<Policy> = Vec::new();
        let mut errors = Vec::new();
        let wrap = |index: usize, e: PolicyError| {
            if several {
                PolicyError::InDocument {
                    index,
                    source: Box::new(e),
                }
            } else {
                e
            }
        };
        if mesh_file && counted.len() != 1 {
            errors.push(field(
                "(document)",
                format!(
                    "{} must hold exactly one Mesh resource (it holds {})",
                    file.display(),
                    counted.len()
                ),
            ));
        }
        for (index, doc) in counted {
            match parse_document(doc, place, file, index) {
                Ok(p) => {
                    if let Some(first) = policies
                        .iter()
                        .find(|q| q.kind == p.kind && q.name == p.name)
                    {
                        errors.push(wrap(
                            index,
                            PolicyError::Duplicate {
                                what: format!("{} {:?}", p.kind.as_str(), p.name),
                                mesh: p.mesh.clone(),
                                other: format!("document {}", first.document),
                            },
                        ));
                    } else {
                        policies.push(p);
                    }
                }
                Err(e) => errors.extend(e.into_iter().map(|e| wrap(index, e))),
            }
        }
        if errors.is_empty() {
            Ok(policies)
        } else {
            Err(errors)
        }
    }

    /// Parses the policy file at `rel` (relative to the store root): its
    /// path says its mesh and whether it is the Mesh file. The one way every
    /// reader (the work tree, the git index, the watcher) turns a policy
    /// file's text into resources; `None` when `rel` is not a policy file's
    /// path.
    pub fn parse_file(rel: &Path, text: &str) -> Option<Result<Vec<Policy>, Vec<PolicyFileError>>> {
        let parsed = match StorePath::classify(rel) {
            StorePath::Mesh(mesh) => Policy::parse_text(rel, text, &mesh, true),
            StorePath::Policy { mesh, .. } => Policy::parse_text(rel, text, &mesh, false),
            _ => return None,
        };
        Some(parsed.map_err(|errors| {
            errors
                .into_iter()
                .map(|source| PolicyFileError::Invalid {
                    file: rel.to_path_buf(),
                    source,
                })
                .collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rel: &str, text: &str) -> Result<Vec<Policy>, Vec<String>> {
        Policy::parse_file(Path::new(rel), text)
            .expect("a policy path")
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn policy_types() {
        let es = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking]\naddress = \"httpbin.org:443\"\n[networking.tls]\ncaCert = { secret = \"ca\" }\nclientCert = { inline = \"YQ==\" }\n";
        let p = parse("meshes/pay/policies/bin.toml", es).unwrap();
        assert_eq!(p[0].sources.len(), 2);
        let mes = "type = \"MeshExternalService\"\nmesh = \"pay\"\nname = \"x\"\n[spec.tls.verification]\nclientCert = { secret = \"c\" }\n";
        assert_eq!(
            parse("meshes/pay/policies/x.toml", mes).unwrap_err(),
            vec!["spec.tls.verification.clientKey: must be defined when clientCert is defined"]
        );
        let gw = "type = \"MeshGateway\"\nmesh = \"pay\"\nname = \"gw\"\n[[conf.listeners]]\nport = 443\n[conf.listeners.tls]\ncertificates = [{ secret = \"a\" }, { file = \"/x\" }]\n";
        let p = parse("meshes/pay/policies/gw.toml", gw).unwrap();
        assert_eq!(
            p[0].secret_refs().next(),
            Some(("conf.listeners[0].tls.certificates[0]", "a"))
        );
        assert_eq!(
            parse("meshes/other/policies/bin.toml", es).unwrap_err(),
            vec!["mesh: \"pay\" does not match its path (\"other\")"]
        );
        let two = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking.tls]\ncaCert = { secret = \"ca\", file = \"/x\" }\n";
        assert!(
            parse("meshes/pay/policies/bin.toml", two).unwrap_err()[0].contains("exactly one of")
        );
    }

    #[test]
    fn older_flattened_toml_still_reads() {
        let gw = "type = \"MeshGateway\"\nmesh = \"pay\"\nname = \"gw\"\n[[listeners]]\nport = 443\n[listeners.tls]\ncertificates = [{ secret = \"a\" }]\n";
        let p = parse("meshes/pay/policies/gw.toml", gw).unwrap();
        assert_eq!(
            p[0].secret_refs().next(),
            Some(("listeners[0].tls.certificates[0]", "a"))
        );
        let mes = "type = \"MeshExternalService\"\nmesh = \"pay\"\nname = \"x\"\n[tls.verification]\ncaCert = { secret = \"c\" }\n";
        let p = parse("meshes/pay/policies/x.toml", mes).unwrap();
        assert_eq!(
            p[0].secret_refs().next(),
            Some(("tls.verification.caCert", "c"))
        );
    }

    #[test]
    fn a_file_is_parsed_by_what_its_path_says() {
        let es = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n";
        let p = parse("meshes/pay/policies/anything.toml", es).unwrap();
        assert_eq!((p[0].mesh.as_str(), p[0].name.as_str()), ("pay", "bin"));
        let e = Policy::parse_file(Path::new("meshes/web/policies/bin.toml"), es)
            .expect("a policy path")
            .unwrap_err();
        assert!(matches!(
            &e[0],
            PolicyFileError::Invalid {
                source: PolicyError::Mismatch { field: "mesh", .. },
                ..
            }
        ));
        assert_eq!(
            crate::problem::Diagnostic::file(&e[0]),
            Some(Path::new("meshes/web/policies/bin.toml"))
        );
        assert!(Policy::parse_file(Path::new("meshes/pay/recipients.txt"), es).is_none());
    }

    #[test]
    fn malformed_yaml_names_its_line() {
        let e = Policy::parse_file(Path::new("meshes/pay/policies/x.yaml"), "a: [\n")
            .unwrap()
            .unwrap_err();
        assert!(e[0].to_string().starts_with("invalid YAML"), "{}", e[0]);
        assert!(crate::problem::Diagnostic::line(&e[0]).is_some());
    }
}
