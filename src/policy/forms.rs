//! Kuma's two forms of one resource, and the conversion between them, for
//! `apply` (which writes a resource in the form it was given) and `export`
//! (which prints every resource in the form asked for).
//!
//! - **Universal** (`kumactl get -o yaml`): `type`, `name`, `mesh`,
//!   `labels`, then the resource's fields at the top (the older kinds: Mesh,
//!   ExternalService, MeshGateway, TrafficPermission...) or under `spec`
//!   (the newer ones: MeshTimeout, MeshExternalService, MeshIdentity...).
//! - **Kubernetes** (Kuma's CRDs, `apiVersion: kuma.io/v1alpha1`): `kind`,
//!   `metadata.name`, the fields under `spec`; an older kind names its mesh
//!   in a top-level `mesh` and is cluster-scoped, a newer one in the label
//!   `kuma.io/mesh` and lives in the control plane's namespace. A Mesh is
//!   cluster-scoped and names no mesh.
//!
//! Fields the control plane or the API server fills in (`creationTime`,
//! `metadata.uid`, `status`...) are not the user's: they are dropped, as
//! `kumactl export` drops them, so that re-applying an export changes
//! nothing.

use serde_json::{Map, Value};

use super::parse::{field, get, get_str, KUMA_API_VERSION, MESH_LABEL};
use super::PolicyError;

/// Kuma's kinds that keep their fields at the top in Universal, have a
/// top-level `mesh` on Kubernetes and are cluster-scoped there
/// (kumahq/kuma `api/mesh/v1alpha1/*.proto`, the `kuma.io` CRDs without
/// `namespaced` scope in `deployments/charts/kuma/crds`).
pub const LEGACY_KINDS: &[&str] = &[
    "Mesh",
    "Dataplane",
    "DataplaneInsight",
    "ExternalService",
    "MeshGateway",
    "MeshGatewayRoute",
    "MeshInsight",
    "CircuitBreaker",
    "FaultInjection",
    "HealthCheck",
    "ProxyTemplate",
    "RateLimit",
    "Retry",
    "ServiceInsight",
    "Timeout",
    "TrafficLog",
    "TrafficPermission",
    "TrafficRoute",
    "TrafficTrace",
    "VirtualOutbound",
    "Zone",
    "ZoneInsight",
    "ZoneIngress",
    "ZoneIngressInsight",
    "ZoneEgress",
    "ZoneEgressInsight",
];

/// The Universal keys that are a resource's identity, not its fields.
pub(super) const UNIVERSAL_META: &[&str] = &["type", "name", "mesh", "labels"];

/// Filled in by Kuma's control plane (Universal).
pub(super) const UNIVERSAL_SERVER_FIELDS: &[&str] = &["creationTime", "modificationTime"];

/// Filled in by the Kubernetes API server (`kumactl export`'s
/// `cleanKubeObject`, plus the timestamps).
const KUBERNETES_SERVER_METADATA: &[&str] = &[
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// kubectl's copy of what was applied: a second, stale copy of the resource.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Which of Kuma's forms a document is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `type`, `name`, `mesh`.
    Universal,
    /// `apiVersion: kuma.io/v1alpha1`, `kind`, `metadata`.
    Kubernetes,
}

impl Form {
    /// The form of a document (a mapping with `apiVersion` is Kubernetes).
    pub fn of(doc: &Value) -> Form {
        if get(doc, "apiVersion").is_some() {
            Form::Kubernetes
        } else {
            Form::Universal
        }
    }
}

/// Whether a kind keeps its fields at the top in Universal (see
/// [`LEGACY_KINDS`]). An unknown kind is judged by its document: one whose
/// only field is `spec` is of the newer shape.
fn is_legacy(kind: &str, universal_body: Option<&Map<String, Value>>) -> bool {
    if LEGACY_KINDS.contains(&kind) {
        return true;
    }
    match universal_body {
        Some(map) => map
            .keys()
            .any(|k| !UNIVERSAL_META.contains(&k.as_str()) && k != "spec"),
        None => false,
    }
}

