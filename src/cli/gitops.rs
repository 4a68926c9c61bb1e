//! Commands for the git workflow: check, hook install, textconv.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use meshseal::check::{self, CheckOptions};
use meshseal::git;
use meshseal::problem::Problem;
use meshseal::store::Store;

use super::args::Output;
use super::output::{self, say};
use super::secrets::read_limited;
use super::{io_problem, Context, Result};

pub(super) fn cmd_check(
    ctx: &Context,
    paths: &[PathBuf],
    output: Output,
    no_decrypt: bool,
    staged: bool,
) -> Result<ExitCode> {
    let store = ctx.store()?;
    let identities = if no_decrypt {
        None
    } else {
        ctx.optional_identities()?
    };
    let only = paths
        .iter()
        .map(|p| {
            let p = p.strip_prefix("./").unwrap_or(p);
            p.strip_prefix(store.root()).unwrap_or(p).to_path_buf()
        })
        .collect();
    let options = CheckOptions {
        identities: identities.as_ref(),
        only,
    };
    let report = if staged {
        let index = git::Staged::read(store.root())?;
        check::check_source(&store, &index, &options)
    } else {
        check::check(&store, &options)
    };
    match output {
        Output::Json => {
            let text = serde_json::to_string_pretty(&report.problems).expect("problems serialize");
            say!("{text}");
        }
        _ => {
            output::problems(&report.problems);
            let mode = if identities.is_some() {
                format!("{} decrypted", report.decrypted)
            } else {
                "without a key: contents not verified".to_string()
            };
            if report.problems.is_empty() {
                say!("ok: {} secret(s) checked ({mode})", report.secrets);
            } else {
                eprintln!(
                    "{} problem(s) in {} secret(s) checked ({mode})",
                    report.problems.len(),
                    report.secrets
                );
            }
        }
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) fn current_exe() -> Result<PathBuf> {
    std::env::current_exe()
        .map_err(|e| Problem::new(None, "io", format!("cannot find meshseal's own path: {e}")))
}

pub(super) fn print_hook(outcome: &git::HookOutcome) {
    match outcome {
        git::HookOutcome::Installed(p) => say!("installed pre-commit hook {}", p.display()),
        git::HookOutcome::Updated(p) => say!("updated pre-commit hook {}", p.display()),
        git::HookOutcome::Replaced(p) => say!("replaced pre-commit hook {}", p.display()),
    }
}

pub(super) fn cmd_hook_install(ctx: &Context, force: bool) -> Result<ExitCode> {
    let exe = current_exe()?;
    let outcome = git::install_hook(&ctx.repo, &exe, force)?;
    print_hook(&outcome);
    git::set_diff_driver(&ctx.repo, &exe)?;
    say!("configured the git diff driver (git diff shows redacted secrets)");
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cmd_textconv(ctx: &Context, file: &Path, reveal: bool) -> Result<ExitCode> {
    let limit = Store::with_config(ctx.repo.clone())
        .map(|s| s.config().limits.max_data_bytes)
        .unwrap_or(meshseal::document::DEFAULT_MAX_DATA_BYTES);
    let bytes = read_limited(
        fs::File::open(file).map_err(|e| io_problem(file, e))?,
        limit.saturating_mul(2) + 64 * 1024,
    )
    .map_err(|e| io_problem(file, e))?;
    // A diff must not fail for want of a key: use one only if it loads.
    let identities = ctx.optional_identities().ok().flatten();
    let text = meshseal::textconv::render(&bytes, identities.as_ref(), reveal, limit);
    output::stdout(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
