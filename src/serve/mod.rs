//! The watcher: load the store, follow its changes, serve the result.
//!
//! Three parts run side by side:
//! - a filesystem watcher (notify, debounced by [`debounce`]) on `meshes/`
//!   and `global/` — never `.git/` — whose batches ([`events`]) go to
//! - one update thread ([`update`]), the only writer of the index: it turns a
//!   batch of changed paths into the next generation (decrypting only files
//!   whose bytes changed) and publishes it with one atomic swap, then brings
//!   the materialized folder ([`materialize`]) in step;
//! - the HTTP API ([`api`] on [`http`]) on a small tokio runtime, which reads
//!   whatever generation is current and never waits for the writer.
//!
//! With `--sds`/`--sds-listen`, Envoy's Secret Discovery Service ([`sds`])
//! runs on the same runtime as the API and pushes each new generation to
//! the streams whose certificates changed.
//!
//! Beside them, a second file watcher follows the tokens file's folder
//! ([`tokens`]), so that a token removed from the file stops working within
//! the debounce window, without a signal.
//!
//! Errors are sorted by consequence, as in watchexec ([`error`]): a bad file
//! or a failed event is logged and the last good state stays served; only
//! failing to start (no store, no identity, the port taken) stops the
//! process. An event overflow (inotify's queue fills on a large `git
//! checkout`) or a watcher error triggers a full rescan, which is cheap
//! because unchanged files are only hashed. SIGHUP reloads identities and
//! tokens and rescans, retrying files that failed; SIGTERM and SIGINT stop
//! cleanly.

pub mod api;
pub mod audit;
pub mod debounce;
pub mod error;
pub mod events;
pub mod harden;
pub mod http;
pub mod materialize;
pub mod metrics;
pub mod sds;
pub mod sources;
pub mod state;
pub mod tls;
pub mod tokens;
pub mod update;
pub mod worktree;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::RecursiveMode;
use tracing::{info, warn};

use crate::index::Index;
use crate::problem::Problem;
use crate::tokens::Tokens;

pub use error::ServeError;
pub use sources::{load, load_identities, Sources};

use state::StateDir;

use api::ApiState;
use error::log_problem;
use materialize::Materializer;
use update::{Msg, Publisher, Updater};

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
    /// The tokens file, followed for changes; without one every secret
    /// request is refused.
    pub tokens: Option<PathBuf>,
    /// Folder to keep materialized secret files in.
    pub materialize: Option<PathBuf>,
    /// Accept a materialize folder on a persistent file system (plaintext
    /// at rest is then the user's explicit choice).
    pub materialize_persistent: bool,
    /// How long the filesystem must be quiet before a batch is applied.
    pub debounce: Duration,
    /// Zone mode: the zone's name and its zone-local store.
    pub zone: Option<(String, PathBuf)>,
    /// Serve `/metrics` without a token.
    pub public_metrics: bool,
    /// Log every secret read to this file (JSON lines).
    pub audit: Option<PathBuf>,
    /// TLS for the API: a PEM certificate chain and its private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allow plain HTTP on an address other than loopback.
    pub insecure_listen: bool,
    /// The state folder: what a restart reuses (see [`state`]).
    pub state: Option<PathBuf>,
    /// Serve SDS on a Unix socket at this path.
    pub sds: Option<PathBuf>,
    /// Serve SDS on this TCP address too (loopback unless
    /// `insecure_listen`).
    pub sds_listen: Option<SocketAddr>,
    /// The trust root (SPEC 9): with one, only secrets signed by a writer
    /// of their scope are served, and never an older version than one
    /// already served.
    pub trust: Option<crate::signing::TrustRoot>,
}

impl WatchOptions {
    fn zone(&self) -> Option<(&str, &Path)> {
        self.zone.as_ref().map(|(n, d)| (n.as_str(), d.as_path()))
    }
}

/// What `watch --once` found: the published view, as the watcher would
/// serve it at start.
#[derive(Debug)]
pub struct OnceReport {
    /// The merged index.
    pub index: Arc<Index>,
}

