//! When certificates expire (SPEC 8): `/metrics` has each
//! certificate-holding secret's seconds to expiry, for the secrets the
//! caller's token may read, and the watcher warns about one that expires
//! within 30 days; `check` (with a key) warns about a referenced one that
//! expires within 30 days (`--expiry-warning DAYS`) or has expired.

use std::process::Command;

use crate::env::TestEnv;

/// A self-signed certificate for `CN=edge` valid for `days`, made by
/// openssl; `None` (after a SKIPPED line, or a failure under CI) without
/// openssl.
fn openssl_cert(e: &TestEnv, days: u32) -> Option<std::path::PathBuf> {
    openssl_cert_for(e, "edge", days)
}

/// The same for `CN=<cn>`, in `<cn>.pem`.
fn openssl_cert_for(e: &TestEnv, cn: &str, days: u32) -> Option<std::path::PathBuf> {
    let openssl = crate::tools::external_tool("openssl")?;
    let (cert, key) = (
        e.tmp().join(format!("{cn}.pem")),
        e.tmp().join(format!("{cn}.key")),
    );
    let out = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj"])
        .arg(format!("/CN={cn}"))
        .arg("-days")
        .arg(days.to_string())
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(cert)
}

fn sample(metrics: &str, mesh: &str, name: &str) -> Option<i64> {
    let prefix = format!("meshseal_certificate_expiry_seconds{{mesh=\"{mesh}\",name=\"{name}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().expect("an integer"))
}

#[test]
fn metrics_tell_each_certificates_expiry_and_the_watcher_warns() {
    let (e, tokens) = TestEnv::serving();
    let Some(short) = openssl_cert(&e, 3) else {
        return;
    };
    e.ok_key(&[
        "create",
        "secret",
        "edge-cert",
        "-m",
        "payments",
        "--from-file",
        short.to_str().unwrap(),
    ]);
    e.create("payments", "db", "not-a-certificate");
    // A builtin CA (10 years) in mesh default, made by mtls init.
    e.write(
        "meshes/default/mesh.yaml",
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n    - name: ca-1\n      type: builtin\n",
    );
    e.ok_key(&["mtls", "init", "-m", "default"]);
    let w = e.watch(&[]);
    let (code, admin) = w.get("/metrics", Some(&tokens.admin));
    assert_eq!(code, 200);
    assert!(
        admin.contains("# TYPE meshseal_certificate_expiry_seconds gauge"),
        "{admin}"
    );
    let left = sample(&admin, "payments", "edge-cert").unwrap_or_else(|| panic!("{admin}"));
    assert!((2 * 86_400..3 * 86_400 + 60).contains(&left), "{left}");
    let ca = sample(&admin, "default", "default.ca-builtin-cert-ca-1")
        .unwrap_or_else(|| panic!("{admin}"));
    assert!(ca > 9 * 365 * 86_400, "{ca}");
    assert_eq!(
        sample(&admin, "default", "default.ca-builtin-key-ca-1"),
        None,
        "a key is no certificate"
    );
    assert_eq!(sample(&admin, "payments", "db"), None);
    // A mesh token sees its mesh's certificates only.
    let (_, mesh) = w.get("/metrics", Some(&tokens.payments));
    assert!(sample(&mesh, "payments", "edge-cert").is_some(), "{mesh}");
    assert!(!mesh.contains("ca-builtin"), "{mesh}");
    w.eventually("a warning about edge-cert", |w| {
        let log = w.log();
        log.contains("certificate expires soon") && log.contains("edge-cert")
    });
    assert!(
        !w.log().contains("ca-builtin-cert"),
        "a 10-year CA is not warned about:\n{}",
        w.log()
    );
    drop(w);
    // Without a token (--public-metrics), no secret is named.
    let w = e.watch(&["--public-metrics"]);
    let (code, public) = w.get("/metrics", None);
    assert_eq!(code, 200);
    assert!(
        !public.contains("edge-cert") && !public.contains("payments"),
        "{public}"
    );
}

/// Regression: a generation's expiries were computed at the first scrape of
/// `/metrics`, so an unscraped watcher never warned. Now each generation is
/// judged as it is published: at start, and after a change, with no
/// request made.
#[test]
fn the_watcher_warns_at_publish_without_a_scrape() {
    let (e, _tokens) = TestEnv::serving();
    let Some(short) = openssl_cert(&e, 5) else {
        return;
    };
    let pem = std::fs::read_to_string(&short).expect("the certificate");
    e.ok_key(&[
        "create",
        "secret",
        "edge-cert",
        "-m",
        "payments",
        "--from-file",
        short.to_str().unwrap(),
    ]);
    let w = e.watch(&[]);
    w.eventually("a warning about edge-cert at start", |w| {
        let log = w.log();
        log.contains("certificate expires soon") && log.contains("edge-cert")
    });
    // A certificate added while the watcher runs is warned about when its
    // generation is published.
    e.set("default", "gateway-cert", &pem);
    w.eventually("a warning about gateway-cert after the change", |w| {
        w.log()
            .lines()
            .any(|l| l.contains("certificate expires soon") && l.contains("gateway-cert"))
    });
    let log = w.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("certificate expires soon") && l.contains("edge-cert"))
            .count(),
        1,
        "a version is warned about once, not per generation:\n{log}"
    );
}

/// A MeshGateway (Kuma's Universal example, docs "MeshGateway": TERMINATE
/// listeners with `conf.listeners[].tls.certificates`) using `soon` and
/// `later`.
const GATEWAY: &str = r#"type: MeshGateway
mesh: default
name: edge-gateway
selectors:
  - match:
      kuma.io/service: edge-gateway
