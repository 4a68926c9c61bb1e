//! `meshseal watch` and `meshseal token create`: flags in, library calls out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};

use meshseal::identity::IdentityError;
use meshseal::problem::Problem;
use meshseal::serve::{self, WatchOptions, DEFAULT_LISTEN};
use meshseal::tokens::{self, TokenScope};

use super::exit::Exit;
use super::output::{self, say};
use super::{Context, Result};

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
    #[arg(long = "listen", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
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
    #[arg(long = "debounce", value_name = "MS", default_value_t = serve::DEFAULT_DEBOUNCE_MS)]
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
        #[arg(
            long = "admin",
            conflicts_with = "mesh",
            required_unless_present = "mesh"
        )]
        admin: bool,
        /// A token that reads this mesh's secrets only.
        #[arg(short = 'm', long = "mesh")]
        mesh: Option<String>,
        /// The tokens file (created with mode 0600 if missing).
        #[arg(long = "tokens", value_name = "FILE")]
        tokens: PathBuf,
    },
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(tracing::Level::INFO);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(super) fn cmd_watch(ctx: &Context, args: WatchArgs) -> Result<Exit> {
    let identity_files = ctx.identity_files();
    if identity_files.is_empty() {
        // A store that is not there is the first thing to say.
        meshseal::store::Store::open(&ctx.repo)?;
        return Err(Problem::general(&IdentityError::NoneConfigured {
            default: meshseal::identity::default_path(),
        }));
    }
    let options = WatchOptions {
        root: ctx.repo.clone(),
        identity_files,
        listen: args.listen,
        tokens: args.tokens,
        materialize: args.materialize,
        materialize_persistent: args.materialize_persistent,
        debounce: Duration::from_millis(args.debounce),
        zone: args.zone.zip(args.zone_store),
        public_metrics: args.public_metrics,
        audit: args.audit,
        tls: args.tls_cert.zip(args.tls_key),
        insecure_listen: args.insecure_listen,
        state: args.state,
        sds: args.sds,
        sds_listen: args.sds_listen,
    };
    if args.once {
        return once(&options);
    }
    init_logging(args.log_format);
    serve::run(options)?;
    Ok(Exit::Success)
}

fn once(options: &WatchOptions) -> Result<Exit> {
    let start = Instant::now();
    let index = serve::once(options)?.index;
    let problems: Vec<Problem> = index.problems().cloned().collect();
    output::problems(&problems);
    for id in index.conflicts() {
        eprintln!(
            "warning: resource already exists: {}: the zone-local secret is kept",
            id.kuma_ref()
        );
    }
    let global = index.scope_secrets(&meshseal::scope::Scope::Global).count();
    let stale = index.stale().count();
    say!(
        "loaded {} secret(s): {} in {} mesh(es), {} global; {} problem(s); {} stale; {} decrypted; {:.1} ms",
        index.len(),
        index.len() - global,
        index.meshes().len(),
        global,
        problems.len(),
        stale,
        index.counters().decrypted,
        start.elapsed().as_secs_f64() * 1000.0
    );
    if stale > 0 {
        eprintln!("hint: re-encrypt stale secrets to their scope's current recipients with `meshseal rekey --all`");
    }
    Ok(Exit::from_problems(&problems))
}

pub(super) fn cmd_token(cmd: TokenCommand) -> Result<Exit> {
    match cmd {
        TokenCommand::Create { mesh, tokens, .. } => {
            let scope = match mesh {
                Some(m) => {
                    meshseal::scope::validate_mesh(&m).map_err(|e| Problem::general(&e))?;
                    TokenScope::Mesh(m)
                }
                None => TokenScope::Admin,
            };
            let token = tokens::create(&tokens, &scope)?;
            eprintln!(
                "added a token of scope {scope} to {} (only its sha256 is kept: this is the one time it is shown)",
                tokens.display()
            );
            let mut line = zeroize::Zeroizing::new(token.as_bytes().to_vec());
            line.push(b'\n');
            output::stdout(&line);
            Ok(Exit::Success)
        }
    }
}
