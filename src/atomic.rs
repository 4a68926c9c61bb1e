//! Atomic file replacement: write a temporary file in the target's folder,
//! fsync it, rename it over the target, fsync the folder.
//!
//! Whatever kills the process, the target is either the old file or the new
//! one. Temporary files are created with mode 0600 before any byte is
//! written, so a secret-bearing file is never briefly readable by others.
//!
//! A process killed between creating its temporary file and renaming it
//! (SIGKILL, OOM killer, power loss) cannot clean up: the file stays behind.
//! So a writer holds an exclusive `flock` on its temporary file from creation
//! to rename (the kernel drops it when the process dies, however it dies),
//! and the first write of a process into a folder first removes the
//! temporary files there that nobody holds ([`sweep`]): a leftover lives only
//! until meshseal next writes to that folder, and `check` reports it
//! meanwhile. The lock, not the pid in the name
//! (`.meshseal-<pid>-<random>.tmp`), decides: it holds across PID namespaces
//! and `hidepid` mounts, where a live writer's pid is not visible. Where a
//! file cannot be locked (a file system without `flock`), the pid and an
//! hour's age decide ([`is_abandoned`]).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Prefix of temporary files, so that `check` can recognise leftovers.
pub const TEMP_PREFIX: &str = ".meshseal-";
/// Suffix of temporary files.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A temporary file untouched for this long is abandoned whatever its name
/// says: staging one takes milliseconds. This is the only rule where the
/// writer's process cannot be looked up (no `/proc`, or a name without a pid).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60 * 60);

/// Folders this process has already swept, so a write of many files into one
/// folder reads it once.
static SWEPT: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

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

/// Replaces many files at once, as durably as [`write`] replaces one, with
/// one flush of the file system instead of two `fsync`s a file: a
/// [`Batch`] with every item staged in the order given, then committed.
pub fn write_batch(items: &[(PathBuf, &[u8])], mode: u32) -> Result<(), BatchError> {
    let mut batch = Batch::new(mode, items.len());
    for (order, (path, bytes)) in items.iter().enumerate() {
        batch.stage(order, path, bytes)?;
    }
    batch.commit()
}

/// Many replacements made as durably as [`write`] makes one, with one flush
/// of the file system instead of two `fsync`s a file:
///
/// 1. [`Batch::stage`] writes each temporary file (mode first, then the
///    bytes), not yet flushed, the first file of a folder preparing it
///    (created if missing, swept of leftovers, its file system noted);
///    files can be staged while others are still being made (encrypted),
///    and once half a large batch is staged, a `syncfs` starts in the
///    background, so the disk works while the rest is made;
/// 2. [`Batch::commit`] makes them all durable with one `syncfs` per file
///    system (a file system without it gets an `fsync` per file), renames
///    each over its target, and flushes each folder touched once (several
///    at a time). The files of one folder are renamed in the order given
///    when staged (a large batch renames two folders' files at once); a
///    failed rename stops the batch: the files renamed by then are
///    replaced, the others untouched, and the error says how many.
///
/// Any failure before the first rename (a full disk while staging), or a
/// batch dropped without its commit, removes every temporary file: nothing
/// was replaced. Every temporary file stays open, holding its lock, until
/// its rename: the soft limit on open files is raised for that (up to the
/// hard limit, as Go's runtime does at start), or a batch larger than about
/// 1,000 files would fail where the usual limit is 1,024.
///
/// A process killed at any point leaves every target either its old bytes
/// or its new ones; the temporary files of a killed batch are locked by
/// their writer like [`write`]'s, so the next write into their folder sweeps
/// them.
#[derive(Debug)]
pub struct Batch {
    mode: u32,
    /// `.meshseal-<pid>-`.
    prefix: String,
    /// Each folder prepared, and the file system it is on.
    folders: HashMap<PathBuf, u64>,
    /// Each staged file: its place in the rename order, its target, its
    /// folder's file system, the temporary file.
    staged: Vec<(usize, PathBuf, u64, tempfile::NamedTempFile)>,
    /// How many files the batch expects.
    expected: usize,
    /// A flush of the file system started once half the batch was staged.
    early_flush: Option<std::thread::JoinHandle<()>>,
}

