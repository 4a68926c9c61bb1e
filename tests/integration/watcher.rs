//! The built `meshseal watch` binary on a `TestEnv`, driven over loopback
//! HTTP: shared by the watcher's end-to-end tests.
//!
//! Every wait polls until a condition holds or a generous deadline passes, so
//! the tests stay correct on a loaded two-core machine; a timeout fails with
//! the watcher's log attached.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::env::{b64, run, spawnable, Run, TestEnv};

pub const DEADLINE: Duration = Duration::from_secs(60);

/// The API tokens of `TestEnv::serving`, kept in `TestEnv::tokens_file`.
pub struct Tokens {
    /// Reads everything.
    pub admin: String,
    /// Reads mesh `payments`.
    pub payments: String,
    /// Reads mesh `default`.
    pub default_mesh: String,
}

impl TestEnv {
    /// A store whose meshes `default` and `payments` are encrypted to the
    /// store identity, and a tokens file with an admin, a `payments` and a
    /// `default` token.
    pub fn serving() -> (TestEnv, Tokens) {
        let env = TestEnv::new();
        env.add_mesh("payments");
        let tokens = Tokens {
            admin: env.token(&["--admin"]),
            payments: env.token(&["-m", "payments"]),
            default_mesh: env.token(&["-m", "default"]),
        };
        (env, tokens)
    }

    /// The tokens file the watcher is started with.
    pub fn tokens_file(&self) -> PathBuf {
        self.tmp().join("tokens")
    }

    /// Adds a token for `scope` (`--admin` or `-m MESH`) to the tokens file.
    pub fn token(&self, scope: &[&str]) -> String {
        let tokens = self.tokens_file();
        let mut args = vec!["token", "create"];
        args.extend_from_slice(scope);
        args.extend_from_slice(&["--tokens", tokens.to_str().unwrap()]);
        self.ok_key(&args).stdout().trim().to_string()
    }

    /// Creates or updates a mesh secret through `meshseal apply`.
    pub fn set(&self, mesh: &str, name: &str, value: &str) {
        self.set_in(&self.root, mesh, name, value);
    }

    /// The same in the store at `root`.
    pub fn set_in(&self, root: &Path, mesh: &str, name: &str, value: &str) {
        let yaml = format!(
            "type: Secret\nmesh: {mesh}\nname: {name}\ndata: {}\n",
            b64(value)
        );
        self.apply_in(root, &yaml);
    }

    /// Creates or updates a global secret through `meshseal apply`.
    pub fn set_global(&self, name: &str, value: &str) {
        let yaml = format!("type: GlobalSecret\nname: {name}\ndata: {}\n", b64(value));
        self.apply_in(&self.root, &yaml);
    }

    /// `meshseal -C ROOT apply -f -` of `yaml`, which must succeed.
    pub fn apply_in(&self, root: &Path, yaml: &str) {
        self.ok(self
            .kcmd_at(root)
            .args(["apply", "-f", "-"])
            .write_stdin(yaml));
    }

    /// `meshseal watch --once` with `extra` arguments.
    pub fn watch_once(&self, extra: &[&str]) -> Run {
        run(self
            .kcmd_at(&self.root)
            .args(["watch", "--once"])
            .args(extra))
    }

    /// A watcher on the store, on an OS-chosen loopback port.
    pub fn watch(&self, extra: &[&str]) -> Watcher {
        let tokens = self.tokens_file();
        let mut args = vec![
            "watch",
            "--listen",
            "127.0.0.1:0",
            "--tokens",
            tokens.to_str().unwrap(),
            "--debounce",
            "50",
        ];
        args.extend_from_slice(extra);
        Watcher::start(spawnable(self.kcmd_at(&self.root).args(&args)))
    }
}

/// A running watcher; stopped with SIGTERM when dropped.
pub struct Watcher {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
}

impl Watcher {
    pub fn start(mut command: Command) -> Watcher {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut w = Watcher {
            child,
            addr: String::new(),
            log,
        };
        let start = Instant::now();
        loop {
            let text = w.log();
            let after = text
                .split("listening on http://")
                .nth(1)
                .or_else(|| text.split("listening on https://").nth(1));
            if let Some(rest) = after {
                w.addr = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                return w;
            }
            if let Ok(Some(status)) = w.child.try_wait() {
                panic!("watcher exited with {status}:\n{text}");
            }
            assert!(start.elapsed() < DEADLINE, "watcher did not start:\n{text}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http(&self.addr, "GET", path, token)
    }

    /// Polls until `cond` holds; panics with the log after the deadline.
    pub fn eventually(&self, what: &str, mut cond: impl FnMut(&Watcher) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for: {what}\nwatcher log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let status = self.terminate();
        // Let the reader thread drain the pipe.
        thread::sleep(Duration::from_millis(50));
        (status, self.log())
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = if method == "GET" { "" } else { "{}" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The data the API serves for a mesh secret, if it serves one.
pub fn served(w: &Watcher, token: &str, mesh: &str, name: &str) -> Option<String> {
    let (status, body) = w.get(&format!("/meshes/{mesh}/secrets/{name}"), Some(token));
    match status {
        200 => Some(json(&body)["data"].as_str().unwrap().to_string()),
        404 => None,
        other => panic!("unexpected status {other}: {body}"),
    }
}
