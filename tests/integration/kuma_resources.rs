//! Kuma's own resources in Kuma's own shapes (SPEC 8, issue 14): Mesh and
//! policy resources as Universal YAML, Kubernetes YAML and TOML, one or
//! several per file, judged through `check` with Kuma's field paths and
//! texts. Fixtures follow Kuma's documented examples and validator tests;
//! each test names the Kuma source (kumahq/kuma v2.14.3 or main) it follows.

use crate::env::{run, TestEnv};

fn env() -> TestEnv {
    let e = TestEnv::new();
    e.add_mesh("pay");
    e
}

/// `check` without the key: (success, stderr).
fn check(e: &TestEnv) -> (bool, String) {
    let r = run(e.cmd().arg("check"));
    (r.code == Some(0), r.stderr)
}

fn secret(e: &TestEnv, mesh: &str, name: &str) {
    e.ok_key(&["create", "secret", name, "-m", mesh, "--from-literal", "x"]);
}

fn has_all(err: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(err.contains(w), "missing {w:?} in:\n{err}");
    }
}

/// Kuma docs "External Service" (Universal), "MeshExternalService" and
/// "Delegated gateways / MeshGateway" (Universal `conf.listeners`), in one
/// multi-document file. Shapes: pkg/core/resources/apis/mesh
/// (external_service_validator.go, gateway_validator.go) and
/// pkg/core/resources/apis/meshexternalservice/api/v1alpha1/validator.go.
const UNIVERSAL: &str = r#"
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
    clientCert:
      secret: httpbin-cert
    clientKey:
      secret: httpbin-key
---
type: MeshExternalService
name: mes-http
mesh: pay
spec:
  match:
    type: HostnameGenerator
    port: 443
    protocol: http
  endpoints:
    - address: example.com
      port: 443
  tls:
    enabled: true
    verification:
      mode: Secured
      caCert:
        secret: mes-ca
---
type: MeshGateway
mesh: pay
name: edge-gateway
selectors:
  - match:
      kuma.io/service: edge-gateway
conf:
  listeners:
    - port: 8443
      protocol: HTTPS
      hostname: foo.example.com
      tls:
        mode: TERMINATE
        certificates:
          - secret: foo-example-com-certificate
"#;

#[test]
fn universal_yaml_references_resolve_with_kumas_field_paths() {
    let e = env();
    e.write("meshes/pay/policies/edge.yaml", UNIVERSAL);
    let (ok, err) = check(&e);
    assert!(!ok);
    let nf = |n: &str| {
        format!(
            "could not load data: resource not found: type=\"Secret\" name=\"{n}\" mesh=\"pay\""
        )
    };
    has_all(
        &err,
        &[
            &format!(
                "meshes/pay/policies/edge.yaml: document 1: networking.tls.caCert: {}",
                nf("httpbin-ca")
            ),
            &format!("networking.tls.clientKey: {}", nf("httpbin-key")),
            &format!("document 2: spec.tls.verification.caCert: {}", nf("mes-ca")),
            &format!(
                "document 3: conf.listeners[0].tls.certificates[0]: {}",
                nf("foo-example-com-certificate")
            ),
        ],
    );
    for n in [
        "httpbin-ca",
        "httpbin-cert",
        "httpbin-key",
        "mes-ca",
        "foo-example-com-certificate",
    ] {
        secret(&e, "pay", n);
    }
    let (ok, err) = check(&e);
    assert!(ok, "every reference resolves: {err}");
}

