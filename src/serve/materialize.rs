//! Materialized secrets: plain files for programs that read secrets from disk.
//!
//! `DIR/meshes/<mesh>/<name>` and `DIR/global/<name>` hold the decoded bytes
//! of each secret in the index, mode 0400 in folders 0700, each written
//! atomically (a reader sees the old bytes or the new, never a mix) and
//! removed when its secret leaves the index.
//!
//! Why it works the way it does: the watcher may run with more rights than
//! the users around it, and DIR often sits in a shared place (`/dev/shm`).
//! Code that resolves a path again for every write lets whoever can change a
//! folder on the way redirect it: a planted `DIR/global -> /some/dir` once
//! made the watcher empty `/some/dir`, chmod it and write a global secret
//! into it. So:
//!
//! - DIR is created 0700, or accepted only when it belongs to the watcher's
//!   user, nobody else may write it, and it is not a symlink. It is opened
//!   once, with `O_NOFOLLOW`, and every later step starts from that handle.
//! - Each folder below it is opened from its parent's handle with
//!   `O_NOFOLLOW` (created 0700 when missing) and judged by `fstat` on the
//!   handle: the watcher's own, writable by nobody else. A symlink or file
//!   where a folder belongs is removed as an entry, never followed; a
//!   folder of someone else's is reported and left alone (never chmod-ed).
//! - A file is written as a new temporary file (`O_CREAT | O_EXCL |
//!   O_NOFOLLOW`, 0400) in its folder's handle, fsynced, and renamed into
//!   place: a rename replaces a planted link, it never writes through one.
//! - Removal unlinks entries by handle; a folder is emptied through its own
//!   handle, opened with `O_NOFOLLOW`, so nothing outside DIR is touched.
//! - The files are plaintext: DIR must be on a memory file system (tmpfs,
//!   ramfs) unless the user accepts plaintext at rest
//!   (`--materialize-persistent`, with a warning in the log).

mod handles;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;
use thiserror::Error;
use tracing::warn;

use handles::{
    c_name, check_memory_backed, check_private, create_top, io_error, is_current, list, mode,
    open_folder, remove_entry, tighten, write_file, Opened,
};

use crate::index::Index;
use crate::problem::Diagnostic;
use crate::scope::{validate_mesh, Scope, SecretId};

/// Mode of materialized files.
pub const FILE_MODE: u32 = 0o400;
/// Mode of materialized folders.
pub const DIR_MODE: u32 = 0o700;

/// Why the materialize folder, or one file or folder in it, cannot be used.
#[derive(Debug, Error)]
pub enum MaterializeError {
    /// The folder belongs to another user, who could swap the files in it.
    #[error("owned by uid {owner}, not by the watcher's user (uid {euid}): its owner could swap the files programs read")]
    NotOwned {
        /// The folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The watcher's effective uid.
        euid: u32,
    },
    /// Group or others may write into the folder.
    #[error("writable by group or others (mode {mode:04o}): they could plant links or swap files")]
    WritableByOthers {
        /// The folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// DIR is a symbolic link.
    #[error("is a symbolic link: the watcher writes only into a real folder")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// DIR exists and is not a folder.
    #[error("exists and is not a folder")]
    NotAFolder {
        /// The path.
        path: PathBuf,
    },
    /// DIR is on a disk-backed file system and plaintext at rest was not
    /// accepted.
    #[error("is on a persistent file system ({fs}): materialized secrets are plaintext and would stay on disk")]
    Persistent {
        /// The folder.
        path: PathBuf,
        /// What the file system is.
        fs: String,
    },
    /// A system call failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl MaterializeError {
    /// The file or folder the error is about.
    pub fn path(&self) -> &Path {
        match self {
            MaterializeError::NotOwned { path, .. }
            | MaterializeError::WritableByOthers { path, .. }
            | MaterializeError::Symlink { path }
            | MaterializeError::NotAFolder { path }
            | MaterializeError::Persistent { path, .. }
            | MaterializeError::Io { path, .. } => path,
        }
    }
}

impl Diagnostic for MaterializeError {
    fn code(&self) -> &'static str {
        match self {
            MaterializeError::NotOwned { .. } => "materialize-not-owned",
            MaterializeError::WritableByOthers { .. } => "materialize-writable",
            MaterializeError::Symlink { .. } => "materialize-symlink",
            MaterializeError::NotAFolder { .. } => "materialize-not-a-folder",
            MaterializeError::Persistent { .. } => "materialize-persistent",
            MaterializeError::Io { .. } => "materialize",
        }
    }

