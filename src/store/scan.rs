//! Walking the store: every file under `meshes/` and `global/`, in path
//! order, classified by the layout.
//!
//! Each folder directly under `meshes/` and `global/` is walked on its own,
//! in parallel: on a large store the walk (a folder read and a
//! classification a file) would otherwise be one thread's work before the
//! first file is read. The pieces are joined in name order, so the result is
//! the same as one walk's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use walkdir::WalkDir;

use super::{Entry, FileKind, ScanError, Store};
use crate::scope::StorePath;

impl Store {
    /// Every file under `meshes/` and `global/`, sorted by path. Symlinks are
    /// reported, never followed.
    pub fn scan(&self) -> Result<Vec<Entry>, ScanError> {
        self.files.reopen();
        let mut entries = Vec::new();
        for top in ["global", "meshes"] {
            let dir = self.root.join(top);
            match fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ScanError {
                        file: PathBuf::from(top),
                        source,
                    })
                }
                Ok(m) if m.file_type().is_symlink() => {
                    entries.push(Entry {
                        rel: PathBuf::from(top),
                        what: StorePath::Unexpected,
                        kind: FileKind::Symlink,
                    });
                    continue;
                }
                Ok(_) => {}
            }
            let children = walk(&dir, 1)
                .map(|item| item.map_err(|e| self.scan_error(e, top)))
                .collect::<Result<Vec<_>, _>>()?;
            let parts: Vec<Result<Vec<Entry>, ScanError>> = children
                .into_par_iter()
                .map(|child| {
                    let mut part = Vec::new();
                    self.push(&child, &mut part);
                    if child.file_type().is_dir() {
                        for item in walk(child.path(), usize::MAX) {
                            let item = item.map_err(|e| self.scan_error(e, top))?;
                            self.push(&item, &mut part);
                        }
                    }
                    Ok(part)
                })
                .collect();
            for part in parts {
                entries.extend(part?);
            }
        }
        Ok(entries)
    }

    /// Adds what the walk found at `item` (a folder only where a secret
    /// file belongs: `secrets/x.age/`; other folders are just walked).
    fn push(&self, item: &walkdir::DirEntry, entries: &mut Vec<Entry>) {
        let ft = item.file_type();
        let rel = item
            .path()
            .strip_prefix(&self.root)
            .expect("walk stays below the root")
            .to_path_buf();
        let what = StorePath::classify(&rel);
        let kind = if ft.is_dir() {
            if !matches!(what, StorePath::Secret(_) | StorePath::StraySecret { .. }) {
                return;
            }
            FileKind::Special
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_file() {
            FileKind::Regular
        } else {
            FileKind::Special
        };
        entries.push(Entry { what, rel, kind });
    }

    fn scan_error(&self, e: walkdir::Error, top: &str) -> ScanError {
        let file = e
            .path()
            .and_then(|p| p.strip_prefix(&self.root).ok())
            .unwrap_or(Path::new(top))
            .to_path_buf();
        ScanError {
            file,
            source: e.into(),
        }
    }
}

/// What is below `dir` (not `dir` itself), down to `depth` levels, in name
/// order, symlinks not followed.
fn walk(dir: &Path, depth: usize) -> walkdir::IntoIter {
    WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .max_depth(depth)
        .into_iter()
}
