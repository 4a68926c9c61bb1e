//! Materialized secrets: plain files for programs that read secrets from disk.
//!
//! `DIR/meshes/<mesh>/<name>` and `DIR/global/<name>` hold the decoded bytes
//! of each secret in the index, mode 0400 in folders 0700, each written
//! atomically (a reader sees the old bytes or the new, never a mix) and
//! removed when its secret leaves the index. DIR should live on a RAM-backed
//! filesystem: these files are plaintext.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::atomic;
use crate::index::Index;
use crate::problem::Diagnostic;
use crate::scope::{Scope, SecretId};

/// A materialized file or folder could not be written or removed.
#[derive(Debug, Error)]
#[error("{source}")]
pub struct MaterializeError {
    /// The file or folder.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl Diagnostic for MaterializeError {
    fn code(&self) -> &'static str {
        "materialize"
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

fn failed(path: &Path) -> impl FnOnce(io::Error) -> MaterializeError + '_ {
    move |source| MaterializeError {
        path: path.to_path_buf(),
        source,
    }
}

/// Mode of materialized files.
pub const FILE_MODE: u32 = 0o400;
/// Mode of materialized folders.
pub const DIR_MODE: u32 = 0o700;

/// Keeps a folder in step with the index.
#[derive(Debug, Clone)]
pub struct Materializer {
    dir: PathBuf,
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
    /// A materializer writing below `dir` (created 0700 if missing).
    pub fn new(dir: impl Into<PathBuf>, _allow_persistent: bool) -> Result<Materializer, MaterializeError> {
        let dir = dir.into();
        make_private_dir(&dir).map_err(failed(&dir))?;
        Ok(Materializer { dir })
    }

    /// The file of one secret.
    pub fn path_of(&self, id: &SecretId) -> PathBuf {
        match &id.scope {
            Scope::Global => self.dir.join("global").join(&id.name),
            Scope::Mesh(m) => self.dir.join("meshes").join(m).join(&id.name),
        }
    }

    /// Brings the folder in step with `new`. With `old`, only secrets whose
    /// file changed are rewritten; without, everything is written and files
    /// the index does not know are removed (a start after a stop).
    pub fn sync(&self, old: Option<&Index>, new: &Index) -> (SyncReport, Vec<MaterializeError>) {
        let mut report = SyncReport::default();
        let mut problems = Vec::new();
        for secret in new.secrets() {
            let id = &secret.doc.id;
            let unchanged = old
                .and_then(|o| o.get(id))
                .is_some_and(|o| o.file_sha256 == secret.file_sha256);
            if unchanged {
                continue;
            }
            let path = self.path_of(id);
            if old.is_none() && is_current(&path, secret.doc.data.expose()) {
                // A restart: the file from the last run is still right.
                continue;
            }
            match self.write(&path, secret.doc.data.expose()) {
                Ok(()) => report.written += 1,
                Err(e) => problems.push(failed(&path)(e)),
            }
        }
        match old {
            Some(old) => {
                for secret in old.secrets() {
                    let id = &secret.doc.id;
                    if new.get(id).is_none() {
                        let path = self.path_of(id);
                        match remove(&path) {
                            Ok(true) => report.removed += 1,
                            Ok(false) => {}
                            Err(e) => problems.push(failed(&path)(e)),
                        }
                    }
                }
            }
            None => match self.remove_unknown(new) {
                Ok(n) => report.removed += n,
                Err(p) => problems.push(p),
            },
        }
        (report, problems)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let parent = path.parent().expect("materialized files have a folder");
        // Each folder between DIR and the file is private.
        let mut dir = self.dir.clone();
        for c in parent
            .strip_prefix(&self.dir)
            .unwrap_or(Path::new(""))
            .components()
        {
            dir.push(c);
            make_private_dir(&dir)?;
        }
        atomic::write(path, bytes, FILE_MODE)
    }

    /// Removes files below DIR/meshes and DIR/global that name no secret of
    /// the index.
    fn remove_unknown(&self, index: &Index) -> Result<usize, MaterializeError> {
        let mut removed = 0;
        for top in ["global", "meshes"] {
            let base = self.dir.join(top);
            if !base.is_dir() {
                continue;
            }
            for item in walkdir::WalkDir::new(&base)
                .min_depth(1)
                .follow_links(false)
            {
                let item = item.map_err(|e| MaterializeError {
                    path: e.path().unwrap_or(&base).to_path_buf(),
                    source: e.into(),
                })?;
                if item.file_type().is_dir() {
                    continue;
                }
                let known = self
                    .id_of(item.path())
                    .is_some_and(|id| index.get(&id).is_some());
                if !known {
                    remove(item.path()).map_err(failed(item.path()))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn id_of(&self, path: &Path) -> Option<SecretId> {
        let rel = path.strip_prefix(&self.dir).ok()?;
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        match parts.as_slice() {
            ["global", name] => SecretId::new(Scope::Global, name).ok(),
            ["meshes", mesh, name] => SecretId::new(Scope::mesh(mesh).ok()?, name).ok(),
            _ => None,
        }
    }
}

/// Whether `path` already holds exactly `bytes` with the right mode.
fn is_current(path: &Path, bytes: &[u8]) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o777 != FILE_MODE {
            return false;
        }
    }
    meta.is_file()
        && meta.len() == bytes.len() as u64
        && fs::read(path).is_ok_and(|b| zeroize::Zeroizing::new(b).as_slice() == bytes)
}

fn make_private_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(dir)?,
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Removes a file; `false` when it was not there.
fn remove(path: &Path) -> io::Result<bool> {
    match atomic::remove(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
