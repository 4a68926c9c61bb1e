//! A Kuma user moving a mesh in and out (SPEC 8): `apply -f` of a Kuma
//! export (secrets, a Mesh with a provided CA, a MeshIdentity, an
//! ExternalService, a MeshExternalService, a MeshGateway, a list as
//! `kumactl get -o yaml` prints it), then `export --kuma` and
//! `export --kubernetes` give the same resources back, and applying either
//! export again changes nothing.

use std::path::Path;
use std::process::Command;

use crate::env::{b64, run, TestEnv};
use crate::snapshot::assert_same;

fn yaml_docs(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde_json::Value::deserialize(d).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// (kind, mesh, name) of every resource of an export, in order.
fn identities(docs: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    docs.iter()
        .map(|d| match d.get("apiVersion") {
            None => (s(&d["type"]), s(&d["mesh"]), s(&d["name"])),
            Some(_) => {
                let mesh = d
                    .get("mesh")
                    .or_else(|| d["metadata"]["labels"].get("kuma.io/mesh"))
                    .map(s)
                    .unwrap_or_default();
                (s(&d["kind"]), mesh, s(&d["metadata"]["name"]))
            }
        })
        .collect()
}

/// A Kuma export of mesh `pay` as `kumactl export --format universal`
/// writes it (app/kumactl/cmd/export/export.go: Meshes first, then Secrets,
/// then the rest; creationTime / modificationTime filled in by the control
/// plane), with the resources of Kuma's documented examples:
/// - Mesh with a provided CA: Kuma docs "Mutual TLS" (provided backend);
/// - MeshIdentity: pkg/core/resources/apis/meshidentity/api/v1alpha1/
///   testdata/spec/full-valid-bundled.input.yaml, with `type: Secret`;
/// - ExternalService: Kuma docs "External Service" (Universal);
/// - MeshExternalService (Kubernetes form): Kuma docs "MeshExternalService";
/// - MeshGateway: Kuma docs "Delegated gateways / MeshGateway" (Universal);
/// - a list as `kumactl get meshtimeouts -o yaml` prints it.
const EXPORT: &str = r#"
type: Mesh
name: pay
creationTime: "2025-06-01T10:00:00Z"
modificationTime: "2025-06-01T10:00:00Z"
skipCreatingInitialPolicies: ["*"]
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: provided
      conf:
        cert:
          secret: ca-cert
        key:
          secret: ca-key
---
type: Secret
mesh: pay
name: ca-cert
creationTime: "2025-06-01T10:00:00Z"
modificationTime: "2025-06-01T10:00:00Z"
data: Y2EtY2VydA==
---
type: Secret
mesh: pay
name: ca-key
data: Y2Eta2V5
---
type: Secret
mesh: pay
name: id-cert
data: aWQtY2VydA==
---
type: Secret
mesh: pay
name: id-key
data: aWQta2V5
---
type: Secret
mesh: pay
name: httpbin-ca
data: aHR0cGJpbg==
---
type: Secret
mesh: pay
name: psp-ca
data: cHNw
---
type: Secret
mesh: pay
name: edge-cert
data: ZWRnZQ==
---
type: MeshIdentity
mesh: pay
name: identity
creationTime: "2025-06-01T10:00:00Z"
spec:
  selector:
    dataplane:
      matchLabels:
        app: test
  spiffeID:
    trustDomain: "{{ .Mesh }}.{{ .Zone }}.mesh.local"
    path: "/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}"
  provider:
    type: Bundled
    bundled:
      meshTrustCreation: Disabled
      autogenerate:
        enabled: false
      ca:
        certificate:
          type: Secret
          secretRef:
            kind: Secret
            name: id-cert
        privateKey:
          type: Secret
          secretRef:
            kind: Secret
            name: id-key
---
type: ExternalService
mesh: pay
name: httpbin
tags:
  kuma.io/service: httpbin
  kuma.io/protocol: http
networking:
  address: httpbin.org:443
  tls:
    enabled: true
    caCert:
      secret: httpbin-ca
---
apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: psp
  namespace: kuma-system
  uid: 0f1e2d3c
  resourceVersion: "4242"
  labels:
    kuma.io/mesh: pay
spec:
  match:
    type: HostnameGenerator
    port: 443
    protocol: http
  endpoints:
    - address: api.psp.example
      port: 443
  tls:
    enabled: true
    verification:
      mode: Secured
      caCert:
        secret: psp-ca
---
type: MeshGateway
mesh: pay
name: edge
selectors:
  - match:
      kuma.io/service: edge
conf:
  listeners:
    - port: 443
      protocol: HTTPS
      hostname: pay.example.com
      tls:
        mode: TERMINATE
        certificates:
          - secret: edge-cert
---
items:
  - type: MeshTimeout
    mesh: pay
    name: timeout-global
    creationTime: "2025-06-01T10:00:00Z"
    spec:
      targetRef:
        kind: Mesh
      to:
        - targetRef:
            kind: Mesh
          default:
            idleTimeout: 20s
next: null
total: 1
---
type: GlobalSecret
name: admin-token
data: YWRtaW4=
"#;

/// What `apply` of [`EXPORT`] creates: the resources, in the input's kinds.
const RESOURCES: &[(&str, &str)] = &[
    ("Mesh", "pay"),
    ("MeshIdentity", "identity"),
    ("ExternalService", "httpbin"),
    ("MeshExternalService", "psp"),
    ("MeshGateway", "edge"),
    ("MeshTimeout", "timeout-global"),
];

fn env() -> TestEnv {
    let e = TestEnv::new();
    e.add_mesh("pay");
    e
}

fn apply(e: &TestEnv, yaml: &str) -> String {
    let r = run(e
        .kcmd()
        .args(["apply", "-f", "-"])
        .write_stdin(yaml.to_string()));
    assert_eq!(r.code, Some(0), "apply failed:\n{}", r.stderr);
    r.stdout()
}

#[test]
fn a_kuma_export_round_trips_through_apply_and_export() {
    let e = env();
    let input = e.outside("export.yaml", EXPORT);
    let r = e.ok_key(&["apply", "-f", input.to_str().unwrap()]);
    let out = r.stdout();
    for line in [
        "Secret pay/ca-cert created",
        "GlobalSecret admin-token created",
        "Mesh pay created (meshes/pay/mesh.yaml)",
        "MeshIdentity pay/identity created (meshes/pay/policies/identity.yaml)",
        "ExternalService pay/httpbin created (meshes/pay/policies/httpbin.yaml)",
        "MeshExternalService pay/psp created (meshes/pay/policies/psp.yaml)",
        "MeshGateway pay/edge created (meshes/pay/policies/edge.yaml)",
        "MeshTimeout pay/timeout-global created (meshes/pay/policies/timeout-global.yaml)",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // What apply wrote is what check reads: every reference resolves.
    let c = run(e.cmd().arg("check"));
    assert_eq!(c.code, Some(0), "check after apply:\n{}", c.stderr);
    // The Kubernetes form stays Kubernetes, without the server's fields.
    let psp = String::from_utf8(e.read("meshes/pay/policies/psp.yaml")).unwrap();
    assert!(psp.starts_with("apiVersion: kuma.io/v1alpha1\n"), "{psp}");
    assert!(
        !psp.contains("uid") && !psp.contains("resourceVersion"),
        "{psp}"
    );

    // export --kuma gives the same resources back...
    let exported = e.ok_key(&["export", "--kuma", "-m", "pay"]).stdout();
    let docs = yaml_docs(&exported);
    let ids = identities(&docs);
    assert_eq!(
        ids[0],
        ("Mesh".into(), String::new(), "pay".into()),
        "Meshes first"
    );
    for (kind, name) in RESOURCES {
        assert!(
            ids.iter().any(|(k, _, n)| k == kind && n == name),
            "{kind} {name} missing from:\n{exported}"
        );
    }
    let secrets = ids.iter().filter(|(k, _, _)| k == "Secret").count();
    assert_eq!(secrets, 7, "{exported}");
    let mes = docs
        .iter()
        .find(|d| d["type"] == "MeshExternalService")
        .unwrap();
    assert_eq!(mes["mesh"], "pay");
    assert_eq!(
        mes["spec"]["tls"]["verification"]["caCert"]["secret"],
        "psp-ca"
    );
    let identity = docs.iter().find(|d| d["type"] == "MeshIdentity").unwrap();
    assert_eq!(
        identity["spec"]["provider"]["bundled"]["ca"]["privateKey"]["secretRef"]["name"],
        "id-key"
    );
    let gw = docs.iter().find(|d| d["type"] == "MeshGateway").unwrap();
    assert_eq!(
        gw["conf"]["listeners"][0]["tls"]["certificates"][0]["secret"],
        "edge-cert"
    );
    assert!(
        !exported.contains("creationTime"),
        "the control plane's fields are not the user's:\n{exported}"
    );
    let ca = docs.iter().find(|d| d["name"] == "ca-cert").unwrap();
    assert_eq!(ca["data"], b64("ca-cert"));

    // ...and applying it again changes nothing, not one byte.
    let before = e.snapshot();
    let again = apply(&e, &exported);
    assert!(
        !again.contains(" created") && !again.contains(" configured"),
        "{again}"
    );
    assert_eq!(again.matches(" unchanged").count(), docs.len(), "{again}");
    assert_same(&before, &e.snapshot(), "re-applying the export");

    // Into a fresh store, the export makes the same resources, which export
    // the same way.
    let other = env();
    apply(&other, &exported);
    let round = other.ok_key(&["export", "--kuma", "-m", "pay"]).stdout();
    assert_eq!(round, exported);
}

/// `export --kubernetes`: Kuma's CRD shapes, the Secrets valid for the
/// Kubernetes API (`kubernetes-validate --strict` where a schema exists:
/// Kuma's CRDs are not in its schema set), every object applied back.
#[test]
fn the_kubernetes_export_validates_and_applies_back() {
    let e = env();
    apply(&e, EXPORT);
    let exported = e.ok_key(&["export", "--kubernetes", "-A"]).stdout();
    let docs = yaml_docs(&exported);
    let ids = identities(&docs);
    assert_eq!(ids[0].0, "Mesh");
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in:\n{exported}"))
    };
    // The older kinds: cluster-scoped, a top-level mesh, fields under spec.
    let gw = find("MeshGateway");
    assert_eq!(gw["mesh"], "pay");
    assert!(gw["metadata"].get("namespace").is_none());
    assert_eq!(gw["spec"]["conf"]["listeners"][0]["port"], 443);
    // The newer ones: the mesh label, in the control plane's namespace.
    let id = find("MeshIdentity");
    assert_eq!(id["metadata"]["labels"]["kuma.io/mesh"], "pay");
    assert_eq!(id["metadata"]["namespace"], "kuma-system");
    let mesh = find("Mesh");
    assert!(mesh.get("mesh").is_none());
    assert_eq!(
        mesh["spec"]["mtls"]["backends"][0]["conf"]["cert"]["secret"],
        "ca-cert"
    );

    if let Some(validator) = crate::tools::external_tool("kubernetes-validate") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("export.yaml");
        std::fs::write(&file, &exported).unwrap();
        let out = Command::new(validator)
            .arg("--strict")
            .arg(&file)
            .output()
            .expect("run kubernetes-validate");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let passed = stdout
            .lines()
            .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource secret/"))
            .count();
        let failed: Vec<&str> = stdout
            .lines()
            .filter(|l| !l.starts_with("INFO ") && !l.contains("Couldn't find schema for kind"))
            .collect();
        assert!(
            out.status.success() && failed.is_empty() && passed == 8,
            "kubernetes-validate: {passed} Secrets passed\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Applied back into the same store: nothing changes.
    let before = e.snapshot();
    let again = apply(&e, &exported);
    assert_eq!(again.matches(" unchanged").count(), docs.len(), "{again}");
    assert_same(&before, &e.snapshot(), "re-applying the Kubernetes export");
    // Into a fresh store: the Universal export is the original's.
    let other = env();
    apply(&other, &exported);
    assert_eq!(
        other.ok_key(&["export", "--kuma", "-A"]).stdout(),
        e.ok_key(&["export", "--kuma", "-A"]).stdout()
    );
}

/// Kuma on Kubernetes keeps secrets as Secrets of one namespace: a name
/// used in two meshes (or a mesh and global) is one object there, and
/// `kubectl apply` would keep only the last. Every clash is listed.
#[test]
fn a_kubernetes_export_with_name_clashes_is_refused_with_the_list() {
    let e = env();
    e.add_mesh("web");
    e.create("pay", "db", "1");
    e.create("web", "db", "2");
    e.create_global("token", "3");
    e.create("pay", "token", "4");
    apply(
        &e,
        "type: Mesh\nname: web\n---\ntype: MeshGateway\nmesh: web\nname: edge\nconf:\n  listeners: []\n---\ntype: MeshGateway\nmesh: pay\nname: edge\nconf:\n  listeners: []\n",
    );
    let r = run(e.kcmd().args(["export", "--kubernetes", "-A"]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "nothing is printed");
    for line in [
        "error: Secret kuma-system/db would be exported 2 times: Secret pay/db, Secret web/db",
        "error: Secret kuma-system/token would be exported 2 times: GlobalSecret token, Secret pay/token",
        "error: MeshGateway edge would be exported 2 times: MeshGateway pay/edge (meshes/pay/policies/edge.yaml), MeshGateway web/edge (meshes/web/policies/edge.yaml)",
        "hint: Kuma on Kubernetes cannot hold them either",
        "nothing was exported",
    ] {
        assert!(r.stderr.contains(line), "missing {line:?} in:\n{}", r.stderr);
    }
    // One mesh at a time has no clash; Universal names are per mesh.
    e.ok_key(&["export", "--kubernetes", "-m", "pay"]);
    e.ok_key(&["export", "--kuma", "-A"]);
}

/// What apply refuses about resources, before anything is written.
#[test]
fn apply_judges_resources_before_writing() {
    let e = env();
    let before = e.snapshot();
    let bad = "type: Secret\nmesh: pay\nname: present\ndata: eA==\n---\ntype: MeshGateway\nmesh: pay\nname: edge\nconf:\n  listeners:\n    - port: 443\n      tls:\n        mode: TERMINATE\n        certificates:\n          - secret: absent\n---\ntype: MeshTimeout\nmesh: nowhere\nname: t\nspec: {}\n---\nitems:\n  - type: MeshGateway\n    mesh: pay\n    name: edge\n";
    let file = e.outside("bad.yaml", bad);
    let r = run(e.kcmd().args(["apply", "-f", file.to_str().unwrap()]));
    assert_eq!(r.code, Some(1));
    for line in [
        "bad.yaml: document 2: conf.listeners[0].tls.certificates[0]: could not load data: resource not found: type=\"Secret\" name=\"absent\" mesh=\"pay\"",
        "bad.yaml: document 3: mesh of name nowhere is not found",
        "bad.yaml: document 4: items[0]: MeshGateway pay/edge is also defined by document 2",
        "nothing was applied",
    ] {
        assert!(r.stderr.contains(line), "missing {line:?} in:\n{}", r.stderr);
    }
    assert_same(&before, &e.snapshot(), "a refused apply");
    // A dry run says where each would go, and writes nothing.
    let ok = "type: Mesh\nname: pay\n---\ntype: MeshTimeout\nmesh: pay\nname: t\nspec: {}\n";
    let r = run(e
        .kcmd()
        .args(["apply", "--dry-run", "-f", "-"])
        .write_stdin(ok));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout(),
        "Mesh pay created (meshes/pay/mesh.yaml) (dry run)\nMeshTimeout pay/t created (meshes/pay/policies/t.yaml) (dry run)\n"
    );
    assert!(!Path::new(&e.path("meshes/pay/mesh.yaml")).exists());
}
