//! The flags of `meshseal watch` and `meshseal token`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `meshseal watch` flags.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Address of the read-only HTTP API (loopback unless told otherwise).
    #[arg(long = "listen", value_name = "ADDR", default_value = meshseal::serve::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Tokens file (sha256 digests and scopes, see `meshseal token create`);
    /// followed: a removed line revokes its token without a restart.
    #[arg(long = "tokens", value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Keep DIR/meshes/<mesh>/<name> and DIR/global/<name> files in step.
    #[arg(long = "materialize", value_name = "DIR")]
    pub materialize: Option<PathBuf>,
    /// Accept a --materialize folder on a persistent (disk-backed) file
    /// system: the plaintext files then stay at rest.
    #[arg(long = "materialize-persistent", requires = "materialize")]
    pub materialize_persistent: bool,
    /// Quiet time, in milliseconds, before a batch of file changes is applied.
    #[arg(long = "debounce", value_name = "MS", default_value_t = meshseal::serve::DEFAULT_DEBOUNCE_MS)]
    pub debounce: u64,
    /// Zone mode: this zone's name (with --zone-store).
    #[arg(long = "zone", value_name = "NAME", requires = "zone_store")]
    pub zone: Option<String>,
    /// Zone mode: a zone-local store (same layout, never written) merged over
    /// the repository's; on a name conflict the zone-local secret is kept.
    #[arg(long = "zone-store", value_name = "DIR", requires = "zone")]
    pub zone_store: Option<PathBuf>,
    /// Keep what a restart reuses in DIR (created 0700): the documents of
    /// unchanged files, encrypted to this watcher's own identities.
    #[arg(long = "state", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Serve `/metrics` without a token (it needs one by default).
    #[arg(long = "public-metrics")]
    pub public_metrics: bool,
    /// Append one JSON line per secret or policy request (token digest
    /// prefix, scope, resource, result; never data) to FILE.
    #[arg(long = "audit", value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Serve the API over TLS with this PEM certificate chain (with --tls-key).
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address beyond loopback (tokens and secrets
    /// then cross the network in clear).
    #[arg(long = "insecure-listen", conflicts_with = "tls_cert")]
    pub insecure_listen: bool,
    /// Serve Envoy's Secret Discovery Service on a Unix socket at PATH
    /// (mode 0660; its folder is created 0750 if missing). Resources are
    /// named `<mesh>/<name>` or `<mesh>/<cert>+<key>`; see docs/sds.md.
    #[arg(long = "sds", value_name = "PATH")]
    pub sds: Option<PathBuf>,
    /// Serve SDS on this TCP address too (loopback unless --insecure-listen).
    #[arg(long = "sds-listen", value_name = "ADDR")]
    pub sds_listen: Option<SocketAddr>,
    /// Load and validate once, print a summary, exit 0 if all is valid, else 1.
    #[arg(long = "once")]
    pub once: bool,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `meshseal token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new API token: prints it once, the file keeps only its sha256.
    Create {
        /// A token that reads everything, global secrets included.
        #[arg(long = "admin", conflicts_with = "mesh")]
        admin: bool,
        /// A token that reads this mesh's secrets only.
        #[arg(short = 'm', long = "mesh")]
        mesh: Option<String>,
        /// The tokens file (created with mode 0600 if missing).
        #[arg(long = "tokens", value_name = "FILE")]
        tokens: PathBuf,
    },
}
