//! The watcher on a shared host (SPEC 11): what a local user, a cache or a
//! proxy, or a network neighbour could otherwise get at.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use crate::env::{b64, chmod, nobodys_copy, run, spawnable, TestEnv};
use crate::tools::external_tool;
use crate::watcher::{served, Watcher};

/// The raw response (head and body) of one GET.
fn raw_get(addr: &str, path: &str, token: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[test]
fn secret_responses_are_not_cacheable() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "hunter2");
    let w = env.watch(&[]);
    for path in [
        "/meshes/payments/secrets/db",
        "/meshes/payments/secrets",
        "/status",
    ] {
        let r = raw_get(&w.addr, path, Some(&tokens.admin));
        assert!(status_line(&r).contains(" 200 "), "{r}");
        assert!(
            r.to_ascii_lowercase()
                .contains("\r\ncache-control: no-store\r\n"),
            "{path}: {r}"
        );
    }
}

#[test]
fn metrics_need_a_token_unless_public() {
    let (env, tokens) = TestEnv::serving();
    let w = env.watch(&[]);
    assert_eq!(w.get("/metrics", None).0, 401);
    let (code, body) = w.get("/metrics", Some(&tokens.payments));
    assert_eq!(code, 200);
    assert!(body.contains("meshseal_decrypted_total"), "{body}");
    drop(w);
    let w = env.watch(&["--public-metrics"]);
    assert_eq!(w.get("/metrics", None).0, 200);
}

#[test]
fn the_audit_log_has_every_secret_read_and_never_data() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "planted-audit-value");
    let audit = env.tmp().join("audit.jsonl");
    let w = env.watch(&["--audit", audit.to_str().unwrap()]);
    assert!(served(&w, &tokens.payments, "payments", "db").is_some());
    assert_eq!(w.get("/global-secrets", Some(&tokens.payments)).0, 403);
    assert_eq!(w.get("/meshes/payments/secrets/db", None).0, 401);
    assert_eq!(w.get("/ready", None).0, 200);
    drop(w);
    let text = fs::read_to_string(&audit).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "one line per secret request, none for /ready:\n{text}"
    );
    assert_eq!(lines[0]["resource"], "/meshes/payments/secrets/db");
    assert_eq!(lines[0]["result"], "allowed");
    assert_eq!(lines[0]["scope"], "mesh:payments");
    assert!(lines[0]["token"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(lines[1]["result"], "denied");
    assert_eq!(lines[2]["status"], 401);
    assert!(lines[2].get("token").is_none());
    for secret in [
        b64("planted-audit-value"),
        "planted-audit-value".to_string(),
    ] {
        assert!(!text.contains(&secret), "the audit log holds data:\n{text}");
    }
    for token in [&tokens.payments, &tokens.admin] {
        assert!(
            !text.contains(token.as_str()),
            "the audit log holds a token"
        );
    }
    assert_eq!(crate::env::mode_of(&audit), 0o600);
}

#[test]
fn plain_http_beyond_loopback_needs_tls_or_a_flag() {
    let (env, _) = TestEnv::serving();
    let tokens = env.tokens_file();
    let r = run(env.kcmd_at(&env.root).args([
        "watch",
        "--listen",
        "0.0.0.0:0",
        "--tokens",
        tokens.to_str().unwrap(),
    ]))
    .failure(1);
    r.assert_stderr_has(
        "error: refusing to serve plain HTTP on 0.0.0.0:0, which is not a loopback address",
    );
    r.assert_stderr_has("hint: serve TLS with --tls-cert FILE --tls-key FILE");
    // With the flag it serves.
    let w = Watcher::start(spawnable(env.kcmd_at(&env.root).args([
        "watch",
        "--listen",
        "0.0.0.0:0",
        "--insecure-listen",
        "--tokens",
        tokens.to_str().unwrap(),
    ])));
    let port = w.addr.rsplit(':').next().unwrap().to_string();
    let (code, _) = crate::watcher::http(&format!("127.0.0.1:{port}"), "GET", "/ready", None);
    assert_eq!(code, 200);
}

#[test]
fn the_api_serves_tls_with_a_certificate_and_key() {
    if external_tool("openssl").is_none() {
        return;
    }
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "over-tls");
    let dir = env.tmp();
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    let made = StdCommand::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tokens_file = env.tokens_file();
    let w = Watcher::start(spawnable(env.kcmd_at(&env.root).args([
        "watch",
        "--listen",
        "0.0.0.0:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tokens",
        tokens_file.to_str().unwrap(),
    ])));
    assert!(w.log().contains("listening on https://"), "{}", w.log());
    let port = w.addr.rsplit(':').next().unwrap().to_string();
    let request = format!(
        "GET /meshes/payments/secrets/db HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        tokens.admin
    );
    let mut client = StdCommand::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    client
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 200 "), "{text}");
    assert!(text.contains(&b64("over-tls")), "{text}");
    // Plain HTTP on the TLS port gets nothing.
    let mut plain = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = plain.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}

