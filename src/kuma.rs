//! Kuma's resource shapes: the Universal YAML that `kumactl apply` reads and
//! `kumactl get -o yaml` prints, and Kubernetes Secrets of Kuma's types; an
//! apply's input (`input`: secrets, and Kuma's other resources handed to the
//! policy schema) and an export's output (`export`: secrets beside the
//! meshes' resources, in either form).
//!
//! ```yaml
//! type: Secret            # Universal
//! mesh: default
//! name: db-password
//! data: c2VjcmV0
//! ---
//! apiVersion: v1          # Kubernetes
//! kind: Secret
//! metadata:
//!   name: db-password
//!   namespace: kuma-system
//!   labels: { kuma.io/mesh: default }
//! data: { value: c2VjcmV0 }
//! type: system.kuma.io/secret
//! ```
//!
//! As with TOML documents, YAML is parsed to an untyped tree and checked field
//! by field, so that no error message quotes a value.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use serde_yaml_ng::Value;
use thiserror::Error;
use zeroize::Zeroizing;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::document::{decode_data, Document, DocumentError};
use crate::policy::PolicyError;
use crate::problem::Diagnostic;
use crate::scope::{validate_mesh, Scope, SecretId};

/// Kubernetes Secret type of mesh-scoped secrets.
pub const K8S_SECRET_TYPE: &str = "system.kuma.io/secret";
/// Kubernetes Secret type of global secrets.
pub const K8S_GLOBAL_SECRET_TYPE: &str = "system.kuma.io/global-secret";
/// Label naming a secret's mesh on Kubernetes.
pub const K8S_MESH_LABEL: &str = "kuma.io/mesh";
/// Kuma's control-plane namespace.
pub const DEFAULT_NAMESPACE: &str = "kuma-system";

/// `Secret <mesh>/<name>` or `GlobalSecret <name>`: how meshseal names a
/// resource in what it prints (`Secret default/db created`).
pub fn describe(id: &SecretId) -> String {
    match &id.scope {
        Scope::Global => format!("GlobalSecret {}", id.name),
        Scope::Mesh(m) => format!("Secret {m}/{}", id.name),
    }
}

/// Where a resource is in an apply's input: its document (from 1) and,
/// in a list (`kumactl get -o yaml`, `kubectl get -o yaml`), its item (from
/// 0, as Kuma's field paths count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct At {
    /// The document, from 1.
    pub document: usize,
    /// The item of a list document.
    pub item: Option<usize>,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "document {}", self.document)?;
        match self.item {
            Some(i) => write!(f, ": items[{i}]"),
            None => Ok(()),
        }
    }
}

/// What `apply` takes, for the texts that list it.
const APPLIES: &str =
    "meshseal applies Secret, GlobalSecret, Mesh and the resources of a mesh (kuma.io/v1alpha1)";

/// Why one YAML document cannot be applied.
#[derive(Debug, Error)]
pub enum ResourceError {
    /// Not valid YAML.
    #[error("invalid YAML: {}", strip_location(&.0.to_string()))]
    Yaml(#[source] serde_yaml_ng::Error),
    /// A document meshseal does not manage.
    #[error("{at}: unsupported resource {kind}; {APPLIES}")]
    Unsupported {
        /// Which document.
        at: At,
        /// Its kind.
        kind: String,
    },
    /// A field is missing or of the wrong type.
    #[error("{at}: {message}")]
    Field {
        /// Which document.
        at: At,
        /// What is wrong.
        message: String,
    },
    /// Kuma's validation of a secret failed.
    #[error("{at}: {error}")]
    Invalid {
        /// Which document.
        at: At,
        /// The rule.
        error: DocumentError,
    },
    /// The same secret twice in one apply.
    #[error("{at}: {id} is also defined by {first}")]
    Duplicate {
        /// Which document.
        at: At,
        /// The earlier one.
        first: At,
        /// The secret.
        id: SecretId,
    },
    /// Kuma's validation of a Mesh or policy resource failed (one rule;
    /// a resource may break several).
    #[error("{at}: {error}")]
    Resource {
        /// Which document.
        at: At,
        /// The rule, with Kuma's field path.
        error: PolicyError,
    },
    /// A resource of a mesh that is neither in the store nor in the same
    /// apply (Kuma's text).
    #[error("{at}: mesh of name {mesh} is not found")]
    MeshNotFound {
        /// Which document.
        at: At,
        /// The mesh.
        mesh: String,
    },
    /// The same resource (kind, mesh, name) twice in one apply.
    #[error("{at}: {what} is also defined by {first}")]
    DuplicateResource {
        /// Which document.
        at: At,
        /// The earlier one.
        first: At,
        /// `MeshGateway pay/edge`.
        what: String,
    },
}

impl ResourceError {
    /// Where it is in the input; `None` for a syntax error, which ends the
    /// stream.
    pub fn at(&self) -> Option<At> {
        match self {
            ResourceError::Yaml(_) => None,
            ResourceError::Unsupported { at, .. }
            | ResourceError::Field { at, .. }
            | ResourceError::Invalid { at, .. }
            | ResourceError::Duplicate { at, .. }
            | ResourceError::Resource { at, .. }
            | ResourceError::MeshNotFound { at, .. }
            | ResourceError::DuplicateResource { at, .. } => Some(*at),
        }
    }
}

impl Diagnostic for ResourceError {
    fn code(&self) -> &'static str {
        match self {
            ResourceError::Yaml(_) => "invalid-yaml",
            ResourceError::Unsupported { .. } => "unsupported-resource",
            ResourceError::Field { .. } => "invalid-document",
            ResourceError::Invalid { error, .. } => error.code(),
            ResourceError::Duplicate { .. } | ResourceError::DuplicateResource { .. } => {
                "duplicate"
            }
            ResourceError::Resource { error, .. } => error.code(),
            ResourceError::MeshNotFound { .. } => "mesh-not-found",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ResourceError::Resource { error, .. } => error.hint(),
            ResourceError::MeshNotFound { mesh, .. } => Some(format!(
                "apply its Mesh (in the same input, or meshes/{mesh}/mesh.yaml), or start the mesh with `meshseal recipients add -m {mesh} --self`"
            )),
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            ResourceError::Yaml(e) => e.location().map(|l| l.line()),
            _ => None,
        }
    }
}

