//! Opening files below a directory without ever following a symlink.
//!
//! Git stores symlinks, so a repository can carry `meshes/a/secrets ->
//! /etc` or `x.age -> ~/.ssh/id_ed25519`. The store must never read through
//! one. Checking each folder with `lstat` and then opening the path has a
//! gap between check and use, and costs a system call per folder per file.
//!
//! On Linux (5.6 and later) `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` makes the kernel refuse any symlink, and any `..`
//! that would climb out, at every step of the one lookup it does: no gap,
//! one call. Where `openat2` is missing (an older kernel, or a seccomp
//! filter that forbids it) each folder is checked with `lstat` and the file
//! is opened with `O_NOFOLLOW`, as before.

use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a confined open failed.
#[derive(Debug)]
pub enum ConfineError {
    /// A symlink (or a `..` leading out) on the way or at the end.
    Symlink,
    /// Anything else, as the system reported it.
    Io(io::Error),
}

impl From<io::Error> for ConfineError {
    fn from(e: io::Error) -> Self {
        ConfineError::Io(e)
    }
}

/// A directory whose files are opened only from below it.
#[derive(Debug)]
pub struct Confined {
    root: PathBuf,
    /// The root, opened on first use, for `openat2`; dropped by
    /// [`Confined::reopen`].
    #[cfg(target_os = "linux")]
    fd: arc_swap::ArcSwapOption<std::os::fd::OwnedFd>,
}

impl Confined {
    /// Files below `root`. Nothing is opened until the first read.
    pub fn new(root: PathBuf) -> Confined {
        Confined {
            root,
            #[cfg(target_os = "linux")]
            fd: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// Opens `rel` (relative, no `..`) for reading, refusing a symlink at
    /// any depth below the root, and without blocking (so a FIFO cannot
    /// hang the caller). The caller judges the file type by the handle.
    pub fn open(&self, rel: &Path) -> Result<File, ConfineError> {
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(ConfineError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a plain path below the store root",
            )));
        }
        #[cfg(target_os = "linux")]
        if let Some(result) = self.open_beneath(rel) {
            return result;
        }
        self.open_walking(rel)
    }

    /// Forgets the root's handle: the next read opens the root's path again.
    /// A walk by path calls this, so that reads follow the same tree even
    /// when the store folder was replaced by a rename since the last walk.
    pub fn reopen(&self) {
        #[cfg(target_os = "linux")]
        self.fd.store(None);
    }

    /// `openat2` from the root's descriptor; `None` when it is unavailable.
    #[cfg(target_os = "linux")]
    fn open_beneath(&self, rel: &Path) -> Option<Result<File, ConfineError>> {
        use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
        use rustix::io::Errno;
        use std::sync::atomic::{AtomicBool, Ordering};

        // Once the kernel has said no, it will keep saying no.
        static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
        if UNAVAILABLE.load(Ordering::Relaxed) {
            return None;
        }
        let root = match self.fd.load_full() {
            Some(fd) => fd,
            None => {
                // Not cached when it fails: the root may not exist yet.
                let fd = std::sync::Arc::new(
                    rustix::fs::open(
                        &self.root,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .ok()?,
                );
                self.fd.store(Some(std::sync::Arc::clone(&fd)));
                fd
            }
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        match openat2(&*root, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => Some(Ok(File::from(fd))),
            // ELOOP: a symlink on the way; EXDEV: a way out of the root.
            Err(Errno::LOOP | Errno::XDEV) => Some(Err(ConfineError::Symlink)),
            Err(Errno::NOSYS | Errno::PERM) => {
                UNAVAILABLE.store(true, Ordering::Relaxed);
                None
            }
            // EAGAIN: the kernel asks for a retry (a rename raced the lookup).
            Err(Errno::AGAIN) => None,
            Err(e) => Some(Err(ConfineError::Io(e.into()))),
        }
    }

    /// The portable way: `lstat` every folder, then open with `O_NOFOLLOW`.
    fn open_walking(&self, rel: &Path) -> Result<File, ConfineError> {
        let mut path = self.root.clone();
        let mut components = rel.components().peekable();
        while let Some(c) = components.next() {
            path.push(c);
            if components.peek().is_some() && fs::symlink_metadata(&path)?.file_type().is_symlink()
            {
                return Err(ConfineError::Symlink);
            }
        }
        open_no_follow(&path)
    }
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> Result<File, ConfineError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => ConfineError::Symlink,
            _ => ConfineError::Io(e),
        })
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> Result<File, ConfineError> {
    if fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(ConfineError::Symlink);
    }
    Ok(File::open(path)?)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        fs::create_dir_all(root.join("meshes/a/secrets")).unwrap();
        fs::write(root.join("meshes/a/secrets/x.age"), b"x").unwrap();
        fs::write(dir.path().join("outside"), b"outside").unwrap();
        (dir, root)
    }

    fn refused(c: &Confined, rel: &str) -> bool {
        matches!(c.open(Path::new(rel)), Err(ConfineError::Symlink))
    }

    #[test]
    fn symlinks_at_any_depth_are_refused_both_ways() {
        let (dir, root) = tree();
        symlink(
            dir.path().join("outside"),
            root.join("meshes/a/secrets/f.age"),
        )
        .unwrap();
        symlink(root.join("meshes/a"), root.join("meshes/b")).unwrap();
        symlink("x.age", root.join("meshes/a/secrets/rel.age")).unwrap();
        let confined = Confined::new(root.clone());
        for c in [&confined, &Confined::new(root.clone())] {
            assert!(c.open(Path::new("meshes/a/secrets/x.age")).is_ok());
            assert!(refused(c, "meshes/a/secrets/f.age"), "final link");
            assert!(refused(c, "meshes/b/secrets/x.age"), "folder link");
            assert!(refused(c, "meshes/a/secrets/rel.age"), "link inside");
        }
        // The portable path gives the same answers.
        assert!(confined
            .open_walking(Path::new("meshes/a/secrets/x.age"))
            .is_ok());
        for rel in [
            "meshes/a/secrets/f.age",
            "meshes/b/secrets/x.age",
            "meshes/a/secrets/rel.age",
        ] {
            assert!(matches!(
                confined.open_walking(Path::new(rel)),
                Err(ConfineError::Symlink)
            ));
        }
    }

    #[test]
    fn reopen_follows_a_root_replaced_by_a_rename() {
        let (dir, root) = tree();
        let c = Confined::new(root.clone());
        let read = |c: &Confined| {
            let mut s = String::new();
            std::io::Read::read_to_string(
                &mut c.open(Path::new("meshes/a/secrets/x.age")).unwrap(),
                &mut s,
            )
            .unwrap();
            s
        };
        assert_eq!(read(&c), "x");
        fs::rename(&root, dir.path().join("old")).unwrap();
        fs::create_dir_all(root.join("meshes/a/secrets")).unwrap();
        fs::write(root.join("meshes/a/secrets/x.age"), b"new").unwrap();
        c.reopen();
        assert_eq!(read(&c), "new");
    }

    #[test]
    fn climbing_out_is_refused() {
        let (_dir, root) = tree();
        let c = Confined::new(root);
        for rel in ["../outside", "meshes/../../outside", "/etc/passwd"] {
            assert!(c.open(Path::new(rel)).is_err(), "{rel}");
        }
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let (_dir, root) = tree();
        let c = Confined::new(root);
        match c.open(Path::new("meshes/a/secrets/none.age")) {
            Err(ConfineError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }
}
