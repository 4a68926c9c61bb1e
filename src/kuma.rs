//! Kuma's resource shapes: the Universal YAML that `kumactl apply` reads and
//! `kumactl get -o yaml` prints, and Kubernetes Secrets of Kuma's types.
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

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_yaml_ng::Value;
use thiserror::Error;
use zeroize::Zeroizing;

use base64::Engine as _;

use crate::document::{decode_data, Document, DocumentError};
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

/// Why one YAML document cannot be applied. `document` is 1-based.
#[derive(Debug, Error)]
pub enum ResourceError {
    /// Not valid YAML.
    #[error("invalid YAML: {}", strip_location(&.0.to_string()))]
    Yaml(#[source] serde_yaml_ng::Error),
    /// A document meshseal does not manage.
    #[error("document {document}: unsupported resource {kind}; meshseal applies Secret and GlobalSecret")]
    Unsupported {
        /// Which document.
        document: usize,
        /// Its kind.
        kind: String,
    },
    /// A field is missing or of the wrong type.
    #[error("document {document}: {message}")]
    Field {
        /// Which document.
        document: usize,
        /// What is wrong.
        message: String,
    },
    /// Kuma's validation failed.
    #[error("document {document}: {error}")]
    Invalid {
        /// Which document.
        document: usize,
        /// The rule.
        error: DocumentError,
    },
    /// The same secret twice in one apply.
    #[error("document {document}: {id} is also defined by document {first}")]
    Duplicate {
        /// Which document.
        document: usize,
        /// The earlier one.
        first: usize,
        /// The secret.
        id: SecretId,
    },
}

impl Diagnostic for ResourceError {
    fn code(&self) -> &'static str {
        match self {
            ResourceError::Yaml(_) => "invalid-yaml",
            ResourceError::Unsupported { .. } => "unsupported-resource",
            ResourceError::Field { .. } => "invalid-document",
            ResourceError::Invalid { error, .. } => error.code(),
            ResourceError::Duplicate { .. } => "duplicate",
        }
    }
    fn line(&self) -> Option<usize> {
        match self {
            ResourceError::Yaml(e) => e.location().map(|l| l.line()),
            _ => None,
        }
    }
}

