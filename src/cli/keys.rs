//! Commands that set a store up and manage who can read it: init, keygen,
//! recipients, rekey.

use std::path::PathBuf;

use meshseal::git;
use meshseal::identity::{self, IdentityError};
use meshseal::init;
use meshseal::problem::Problem;
use meshseal::recipients;
use meshseal::rekey;
use meshseal::scope::Scope;
use meshseal::store::Store;

use super::args::RecipientsCommand;
use super::error::CliError;
use super::exit::Exit;
use super::gitops::{current_exe, print_hook};
use super::output::{self, say};
use super::{mesh_scope, parse_keys, scope_of, Context, Result};

pub(super) fn cmd_init(ctx: &Context, keys: &[String]) -> Result<Exit> {
    let mut recipients = parse_keys(keys)?;
    if recipients.is_empty() {
        if let Some(ids) = ctx.optional_identities()? {
            recipients.extend(ids.recipients().iter().cloned());
        }
    }
    let (_, report) = init::init(&ctx.repo, &recipients)?;
    for f in &report.created {
        say!("created {f}");
    }
    if git::is_work_tree(&ctx.repo) {
        let exe = current_exe()?;
        git::set_diff_driver(&ctx.repo, &exe)?;
        say!("configured the git diff driver (git diff shows redacted secrets)");
        match git::install_hook(&ctx.repo, &exe, false) {
            Ok(outcome) => print_hook(&outcome),
            Err(e) => output::problem(&Problem::from(e)),
        }
    } else {
        eprintln!("hint: not a git work tree: run `git init` and `meshseal hook install` to get the pre-commit hook and redacted diffs");
    }
    for f in &report.kept {
        say!("kept {f}");
    }
    if recipients.is_empty() {
        eprintln!("hint: no recipients yet: `meshseal keygen`, then `meshseal recipients add --global KEY` and `meshseal recipients add -m default KEY`");
    }
    Ok(Exit::Success)
}

pub(super) fn cmd_keygen(output: Option<PathBuf>) -> Result<Exit> {
    let path = output
        .or_else(identity::default_path)
        .ok_or(IdentityError::NoConfigDir)?;
    let (text, public) = identity::generate();
    identity::write_new(&path, &text).map_err(|e| Problem::at(&path, &e))?;
    eprintln!("wrote identity {} (mode 0600)", path.display());
    say!("{public}");
    Ok(Exit::Success)
}

pub(super) fn cmd_recipients(ctx: &Context, cmd: RecipientsCommand) -> Result<Exit> {
    let store = ctx.writing_store()?;
    match cmd {
        RecipientsCommand::List { scope } => {
            let scope = scope_of(&scope)?;
            let set = store.recipients(&scope)?;
            for r in set.iter() {
                say!("{r}");
            }
            eprintln!(
                "# {} recipient(s), fingerprint {}",
                set.len(),
                set.fingerprint()
            );
        }
        RecipientsCommand::Add { scope, keys, own } => {
            let scope = scope_of(&scope)?;
            let mut keys = parse_keys(&keys)?;
            if own {
                keys.extend(ctx.identities()?.recipients().iter().cloned());
            }
            let text = store.recipients_text(&scope)?;
            let (text, added) = recipients::add_to_text(&text, &keys)
                .map_err(|e| Problem::at(scope.recipients_path(), &e))?;
            if added > 0 {
                store.write_recipients(&scope, &text)?;
            }
            say!(
                "added {added} recipient(s) to {}",
                scope.recipients_path().display()
            );
            stale_hint(&store, &scope)?;
        }
        RecipientsCommand::Remove { scope, keys, force } => {
            let scope = scope_of(&scope)?;
            let keys = parse_keys(&keys)?;
            let text = store.recipients_text(&scope)?;
            let (text, removed) = recipients::remove_keys(&text, &keys, &scope)?;
            let left = recipients::RecipientSet::parse(&text)
                .map(|set| set.len())
                .unwrap_or(0);
            if left == 0 && !force {
                return Err(Problem::from(CliError::LastRecipient {
                    file: scope.recipients_path(),
                    scope_flag: meshseal::store::scope_flag(&scope).trim_end().to_string(),
                }));
            }
            store.write_recipients(&scope, &text)?;
            say!(
                "removed {removed} recipient(s) from {}",
                scope.recipients_path().display()
            );
            let ids = store.secret_ids(Some(&scope))?;
            if !ids.is_empty() {
                eprintln!("warning: the removed key could read these secrets, and still can in git history; rotate their values:");
                for id in &ids {
                    eprintln!("  {}", id.path().display());
                }
            }
            if left == 0 {
                eprintln!(
                    "warning: {} lists nobody now: no new secret can be added to {scope}; add a key with `meshseal recipients add {} KEY`",
                    scope.recipients_path().display(),
                    meshseal::store::scope_flag(&scope).trim_end()
                );
            } else {
                stale_hint(&store, &scope)?;
            }
        }
    }
    Ok(Exit::Success)
}