/// Kuma's Kubernetes form: `metadata.labels["kuma.io/mesh"]` for the newer
/// resources, the top-level `mesh` for the older ones, fields under `spec`
/// (Kuma docs "MeshExternalService" Kubernetes tab; deployments/charts CRDs).
#[test]
fn kubernetes_yaml_and_the_mesh_label() {
    let e = env();
    e.write(
        "meshes/pay/policies/k8s.yaml",
        r#"apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: example
  namespace: kuma-system
  labels:
    kuma.io/mesh: pay
spec:
  match:
    type: HostnameGenerator
    port: 443
    protocol: tcp
  endpoints:
    - address: example.com
      port: 443
  tls:
    enabled: true
    verification:
      clientCert:
        secret: client-cert
      clientKey:
        secret: client-key
---
apiVersion: kuma.io/v1alpha1
kind: ExternalService
mesh: pay
metadata:
  name: httpbin
spec:
  tags:
    kuma.io/service: httpbin
  networking:
    address: httpbin.org:443
    tls:
      caCert:
        secret: ca
"#,
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "k8s.yaml: document 1: spec.tls.verification.clientCert: could not load data",
            "spec.tls.verification.clientKey: could not load data",
            "document 2: spec.networking.tls.caCert: could not load data",
        ],
    );
    // A label that disagrees with the folder is the folder's mesh's error.
    e.write(
        "meshes/pay/policies/k8s.yaml",
        "apiVersion: kuma.io/v1alpha1\nkind: MeshTimeout\nmetadata:\n  name: t\n  labels:\n    kuma.io/mesh: web\nspec: {}\n",
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &["metadata.labels[\"kuma.io/mesh\"]: \"web\" does not match its path (\"pay\")"],
    );
    // An unknown kind with the right mesh loads and is not judged.
    e.write(
        "meshes/pay/policies/k8s.yaml",
        "apiVersion: kuma.io/v1alpha1\nkind: MeshTimeout\nmetadata:\n  name: t\n  labels:\n    kuma.io/mesh: pay\nspec:\n  default:\n    secret: not-a-reference\n",
    );
    let (ok, err) = check(&e);
    assert!(ok, "{err}");
}

/// pkg/core/resources/apis/mesh/mesh_validator.go (backend count, names,
/// enabledBackend) and pkg/plugins/ca/provided/manager.go (cert and key
/// each "has to be defined", both reported), in a Kubernetes-form mesh.yaml.
#[test]
fn mesh_yaml_mtls_rules_all_reported() {
    let e = env();
    e.write(
        "meshes/pay/mesh.yaml",
        r#"apiVersion: kuma.io/v1alpha1
kind: Mesh
metadata:
  name: pay
spec:
  mtls:
    enabledBackend: ca-3
    backends:
      - name: ca-1
        type: provided
        conf: {}
      - name: ca-2
        type: builtin
"#,
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "meshes/pay/mesh.yaml: spec.mtls.backends: cannot have more than 1 backends",
            "spec.mtls.backends[0].conf.cert: has to be defined",
            "spec.mtls.backends[0].conf.key: has to be defined",
            "spec.mtls.enabledBackend: has to be set to one of the backends in the mesh",
        ],
    );
    // mesh.yaml and mesh.toml at once.
    e.write(
        "meshes/pay/mesh.yaml",
        "type: Mesh\nname: pay\nmtls:\n  enabledBackend: ca-1\n  backends:\n    - name: ca-1\n      type: provided\n      conf:\n        cert:\n          secret: ca-cert\n        key:\n          inline: \"\"\n",
    );
    e.write("meshes/pay/mesh.toml", "type = \"Mesh\"\nname = \"pay\"\n");
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "meshes/pay/mesh.toml: both mesh.yaml and mesh.toml define the Mesh \"pay\"",
            "mtls.backends[0].conf.key.inline: cannot be empty",
        ],
    );
}