    fn hint(&self) -> Option<String> {
        let path = self.path().display();
        match self {
            MaterializeError::NotOwned { .. } => Some(format!(
                "remove {path}, or give --materialize a path that does not exist yet: the watcher creates it (0700)"
            )),
            MaterializeError::WritableByOthers { .. } => Some(format!(
                "check what is in {path}, then `chmod 700 {path}`; or give --materialize a path that does not exist yet: the watcher creates it (0700)"
            )),
            MaterializeError::Symlink { .. } => Some(format!(
                "remove the link {path} and let the watcher create the folder, or give the folder's own path"
            )),
            MaterializeError::NotAFolder { .. } => Some(format!(
                "remove {path}, or give --materialize another path"
            )),
            MaterializeError::Persistent { .. } => Some(
                "use a folder on tmpfs (below /dev/shm or $XDG_RUNTIME_DIR), or pass --materialize-persistent to keep plaintext secrets at rest on purpose"
                    .to_string(),
            ),
            MaterializeError::Io { .. } => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        Some(self.path())
    }
}

/// Keeps a folder in step with the index.
#[derive(Debug)]
pub struct Materializer {
    dir: PathBuf,
    /// DIR, opened once with `O_NOFOLLOW`: every file operation starts here.
    root: OwnedFd,
    euid: u32,
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Files written.
    pub written: usize,
    /// Files removed.
    pub removed: usize,
}

impl Materializer {
    /// A materializer writing below `dir`: created 0700 if missing, else
    /// accepted only if it is a folder (not a link) of the watcher's user
    /// that nobody else may write. It must be on tmpfs or ramfs unless
    /// `allow_persistent`, which logs a warning instead.
    pub fn new(
        dir: impl Into<PathBuf>,
        allow_persistent: bool,
    ) -> Result<Materializer, MaterializeError> {
        // `dir/` would follow a link `dir` even with O_NOFOLLOW: rebuilding
        // the path from its components drops trailing slashes.
        let dir: PathBuf = dir.into().components().collect();
        let euid = rustix::process::geteuid().as_raw();
        let created = create_top(&dir)?;
        let root = match open_folder(rustix::fs::CWD, dir.as_path()) {
            Ok(fd) => fd,
            Err(Opened::Symlink) => return Err(MaterializeError::Symlink { path: dir }),
            Err(Opened::NotAFolder) => return Err(MaterializeError::NotAFolder { path: dir }),
            Err(Opened::Missing | Opened::Changed) => {
                return Err(io_error(&dir, "open the folder")(Errno::NOENT.into()))
            }
            Err(Opened::Io(e)) => return Err(io_error(&dir, "open the folder")(e)),
        };
        let stat =
            rustix::fs::fstat(&root).map_err(|e| io_error(&dir, "stat the folder")(e.into()))?;
        check_private(&dir, &stat, euid)?;
        if let Err(e) = check_memory_backed(&dir, &root, allow_persistent) {
            if created {
                // Leave no trace of a refused start (rmdir: only if empty).
                let _ = rustix::fs::unlinkat(rustix::fs::CWD, dir.as_path(), AtFlags::REMOVEDIR);
            }
            return Err(e);
        }
        tighten(&dir, &root, &stat)?;
        Ok(Materializer { dir, root, euid })
    }