/// `watch --once`: everything the watcher checks at start (identities, the
/// tokens file, both stores, the zone merge), without serving.
pub fn once(options: &WatchOptions) -> Result<OnceReport, ServeError> {
    // A store that is not there is the first thing to say.
    crate::store::Store::open(&options.root)?;
    let identities = load_identities(&options.identity_files)?;
    if let Some(path) = &options.tokens {
        Tokens::load(path)?;
    }
    let state = options.state.as_deref().map(StateDir::open).transpose()?;
    let mut sources = Sources::open(
        &options.root,
        options.zone(),
        &identities,
        state.as_ref(),
        options.trust.as_ref(),
    )?;
    if let Some(state) = &state {
        save_state(state, &sources.repo.index, &identities);
    }
    Ok(OnceReport {
        index: sources.view(),
    })
}

/// Runs the watcher until SIGTERM or SIGINT.
pub fn run(options: WatchOptions) -> Result<(), ServeError> {
    // Before any secret is in memory.
    harden::harden();
    if !options.listen.ip().is_loopback() && options.tls.is_none() && !options.insecure_listen {
        return Err(ServeError::InsecureListen {
            addr: options.listen,
        });
    }
    // SDS is plaintext gRPC: beyond loopback, tokens and keys would cross
    // the network in clear.
    if let Some(addr) = options.sds_listen {
        if !addr.ip().is_loopback() && !options.insecure_listen {
            return Err(ServeError::InsecureSdsListen { addr });
        }
    }
    let tls = options
        .tls
        .as_ref()
        .map(|(cert, key)| tls::server_config(cert, key))
        .transpose()?;
    let audit = options
        .audit
        .as_deref()
        .map(audit::Audit::open)
        .transpose()?
        .map(Arc::new);
    // Checked before any secret is decrypted: a refused folder stops here.
    let materializer = options
        .materialize
        .as_ref()
        .map(|dir| Materializer::new(dir, options.materialize_persistent))
        .transpose()?;
    crate::store::Store::open(&options.root)?;
    let identities = load_identities(&options.identity_files)?;
    let tokens = tokens::load(options.tokens.as_deref())?;
    let state_dir = options.state.as_deref().map(StateDir::open).transpose()?;
    if state_dir.is_none() {
        info!("no --state folder: a restart decrypts every file again");
        if let Some(trust) = &options.trust {
            warn!(trust = %trust.path().display(), "no --state folder: rollback protection lasts only as long as this process (a restart accepts any older signed version); keep it with --state DIR");
        }
    }
    let mut sources = Sources::open(
        &options.root,
        options.zone(),
        &identities,
        state_dir.as_ref(),
        options.trust.as_ref(),
    )?;
    sources.log_loaded();
    if let Some(state_dir) = &state_dir {
        // Recorded before anything is served.
        save_generations(state_dir, &sources.repo.index);
        if sources.repo.index.counters().decrypted > 0 {
            save_state(state_dir, &sources.repo.index, &identities);
        }
    }
    let view = sources.view();
    sources::log_conflicts(None, &view, sources.zone_name());
    let materializer = match (materializer, &options.materialize) {
        (Some(m), Some(dir)) => {
            let (report, problems) = m.sync(None, &view);
            info!(dir = %dir.display(), written = report.written, removed = report.removed, "materialized");
            for e in problems {
                log_problem(&Problem::from(e), "materialized file not updated");
            }
            Some(m)
        }
        _ => None,
    };
    let (changes, _) = tokio::sync::watch::channel(view.generation());
    let publisher = Publisher {
        live: Arc::new(ArcSwap::new(view)),
        changes,
        roots: Arc::new(ArcSwap::from_pointee(sources.status())),
    };
    let tokens = Arc::new(ArcSwap::from_pointee(tokens));
    let sds = (options.sds.is_some() || options.sds_listen.is_some()).then(|| SdsServe {
        state: sds::SdsState::new(
            Arc::clone(&publisher.live),
            Arc::clone(&tokens),
            publisher.changes.subscribe(),
        ),
        socket: options.sds.clone(),
        listen: options.sds_listen,
    });
    let tokens_follower = match &options.tokens {
        Some(path) => Some(tokens::follow(path, Arc::clone(&tokens), options.debounce)?),
        None => None,
    };

    let (tx, rx) = mpsc::channel::<Msg>();
    let events_tx = tx.clone();
    let debouncer = debounce::Debouncer::new(
        options.debounce,
        // A committed `meshes/x -> /usr` is reported by the walk, never
        // watched into.
        notify::Config::default().with_follow_symlinks(false),
        move |delivered| {
            let _ = events_tx.send(Msg::Events(delivered));
        },
    )
    .map_err(|source| ServeError::Watch {
        dir: options.root.clone(),
        source,
    })?;
    let watches = DebouncerWatches(Arc::new(Mutex::new(debouncer)));
    for (_, source) in sources.all() {
        // The root itself, not recursively: a `meshes/` or `global/` that
        // appears later (the first secret of a fresh store, or a checkout
        // that removed and restored the folder) is then seen and followed.
        watches.try_watch(&source.root, false)?;
        update::watch_store(&watches, &source.given, &source.root);
    }
    // git lists a swapped-in tree while the debounce window runs.
    let prefetch = sources.repo.swappable.then(|| {
        Arc::new(worktree::Prefetch::new(
            &sources.repo.given,
            &sources.repo.root,
        ))
    });
    let _prefetch_watcher = prefetch.as_ref().and_then(|p| {
        p.watch()
            .map_err(|e| info!(error = %e, "the link's folder is not followed early: a swapped tree is listed after the debounce window"))
            .ok()
    });

    let state = ApiState {
        index: Arc::clone(&publisher.live),
        tokens: Arc::clone(&tokens),
        roots: Arc::clone(&publisher.roots),
        public_metrics: options.public_metrics,
        audit,
        sds: sds.as_ref().map(|s| Arc::clone(&s.state.metrics)),
    };
    // Each generation's certificate expiries are computed (and warned
    // about) as it is published, not at the next scrape of /metrics.
    let expiry_follower =
        crate::certs::follow(Arc::clone(&publisher.live), publisher.changes.subscribe());
    let worker = {
        let files = options.identity_files.clone();
        thread::Builder::new()
            .name("meshseal-update".to_string())
            .spawn(move || {
                Updater {
                    sources,
                    identities,
                    identity_files: &files,
                    publisher: &publisher,
                    materializer: materializer.as_ref(),
                    watches: &watches,
                    state: state_dir.as_ref(),
                    saved: std::time::Instant::now(),
                    prefetch,
                }
                .run(&rx)
            })
            .map_err(|source| ServeError::Start {
                what: "update thread",
                source,
            })?
    };

    // One thread serves the API: a request is microseconds of work, and
    // staying on one thread avoids cross-thread wake-ups on the hot path.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ServeError::Start {
            what: "runtime",
            source,
        })?;
    runtime.spawn(expiry_follower);
    let served = runtime.block_on(serve_until_signal(
        options.listen,
        tls,
        state,
        options.tokens.clone(),
        tx.clone(),
        sds,
    ));
    let _ = tx.send(Msg::Stop);
    if let Some(follower) = tokens_follower {
        follower.stop();
    }
    // The update thread stops the debouncer it owns when it ends.
    let _ = worker.join();
    served?;
    info!("stopped");
    Ok(())
}

