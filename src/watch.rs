//! The watcher: load the store, follow its changes, serve the result.
//!
//! Three parts run side by side:
//! - a filesystem watcher (notify, debounced) on `meshes/` and `global/` —
//!   never `.git/` — whose batches go to
//! - one update thread, the only writer of the index: it turns a batch of
//!   changed paths into the next generation (decrypting only files whose bytes
//!   changed) and publishes it with one atomic swap, then brings the
//!   materialized folder in step;
//! - the HTTP API on a small tokio runtime, which reads whatever generation is
//!   current and never waits for the writer.
//!
//! Errors are sorted by consequence, as in watchexec: a bad file or a failed
//! event is logged and the last good state stays served; only failing to
//! start (no store, no identity, the port taken) stops the process.
//! An event overflow (inotify's queue fills on a large `git checkout`) or a
//! watcher error triggers a full rescan, which is cheap because unchanged files
//! are only hashed. SIGHUP reloads identities and tokens and rescans, retrying
//! files that failed; SIGTERM and SIGINT stop cleanly.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use tracing::{error, info, warn};

use crate::api::{self, ApiState};
use crate::identity::Identities;
use crate::index::{Index, Live, UpdateStats};
use crate::materialize::Materializer;
use crate::problem::Problem;
use crate::store::Store;
use crate::tokens::Tokens;

/// The default API address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5690";
/// The default debounce window.
pub const DEFAULT_DEBOUNCE_MS: u64 = 200;

/// Everything `meshseal watch` needs, as plain values.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The store root.
    pub root: PathBuf,
    /// Identity files (reloaded on SIGHUP).
    pub identity_files: Vec<PathBuf>,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The tokens file; without one every secret request is refused.
    pub tokens: Option<PathBuf>,
    /// Folder to keep materialized secret files in.
    pub materialize: Option<PathBuf>,
    /// How long the filesystem must be quiet before a batch is applied.
    pub debounce: Duration,
}

/// Messages to the update thread.
enum Msg {
    Events(DebounceEventResult),
    Reload,
    Stop,
}

/// Loads identity files, naming the one that fails.
pub fn load_identities(files: &[PathBuf]) -> Result<Identities, Problem> {
    Identities::load(files).map_err(|(path, e)| Problem::at(path, &e))
}

/// Opens the store and loads it once: what `watch --once` and the watcher's
/// start share.
pub fn load(root: &Path, identities: &Identities) -> Result<(Store, Index), Problem> {
    let store = Store::open(root)?;
    let index = Index::load(&store, identities)?;
    Ok((store, index))
}

/// Logs one generation's arrival.
fn log_update(index: &Index, stats: &UpdateStats) {
    info!(
        generation = index.generation(),
        kind = stats.kind.as_str(),
        secrets = index.len(),
        changed = stats.changed.len(),
        removed = stats.removed.len(),
        decrypted = stats.decrypted,
        hashed = stats.hashed,
        problems = index.problem_count(),
        duration_ms = stats.duration.as_secs_f64() * 1000.0,
        "index updated"
    );
    for id in &stats.changed {
        info!(secret = %id, "secret loaded");
    }
    for id in &stats.removed {
        info!(secret = %id, "secret removed");
    }
    for p in &stats.new_problems {
        log_problem(p, "kept the last good version");
    }
}

fn log_problem(p: &Problem, consequence: &str) {
    warn!(
        file = %p.file.as_deref().map(|f| f.display().to_string()).unwrap_or_default(),
        code = p.code,
        hint = p.hint.as_deref().unwrap_or(""),
        "{}: {consequence}",
        p.message
    );
}

/// Runs the watcher until SIGTERM or SIGINT.
pub fn run(options: WatchOptions) -> Result<(), Problem> {
    let root = fs::canonicalize(&options.root)
        .map_err(|e| Problem::new(Some(options.root.clone()), "io", e.to_string()))?;
    let identities = load_identities(&options.identity_files)?;
    let tokens = load_tokens(options.tokens.as_deref())?;
    let (store, index) = load(&root, &identities)?;
    info!(
        generation = index.generation(),
        secrets = index.len(),
        meshes = index.meshes().len(),
        problems = index.problem_count(),
        duration_ms = index.counters().cold_load.as_secs_f64() * 1000.0,
        "store loaded"
    );
    for p in index.problems() {
        log_problem(p, "not served");
    }
    let materializer = match &options.materialize {
        Some(dir) => {
            let m = Materializer::new(dir)?;
            let (report, problems) = m.sync(None, &index);
            info!(dir = %dir.display(), written = report.written, removed = report.removed, "materialized");
            for p in &problems {
                log_problem(p, "materialized file not updated");
            }
            Some(m)
        }
        None => None,
    };
    let live: Arc<Live> = Arc::new(ArcSwap::from_pointee(index));
    let tokens = Arc::new(ArcSwap::from_pointee(tokens));

    let (tx, rx) = mpsc::channel::<Msg>();
    let events_tx = tx.clone();
    let mut debouncer = new_debouncer(options.debounce, None, move |res: DebounceEventResult| {
        let _ = events_tx.send(Msg::Events(res));
    })
    .map_err(|e| Problem::new(None, "watch", format!("cannot start the file watcher: {e}")))?;
    for top in ["meshes", "global"] {
        let dir = root.join(top);
        if dir.is_dir() {
            debouncer
                .watch(&dir, RecursiveMode::Recursive)
                .map_err(|e| {
                    Problem::new(Some(dir.clone()), "watch", format!("cannot watch: {e}"))
                })?;
        }
    }

    let worker = {
        let live = Arc::clone(&live);
        let files = options.identity_files.clone();
        let root = root.clone();
        thread::Builder::new()
            .name("meshseal-update".to_string())
            .spawn(move || {
                update_loop(
                    &root,
                    store,
                    identities,
                    &files,
                    &live,
                    materializer.as_ref(),
                    &rx,
                )
            })
            .map_err(|e| Problem::new(None, "io", e.to_string()))?
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Problem::new(None, "io", format!("cannot start the runtime: {e}")))?;
    let state = ApiState {
        index: Arc::clone(&live),
        tokens: Arc::clone(&tokens),
    };
    let served = runtime.block_on(serve_until_signal(
        options.listen,
        state,
        options.tokens.clone(),
        tx.clone(),
    ));
    let _ = tx.send(Msg::Stop);
    debouncer.stop();
    let _ = worker.join();
    served?;
    info!("stopped");
    Ok(())
}

