//! `meshseal watch` and `meshseal token create`: flags in, library calls out.

use std::time::{Duration, Instant};

use meshseal::identity::IdentityError;
use meshseal::problem::Problem;
use meshseal::serve::{self, WatchOptions};
use meshseal::tokens::{self, TokenScope};

use super::args::{LogFormat, TokenCommand, WatchArgs};
use super::exit::Exit;
use super::output::{self, say};
use super::{Context, Result};

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
    // A trust root that does not load (loose permissions, no such file)
    // stops the start: the watcher never serves unverified by mistake.
    let trust = ctx.trust()?;
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
        trust,
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