    /// The file of one secret.
    pub fn path_of(&self, id: &SecretId) -> PathBuf {
        Folder::of(&id.scope).path(&self.dir).join(&id.name)
    }

    /// Brings the folder in step with `new`. With `old`, only secrets whose
    /// file changed are rewritten; without, files the index does not know
    /// are removed and everything is written, except files that already
    /// hold the right bytes (a restart rewrites nothing that is current).
    pub fn sync(&self, old: Option<&Index>, new: &Index) -> (SyncReport, Vec<MaterializeError>) {
        // DIR was judged at start; whoever made it writable since (its
        // owner, or root) gets nothing more written into it.
        let still_private = rustix::fs::fstat(&self.root)
            .map_err(|e| io_error(&self.dir, "stat the folder")(e.into()))
            .and_then(|stat| check_private(&self.dir, &stat, self.euid));
        if let Err(e) = still_private {
            return (SyncReport::default(), vec![e]);
        }
        let mut run = SyncRun {
            m: self,
            folders: Folders::default(),
            dirty: BTreeSet::new(),
            report: SyncReport::default(),
            problems: Vec::new(),
        };
        if old.is_none() {
            // First, so that a folder planted where a file belongs is gone
            // before the file is written.
            run.remove_unknown(new);
        }
        for secret in new.secrets() {
            let id = &secret.doc.id;
            let unchanged = old
                .and_then(|o| o.get(id))
                .is_some_and(|o| o.file_sha256 == secret.file_sha256);
            if !unchanged {
                run.write(id, secret.doc.data.expose(), old.is_none());
            }
        }
        if let Some(old) = old {
            for secret in old.secrets() {
                let id = &secret.doc.id;
                if new.get(id).is_none() {
                    run.remove(id);
                }
            }
        }
        run.flush();
        (run.report, run.problems)
    }

    fn io_error(
        &self,
        rel: &Path,
        action: &'static str,
    ) -> impl FnOnce(io::Error) -> MaterializeError {
        io_error(&self.dir.join(rel), action)
    }
}

/// A folder the materializer keeps, relative to DIR.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Folder {
    Global,
    Meshes,
    Mesh(String),
}

impl Folder {
    fn of(scope: &Scope) -> Folder {
        match scope {
            Scope::Global => Folder::Global,
            Scope::Mesh(m) => Folder::Mesh(m.clone()),
        }
    }

    /// The folder it lies in; `None` for DIR itself.
    fn parent(&self) -> Option<Folder> {
        match self {
            Folder::Global | Folder::Meshes => None,
            Folder::Mesh(_) => Some(Folder::Meshes),
        }
    }

    /// Its name in its parent.
    fn name(&self) -> &str {
        match self {
            Folder::Global => "global",
            Folder::Meshes => "meshes",
            Folder::Mesh(m) => m,
        }
    }

    fn rel(&self) -> PathBuf {
        match self {
            Folder::Global | Folder::Meshes => PathBuf::from(self.name()),
            Folder::Mesh(m) => Path::new("meshes").join(m),
        }
    }

    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.rel())
    }
}

/// What is known of one folder during a sync.
#[derive(Debug)]
enum Slot {
    Open(OwnedFd),
    /// Not there (and not created: nothing was to be written in it).
    Absent,
    /// Unusable; the problem was reported once.
    Failed,
}

/// The folders of one sync, each opened (and checked) once. Nothing is kept
/// between syncs, so each sync judges the folders as they are now.
#[derive(Debug, Default)]
struct Folders {
    slots: BTreeMap<Folder, Slot>,
}

