//! Wall and CPU time of the commands the bench runs.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn timed(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().expect("run command");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// Runs `cmd` to success: its wall time and its CPU time.
pub fn timed_cpu(cmd: Command) -> (Duration, Duration) {
    let before = cpu_time(libc::RUSAGE_CHILDREN);
    let wall = timed(cmd);
    (wall, cpu_time(libc::RUSAGE_CHILDREN) - before)
}

/// User + system CPU time of this process (`RUSAGE_SELF`) or of its waited-for
/// children (`RUSAGE_CHILDREN`).
pub fn cpu_time(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the buffer we own and does
    // nothing else; a zeroed rusage is a valid value either way.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Reads every file of a store (its `.git` aside) and the programs about to
/// run, discarding the bytes, so that a cold load is timed from the page
/// cache, the same for meshseal and the floor. This VM evicts clean pages
/// without memory pressure (of the 41,059 files of a signed 10,000 store,
/// 14,961 were out of the cache a minute after a load, and 3,355 more 30 s
/// later, with 23 GB free): without this, a load paid for whatever number of
/// disk reads the eviction left it, and a signed load, which reads twice as
/// many files, paid twice.
pub fn warm_page_cache(store: &Path, programs: &[&Path]) {
    let files = walkdir::WalkDir::new(store)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path);
    let mut buf = vec![0u8; 1 << 16];
    for path in files.chain(programs.iter().map(|p| p.to_path_buf())) {
        if let Ok(mut f) = std::fs::File::open(&path) {
            while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}
