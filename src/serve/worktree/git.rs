//! Running git for a listing: in its own process, read as it prints, bounded
//! in time and size, never writing into the repository.

use std::io::{self, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::git::GitError;

use super::{Listing, WorktreeError, GIT_TIMEOUT, MAX_LISTING_BYTES};

/// What a listing's reader thread sends: the listing parsed from git's
/// stdout as it came, whether stdout went past the bound, and stderr.
type ListingOutput = (Result<Listing, WorktreeError>, bool, io::Result<Vec<u8>>);

/// git listing a tree, under way.
pub struct PendingListing {
    child: Option<Child>,
    output: mpsc::Receiver<ListingOutput>,
    reader: Option<thread::JoinHandle<()>>,
    started: Instant,
}

impl PendingListing {
    /// Starts `git -C root args`, its output parsed as it comes by a thread
    /// of its own (at most [`MAX_LISTING_BYTES`]; never held whole).
    pub(super) fn spawn(
        root: &Path,
        args: &[&str],
        capacity: usize,
    ) -> Result<PendingListing, WorktreeError> {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(root).args(args);
        // The tree's own repository, whatever the watcher's environment
        // says; and git only reads (no index refresh written into
        // git-sync's repository, no prompt, no fetch of missing objects).
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_COMMON_DIR",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_NAMESPACE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_NO_LAZY_FETCH", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| WorktreeError::Git(GitError::Spawn(e)))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (tx, output) = mpsc::channel();
        let reader = thread::spawn(move || {
            // stdout first, then dropped: a git cut off at the bound (or
            // by a parse error) gets EPIPE and ends, so stderr ends too.
            let (listing, over) = match stdout {
                Some(out) => {
                    let mut bounded = BufReader::new(out.take(MAX_LISTING_BYTES + 1));
                    let listing = Listing::parse(&mut bounded, capacity);
                    (listing, bounded.into_inner().limit() == 0)
                }
                None => (
                    Err(WorktreeError::Git(GitError::Protocol("ls-files"))),
                    false,
                ),
            };
            let mut err = Vec::new();
            let err = match stderr {
                Some(e) => e.take(64 << 10).read_to_end(&mut err).map(|_| err),
                None => Ok(err),
            };
            let _ = tx.send((listing, over, err));
        });
        Ok(PendingListing {
            child: Some(child),
            output,
            reader: Some(reader),
            started: Instant::now(),
        })
    }

    /// git's listing, once git has ended (killed after [`GIT_TIMEOUT`]).
    pub fn wait(mut self) -> Result<Listing, WorktreeError> {
        let left = GIT_TIMEOUT.saturating_sub(self.started.elapsed());
        let Ok((listing, over, err)) = self.output.recv_timeout(left) else {
            // Dropping `self` kills git.
            return Err(WorktreeError::TimedOut);
        };
        let mut child = self.child.take().ok_or(WorktreeError::TimedOut)?;
        let status = child
            .wait()
            .map_err(|e| WorktreeError::Git(GitError::Spawn(e)))?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if over {
            return Err(WorktreeError::TooLarge);
        }
        match listing {
            // What was read was wrong: git's own end (cut off) says less.
            Err(
                e @ (WorktreeError::Unmerged { .. } | WorktreeError::Git(GitError::Protocol(_))),
            ) => Err(e),
            _ if !status.success() => Err(WorktreeError::Git(GitError::Failed {
                command: "ls-files".to_string(),
                // The problem; git's advice that follows is the hint's.
                stderr: String::from_utf8_lossy(&err.unwrap_or_default())
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            })),
            listing => listing,
        }
    }
}

impl Drop for PendingListing {
    /// A listing given up on (or timed out) leaves no git behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
