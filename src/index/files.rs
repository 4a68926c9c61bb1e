//! Reading, hashing and decrypting the files of one update, in parallel.
//!
//! A file is read and hashed first; only bytes the index has not seen are
//! decrypted (a rescan after an event overflow costs reads, not X25519). The
//! results are folded into the next generation a slice at a time.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{Entry, Index, Secret, UpdateKind, UpdateStats};
use crate::identity::Identities;
use crate::problem::Problem;
use crate::scope::StorePath;
use crate::store::{layout, Store};

/// What the index knows about one file's current bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct FileState {
    sha256: [u8; 32],
    /// Whether these bytes loaded (false: a problem is recorded).
    good: bool,
}

/// The outcome of reading and (maybe) decrypting one file.
enum FileResult {
    /// The bytes equal what the index has: nothing to do.
    Unchanged,
    /// New bytes that loaded.
    Loaded(Arc<Secret>),
    /// New bytes (or an unreadable file) that failed.
    Failed(Problem, Option<[u8; 32]>),
    /// The file is not there any more (or is not a file).
    Gone,
}

impl Index {
    /// What the index knows about the bytes of the file at `rel`.
    pub(super) fn file_state(&self, rel: &Path) -> Option<FileState> {
        if let Some(sha256) = self.failed.get(rel) {
            return Some(FileState {
                sha256: *sha256,
                good: false,
            });
        }
        let StorePath::Secret(id) = StorePath::classify(rel) else {
            return None;
        };
        self.secrets.get(&id).map(|e| FileState {
            sha256: e.0.file_sha256,
            good: true,
        })
    }

    /// Reads, hashes and where needed decrypts `candidates` in parallel, then
    /// folds the results in, a slice at a time so that the results waiting
    /// to be folded stay small however large the store is.
    pub(super) fn apply(
        &mut self,
        store: &Store,
        identities: &Identities,
        candidates: Vec<PathBuf>,
        retry_failed: bool,
        stats: &mut UpdateStats,
    ) {
        for slice in candidates.chunks(APPLY_SLICE) {
            let this = &*self;
            let results: Vec<FileResult> = slice
                .par_iter()
                .map(|rel| examine(store, identities, rel, this.file_state(rel), retry_failed))
                .collect();
            for (rel, result) in slice.iter().zip(results) {
                self.fold(rel, result, stats);
            }
        }
    }

    fn fold(&mut self, rel: &Path, result: FileResult, stats: &mut UpdateStats) {
        match result {
            FileResult::Unchanged => stats.hashed += 1,
            FileResult::Gone => self.remove_under(rel, stats),
            FileResult::Loaded(secret) => {
                stats.hashed += 1;
                stats.decrypted += 1;
                self.failed.remove(rel);
                self.problems.remove(rel);
                // The cold load names no secret: every one is new, and a
                // list of 100,000 ids would only raise the peak memory.
                if stats.kind != UpdateKind::Cold {
                    stats.changed.push(secret.doc.id.clone());
                }
                self.secrets.insert(Entry(secret));
            }
            FileResult::Failed(problem, sha) => {
                stats.hashed += 1;
                if let Some(sha) = sha {
                    if matches!(StorePath::classify(rel), StorePath::Secret(_)) {
                        stats.decrypted += 1;
                    }
                    self.failed.insert(rel.to_path_buf(), sha);
                }
                let is_new = self.problems.get(rel) != Some(&problem);
                if is_new {
                    stats.new_problems.push(problem.clone());
                }
                self.problems.insert(rel.to_path_buf(), problem);
            }
        }
    }
}

/// How many files are examined in parallel before their results are folded.
const APPLY_SLICE: usize = 4096;

/// Whether a path is a file the index tracks: secrets and stray files in a
/// `secrets/` folder. Recipients, policies and other files are not indexed.
pub(super) fn is_file_like(rel: &Path) -> bool {
    // An atomic write in progress is not a stray file: its rename follows.
    let temp = rel
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(crate::atomic::is_temp_name);
    !temp
        && matches!(
            StorePath::classify(rel),
            StorePath::Secret(_) | StorePath::StraySecret { .. }
        )
}

/// Reads one file and decides what it means for the index.
fn examine(
    store: &Store,
    identities: &Identities,
    rel: &Path,
    known: Option<FileState>,
    retry_failed: bool,
) -> FileResult {
    let what = StorePath::classify(rel);
    let id = match what {
        StorePath::Secret(id) => id,
        what @ StorePath::StraySecret { .. } => {
            if fs::symlink_metadata(store.root().join(rel)).is_err() {
                return FileResult::Gone;
            }
            let problem = layout::stray(&what).expect("a stray secret is a layout problem");
            return FileResult::Failed(Problem::at(rel, &problem), None);
        }
        // Recipients, policies and other files are not the index's business.
        _ => return FileResult::Unchanged,
    };
    let bytes = match store.read_file(rel, store.config().max_file_bytes()) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return FileResult::Gone,
        Err(e) => return FileResult::Failed(Problem::at(rel, &e), None),
    };
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    if let Some(k) = known {
        if k.sha256 == sha && (k.good || !retry_failed) {
            return FileResult::Unchanged;
        }
    }
    match store.open_bytes(&id, &bytes, identities) {
        Ok(loaded) => FileResult::Loaded(Arc::new(Secret {
            recipients_fingerprint: loaded.header.metadata.map(|m| m.recipients_fingerprint),
            doc: loaded.doc,
            file_sha256: sha,
        })),
        Err(e) => FileResult::Failed(Problem::from(e), Some(sha)),
    }
}