/// A copy of `doc` without the fields Kuma or Kubernetes fill in.
pub fn without_server_fields(doc: &Value) -> Value {
    let mut doc = doc.clone();
    let Some(map) = doc.as_object_mut() else {
        return doc;
    };
    if Form::of(&Value::Object(map.clone())) == Form::Kubernetes {
        map.shift_remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in KUBERNETES_SERVER_METADATA {
                meta.shift_remove(*k);
            }
            let empty = match meta.get_mut("annotations").and_then(Value::as_object_mut) {
                Some(a) => {
                    a.shift_remove(LAST_APPLIED);
                    a.is_empty()
                }
                None => false,
            };
            if empty {
                meta.shift_remove("annotations");
            }
        }
    } else {
        for k in UNIVERSAL_SERVER_FIELDS {
            map.shift_remove(*k);
        }
    }
    doc
}

fn object(v: &Value, path: &str) -> Result<Map<String, Value>, PolicyError> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(field(path, "must be a mapping")),
    }
}

/// The Universal form of a resource given in either form (server fields
/// dropped). A Kubernetes resource without a mesh is in `default`, as Kuma
/// on Kubernetes puts it.
pub fn to_universal(doc: &Value) -> Result<Value, PolicyError> {
    let doc = without_server_fields(doc);
    if Form::of(&doc) == Form::Universal {
        return Ok(identity_first(doc));
    }
    let kind = get_str(&doc, "kind").unwrap_or_default();
    let meta = get(&doc, "metadata").cloned().unwrap_or(Value::Null);
    let meta = object(&meta, "metadata")?;
    let mut labels = match meta.get("labels") {
        Some(l) => object(l, "metadata.labels")?,
        None => Map::new(),
    };
    let mut out = Map::new();
    out.insert("type".into(), Value::String(kind.to_string()));
    if kind != "Mesh" {
        let mesh = get_str(&doc, "mesh")
            .or_else(|| labels.get(MESH_LABEL).and_then(Value::as_str))
            .unwrap_or(crate::scope::DEFAULT_MESH)
            .to_string();
        // On Kubernetes the label is how a resource names its mesh; in
        // Universal the `mesh` field says it.
        if labels.get(MESH_LABEL).and_then(Value::as_str) == Some(mesh.as_str()) {
            labels.shift_remove(MESH_LABEL);
        }
        out.insert("mesh".into(), Value::String(mesh));
    }
    out.insert(
        "name".into(),
        meta.get("name").cloned().unwrap_or(Value::Null),
    );
    if !labels.is_empty() {
        out.insert("labels".into(), Value::Object(labels));
    }
    let spec = object(get(&doc, "spec").unwrap_or(&Value::Null), "spec")?;
    if is_legacy(kind, None) || get(&doc, "mesh").is_some() {
        // A field named like the identity cannot replace it.
        out.extend(
            spec.into_iter()
                .filter(|(k, _)| !UNIVERSAL_META.contains(&k.as_str())),
        );
    } else if !spec.is_empty() || get(&doc, "spec").is_some() {
        out.insert("spec".into(), Value::Object(spec));
    }
    Ok(identity_first(Value::Object(out)))
}

/// A Universal resource with `type`, `mesh`, `name` and `labels` first, as
/// Kuma prints them (a TOML file's keys come back sorted), the other keys in
/// their order. (A `serde_json::Map` keeps its order only through
/// `shift_remove`: its `remove` swaps the last key into the hole.)
fn identity_first(doc: Value) -> Value {
    let Value::Object(mut map) = doc else {
        return doc;
    };
    let mut out = Map::new();
    for k in UNIVERSAL_META {
        if let Some(v) = map.shift_remove(*k) {
            out.insert((*k).to_string(), v);
        }
    }
    out.extend(map);
    Value::Object(out)
}

