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

use serde::Deserialize as _;
use serde_json::Value;

use super::{Policy, PolicyError, PolicyFileError, PolicyKind, SourceRef};
use crate::problem::line_of;
use crate::scope::{validate_name, StorePath};

use super::resources::{
    external_service, mesh_backends, mesh_external_service, mesh_gateway, mesh_identity, mesh_trust,
};
use super::sources::{classic_source, secure_source};
pub(super) use super::sources::{SourceShape, CLASSIC_VARIANTS, SECURE_TYPES};

/// The most documents one policy file may hold.
pub const MAX_DOCUMENTS: usize = 1000;

/// The most mTLS backends a Mesh may have (Kuma's `AllowedMTLSBackends`).
pub(super) const MAX_MTLS_BACKENDS: usize = 1;

/// The most certificates of a TERMINATE gateway listener (RSA and ECDSA).
pub(super) const MAX_GATEWAY_CERTIFICATES: usize = 2;

/// The API version of Kuma's Kubernetes resources.
pub const KUMA_API_VERSION: &str = "kuma.io/v1alpha1";

/// The label that names a Kubernetes resource's mesh.
pub(super) const MESH_LABEL: &str = "kuma.io/mesh";

/// The files that may hold a mesh's Mesh resource, in the order read.
pub fn mesh_files(mesh: &str) -> [std::path::PathBuf; 2] {
    let dir = Path::new("meshes").join(mesh);
    [dir.join("mesh.yaml"), dir.join("mesh.toml")]
}

pub(super) fn field(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: path.to_string(),
        message: message.into(),
    }
}

pub(super) fn at(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(super) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().and_then(|t| t.get(key))
}

pub(super) fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key).and_then(Value::as_str)
}

/// Collects a resource's sources and violations.
pub(super) struct Walk<'a> {
    pub(super) sources: &'a mut Vec<SourceRef>,
    pub(super) errors: &'a mut Vec<PolicyError>,
}

impl Walk<'_> {
    /// Reads the data source at `path`; `false` when it is invalid.
    pub(super) fn source(&mut self, path: &str, value: &Value, shape: SourceShape) -> bool {
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
    pub(super) fn array<'v>(&mut self, v: &'v Value, key: &str, path: &str) -> &'v [Value] {
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
pub(super) struct Header<'a> {
    pub(super) kind: &'a str,
    pub(super) name: &'a str,
    pub(super) name_field: &'static str,
    /// The mesh and the field that says it, `None` when absent.
    pub(super) mesh: Option<(&'a str, &'static str)>,
    pub(super) kubernetes: bool,
}

pub(super) fn header(doc: &Value) -> Result<Header<'_>, PolicyError> {
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
pub(super) fn label_problems(labels: &Value, path: &str) -> Vec<PolicyError> {
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

pub(super) fn kind_of(name: &str) -> PolicyKind {
    match name {
        "Mesh" => PolicyKind::Mesh,
        "ExternalService" => PolicyKind::ExternalService,
        "MeshExternalService" => PolicyKind::MeshExternalService,
        "MeshGateway" => PolicyKind::MeshGateway,
        "MeshIdentity" => PolicyKind::MeshIdentity,
        "MeshTrust" => PolicyKind::MeshTrust,
        "MeshOPA" => PolicyKind::MeshOpa,
        other => PolicyKind::Other(other.to_string()),
    }
}

/// Where a document sits: its folder's mesh, and whether it is the Mesh file.
#[derive(Clone, Copy)]
pub(super) struct Place<'a> {
    pub(super) mesh: &'a str,
    pub(super) mesh_file: bool,
    pub(super) toml: bool,
}

/// Parses one document into a resource, or every violation it has.
pub(super) fn parse_document(
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
        // A Mesh is in no mesh (Kuma's Mesh has no such field).
        if get(doc, "mesh").is_some() {
            errors.push(field("mesh", "cannot be set on a Mesh"));
        }
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
    if spec.is_some_and(|s| !s.is_object() && !s.is_null()) {
        errors.push(field("spec", "must be a mapping"));
    }
    // A newer kind keeps its fields under `spec`: a field beside it would
    // be read as the older shape in the Kubernetes form, and Kuma refuses it.
    if spec.is_some() && !h.kubernetes && !super::forms::LEGACY_KINDS.contains(&h.kind) {
        let known = |k: &str| {
            k == "spec"
                || super::forms::UNIVERSAL_META.contains(&k)
                || super::forms::UNIVERSAL_SERVER_FIELDS.contains(&k)
        };
        if let Some(extra) = doc
            .as_object()
            .and_then(|m| m.keys().find(|k| !known(k.as_str())))
        {
            errors.push(field(
                extra,
                format!("unknown field: a {} keeps its fields under spec", h.kind),
            ));
        }
    }
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
            PolicyKind::MeshOpa => super::kong::mesh_opa(&mut walk, body, prefix),
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

/// The documents of a file: YAML (one or several, `---`-separated) or TOML
/// (one). Empty YAML documents are skipped.
pub(super) fn documents(text: &str, toml: bool) -> Result<Vec<Value>, PolicyError> {
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
        Self::parse_with_documents(file, text, mesh, mesh_file)
            .map(|all| all.into_iter().map(|(p, _)| p).collect())
    }

    /// [`Policy::parse_text`], keeping each resource's document beside it
    /// (for `export`, and for `apply` to compare with what it would write).
    pub(super) fn parse_with_documents(
        file: &Path,
        text: &str,
        mesh: &str,
        mesh_file: bool,
    ) -> Result<Vec<(Policy, Value)>, Vec<PolicyError>> {
        let toml = file.extension().is_some_and(|x| x == "toml");
        let docs = documents(text, toml).map_err(|e| vec![e])?;
        let counted: Vec<(usize, Value)> = docs
            .into_iter()
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
        let mut policies: Vec<(Policy, Value)> = Vec::new();
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
            match parse_document(&doc, place, file, index) {
                Ok(p) => {
                    if let Some((first, _)) = policies
                        .iter()
                        .find(|(q, _)| q.kind == p.kind && q.name == p.name)
                    {
                        errors.push(wrap(
                            index,
                            PolicyError::Duplicate {
                                kind: p.kind.as_str().to_string(),
                                name: p.name.clone(),
                                mesh: p.mesh.clone(),
                                other: format!("document {}", first.document),
                            },
                        ));
                    } else {
                        policies.push((p, doc));
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
#[path = "parse_tests.rs"]
mod tests;
