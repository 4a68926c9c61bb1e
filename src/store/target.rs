//! Where a write may go: never through a symbolic link, never onto or
//! below something that is not what the path says (a folder on the way
//! that is a file, a target that is a folder or a FIFO). One rule for every
//! write of a store: secrets, signatures, scope files, the config, and
//! `apply`'s resource files.
//!
//! A batch writes many files into few folders, so [`Targets`] looks at each
//! folder on the way once per batch, and a folder that many of the batch's
//! files go into is listed once (names and kinds, as `readdir` gives them)
//! rather than each file looked at alone: a 10,000-secret apply into 100
//! meshes checked its targets with 160,410 `statx` (each component of each
//! path, again for every file and its `.sig`), one a file and folder with
//! the folders remembered, and a few hundred `statx` and `getdents` with the
//! listings. What a target holds (nothing yet, or a regular file) is
//! returned, so the caller need not look again to tell a new file from an
//! update.
//!
//! The checks are of paths, before the write; the write itself replaces a
//! link at the target rather than following it (rename), and the folders
//! are created where missing.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Store, StoreError, WriteError};

/// What a write target holds when it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing: the write creates the file (and any folder missing on the way).
    Absent,
    /// A regular file: the write replaces it.
    File,
}

/// A folder is listed once this many of a batch's files have been looked
/// up in it, and once as many as its size in bytes over
/// [`BYTES_PER_LOOKUP`]: a `statx` costs about as much as reading 50 names,
/// so a huge folder that a few files go into is not read whole.
pub(super) const LIST_AFTER: u32 = 8;
/// See [`LIST_AFTER`]: about 50 directory entries of 32 bytes.
const BYTES_PER_LOOKUP: u64 = 1600;

/// What a folder on the way of a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Folder {
    /// A folder, with no link on the way to it, of this size in bytes.
    Present(u64),
    /// Missing (it, or one above it): the write creates it.
    Absent,
    /// It, or a folder above it, is a symbolic link: nothing is written below.
    Symlink,
    /// It, or a folder above it, is not a folder.
    NotADirectory,
}

/// The checks of one batch's write targets (see the module docs): each
/// folder is looked at once, however many files go into it.
#[derive(Debug)]
pub struct Targets<'s> {
    store: &'s Store,
    /// Folders looked at, relative to the root.
    folders: HashMap<PathBuf, Folder>,
    /// The folders files were looked up in.
    listings: HashMap<PathBuf, Listing>,
}

/// What is known of a present folder's entries.
#[derive(Debug)]
enum Listing {
    /// Not listed yet: how many files were looked up in it.
    Counting(u32),
    /// Every entry's kind, as listed.
    Listed(HashMap<OsString, fs::FileType>),
    /// It could not be listed: each file is looked at alone.
    Unlisted,
}

impl<'s> Targets<'s> {
    /// No folder looked at yet.
    pub fn new(store: &'s Store) -> Targets<'s> {
        Targets {
            store,
            folders: HashMap::new(),
            listings: HashMap::new(),
        }
    }

    /// Refuses a write of `rel` (relative to the store root) that would go
    /// through a symbolic link, below a file, or onto anything but a
    /// regular file; otherwise says whether the file is there.
    pub fn check(&mut self, rel: &Path) -> Result<Target, WriteError> {
        let refused = |source| WriteError::Refused {
            file: rel.to_path_buf(),
            source,
        };
        let folder = rel.parent().unwrap_or(Path::new(""));
        let bytes = match self.folder(folder) {
            Folder::Present(bytes) => bytes,
            // Nothing below a missing folder: no need to look.
            Folder::Absent => return Ok(Target::Absent),
            Folder::Symlink => return Err(refused(StoreError::Symlink)),
            Folder::NotADirectory => return Err(refused(StoreError::NotAFolder)),
        };
        let kind = match rel.file_name() {
            Some(name) => match self.listed(folder, bytes, name) {
                Some(kind) => kind,
                None => look_file(&self.store.root().join(rel)),
            },
            None => look_file(&self.store.root().join(rel)),
        };
        match kind {
            Some(k) if k.is_symlink() => Err(refused(StoreError::Symlink)),
            Some(k) if !k.is_file() => Err(refused(StoreError::NotRegular)),
            Some(_) => Ok(Target::File),
            None => Ok(Target::Absent),
        }
    }

    /// What the folder's listing says `name` is (`Some(None)`: not there),
    /// once enough files have been looked up in it to list it; `None` while
    /// each is looked at alone.
    fn listed(&mut self, folder: &Path, bytes: u64, name: &OsStr) -> Option<Option<fs::FileType>> {
        let listing = match self.listings.get_mut(folder) {
            Some(listing) => listing,
            None => self
                .listings
                .entry(folder.to_path_buf())
                .or_insert(Listing::Counting(0)),
        };
        if let Listing::Counting(looked_up) = listing {
            *looked_up += 1;
            let worth =
                *looked_up >= LIST_AFTER && u64::from(*looked_up) * BYTES_PER_LOOKUP >= bytes;
            if !worth {
                return None;
            }
            *listing = match list(&self.store.root().join(folder)) {
                Ok(entries) => Listing::Listed(entries),
                Err(_) => Listing::Unlisted,
            };
        }
        match listing {
            Listing::Listed(entries) => Some(entries.get(name).copied()),
            _ => None,
        }
    }

    /// What `folder` (relative to the root) is, each folder on the way
    /// looked at once: what is below a link, a file or a missing folder is
    /// known without a look.
    fn folder(&mut self, folder: &Path) -> Folder {
        if let Some(&known) = self.folders.get(folder) {
            return known;
        }
        let mut state = Folder::Present(0);
        let mut at = PathBuf::new();
        for part in folder.components() {
            at.push(part);
            state = match self.folders.get(&at) {
                Some(&known) => known,
                None => {
                    let found = match state {
                        Folder::Present(_) => look(&self.store.root().join(&at)),
                        below => below,
                    };
                    self.folders.insert(at.clone(), found);
                    found
                }
            };
        }
        state
    }
}

/// What the folder at `path` is (its parent being a plain folder).
fn look(path: &Path) -> Folder {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Folder::Symlink,
        Ok(m) if !m.is_dir() => Folder::NotADirectory,
        Ok(m) => Folder::Present(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Folder::Absent,
        // One that cannot be looked at fails the write itself.
        Err(_) => Folder::Present(u64::MAX),
    }
}

/// The kind of the file at `path` (not followed), if it is there; one that
/// cannot be looked at counts as missing (the write then fails itself).
fn look_file(path: &Path) -> Option<fs::FileType> {
    fs::symlink_metadata(path).ok().map(|m| m.file_type())
}

/// Every entry of the folder at `path`, with its kind as the listing says
/// (looked at alone where the file system does not say).
fn list(path: &Path) -> io::Result<HashMap<OsString, fs::FileType>> {
    let mut entries = HashMap::new();
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        entries.insert(entry.file_name(), entry.file_type()?);
    }
    Ok(entries)
}

impl Store {
    /// A check of many write targets (a batch): see [`Targets`].
    pub fn targets(&self) -> Targets<'_> {
        Targets::new(self)
    }

    /// Refuses a write of `rel` (relative to the root) through a symbolic
    /// link at any depth, below a file, or onto anything but a regular
    /// file; otherwise says whether the file is there. The one check of
    /// every write (a batch uses [`Store::targets`], which looks at each
    /// folder once).
    pub fn ensure_no_symlinks(&self, rel: &Path) -> Result<Target, WriteError> {
        self.targets().check(rel)
    }
}
