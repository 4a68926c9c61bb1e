//! The API rows' client on one CPU and every server on another.
//!
//! A loopback round trip between two threads on the same CPU is a direct
//! switch (~5 µs here); across CPUs it is an inter-processor wake-up, which
//! in this VM costs 30 µs and more. Left to the scheduler, the echo floor's
//! two threads (both in this process) sometimes shared a CPU while the
//! watcher's did not: one run read the floor at 5 µs and meshseal at 79.
//! Pinned, meshseal, the floor and the HTTP reference all pay the same
//! cross-CPU wake-up, which is what a client beside the watcher pays.

use rustix::process::Pid;
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// The client's CPU and the servers', if this process may run on two.
pub fn two_cpus() -> Option<(usize, usize)> {
    let allowed = sched_getaffinity(None).ok()?;
    let mut cpus = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c));
    Some((cpus.next()?, cpus.next()?))
}

/// A thread pinned to one CPU; its former CPUs come back on drop.
pub struct Pinned {
    thread: Option<Pid>,
    former: CpuSet,
}

/// Only `cpu`.
fn only(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu);
    set
}

impl Pinned {
    /// Pins thread `tid` (a process id pins its main thread; `None`: the
    /// calling thread) to `cpu`. `None` if the system refuses.
    pub fn to(tid: Option<u32>, cpu: usize) -> Option<Pinned> {
        let thread = match tid {
            Some(t) => Some(Pid::from_raw(i32::try_from(t).ok()?)?),
            None => None,
        };
        let former = sched_getaffinity(thread).ok()?;
        sched_setaffinity(thread, &only(cpu)).ok()?;
        Some(Pinned { thread, former })
    }

    /// Pins the calling thread for good (a server thread of the bench,
    /// which lives as long as the run); `None`: leaves it be.
    pub fn this_thread_for_good(cpu: Option<usize>) {
        if let Some(cpu) = cpu {
            let _ = sched_setaffinity(None, &only(cpu));
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = sched_setaffinity(self.thread, &self.former);
    }
}
