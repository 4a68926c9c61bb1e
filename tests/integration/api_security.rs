//! The watcher's API under attack: revoked tokens, path traversal, oversized
//! requests, slow and idle clients, connection floods, and odd credentials —
//! and through all of it the watcher keeps serving everyone else.
//!
//! Requests that must reach the server byte for byte (traversal, oversized
//! headers) are written by hand on a `TcpStream`, so no client library
//! normalizes a path or refuses a header first. Every wait has a deadline;
//! the few latency bounds are far below the limit they prove (an answer in
//! seconds while slow clients would hold the server for the header timeout).

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::env::{b64, TestEnv};
use crate::watcher::{http, json, served, Tokens, Watcher, DEADLINE};
use meshseal::serve::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};

/// A request others make while an attack runs must be answered within this:
/// far less than the header read timeout, which is how long a server that
/// waits on slow clients would make them wait.
const PROMPT: Duration = Duration::from_secs(3);

/// Values stored by `secrets()`: none may appear in a refused answer.
const PAYMENTS_DB: &str = "payments-db-VALUE-4d1f";
const DEFAULT_D: &str = "default-d-VALUE-9a2c";
const GLOBAL_G: &str = "global-g-VALUE-77e0";

/// An env with a secret in `payments`, one in `default`, a global one and a
/// policy in `default` that resolves its secret.
fn secrets() -> (TestEnv, Tokens) {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", PAYMENTS_DB);
    env.set("default", "d", DEFAULT_D);
    env.set_global("g", GLOBAL_G);
    let policies = env.root.join("meshes/default/policies");
    fs::create_dir_all(&policies).unwrap();
    fs::write(
        policies.join("psp.toml"),
        "type = \"ExternalService\"\nmesh = \"default\"\nname = \"psp\"\n\n[networking]\naddress = \"psp.example:443\"\n\n[networking.tls]\ncaCert = { secret = \"d\" }\n",
    )
    .unwrap();
    (env, tokens)
}

/// Panics if `body` carries any stored value, plain or base64.
fn assert_no_values(body: &str, what: &str) {
    for value in [PAYMENTS_DB, DEFAULT_D, GLOBAL_G] {
        for needle in [value.to_string(), b64(value)] {
            assert!(!body.contains(&needle), "{what} leaks {needle}: {body}");
        }
    }
}

/// The watcher still runs and still serves a good request (`token` reads
/// mesh `payments`).
fn assert_still_serving(w: &mut Watcher, token: &str) {
    assert!(
        matches!(w.child.try_wait(), Ok(None)),
        "the watcher died:\n{}",
        w.log()
    );
    let start = Instant::now();
    assert_eq!(
        served(w, token, "payments", "db"),
        Some(b64(PAYMENTS_DB)),
        "{}",
        w.log()
    );
    assert!(
        start.elapsed() < PROMPT,
        "a good request took {:?}",
        start.elapsed()
    );
}

/// What a hand-written request got back.
#[derive(Debug)]
enum Reply {
    /// A status line (and whatever followed it).
    Answered { status: u16, text: String },
    /// The server closed (or reset) the connection without answering.
    Closed,
}

impl Reply {
    fn status(&self) -> Option<u16> {
        match self {
            Reply::Answered { status, .. } => Some(*status),
            Reply::Closed => None,
        }
    }