pub(super) fn stale_hint(store: &Store, scope: &Scope) -> Result<()> {
    // Count what is really stale: adding a key already present, or removing
    // one and re-adding it, changes nothing.
    let stale = rekey::plan(store, &rekey::Selection::Scope(scope.clone()), false)
        .map(|ids| ids.len())
        .unwrap_or(0);
    if stale > 0 {
        eprintln!(
            "hint: {stale} secret(s) of {scope} are now stale: run `meshseal rekey {}`",
            meshseal::store::scope_flag(scope).trim_end()
        );
    }
    Ok(())
}

pub(super) fn cmd_rekey(
    ctx: &Context,
    mesh: Option<String>,
    global: bool,
    all: bool,
    force: bool,
    yes: bool,
) -> Result<Exit> {
    let store = ctx.writing_store()?;
    let selection = if all {
        rekey::Selection::All
    } else if global {
        rekey::Selection::Scope(Scope::Global)
    } else {
        let mesh = mesh.unwrap_or_else(|| meshseal::scope::DEFAULT_MESH.to_string());
        rekey::Selection::Scope(mesh_scope(&mesh)?)
    };
    let ids = match rekey::plan(&store, &selection, force) {
        Ok(ids) => ids,
        Err(errors) => {
            output::problems(&reports(errors));
            return Ok(Exit::Failure);
        }
    };
    if ids.is_empty() {
        say!("nothing to rekey: every selected secret is encrypted to its current recipients");
        return Ok(Exit::Success);
    }
    // Without a trust root nothing vouches for recipients.txt: show what
    // changed since these secrets were written, and ask before adding readers.
    if store.signing().trust.is_none() {
        let mut gained = false;
        for diff in rekey::key_diffs(&store, &ids) {
            let scope = diff.scope.as_ref().expect("key_diffs names the scope");
            if diff.added.is_empty() && diff.removed.is_empty() {
                continue;
            }
            let short = &diff.commit[..diff.commit.len().min(12)];
            eprintln!(
                "{} since {short}, the commit that last wrote these secrets:",
                scope.recipients_path().display()
            );
            for key in &diff.added {
                eprintln!("  + {key}");
            }
            for key in &diff.removed {
                eprintln!("  - {key}");
            }
            gained |= !diff.added.is_empty();
        }
        if gained && !yes {
            return Err(Problem::from(CliError::RecipientsAdded));
        }
    }
    let identities = ctx.identities()?;
    // A bar on a terminal, for stores large enough to wait on.
    let bar = if ids.len() >= 200 {
        indicatif::ProgressBar::new(2 * ids.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    // Each file counts once decrypted and once re-encrypted and staged; the
    // staged files are then replaced together.
    bar.set_message("decrypt, then re-encrypt");
    let result = rekey::rekey_with_progress(&store, &ids, &identities, &|| bar.inc(1));
    bar.finish_and_clear();
    match result {
        Ok(n) => {
            say!("rekeyed {n} secret(s)");
            Ok(Exit::Success)
        }
        Err(rekey::RekeyFailure::NothingWritten(errors)) => {
            output::problems(&reports(errors));
            eprintln!("nothing was rewritten: every file must decrypt (and, under a trust root, verify), and all be re-encrypted and staged, before any is replaced");
            Ok(Exit::Failure)
        }
        Err(rekey::RekeyFailure::Partial { errors, rekeyed }) => {
            output::problems(&reports(errors));
            eprintln!(
                "{} of {} file(s) were rekeyed before the failure, the others were not rewritten; every file still decrypts; run rekey again",
                rekeyed.len(),
                ids.len()
            );
            const NAMED: usize = 20;
            for file in rekeyed.iter().take(NAMED) {
                eprintln!("  rekeyed {}", file.display());
            }
            if rekeyed.len() > NAMED {
                eprintln!("  and {} more", rekeyed.len() - NAMED);
            }
            Ok(Exit::Failure)
        }
    }
}

fn reports(errors: Vec<rekey::RekeyError>) -> Vec<Problem> {
    errors.into_iter().map(Problem::from).collect()
}