/// The parser's message without its ` at line N column M`: the line is the
/// report's own.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn parse_one(value: &Value, at: At, max: usize) -> Result<Document, ResourceError> {
    let field = |message: String| ResourceError::Field { at, message };
    let Value::Mapping(map) = value else {
        return Err(field("must be a mapping".to_string()));
    };
    let get_str =
        |m: &serde_yaml_ng::Mapping, key: &str| -> Result<Option<String>, ResourceError> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(field(format!("{key}: must be a string"))),
            }
        };
    let invalid = |error: DocumentError| ResourceError::Invalid { at, error };

    if let Some(kind) = get_str(map, "kind")? {
        // Kubernetes form.
        if kind != "Secret" {
            return Err(ResourceError::Unsupported { at, kind });
        }
        let ty = get_str(map, "type")?.unwrap_or_default();
        let meta = match map.get("metadata") {
            Some(Value::Mapping(m)) => m,
            _ => return Err(field("metadata: must be a mapping".to_string())),
        };
        let name = get_str(meta, "name")?.unwrap_or_default();
        let mesh = match meta.get("labels") {
            Some(Value::Mapping(l)) => get_str(l, K8S_MESH_LABEL)?,
            None | Some(Value::Null) => None,
            Some(_) => return Err(field("metadata.labels: must be a mapping".to_string())),
        };
        let data = match map.get("data") {
            Some(Value::Mapping(d)) => get_str(d, "value")?,
            None | Some(Value::Null) => None,
            Some(_) => return Err(field("data: must be a mapping".to_string())),
        };
        // kubectl's `stringData`: plain text, merged over `data` (it wins
        // on the same key), as the Kubernetes API server does.
        let string_data = match map.get("stringData") {
            Some(Value::Mapping(d)) => get_str(d, "value")?,
            None | Some(Value::Null) => None,
            Some(_) => return Err(field("stringData: must be a mapping".to_string())),
        };
        let data = match string_data {
            Some(text) => Some(BASE64.encode(text.as_bytes())),
            None => data,
        };
        let scope = match ty.as_str() {
            K8S_SECRET_TYPE => {
                Scope::Mesh(mesh.unwrap_or_else(|| crate::scope::DEFAULT_MESH.to_string()))
            }
            K8S_GLOBAL_SECRET_TYPE => {
                if mesh.is_some() {
                    return Err(invalid(DocumentError::MeshOnGlobal { line: 0 }));
                }
                Scope::Global
            }
            other => {
                return Err(ResourceError::Unsupported {
                    at,
                    kind: format!("Secret of type {other:?}"),
                })
            }
        };
        return build(scope, &name, data.as_deref(), BTreeMap::new(), max).map_err(invalid);
    }

    // Universal form.
    const KNOWN: [&str; 7] = [
        "type",
        "mesh",
        "name",
        "data",
        "labels",
        "creationTime",
        "modificationTime",
    ];
    for key in map.keys() {
        match key.as_str() {
            Some(k) if KNOWN.contains(&k) => {}
            Some(k) => return Err(field(format!("unknown key {k:?}"))),
            None => return Err(field("keys must be strings".to_string())),
        }
    }
    let ty = get_str(map, "type")?.unwrap_or_default();
    let mesh = get_str(map, "mesh")?;
    let name = get_str(map, "name")?.unwrap_or_default();
    let data = get_str(map, "data")?;
    let labels = match map.get("labels") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Mapping(l)) => l
            .iter()
            .map(|(k, v)| match (k, v) {
                (Value::String(k), Value::String(v)) => Ok((k.clone(), v.clone())),
                _ => Err(field("labels: keys and values must be strings".to_string())),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(field("labels: must be a mapping".to_string())),
    };
    let scope = match ty.as_str() {
        "Secret" => {
            let mesh = mesh.ok_or(invalid(DocumentError::MissingMesh))?;
            Scope::Mesh(mesh)
        }
        "GlobalSecret" => {
            if mesh.is_some() {
                return Err(invalid(DocumentError::MeshOnGlobal { line: 0 }));
            }
            Scope::Global
        }
        "" => return Err(field("type: cannot be empty".to_string())),
        other => {
            return Err(ResourceError::Unsupported {
                at,
                kind: other.chars().take(64).collect(),
            })
        }
    };
    build(scope, &name, data.as_deref(), labels, max).map_err(invalid)
}