/// The smallest batch whose first half is flushed in the background while
/// the second half is staged: the flush at the commit then has half the
/// work left (after a 10,000-secret apply on this project's VM, 57–102 ms
/// instead of 125–222 ms).
const EARLY_FLUSH_MIN: usize = 256;

impl Batch {
    /// A batch of about `files` files, each written with Unix permissions
    /// `mode`.
    pub fn new(mode: u32, files: usize) -> Batch {
        raise_open_files_limit(files);
        Batch {
            mode,
            prefix: temp_prefix(),
            folders: HashMap::new(),
            staged: Vec::with_capacity(files),
            expected: files,
            early_flush: None,
        }
    }

    /// Writes `bytes` to a temporary file beside `path`, to be renamed over
    /// it in the place `order` gives among its folder's files (ascending;
    /// files may be staged in any order).
    pub fn stage(&mut self, order: usize, path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
        let failed = |source| BatchError {
            path: path.to_path_buf(),
            renamed: 0,
            source,
        };
        let dir = parent(path);
        let device = match self.folders.get(dir) {
            Some(&device) => device,
            None => {
                let device = prepare_folder(dir).map_err(failed)?;
                self.folders.insert(dir.to_path_buf(), device);
                device
            }
        };
        let tmp = stage_unsynced(path, bytes, self.mode, &self.prefix).map_err(failed)?;
        if self.early_flush.is_none()
            && self.expected >= EARLY_FLUSH_MIN
            && self.staged.len() + 1 >= self.expected / 2
        {
            if let Ok(file) = tmp.as_file().try_clone() {
                self.early_flush = Some(std::thread::spawn(move || {
                    let _ = rustix::fs::syncfs(&file);
                }));
            }
        }
        self.staged.push((order, path.to_path_buf(), device, tmp));
        Ok(())
    }

    /// Makes every staged file durable, renames each over its target and
    /// flushes the folders, several at once (see [`Batch`]).
    pub fn commit(mut self) -> Result<(), BatchError> {
        let before_renames = |path: &Path, source| BatchError {
            path: path.to_path_buf(),
            renamed: 0,
            source,
        };
        if let Some(early) = self.early_flush.take() {
            let _ = early.join();
        }
        self.staged.sort_by_key(|(order, ..)| *order);
        // One flush covers every file of the same file system; where
        // `syncfs` fails, each of its files is flushed by itself.
        let mut flushed: HashMap<u64, bool> = HashMap::new();
        for (_, path, device, tmp) in &self.staged {
            let whole = *flushed
                .entry(*device)
                .or_insert_with(|| rustix::fs::syncfs(tmp.as_file()).is_ok());
            if !whole {
                tmp.as_file()
                    .sync_all()
                    .map_err(|e| before_renames(path, e))?;
            }
        }
        let total = self.staged.len();
        let staged = std::mem::take(&mut self.staged)
            .into_iter()
            .map(|(_, path, _, tmp)| (path, tmp))
            .collect();
        if total >= PARALLEL_RENAMES_MIN && self.folders.len() > 1 {
            rename_in_parallel(staged)?;
        } else {
            rename_in_order(staged)?;
        }
        let folders: Vec<&Path> = self.folders.keys().map(PathBuf::as_path).collect();
        sync_dirs(&folders).map_err(|(dir, source)| BatchError {
            path: dir.to_path_buf(),
            renamed: total,
            source,
        })
    }
}

/// The smallest batch whose renames run on two threads.
const PARALLEL_RENAMES_MIN: usize = 64;

/// A staged file and the target it is renamed over.
type Staged = (PathBuf, tempfile::NamedTempFile);

/// Renames each staged file over its target, in order; the first failure
/// stops, saying how many were renamed before it.
fn rename_in_order(staged: Vec<Staged>) -> Result<(), BatchError> {
    for (renamed, (path, tmp)) in staged.into_iter().enumerate() {
        if let Err(e) = tmp.persist(&path) {
            return Err(BatchError {
                path,
                renamed,
                source: e.error,
            });
        }
    }
    Ok(())
}