conf:
  listeners:
    - port: 443
      protocol: HTTPS
      hostname: soon.example.com
      tls:
        mode: TERMINATE
        certificates:
          - secret: soon-cert
    - port: 8443
      protocol: HTTPS
      hostname: later.example.com
      tls:
        mode: TERMINATE
        certificates:
          - secret: later-cert
"#;

/// A store whose gateway uses a certificate expiring in 5 days and one in
/// 60, beside an unreferenced one expiring in 5; `None` without openssl.
fn gateway_store() -> Option<TestEnv> {
    let e = TestEnv::new();
    let soon = openssl_cert_for(&e, "soon", 5)?;
    let later = openssl_cert_for(&e, "later", 60)?;
    for (name, file) in [
        ("soon-cert", &soon),
        ("later-cert", &later),
        ("spare", &soon),
    ] {
        e.ok_key(&[
            "create",
            "secret",
            name,
            "-m",
            "default",
            "--from-file",
            file.to_str().unwrap(),
        ]);
    }
    e.write("meshes/default/policies/edge-gateway.yaml", GATEWAY);
    Some(e)
}

#[test]
fn check_warns_about_a_referenced_certificate_expiring_within_30_days() {
    let Some(e) = gateway_store() else {
        return;
    };
    let r = e.ok_key(&["check"]);
    r.assert_stderr_has(
        "warning: meshes/default/secrets/soon-cert.age: certificate \"CN=soon\" expires in 5 day(s) (notAfter ",
    )
    .assert_stderr_has(
        "used by meshes/default/policies/edge-gateway.yaml (conf.listeners[0].tls.certificates[0])",
    )
    .assert_stderr_has("hint: renew the certificate, then store it with `meshseal apply -f FILE`")
    .assert_stdout_has("ok: 3 secret(s) checked (3 decrypted), 1 warning(s)");
    assert!(
        !r.stderr.contains("later-cert"),
        "60 days left: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("spare"), "not referenced: {}", r.stderr);
    assert_eq!(r.stderr.matches("warning:").count(), 1, "{}", r.stderr);
    // -o json: the warning says it is one; the exit code is still 0.
    let json = e.ok_key(&["check", "-o", "json"]).json();
    let entries = json.as_array().expect("an array");
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(entries[0]["severity"], "warning");
    assert_eq!(entries[0]["code"], "certificate-expires-soon");
    assert_eq!(entries[0]["file"], "meshes/default/secrets/soon-cert.age");
    // Keyless, check cannot read certificates and says nothing of them.
    let keyless = e.ok_args(&["check"]);
    assert!(!keyless.stderr.contains("warning:"), "{}", keyless.stderr);
}

#[test]
fn check_expiry_warning_sets_the_window() {
    let Some(e) = gateway_store() else {
        return;
    };
    // 90 days: both certificates of the gateway.
    let wide = e.ok_key(&["check", "--expiry-warning", "90"]);
    wide.assert_stderr_has("soon-cert.age: certificate \"CN=soon\" expires in 5 day(s)")
        .assert_stderr_has("later-cert.age: certificate \"CN=later\" expires in 60 day(s)")
        .assert_stdout_has("2 warning(s)");
    // 3 days: neither.
    let narrow = e.ok_key(&["check", "--expiry-warning", "3"]);
    assert!(!narrow.stderr.contains("warning:"), "{}", narrow.stderr);
    narrow.assert_stdout_has("ok: 3 secret(s) checked (3 decrypted)\n");
}

/// A self-signed certificate for `CN=old` that expired on 2020-02-01, made
/// by `openssl ca -selfsign` (`req -x509` cannot backdate); `None` without
/// openssl.
fn expired_cert(e: &TestEnv) -> Option<std::path::PathBuf> {
    let openssl = crate::tools::external_tool("openssl")?;
    let dir = e.tmp().join("old-ca");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("index.txt"), "").expect("write");
    std::fs::write(dir.join("serial"), "01\n").expect("write");
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = ca_default\n[ca_default]\ndir = .\ndatabase = ./index.txt\nnew_certs_dir = .\nserial = ./serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n",
    )
    .expect("write");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=old", "-keyout", "key.pem",
        "-out", "req.csr",
    ]);
    run(&[
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-selfsign",
        "-keyfile",
        "key.pem",
        "-in",
        "req.csr",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200201000000Z",
        "-notext",
        "-out",
        "cert.pem",
    ]);
    Some(dir.join("cert.pem"))
}

#[test]
fn check_reports_an_expired_referenced_certificate() {
    let e = TestEnv::new();
    let Some(old) = expired_cert(&e) else {
        return;
    };
    for name in ["soon-cert", "later-cert"] {
        e.ok_key(&[
            "create",
            "secret",
            name,
            "-m",
            "default",
            "--from-file",
            old.to_str().unwrap(),
        ]);
    }
    e.write("meshes/default/policies/edge-gateway.yaml", GATEWAY);
    // Whatever the window, an expired certificate is reported.
    let r = e.ok_key(&["check", "--expiry-warning", "0"]);
    r.assert_stderr_has(
        "warning: meshes/default/secrets/soon-cert.age: certificate \"CN=old\" has expired (notAfter 2020-02-01T00:00:00Z, ",
    )
    .assert_stderr_has("warning: meshes/default/secrets/later-cert.age: certificate \"CN=old\" has expired")
    .assert_stdout_has("2 warning(s)");
    let json = e.ok_key(&["check", "-o", "json"]).json();
    assert_eq!(json[0]["code"], "certificate-expired", "{json}");
}