/// The store's file watches, shared by the start and the update thread.
struct DebouncerWatches(Arc<Mutex<debounce::Debouncer>>);

impl DebouncerWatches {
    fn try_watch(&self, dir: &Path, recursive: bool) -> Result<(), ServeError> {
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        let mut debouncer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        debouncer
            .watch(dir, mode)
            .map_err(|source| ServeError::Watch {
                dir: dir.to_path_buf(),
                source,
            })
    }
}

impl update::Watches for DebouncerWatches {
    fn watch(&self, dir: &Path, recursive: bool) {
        // The folder's inode cannot tell whether it is still watched: a
        // folder moved out and back keeps its inode but has lost its watch.
        if !dir.is_dir() {
            return;
        }
        match self.try_watch(dir, recursive) {
            Ok(()) if recursive => info!(folder = %dir.display(), "following a new store folder"),
            Ok(()) => {}
            Err(e) => log_problem(
                &Problem::from(e),
                "changes in it are not seen: restart the watcher",
            ),
        }
    }

    fn unwatch(&self, dir: &Path) {
        let mut debouncer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = debouncer.unwatch(dir);
    }
}

/// Saves the state cache and the rollback record; a failure is logged (the
/// next start is cold).
pub(crate) fn save_state(
    state: &StateDir,
    index: &Index,
    identities: &crate::identity::Identities,
) {
    save_generations(state, index);
    if let Err(e) = state.save_cache(index, identities) {
        log_problem(
            &Problem::from(e),
            "the next start decrypts every file again",
        );
    }
}

