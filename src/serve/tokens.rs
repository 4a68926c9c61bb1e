//! Following the tokens file: a token removed from the file stops working
//! within the debounce window, and an added one works, without a signal.
//!
//! The folder is watched, not the file: editors and `meshseal token create`
//! replace the file by renaming a new one over it, which a watch on the old
//! file would never see. Watching the folder also catches a Kubernetes
//! secret mount, whose `..data` symlink is swapped. When the path is a
//! symlink, the folder of the file it points to is watched as well.
//!
//! Revocation fails closed: a file that turns unreadable, or that others can
//! write, serves no token; a file with a broken line serves the tokens of its
//! other lines. A removed token never keeps working because something else
//! in the file broke.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::RecursiveMode;
use tracing::{info, warn};

use crate::problem::Problem;
use crate::tokens::{Tokens, TokensFileError};

use super::debounce::{Debouncer, Delivered};
use super::error::{log_problem, ServeError};

/// The follower; dropping or stopping it stops following.
pub type TokensFollower = Debouncer;

/// Reads the tokens file at start: any problem stops the watcher.
pub fn load(path: Option<&Path>) -> Result<Tokens, ServeError> {
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

/// Follows the tokens file's folder (and its target's), re-reading the file
/// on any change (see [`reload`]).
pub fn follow(
    path: &Path,
    tokens: Arc<ArcSwap<Tokens>>,
    debounce: Duration,
) -> Result<TokensFollower, ServeError> {
    let file = path.to_path_buf();
    let mut debouncer = Debouncer::new(
        debounce,
        notify::Config::default(),
        // Whatever is handed on (the debouncer drops our own reads) may be
        // a new version, and a lost event may have hidden one.
        move |_: Delivered| {
            reload(&file, &tokens);
        },
    )
    .map_err(|source| ServeError::Watch {
        dir: path.to_path_buf(),
        source,
    })?;
    for folder in folders_of(path) {
        debouncer
            .watch(&folder, RecursiveMode::NonRecursive)
            .map_err(|source| ServeError::Watch {
                dir: folder.clone(),
                source,
            })?;
    }
    Ok(debouncer)
}

/// The folder of the file, and of the file a link points to.
fn folders_of(path: &Path) -> Vec<PathBuf> {
    let mut folders = vec![crate::atomic::parent(path).to_path_buf()];
    if let Ok(target) = fs::canonicalize(path) {
        let target_folder = crate::atomic::parent(&target).to_path_buf();
        if fs::canonicalize(&folders[0]).ok().as_ref() != Some(&target_folder) {
            folders.push(target_folder);
        }
    }
    folders
}

/// What a re-read of the tokens file yields, failing closed.
fn reread(path: &Path) -> (Tokens, Option<TokensFileError>) {
    match Tokens::read(path) {
        Ok(text) => {
            let (tokens, broken) = Tokens::parse_valid_lines(&text);
            let err = broken.map(|source| TokensFileError {
                file: path.to_path_buf(),
                source,
            });
            (tokens, err)
        }
        Err(e) => (Tokens::default(), Some(e)),
    }
}

/// Re-reads the tokens file and publishes it if it changed.
pub fn reload(path: &Path, live: &ArcSwap<Tokens>) {
    // One reload at a time (the file's follower and SIGHUP): a slow read of
    // an older version must not be stored after a newer one.
    static RELOADING: Mutex<()> = Mutex::new(());
    let _one = RELOADING.lock().unwrap_or_else(|e| e.into_inner());
    let (new, problem) = reread(path);
    if let Some(e) = &problem {
        log_problem(
            &Problem::report(e),
            "only the tokens of the file's valid lines are accepted",
        );
    }
    let (added, removed) = new.changes_from(&live.load());
    if (added, removed) == (0, 0) {
        return;
    }
    let count = new.len();
    live.store(Arc::new(new));
    info!(file = %path.display(), tokens = count, added, removed, "tokens reloaded");
    if count == 0 {
        warn!(file = %path.display(), "the tokens file has no tokens: every secret request is refused");
    }
}