    fn text(&self) -> &str {
        match self {
            Reply::Answered { text, .. } => text,
            Reply::Closed => "",
        }
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Reads until the server closes; a server that neither answers nor closes
/// within the deadline fails the test.
fn read_reply(s: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    if let Err(e) = s.read_to_end(&mut buf) {
        assert!(
            is_reset(&e),
            "the server neither answered nor closed within {DEADLINE:?}: {e}"
        );
    }
    if buf.is_empty() {
        return Reply::Closed;
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:.200}"));
    Reply::Answered { status, text }
}

/// Writes `request` as is (a server that closes early is fine) and reads the
/// reply.
fn send_raw(addr: &str, request: &[u8]) -> Reply {
    let mut s = connect(addr);
    if let Err(e) = s.write_all(request) {
        assert!(is_reset(&e), "write failed: {e}");
    }
    read_reply(&mut s)
}

/// `METHOD TARGET HTTP/1.1` with a Host, the given header lines and
/// `Connection: close`.
fn request(method: &str, target: &str, headers: &[String]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: meshseal\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Peak resident memory of a process, from /proc (KiB).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// A client that keeps reading a secret in the background and records every
/// answer that is not prompt and right.
struct Bystander {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    served: Arc<Mutex<usize>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Bystander {
    fn start(addr: &str, token: &str) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(Mutex::new(0));
        let (addr, token) = (addr.to_string(), token.to_string());
        let thread = {
            let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let answer = std::panic::catch_unwind(|| {
                        http(&addr, "GET", "/meshes/payments/secrets/db", Some(&token))
                    });
                    let took = start.elapsed();
                    let Ok((status, body)) = answer else {
                        failures.lock().unwrap().push("no answer".to_string());
                        break;
                    };
                    let right = status == 200 && json(&body)["data"] == b64(PAYMENTS_DB);
                    if !right || took > PROMPT {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{status} after {took:?}: {body}"));
                    }
                    *served.lock().unwrap() += 1;
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Bystander {
            stop,
            failures,
            served,
            thread: Some(thread),
        }
    }

    /// Stops; panics unless every request was answered promptly and right.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let failures = self.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "the bystander was failed: {failures:#?}"
        );
        assert!(
            *self.served.lock().unwrap() > 0,
            "the bystander made no request"
        );
    }
}

/// Replaces a file the way editors and `meshseal token create` do: a new
/// file renamed over the old one.
fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-new");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn revoked_token_is_refused_without_sighup() {
    let (env, tokens) = secrets();
    let mut w = env.watch(&[]);
    let pay = "/meshes/payments/secrets/db";
    assert_eq!(w.get(pay, Some(&tokens.payments)).0, 200);
    let before = fs::read_to_string(env.tokens_file()).unwrap();
    let kept: String = before
        .lines()
        .filter(|l| !l.ends_with(" mesh:payments"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, before, "the payments line was found");
    replace_atomically(&env.tokens_file(), &kept);
    w.eventually("the revoked token is refused", |w| {
        w.get(pay, Some(&tokens.payments)).0 == 401
    });
    assert_eq!(w.get(pay, Some(&tokens.admin)).0, 200);
    assert_eq!(
        w.get("/meshes/default/secrets/d", Some(&tokens.default_mesh))
            .0,
        200
    );
    // A token added to the file is accepted without a signal either.
    let added = env.token(&["-m", "payments"]);
    w.eventually("the added token is accepted", |w| {
        w.get(pay, Some(&added)).0 == 200
    });
    // A broken line is reported by name; the other lines' tokens stay.
    let good = fs::read_to_string(env.tokens_file()).unwrap();
    replace_atomically(&env.tokens_file(), &format!("{good}sha256:abc admin\n"));
    w.eventually("the broken tokens file is reported", |w| {
        let log = w.log();
        log.lines().any(|l| {
            l.contains("WARN")
                && l.contains(&*env.tokens_file().to_string_lossy())
                && l.contains("only the tokens of the file's valid lines are accepted")
                && l.contains("meshseal token create")
        })
    });
    assert_eq!(w.get(pay, Some(&added)).0, 200);
    assert_eq!(w.get(pay, Some(&tokens.payments)).0, 401);
    // Fail closed: a token whose line is removed while another line breaks
    // stops working all the same (it used to keep the whole old file).
    let without_added: String = good
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| !l.ends_with(" mesh:payments"))
        .map(|l| format!("{l}\n"))
        .collect();
    replace_atomically(
        &env.tokens_file(),
        &format!("{without_added}this line is broken\n"),
    );
    w.eventually(
        "the removed token is refused despite the broken line",
        |w| w.get(pay, Some(&added)).0 == 401,
    );
    assert_eq!(w.get(pay, Some(&tokens.admin)).0, 200);
    // An in-place rewrite (no rename) is followed as well: revoke everything.
    fs::write(env.tokens_file(), "# no tokens\n").unwrap();
    w.eventually("an emptied file revokes every token", |w| {
        w.get(pay, Some(&tokens.admin)).0 == 401
    });
    assert_eq!(w.get(pay, Some(&added)).0, 401);
    replace_atomically(&env.tokens_file(), &good);
    w.eventually("the restored file is followed", |w| {
        w.get(pay, Some(&tokens.admin)).0 == 200
    });
    assert_still_serving(&mut w, &added);
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("tokens reloaded"), "{log}");
    for token in [&tokens.admin, &tokens.payments, &added] {
        assert!(!log.contains(token.as_str()), "log leaks a token: {log}");
    }
}

