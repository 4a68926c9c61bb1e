//! The SDS Unix socket on disk: its folder, its mode, its replacement.
//!
//! Whoever can connect to the socket can present tokens, so the folder must
//! be ours: it is created (0750: Envoy in our group may enter, nobody else
//! may write) when missing, and an existing one is
//! accepted only when it is a real directory owned by this user that nobody
//! else can write (else another user could swap the socket for their own).
//! The socket is bound under a temporary name, given mode 0660 and renamed
//! into place, so it is never reachable with the umask's mode and a stale
//! socket of ours (a watcher that was killed) is replaced atomically. A
//! socket that still answers belongs to a running watcher and is left alone.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::{FolderProblem, SdsError};

/// Mode of the socket: the watcher's user and group (Envoy's) may connect.
pub const SOCKET_MODE: u32 = 0o660;
/// Mode of a socket folder the watcher creates: Envoy, in the watcher's
/// group, may enter it to reach the 0660 socket, and nobody else may write it.
pub const FOLDER_MODE: u32 = 0o750;

/// The bound socket; removes its file on drop if it is still this one.
pub(super) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

fn io_err(path: &Path, about: &'static str) -> impl FnOnce(io::Error) -> SdsError {
    let path = path.to_path_buf();
    move |source| SdsError::Io {
        path,
        about,
        source,
    }
}

/// Checks (or creates) the socket's folder.
fn folder(dir: &Path, uid: u32) -> Result<(), SdsError> {
    let problem = |problem| SdsError::Folder {
        path: dir.to_path_buf(),
        problem,
    };
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(FOLDER_MODE)
            .create(dir)
            // The umask may have taken the group's bits.
            .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(FOLDER_MODE)))
            .map_err(io_err(dir, "cannot create the SDS socket's folder")),
        Err(e) => Err(io_err(dir, "cannot read the SDS socket's folder")(e)),
        Ok(m) if m.file_type().is_symlink() => Err(problem(FolderProblem::Symlink)),
        Ok(m) if !m.is_dir() => Err(problem(FolderProblem::NotADirectory)),
        Ok(m) if m.uid() != uid => Err(problem(FolderProblem::Owner { uid: m.uid() })),
        Ok(m) if m.mode() & 0o022 != 0 => Err(problem(FolderProblem::Writable {
            mode: m.mode() & 0o777,
        })),
        Ok(_) => Ok(()),
    }
}

/// Whether `path` may be replaced: missing, or a socket of ours that no
/// process serves.
fn replaceable(path: &Path, uid: u32) -> Result<(), SdsError> {
    let m = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path, "cannot read the SDS socket path")(e)),
        Ok(m) => m,
    };
    if !m.file_type().is_socket() || m.uid() != uid {
        return Err(SdsError::Taken {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SdsError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(io_err(path, "cannot tell whether the SDS socket is in use")(e)),
    }
}

/// Binds the SDS socket at `path` (see the module documentation).
pub(super) fn bind(path: &Path) -> Result<(UnixListener, SocketFile), SdsError> {
    let uid = rustix::process::geteuid().as_raw();
    let name = path.file_name().ok_or_else(|| SdsError::Taken {
        path: path.to_path_buf(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    folder(dir, uid)?;
    replaceable(path, uid)?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy().chars().take(16).collect::<String>(),
        std::process::id()
    ));
    // A leftover of this pid's earlier run (pids are reused) is ours too.
    if fs::symlink_metadata(&temp).is_ok() {
        replaceable(&temp, uid)?;
        fs::remove_file(&temp).map_err(io_err(&temp, "cannot remove a stale temporary socket"))?;
    }
    let listener = UnixListener::bind(&temp).map_err(io_err(path, "cannot bind the SDS socket"))?;
    let placed = fs::set_permissions(&temp, fs::Permissions::from_mode(SOCKET_MODE))
        .and_then(|()| fs::rename(&temp, path));
    if let Err(e) = placed {
        let _ = fs::remove_file(&temp);
        return Err(io_err(path, "cannot put the SDS socket in place")(e));
    }
    let m = fs::symlink_metadata(path).map_err(io_err(path, "cannot read the SDS socket"))?;
    Ok((
        listener,
        SocketFile {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    #[tokio::test]
    async fn creates_a_private_folder_and_a_0660_socket_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/meshseal/sds.sock");
        let (listener, file) = bind(&path).unwrap();
        assert_eq!(mode(path.parent().unwrap()), FOLDER_MODE);
        assert_eq!(mode(&path), SOCKET_MODE);
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        // A live socket is not taken over.
        assert!(matches!(bind(&path), Err(SdsError::InUse { .. })));
        drop(listener);
        // Once nobody serves it, it is stale and replaced.
        let (_l2, file2) = bind(&path).unwrap();
        // The first one's cleanup leaves the new socket alone.
        drop(file);
        assert!(path.exists());
        drop(file2);
        assert!(!path.exists());
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn refuses_folders_others_control_and_files_that_are_not_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            bind(&open.join("s.sock")),
            Err(SdsError::Folder {
                problem: FolderProblem::Writable { mode: 0o777 },
                ..
            })
        ));
        // Group-readable but not writable is fine (Envoy's group may enter).
        fs::set_permissions(&open, fs::Permissions::from_mode(0o750)).unwrap();
        assert!(bind(&open.join("s.sock")).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(matches!(
            bind(&link.join("s.sock")),
            Err(SdsError::Folder {
                problem: FolderProblem::Symlink,
                ..
            })
        ));
        let file = open.join("plain");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(bind(&file), Err(SdsError::Taken { .. })));
        assert_eq!(fs::read(&file).unwrap(), b"x");
    }
}