/// SIGHUP: reads the trust root in use again (SPEC 7, 9); the rescan that
/// follows judges every file under it. One that no longer loads (gone,
/// loosened, invalid) is logged and the previous one kept: verification is
/// never switched off by a signal.
pub(crate) fn reload_trust(source: &mut sources::Source) {
    let Some(path) = source
        .store
        .signing()
        .trust
        .as_ref()
        .map(|t| t.path().to_path_buf())
    else {
        return;
    };
    match crate::signing::TrustRoot::load(&path) {
        Ok(trust) => {
            info!(trust = %path.display(), admins = trust.signers().entries().len(), "trust root reloaded");
            source.store = source
                .store
                .clone()
                .with_signing(crate::store::Signing {
                    signer: None,
                    trust: Some(trust),
                })
                .expect("without a sign key, reading under a trust root writes nothing");
        }
        Err(e) => log_problem(&Problem::from(e), "kept the previous trust root"),
    }
}

/// Saves the rollback record when it changed; a failure is logged.
pub(crate) fn save_generations(state: &StateDir, index: &Index) {
    if let Err(e) = state.save_generations(index) {
        log_problem(
            &Problem::from(e),
            "versions verified since the last save are not protected against a rollback across a restart",
        );
    }
}

/// What `--sds` and `--sds-listen` ask for.
struct SdsServe {
    state: sds::SdsState,
    socket: Option<PathBuf>,
    listen: Option<SocketAddr>,
}

impl SdsServe {
    /// Binds every SDS listener (before anything is served, so that a bad
    /// socket path stops the start).
    async fn bind(&self) -> Result<Vec<sds::SdsListener>, ServeError> {
        let mut listeners = Vec::new();
        if let Some(path) = &self.socket {
            listeners.push(sds::SdsListener::bind_unix(path)?);
        }
        if let Some(addr) = self.listen {
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Listen { addr, source })?;
            listeners.push(sds::SdsListener::tcp(tcp));
        }
        Ok(listeners)
    }
}

async fn serve_until_signal(
    listen: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: ApiState,
    tokens_path: Option<PathBuf>,
    tx: mpsc::Sender<Msg>,
    sds: Option<SdsServe>,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: once "listening" is logged, a supervisor (or a test)
    // may send SIGTERM at any moment, and it must stop us cleanly.
    let sig = |kind| {
        signal(kind).map_err(|source| ServeError::Start {
            what: "signal handler",
            source,
        })
    };
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: listen,
        source,
    })?;
    let sds_listeners = match &sds {
        Some(s) => s.bind().await?,
        None => Vec::new(),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(addr = %addr, "listening on {scheme}://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let live_tokens = Arc::clone(&state.tokens);
    let mut server = tokio::spawn(api::serve(listener, tls, state, async move {
        let _ = stop_rx.await;
    }));
    // Every SDS server stops with the API, on one shared signal.
    let (sds_stop, sds_stopped) = tokio::sync::watch::channel(false);
    let mut sds_servers = tokio::task::JoinSet::new();
    if let Some(s) = &sds {
        for listener in sds_listeners {
            let mut stopped = sds_stopped.clone();
            sds_servers.spawn(listener.serve(s.state.clone(), async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
        }
    }
    let finished = loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading identities and tokens, rescanning");
                if let Some(p) = &tokens_path {
                    // Off the API's only thread: a slow or hung read must
                    // not stop serving.
                    let (p, live_tokens) = (p.clone(), Arc::clone(&live_tokens));
                    std::thread::spawn(move || tokens::reload(&p, &live_tokens));
                }
                let _ = tx.send(Msg::Reload);
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); break None; }
            _ = int.recv() => { info!("SIGINT: stopping"); break None; }
            // The servers stop on their own only when they fail.
            res = &mut server => break Some(res),
            Some(res) = sds_servers.join_next(), if !sds_servers.is_empty() => {
                let _ = stop_tx.send(());
                let _ = sds_stop.send(true);
                let _ = server.await;
                return match res {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(ServeError::Sds(e)),
                    Err(join) => Err(ServeError::Server { source: std::io::Error::other(join) }),
                };
            }
        }
    };
    let _ = sds_stop.send(true);
    let res = match finished {
        Some(res) => res,
        None => {
            let _ = stop_tx.send(());
            server.await
        }
    };
    while let Some(done) = sds_servers.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log_problem(&Problem::from(e), "SDS stopped with an error"),
            Err(join) => tracing::warn!("the SDS server task failed: {join}"),
        }
    }
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ServeError::Server { source }),
        Err(join) => Err(ServeError::Server {
            source: std::io::Error::other(join),
        }),
    }
}