#[test]
fn path_traversal_never_reaches_another_scope() {
    let (env, tokens) = secrets();
    let mut w = env.watch(&[]);
    let bystander = Bystander::start(&w.addr, &tokens.payments);
    let pay = bearer(&tokens.payments);
    let admin = bearer(&tokens.admin);
    // (target, credentials, expected status; None = refused by the HTTP
    // layer, with 400 or a closed connection)
    let cases: &[(&str, &String, Option<u16>)] = &[
        ("/meshes/../global-secrets/g", &pay, Some(404)),
        ("/meshes/payments/../../global-secrets/g", &pay, Some(404)),
        (
            "/meshes/payments/secrets/../../../global-secrets/g",
            &pay,
            Some(404),
        ),
        ("/meshes/payments/secrets/./db", &pay, Some(404)),
        ("//global-secrets/g", &pay, Some(404)),
        ("/global-secrets/g/", &pay, Some(404)),
        ("/meshes/%2e%2e/secrets/g", &pay, Some(400)),
        ("/meshes/%2E%2E/secrets/g", &admin, Some(400)),
        ("/meshes/payments/secrets/%2e%2e", &pay, Some(400)),
        ("/meshes/payments/secrets/.", &pay, Some(400)),
        (
            "/meshes/payments/secrets/..%2f..%2fglobal%2fsecrets%2fg",
            &pay,
            Some(400),
        ),
        (
            "/meshes/payments/secrets/..%2F..%2Fdefault%2Fsecrets%2Fd",
            &pay,
            Some(400),
        ),
        (
            "/meshes/payments/secrets/%2e%2e%2f%2e%2e%2fglobal-secrets%2fg",
            &admin,
            Some(400),
        ),
        (
            "/meshes/payments/secrets/%252e%252e%252fglobal-secrets%252fg",
            &pay,
            Some(400),
        ),
        ("/meshes/payments/secrets/%252e%252e", &admin, Some(400)),
        (
            "/meshes/payments/secrets/..%5c..%5cglobal-secrets%5cg",
            &pay,
            Some(400),
        ),
        (
            "/meshes/payments/secrets/..\\..\\global-secrets\\g",
            &pay,
            None,
        ),
        ("/meshes/payments/secrets/db%00", &pay, Some(400)),
        ("/meshes/payments/secrets/db%00.age", &admin, Some(400)),
        ("/meshes/payments/secrets/%c0%ae%c0%ae", &pay, Some(400)),
        ("/meshes/payments/secrets/d%e2%80%a4b", &pay, Some(400)),
        ("/meshes/payments%2f..%2fdefault/secrets/d", &pay, Some(400)),
        (
            "/meshes/payments%2f..%2fdefault/secrets/d",
            &admin,
            Some(400),
        ),
        ("/meshes/default%2fsecrets%2fd/secrets", &pay, Some(400)),
        ("/meshes/PAYMENTS/secrets/db", &pay, Some(400)),
        ("/meshes/default/secrets/d", &pay, Some(403)),
        ("/meshes/default/secrets/d?mesh=payments", &pay, Some(403)),
        ("/global-secrets/g", &pay, Some(403)),
        ("/global-secrets/g?/../../meshes/payments", &pay, Some(403)),
        ("/global-secrets/..%2fg", &pay, Some(400)),
        (
            "/global-secrets/%2e%2e%2fmeshes%2fpayments%2fsecrets%2fdb",
            &admin,
            Some(400),
        ),
        ("/global-secrets/g%00", &admin, Some(400)),
        ("/meshes/default/policies/psp", &pay, Some(403)),
        (
            "/meshes/payments/policies/..%2f..%2fdefault%2fpolicies%2fpsp",
            &pay,
            Some(400),
        ),
        ("/meshes/payments/policies/%2e%2e", &admin, Some(400)),
        ("/meshes/%2e%2e/policies", &admin, Some(400)),
        ("http://meshseal/global-secrets/g", &pay, Some(403)),
        (
            "http://meshseal/meshes/payments/secrets/..%2fg",
            &pay,
            Some(400),
        ),
    ];
    let mut failures = Vec::new();
    for (target, auth, want) in cases {
        let reply = send_raw(
            &w.addr,
            &request("GET", target, std::slice::from_ref(*auth)),
        );
        let who = if **auth == admin {
            "admin"
        } else {
            "mesh:payments"
        };
        match (want, reply.status()) {
            (Some(want), Some(got)) if *want == got => {}
            (None, Some(400) | None) => {}
            (want, got) => failures.push(format!("{target} ({who}): want {want:?}, got {got:?}")),
        }
        assert_no_values(reply.text(), target);
        // Without a token: nothing at all.
        let anonymous = send_raw(&w.addr, &request("GET", target, &[]));
        assert!(
            matches!(anonymous.status(), None | Some(400 | 401 | 404)),
            "{target} without a token: {anonymous:?}"
        );
        assert_no_values(anonymous.text(), target);
    }
    // A NUL byte and raw control characters in the request line itself.
    for target in [
        &b"/meshes/payments/secrets/db\0"[..],
        b"/global-secrets/g\0/../x",
        b"/meshes/payments/secrets/d\x7f",
        b"/meshes/payments/secrets/db\r",
    ] {
        let mut r = b"GET ".to_vec();
        r.extend_from_slice(target);
        r.extend_from_slice(b" HTTP/1.1\r\nHost: m\r\n");
        r.extend_from_slice(bearer(&tokens.admin).as_bytes());
        r.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let reply = send_raw(&w.addr, &r);
        assert!(
            matches!(reply.status(), None | Some(400)),
            "{target:?}: {reply:?}"
        );
        assert_no_values(reply.text(), "a request line with control bytes");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // An invalid name is refused by the name rules, before any lookup.
    let (status, body) = w.get("/meshes/payments/secrets/..%2fx", Some(&tokens.payments));
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["title"], "Bad Request", "{body}");
    assert!(body.contains("RFC 1123"), "{body}");
    let (status, body) = w.get("/meshes/%2e%2e/secrets", Some(&tokens.admin));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("mesh: invalid characters"), "{body}");
    bystander.finish();
    assert_still_serving(&mut w, &tokens.payments);
}