/// pkg/core/resources/apis/meshidentity/api/v1alpha1/validator.go and
/// api/common/v1alpha1/datasource/datasource.go (ValidateSecureDataSource):
/// Kuma docs "MeshIdentity" bundled CA from a Secret.
#[test]
fn mesh_identity_bundled_ca_secret_refs() {
    let e = env();
    e.ok_key(&["create", "global-secret", "ca-key", "--from-literal", "x"]);
    let identity = |cert: &str, key: &str| {
        format!(
            "type: MeshIdentity\nname: identity\nmesh: pay\nspec:\n  selector:\n    dataplane:\n      matchLabels: {{}}\n  spiffeID:\n    trustDomain: \"{{{{ .Mesh }}}}.{{{{ .Zone }}}}.mesh.local\"\n  provider:\n    type: Bundled\n    bundled:\n      meshTrustCreation: Enable\n      insecureAllowSelfSigned: true\n      ca:\n        certificate:\n{cert}        privateKey:\n{key}"
        )
    };
    let secret_ref = |n: &str| {
        format!("          type: Secret\n          secretRef:\n            kind: Secret\n            name: {n}\n")
    };
    e.write(
        "meshes/pay/policies/identity.yaml",
        identity(&secret_ref("ca-cert"), &secret_ref("ca-key")),
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "spec.provider.bundled.ca.certificate: could not load data: resource not found: type=\"Secret\" name=\"ca-cert\" mesh=\"pay\"",
            "spec.provider.bundled.ca.privateKey: global-scoped secret \"ca-key\" cannot be used in mesh policies",
        ],
    );
    // Every variant's rule at once: empty inline value, a relative file, a
    // secretRef of another kind.
    e.write(
        "meshes/pay/policies/identity.yaml",
        identity(
            "          type: InsecureInline\n          insecureInline:\n            value: \"\"\n",
            "          type: Secret\n          secretRef:\n            kind: ConfigMap\n            name: ca-key\n",
        ),
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "spec.provider.bundled.ca.certificate.insecureInline.value: must be defined",
            "spec.provider.bundled.ca.privateKey.secretRef.kind: ConfigMap must be one of: Secret",
        ],
    );
    e.write(
        "meshes/pay/policies/identity.yaml",
        identity(
            "          type: File\n          file:\n            path: /etc/ca.pem\n",
            "          type: File\n          file:\n            path: etc/ca.key\n",
        ),
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &["spec.provider.bundled.ca.privateKey.file.path: file path must be absolute: etc/ca.key"],
    );
    secret(&e, "pay", "ca-cert");
    secret(&e, "pay", "ca-key");
    e.write(
        "meshes/pay/policies/identity.yaml",
        identity(&secret_ref("ca-cert"), &secret_ref("ca-key")),
    );
    let (ok, err) = check(&e);
    assert!(ok, "{err}");
}

/// pkg/core/resources/apis/meshtrust/api/v1alpha1/validator.go
/// ("provided certificate has incorrect format", type must be Pem), in TOML
/// that mirrors Universal YAML key for key.
#[test]
fn mesh_trust_bundles_in_toml() {
    let e = env();
    e.write(
        "meshes/pay/policies/trust.toml",
        "type = \"MeshTrust\"\nname = \"trust\"\nmesh = \"pay\"\n[spec]\ntrustDomain = \"pay.mesh.local\"\n[[spec.caBundles]]\ntype = \"Pem\"\npem = { value = \"not a certificate\" }\n[[spec.caBundles]]\ntype = \"Der\"\n",
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "meshes/pay/policies/trust.toml: spec.caBundles[0].pem.value: provided certificate has incorrect format",
            "spec.caBundles[1].type: Der must be one of: Pem",
        ],
    );
}

/// pkg/core/resources/apis/mesh/gateway_validator.go: TERMINATE needs 1 or
/// 2 certificates; pkg/core/datasource/validator.go: a data source is one
/// variant, non-empty.
#[test]
fn gateway_certificates_and_data_source_variants() {
    let e = env();
    e.write(
        "meshes/pay/policies/gw.yaml",
        r#"type: MeshGateway
mesh: pay
name: gw
conf:
  listeners:
    - port: 443
      protocol: HTTPS
      tls:
        mode: TERMINATE
    - port: 8443
      protocol: HTTPS
      tls:
        mode: TERMINATE
        certificates:
          - secret: a
          - secret: b
          - secret: c
    - port: 9443
      protocol: HTTPS
      tls:
        mode: TERMINATE
        certificates:
          - secret: a
            inline: YQ==
          - {}
"#,
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "conf.listeners[0].tls.certificates: cannot be empty in TLS termination mode",
            "conf.listeners[1].tls.certificates: cannot have more than 2 certificates",
            "conf.listeners[2].tls.certificates[0]: must have exactly one of",
            "conf.listeners[2].tls.certificates[1]: data source has to be chosen. Available sources: secret, file, inline",
        ],
    );
}

