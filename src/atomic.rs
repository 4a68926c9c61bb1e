//! Atomic file replacement: write a temporary file in the target's folder,
//! fsync it, rename it over the target, fsync the folder.
//!
//! Whatever kills the process, the target is either the old file or the new
//! one. A crash can leave a `.meshseal-*.tmp` file behind; `check` reports
//! those. Temporary files are created with mode 0600 before any byte is
//! written, so a secret-bearing file is never briefly readable by others.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Prefix of temporary files, so that `check` can recognise leftovers.
pub const TEMP_PREFIX: &str = ".meshseal-";
/// Suffix of temporary files.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes` atomically, with Unix permissions `mode`.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = stage(path, bytes, mode)?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(parent(path))
}

/// Creates `path` atomically, failing if it already exists.
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = stage(path, bytes, mode)?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(parent(path))
}

/// A durable temporary file with `bytes` and `mode`, in `path`'s folder.
fn stage(path: &Path, bytes: &[u8], mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    set_mode(tmp.as_file(), mode)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Removes `path` and makes the removal durable.
pub fn remove(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    sync_dir(parent(path))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.txt");
        write(&p, b"one", 0o644).unwrap();
        write(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        assert!(create_new(&p, b"three", 0o600).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        remove(&p).unwrap();
        assert!(!p.exists());
    }
}
