//! Which files a swapped-in worktree changed, by git's own account.
//!
//! git-sync checks every commit out into a new worktree and swaps a link to
//! it. To the watcher every file of the new tree is new (new inodes, new
//! times), so short of reading and hashing every file it cannot tell what
//! changed: a cost that grows with the store, not with the commit (600 ms
//! for 10 changed files of 10,000). git already knows: a worktree's index
//! holds the object id of every file it checked out. The watcher keeps the
//! listing of the tree it serves ([`Checkout`]); at a swap it reads the new
//! tree's and reads from disk only the files whose object id, mode or
//! presence differ.
//!
//! Why a listing in memory and not the old commit's id, for `git diff`:
//! git-sync removes the old worktree and prunes its objects right after the
//! swap (`gc.pruneExpire=now`), often before the debounce window ends.
//!
//! What it trusts: that a worktree holds what its index says, which is how
//! git-sync makes one (`git reset --hard`) and leaves it. Changes made to the
//! tree being served are seen as file events and remembered
//! ([`Checkout::touch`]), so they are read again at the next swap. Whatever
//! git cannot vouch for (no git, not a checkout, a merge in progress, a
//! repository owned by another user, a changed `meshseal.toml`) is rescanned
//! whole, as before. SIGHUP rescans whole too.
//!
//! git runs with the repository's own configuration, as for any user: a
//! repository owned by someone else is refused by git (`safe.directory`)
//! unless the watcher's user trusts it, and meshseal never overrides that.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::CONFIG_FILE;
use crate::git::GitError;
use crate::problem::Diagnostic;

/// A git that has not answered by then is killed (a hung `git` must not stop
/// the update thread): the swap is rescanned whole.
const GIT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of git's listing is read (100,000 files list in ~9 MB).
const MAX_LISTING_BYTES: u64 = 256 << 20;
/// The folders (and the one file) of a store whose files the index follows,
/// as the file events do.
const STORE_PATHS: [&str; 3] = ["meshes", "global", CONFIG_FILE];

/// Why git could not say what a tree holds: its swaps are rescanned whole.
#[derive(Debug, Error)]
pub enum WorktreeError {
    /// git could not be run, or refused (not a checkout, another user's
    /// repository).
    #[error(transparent)]
    Git(#[from] GitError),
    /// git did not answer in time.
    #[error("git ls-files did not answer within {} s", GIT_TIMEOUT.as_secs())]
    TimedOut,
    /// git's listing was larger than any store's.
    #[error("git ls-files printed more than {} MiB", MAX_LISTING_BYTES >> 20)]
    TooLarge,
    /// A merge is in progress: the files hold conflicts, not object ids.
    #[error("{}: unmerged in git's index (a merge in progress)", path.display())]
    Unmerged {
        /// The first unmerged file.
        path: PathBuf,
    },
    /// git's index names no file of the store: the tree is not a checkout
    /// of it (a folder inside some other repository).
    #[error("git's index names no file under meshes/ or global/: not a checkout of the store")]
    Untracked,
}

impl Diagnostic for WorktreeError {
    fn code(&self) -> &'static str {
        "git"
    }

    fn hint(&self) -> Option<String> {
        match self {
            WorktreeError::Git(GitError::Failed { stderr, .. })
                if stderr.contains("dubious ownership") =>
            {
                Some("run the watcher as the repository's owner, or trust the repository in the watcher's git config (`git config --global --add safe.directory DIR`)".to_string())
            }
            WorktreeError::Git(e) => e.hint(),
            _ => None,
        }
    }
}

/// What git's index says one tree holds: for every file of the store, its
/// state (git's tag: checked out or skipped by a sparse checkout), mode and
/// object id.
///
/// Kept compact (one buffer, ~60 bytes a file), since the watcher holds one
/// for as long as it serves the tree: records sorted by path, each the
/// state, then the path.
pub struct Listing {
    /// Bytes of a record's state: tag, mode (4 bytes), object id (20 bytes
    /// in a SHA-1 repository, 32 in a SHA-256 one).
    state_len: usize,
    bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    ends: Vec<u32>,
}

impl Listing {
    /// Asks git for the listing of the store at `root` (a worktree, or a
    /// folder inside one).
    pub fn read(root: &Path) -> Result<Listing, WorktreeError> {
        Listing::start(root)?.wait()
    }

    /// Starts git on the listing of the store at `root`: the caller does
    /// other work while git runs, then [`PendingListing::wait`]s.
    pub fn start(root: &Path) -> Result<PendingListing, WorktreeError> {
        let mut args = vec![
            "--literal-pathspecs",
            "-c",
            "core.fsmonitor=false",
            "ls-files",
            "--stage",
            "-t",
            "-z",
            "--",
        ];
        args.extend(STORE_PATHS);
        PendingListing::spawn(root, &args)
    }