fn build(
    scope: Scope,
    name: &str,
    data: Option<&str>,
    labels: BTreeMap<String, String>,
    max: usize,
) -> Result<Document, DocumentError> {
    if let Scope::Mesh(m) = &scope {
        validate_mesh(m).map_err(|error| DocumentError::Name { error, line: None })?;
    }
    let id =
        SecretId::new(scope, name).map_err(|error| DocumentError::Name { error, line: None })?;
    let data = decode_data(data.unwrap_or(""), max).map_err(|e| match e {
        DocumentError::InvalidBase64 { .. } => DocumentError::InvalidBase64 { line: 0 },
        other => other,
    })?;
    let mut doc = Document::new(id, data);
    doc.labels = labels;
    Ok(doc)
}

/// Kuma's JSON shape of a secret (`kumactl get secret -o json`). With
/// `with_data` false, the data is omitted (listings never show it).
pub fn to_json(doc: &Document, with_data: bool) -> serde_json::Value {
    let mut v = json!({
        "type": doc.id.scope.resource_type(),
        "name": doc.id.name,
    });
    if let Some(m) = doc.id.scope.mesh_name() {
        v["mesh"] = json!(m);
    }
    if !doc.labels.is_empty() {
        v["labels"] = json!(doc.labels);
    }
    if with_data {
        v["data"] = json!(doc.data.to_base64().as_str());
    }
    v
}

/// A secret as Kuma's API serves it, with its data, as JSON bytes (plus a
/// final newline) in a buffer that is wiped when dropped.
///
/// Why not [`to_json`]: a `serde_json::Value` keeps the base64 in a plain
/// `String`, and growing a buffer while writing leaves copies behind in
/// freed memory. Here the buffer is sized up front for the worst case, so
/// the value exists only in wiped buffers. The names and labels go through
/// `serde_json`; the data is base64-encoded straight into the buffer (its
/// alphabet needs no JSON escaping), with no intermediate string: in a
/// secret read over the API, escaping the base64 byte by byte and encoding
/// it into a string of its own were an eighth of the request's instructions.
pub fn to_json_bytes(doc: &Document) -> Zeroizing<Vec<u8>> {
    #[derive(Serialize)]
    struct Head<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        mesh: Option<&'a str>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        labels: &'a BTreeMap<String, String>,
    }
    let mesh = doc.id.scope.mesh_name();
    let encoded = base64::encoded_len(doc.data.len(), true).expect("data is within the limit");
    // JSON escapes a character in at most six bytes (\u00XX).
    let text: usize = doc.id.name.len()
        + mesh.map_or(0, str::len)
        + doc
            .labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let overhead = 64 + 8 * doc.labels.len();
    let capacity = encoded + 6 * text + overhead;
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    let head = Head {
        kind: doc.id.scope.resource_type(),
        name: &doc.id.name,
        mesh,
        labels: &doc.labels,
    };
    serde_json::to_writer(&mut *out, &head).expect("a resource serializes");
    // The head is an object: it is reopened for the data, the last field.
    let closed = out.pop();
    debug_assert_eq!(closed, Some(b'}'));
    out.extend_from_slice(b",\"data\":\"");
    let start = out.len();
    out.resize(start + encoded, 0);
    BASE64
        .encode_slice(doc.data.expose(), &mut out[start..])
        .expect("the buffer holds the encoded length");
    out.extend_from_slice(b"\"}\n");
    debug_assert!(out.len() <= capacity, "the buffer never grew");
    out
}

mod export;
mod input;

pub use export::{export_all, export_kubernetes, export_universal, Clash, Export};
pub use input::{parse_apply, parse_input, parse_input_partly, Parsed};

#[cfg(test)]
mod tests;