impl Folders {
    /// The handle of `folder`, created (with its parent) when `create`.
    /// `None` when it is absent, or unusable (the problem is pushed once).
    fn get(
        &mut self,
        m: &Materializer,
        folder: &Folder,
        create: bool,
        problems: &mut Vec<MaterializeError>,
    ) -> Option<BorrowedFd<'_>> {
        let look = match self.slots.get(folder) {
            None => true,
            Some(Slot::Absent) => create,
            Some(Slot::Open(_) | Slot::Failed) => false,
        };
        if look {
            let slot = {
                let parent = match folder.parent() {
                    None => Some(m.root.as_fd()),
                    Some(p) => self.get(m, &p, create, problems),
                };
                match parent {
                    None => Slot::Absent,
                    Some(parent) => match open_checked(m, parent, folder, create) {
                        Ok(Some(fd)) => Slot::Open(fd),
                        Ok(None) => Slot::Absent,
                        Err(e) => {
                            problems.push(e);
                            Slot::Failed
                        }
                    },
                }
            };
            // A parent that failed makes its children fail silently: the
            // parent's problem says it all.
            self.slots.insert(folder.clone(), slot);
        }
        match self.slots.get(folder) {
            Some(Slot::Open(fd)) => Some(fd.as_fd()),
            _ => None,
        }
    }
}

/// Opens `folder` from its parent's handle without following a link, and
/// checks it: the watcher's, writable by nobody else, then made 0700. A
/// symlink or file in its place is removed as an entry; a missing folder
/// is created when `create` (else `None`).
fn open_checked(
    m: &Materializer,
    parent: BorrowedFd<'_>,
    folder: &Folder,
    create: bool,
) -> Result<Option<OwnedFd>, MaterializeError> {
    let rel = folder.rel();
    let path = folder.path(&m.dir);
    let name = folder.name();
    // Each round changes what it finds into a folder, so two settle it;
    // more means something keeps changing it.
    for _ in 0..4 {
        match open_folder(parent, name) {
            Ok(fd) => {
                let stat = rustix::fs::fstat(&fd)
                    .map_err(|e| m.io_error(&rel, "stat the folder")(e.into()))?;
                check_private(&path, &stat, m.euid)?;
                tighten(&path, &fd, &stat)?;
                return Ok(Some(fd));
            }
            Err(Opened::Symlink | Opened::NotAFolder) => {
                warn!(
                    file = %path.display(),
                    "removed a symlink or file where a materialized folder belongs (not followed)"
                );
                remove_entry(parent, &c_name(name), 0)
                    .map_err(m.io_error(&rel, "remove what is in the folder's place"))?;
            }
            Err(Opened::Changed) => {}
            Err(Opened::Missing) if !create => return Ok(None),
            Err(Opened::Missing) => match rustix::fs::mkdirat(parent, name, mode(DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(m.io_error(&rel, "create the folder")(e.into())),
            },
            Err(Opened::Io(e)) => return Err(m.io_error(&rel, "open the folder")(e)),
        }
    }
    Err(m.io_error(&rel, "open the folder")(io::Error::other(
        "it keeps changing",
    )))
}

/// One sync: its folder handles, what it did and what went wrong.
struct SyncRun<'a> {
    m: &'a Materializer,
    folders: Folders,
    /// Folders whose entries changed: fsynced once at the end.
    dirty: BTreeSet<Folder>,
    report: SyncReport,
    problems: Vec<MaterializeError>,
}