    /// Parses `git ls-files --stage -t -z`: `TAG MODE OID STAGE\tPATH\0`.
    fn parse(out: &[u8]) -> Result<Listing, WorktreeError> {
        let protocol = || WorktreeError::Git(GitError::Protocol("ls-files"));
        let mut listing = Listing {
            state_len: 0,
            bytes: Vec::with_capacity(out.len() / 2),
            ends: Vec::new(),
        };
        let mut sorted = true;
        let mut previous: &[u8] = &[];
        for record in out.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            let tab = record
                .iter()
                .position(|&b| b == b'\t')
                .ok_or_else(protocol)?;
            let (meta, path) = (&record[..tab], &record[tab + 1..]);
            let mut fields = meta.split(|&b| b == b' ');
            let (Some([tag]), Some(mode), Some(oid), Some(stage), None) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                return Err(protocol());
            };
            if !is_store_path(path) {
                continue;
            }
            if stage != b"0" {
                return Err(WorktreeError::Unmerged {
                    path: PathBuf::from(OsStr::from_bytes(path)),
                });
            }
            let mode = std::str::from_utf8(mode)
                .ok()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .ok_or_else(protocol)?;
            let start = listing.bytes.len();
            listing.bytes.push(*tag);
            listing.bytes.extend(mode.to_le_bytes());
            unhex(oid, &mut listing.bytes).ok_or_else(protocol)?;
            let state_len = listing.bytes.len() - start;
            if listing.ends.is_empty() {
                listing.state_len = state_len;
            } else if listing.state_len != state_len {
                return Err(protocol());
            }
            listing.bytes.extend(path);
            let end = u32::try_from(listing.bytes.len()).map_err(|_| WorktreeError::TooLarge)?;
            listing.ends.push(end);
            sorted &= previous < path;
            previous = path;
        }
        if !(0..listing.len()).any(|i| {
            let path = listing.record(i).1;
            path.starts_with(b"meshes/") || path.starts_with(b"global/")
        }) {
            return Err(WorktreeError::Untracked);
        }
        // git lists in its index's order, which is the paths' byte order
        // (what the merge in `differences` needs); whatever a git does, an
        // unsorted listing is sorted here.
        if !sorted {
            listing = listing.sorted();
        }
        Ok(listing)
    }

    fn sorted(self) -> Listing {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.record(a).1.cmp(self.record(b).1));
        let mut out = Listing {
            state_len: self.state_len,
            bytes: Vec::with_capacity(self.bytes.len()),
            ends: Vec::with_capacity(self.len()),
        };
        for i in order {
            let (state, path) = self.record(i);
            out.bytes.extend(state);
            out.bytes.extend(path);
            out.ends.push(out.bytes.len() as u32);
        }
        out
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Record `i`: (state, path).
    fn record(&self, i: usize) -> (&[u8], &[u8]) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let record = &self.bytes[start..self.ends[i] as usize];
        record.split_at(self.state_len)
    }

    /// The paths whose state differs between `self` and `next`, including
    /// files only one of them has.
    fn differences(&self, next: &Listing) -> BTreeSet<PathBuf> {
        let mut changed = BTreeSet::new();
        let (mut i, mut j) = (0, 0);
        let path = |p: &[u8]| PathBuf::from(OsStr::from_bytes(p));
        while i < self.len() || j < next.len() {
            let old = (i < self.len()).then(|| self.record(i));
            let new = (j < next.len()).then(|| next.record(j));
            match (old, new) {
                (Some((os, op)), Some((ns, np))) if op == np => {
                    if os != ns {
                        changed.insert(path(op));
                    }
                    i += 1;
                    j += 1;
                }
                (Some((_, op)), Some((_, np))) if op < np => {
                    changed.insert(path(op));
                    i += 1;
                }
                (Some(_), Some((_, np))) | (None, Some((_, np))) => {
                    changed.insert(path(np));
                    j += 1;
                }
                (Some((_, op)), None) => {
                    changed.insert(path(op));
                    i += 1;
                }
                (None, None) => break,
            }
        }
        changed
    }
}

/// The tree a store's index was built from, as git lists it, and the files
/// changed in it since (seen as file events).
pub struct Checkout {
    listing: Listing,
    touched: BTreeSet<PathBuf>,
}

/// What changed between the served tree and a swapped-in one.
#[derive(Debug, PartialEq, Eq)]
pub enum Changes {
    /// These files (relative to the store root) differ; every other file
    /// has the same bytes in both trees.
    Files(BTreeSet<PathBuf>),
    /// Rescan the new tree whole, for this reason.
    Rescan(&'static str),
}

impl Checkout {
    /// The tree at `root` as git lists it.
    pub fn read(root: &Path) -> Result<Checkout, WorktreeError> {
        Listing::read(root).map(Checkout::from)
    }

