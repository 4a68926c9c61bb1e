//! Policies that use secrets, with real certificates made by openssl.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use tempfile::TempDir;

struct Env {
    dir: TempDir,
    identity: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join("id.txt");
        let e = Env { dir, identity };
        e.ok(&["keygen", "-o", e.identity.to_str().unwrap()]);
        e.ok(&["init"]);
        let public = fs::read_to_string(&e.identity)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
            .unwrap();
        e.ok(&["recipients", "add", "-m", "pay", &public]);
        e.ok(&["recipients", "add", "-m", "other", &public]);
        e
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn run(&self, args: &[&str], key: bool) -> Output {
        let mut c = Command::cargo_bin("meshseal").unwrap();
        c.current_dir(self.root())
            .args(args)
            .env_remove("MESHSEAL_IDENTITY");
        c.env("HOME", self.root().join("home"))
            .env("XDG_CONFIG_HOME", self.root().join("home"));
        if key {
            c.env("MESHSEAL_IDENTITY", &self.identity);
        }
        c.output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, true);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
    fn check(&self, key: bool) -> (bool, String) {
        let out = self.run(&["check"], key);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    fn secret_from(&self, mesh: &str, name: &str, file: &Path) {
        self.ok(&[
            "create",
            "secret",
            name,
            "-m",
            mesh,
            "--from-file",
            file.to_str().unwrap(),
        ]);
    }
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
    let e = Env::new();
    let work = e.root().join("work");
    fs::create_dir_all(&work).unwrap();
    let (cert, key) = make_cert(&work, "good", true);
    e.write("meshes/pay/mesh.toml", PROVIDED_MESH);
    e.secret_from("pay", "ca-cert", &cert);
    e.secret_from("pay", "ca-key", &key);
    let (ok, err) = e.check(true);
    assert!(ok, "a valid provided CA passes: {err}");

    // A leaf certificate is not a CA.
    let (leaf, leaf_key) = make_cert(&work, "leaf", false);
    e.ok(&["delete", "secret", "ca-cert", "-m", "pay", "--force"]);
    e.ok(&["delete", "secret", "ca-key", "-m", "pay", "--force"]);
    e.secret_from("pay", "ca-cert", &leaf);
    e.secret_from("pay", "ca-key", &leaf_key);
    let (ok, err) = e.check(true);
    assert!(!ok);
    assert!(
        err.contains("meshes/pay/mesh.toml: mtls.backends[ca-1]: cert: not a CA certificate"),
        "{err}"
    );

    // A key that belongs to another certificate.
    let (_, other_key) = make_cert(&work, "other", true);
    e.ok(&["delete", "secret", "ca-cert", "-m", "pay", "--force"]);
    e.ok(&["delete", "secret", "ca-key", "-m", "pay", "--force"]);
    e.secret_from("pay", "ca-cert", &cert);
    e.secret_from("pay", "ca-key", &other_key);
    let (ok, err) = e.check(true);
    assert!(!ok);
    assert!(
        err.contains("key does not match the certificate's public key"),
        "{err}"
    );
    // Without a key the contents cannot be judged; the references resolve.
    assert!(e.check(false).0);
}

#[test]
fn references_follow_kumas_scope_rule() {
    let e = Env::new();
    e.write("meshes/pay/mesh.toml", PROVIDED_MESH);
    e.ok(&["create", "global-secret", "ca-cert", "--from-literal", "x"]);
    e.ok(&[
        "create",
        "secret",
        "ca-key",
        "-m",
        "other",
        "--from-literal",
        "x",
    ]);
    let (ok, err) = e.check(false);
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
        "type = \"MeshExternalService\"\nmesh = \"pay\"\nname = \"mes\"\n[tls.verification]\nclientCert = { inline = \"YQ==\" }\n",
    );
    let (_, err) = e.check(false);
    assert!(
        err.contains("meshes/pay/policies/bin.toml: networking.tls.caCert: could not load data"),
        "{err}"
    );
    assert!(err.contains("meshes/pay/policies/mes.toml: tls.verification: clientCert and clientKey must be set together"), "{err}");
}

#[test]
fn delete_in_use_is_refused_and_the_file_kept() {
    let e = Env::new();
    e.ok(&[
        "create",
        "secret",
        "tls-cert",
        "-m",
        "pay",
        "--from-literal",
        "pem",
    ]);
    e.write(
        "meshes/pay/policies/gw.toml",
        "type = \"MeshGateway\"\nmesh = \"pay\"\nname = \"gw\"\n[[listeners]]\nport = 443\nprotocol = \"HTTPS\"\n[listeners.tls]\nmode = \"TERMINATE\"\ncertificates = [{ secret = \"tls-cert\" }]\n",
    );
    let out = e.run(&["delete", "secret", "tls-cert", "-m", "pay"], true);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("meshes/pay/policies/gw.toml (listeners[0].tls.certificates[0])"),
        "{err}"
    );
    assert!(e.root().join("meshes/pay/secrets/tls-cert.age").exists());
    e.ok(&["delete", "secret", "tls-cert", "-m", "pay", "--force"]);
    assert!(!e.root().join("meshes/pay/secrets/tls-cert.age").exists());
    let (ok, err) = e.check(false);
    assert!(!ok && err.contains("resource not found"), "{err}");
}

#[test]
fn mtls_init_creates_a_ca_that_openssl_accepts() {
    let e = Env::new();
    e.write(
        "meshes/pay/mesh.toml",
        "type = \"Mesh\"\nname = \"pay\"\n[mtls]\nenabled_backend = \"ca-1\"\n[[mtls.backends]]\nname = \"ca-1\"\ntype = \"builtin\"\n",
    );
    let (ok, err) = e.check(false);
    assert!(!ok);
    assert!(err.contains("builtin CA secrets are missing"), "{err}");
    assert!(err.contains("meshseal mtls init -m pay"), "{err}");
    let out = e.ok(&["mtls", "init", "-m", "pay"]);
    assert!(out.contains("pay.ca-builtin-cert-ca-1"), "{out}");
    assert!(e
        .ok(&["mtls", "init", "-m", "pay"])
        .contains("nothing to do"));
    let (ok, err) = e.check(true);
    assert!(ok, "{err}");
    let pem = e.ok(&[
        "get",
        "secret",
        "pay.ca-builtin-cert-ca-1",
        "-m",
        "pay",
        "-o",
        "raw",
    ]);
    let cert = e.root().join("ca.pem");
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
    let key = e.ok(&[
        "get",
        "secret",
        "pay.ca-builtin-key-ca-1",
        "-m",
        "pay",
        "-o",
        "raw",
    ]);
    assert!(key.contains("PRIVATE KEY"));
    // The in-use rule covers builtin CA secrets.
    let out = e.run(
        &["delete", "secret", "pay.ca-builtin-key-ca-1", "-m", "pay"],
        true,
    );
    assert_eq!(out.status.code(), Some(1));
}