#[test]
fn oversized_headers_and_bodies_are_refused_with_bounded_memory() {
    let (env, tokens) = secrets();
    let mut w = env.watch(&[]);
    let pid = w.child.id();
    assert_still_serving(&mut w, &tokens.payments);
    let peak_before = peak_rss_kib(pid);
    let bystander = Bystander::start(&w.addr, &tokens.payments);
    let target = "/meshes/payments/secrets/db";
    let pay = bearer(&tokens.payments);
    // One header line of 1 MiB.
    let long = format!("X-Long: {}", "a".repeat(1 << 20));
    let reply = send_raw(&w.addr, &request("GET", target, &[pay.clone(), long]));
    assert!(
        matches!(reply.status(), None | Some(431 | 400)),
        "{reply:?}"
    );
    // A token of 1 MiB.
    let reply = send_raw(
        &w.addr,
        &request("GET", target, &[bearer(&"a".repeat(1 << 20))]),
    );
    assert!(
        matches!(reply.status(), None | Some(431 | 400)),
        "{reply:?}"
    );
    // 10,000 small headers.
    let mut many: Vec<String> = (0..10_000).map(|i| format!("X-H{i}: v")).collect();
    many.push(pay.clone());
    let reply = send_raw(&w.addr, &request("GET", target, &many));
    assert!(
        matches!(reply.status(), None | Some(431 | 400)),
        "{reply:?}"
    );
    // A request line of 1 MiB.
    let path = format!("/meshes/payments/secrets/{}", "a".repeat(1 << 20));
    let reply = send_raw(&w.addr, &request("GET", &path, std::slice::from_ref(&pay)));
    assert!(
        matches!(reply.status(), None | Some(414 | 431 | 400)),
        "{reply:?}"
    );
    // Declared bodies of 64 MiB on GET and PUT, actually sent until the
    // server stops reading: refused without reading them.
    const BIG: usize = 64 << 20;
    for method in ["GET", "PUT", "POST"] {
        let mut s = connect(&w.addr);
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: m\r\n{pay}\r\nContent-Length: {BIG}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < BIG {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if is_reset(&e) => break,
                Err(e) => panic!("{method}: the server neither read nor closed: {e}"),
            }
        }
        assert!(
            sent < BIG,
            "{method}: the server read the whole {BIG}-byte body it would never use"
        );
        let reply = read_reply(&mut s);
        assert!(
            matches!(reply.status(), None | Some(413 | 400)),
            "{method} with a {BIG}-byte body: {reply:?}"
        );
        assert_no_values(reply.text(), method);
    }
    // A chunked body that never ends, with absurd chunk sizes.
    let mut s = connect(&w.addr);
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: m\r\n{pay}\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"
    );
    let _ = s.write_all(head.as_bytes());
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..256 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let reply = read_reply(&mut s);
    assert!(
        matches!(reply.status(), None | Some(400 | 405 | 413)),
        "{reply:?}"
    );
    // A Content-Length that does not fit in 64 bits.
    let reply = send_raw(
        &w.addr,
        &request(
            "GET",
            target,
            &[
                pay.clone(),
                "Content-Length: 99999999999999999999999".into(),
            ],
        ),
    );
    assert!(
        matches!(reply.status(), None | Some(400 | 413)),
        "{reply:?}"
    );
    bystander.finish();
    assert_still_serving(&mut w, &tokens.payments);
    let grown = peak_rss_kib(pid).saturating_sub(peak_before);
    assert!(
        grown < 32 << 10,
        "peak memory grew by {grown} KiB while refusing oversized requests"
    );
}