fn load_tokens(path: Option<&Path>) -> Result<Tokens, Problem> {
    match path {
        Some(p) => {
            let t = Tokens::load(p)?;
            if t.is_empty() {
                warn!(file = %p.display(), "the tokens file has no tokens: every secret request is refused");
            }
            Ok(t)
        }
        None => {
            warn!("no --tokens file: every secret request is refused (create one with `meshseal token create`)");
            Ok(Tokens::default())
        }
    }
}

async fn serve_until_signal(
    listen: SocketAddr,
    state: ApiState,
    tokens_path: Option<PathBuf>,
    tx: mpsc::Sender<Msg>,
) -> Result<(), Problem> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Problem::new(None, "listen", format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Problem::new(None, "listen", e.to_string()))?;
    info!(addr = %addr, "listening on http://{addr}");
    let sig = |kind| signal(kind).map_err(|e| Problem::new(None, "signal", e.to_string()));
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let tokens = Arc::clone(&state.tokens);
    let server = tokio::spawn(api::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading identities and tokens, rescanning");
                if let Some(p) = &tokens_path {
                    match Tokens::load(p) {
                        Ok(t) => tokens.store(Arc::new(t)),
                        Err(p) => log_problem(&p, "kept the previous tokens"),
                    }
                }
                let _ = tx.send(Msg::Reload);
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
        }
    }
    let _ = stop_tx.send(());
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Problem::new(None, "io", e.to_string())),
        Err(e) => Err(Problem::new(None, "io", e.to_string())),
    }
}

/// The update thread: the index's only writer.
fn update_loop(
    root: &Path,
    store: Store,
    mut identities: Identities,
    identity_files: &[PathBuf],
    live: &Live,
    materializer: Option<&Materializer>,
    rx: &mpsc::Receiver<Msg>,
) {
    while let Ok(first) = rx.recv() {
        let mut changed = BTreeSet::new();
        let mut rescan = false;
        let mut reload = false;
        let mut stop = false;
        // Everything already queued joins this batch.
        for msg in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match msg {
                Msg::Stop => stop = true,
                Msg::Reload => reload = true,
                Msg::Events(Ok(events)) => {
                    for event in events {
                        // Our own reads show up as access events: ignoring
                        // them keeps the watcher from feeding itself.
                        if matches!(event.kind, EventKind::Access(_)) {
                            continue;
                        }
                        if event.need_rescan() {
                            warn!("file events were lost (queue overflow): full rescan");
                            rescan = true;
                        }
                        for path in &event.paths {
                            if let Some(rel) = relevant(root, path) {
                                changed.insert(rel);
                            }
                        }
                    }
                }
                Msg::Events(Err(errors)) => {
                    for e in errors {
                        warn!(error = %e, "file watcher error: full rescan");
                    }
                    rescan = true;
                }
            }
        }
        if stop {
            break;
        }
        if reload {
            match load_identities(identity_files) {
                Ok(ids) => {
                    info!(keys = ids.len(), "identities reloaded");
                    identities = ids;
                }
                Err(p) => log_problem(&p, "kept the previous identities"),
            }
        }
        let current = live.load_full();
        let result = if rescan || reload {
            current.rescan(&store, &identities, reload)
        } else if !changed.is_empty() {
            Ok(current.update(&store, &identities, &changed))
        } else {
            continue;
        };
        let (next, stats) = match result {
            Ok(r) => r,
            Err(p) => {
                error!(problem = %p, "rescan failed: the last good index stays served");
                continue;
            }
        };
        if !reload && next.same_content(&current) {
            // Touched but unchanged files: no new generation.
            continue;
        }
        let next = Arc::new(next);
        live.store(Arc::clone(&next));
        log_update(&next, &stats);
        if let Some(m) = materializer {
            let (_, problems) = m.sync(Some(&current), &next);
            for p in &problems {
                log_problem(p, "materialized file not updated");
            }
        }
    }
}

/// The store-relative path of an event, if it is under `meshes/` or `global/`.
fn relevant(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root).ok()?;
    let top = rel.components().next()?;
    (top.as_os_str() == "meshes" || top.as_os_str() == "global").then(|| rel.to_path_buf())
}