#[test]
fn a_tokens_file_that_others_can_write_is_refused() {
    let (env, _) = TestEnv::serving();
    let tokens = env.tokens_file();
    chmod(&tokens, 0o622);
    let r = run(env.kcmd_at(&env.root).args([
        "watch",
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        tokens.to_str().unwrap(),
    ]))
    .failure(1);
    r.assert_stderr_has(
        "can be written by group or others: anyone who can write it can add an admin token",
    );
    r.assert_stderr_has("hint: chmod go-w");
    chmod(&tokens, 0o600);
    let folder = tokens.parent().unwrap();
    let old = crate::env::mode_of(folder);
    chmod(folder, 0o777);
    let r =
        run(env
            .kcmd_at(&env.root)
            .args(["watch", "--once", "--tokens", tokens.to_str().unwrap()]))
        .failure(1);
    chmod(folder, old);
    r.assert_stderr_has("can be written by its folder's group or others");
}

/// `VmLck` of a process, in kB.
pub(crate) fn locked_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_watcher_locks_its_memory_and_is_not_dumpable() {
    let (env, _) = TestEnv::serving();
    let w = env.watch(&[]);
    let pid = w.child.id();
    let log = w.log();
    assert!(log.contains("process hardened"), "{log}");
    let euid = unsafe_free_euid();
    if euid == 0 {
        // Root may lock without limit.
        assert!(log.contains("memory_locked=true"), "{log}");
        assert!(locked_kb(pid) > 0, "VmLck is 0");
    } else {
        assert!(
            log.contains("memory_locked=true") || log.contains("memory not locked"),
            "{log}"
        );
    }
    assert!(log.contains("not_dumpable=true"), "{log}");
    // A non-dumpable process's /proc files belong to root, whoever runs it;
    // with a dumpable one run by root this cannot be told apart, so ask
    // the kernel through a process run as another user below.
    drop(w);
    if euid == 0 && Path::new("/usr/bin/setpriv").exists() {
        let w = as_nobody(&env);
        let owner = fs::metadata(format!("/proc/{}/status", w.child.id()))
            .unwrap()
            .uid();
        assert_eq!(
            owner,
            0,
            "the watcher run by nobody is dumpable:\n{}",
            w.log()
        );
    }
}

fn unsafe_free_euid() -> u32 {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// A watcher on a copy of the store, run as `nobody`.
fn as_nobody(env: &TestEnv) -> Watcher {
    let (store, identity, base) = nobodys_copy(env);
    let exe = env!("CARGO_BIN_EXE_meshseal");
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(exe)
        .arg("-C")
        .arg(store)
        .arg("-i")
        .arg(identity)
        .args(["watch", "--listen", "127.0.0.1:0"])
        .env("HOME", &base);
    Watcher::start(cmd)
}