/// Parses a (multi-document) YAML stream of Secrets and GlobalSecrets, in
/// Universal or Kubernetes form. Every problem is reported; on any problem no
/// document is returned.
pub fn parse_apply(text: &str, max_data_bytes: usize) -> Result<Vec<Document>, Vec<ResourceError>> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<SecretId, usize> = BTreeMap::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = match Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                errors.push(ResourceError::Yaml(e));
                // The stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        match parse_one(&value, document, max_data_bytes) {
            Ok(doc) => {
                if let Some(&first) = seen.get(&doc.id) {
                    errors.push(ResourceError::Duplicate {
                        document,
                        first,
                        id: doc.id.clone(),
                    });
                } else {
                    seen.insert(doc.id.clone(), document);
                    docs.push(doc);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
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

fn parse_one(value: &Value, document: usize, max: usize) -> Result<Document, ResourceError> {
    let field = |message: String| ResourceError::Field { document, message };
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
    let invalid = |error: DocumentError| ResourceError::Invalid { document, error };

    if let Some(kind) = get_str(map, "kind")? {
        // Kubernetes form.
        if kind != "Secret" {
            return Err(ResourceError::Unsupported { document, kind });
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
            Some(text) => Some(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())),
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
                    document,
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
                document,
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
/// the value exists only in wiped buffers.
pub fn to_json_bytes(doc: &Document) -> Zeroizing<Vec<u8>> {
    #[derive(Serialize)]
    struct Resource<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        mesh: Option<&'a str>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        labels: &'a BTreeMap<String, String>,
        data: &'a str,
    }
    let data = doc.data.to_base64();
    let mesh = doc.id.scope.mesh_name();
    // JSON escapes a character in at most six bytes (\u00XX).
    let text: usize = doc.id.name.len()
        + mesh.map_or(0, str::len)
        + doc
            .labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let overhead = 64 + 8 * doc.labels.len();
    let mut out = Zeroizing::new(Vec::with_capacity(data.len() + 6 * text + overhead));
    let resource = Resource {
        kind: doc.id.scope.resource_type(),
        name: &doc.id.name,
        mesh,
        labels: &doc.labels,
        data: &data,
    };
    serde_json::to_writer(&mut *out, &resource).expect("a resource serializes");
    out.push(b'\n');
    out
}

/// Universal YAML documents, separated by `---`.
pub fn export_universal(docs: &[&Document]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let v = to_json(doc, true);
        out.push_str(&Zeroizing::new(
            serde_yaml_ng::to_string(&v).expect("JSON values serialize"),
        ));
    }
    out
}

/// Kubernetes Secret manifests of Kuma's secret types.
pub fn export_kubernetes(docs: &[&Document], namespace: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let mut labels = serde_json::Map::new();
        for (k, v) in &doc.labels {
            labels.insert(k.clone(), json!(v));
        }
        let ty = match &doc.id.scope {
            Scope::Mesh(m) => {
                labels.insert(K8S_MESH_LABEL.to_string(), json!(m));
                K8S_SECRET_TYPE
            }
            Scope::Global => K8S_GLOBAL_SECRET_TYPE,
        };
        let mut metadata = json!({ "name": doc.id.name, "namespace": namespace });
        if !labels.is_empty() {
            metadata["labels"] = serde_json::Value::Object(labels);
        }
        let v = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "data": { "value": doc.data.to_base64().as_str() },
            "type": ty,
        });
        out.push_str(&Zeroizing::new(
            serde_yaml_ng::to_string(&v).expect("JSON values serialize"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{SecretData, DEFAULT_MAX_DATA_BYTES as MAX};

    #[test]
    fn json_bytes_match_the_json_value() {
        for (scope, labels) in [
            (Scope::Mesh("pay".into()), vec![]),
            (
                Scope::Global,
                vec![("team".to_string(), "a \"b\"\u{1}\n\u{7f}é".to_string())],
            ),
        ] {
            let id = SecretId::new(scope, "db").unwrap();
            let mut doc = Document::new(id, SecretData::new(vec![0, 255, b'x', 7]));
            doc.labels = labels.into_iter().collect();
            let bytes = to_json_bytes(&doc);
            let mut want = serde_json::to_vec(&to_json(&doc, true)).unwrap();
            want.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&want)
            );
        }
    }

    #[test]
    fn universal_multi_document() {
        let docs = parse_apply(
            "type: Secret\nmesh: pay\nname: db\ndata: c2VjcmV0\n---\ntype: GlobalSecret\nname: ca\ndata: YQ==\n---\n",
            MAX,
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].data.expose(), b"secret");
        assert_eq!(docs[1].id.scope, Scope::Global);
    }

    #[test]
    fn every_problem_is_reported() {
        let errs = parse_apply(
            "type: Secret\nmesh: pay\nname: BAD\ndata: YQ==\n---\ntype: GlobalSecret\nmesh: m\nname: a\ndata: YQ==\n---\ntype: Secret\nmesh: pay\nname: e\ndata: ''\n",
            MAX,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3);
        assert!(errs[1]
            .to_string()
            .contains("mesh cannot be set on global secret"));
        assert!(errs[2].to_string().contains("data: cannot be empty"));
    }

    #[test]
    fn kubernetes_round_trip() {
        let a = Document::new(
            SecretId::new(Scope::Mesh("pay".into()), "db").unwrap(),
            SecretData::new(b"s3".to_vec()),
        );
        let b = Document::new(
            SecretId::new(Scope::Global, "ca").unwrap(),
            SecretData::new(b"x".to_vec()),
        );
        let yaml = export_kubernetes(&[&a, &b], DEFAULT_NAMESPACE);
        assert!(yaml.contains("type: system.kuma.io/secret"));
        assert!(yaml.contains("kuma.io/mesh: pay"));
        assert!(yaml.contains("type: system.kuma.io/global-secret"));
        let back = parse_apply(&yaml, MAX).unwrap();
        assert_eq!(back, vec![a.clone(), b.clone()]);
        let uni = export_universal(&[&a, &b]);
        assert_eq!(parse_apply(&uni, MAX).unwrap(), vec![a, b]);
    }

    #[test]
    fn kubernetes_string_data_is_plain_text_and_wins_over_data() {
        let yaml = "apiVersion: v1\nkind: Secret\ntype: system.kuma.io/secret\nmetadata:\n  name: db\n  labels: { kuma.io/mesh: pay }\nstringData:\n  value: hunter2\n";
        let docs = parse_apply(yaml, MAX).unwrap();
        assert_eq!(docs[0].data.expose(), b"hunter2");
        let both = format!("{yaml}data:\n  value: b3RoZXI=\n");
        assert_eq!(
            parse_apply(&both, MAX).unwrap()[0].data.expose(),
            b"hunter2"
        );
    }

    #[test]
    fn yaml_errors_have_lines_and_no_values() {
        let errs =
            parse_apply("type: Secret\nmesh: pay\nname: x\ndata: [8675309\n", MAX).unwrap_err();
        assert!(errs[0].line().is_some());
        assert!(!errs[0].to_string().contains("8675309"));
        let errs =
            parse_apply("type: Secret\nmesh: pay\nname: x\ndata: 8675309\n", MAX).unwrap_err();
        assert!(!errs[0].to_string().contains("8675309"), "{}", errs[0]);
        let errs = parse_apply("kind: Deployment\n", MAX).unwrap_err();
        assert!(matches!(errs[0], ResourceError::Unsupported { .. }));
        let errs = parse_apply("type: Secret\nmesh: p\nname: a\ndata: YQ==\n---\ntype: Secret\nmesh: p\nname: a\ndata: Yg==\n", MAX).unwrap_err();
        assert!(matches!(errs[0], ResourceError::Duplicate { .. }));
    }
}