#[test]
fn slow_and_idle_clients_do_not_starve_others_and_are_dropped() {
    const SLOW: usize = 100;
    const IDLE: usize = 100;
    let (env, tokens) = secrets();
    let mut w = env.watch(&[]);
    let opened = Instant::now();
    let slow: Vec<TcpStream> = (0..SLOW).map(|_| connect(&w.addr)).collect();
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(&w.addr)).collect();
    // Slowloris: one byte per connection per round, a header never ending.
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let mut writers: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = Arc::clone(&stop);
        let mut text = format!(
            "GET /meshes/payments/secrets/db HTTP/1.1\r\nHost: m\r\n{}\r\nX-Slow: ",
            bearer(&tokens.payments)
        )
        .into_bytes();
        text.extend(std::iter::repeat_n(b'a', 100_000));
        thread::spawn(move || {
            for byte in text {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for s in &mut writers {
                    let _ = s.write_all(&[byte]);
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Others are served promptly while all of them hang on.
    for _ in 0..20 {
        assert_still_serving(&mut w, &tokens.payments);
    }
    // Every half-request and every silent connection is dropped after the
    // header read timeout, without a byte of answer data.
    let deadline = opened + HEADER_READ_TIMEOUT + Duration::from_secs(20);
    for (i, mut s) in slow.into_iter().chain(idle).enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            Err(e) if is_reset(&e) => {}
            Err(e) => panic!(
                "connection {i} is still open {:?} after it was opened ({e})",
                opened.elapsed()
            ),
        }
        assert_no_values(&String::from_utf8_lossy(&buf), "a dropped connection");
    }
    stop.store(true, Ordering::Relaxed);
    dripper.join().unwrap();
    assert_still_serving(&mut w, &tokens.payments);
}

#[test]
fn a_connection_flood_cannot_lock_out_clients() {
    const EXTRA: usize = 64;
    let (env, tokens) = secrets();
    let mut w = env.watch(&[]);
    let opened = Instant::now();
    let flood: Vec<TcpStream> = (0..MAX_CONNECTIONS + EXTRA)
        .map(|_| connect(&w.addr))
        .collect();
    assert_still_serving(&mut w, &tokens.payments);
    // The cap holds: the oldest connections make room, long before the
    // header read timeout would have closed them.
    let closed = |s: &TcpStream| {
        s.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let r = (&*s).read(&mut byte);
        s.set_nonblocking(false).unwrap();
        match r {
            Ok(0) => true,
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => is_reset(&e),
        }
    };
    let start = Instant::now();
    loop {
        let oldest_closed = flood[..EXTRA].iter().filter(|s| closed(s)).count();
        if oldest_closed == EXTRA {
            break;
        }
        assert!(
            opened.elapsed() < HEADER_READ_TIMEOUT,
            "only {oldest_closed} of the {EXTRA} oldest connections were closed to keep the cap of {MAX_CONNECTIONS} (after {:?})",
            start.elapsed()
        );
        thread::sleep(Duration::from_millis(25));
    }
    let newest_open = flood[flood.len() - 16..]
        .iter()
        .filter(|s| !closed(s))
        .count();
    assert_eq!(newest_open, 16, "the newest connections are kept");
    drop(flood);
    assert_still_serving(&mut w, &tokens.payments);
}

#[test]
fn credentials_edge_cases() {
    let (env, tokens) = secrets();
    let ghost = env.token(&["-m", "ghost"]);
    let mut w = env.watch(&[]);
    let pay = "/meshes/payments/secrets/db";
    let b64_basic = b64(format!("admin:{}", tokens.admin));
    let cases: Vec<(Vec<String>, u16)> = vec![
        (
            vec![format!("Authorization: Bearer {} junk", tokens.payments)],
            401,
        ),
        (
            vec![format!("Authorization: Bearer {}x", tokens.payments)],
            401,
        ),
        (
            vec![format!("Authorization: Bearer {}", &tokens.payments[1..])],
            401,
        ),
        (
            vec![format!("Authorization: bearer {}", tokens.payments)],
            200,
        ),
        (
            vec![format!("Authorization: BEARER {}", tokens.payments)],
            200,
        ),
        (
            vec![format!("Authorization: Bearer   {}", tokens.payments)],
            200,
        ),
        (vec![format!("Authorization: Basic {b64_basic}")], 401),
        (vec![format!("Authorization: Basic {}", tokens.admin)], 401),
        (vec![format!("Authorization: Token {}", tokens.admin)], 401),
        (vec![format!("Authorization: {}", tokens.admin)], 401),
        (vec![format!("Authorization:Bearer{}", tokens.admin)], 401),
        (vec!["Authorization: Bearer".to_string()], 401),
        (vec!["Authorization: Bearer ".to_string()], 401),
        (
            vec![format!("X-Authorization: Bearer {}", tokens.admin)],
            401,
        ),
        (vec![format!("Cookie: token={}", tokens.admin)], 401),
        // Two Authorization headers are ambiguous, whichever comes first.
        (
            vec![
                bearer(&tokens.payments),
                "Authorization: Bearer mst_nope".into(),
            ],
            400,
        ),
        (
            vec![
                "Authorization: Bearer mst_nope".into(),
                bearer(&tokens.payments),
            ],
            400,
        ),
        (
            vec![bearer(&tokens.default_mesh), bearer(&tokens.payments)],
            400,
        ),
        (
            vec![bearer(&tokens.payments), bearer(&tokens.payments)],
            400,
        ),
        (vec![bearer(&ghost)], 403),
    ];
    let mut failures = Vec::new();
    for (headers, want) in &cases {
        let reply = send_raw(&w.addr, &request("GET", pay, headers));
        if reply.status() != Some(*want) {
            failures.push(format!(
                "{headers:?}: want {want}, got {:?}",
                reply.status()
            ));
        }
        if *want != 200 {
            assert_no_values(reply.text(), &format!("{headers:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // A token in the query string is not a token.
    let (status, _) = w.get(&format!("{pay}?token={}", tokens.admin), None);
    assert_eq!(status, 401);
    // A token of a mesh that has no secrets reads that mesh (nothing) and
    // nothing else.
    let (status, body) = w.get("/meshes/ghost/secrets", Some(&ghost));
    assert_eq!(
        (status, json(&body)["total"].as_u64()),
        (200, Some(0)),
        "{body}"
    );
    assert_eq!(w.get("/meshes/ghost/secrets/db", Some(&ghost)).0, 404);
    assert_eq!(w.get("/global-secrets", Some(&ghost)).0, 403);
    assert_eq!(w.get("/global-secrets/g", Some(&ghost)).0, 403);
    assert_eq!(w.get("/meshes/default/policies/psp", Some(&ghost)).0, 403);
    let (status, body) = w.get("/secrets", Some(&ghost));
    assert_eq!(
        (status, json(&body)["total"].as_u64()),
        (200, Some(0)),
        "{body}"
    );
    let (status, body) = w.get("/status", Some(&ghost));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["secrets"], 0, "{body}");
    for name in ["payments", "default", "\"db\"", "\"d\"", "psp"] {
        assert!(
            !body.contains(name),
            "/status shows {name} to a ghost token: {body}"
        );
    }
    // HEAD: the same decisions, never a body.
    for (path, token, want) in [
        (pay, None, 401),
        (pay, Some(&tokens.payments), 200),
        (pay, Some(&tokens.default_mesh), 403),
        ("/global-secrets/g", Some(&tokens.payments), 403),
        ("/global-secrets/g", Some(&tokens.admin), 200),
        ("/status", None, 401),
    ] {
        let headers: Vec<String> = token.map(|t| bearer(t)).into_iter().collect();
        let reply = send_raw(&w.addr, &request("HEAD", path, &headers));
        assert_eq!(reply.status(), Some(want), "HEAD {path}: {reply:?}");
        let text = reply.text();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        assert_eq!(body, "", "HEAD {path} has a body");
    }
    // Without a token: /status refuses, /ready and /metrics give counts only.
    for path in [
        "/status",
        "/ready",
        "/metrics",
        "/secrets",
        "/global-secrets",
    ] {
        let (status, body) = w.get(path, None);
        assert!(
            matches!((path, status), ("/ready" | "/metrics", 200) | (_, 401)),
            "{path}: {status} {body}"
        );
        assert_no_values(&body, path);
        for name in ["payments", "default", "ghost", "\"db\"", "\"g\"", "psp"] {
            assert!(
                !body.contains(name),
                "{path} without a token names {name}: {body}"
            );
        }
    }
    assert_still_serving(&mut w, &tokens.payments);
}
