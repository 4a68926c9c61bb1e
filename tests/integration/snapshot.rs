//! Snapshots of a directory tree: every byte, mode, timestamp and inode, so a
//! refused command can be shown to have written nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One node of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file.
    File {
        /// Content.
        bytes: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Modification time, nanoseconds.
        mtime_ns: i128,
        /// Inode (a rename-over changes it even when bytes match).
        ino: u64,
    },
    /// A folder.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A symlink and its target.
    Link(PathBuf),
    /// A FIFO, socket or device (never read).
    Special {
        /// Permission bits.
        mode: u32,
    },
}

/// Everything below a directory, by relative path.
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Records every file, folder and link below `root` (links are not followed).
pub fn snapshot(root: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).expect("below root").to_path_buf();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.insert(rel, Node::Link(fs::read_link(&path).expect("readlink")));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir { mode });
                walk(root, &path, out);
            } else if !meta.is_file() {
                // A FIFO or socket: reading it would block the test.
                out.insert(rel, Node::Special { mode });
            } else {
                out.insert(
                    rel,
                    Node::File {
                        bytes: fs::read(&path).expect("read"),
                        mode,
                        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                            + i128::from(meta.mtime_nsec()),
                        ino: meta.ino(),
                    },
                );
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

/// Fails with the paths that differ.
#[track_caller]
pub fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for (path, node) in before {
        match after.get(path) {
            None => diffs.push(format!("removed: {}", path.display())),
            Some(n) if n != node => diffs.push(format!("changed: {}", path.display())),
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("added: {}", path.display()));
    }
    panic!("the store changed after {what}:\n  {}", diffs.join("\n  "));
}

/// Every regular file's bytes under `root`, for leak searches.
pub fn all_file_bytes(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    snapshot(root)
        .into_iter()
        .filter_map(|(p, n)| match n {
            Node::File { bytes, .. } => Some((p, bytes)),
            _ => None,
        })
        .collect()
}

/// Every temporary file of an atomic write below `root` (what a killed
/// write leaves behind), by relative path.
pub fn temp_files(root: &Path) -> BTreeSet<PathBuf> {
    use meshseal::atomic::{TEMP_PREFIX, TEMP_SUFFIX};
    snapshot(root)
        .into_keys()
        .filter(|rel| {
            rel.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(TEMP_PREFIX) && n.ends_with(TEMP_SUFFIX))
        })
        .collect()
}