/// Bad input: malformed YAML names file and line; a Mesh among policies, a
/// duplicate name within a kind, an invalid name each one clear error.
#[test]
fn bad_documents_are_named() {
    let e = env();
    e.write(
        "meshes/pay/policies/bad.yaml",
        "type: MeshGateway\nconf: [\n",
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    assert!(err.contains("meshes/pay/policies/bad.yaml:"), "{err}");
    assert!(err.contains("invalid YAML"), "{err}");
    e.write(
        "meshes/pay/policies/bad.yaml",
        "type: Mesh\nname: pay\n---\ntype: MeshTimeout\nmesh: pay\nname: t\n---\ntype: MeshTimeout\nmesh: pay\nname: t\n---\ntype: MeshRetry\nmesh: pay\nname: Not_Valid\n",
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "document 1: type: a Mesh belongs in meshes/pay/mesh.yaml",
            "document 3: resource already exists: type=\"MeshTimeout\" name=\"t\" mesh=\"pay\" (also defined in document 2)",
            "document 4: name: ",
        ],
    );
}

/// Issue 14: with a key that does not open a mesh's files, the builtin CA
/// secrets and the referenced secrets are there, so `check` says "cannot
/// decrypt", never "missing" / "run mtls init" / "not found".
#[test]
fn a_key_that_does_not_open_the_files_is_not_missing() {
    let e = env();
    e.write(
        "meshes/pay/mesh.yaml",
        "type: Mesh\nname: pay\nmtls:\n  enabledBackend: ca-1\n  backends:\n    - name: ca-1\n      type: builtin\n",
    );
    e.write(
        "meshes/pay/policies/es.yaml",
        "type: ExternalService\nmesh: pay\nname: httpbin\nnetworking:\n  address: httpbin.org:443\n  tls:\n    caCert:\n      secret: httpbin-ca\n",
    );
    e.ok_key(&["mtls", "init", "-m", "pay"]);
    secret(&e, "pay", "httpbin-ca");
    let r = run(e.kcmd().arg("check"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let other = e.tmp().join("other-key.txt");
    e.ok_key(&["keygen", "-o", other.to_str().unwrap()]);
    let r = run(e.cmd().args(["-i", other.to_str().unwrap(), "check"]));
    assert_ne!(r.code, Some(0));
    has_all(
        &r.stderr,
        &[
            "meshes/pay/mesh.yaml: mtls.backends[0]: cannot decrypt secret(s) pay.ca-builtin-cert-ca-1, pay.ca-builtin-key-ca-1 of mesh \"pay\" with the given identities: the file exists",
            "meshes/pay/policies/es.yaml: networking.tls.caCert: cannot decrypt secret(s) httpbin-ca",
        ],
    );
    for wrong in [
        "builtin CA secrets are missing",
        "mtls init",
        "resource not found",
    ] {
        assert!(!r.stderr.contains(wrong), "{wrong:?} in:\n{}", r.stderr);
    }
}

/// pkg/api-server/resource_endpoints.go: every label key is a qualified
/// name and every value a label value (apimachinery's texts), and a
/// Universal resource's kuma.io/mesh label agrees with its mesh.
#[test]
fn labels_follow_kumas_api_server() {
    let e = env();
    e.write(
        "meshes/pay/policies/labels.yaml",
        format!(
            "type: MeshTimeout\nmesh: pay\nname: t\nlabels:\n  kuma.io/mesh: web\n  Bad Key: x\n  app: \"not valid!!\"\n  long: {}\n",
            "a".repeat(64)
        ),
    );
    let (ok, err) = check(&e);
    assert!(!ok);
    has_all(
        &err,
        &[
            "labels[\"kuma.io/mesh\"]: kuma.io/mesh label must not differ from mesh set on resource",
            "labels[\"Bad Key\"]: name part must consist of alphanumeric characters",
            "labels[\"app\"]: a valid label must be an empty string or consist of alphanumeric characters",
            "labels[\"long\"]: must be no more than 63 characters",
        ],
    );
    e.write(
        "meshes/pay/policies/labels.yaml",
        "type: MeshTimeout\nmesh: pay\nname: t\nlabels:\n  kuma.io/mesh: pay\n  example.com/My_name.1: my_value\n  empty: \"\"\n",
    );
    let (ok, err) = check(&e);
    assert!(ok, "{err}");
}

mod apply_export;
mod duplicates;
mod expiry;