/// Renames each staged file over its target on two threads, each folder's
/// files on one of them, in their order: a rename is mostly the file
/// system's work on its folder, and two folders' renames do not wait for
/// each other (10,000 files in 100 folders on this project's VM: 135–162
/// ms instead of 220–280 ms on the disk, 64–75 ms instead of 111–132 ms on
/// tmpfs). The first failure stops both, saying how many were renamed.
fn rename_in_parallel(staged: Vec<Staged>) -> Result<(), BatchError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let mut lanes: [Vec<Staged>; 2] = [Vec::new(), Vec::new()];
    let mut lane_of: HashMap<PathBuf, usize> = HashMap::new();
    for (path, tmp) in staged {
        let dir = parent(&path).to_path_buf();
        let next = lane_of.len() % 2;
        let lane = *lane_of.entry(dir).or_insert(next);
        lanes[lane].push((path, tmp));
    }
    let renamed = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failed: Mutex<Option<(PathBuf, io::Error)>> = Mutex::new(None);
    std::thread::scope(|threads| {
        for lane in lanes {
            let (renamed, stop, failed) = (&renamed, &stop, &failed);
            threads.spawn(move || {
                for (path, tmp) in lane {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match tmp.persist(&path) {
                        Ok(_) => {
                            renamed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            failed
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get_or_insert((path, e.error));
                            return;
                        }
                    }
                }
            });
        }
    });
    match failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some((path, source)) => Err(BatchError {
            path,
            renamed: renamed.into_inner(),
            source,
        }),
        None => Ok(()),
    }
}

/// How many folders are flushed at once after a batch's renames.
const PARALLEL_DIR_SYNCS: usize = 16;

/// Flushes every folder of `dirs`, several at once: each `fsync` mostly
/// waits for the disk, and waits that overlap cost about one. After a
/// 10,000-secret apply into 100 meshes on this project's VM, the folders
/// flushed one after another took 21–330 ms, 16 at a time 7–19 ms (one run
/// in a busy moment of the shared disk: 172 ms). The first failure is
/// returned, with its folder.
fn sync_dirs<'a>(dirs: &[&'a Path]) -> Result<(), (&'a Path, io::Error)> {
    if dirs.len() <= 1 {
        return dirs
            .iter()
            .try_for_each(|dir| sync_dir(dir).map_err(|e| (*dir, e)));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: Mutex<Option<(&Path, io::Error)>> = Mutex::new(None);
    std::thread::scope(|threads| {
        for _ in 0..dirs.len().min(PARALLEL_DIR_SYNCS) {
            threads.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(dir) = dirs.get(i) else { break };
                if let Err(e) = sync_dir(dir) {
                    failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert((*dir, e));
                }
            });
        }
    });
    match failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// Creates `dir` if missing and sweeps it (once per process); returns the
/// file system it is on.
fn prepare_folder(dir: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::create_dir_all(dir)?;
    sweep_once(dir);
    Ok(fs::metadata(dir)?.dev())
}

/// Raises the soft limit on open files so that `files` more fit, up to the
/// hard limit. Best effort: where it cannot be raised, staging fails with
/// "too many open files" before anything is replaced.
fn raise_open_files_limit(files: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // What a process has open besides the batch: standard streams, the
    // store's handles, rayon's and the allocator's own.
    const HEADROOM: u64 = 256;
    let want = files as u64 + HEADROOM;
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|current| current < want) {
        let raised = limit.maximum.map_or(want, |hard| hard.min(want));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        );
    }
}

/// A batch of writes failed.
#[derive(Debug)]
pub struct BatchError {
    /// The file (or folder) it failed on.
    pub path: PathBuf,
    /// How many files had been renamed into place before it (0: the store is
    /// unchanged).
    pub renamed: usize,
    /// Why.
    pub source: io::Error,
}

/// A temporary file with `bytes` and `mode` in `path`'s folder (which
/// exists and has been swept), locked, not yet flushed.
fn stage_unsynced(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    prefix: &str,
) -> io::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(parent(path))?;
    let _ = tmp.as_file().lock();
    set_mode(tmp.as_file(), mode)?;
    tmp.write_all(bytes)?;
    Ok(tmp)
}

/// `.meshseal-<pid>-`: the start of this process's temporary file names.
fn temp_prefix() -> String {
    format!("{TEMP_PREFIX}{}-", std::process::id())
}

