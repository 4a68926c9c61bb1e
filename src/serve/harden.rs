//! The watcher holds every secret in clear in its memory: keep that memory
//! out of core dumps, out of other users' `ptrace` and `/proc/<pid>/mem`,
//! and out of swap.
//!
//! - `PR_SET_DUMPABLE` 0: no core file (SIGQUIT, a crash), and only root
//!   may attach to or read the process.
//! - `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: nothing is paged
//!   out to a swap device; a page is locked when it is first touched, not
//!   populated when it is mapped (see `lock_memory`). Only where the
//!   memlock limit allows the whole process (root, `CAP_IPC_LOCK`, or
//!   `LimitMEMLOCK=infinity`): with a small limit, `MCL_FUTURE` would make
//!   later allocations fail, which is worse than swap. Where memory cannot
//!   be locked, a warning says how to allow it.

use rustix::mm::MlockAllFlags;
use tracing::{info, warn};

/// A memlock limit below this cannot hold a watcher's memory.
const MIN_MEMLOCK_BYTES: u64 = 1 << 30;

/// What [`harden`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// The process is not dumpable.
    pub not_dumpable: bool,
    /// All memory, present and future, is locked.
    pub memory_locked: bool,
}

/// Makes the process non-dumpable and locks its memory where allowed,
/// logging what could not be done. Never fails: a watcher that cannot lock
/// its memory still serves, with a warning.
pub fn harden() -> Hardening {
    let not_dumpable = match rustix::process::set_dumpable_behavior(
        rustix::process::DumpableBehavior::NotDumpable,
    ) {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "cannot make the process non-dumpable: a core dump could hold secrets");
            false
        }
    };
    let memory_locked = lock_memory();
    info!(not_dumpable, memory_locked, "process hardened");
    Hardening {
        not_dumpable,
        memory_locked,
    }
}

fn lock_memory() -> bool {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    let unlimited_or_large = limit.current.is_none_or(|l| l >= MIN_MEMLOCK_BYTES);
    // Root may exceed the limit (CAP_IPC_LOCK); others may not.
    let root = rustix::process::geteuid().is_root();
    if !(unlimited_or_large || root) {
        warn!(
            limit_bytes = limit.current.unwrap_or(0),
            "memory not locked: the memlock limit is too small, so secrets may reach swap; raise it (systemd: LimitMEMLOCK=infinity, or grant CAP_IPC_LOCK), or run without swap"
        );
        return false;
    }
    let flags = MlockAllFlags::CURRENT | MlockAllFlags::FUTURE;
    // ONFAULT: a page is locked when first touched, not populated when
    // mapped. Every page that ever held a secret was touched, so it is
    // locked just the same; what is never touched (most of a thread's
    // stack, the unused capacity of buffers, e.g. 16 KiB of write buffer
    // per HTTP/2 connection) takes no memory. Kernels before 4.4 refuse
    // the flag: then every mapping is populated, as before.
    let locked = rustix::mm::mlockall(flags | MlockAllFlags::ONFAULT).or_else(|e| {
        if e == rustix::io::Errno::INVAL {
            rustix::mm::mlockall(flags)
        } else {
            Err(e)
        }
    });
    match locked {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "memory not locked: secrets may reach swap; grant CAP_IPC_LOCK or raise the memlock limit");
            false
        }
    }
}
