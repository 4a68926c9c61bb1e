//! What the path and kind of a file alone say is wrong with it: one rule for
//! `check`, the watcher's index and the pre-commit hook.

use std::path::Path;

use thiserror::Error;

use crate::atomic;
use crate::problem::Diagnostic;
use crate::scope::{NameError, Scope, StorePath, StrayReason};

use super::{Entry, FileKind, StoreError};

/// A file the store layout does not allow where it is.
#[derive(Debug, Error)]
pub enum LayoutError {
    /// A symlink, a FIFO, a socket or a device.
    #[error(transparent)]
    NotAFile(StoreError),
    /// A file in a `secrets/` folder that is not `<name>.age`.
    #[error("file in a secrets folder is not a .age secret")]
    NotAge {
        /// The folder's scope.
        scope: Scope,
    },
    /// A `<name>.age` whose name is not a valid secret name.
    #[error(transparent)]
    BadName(NameError),
    /// `meshes/<m>` whose name is not a valid mesh name.
    #[error(transparent)]
    BadMeshDir(NameError),
    /// A validly named secret file at another path than its name's.
    #[error("a secret of this name belongs at {}", .path.display())]
    NotCanonical {
        /// Where it belongs.
        path: std::path::PathBuf,
    },
    /// Anything else under `meshes/` or `global/`.
    #[error("file is not part of the store layout")]
    Unexpected,
    /// The temporary file of a write that was killed.
    #[error("temporary file left behind by an interrupted write; it is not a secret, and the file it was meant to replace is intact")]
    InterruptedWrite,
    /// The temporary file of a write still at work.
    #[error("temporary file of a write in progress (process {pid})")]
    WriteInProgress {
        /// The writer.
        pid: u32,
    },
    /// The temporary file of a write by an older meshseal, whose name does
    /// not say the writer.
    #[error("temporary file of a write in progress, or of one interrupted less than an hour ago")]
    RecentTemp,
}

impl Diagnostic for LayoutError {
    fn code(&self) -> &'static str {
        match self {
            LayoutError::NotAFile(e) => e.code(),
            LayoutError::NotAge { .. } => "not-age-file",
            LayoutError::BadName(e) | LayoutError::BadMeshDir(e) => e.code(),
            LayoutError::Unexpected => "unexpected-file",
            LayoutError::NotCanonical { .. } => "misplaced-secret",
            LayoutError::InterruptedWrite => "interrupted-write",
            LayoutError::WriteInProgress { .. } | LayoutError::RecentTemp => "write-in-progress",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            LayoutError::NotAFile(e) => e.hint(),
            LayoutError::NotAge { scope } => Some(format!(
                "secrets folders hold only <name>.age files; if this is a plaintext secret, delete it and run `meshseal create {} NAME --from-file FILE`",
                match scope {
                    Scope::Global => "global-secret",
                    Scope::Mesh(_) => "secret",
                }
            )),
            LayoutError::BadName(_) => Some(
                "rename the secret: file names are the secret's name plus .age".to_string(),
            ),
            LayoutError::BadMeshDir(e) => e.hint(),
            LayoutError::NotCanonical { path } => Some(format!(
                "names longer than {} characters live in a folder of their first {} (SPEC 2); move it with `git mv` to {}",
                crate::scope::MAX_FLAT_NAME_LEN,
                crate::scope::LONG_NAME_DIR_LEN,
                path.display()
            )),
            LayoutError::Unexpected => Some("meshes/<mesh>/ holds recipients.txt[.sig], writers.txt[.sig], mesh.yaml or mesh.toml, secrets/*.age[.sig] and policies/*.yaml|*.yml|*.toml; global/ holds recipients.txt[.sig], writers.txt[.sig] and secrets/*.age[.sig]".to_string()),
            LayoutError::InterruptedWrite => Some(
                "delete it; the next meshseal command that writes to this folder removes it too"
                    .to_string(),
            ),
            LayoutError::WriteInProgress { .. } => {
                Some("run check again when that command has finished".to_string())
            }
            LayoutError::RecentTemp => Some("if no meshseal command is running, delete it; meshseal's next write to this folder removes it once it is an hour old".to_string()),
        }
    }
}

/// What is wrong with `entry` by its path and kind alone. Temporary files
/// of atomic writes are judged by whether their writer is still at work, by
/// the lock on the file in the working tree under `root` (see
/// `atomic::is_abandoned_file`); a staged copy with none there, by the pid
/// in its name and its age.
pub fn judge(entry: &Entry, root: &Path) -> Option<LayoutError> {
    let rel = &entry.rel;
    match entry.kind {
        FileKind::Symlink => return Some(LayoutError::NotAFile(StoreError::Symlink)),
        FileKind::Special => return Some(LayoutError::NotAFile(StoreError::NotRegular)),
        FileKind::Regular => {}
    }
    if let Some(e) = leftover_temp(rel, root) {
        return Some(e);
    }
    stray(&entry.what)
}

/// What is wrong with a path in a `secrets/` folder or a mesh folder, if
/// anything.
pub fn stray(what: &StorePath) -> Option<LayoutError> {
    match what {
        StorePath::StraySecret { scope, reason } => Some(match reason {
            StrayReason::NotAge => LayoutError::NotAge {
                scope: scope.clone(),
            },
            StrayReason::BadName(e) => LayoutError::BadName(e.clone()),
            StrayReason::NotCanonical(path) => LayoutError::NotCanonical { path: path.clone() },
        }),
        // A file (not a folder) named like a long-name folder.
        StorePath::LongNameDir(scope) => Some(LayoutError::NotAge {
            scope: scope.clone(),
        }),
        StorePath::BadMeshDir(e) => Some(LayoutError::BadMeshDir(e.clone())),
        StorePath::Unexpected => Some(LayoutError::Unexpected),
        _ => None,
    }
}

fn leftover_temp(rel: &Path, root: &Path) -> Option<LayoutError> {
    let name = rel.file_name()?.to_str()?;
    if !atomic::is_temp_name(name) {
        return None;
    }
    let path = root.join(rel);
    let modified = std::fs::symlink_metadata(&path)
        .and_then(|m| m.modified())
        .ok();
    Some(if atomic::is_abandoned_file(&path, name, modified) {
        LayoutError::InterruptedWrite
    } else {
        match atomic::writer_pid(name) {
            Some(pid) => LayoutError::WriteInProgress { pid },
            None => LayoutError::RecentTemp,
        }
    })
}
