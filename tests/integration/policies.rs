//! Policies that use secrets, with real certificates made by openssl.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::{run, TestEnv};

/// A store whose meshes `pay` and `other` are encrypted to the store key.
fn env() -> TestEnv {
    let e = TestEnv::new();
    e.add_mesh("pay");
    e.add_mesh("other");
    e
}

/// `check` with or without the key: (success, stderr).
fn check(e: &TestEnv, key: bool) -> (bool, String) {
    let r = run(if key { e.kcmd() } else { e.cmd() }.arg("check"));
    (r.code == Some(0), r.stderr)
}

fn meshseal(e: &TestEnv, args: &[&str]) -> String {
    e.ok_key(args).stdout()
}

fn secret_from(e: &TestEnv, mesh: &str, name: &str, file: &Path) {
    meshseal(
        e,
        &[
            "create",
            "secret",
            name,
            "-m",
            mesh,
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (cert, key) files: a CA when `ca`, else a leaf without CA:true.
fn make_cert(dir: &Path, stem: &str, ca: bool) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{stem}.key"));
    let cert = dir.join(format!("{stem}.crt"));
    let ext = if ca {
        "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n"
    } else {
        "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\n"
    };
    let conf = dir.join(format!("{stem}.cnf"));
    fs::write(
        &conf,
        format!("[req]\ndistinguished_name=dn\n[dn]\n[ext]\n{ext}"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={stem}"),
            "-days",
            "30",
            "-config",
            conf.to_str().unwrap(),
            "-extensions",
            "ext",
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    (cert, key)
}

const PROVIDED_MESH: &str = "type = \"Mesh\"\nname = \"pay\"\n[mtls]\nenabled_backend = \"ca-1\"\n[[mtls.backends]]\nname = \"ca-1\"\ntype = \"provided\"\n[mtls.backends.conf]\ncert = { secret = \"ca-cert\" }\nkey = { secret = \"ca-key\" }\n";

#[test]
fn provided_ca_valid_non_ca_and_mismatched() {
    let e = env();
    let work = e.tmp().join("work");
    fs::create_dir_all(&work).unwrap();
    let (cert, key) = make_cert(&work, "good", true);
    e.write("meshes/pay/mesh.toml", PROVIDED_MESH);
    secret_from(&e, "pay", "ca-cert", &cert);
    secret_from(&e, "pay", "ca-key", &key);
    let (ok, err) = check(&e, true);
    assert!(ok, "a valid provided CA passes: {err}");

    // A leaf certificate is not a CA.
    let (leaf, leaf_key) = make_cert(&work, "leaf", false);
    meshseal(&e, &["delete", "secret", "ca-cert", "-m", "pay", "--force"]);
    meshseal(&e, &["delete", "secret", "ca-key", "-m", "pay", "--force"]);
    secret_from(&e, "pay", "ca-cert", &leaf);
    secret_from(&e, "pay", "ca-key", &leaf_key);
    let (ok, err) = check(&e, true);
    assert!(!ok);
    assert!(
        err.contains("meshes/pay/mesh.toml: mtls.backends[0]: cert: not a CA certificate"),
        "{err}"
    );

    // A key that belongs to another certificate.
    let (_, other_key) = make_cert(&work, "other", true);
    meshseal(&e, &["delete", "secret", "ca-cert", "-m", "pay", "--force"]);
    meshseal(&e, &["delete", "secret", "ca-key", "-m", "pay", "--force"]);
    secret_from(&e, "pay", "ca-cert", &cert);
    secret_from(&e, "pay", "ca-key", &other_key);
    let (ok, err) = check(&e, true);
    assert!(!ok);
    assert!(
        err.contains("key does not match the certificate's public key"),
        "{err}"
    );
    // Without a key the contents cannot be judged; the references resolve.
    assert!(check(&e, false).0);
}

#[test]
fn references_follow_kumas_scope_rule() {
    let e = env();
    e.write("meshes/pay/mesh.toml", PROVIDED_MESH);
    meshseal(
        &e,
        &["create", "global-secret", "ca-cert", "--from-literal", "x"],
    );
    meshseal(
        &e,
        &[
            "create",
            "secret",
            "ca-key",
            "-m",
            "other",
            "--from-literal",
            "x",
        ],
    );
    let (ok, err) = check(&e, false);
    assert!(!ok);
    assert!(
        err.contains("global-scoped secret \"ca-cert\" cannot be used in mesh policies"),
        "{err}"
    );
    assert!(
        err.contains(
            "could not load data: resource not found: type=\"Secret\" name=\"ca-key\" mesh=\"pay\""
        ),
        "another mesh's secret is simply not found: {err}"
    );
    // One bad policy does not hide another's state.
    e.write(
        "meshes/pay/policies/bin.toml",
        "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking]\naddress = \"httpbin.org:443\"\n[networking.tls]\ncaCert = { secret = \"missing-ca\" }\n",
    );
    e.write(
        "meshes/pay/policies/mes.toml",
        "type = \"MeshExternalService\"\nmesh = \"pay\"\nname = \"mes\"\n[spec.tls.verification]\nclientCert = { inline = \"YQ==\" }\n",
    );
    let (_, err) = check(&e, false);
    assert!(
        err.contains("meshes/pay/policies/bin.toml: networking.tls.caCert: could not load data"),
        "{err}"
    );
    assert!(err.contains("meshes/pay/policies/mes.toml: spec.tls.verification.clientKey: must be defined when clientCert is defined"), "{err}");
}

#[test]
fn delete_in_use_is_refused_and_the_file_kept() {
    let e = env();
    meshseal(
        &e,
        &[
            "create",
            "secret",
            "tls-cert",
            "-m",
            "pay",
            "--from-literal",
            "pem",
        ],
    );
    e.write(
        "meshes/pay/policies/gw.toml",
        "type = \"MeshGateway\"\nmesh = \"pay\"\nname = \"gw\"\n[[conf.listeners]]\nport = 443\nprotocol = \"HTTPS\"\n[conf.listeners.tls]\nmode = \"TERMINATE\"\ncertificates = [{ secret = \"tls-cert\" }]\n",
    );
    // Refused, naming the policy and field, and the store is untouched.
    e.refuses(
        e.kcmd().args(["delete", "secret", "tls-cert", "-m", "pay"]),
        1,
        &["meshes/pay/policies/gw.toml (conf.listeners[0].tls.certificates[0])"],
    );
    assert!(e.path("meshes/pay/secrets/tls-cert.age").exists());
    meshseal(
        &e,
        &["delete", "secret", "tls-cert", "-m", "pay", "--force"],
    );
    assert!(!e.path("meshes/pay/secrets/tls-cert.age").exists());
    let (ok, err) = check(&e, false);
    assert!(!ok && err.contains("resource not found"), "{err}");
}

#[test]
fn mtls_init_creates_a_ca_that_openssl_accepts() {
    let e = env();
    e.write(
        "meshes/pay/mesh.toml",
        "type = \"Mesh\"\nname = \"pay\"\n[mtls]\nenabled_backend = \"ca-1\"\n[[mtls.backends]]\nname = \"ca-1\"\ntype = \"builtin\"\n",
    );
    let (ok, err) = check(&e, false);
    assert!(!ok);
    assert!(err.contains("builtin CA secrets are missing"), "{err}");
    assert!(err.contains("meshseal mtls init -m pay"), "{err}");
    let out = meshseal(&e, &["mtls", "init", "-m", "pay"]);
    assert!(out.contains("pay.ca-builtin-cert-ca-1"), "{out}");
    assert!(meshseal(&e, &["mtls", "init", "-m", "pay"]).contains("nothing to do"));
    let (ok, err) = check(&e, true);
    assert!(ok, "{err}");
    let pem = meshseal(
        &e,
        &[
            "get",
            "secret",
            "pay.ca-builtin-cert-ca-1",
            "-m",
            "pay",
            "-o",
            "raw",
        ],
    );
    let cert = e.tmp().join("ca.pem");
    fs::write(&cert, pem).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign"), "{text}");
    assert!(
        text.contains("CN=pay") || text.contains("CN = pay"),
        "{text}"
    );
    // The key is PEM and matches the cert (check with a key verified it too).
    let key = meshseal(
        &e,
        &[
            "get",
            "secret",
            "pay.ca-builtin-key-ca-1",
            "-m",
            "pay",
            "-o",
            "raw",
        ],
    );
    assert!(key.contains("PRIVATE KEY"));
    // The in-use rule covers builtin CA secrets.
    e.refuses(
        e.kcmd()
            .args(["delete", "secret", "pay.ca-builtin-key-ca-1", "-m", "pay"]),
        1,
        &["mtls.backends[0]"],
    );
}
