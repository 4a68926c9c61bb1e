//! Listing a swapped-in tree while the debounce window runs.
//!
//! A link swap is atomic: the new tree is complete when the link is renamed
//! over it (git-sync checks the commit out first). The debounce window is
//! there to gather a checkout's many writes into one batch, not for the
//! swap; yet git's listing of the new tree (10–20 ms for 10,000 files on a
//! busy machine, 50 ms and more for 100,000) would come after it. So the
//! raw, undebounced events of the folders holding the root's links start
//! git on the link's new target at once, and the update thread takes that
//! listing when it follows the swap. Only git starts early: the swap is
//! followed and its generation published after the window, as before.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{Config, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::{Listing, PendingListing, WorktreeError};
use crate::serve::sources::link_folders;

/// A listing started early for the tree a root's link now points at.
pub struct Prefetch {
    given: PathBuf,
    /// The folders holding a link on the root's path: the ones watched,
    /// and the only ones below which a target is listed early.
    folders: Vec<PathBuf>,
    state: Mutex<State>,
}

struct State {
    /// Where the link pointed when last looked at.
    target: PathBuf,
    /// The size to expect of a listing.
    capacity: usize,
    /// git listing `target`, started by the last swap seen.
    pending: Option<(PathBuf, Result<PendingListing, WorktreeError>)>,
}

impl Prefetch {
    /// For the root given as `given`, resolving to `root` now.
    pub fn new(given: &Path, root: &Path) -> Prefetch {
        Prefetch {
            given: given.to_path_buf(),
            folders: link_folders(given),
            state: Mutex::new(State {
                target: root.to_path_buf(),
                capacity: 0,
                pending: None,
            }),
        }
    }

    /// Follows the folders holding the root's links with a watcher of its
    /// own, without debounce; kept for as long as the returned watcher is.
    pub fn watch(self: &Arc<Self>) -> notify::Result<RecommendedWatcher> {
        let me = Arc::clone(self);
        let mut watcher = RecommendedWatcher::new(
            move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !matches!(e.kind, EventKind::Access(_))) {
                    me.link_changed();
                }
            },
            Config::default().with_follow_symlinks(false),
        )?;
        for folder in &self.folders {
            watcher.watch(folder, RecursiveMode::NonRecursive)?;
        }
        Ok(watcher)
    }

    /// Something changed beside a link: when the root now resolves to
    /// another tree below a link's folder, git starts listing it (a listing
    /// started for an earlier swap is given up).
    pub fn link_changed(&self) {
        let Ok(target) = fs::canonicalize(&self.given) else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.target == target || !self.folders.iter().any(|f| target.starts_with(f)) {
            return;
        }
        let listing = Listing::start(&target, state.capacity);
        state.target = target.clone();
        state.pending = Some((target, listing));
    }

    /// The listing started early for the tree at `root`, if one was.
    pub fn take(&self, root: &Path) -> Option<Result<PendingListing, WorktreeError>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.pending.as_ref().is_some_and(|(t, _)| t == root) {
            return state.pending.take().map(|(_, listing)| listing);
        }
        None
    }

    /// The size to expect of the next listing, in bytes.
    pub fn expect(&self, capacity: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.capacity = capacity;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A git repository at `dir` holding one secret file per name.
    fn repo(dir: &Path, names: &[&str]) {
        fs::create_dir_all(dir.join("meshes/m/secrets")).unwrap();
        for name in names {
            fs::write(dir.join(format!("meshes/m/secrets/{name}.age")), name).unwrap();
        }
        for args in [
            &["init", "-q"][..],
            &["add", "."],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "t",
            ],
        ] {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .status()
                .expect("git runs")
                .success();
            assert!(ok, "git {args:?}");
        }
    }

    #[test]
    fn a_swapped_link_is_listed_before_the_update_thread_asks() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let (one, two) = (base.join("rev-1"), base.join("rev-2"));
        repo(&one, &["a"]);
        repo(&two, &["a", "b"]);
        let link = base.join("current");
        std::os::unix::fs::symlink(&one, &link).unwrap();
        let prefetch = Prefetch::new(&link, &one);

        // An event while the link still points at the served tree starts
        // nothing.
        prefetch.link_changed();
        assert!(prefetch.take(&one).is_none());

        let next = base.join("current.new");
        std::os::unix::fs::symlink(&two, &next).unwrap();
        fs::rename(&next, &link).unwrap();
        prefetch.link_changed();
        // Only the tree the link points at is handed over, and only once.
        assert!(prefetch.take(&one).is_none());
        let listing = prefetch.take(&two).expect("started at the swap");
        let listing = listing.expect("git starts").wait().expect("git lists");
        assert!(listing.size() > 0);
        assert!(prefetch.take(&two).is_none());
    }

    #[test]
    fn a_link_to_a_tree_outside_the_links_folders_is_not_listed_early() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let other = fs::canonicalize(elsewhere.path()).unwrap().join("rev");
        let one = base.join("rev-1");
        repo(&one, &["a"]);
        repo(&other, &["a"]);
        let link = base.join("current");
        std::os::unix::fs::symlink(&one, &link).unwrap();
        let prefetch = Prefetch::new(&link, &one);
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&other, &link).unwrap();
        prefetch.link_changed();
        assert!(prefetch.take(&other).is_none());
    }
}