/// A durable temporary file with `bytes` and `mode`, in `path`'s folder.
fn stage(path: &Path, bytes: &[u8], mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    sweep_once(dir);
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    // Held until the file is closed after its rename: a sweep by another
    // process sees a write in progress.
    let _ = tmp.as_file().lock();
    set_mode(tmp.as_file(), mode)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Removes `path` and makes the removal durable.
pub fn remove(path: &Path) -> io::Result<()> {
    sweep_once(parent(path));
    fs::remove_file(path)?;
    sync_dir(parent(path))
}

/// Whether a file name has the shape of one of our temporary files.
pub fn is_temp_name(name: &str) -> bool {
    name.len() > TEMP_PREFIX.len() + TEMP_SUFFIX.len()
        && name.starts_with(TEMP_PREFIX)
        && name.ends_with(TEMP_SUFFIX)
}

/// The process id in a temporary file's name (`.meshseal-<pid>-<random>.tmp`),
/// if it has one. Names of older versions carry none.
pub fn writer_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let (digits, _) = rest.split_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a temporary file named `name`, last modified at `modified` (when
/// known), was left behind by a writer that is gone, rather than being a write
/// in progress. Files of this process are always in progress. Otherwise the
/// writer is looked up in `/proc` where there is one; a name without a pid,
/// or a system without `/proc`, falls back to [`ABANDONED_AFTER`].
pub fn is_abandoned(name: &str, modified: Option<SystemTime>) -> bool {
    let old = modified
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > ABANDONED_AFTER);
    match writer_pid(name) {
        Some(pid) if pid == std::process::id() => false,
        Some(pid) if Path::new("/proc/self").is_dir() => {
            old || !Path::new("/proc").join(pid.to_string()).exists()
        }
        _ => old,
    }
}

/// Whether the temporary file at `path` (named `name`, last modified at
/// `modified`) was left behind: nobody holds its lock. Where the lock cannot
/// be tested, [`is_abandoned`] decides from the name and the age.
pub fn is_abandoned_file(path: &Path, name: &str, modified: Option<SystemTime>) -> bool {
    let locked = open_no_follow(path).map(|f| match f.try_lock() {
        Ok(()) => Some(false),
        Err(fs::TryLockError::WouldBlock) => Some(true),
        Err(fs::TryLockError::Error(_)) => None,
    });
    match locked {
        Ok(Some(held)) => !held,
        _ => is_abandoned(name, modified),
    }
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Removes the abandoned temporary files (see [`is_abandoned_file`]) directly in
/// `dir`, returning their names. Only regular files with our names are
/// touched; folders, links and other files are left alone.
pub fn sweep(dir: &Path) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_temp_name(&name) {
            continue;
        }
        // `DirEntry::metadata` does not follow links.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !is_abandoned_file(&entry.path(), &name, meta.modified().ok()) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed.push(name),
            // Another process swept it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Sweeps `dir` the first time this process writes there. Best effort: a
/// folder that cannot be swept is no reason to fail the write. The lock is
/// held during the sweep, so no other thread stages a file meanwhile (their
/// files would be spared anyway: they carry this process's id).
fn sweep_once(dir: &Path) {
    let mut swept = SWEPT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if swept.insert(dir.to_path_buf()) {
        let _ = sweep(dir);
    }
}

/// The folder a file is in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
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
    fn a_batch_replaces_every_file_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("x/a");
        let b = dir.path().join("y/b");
        write(&a, b"old", 0o644).unwrap();
        write_batch(&[(a.clone(), b"new-a"), (b.clone(), b"new-b")], 0o644).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new-a");
        assert_eq!(fs::read(&b).unwrap(), b"new-b");
        for d in ["x", "y"] {
            let names: Vec<_> = fs::read_dir(dir.path().join(d)).unwrap().collect();
            assert_eq!(names.len(), 1, "a temp file stayed in {d}");
        }
    }

    #[test]
    fn a_batch_renames_in_its_order_whatever_the_staging_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        write(&a, b"old", 0o644).unwrap();
        // A folder that is not empty where the second file goes: its rename
        // fails, after the first one's.
        let b = dir.path().join("b");
        fs::create_dir(&b).unwrap();
        fs::write(b.join("inside"), b"").unwrap();
        let mut batch = Batch::new(0o644, 2);
        batch.stage(1, &b, b"new-b").unwrap();
        batch.stage(0, &a, b"new-a").unwrap();
        let err = batch.commit().unwrap_err();
        assert_eq!((err.path.as_path(), err.renamed), (b.as_path(), 1));
        assert_eq!(fs::read(&a).unwrap(), b"new-a");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "a temp file stayed");
    }

    /// A large batch renames two folders' files at once: a failed rename
    /// stops both, and the count it gives is what was replaced.
    #[test]
    fn a_failed_rename_in_a_large_batch_says_how_many_were_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let folders = ["a", "b", "c", "d"];
        let targets: Vec<PathBuf> = (0..PARALLEL_RENAMES_MIN * 2)
            .map(|i| dir.path().join(folders[i % 4]).join(format!("f{i}")))
            .collect();
        // A folder that is not empty where one file of "b" goes.
        let blocked = &targets[PARALLEL_RENAMES_MIN + 1];
        fs::create_dir_all(blocked).unwrap();
        fs::write(blocked.join("inside"), b"").unwrap();
        let items: Vec<(PathBuf, &[u8])> =
            targets.iter().map(|t| (t.clone(), &b"new"[..])).collect();
        let err = write_batch(&items, 0o644).unwrap_err();
        assert_eq!(&err.path, blocked);
        let replaced = targets
            .iter()
            .filter(|t| fs::read(t).is_ok_and(|b| b == b"new"))
            .count();
        assert_eq!(err.renamed, replaced);
        // Folder "b"'s files before the failed one are renamed, in order.
        for t in targets
            .iter()
            .skip(1)
            .step_by(4)
            .take(PARALLEL_RENAMES_MIN / 4)
        {
            assert_eq!(fs::read(t).unwrap(), b"new", "{}", t.display());
        }
        for d in folders {
            let temps = fs::read_dir(dir.path().join(d))
                .unwrap()
                .flatten()
                .filter(|e| is_temp_name(&e.file_name().to_string_lossy()))
                .count();
            assert_eq!(temps, 0, "a temp file stayed in {d}");
        }
    }

    #[test]
    fn a_batch_dropped_before_its_commit_replaces_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        write(&a, b"old", 0o644).unwrap();
        let mut batch = Batch::new(0o644, 2);
        batch.stage(0, &a, b"new").unwrap();
        batch.stage(1, &dir.path().join("x/b"), b"new").unwrap();
        drop(batch);
        assert_eq!(fs::read(&a).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path().join("x")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_batch_that_cannot_stage_one_file_replaces_none() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        write(&a, b"old", 0o644).unwrap();
        // A folder where the second file's folder should be: staging fails.
        fs::write(dir.path().join("blocker"), b"").unwrap();
        let b = dir.path().join("blocker").join("b");
        let err = write_batch(&[(a.clone(), b"new"), (b, b"x")], 0o644).unwrap_err();
        assert_eq!(err.renamed, 0);
        assert_eq!(fs::read(&a).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// Regression: a batch holds every temporary file open until its
    /// rename, and an apply of more than about 1,000 secrets failed with
    /// "too many open files" under the usual soft limit of 1,024. Run in a
    /// child process of its own, since the limit is the whole process's.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_batch_larger_than_the_soft_open_files_limit_is_written() {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        const FILES: usize = 300;
        if let Some(dir) = std::env::var_os("MESHSEAL_TEST_BATCH_DIR") {
            let hard = getrlimit(Resource::Nofile).maximum;
            let low = Rlimit {
                current: Some(64),
                maximum: hard,
            };
            setrlimit(Resource::Nofile, low).unwrap();
            let dir = PathBuf::from(dir);
            let items: Vec<(PathBuf, &[u8])> = (0..FILES)
                .map(|i| (dir.join(format!("d{}/f{i}", i % 3)), &b"x"[..]))
                .collect();
            write_batch(&items, 0o600).unwrap();
            return;
        }
        if getrlimit(Resource::Nofile)
            .maximum
            .is_some_and(|hard| hard < FILES as u64 + 256)
        {
            eprintln!("SKIPPED: the hard limit on open files is below {FILES} + 256");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "atomic::tests::a_batch_larger_than_the_soft_open_files_limit_is_written",
                "--nocapture",
            ])
            .env("MESHSEAL_TEST_BATCH_DIR", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the batch failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let written: usize = (0..3)
            .map(|d| {
                fs::read_dir(dir.path().join(format!("d{d}")))
                    .unwrap()
                    .count()
            })
            .sum();
        assert_eq!(written, FILES);
    }

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

    #[test]
    fn temporary_names_carry_the_writer_pid() {
        let name = format!("{TEMP_PREFIX}{}-Ab12Cd{TEMP_SUFFIX}", std::process::id());
        assert!(is_temp_name(&name));
        assert_eq!(writer_pid(&name), Some(std::process::id()));
        assert_eq!(writer_pid(".meshseal-Ab12Cd.tmp"), None);
        assert_eq!(writer_pid(".meshseal--x.tmp"), None);
        assert!(!is_temp_name(".meshseal-.tmp"));
        assert!(!is_temp_name("db.age"));
        // A file of this process is a write in progress, however old.
        assert!(!is_abandoned(&name, Some(SystemTime::UNIX_EPOCH)));
    }

    fn leftover(dir: &Path, name: &str, age: Duration) -> PathBuf {
        let p = dir.join(name);
        let f = File::create(&p).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
        p
    }

    /// The pid of a process that has exited and been reaped.
    #[cfg(target_os = "linux")]
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sweep_removes_leftovers_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let fresh = Duration::ZERO;
        let dead = leftover(d, &format!(".meshseal-{}-aaaaaa.tmp", dead_pid()), fresh);
        let legacy_old = leftover(d, ".meshseal-bbbbbb.tmp", 2 * ABANDONED_AFTER);
        let own = leftover(
            d,
            &format!(".meshseal-{}-cccccc.tmp", std::process::id()),
            fresh,
        );
        let live = leftover(
            d,
            &format!(
                ".meshseal-{}-dddddd.tmp",
                std::os::unix::process::parent_id()
            ),
            fresh,
        );
        let legacy_fresh = leftover(d, ".meshseal-eeeeee.tmp", fresh);
        let other = leftover(d, ".other-ffffff.tmp", 2 * ABANDONED_AFTER);
        let folder = d.join(format!(".meshseal-{}-gggggg.tmp", dead_pid()));
        fs::create_dir(&folder).unwrap();
        let link = d.join(format!(".meshseal-{}-hhhhhh.tmp", dead_pid()));
        std::os::unix::fs::symlink(&other, &link).unwrap();

        // Writers at work hold their file's lock (a second open file
        // description conflicts even within one process).
        let held: Vec<File> = [&own, &live]
            .into_iter()
            .map(|p| {
                let f = File::open(p).unwrap();
                f.lock().unwrap();
                f
            })
            .collect();
        let mut removed = sweep(d).unwrap();
        removed.sort();
        // A file of an older meshseal (no pid in its name) that nobody
        // holds is a leftover however fresh.
        let mut expected = vec![
            file_name(&dead),
            file_name(&legacy_old),
            file_name(&legacy_fresh),
        ];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!dead.exists() && !legacy_old.exists());
        for kept in [&own, &live, &other, &folder] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(fs::symlink_metadata(&link).is_ok());
        // A fresh file named after a live process but locked by nobody is
        // a leftover: the lock decides, not the pid.
        drop(held);
        // A process another test forks in this moment shares the open file
        // descriptions (and so their locks) until it execs: ask again.
        let mut removed = Vec::new();
        for _ in 0..100 {
            removed.extend(sweep(d).unwrap());
            if removed.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!own.exists() && !live.exists() && other.exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_first_write_into_a_folder_sweeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("secrets");
        fs::create_dir(&d).unwrap();
        let dead = leftover(
            &d,
            &format!(".meshseal-{}-aaaaaa.tmp", dead_pid()),
            Duration::ZERO,
        );
        write(&d.join("x.age"), b"x", 0o644).unwrap();
        assert!(!dead.exists());
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.age"]);
    }

    fn file_name(p: &Path) -> String {
        p.file_name().unwrap().to_str().unwrap().to_string()
    }
}
