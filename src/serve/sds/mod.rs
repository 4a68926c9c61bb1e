//! Certificates to Envoy over SDS (SPEC 10): the watcher's index served as
//! `envoy.service.secret.v3.SecretDiscoveryService` (`StreamSecrets`,
//! `DeltaSecrets`, `FetchSecrets`) on a Unix socket, and on TCP if asked.
//!
//! - [`names`]: `<mesh>/<name>` and `<mesh>/<cert>+<key>`, by the store's rules;
//! - [`resources`]: a secret's data → an Envoy `Secret`, refusing versions
//!   Envoy could not use (`pem`: reading and checking the PEM);
//! - `cache`: the last good resource per name, shared by all streams;
//! - [`request`]: the requests as decoded, only the fields meshseal reads;
//! - `stream` and `delta`: the xDS ACK/NACK state machines; `service`:
//!   their wiring to gRPC; `grpc`: the method routes and their codec
//!   buffers; `reader`: a stream's requests, its read buffer given back
//!   after a large one; `auth`: bearer tokens; `socket`: the socket file.
//!
//! Requests are authenticated like the HTTP API's (a token from the live
//! tokens file, in the `authorization` metadata Envoy sends as
//! `initial_metadata`): no or unknown token is UNAUTHENTICATED, a name of a
//! mesh the token may not read PERMISSION_DENIED, a malformed name
//! INVALID_ARGUMENT, and only then is anything looked up. Global secrets have
//! no resource name: they are never served.
//!
//! Each stream follows the published index: when `changes` ticks it
//! recomputes its resources and pushes only those whose bytes changed.
//!
//! Limits: requests of at most [`MAX_REQUEST_BYTES`], responses of at most
//! [`MAX_RESPONSE_BYTES`], [`names::MAX_NAMES`] names per stream,
//! [`MAX_STREAMS`] open streams, [`MAX_STREAMS_PER_CONNECTION`] per HTTP/2
//! connection; HTTP/2 keepalives drop peers that vanished.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt as _;
use thiserror::Error;
use tokio::sync::{watch, Semaphore};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::index::Live;
use crate::problem::{Consequence, Diagnostic};
use crate::tokens::Tokens;

mod auth;
mod cache;
mod delta;
mod grpc;
mod metrics;
pub mod names;
mod pem;
mod reader;
pub mod request;
pub mod resources;
mod service;
mod socket;
mod stream;

pub use metrics::{SdsCounters, SdsMetrics};
pub use socket::{FOLDER_MODE, SOCKET_MODE};

/// Largest request accepted: 1,000 names of the longest form fit, with a
/// node description.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest response sent (a stream asking for many large secrets gets an
/// error rather than a response this size).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Most streams open at once, over all connections of one server.
pub const MAX_STREAMS: usize = 16 * 1024;
/// Most concurrent streams on one HTTP/2 connection (Envoy multiplexes its
/// SDS subscriptions over one connection per cluster).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 4096;
/// Largest header block (the token and gRPC's own headers).
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a shutdown waits for clients to close their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the SDS server reads from the watcher.
#[derive(Clone)]
pub struct SdsState {
    /// The published index generation.
    pub index: Arc<Live>,
    /// The accepted tokens (swapped on reload).
    pub tokens: Arc<ArcSwap<Tokens>>,
    /// The index generation, sent after every publish.
    pub changes: watch::Receiver<u64>,
    /// Counters, for `/metrics` (share the `Arc` to read them).
    pub metrics: Arc<SdsMetrics>,
}

impl SdsState {
    /// A state with fresh counters.
    pub fn new(
        index: Arc<Live>,
        tokens: Arc<ArcSwap<Tokens>>,
        changes: watch::Receiver<u64>,
    ) -> Self {
        SdsState {
            index,
            tokens,
            changes,
            metrics: Arc::new(SdsMetrics::default()),
        }
    }
}

/// What is wrong with the socket's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderProblem {
    /// It is a symbolic link.
    Symlink,
    /// It is not a directory.
    NotADirectory,
    /// Another user owns it.
    Owner {
        /// Its owner.
        uid: u32,
    },
    /// Group or others may write it.
    Writable {
        /// Its permission bits.
        mode: u32,
    },
}

impl std::fmt::Display for FolderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FolderProblem::Symlink => f.write_str("is a symbolic link"),
            FolderProblem::NotADirectory => f.write_str("is not a directory"),
            FolderProblem::Owner { uid } => write!(f, "is owned by uid {uid}, not by this user"),
            FolderProblem::Writable { mode } => {
                write!(f, "can be written by group or others (mode {mode:o})")
            }
        }
    }
}

/// Why the SDS server could not start or stopped. All are critical: the
/// watcher cannot serve SDS.
#[derive(Debug, Error)]
pub enum SdsError {
    /// The socket's folder is not safe to put a socket in.
    #[error("the SDS socket's folder {problem}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        problem: FolderProblem,
    },
    /// Another process serves on the socket.
    #[error("another process is serving SDS on this socket")]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// The path is taken by something that is not a socket of ours.
    #[error("the SDS socket path exists and is not a socket of this user")]
    Taken {
        /// The path.
        path: PathBuf,
    },
    /// A file system call failed.
    #[error("{about}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        about: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("SDS server: {0}")]
    Transport(#[source] tonic::transport::Error),
}

