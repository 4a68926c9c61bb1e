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
use std::io::BufRead;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::config::CONFIG_FILE;
use crate::git::GitError;
use crate::problem::Diagnostic;

mod git;
mod prefetch;

pub use git::PendingListing;
pub use prefetch::Prefetch;

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
/// Kept compact, since the watcher holds one for as long as it serves the
/// tree (about 35 bytes a file; 3.5 MB at 100,000 files): one buffer of
/// records in path order, each path stored as the length of the prefix it
/// shares with the previous one and the rest (the paths of one folder
/// differ in a few bytes).
pub struct Listing {
    /// Bytes of a record's state: tag, mode (4 bytes), object id (20 bytes
    /// in a SHA-1 repository, 32 in a SHA-256 one).
    state_len: usize,
    /// Records: state, shared prefix length (u16), rest length (u16), rest.
    bytes: Vec<u8>,
    len: usize,
}

impl Listing {
    /// Asks git for the listing of the store at `root` (a worktree, or a
    /// folder inside one); `capacity`: its expected size in bytes.
    pub fn read(root: &Path, capacity: usize) -> Result<Listing, WorktreeError> {
        Listing::start(root, capacity)?.wait()
    }

    /// Starts git on the listing of the store at `root`: the caller does
    /// other work while git runs, then [`PendingListing::wait`]s.
    pub fn start(root: &Path, capacity: usize) -> Result<PendingListing, WorktreeError> {
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
        PendingListing::spawn(root, &args, capacity)
    }

    /// Its size in bytes: the capacity to expect of the next listing of the
    /// same store.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Parses `git ls-files --stage -t -z` as it is read:
    /// `TAG MODE OID STAGE\tPATH\0`.
    fn parse(mut out: impl BufRead, capacity: usize) -> Result<Listing, WorktreeError> {
        let protocol = || WorktreeError::Git(GitError::Protocol("ls-files"));
        let mut builder = Builder::new(capacity);
        let mut record = Vec::new();
        loop {
            record.clear();
            let read = out
                .read_until(0, &mut record)
                .map_err(|e| WorktreeError::Git(GitError::Spawn(e)))?;
            if read == 0 {
                break;
            }
            if record.last() == Some(&0) {
                record.pop();
            }
            if record.is_empty() {
                continue;
            }
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
            let mut state = [0u8; 1 + 4 + 32];
            state[0] = *tag;
            state[1..5].copy_from_slice(&mode.to_le_bytes());
            let oid_len = unhex(oid, &mut state[5..]).ok_or_else(protocol)?;
            builder.push(&state[..5 + oid_len], path)?;
        }
        builder.finish()
    }

    fn cursor(&self) -> Cursor<'_> {
        let mut cursor = Cursor {
            listing: self,
            at: 0,
            state: &[],
            path: Vec::new(),
            done: false,
        };
        cursor.advance();
        cursor
    }

    /// The paths whose state differs between `self` and `next`, including
    /// files only one of them has: one merge of the two, in path order.
    fn differences(&self, next: &Listing) -> BTreeSet<PathBuf> {
        let mut changed = BTreeSet::new();
        let path = |p: &[u8]| PathBuf::from(OsStr::from_bytes(p));
        let (mut old, mut new) = (self.cursor(), next.cursor());
        loop {
            match (old.current(), new.current()) {
                (Some((os, op)), Some((ns, np))) if op == np => {
                    if os != ns {
                        changed.insert(path(op));
                    }
                    old.advance();
                    new.advance();
                }
                (Some((_, op)), Some((_, np))) if op < np => {
                    changed.insert(path(op));
                    old.advance();
                }
                (Some(_) | None, Some((_, np))) => {
                    changed.insert(path(np));
                    new.advance();
                }
                (Some((_, op)), None) => {
                    changed.insert(path(op));
                    old.advance();
                }
                (None, None) => break,
            }
        }
        changed
    }
}

/// Builds a [`Listing`] from records in path order (git's index order);
/// records out of order (whatever a git does) are sorted at the end.
struct Builder {
    listing: Listing,
    last: Vec<u8>,
    unsorted: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Whether a file under `meshes/` or `global/` was listed.
    tracked: bool,
}