    /// Files changed in the tree since it was listed: they are read again
    /// at the next swap whatever git says of them.
    pub fn touch<'a>(&mut self, paths: impl IntoIterator<Item = &'a PathBuf>) {
        self.touched.extend(paths.into_iter().cloned());
    }

    /// This listing, with the files `previous` (a listing of the same tree)
    /// knew were touched.
    pub fn keeping_touched(mut self, previous: Option<Checkout>) -> Checkout {
        if let Some(previous) = previous {
            self.touched.extend(previous.touched);
        }
        self
    }

    /// What differs between the tree listed here and `next`'s.
    pub fn changes_to(&self, next: &Listing) -> Changes {
        if self.listing.state_len != next.state_len {
            return Changes::Rescan("the repository's object format changed");
        }
        let mut files = self.listing.differences(next);
        if files.contains(Path::new(CONFIG_FILE)) {
            return Changes::Rescan("meshseal.toml changed");
        }
        files.extend(self.touched.iter().cloned());
        Changes::Files(files)
    }
}

impl From<Listing> for Checkout {
    fn from(listing: Listing) -> Checkout {
        Checkout {
            listing,
            touched: BTreeSet::new(),
        }
    }
}

fn is_store_path(path: &[u8]) -> bool {
    path == CONFIG_FILE.as_bytes() || path.starts_with(b"meshes/") || path.starts_with(b"global/")
}

/// Appends the bytes of a hex object id to `out`.
fn unhex(hex: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    for pair in hex.chunks(2) {
        out.push((digit(pair[0])? << 4 | digit(pair[1])?) as u8);
    }
    Some(())
}

/// What a listing's reader thread sends: git's stdout and stderr.
type ListingOutput = (io::Result<Vec<u8>>, io::Result<Vec<u8>>);

/// git listing a tree, under way.
pub struct PendingListing {
    child: Option<Child>,
    output: mpsc::Receiver<ListingOutput>,
    reader: Option<thread::JoinHandle<()>>,
    started: Instant,
}

impl PendingListing {
    /// Starts `git -C root args`, its output read by a thread of its own
    /// (at most [`MAX_LISTING_BYTES`]).
    fn spawn(root: &Path, args: &[&str]) -> Result<PendingListing, WorktreeError> {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(root).args(args);
        // The tree's own repository, whatever the watcher's environment
        // says; and git only reads (no index refresh written into
        // git-sync's repository, no prompt, no fetch of missing objects).
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_COMMON_DIR",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_NAMESPACE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_NO_LAZY_FETCH", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| WorktreeError::Git(GitError::Spawn(e)))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (tx, output) = mpsc::channel();
        let reader = thread::spawn(move || {
            // stdout first, then dropped: a git cut off at the bound gets
            // EPIPE and ends, so stderr ends too.
            let out = read_bounded(stdout, MAX_LISTING_BYTES + 1);
            let err = read_bounded(stderr, 64 << 10);
            let _ = tx.send((out, err));
        });
        Ok(PendingListing {
            child: Some(child),
            output,
            reader: Some(reader),
            started: Instant::now(),
        })
    }

    /// git's listing, once git has ended (killed after [`GIT_TIMEOUT`]).
    pub fn wait(mut self) -> Result<Listing, WorktreeError> {
        let left = GIT_TIMEOUT.saturating_sub(self.started.elapsed());
        let Ok((out, err)) = self.output.recv_timeout(left) else {
            // Dropping `self` kills git.
            return Err(WorktreeError::TimedOut);
        };
        let spawn = |e| WorktreeError::Git(GitError::Spawn(e));
        let mut child = self.child.take().ok_or(WorktreeError::TimedOut)?;
        let status = child.wait().map_err(spawn)?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let out = out.map_err(spawn)?;
        if out.len() as u64 > MAX_LISTING_BYTES {
            return Err(WorktreeError::TooLarge);
        }
        if !status.success() {
            return Err(WorktreeError::Git(GitError::Failed {
                command: "ls-files".to_string(),
                // The problem; git's advice that follows is the hint's.
                stderr: String::from_utf8_lossy(&err.unwrap_or_default())
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            }));
        }
        Listing::parse(&out)
    }
}

