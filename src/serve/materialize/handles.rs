//! The system calls of the materializer, each relative to a directory
//! handle and none following a symlink (see the parent module for why).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use tracing::warn;
use zeroize::Zeroizing;

use super::{MaterializeError, DIR_MODE, FILE_MODE};

/// `statfs.f_type` of tmpfs (`/dev/shm`, `/run`, `$XDG_RUNTIME_DIR`, a
/// Kubernetes `emptyDir` with `medium: Memory`).
pub(super) const TMPFS_MAGIC: u32 = 0x0102_1994;
/// `statfs.f_type` of ramfs.
pub(super) const RAMFS_MAGIC: u32 = 0x8584_58f6;

/// Folders nested deeper than this below DIR are not emptied: nothing the
/// watcher writes is deeper than two, and each level holds a descriptor.
const MAX_REMOVE_DEPTH: usize = 16;

/// Prefix of temporary files: secret names start with a letter or digit,
/// so a temporary file never takes a secret's name.
const TEMP_PREFIX: &str = ".meshseal-";

/// Creates DIR (0700), and the folders above it if they are missing;
/// `true` when DIR was made here. An existing DIR (or anything in its
/// place) is judged when it is opened.
pub(super) fn create_top(dir: &Path) -> Result<bool, MaterializeError> {
    let mkdir = || rustix::fs::mkdir(dir, mode(DIR_MODE));
    let made = match mkdir() {
        Err(Errno::NOENT) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(parent)
                    .map_err(io_error(parent, "create the folder"))?;
            }
            mkdir()
        }
        other => other,
    };
    match made {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(io_error(dir, "create the folder")(e.into())),
    }
}

/// The watcher's own, and nobody else may write it.
pub(super) fn check_private(path: &Path, stat: &Stat, euid: u32) -> Result<(), MaterializeError> {
    if stat.st_uid != euid {
        return Err(MaterializeError::NotOwned {
            path: path.to_path_buf(),
            owner: stat.st_uid,
            euid,
        });
    }
    let bits = stat.st_mode & 0o7777;
    if bits & 0o022 != 0 {
        return Err(MaterializeError::WritableByOthers {
            path: path.to_path_buf(),
            mode: bits,
        });
    }
    Ok(())
}

/// Makes a folder of the watcher's 0700 (only its own: [`check_private`]
/// came first), through its handle.
pub(super) fn tighten(path: &Path, fd: &OwnedFd, stat: &Stat) -> Result<(), MaterializeError> {
    if stat.st_mode & 0o777 == DIR_MODE {
        return Ok(());
    }
    rustix::fs::fchmod(fd, mode(DIR_MODE)).map_err(|e| io_error(path, "chmod the folder")(e.into()))
}

/// DIR is on tmpfs or ramfs, or plaintext at rest was accepted (a warning).
pub(super) fn check_memory_backed(
    path: &Path,
    fd: &OwnedFd,
    allow_persistent: bool,
) -> Result<(), MaterializeError> {
    let stat =
        rustix::fs::fstatfs(fd).map_err(|e| io_error(path, "stat the file system")(e.into()))?;
    // The magic numbers are 32 bits; the field's width varies by target.
    #[allow(clippy::unnecessary_cast)]
    let magic = stat.f_type as u32;
    if magic == TMPFS_MAGIC || magic == RAMFS_MAGIC {
        return Ok(());
    }
    let fs = fs_name(magic);
    if !allow_persistent {
        return Err(MaterializeError::Persistent {
            path: path.to_path_buf(),
            fs,
        });
    }
    warn!(
        dir = %path.display(),
        fs = %fs,
        "--materialize-persistent: the materialized secrets are plaintext on a persistent file system; they stay at rest on disk, also after the watcher stops"
    );
    Ok(())
}

/// A readable name for a file system type.
pub(super) fn fs_name(magic: u32) -> String {
    let name = match magic {
        0xef53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x2fc1_2fc1 => "zfs",
        0xf2f5_2010 => "f2fs",
        0x794c_7630 => "overlayfs",
        0x6969 => "nfs",
        0xff53_4d42 | 0xfe53_4d42 => "cifs/smb",
        0x6573_5546 => "fuse",
        0x4d44 => "vfat",
        _ => return format!("file system type {magic:#x}"),
    };
    name.to_string()
}

/// How opening a folder without following a link went.
#[derive(Debug)]
pub(super) enum Opened {
    Missing,
    Symlink,
    NotAFolder,
    /// It was swapped while being looked at: look again.
    Changed,
    Io(io::Error),
}