impl SdsError {
    /// Every error of this type stops the SDS server (and the watcher).
    pub fn consequence(&self) -> Consequence {
        Consequence::Critical
    }
}

impl Diagnostic for SdsError {
    fn file(&self) -> Option<&Path> {
        match self {
            SdsError::Folder { path, .. }
            | SdsError::InUse { path }
            | SdsError::Taken { path }
            | SdsError::Io { path, .. } => Some(path),
            SdsError::Transport(_) => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            SdsError::Folder { .. } => "sds-socket-folder",
            SdsError::InUse { .. } => "sds-socket-in-use",
            SdsError::Taken { .. } => "sds-socket-taken",
            SdsError::Io { .. } => "io",
            SdsError::Transport(_) => "sds-transport",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SdsError::Folder { .. } => Some(format!(
                "use a folder owned by this user that group and others cannot write (e.g. `install -d -m 0750 DIR`), or a path whose folder does not exist yet (it is created with mode {FOLDER_MODE:o})"
            )),
            SdsError::InUse { .. } => Some("another watcher serves SDS there: stop it, or choose another --sds path".to_string()),
            SdsError::Taken { .. } => Some("remove the file, or choose another --sds path".to_string()),
            SdsError::Io { .. } | SdsError::Transport(_) => None,
        }
    }
}

/// What every stream of one server shares.
struct Shared {
    index: Arc<Live>,
    tokens: Arc<ArcSwap<Tokens>>,
    changes: watch::Receiver<u64>,
    metrics: Arc<SdsMetrics>,
    cache: cache::Cache,
    /// Set on shutdown: every stream ends (they would never end by
    /// themselves, and a graceful shutdown waits for them).
    stop: watch::Receiver<bool>,
    streams: Arc<Semaphore>,
    next_stream: AtomicU64,
}

/// A bound SDS listener, not yet serving. Binding first lets the watcher
/// refuse to start on a bad socket path before it serves anything.
pub struct SdsListener(Bound);

enum Bound {
    Unix(tokio::net::UnixListener, socket::SocketFile, PathBuf),
    Tcp(tokio::net::TcpListener),
}

impl SdsListener {
    /// Binds the Unix socket at `path` (mode 0660; its folder created 0750
    /// if missing, else accepted only when owned by this user and not
    /// writable by group or others; a stale socket of ours is replaced).
    /// Must be called within a tokio runtime.
    pub fn bind_unix(path: &Path) -> Result<SdsListener, SdsError> {
        let (listener, file) = socket::bind(path)?;
        Ok(SdsListener(Bound::Unix(listener, file, path.to_path_buf())))
    }

    /// A TCP listener to serve on.
    pub fn tcp(listener: tokio::net::TcpListener) -> SdsListener {
        SdsListener(Bound::Tcp(listener))
    }

    /// Where it listens, for logs.
    pub fn describe(&self) -> String {
        match &self.0 {
            Bound::Unix(_, _, path) => format!("unix:{}", path.display()),
            Bound::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("tcp:{addr}"),
                Err(_) => "tcp".to_string(),
            },
        }
    }

    /// Serves until `shutdown` completes. A Unix socket file is removed on
    /// return.
    pub async fn serve(
        self,
        state: SdsState,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SdsError> {
        tracing::info!(
            address = self.describe(),
            "sds: serving on {}",
            self.describe()
        );
        match self.0 {
            Bound::Unix(listener, _file, _) => {
                serve_incoming(UnixListenerStream::new(listener), state, shutdown).await
            }
            Bound::Tcp(listener) => {
                let incoming = TcpListenerStream::new(listener).map(|conn| {
                    conn.inspect(|s| {
                        let _ = s.set_nodelay(true);
                    })
                });
                serve_incoming(incoming, state, shutdown).await
            }
        }
    }
}

/// Serves SDS on a Unix socket at `path` (see [`SdsListener::bind_unix`])
/// until `shutdown` completes. The socket file is removed on return.
pub async fn serve_unix(
    path: &Path,
    state: SdsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SdsError> {
    SdsListener::bind_unix(path)?.serve(state, shutdown).await
}

/// Serves SDS on a TCP listener until `shutdown` completes.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    state: SdsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SdsError> {
    SdsListener::tcp(listener).serve(state, shutdown).await
}

async fn serve_incoming<I, IO, IE>(
    incoming: I,
    state: SdsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SdsError>
where
    I: futures_util::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        index: state.index,
        tokens: state.tokens,
        changes: state.changes,
        metrics: state.metrics,
        cache: cache::Cache::default(),
        stop,
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        next_stream: AtomicU64::new(1),
    });
    let service = grpc::Routes::new(service::Service { shared });
    let mut stopping = stop_tx.subscribe();
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(SdsError::Transport),
        () = shutdown => {
            let _ = stop_tx.send(true);
        }
    }
    // Streams end at once; a graceful HTTP/2 close needs the client's
    // answer, and a client that does not answer must not hold the watcher.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result.map_err(SdsError::Transport),
        Err(_) => {
            tracing::warn!("sds: clients still connected {SHUTDOWN_GRACE:?} after shutdown began: leaving them");
            Ok(())
        }
    }
}
