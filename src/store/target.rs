//! Where a write may go: never through a symbolic link, never onto or
//! below something that is not what the path says (a folder on the way
//! that is a file, a target that is a folder or a FIFO). One rule for every
//! write of a store: secrets, signatures, scope files, the config, and
//! `apply`'s resource files.
//!
//! A batch writes many files into few folders, so [`Targets`] looks at each
//! folder on the way once per batch and then at each file alone: a
//! 10,000-secret apply into 100 meshes makes about one `statx` a file for
//! its targets instead of five (each component of the path was looked at
//! again for every file, and for its `.sig`). What a target holds (nothing
//! yet, or a regular file) is returned, so the caller need not look again
//! to tell a new file from an update.
//!
//! The checks are of paths, before the write; the write itself replaces a
//! link at the target rather than following it (rename), and the folders
//! are created where missing.

use std::collections::HashMap;
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

/// What a folder on the way of a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Folder {
    /// A folder, with no link on the way to it.
    Present,
    /// Missing (it, or one above it): the write creates it.
    Absent,
    /// It, or a folder above it, is a symbolic link: nothing is written below.
    Symlink,
    /// It, or a folder above it, is not a folder.
    NotAFolder,
}

/// The checks of one batch's write targets (see the module docs): each
/// folder is looked at once, however many files go into it.
#[derive(Debug)]
pub struct Targets<'s> {
    store: &'s Store,
    /// Folders looked at, relative to the root.
    folders: HashMap<PathBuf, Folder>,
}

impl<'s> Targets<'s> {
    /// No folder looked at yet.
    pub fn new(store: &'s Store) -> Targets<'s> {
        Targets {
            store,
            folders: HashMap::new(),
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
        match self.folder(rel.parent().unwrap_or(Path::new(""))) {
            Folder::Present => {}
            // Nothing below a missing folder: no need to look.
            Folder::Absent => return Ok(Target::Absent),
            Folder::Symlink => return Err(refused(StoreError::Symlink)),
            Folder::NotAFolder => return Err(refused(StoreError::NotAFolder)),
        }
        match fs::symlink_metadata(self.store.root().join(rel)) {
            Ok(m) if m.file_type().is_symlink() => Err(refused(StoreError::Symlink)),
            Ok(m) if !m.is_file() => Err(refused(StoreError::NotRegular)),
            Ok(_) => Ok(Target::File),
            // Missing, or not to be looked at (the write then fails itself).
            Err(_) => Ok(Target::Absent),
        }
    }

    /// What `folder` (relative to the root) is, each folder on the way
    /// looked at once: what is below a link, a file or a missing folder is
    /// known without a look.
    fn folder(&mut self, folder: &Path) -> Folder {
        if let Some(&known) = self.folders.get(folder) {
            return known;
        }
        let mut state = Folder::Present;
        let mut at = PathBuf::new();
        for part in folder.components() {
            at.push(part);
            state = match self.folders.get(&at) {
                Some(&known) => known,
                None => {
                    let found = match state {
                        Folder::Present => look(&self.store.root().join(&at)),
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
        Ok(m) if !m.is_dir() => Folder::NotAFolder,
        Ok(_) => Folder::Present,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Folder::Absent,
        // One that cannot be looked at fails the write itself.
        Err(_) => Folder::Present,
    }
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