/// Opens the folder `name` below `at` for reading; a symlink in its last
/// component is refused, not followed.
pub(super) fn open_folder<P: rustix::path::Arg + Copy>(
    at: impl AsFd,
    name: P,
) -> Result<OwnedFd, Opened> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(&at, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => Err(Opened::Missing),
        // With O_DIRECTORY a final symlink gives ENOTDIR, without it ELOOP.
        Err(Errno::NOTDIR | Errno::LOOP) => {
            match rustix::fs::statat(&at, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => match FileType::from_raw_mode(s.st_mode) {
                    FileType::Symlink => Err(Opened::Symlink),
                    FileType::Directory => Err(Opened::Changed),
                    _ => Err(Opened::NotAFolder),
                },
                Err(Errno::NOENT) => Err(Opened::Missing),
                Err(e) => Err(Opened::Io(e.into())),
            }
        }
        Err(e) => Err(Opened::Io(e.into())),
    }
}

/// Whether `name` in `folder` is already exactly `bytes`: a regular file of
/// the watcher's, mode 0400, one link, that size and those bytes.
pub(super) fn is_current(folder: BorrowedFd<'_>, name: &str, bytes: &[u8], euid: u32) -> bool {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(folder, name, flags, Mode::empty()) else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(&fd) else {
        return false;
    };
    let fits = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
        && stat.st_uid == euid
        && stat.st_mode & 0o7777 == FILE_MODE
        && stat.st_nlink == 1
        && u64::try_from(stat.st_size).ok() == Some(bytes.len() as u64);
    if !fits {
        return false;
    }
    // One byte more than expected, to see a file that grew since the fstat.
    let mut buf = Zeroizing::new(vec![0u8; bytes.len() + 1]);
    let mut file = File::from(fd);
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    filled == bytes.len() && buf[..filled] == *bytes
}

/// Writes `bytes` as `name` in `folder`: a new temporary file (never an
/// existing one, never through a link) renamed over whatever is there.
pub(super) fn write_file(
    folder: BorrowedFd<'_>,
    name: &str,
    bytes: &[u8],
) -> Result<(), (&'static str, io::Error)> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut tries = 0;
    let (temp, fd) = loop {
        let temp = c_name(&format!(
            "{TEMP_PREFIX}{}-{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        match rustix::fs::openat(folder, temp.as_c_str(), flags, mode(FILE_MODE)) {
            Ok(fd) => break (temp, fd),
            Err(Errno::EXIST) if tries < 8 => tries += 1,
            Err(e) => return Err(("create a temporary file", e.into())),
        }
    };
    let staged = (|| -> Result<(), (&'static str, io::Error)> {
        // The umask may have taken bits away; the file is new and ours.
        rustix::fs::fchmod(&fd, mode(FILE_MODE)).map_err(|e| ("chmod the file", e.into()))?;
        let mut file = File::from(fd);
        file.write_all(bytes).map_err(|e| ("write the file", e))?;
        file.sync_all().map_err(|e| ("sync the file", e))?;
        rename_over(folder, &temp, name).map_err(|e| ("rename the file into place", e))
    })();
    if staged.is_err() {
        let _ = rustix::fs::unlinkat(folder, temp.as_c_str(), AtFlags::empty());
    }
    staged
}

/// Renames `temp` to `name` in `folder`. A symlink or file at `name` is
/// replaced as an entry; a folder there is removed first.
fn rename_over(folder: BorrowedFd<'_>, temp: &CStr, name: &str) -> io::Result<()> {
    match rustix::fs::renameat(folder, temp, folder, name) {
        Ok(()) => Ok(()),
        Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => {
            remove_entry(folder, &c_name(name), 0)?;
            Ok(rustix::fs::renameat(folder, temp, folder, name)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes the entry `name` of `folder`: a file or link is unlinked (a link
/// is never followed); a folder is emptied through its own handle, opened
/// without following links, then removed. `false` when nothing was there.
pub(super) fn remove_entry(folder: BorrowedFd<'_>, name: &CStr, depth: usize) -> io::Result<bool> {
    match rustix::fs::unlinkat(folder, name, AtFlags::empty()) {
        Ok(()) => return Ok(true),
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(io::Error::other("folders nested too deep to remove"));
    }
    let inner = match open_folder(folder, name) {
        Ok(fd) => fd,
        Err(Opened::Missing) => return Ok(false),
        // Swapped since the unlink: what is there now is judged again.
        Err(Opened::Symlink | Opened::NotAFolder | Opened::Changed) => {
            return remove_entry(folder, name, depth + 1)
        }
        Err(Opened::Io(e)) => return Err(e),
    };
    for entry in list(&inner)? {
        remove_entry(inner.as_fd(), &entry, depth + 1)?;
    }
    match rustix::fs::unlinkat(folder, name, AtFlags::REMOVEDIR) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The entry names of a folder, without `.` and `..`.
pub(super) fn list(folder: impl AsFd) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(folder)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// A name as a C string. Secret, mesh and temporary names never hold NUL.
pub(super) fn c_name(name: &str) -> CString {
    CString::new(name).expect("materialized names hold no NUL byte")
}

pub(super) fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode(bits)
}

pub(super) fn io_error(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> MaterializeError {
    let path = path.to_path_buf();
    move |source| MaterializeError::Io {
        path,
        action,
        source,
    }
}