/// The Kubernetes form of a resource given in Universal: a newer kind in
/// `namespace` with the `kuma.io/mesh` label, an older one cluster-scoped
/// with a top-level `mesh`.
pub fn to_kubernetes(universal: &Value, namespace: &str) -> Result<Value, PolicyError> {
    let doc = object(universal, "(document)")?;
    let kind = doc.get("type").and_then(Value::as_str).unwrap_or_default();
    let legacy = is_legacy(kind, Some(&doc));
    let mut labels = match doc.get("labels") {
        Some(l) => object(l, "labels")?,
        None => Map::new(),
    };
    let mesh = doc.get("mesh").cloned();
    let mut metadata = Map::new();
    metadata.insert(
        "name".into(),
        doc.get("name").cloned().unwrap_or(Value::Null),
    );
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(KUMA_API_VERSION.into()));
    out.insert("kind".into(), Value::String(kind.to_string()));
    if legacy {
        if let Some(m) = mesh.filter(|_| kind != "Mesh") {
            out.insert("mesh".into(), m);
        }
    } else {
        metadata.insert("namespace".into(), Value::String(namespace.to_string()));
        if let Some(m) = mesh {
            labels.insert(MESH_LABEL.into(), m);
        }
    }
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    out.insert("metadata".into(), Value::Object(metadata));
    let spec = if legacy {
        let fields: Map<String, Value> = doc
            .iter()
            .filter(|(k, _)| !UNIVERSAL_META.contains(&k.as_str()))
            .filter(|(k, _)| !UNIVERSAL_SERVER_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(Value::Object(fields))
    } else {
        doc.get("spec").cloned()
    };
    if let Some(spec) = spec {
        out.insert("spec".into(), spec);
    }
    Ok(Value::Object(out))
}

/// Whether two Universal resources are the same: their fields equal
/// whatever their order, a `kuma.io/mesh` label that repeats the mesh and an
/// empty `labels` or `spec` counting as absent.
pub fn same_resource(a: &Value, b: &Value) -> bool {
    normalized(a) == normalized(b)
}