impl SyncRun<'_> {
    fn write(&mut self, id: &SecretId, bytes: &[u8], check_current: bool) {
        let folder = Folder::of(&id.scope);
        let Some(fd) = self.folders.get(self.m, &folder, true, &mut self.problems) else {
            return;
        };
        if check_current && is_current(fd, &id.name, bytes, self.m.euid) {
            // A restart: the file from the last run is still right.
            return;
        }
        match write_file(fd, &id.name, bytes) {
            Ok(()) => {
                self.report.written += 1;
                self.dirty.insert(folder);
            }
            Err((action, e)) => self.problems.push(io_error(&self.m.path_of(id), action)(e)),
        }
    }

    fn remove(&mut self, id: &SecretId) {
        let folder = Folder::of(&id.scope);
        let Some(fd) = self.folders.get(self.m, &folder, false, &mut self.problems) else {
            return;
        };
        match remove_entry(fd, &c_name(&id.name), 0) {
            Ok(true) => {
                self.report.removed += 1;
                self.dirty.insert(folder);
            }
            Ok(false) => {}
            Err(e) => self
                .problems
                .push(io_error(&self.m.path_of(id), "remove the file")(e)),
        }
    }

    /// Removes every entry below `global/` and `meshes/` that is not the
    /// file of a secret of `index`: leftovers of an earlier run, temporary
    /// files of a killed one, and anything planted (links are removed, never
    /// followed).
    fn remove_unknown(&mut self, index: &Index) {
        self.sweep(&Folder::Global, |name| {
            SecretId::new(Scope::Global, name).is_ok_and(|id| index.get(&id).is_some())
        });
        let Some(meshes) = self
            .folders
            .get(self.m, &Folder::Meshes, false, &mut self.problems)
        else {
            return;
        };
        // Each entry with whether it is a real folder (a link is not).
        let entries: Vec<(CString, bool)> = match list(meshes) {
            Ok(names) => names
                .into_iter()
                .map(|name| {
                    let is_folder =
                        rustix::fs::statat(meshes, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                            .is_ok_and(|s| {
                                FileType::from_raw_mode(s.st_mode) == FileType::Directory
                            });
                    (name, is_folder)
                })
                .collect(),
            Err(e) => {
                let e = self.m.io_error(Path::new("meshes"), "list the folder")(e);
                self.problems.push(e);
                return;
            }
        };
        for (name, is_folder) in entries {
            match name
                .to_str()
                .ok()
                .filter(|m| is_folder && validate_mesh(m).is_ok())
            {
                Some(mesh) => {
                    let scope = Scope::Mesh(mesh.to_string());
                    self.sweep(&Folder::Mesh(mesh.to_string()), |name| {
                        SecretId::new(scope.clone(), name).is_ok_and(|id| index.get(&id).is_some())
                    });
                }
                None => self.remove_in(&Folder::Meshes, &name),
            }
        }
    }

    /// Removes the entries of `folder` that are not regular files that
    /// `known` names.
    fn sweep(&mut self, folder: &Folder, known: impl Fn(&str) -> bool) {
        let Some(fd) = self.folders.get(self.m, folder, false, &mut self.problems) else {
            return;
        };
        let unknown: Vec<CString> = match list(fd) {
            Ok(names) => names
                .into_iter()
                .filter(|name| {
                    let keep = name.to_str().is_ok_and(&known)
                        && rustix::fs::statat(fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                            .is_ok_and(|s| {
                                FileType::from_raw_mode(s.st_mode) == FileType::RegularFile
                            });
                    !keep
                })
                .collect(),
            Err(e) => {
                let e = self.m.io_error(&folder.rel(), "list the folder")(e);
                self.problems.push(e);
                return;
            }
        };
        for name in unknown {
            self.remove_in(folder, &name);
        }
    }

    /// Removes one entry of `folder` (a folder with what is in it).
    fn remove_in(&mut self, folder: &Folder, name: &CStr) {
        let Some(fd) = self.folders.get(self.m, folder, false, &mut self.problems) else {
            return;
        };
        match remove_entry(fd, name, 0) {
            Ok(true) => {
                self.report.removed += 1;
                self.dirty.insert(folder.clone());
            }
            Ok(false) => {}
            Err(e) => {
                let rel = folder.rel().join(name.to_string_lossy().as_ref());
                let e = self.m.io_error(&rel, "remove")(e);
                self.problems.push(e);
            }
        }
    }

    /// Makes the renames and removals of this sync durable (a no-op on
    /// tmpfs, what `--materialize-persistent` needs on a disk).
    fn flush(&mut self) {
        for folder in std::mem::take(&mut self.dirty) {
            if let Some(fd) = self.folders.get(self.m, &folder, false, &mut self.problems) {
                if let Err(e) = rustix::fs::fsync(fd) {
                    let e = self.m.io_error(&folder.rel(), "sync the folder")(e.into());
                    self.problems.push(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