impl Builder {
    fn new(capacity: usize) -> Builder {
        Builder {
            listing: Listing {
                state_len: 0,
                bytes: Vec::with_capacity(capacity),
                len: 0,
            },
            last: Vec::new(),
            unsorted: None,
            tracked: false,
        }
    }

    fn push(&mut self, state: &[u8], path: &[u8]) -> Result<(), WorktreeError> {
        let protocol = || WorktreeError::Git(GitError::Protocol("ls-files"));
        self.tracked |= path.starts_with(b"meshes/") || path.starts_with(b"global/");
        if let Some(records) = &mut self.unsorted {
            records.push((state.to_vec(), path.to_vec()));
            return Ok(());
        }
        if self.listing.len == 0 {
            self.listing.state_len = state.len();
        } else if self.listing.state_len != state.len() {
            return Err(protocol());
        } else if path <= self.last.as_slice() {
            let mut records = Vec::with_capacity(self.listing.len + 1);
            let mut cursor = self.listing.cursor();
            while let Some((s, p)) = cursor.current() {
                records.push((s.to_vec(), p.to_vec()));
                cursor.advance();
            }
            records.push((state.to_vec(), path.to_vec()));
            self.unsorted = Some(records);
            return Ok(());
        }
        let shared = self
            .last
            .iter()
            .zip(path)
            .take_while(|(a, b)| a == b)
            .count()
            .min(u16::MAX as usize);
        let rest = &path[shared..];
        let rest_len = u16::try_from(rest.len()).map_err(|_| protocol())?;
        let bytes = &mut self.listing.bytes;
        bytes.extend(state);
        bytes.extend((shared as u16).to_le_bytes());
        bytes.extend(rest_len.to_le_bytes());
        bytes.extend(rest);
        self.listing.len += 1;
        self.last.truncate(shared);
        self.last.extend(rest);
        Ok(())
    }

    fn finish(mut self) -> Result<Listing, WorktreeError> {
        if !self.tracked {
            return Err(WorktreeError::Untracked);
        }
        if let Some(mut records) = self.unsorted.take() {
            records.sort_by(|a, b| a.1.cmp(&b.1));
            records.dedup_by(|a, b| a.1 == b.1);
            let mut sorted = Builder::new(self.listing.bytes.capacity());
            for (state, path) in records {
                sorted.push(&state, &path)?;
            }
            return sorted.finish();
        }
        self.listing.bytes.shrink_to_fit();
        Ok(self.listing)
    }
}

/// Reads a [`Listing`] in order, rebuilding each path.
struct Cursor<'a> {
    listing: &'a Listing,
    at: usize,
    state: &'a [u8],
    path: Vec<u8>,
    done: bool,
}

impl Cursor<'_> {
    /// The record under the cursor: (state, path).
    fn current(&self) -> Option<(&[u8], &[u8])> {
        (!self.done).then_some((self.state, self.path.as_slice()))
    }

    fn advance(&mut self) {
        let bytes = &self.listing.bytes;
        let head = self.listing.state_len + 4;
        if self.at + head > bytes.len() {
            self.done = true;
            return;
        }
        let record = &bytes[self.at..];
        let (state, lengths) = record.split_at(self.listing.state_len);
        let shared = u16::from_le_bytes([lengths[0], lengths[1]]) as usize;
        let rest_len = u16::from_le_bytes([lengths[2], lengths[3]]) as usize;
        let rest = &lengths[4..4 + rest_len];
        self.state = state;
        self.path.truncate(shared);
        self.path.extend(rest);
        self.at += head + rest_len;
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
    /// The tree at `root` as git lists it; `capacity`: the listing's
    /// expected size in bytes.
    pub fn read(root: &Path, capacity: usize) -> Result<Checkout, WorktreeError> {
        Listing::read(root, capacity).map(Checkout::from)
    }

    /// The size of its listing: the capacity to expect of the next one.
    pub fn size(&self) -> usize {
        self.listing.size()
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

/// Writes the bytes of a hex object id into `out`: how many.
fn unhex(hex: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = hex.len() / 2;
    if hex.is_empty() || !hex.len().is_multiple_of(2) || len > out.len() {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    for (pair, byte) in hex.chunks(2).zip(out.iter_mut()) {
        *byte = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
    }
    Some(len)
}

#[cfg(test)]
mod tests;
