//! When served certificates expire (SPEC 8): `/metrics` has each
//! certificate-holding secret's seconds to expiry, for the secrets the
//! caller's token may read, and the watcher warns about one that expires
//! within 30 days.

use std::process::Command;

use crate::env::TestEnv;

/// A self-signed certificate valid for `days`, made by openssl; `None`
/// (after a SKIPPED line, or a failure under CI) without openssl.
fn openssl_cert(e: &TestEnv, days: u32) -> Option<std::path::PathBuf> {
    let openssl = crate::tools::external_tool("openssl")?;
    let (cert, key) = (e.tmp().join("short.pem"), e.tmp().join("short.key"));
    let out = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=edge",
        ])
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