fn normalized(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(map) = v.as_object_mut() {
        let mesh = map.get("mesh").cloned();
        let drop_labels = match map.get_mut("labels").and_then(Value::as_object_mut) {
            Some(labels) => {
                if labels.get(MESH_LABEL) == mesh.as_ref() {
                    labels.shift_remove(MESH_LABEL);
                }
                labels.is_empty()
            }
            None => false,
        };
        if drop_labels {
            map.shift_remove("labels");
        }
        if map
            .get("spec")
            .is_some_and(|s| s.is_null() || s.as_object().is_some_and(Map::is_empty))
        {
            map.shift_remove("spec");
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Kuma docs "MeshGateway" (Universal and Kubernetes tabs): the older
    /// shape, `conf` at the top in Universal, a top-level `mesh` on
    /// Kubernetes.
    #[test]
    fn an_older_kind_moves_between_top_level_and_spec() {
        let universal = json!({
            "type": "MeshGateway", "mesh": "default", "name": "edge",
            "selectors": [{ "match": { "kuma.io/service": "edge" } }],
            "conf": { "listeners": [{ "port": 80, "protocol": "HTTP" }] },
        });
        let k8s = to_kubernetes(&universal, "kuma-system").unwrap();
        assert_eq!(k8s["mesh"], "default");
        assert_eq!(k8s["metadata"], json!({ "name": "edge" }), "cluster-scoped");
        assert_eq!(k8s["spec"]["conf"]["listeners"][0]["port"], 80);
        assert!(same_resource(&to_universal(&k8s).unwrap(), &universal));
    }

    /// Found by the round-trip test: dropping the server's fields and moving
    /// the identity first keep every other field in its place.
    #[test]
    fn field_order_is_kept() {
        let doc = json!({
            "type": "MeshGateway", "mesh": "m", "creationTime": "x", "name": "g",
            "selectors": [], "conf": {}, "labels": {}, "modificationTime": "y", "tags": {},
        });
        let u = to_universal(&doc).unwrap();
        let keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "type",
                "name",
                "mesh",
                "labels",
                "selectors",
                "conf",
                "tags"
            ]
        );
    }

    /// Kuma docs "MeshTimeout" / "MeshIdentity": the newer shape, `spec` in
    /// both forms, the mesh as a label in the control plane's namespace.
    #[test]
    fn a_newer_kind_keeps_its_spec_and_gains_the_mesh_label() {
        let universal = json!({
            "type": "MeshIdentity", "mesh": "pay", "name": "id",
            "labels": { "team": "a" },
            "spec": { "provider": { "type": "Bundled" } },
        });
        let k8s = to_kubernetes(&universal, "kuma-system").unwrap();
        assert_eq!(k8s["metadata"]["namespace"], "kuma-system");
        assert_eq!(
            k8s["metadata"]["labels"],
            json!({ "team": "a", "kuma.io/mesh": "pay" })
        );
        assert!(k8s.get("mesh").is_none());
        let back = to_universal(&k8s).unwrap();
        assert_eq!(back["spec"], universal["spec"]);
        assert!(same_resource(&back, &universal));
        let other = json!({ "type": "MeshIdentity", "mesh": "pay", "name": "id", "spec": {} });
        assert!(!same_resource(&other, &universal));
    }

    #[test]
    fn a_mesh_is_cluster_scoped_and_names_no_mesh() {
        let universal = json!({ "type": "Mesh", "name": "pay", "mtls": { "backends": [] } });
        let k8s = to_kubernetes(&universal, "kuma-system").unwrap();
        assert!(k8s.get("mesh").is_none());
        assert_eq!(k8s["metadata"], json!({ "name": "pay" }));
        assert_eq!(to_universal(&k8s).unwrap(), universal);
    }

    /// `kubectl get -o yaml` and `kumactl get -o yaml` output carry what the
    /// servers filled in; none of it is the user's.
    #[test]
    fn server_fields_are_dropped() {
        let k8s = json!({
            "apiVersion": "kuma.io/v1alpha1", "kind": "MeshTimeout",
            "metadata": {
                "name": "t", "uid": "1", "resourceVersion": "9", "generation": 2,
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "annotations": { LAST_APPLIED: "{}" },
                "labels": { "kuma.io/mesh": "default" },
            },
            "spec": {}, "status": { "x": 1 },
        });
        let clean = without_server_fields(&k8s);
        assert_eq!(
            clean["metadata"],
            json!({ "name": "t", "labels": { "kuma.io/mesh": "default" } })
        );
        assert!(clean.get("status").is_none());
        let uni =
            json!({ "type": "Mesh", "name": "m", "creationTime": "x", "modificationTime": "y" });
        assert_eq!(
            without_server_fields(&uni),
            json!({ "type": "Mesh", "name": "m" })
        );
    }

    #[test]
    fn an_unknown_kind_is_judged_by_its_shape() {
        let newer = json!({ "type": "MeshFoo", "mesh": "m", "name": "a", "spec": { "x": 1 } });
        assert!(to_kubernetes(&newer, "ns").unwrap()["metadata"]["namespace"] == "ns");
        let older = json!({ "type": "Foo", "mesh": "m", "name": "a", "conf": { "x": 1 } });
        let k8s = to_kubernetes(&older, "ns").unwrap();
        assert_eq!(k8s["mesh"], "m");
        assert_eq!(k8s["spec"], json!({ "conf": { "x": 1 } }));
        // Back: a top-level mesh says the older shape.
        assert!(same_resource(&to_universal(&k8s).unwrap(), &older));
        assert!(to_universal(&json!({ "apiVersion": KUMA_API_VERSION, "kind": "X", "metadata": { "name": "a" }, "spec": 3 })).is_err());
    }
}
