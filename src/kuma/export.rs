//! Kuma YAML out: what `export --kuma` and `export --kubernetes` print, the
//! secrets and the Mesh and policy resources beside them, in the order
//! `kumactl export` uses (Meshes first, so that a `kumactl apply` of the
//! output finds each mesh before its secrets and policies).

use std::collections::BTreeMap;

use serde_json::json;
use thiserror::Error;
use zeroize::Zeroizing;

use super::{to_json, K8S_GLOBAL_SECRET_TYPE, K8S_MESH_LABEL, K8S_SECRET_TYPE};
use crate::document::Document;
use crate::policy::{PolicyError, PolicyKind, Resource};
use crate::problem::Diagnostic;
use crate::scope::Scope;

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
        let v = kubernetes_secret(doc, namespace);
        out.push_str(&Zeroizing::new(
            serde_yaml_ng::to_string(&v).expect("JSON values serialize"),
        ));
    }
    out
}

/// One secret as a Kubernetes Secret of Kuma's types. The value holds the
/// base64 data: callers wipe what they make of it.
fn kubernetes_secret(doc: &Document, namespace: &str) -> serde_json::Value {
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
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "data": { "value": doc.data.to_base64().as_str() },
        "type": ty,
    })
}

/// What one export prints: secrets, and Mesh and policy resources.
#[derive(Debug, Default)]
pub struct Export<'a> {
    /// Secrets and GlobalSecrets, in the order given.
    pub secrets: Vec<&'a Document>,
    /// Resources, in the order given; Meshes are printed first.
    pub resources: Vec<&'a Resource>,
}

/// Why an export prints nothing.
#[derive(Debug, Error)]
pub enum ExportError {
    /// Two objects would have the same Kubernetes identity.
    #[error(transparent)]
    Clash(#[from] Clash),
    /// A resource has no Kubernetes form.
    #[error("{error}")]
    Invalid {
        /// Its file.
        file: std::path::PathBuf,
        /// Why.
        error: PolicyError,
    },
}

impl Diagnostic for ExportError {
    fn code(&self) -> &'static str {
        match self {
            ExportError::Clash(c) => c.code(),
            ExportError::Invalid { error, .. } => error.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ExportError::Clash(c) => c.hint(),
            ExportError::Invalid { .. } => None,
        }
    }

    fn file(&self) -> Option<&std::path::Path> {
        match self {
            ExportError::Clash(_) => None,
            ExportError::Invalid { file, .. } => Some(file),
        }
    }
}

/// A Kubernetes object (kind, namespace, name) that several of the
/// exported resources would be: `kubectl apply` would keep only the last.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{object} would be exported {} times: {}", .sources.len(), .sources.join(", "))]
pub struct Clash {
    /// `Secret kuma-system/db`, `MeshGateway edge`.
    pub object: String,
    /// What would become it: `Secret pay/db`, `GlobalSecret db`...
    pub sources: Vec<String>,
}

impl Diagnostic for Clash {
    fn code(&self) -> &'static str {
        "name-clash"
    }

    fn hint(&self) -> Option<String> {
        Some("Kuma on Kubernetes cannot hold them either (one name per kind and namespace): rename one, or export the meshes one at a time (-m MESH)".to_string())
    }
}

/// The export as Universal YAML (`kumactl apply -f`), or with `namespace`
/// as Kubernetes YAML (`kubectl apply -f`): Meshes, then secrets, then the
/// other resources. Kubernetes output never holds two objects of one kind,
/// namespace and name: every such clash is returned instead.
pub fn export_all(
    export: &Export<'_>,
    namespace: Option<&str>,
) -> Result<Zeroizing<String>, Vec<ExportError>> {
    let is_mesh = |r: &&&Resource| r.policy.kind == PolicyKind::Mesh;
    let meshes = export.resources.iter().filter(is_mesh);
    let others = export.resources.iter().filter(|r| !is_mesh(r));
    let Some(namespace) = namespace else {
        let mut out = Zeroizing::new(String::new());
        let mut push = |v: &serde_json::Value| {
            if !out.is_empty() {
                out.push_str("---\n");
            }
            out.push_str(&Zeroizing::new(
                serde_yaml_ng::to_string(v).expect("JSON values serialize"),
            ));
        };
        for r in meshes.clone() {
            push(&r.universal);
        }
        for doc in &export.secrets {
            push(&to_json(doc, true));
        }
        for r in others.clone() {
            push(&r.universal);
        }
        return Ok(out);
    };
    let mut objects: Vec<serde_json::Value> = Vec::new();
    let mut errors = Vec::new();
    let mut by_key: BTreeMap<(String, String, String, String), Vec<String>> = BTreeMap::new();
    let mut note = |v: &serde_json::Value, source: String| {
        let text = |k: &[&str]| {
            k.iter()
                .try_fold(v, |v, k| v.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let key = (
            text(&["apiVersion"]),
            text(&["kind"]),
            text(&["metadata", "namespace"]),
            text(&["metadata", "name"]),
        );
        by_key.entry(key).or_default().push(source);
    };
    let mut resource =
        |r: &Resource, objects: &mut Vec<serde_json::Value>| match r.to_kubernetes(namespace) {
            Ok(v) => {
                note(&v, format!("{} ({})", r.describe(), r.file().display()));
                objects.push(v);
            }
            Err(error) => errors.push(ExportError::Invalid {
                file: r.file().to_path_buf(),
                error,
            }),
        };
    for r in meshes {
        resource(r, &mut objects);
    }
    let first_secret = objects.len();
    let secrets: Vec<serde_json::Value> = export
        .secrets
        .iter()
        .map(|doc| kubernetes_secret(doc, namespace))
        .collect();
    for r in others {
        resource(r, &mut objects);
    }
    for (doc, v) in export.secrets.iter().zip(&secrets) {
        note(v, super::describe(&doc.id));
    }
    let clashes: Vec<ExportError> = by_key
        .into_iter()
        .filter(|(_, sources)| sources.len() > 1)
        .map(|((_, kind, ns, name), sources)| {
            let object = if ns.is_empty() {
                format!("{kind} {name}")
            } else {
                format!("{kind} {ns}/{name}")
            };
            ExportError::Clash(Clash { object, sources })
        })
        .collect();
    errors.extend(clashes);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = Zeroizing::new(String::new());
    let ordered = objects[..first_secret]
        .iter()
        .chain(&secrets)
        .chain(&objects[first_secret..]);
    for v in ordered {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&Zeroizing::new(
            serde_yaml_ng::to_string(v).expect("JSON values serialize"),
        ));
    }
    Ok(out)
}
