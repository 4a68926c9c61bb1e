//! Wall and CPU time of the commands the bench runs.

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
