//! The watcher's errors, sorted by consequence as in watchexec: a
//! [`ServeError`] stops the watcher (it cannot start, or cannot go on);
//! everything about one file or one event is a report (a `Problem`) that is
//! logged while the last good state stays served ([`log_problem`]).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::warn;

use crate::identity::IdentityError;
use crate::problem::{Consequence, Diagnostic, Problem};
use crate::store::{OpenError, ScanError};
use crate::tokens::TokensFileError;

use super::materialize::MaterializeError;

/// Why the watcher cannot start or go on.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The store cannot be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The store cannot be walked.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// An identity file cannot be used.
    #[error("{source}")]
    Identity {
        /// The identity file.
        file: PathBuf,
        /// Why.
        #[source]
        source: IdentityError,
    },
    /// The tokens file cannot be used.
    #[error(transparent)]
    Tokens(#[from] TokensFileError),
    /// The materialize folder cannot be used.
    #[error(transparent)]
    Materialize(#[from] MaterializeError),
    /// A folder given on the command line cannot be resolved.
    #[error("{source}")]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The zone store and the repository overlap.
    #[error("the zone store must lie outside the repository (and the repository outside it)")]
    ZoneOverlap {
        /// The zone store.
        dir: PathBuf,
    },
    /// A folder cannot be watched for changes.
    #[error("cannot watch: {source}")]
    Watch {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
    /// The API address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The process could not set itself up (signals, runtime, threads).
    #[error("cannot start the {what}: {source}")]
    Start {
        /// What could not be started.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Plain HTTP on an address others can reach.
    #[error("refusing to serve plain HTTP on {addr}, which is not a loopback address: tokens and secrets would cross the network in clear")]
    InsecureListen {
        /// The address.
        addr: SocketAddr,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    /// The state folder cannot be used.
    #[error(transparent)]
    State(#[from] super::state::StateError),
    /// The audit file cannot be opened.
    #[error(transparent)]
    Audit(#[from] super::audit::AuditError),
    /// SDS on an address others can reach (it is plaintext gRPC).
    #[error("refusing to serve SDS on {addr}, which is not a loopback address: tokens and private keys would cross the network in clear")]
    InsecureSdsListen {
        /// The address.
        addr: SocketAddr,
    },
    /// The SDS server cannot start or failed.
    #[error(transparent)]
    Sds(#[from] super::sds::SdsError),
    /// The API server stopped with an error.
    #[error("the API server failed: {source}")]
    Server {
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl ServeError {
    /// Every error of this type stops the watcher.
    pub fn consequence(&self) -> Consequence {
        Consequence::Critical
    }
}

impl Diagnostic for ServeError {
    fn code(&self) -> &'static str {
        match self {
            ServeError::Open(e) => e.code(),
            ServeError::Scan(e) => e.code(),
            ServeError::Identity { source, .. } => source.code(),
            ServeError::Tokens(e) => e.code(),
            ServeError::Materialize(e) => e.code(),
            ServeError::Folder { .. } => "io",
            ServeError::ZoneOverlap { .. } => "zone-store",
            ServeError::Watch { .. } => "watch",
            ServeError::Listen { .. } => "listen",
            ServeError::InsecureListen { .. } | ServeError::InsecureSdsListen { .. } => {
                "insecure-listen"
            }
            ServeError::Sds(e) => e.code(),
            ServeError::Tls(e) => e.code(),
            ServeError::Audit(e) => e.code(),
            ServeError::State(e) => e.code(),
            ServeError::Start { .. } | ServeError::Server { .. } => "io",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ServeError::Open(e) => e.hint(),
            ServeError::Identity { source, .. } => source.hint(),
            ServeError::Tokens(e) => e.hint(),
            ServeError::Materialize(e) => e.hint(),
            ServeError::Watch { .. } => Some(
                "raise fs.inotify.max_user_watches, or check the folder's permissions".to_string(),
            ),
            ServeError::Listen { .. } => {
                Some("another process may hold the port; pick another with --listen".to_string())
            }
            ServeError::InsecureListen { .. } => Some(
                "serve TLS with --tls-cert FILE --tls-key FILE, listen on 127.0.0.1, or accept the risk with --insecure-listen".to_string(),
            ),
            ServeError::InsecureSdsListen { .. } => Some(
                "serve SDS on the --sds Unix socket or a loopback --sds-listen address, or accept the risk with --insecure-listen".to_string(),
            ),
            ServeError::Sds(e) => e.hint(),
            ServeError::Tls(e) => e.hint(),
            ServeError::Audit(e) => e.hint(),
            ServeError::State(e) => e.hint(),
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            ServeError::Open(e) => e.line(),
            ServeError::Tokens(e) => e.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            ServeError::Open(e) => e.file(),
            ServeError::Scan(e) => e.file(),
            ServeError::Identity { file, .. } => Some(file),
            ServeError::Tokens(e) => e.file(),
            ServeError::Materialize(e) => e.file(),
            ServeError::Folder { dir, .. }
            | ServeError::ZoneOverlap { dir }
            | ServeError::Watch { dir, .. } => Some(dir),
            ServeError::Tls(e) => e.file(),
            ServeError::Audit(e) => e.file(),
            ServeError::State(e) => e.file(),
            ServeError::Sds(e) => e.file(),
            ServeError::Listen { .. }
            | ServeError::InsecureListen { .. }
            | ServeError::InsecureSdsListen { .. }
            | ServeError::Start { .. }
            | ServeError::Server { .. } => None,
        }
    }
}

/// Logs a recoverable problem (one file, one event) with what was done
/// about it: the watcher goes on.
pub fn log_problem(p: &Problem, consequence: &str) {
    warn!(
        file = %p.file.as_deref().map(|f| f.display().to_string()).unwrap_or_default(),
        code = p.code,
        hint = p.hint.as_deref().unwrap_or(""),
        "{}: {consequence}",
        p.message
    );
}
