//! A running watcher on a store: its readiness, the API and reload
//! measurements made against it, and its peak RSS.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::api::secret_path;
use crate::client::Client;
use crate::report::{count, verdict, Row};
use crate::{gen, Bench};

impl Bench {
    /// Starts a watcher on store `n`; with `full`, also times the API and
    /// reloads. Always records the watcher's peak RSS.
    pub fn watcher(&mut self, n: usize, full: bool) {
        let root = self.store_dir(n);
        let (mut watcher, addr, token) = self.start_watcher(&root, &n.to_string());
        let started = Instant::now();
        let mut client = wait_ready(addr, &token, &mut watcher.0);
        let ready = started.elapsed();
        eprintln!("watcher on {n} secrets ready in {} ms", ready.as_millis());
        let probe = format!("/meshes/{}", secret_path(0));
        let (status, _) = client.get(&probe).expect("first read");
        assert_eq!(status, 200, "GET {probe}");
        if full {
            self.api_latency(&mut client, watcher.0.id(), &probe, n);
            client.ready(&probe).expect("connect again");
            self.reload_one(&mut client, n);
            self.reload_many(&mut client, n);
            self.reload_renamed(&mut client, n);
        }
        let hwm = vm_hwm(watcher.0.id());
        let secret_bytes = (n * gen::SECRET_BYTES) as u64;
        let limit = 64 * 1024 * 1024 + 2 * secret_bytes;
        self.rows.push(Row {
            measurement: "peak RSS of the watcher (VmHWM)".into(),
            secrets: count(n),
            meshseal: format!("{:.1} MiB", hwm as f64 / 1048576.0),
            reference: format!("limit {:.1} MiB", limit as f64 / 1048576.0),
            ratio: format!("{:.0}% of limit", 100.0 * hwm as f64 / limit as f64),
            target: "< 64 MiB + 2x secret bytes".into(),
            result: verdict(hwm < limit, true),
        });
    }
}

impl Bench {
    /// A watcher on the store at `root` with an admin token, logging to
    /// `watch-<label>.log`: (the watcher, its address, the token).
    pub(crate) fn start_watcher(&self, root: &Path, label: &str) -> (Watcher, SocketAddr, String) {
        let tokens = self.work.join(format!("tokens-{label}"));
        let token =
            meshseal::tokens::create(&tokens, &meshseal::tokens::TokenScope::Admin).expect("token");
        let addr = free_loopback_port();
        let log = fs::File::create(self.watch_log(label)).expect("log");
        let child = Command::new(&self.meshseal)
            .arg("-C")
            .arg(root)
            .arg("-i")
            .arg(&self.key.identity_file)
            .args(["watch", "--listen", &addr.to_string(), "--tokens"])
            .arg(&tokens)
            .args(["--debounce", &self.options.debounce.as_millis().to_string()])
            .env("HOME", self.work.join("home"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start watcher");
        (Watcher(child), addr, token.to_string())
    }

    /// The log file of the watcher started with `label`.
    pub(crate) fn watch_log(&self, label: &str) -> std::path::PathBuf {
        self.work.join(format!("watch-{label}.log"))
    }
}

/// Kills the watcher however the bench ends.
pub(crate) struct Watcher(pub(crate) Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_loopback_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr")
}

pub(crate) fn wait_ready(addr: SocketAddr, token: &str, child: &mut Child) -> Client {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait().expect("watcher status") {
            panic!("the watcher exited early: {status}");
        }
        if let Ok(mut client) = Client::connect(addr, token) {
            if let Ok((200, _)) = client.get("/ready") {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "the watcher never got ready");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn vm_hwm(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}
