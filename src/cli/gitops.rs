//! Commands for the git workflow: check, hook install, textconv.

use std::fs;
use std::path::{Path, PathBuf};

use meshseal::check::{self, CheckOptions};
use meshseal::git;
use meshseal::store::Store;

use super::args::CheckFormat;
use super::error::CliError;
use super::exit::Exit;
use super::output::{self, say};
use super::secrets::read_limited;
use super::{Context, Result};

pub(super) fn cmd_check(
    ctx: &Context,
    paths: &[PathBuf],
    format: CheckFormat,
    no_decrypt: bool,
    staged: bool,
    expiry_warning_days: u64,
) -> Result<Exit> {
    let store = ctx.verifying_store()?;
    let identities = if no_decrypt {
        None
    } else {
        ctx.optional_identities()?
    };
    let only: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            let p = p.strip_prefix("./").unwrap_or(p);
            p.strip_prefix(store.root()).unwrap_or(p).to_path_buf()
        })
        .collect();
    // A typo must not pass CI: a path that names nothing checks nothing.
    for (given, inside) in paths.iter().zip(&only) {
        if fs::symlink_metadata(store.root().join(inside)).is_err() {
            return Err(CliError::NoSuchPath {
                path: given.clone(),
            }
            .into());
        }
    }
    let options = CheckOptions {
        identities: identities.as_ref(),
        only,
        expiry_warning: check::expiry_warning_days(expiry_warning_days),
    };
    let report = if staged {
        let index = git::Staged::read(store.root(), store.signing().trust.is_some())?;
        check::check_source(&store, &index, &options)
    } else {
        check::check(&store, &options)
    };
    match format {
        CheckFormat::Json => {
            // Problems as SPEC 6 gives them; a warning says it is one.
            let entries: Vec<serde_json::Value> = report
                .problems
                .iter()
                .map(|p| serde_json::to_value(p).expect("problems serialize"))
                .chain(report.warnings.iter().map(|w| {
                    let mut v = serde_json::to_value(w).expect("warnings serialize");
                    v["severity"] = "warning".into();
                    v
                }))
                .collect();
            let text = serde_json::to_string_pretty(&entries).expect("problems serialize");
            say!("{text}");
        }
        CheckFormat::Table => {
            output::problems(&report.problems);
            for w in &report.warnings {
                output::warning(w);
            }
            let mode = if identities.is_some() {
                format!("{} decrypted", report.decrypted)
            } else {
                "without a key: contents not verified".to_string()
            };
            match report.signatures {
                check::Signatures::Verified => {}
                check::Signatures::NotVerified => eprintln!(
                    "note: signatures are not verified: no trust root (--trust FILE, $MESHSEAL_TRUST or {})",
                    default_trust_path()
                ),
                check::Signatures::Unsigned => eprintln!(
                    "note: this store is unsigned: anyone who can push can change its secrets (see docs/writers.md)"
                ),
            }
            let warnings = match report.warnings.len() {
                0 => String::new(),
                n => format!(", {n} warning(s)"),
            };
            if report.problems.is_empty() {
                say!(
                    "ok: {} secret(s) checked ({mode}){warnings}",
                    report.secrets
                );
            } else {
                eprintln!(
                    "{} problem(s) in {} secret(s) checked ({mode}){warnings}",
                    report.problems.len(),
                    report.secrets
                );
            }
        }
    }
    Ok(Exit::from_problems(&report.problems))
}

fn default_trust_path() -> String {
    meshseal::signing::trust::default_path().map_or_else(
        || "<config dir>/meshseal/trust.txt".to_string(),
        |p| p.display().to_string(),
    )
}

pub(super) fn current_exe() -> Result<PathBuf> {
    Ok(std::env::current_exe().map_err(CliError::OwnPath)?)
}

pub(super) fn print_hook(outcome: &git::HookOutcome) {
    match outcome {
        git::HookOutcome::Installed(p) => say!("installed pre-commit hook {}", p.display()),
        git::HookOutcome::Updated(p) => say!("updated pre-commit hook {}", p.display()),
        git::HookOutcome::Replaced(p) => say!("replaced pre-commit hook {}", p.display()),
    }
}

pub(super) fn cmd_hook_install(ctx: &Context, force: bool) -> Result<Exit> {
    let exe = current_exe()?;
    let outcome = git::install_hook(&ctx.repo, &exe, force)?;
    print_hook(&outcome);
    git::set_diff_driver(&ctx.repo, &exe)?;
    say!("configured the git diff driver (git diff shows redacted secrets)");
    Ok(Exit::Success)
}

pub(super) fn cmd_hook_run(ctx: &Context) -> Result<Exit> {
    let stores = git::stores_to_check(&ctx.repo)?;
    let several = stores.len() > 1;
    let mut exit = Exit::Success;
    for store in stores {
        if several {
            say!("{}:", store.display());
        }
        let store_ctx = Context {
            repo: store,
            identity_paths: ctx.identity_paths.clone(),
            sign_key: None,
            trust: ctx.trust.clone(),
        };
        let code = cmd_check(
            &store_ctx,
            &[],
            CheckFormat::Table,
            false,
            true,
            meshseal::certs::DEFAULT_WARN_DAYS,
        )?;
        if code != Exit::Success {
            exit = code;
        }
    }
    Ok(exit)
}

pub(super) fn cmd_textconv(ctx: &Context, file: &Path, reveal: bool) -> Result<Exit> {
    // A diff must not fail for want of a store config: the defaults do.
    let config = Store::with_config(ctx.repo.clone())
        .map(|s| s.config().clone())
        .unwrap_or_default();
    let read_error = |source| CliError::Read {
        path: file.to_path_buf(),
        source,
    };
    let bytes = read_limited(
        fs::File::open(file).map_err(read_error)?,
        config.max_file_bytes(),
    )
    .map_err(read_error)?;
    let limit = config.limits.max_data_bytes;
    // A diff must not fail for want of a key: use one only if it loads, and
    // say why one did not (a mode 0644 identity, say) as every command does.
    let identities = match ctx.optional_identities() {
        Ok(ids) => ids,
        Err(problem) => {
            output::warning(&problem);
            None
        }
    };
    let text = meshseal::textconv::render(&bytes, identities.as_ref(), reveal, limit);
    output::stdout(text.as_bytes());
    Ok(Exit::Success)
}