impl Drop for PendingListing {
    /// A listing given up on (or timed out) leaves no git behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn read_bounded(pipe: Option<impl Read>, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(limit).read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn listing(records: &[(&str, &str, &str)]) -> Listing {
        let mut out = Vec::new();
        for (tag, oid, path) in records {
            out.extend(format!("{tag} 100644 {oid} 0\t{path}\0").bytes());
        }
        Listing::parse(&out).expect("parses")
    }

    fn files(paths: &[&str]) -> Changes {
        Changes::Files(paths.iter().map(PathBuf::from).collect())
    }

    #[test]
    fn changed_added_and_deleted_files_are_named_and_nothing_else() {
        let old = Checkout::from(listing(&[
            ("H", A, "meshes/m/secrets/same.age"),
            ("H", A, "meshes/m/secrets/changed.age"),
            ("H", A, "meshes/m/secrets/deleted.age"),
            ("H", A, "global/recipients.txt"),
        ]));
        let new = listing(&[
            ("H", A, "global/recipients.txt"),
            ("H", A, "meshes/m/secrets/added.age"),
            ("H", B, "meshes/m/secrets/changed.age"),
            ("H", A, "meshes/m/secrets/same.age"),
        ]);
        assert_eq!(
            old.changes_to(&new),
            files(&[
                "meshes/m/secrets/added.age",
                "meshes/m/secrets/changed.age",
                "meshes/m/secrets/deleted.age",
            ])
        );
    }

    #[test]
    fn a_file_a_sparse_checkout_leaves_out_is_not_the_same_file() {
        // `S`: in the commit, not on disk; it appearing on disk is a change.
        let old = Checkout::from(listing(&[("S", A, "meshes/m/secrets/a.age")]));
        let new = listing(&[("H", A, "meshes/m/secrets/a.age")]);
        assert_eq!(old.changes_to(&new), files(&["meshes/m/secrets/a.age"]));
    }

    #[test]
    fn files_touched_since_the_listing_are_read_again() {
        let mut old = Checkout::from(listing(&[("H", A, "meshes/m/secrets/a.age")]));
        old.touch(&[PathBuf::from("meshes/m/secrets/a.age")]);
        let new = listing(&[("H", A, "meshes/m/secrets/a.age")]);
        assert_eq!(old.changes_to(&new), files(&["meshes/m/secrets/a.age"]));
    }

    #[test]
    fn a_new_listing_of_the_same_tree_keeps_what_was_touched_in_it() {
        let mut old = Checkout::from(listing(&[("H", A, "meshes/m/secrets/a.age")]));
        old.touch(&[PathBuf::from("meshes/m/secrets/a.age")]);
        let relisted = Checkout::from(listing(&[("H", A, "meshes/m/secrets/a.age")]))
            .keeping_touched(Some(old));
        let next = listing(&[("H", A, "meshes/m/secrets/a.age")]);
        assert_eq!(
            relisted.changes_to(&next),
            files(&["meshes/m/secrets/a.age"])
        );
    }

    #[test]
    fn a_changed_config_asks_for_a_rescan() {
        let old = Checkout::from(listing(&[
            ("H", A, "meshseal.toml"),
            ("H", A, "meshes/m/secrets/a.age"),
        ]));
        let new = listing(&[
            ("H", B, "meshseal.toml"),
            ("H", A, "meshes/m/secrets/a.age"),
        ]);
        assert!(matches!(old.changes_to(&new), Changes::Rescan(_)));
    }

    #[test]
    fn files_outside_the_store_are_not_listed() {
        let l = listing(&[
            ("H", A, "README.md"),
            ("H", A, "meshesX/a"),
            ("H", A, "meshes/m/secrets/a.age"),
        ]);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn an_unsorted_listing_is_sorted_before_it_is_compared() {
        let old = Checkout::from(listing(&[
            ("H", A, "meshes/m/secrets/b.age"),
            ("H", A, "meshes/m/secrets/a.age"),
        ]));
        let new = listing(&[
            ("H", A, "meshes/m/secrets/a.age"),
            ("H", B, "meshes/m/secrets/b.age"),
        ]);
        assert_eq!(old.changes_to(&new), files(&["meshes/m/secrets/b.age"]));
    }

    #[test]
    fn a_tree_git_does_not_track_is_refused() {
        let out = format!("H 100644 {A} 0\tREADME.md\0");
        assert!(matches!(
            Listing::parse(out.as_bytes()),
            Err(WorktreeError::Untracked)
        ));
        assert!(matches!(Listing::parse(b""), Err(WorktreeError::Untracked)));
    }

    #[test]
    fn a_merge_in_progress_is_refused() {
        let out = format!("M 100644 {A} 2\tmeshes/m/secrets/a.age\0");
        assert!(matches!(
            Listing::parse(out.as_bytes()),
            Err(WorktreeError::Unmerged { .. })
        ));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for out in [
            "H 100644\tmeshes/a\0",
            "H 100644 zz 0\tmeshes/a\0",
            "no tab\0",
        ] {
            assert!(
                matches!(
                    Listing::parse(out.as_bytes()),
                    Err(WorktreeError::Git(GitError::Protocol(_)))
                ),
                "{out:?}"
            );
        }
    }
}
