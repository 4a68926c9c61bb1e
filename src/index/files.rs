//! Reading, hashing and decrypting the files of one update, in parallel.
//!
//! A file is read and hashed first; only bytes the index has not seen are
//! decrypted (a rescan after an event overflow costs reads, not X25519). The
//! results are folded into the next generation a slice at a time.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::signatures::{refusal_slot, withheld_problem, Basis, Refused, Signatures};
use super::{Entry, Index, Secret, UpdateKind, UpdateStats};
use crate::envelope;
use crate::identity::Identities;
use crate::problem::Problem;
use crate::scope::{SecretId, StorePath};
use crate::signing::sshsig::MAX_SIGNATURE_BYTES;
use crate::signing::{self, Deferred};
use crate::store::{layout, LoadError, Loaded, Store};
use crate::writers::history::Seen;
use crate::writers::{Checked, Refusal, SecretCheck};

/// The current bytes of a file that failed to load or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failed {
    sha256: [u8; 32],
    /// With a trust root, what the verdict on them rested on.
    basis: Option<Basis>,
}

/// What the index knows about one file's current bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct FileState {
    sha256: [u8; 32],
    /// Whether these bytes loaded (false: a problem is recorded).
    good: bool,
    /// With a trust root, what their verdict rested on (`None`: not judged).
    basis: Option<Basis>,
}

/// The outcome of reading and (maybe) decrypting one file.
enum FileResult {
    /// The bytes (and, with a trust root, their verdict's basis) equal what
    /// the index has: nothing to do.
    Unchanged,
    /// New bytes, or a new verdict, that loaded.
    Loaded {
        secret: Arc<Secret>,
        /// Whether the file was decrypted (not: the document of the same
        /// bytes was reused).
        decrypted: bool,
        /// Whether the same bytes were already served (only their verdict
        /// is new).
        same_bytes: bool,
    },
    /// New bytes (or an unreadable file) that failed.
    Failed(Problem, Option<Failed>),
    /// With a trust root: bytes whose signature, binding or generation is
    /// refused (they are not decrypted).
    Refused(Refusal, Failed),
    /// The file is not there any more (or is not a file).
    Gone,
}

impl Index {
    /// What the index knows about the bytes of `id`'s file at `rel`.
    pub(super) fn file_state(&self, rel: &Path, id: &SecretId) -> Option<FileState> {
        if let Some(failed) = self.failed.get(rel) {
            return Some(FileState {
                sha256: failed.sha256,
                good: false,
                basis: failed.basis,
            });
        }
        self.secrets.get(id).map(|e| FileState {
            sha256: e.0.file_sha256,
            good: true,
            basis: e.0.signed.as_ref().map(|s| s.basis),
        })
    }

    /// Reads, hashes and where needed verifies and decrypts `candidates` (each
    /// with what its path is) in parallel, then folds the results in, a slice
    /// at a time so that the results waiting to be folded stay small however
    /// large the store is.
    pub(super) fn apply(
        &mut self,
        store: &Store,
        identities: &Identities,
        candidates: Vec<(PathBuf, StorePath)>,
        retry_failed: bool,
        stats: &mut UpdateStats,
    ) {
        // An index that holds no file yet (a cold load) has nothing to look
        // up for any of them: the candidates are distinct paths, so neither
        // do the slices folded before this one. Its examination then reads
        // nothing of the index, so each slice is folded in while the next
        // is examined: no core waits on the fold.
        let fresh = self.secrets.is_empty()
            && self.failed.is_empty()
            && self.withheld.is_empty()
            && self.seen.is_empty();
        let signatures = self.signatures.clone();
        let mut candidates = candidates.into_iter();
        let mut next_slice = || -> (Vec<PathBuf>, Vec<StorePath>) {
            // What each path is moves into its examination: classified once.
            candidates.by_ref().take(APPLY_SLICE).unzip()
        };
        if fresh {
            let known = Known {
                index: None,
                signatures: signatures.as_deref(),
            };
            let mut folding: Option<(Vec<PathBuf>, Vec<FileResult>)> = None;
            loop {
                let (slice, whats) = next_slice();
                let (_, results) = rayon::join(
                    || {
                        if let Some((rel, results)) = folding.take() {
                            self.fold_all(&rel, results, stats);
                        }
                    },
                    || examine_slice(store, identities, known, &slice, whats, retry_failed),
                );
                if slice.is_empty() {
                    break;
                }
                folding = Some((slice, results));
            }
            return;
        }
        loop {
            let (slice, whats) = next_slice();
            if slice.is_empty() {
                break;
            }
            let known = Known {
                index: Some(&*self),
                signatures: signatures.as_deref(),
            };
            let results = examine_slice(store, identities, known, &slice, whats, retry_failed);
            self.fold_all(&slice, results, stats);
        }
    }

    fn fold_all(&mut self, slice: &[PathBuf], results: Vec<FileResult>, stats: &mut UpdateStats) {
        for (rel, result) in slice.iter().zip(results) {
            self.fold(rel, result, stats);
        }
    }

    fn fold(&mut self, rel: &Path, result: FileResult, stats: &mut UpdateStats) {
        match result {
            FileResult::Unchanged => stats.hashed += 1,
            FileResult::Gone => self.remove_under(rel, stats),
            FileResult::Loaded {
                secret,
                decrypted,
                same_bytes,
            } => {
                stats.hashed += 1;
                if decrypted {
                    stats.decrypted += 1;
                }
                self.failed.remove(rel);
                self.problems.remove(rel);
                self.refused.remove(rel);
                self.withheld.remove(rel);
                if let Some(signed) = &secret.signed {
                    self.record_seen(rel, signed.verdict.generation, secret.file_sha256);
                }
                // The cold load names no secret: every one is new, and a
                // list of 100,000 ids would only raise the peak memory.
                if stats.kind != UpdateKind::Cold && !same_bytes {
                    stats.changed.push(secret.doc.id.clone());
                }
                self.secrets.insert(Entry(secret));
            }
            FileResult::Failed(problem, failed) => {
                stats.hashed += 1;
                if let Some(failed) = failed {
                    if let StorePath::Secret(id) = StorePath::classify(rel) {
                        stats.decrypted += 1;
                        self.drop_unverified(&id);
                    }
                    self.failed.insert(rel.to_path_buf(), failed);
                }
                self.refused.remove(rel);
                let is_new = self.problems.get(rel) != Some(&problem);
                if is_new {
                    stats.new_problems.push(problem.clone());
                }
                self.problems.insert(rel.to_path_buf(), problem);
            }
            FileResult::Refused(refusal, failed) => {
                stats.hashed += 1;
                self.failed.insert(rel.to_path_buf(), failed);
                if let StorePath::Secret(id) = StorePath::classify(rel) {
                    self.refuse(rel, &id, &refusal, stats);
                }
            }
        }
    }

    /// Under a trust root, a cached entry that was never verified is no
    /// last good version: it goes when its file is not accepted.
    fn drop_unverified(&mut self, id: &SecretId) {
        if self.signatures.is_some() && self.get(id).is_some_and(|s| s.signed.is_none()) {
            self.secrets.remove(id);
        }
    }

    /// Records a refused version: the last good one stays served, unless
    /// its writer was removed from `writers.txt` (then it is withheld until
    /// re-signed).
    fn refuse(&mut self, rel: &Path, id: &SecretId, refusal: &Refusal, stats: &mut UpdateStats) {
        self.drop_unverified(id);
        let signatures = self.signatures.clone().expect("only a trust root refuses");
        let served = self.get(id).cloned();
        let last_good = served.clone().or_else(|| self.withheld.get(rel).cloned());
        let removed = last_good
            .as_ref()
            .and_then(|s| s.signed.as_ref())
            .filter(|signed| signatures.writer_removed(&id.scope, signed));
        let problem = match (removed, &last_good) {
            (Some(signed), Some(last)) => {
                let problem = withheld_problem(id, refusal, signed);
                if self.secrets.remove(id).is_some() {
                    stats.removed.push(id.clone());
                }
                self.withheld.insert(rel.to_path_buf(), Arc::clone(last));
                problem
            }
            _ => {
                // A version withheld while its writer was not listed is
                // good again once they are.
                if let (None, Some(last)) = (&served, self.withheld.remove(rel)) {
                    stats.changed.push(id.clone());
                    self.secrets.insert(Entry(last));
                }
                Problem::at(rel, refusal)
            }
        };
        if !self.secrets.contains(id) {
            stats.unserved.insert(rel.to_path_buf());
        }
        let is_new = self.problems.get(rel) != Some(&problem);
        if is_new {
            stats.new_problems.push(problem.clone());
            if let Some(slot) = refusal_slot(refusal) {
                self.counters.refusals[slot] += 1;
            }
        }
        let since = self
            .refused
            .get(rel)
            .map_or_else(SystemTime::now, |r| r.since);
        self.refused.insert(
            rel.to_path_buf(),
            Arc::new(Refused {
                id: id.clone(),
                problem: problem.clone(),
                since,
                served: self.secrets.contains(id),
            }),
        );
        self.problems.insert(rel.to_path_buf(), problem);
    }

    /// Records a verified version in the path's rollback record.
    fn record_seen(&mut self, rel: &Path, generation: u64, sha256: [u8; 32]) {
        if self.seen.record(rel, generation, sha256) {
            self.seen_changes += 1;
        }
    }
}

/// The index an update starts from, as the files' examination sees it.
#[derive(Clone, Copy)]
struct Known<'i> {
    /// `None`: it holds none of the files (see [`Index::apply`]), so
    /// nothing needs looking up.
    index: Option<&'i Index>,
    /// Its trust root's verdicts, with one.
    signatures: Option<&'i Signatures>,
}

impl<'i> Known<'i> {
    fn file_state(&self, rel: &Path, id: &SecretId) -> Option<FileState> {
        self.index?.file_state(rel, id)
    }

    /// The served or withheld version of `id` whose file has bytes `sha`.
    fn same_bytes(
        &self,
        rel: &Path,
        id: &SecretId,
        sha: &[u8; 32],
    ) -> Option<(&'i Arc<Secret>, bool)> {
        let index = self.index?;
        if let Some(served) = index.get(id).filter(|s| &s.file_sha256 == sha) {
            return Some((served, true));
        }
        let withheld = index.withheld.get(rel).filter(|s| &s.file_sha256 == sha)?;
        Some((withheld, false))
    }

    fn seen(&self, rel: &Path) -> Option<&'i Seen> {
        self.index?.seen.get(rel)
    }
}

/// Examines a slice of files in parallel (`whats`: what each path is), then
/// verifies their signatures and decrypts what they sign.
fn examine_slice(
    store: &Store,
    identities: &Identities,
    known: Known<'_>,
    slice: &[PathBuf],
    whats: Vec<StorePath>,
    retry_failed: bool,
) -> Vec<FileResult> {
    let examined: Vec<Examined<'_>> = slice
        .par_iter()
        .zip(whats)
        .with_max_len(LEAF_FILES)
        .map(|(rel, what)| examine(store, identities, known, rel, what, retry_failed))
        .collect();
    finish_all(store, identities, known, examined)
}

/// How many files are examined in parallel before their results are folded.
/// A signed slice holds every file's bytes and signature until its batches
/// are verified: 2,048 of them instead of 4,096 took a signed 10,000 load
/// from 7,500 to 7,100 page faults and from 34 to 32 MiB. (The unit tests
/// use slices of 3, so that their stores of a few files are loaded in
/// several slices, each folded beside the next.)
const APPLY_SLICE: usize = if cfg!(test) { 3 } else { 2048 };

/// At most this many files are examined one after another by one task: a
/// slice's last task must not keep one core busy while the others wait
/// (rayon otherwise splits a slice into a few long runs; the last one's
/// tail cost ~20 ms a slice at 10,000, measured with `perf`).
const LEAF_FILES: usize = 8;

/// Whether a path is a file the index tracks: secrets and stray files in a
/// `secrets/` folder. Recipients, policies and other files are not indexed.
pub(super) fn is_file_like(rel: &Path) -> bool {
    is_file_like_as(rel, &StorePath::classify(rel))
}

/// [`is_file_like`] for a path the layout already classified as `what`.
pub(super) fn is_file_like_as(rel: &Path, what: &StorePath) -> bool {
    // An atomic write in progress is not a stray file: its rename follows.
    let temp = rel
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(crate::atomic::is_temp_name);
    !temp && matches!(what, StorePath::Secret(_) | StorePath::StraySecret { .. })
}

/// Reads one file and decides what it means for the index.
fn examine<'i>(
    store: &Store,
    identities: &Identities,
    known_files: Known<'i>,
    rel: &Path,
    what: StorePath,
    retry_failed: bool,
) -> Examined<'i> {
    let id = match what {
        StorePath::Secret(id) => id,
        what @ StorePath::StraySecret { .. } => {
            if fs::symlink_metadata(store.root().join(rel)).is_err() {
                return Examined::Done(FileResult::Gone);
            }
            let problem = layout::stray(&what).expect("a stray secret is a layout problem");
            return Examined::Done(FileResult::Failed(Problem::at(rel, &problem), None));
        }
        // Recipients, policies and other files are not the index's business.
        _ => return Examined::Done(FileResult::Unchanged),
    };
    let bytes = match store.read_file(rel, store.config().max_file_bytes()) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Examined::Done(FileResult::Gone),
        Err(e) => return Examined::Done(FileResult::Failed(Problem::at(rel, &e), None)),
    };
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    let known = known_files.file_state(rel, &id);
    let Some(signatures) = known_files.signatures else {
        if let Some(k) = known {
            if k.sha256 == sha && (k.good || !retry_failed) {
                return Examined::Done(FileResult::Unchanged);
            }
        }
        let opened = store.open_hashed(&id, &bytes, sha, identities);
        return Examined::Done(decrypt(opened, sha, None, None));
    };
    // Verified before it is decrypted: a file no writer signed is never opened.
    let sig = match store.read_file(&id.sig_path(), MAX_SIGNATURE_BYTES) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    };
    let sig_sha = match &sig {
        Ok(sig) => sig.as_deref().map(|s| Sha256::digest(s).into()),
        // An unreadable signature is a state of its own.
        Err(e) => Some(Sha256::digest(format!("unreadable: {e}")).into()),
    };
    let basis = signatures.basis(&id.scope, sig_sha);
    if let Some(k) = known {
        if k.sha256 == sha && k.basis == Some(basis) && (k.good || !retry_failed) {
            return Examined::Done(FileResult::Unchanged);
        }
    }
    let failed = Failed {
        sha256: sha,
        basis: Some(basis),
    };
    let sig = match sig {
        Ok(sig) => sig,
        Err(e) => {
            let refusal = Refusal::BadSignature {
                fingerprint: None,
                reason: format!("cannot read {}: {e}", id.sig_path().display()),
                hint: None,
            };
            return Examined::Done(FileResult::Refused(refusal, failed));
        }
    };
    // Verified in a batch with the slice's other signatures, when it can be.
    let check = sig.map(|sig| signatures.verifier().defer(&id, &bytes, &sig));
    Examined::Pending(Box::new(Pending {
        signatures,
        rel: rel.to_path_buf(),
        id,
        bytes,
        sha,
        basis,
        failed,
        check,
    }))
}

/// A signed file read, its signature's verification to conclude.
struct Pending<'i> {
    /// What judges it (the index's).
    signatures: &'i Signatures,
    rel: PathBuf,
    id: SecretId,
    bytes: Vec<u8>,
    sha: [u8; 32],
    basis: Basis,
    failed: Failed,
    /// Its `.sig`, deferred to a batch or already verified alone; `None`:
    /// there is none.
    check: Option<SecretCheck>,
}

/// What reading a file came to: a result, or a signature to verify first.
/// (Short-lived, a slice at a time: the size of its larger variant is not
/// worth a box a file.)
#[allow(clippy::large_enum_variant)]
enum Examined<'i> {
    Done(FileResult),
    Pending(Box<Pending<'i>>),
}

/// Signatures verified together. From 256 points curve25519-dalek's
/// multiscalar multiplication uses Pippenger's method, cheaper a point the
/// more points there are: 1,024 measured 3% faster than 256 on a signed
/// 10,000 load (1.300 against 1.345 s, medians of 8), and a slice's 2,048
/// make one batch for each core. A failed batch verifies its members alone
/// (a bad signature costs ~1,024 verifications, ~40 ms).
const VERIFY_BATCH: usize = 1024;

/// Verifies the slice's deferred signatures in batches (in parallel), then
/// judges and decrypts what they sign.
fn finish_all(
    store: &Store,
    identities: &Identities,
    index: Known<'_>,
    examined: Vec<Examined<'_>>,
) -> Vec<FileResult> {
    let mut results: Vec<Option<FileResult>> = Vec::with_capacity(examined.len());
    let mut waiting: Vec<(usize, Box<Pending<'_>>, Option<Checked>)> = Vec::new();
    let mut deferred = Vec::new();
    for (i, e) in examined.into_iter().enumerate() {
        match e {
            Examined::Done(r) => results.push(Some(r)),
            Examined::Pending(mut p) => {
                results.push(None);
                match p.check.take() {
                    Some(SecretCheck::Batch(d)) => {
                        deferred.push((waiting.len(), d));
                        waiting.push((i, p, None));
                    }
                    Some(SecretCheck::Alone(alone)) => waiting.push((i, p, Some(alone))),
                    None => waiting.push((i, p, None)),
                }
            }
        }
    }
    // Batches of equal size (at most VERIFY_BATCH), so that none is left
    // to one core at the end.
    let batches = deferred.len().div_ceil(VERIFY_BATCH).max(1);
    let oks: Vec<bool> = deferred
        .par_chunks(deferred.len().div_ceil(batches).max(1))
        .map(|chunk| {
            let batch: Vec<&Deferred> = chunk.iter().map(|(_, d)| d).collect();
            signing::verify_deferred(&batch)
        })
        .collect::<Vec<Vec<bool>>>()
        .concat();
    // Concluded in parallel too: each computes its signer's fingerprint.
    let concluded: Vec<(usize, Checked)> = deferred
        .into_par_iter()
        .zip(oks)
        .map(|((slot, d), ok)| (slot, Checked::concluded(d, ok)))
        .collect();
    for (slot, checked) in concluded {
        waiting[slot].2 = Some(checked);
    }
    let done: Vec<(usize, FileResult)> = waiting
        .into_par_iter()
        .with_max_len(LEAF_FILES)
        .map(|(i, p, checked)| (i, finish(store, identities, index, *p, checked)))
        .collect();
    for (i, r) in done {
        results[i] = Some(r);
    }
    results.into_iter().flatten().collect()
}

/// Judges a signed file (its signature `checked`) and decrypts it.
fn finish(
    store: &Store,
    identities: &Identities,
    index: Known<'_>,
    p: Pending<'_>,
    checked: Option<Checked>,
) -> FileResult {
    let Pending {
        signatures,
        rel,
        id,
        bytes,
        sha,
        basis,
        failed,
        ..
    } = p;
    let rel = rel.as_path();
    // The same bytes decrypt to the same document: a new verdict (a
    // re-signed file, a scope file changed) needs no decryption, and so
    // only the header, not the whole armor, decoded to judge them.
    if let Some((known, served)) = index.same_bytes(rel, &id, &sha) {
        let header = envelope::read_header(&bytes);
        let seen = index.seen(rel);
        return match signatures.judge(&id, header.as_ref(), &sha, checked, basis, seen) {
            Ok(signed) => FileResult::Loaded {
                secret: Arc::new(Secret {
                    doc: known.doc.clone(),
                    file_sha256: sha,
                    recipients_fingerprint: known.recipients_fingerprint.clone(),
                    signed: Some(Box::new(signed)),
                }),
                decrypted: false,
                same_bytes: served,
            },
            Err(refusal) => FileResult::Refused(refusal, failed),
        };
    }
    // New bytes. A file no writer of its scope signed is refused unopened.
    let writer = match signatures.judge_writer(&id, checked) {
        Ok(writer) => writer,
        Err(refusal) => return FileResult::Refused(refusal, failed),
    };
    // A writer's file is opened in one pass and its binding judged on the
    // header age read. Where it does not open, the header is read alone,
    // so that a binding's refusal still comes before the decryption's error.
    let opened = store.open_hashed(&id, &bytes, sha, identities);
    let read_alone;
    let header = match &opened {
        Ok(loaded) => Ok(&loaded.header),
        Err(_) => {
            read_alone = envelope::read_header(&bytes);
            read_alone.as_ref()
        }
    };
    let seen = index.seen(rel);
    match signatures.judge_bound(&id, header, &sha, writer, basis, seen) {
        Ok(signed) => decrypt(opened, sha, Some(signed), Some(basis)),
        Err(refusal) => FileResult::Refused(refusal, failed),
    }
}

/// What opening new bytes came to.
fn decrypt(
    opened: Result<Loaded, LoadError>,
    sha256: [u8; 32],
    signed: Option<super::Signed>,
    basis: Option<Basis>,
) -> FileResult {
    match opened {
        Ok(loaded) => FileResult::Loaded {
            secret: Arc::new(Secret {
                recipients_fingerprint: loaded.header.metadata.map(|m| m.recipients_fingerprint),
                doc: loaded.doc,
                file_sha256: sha256,
                signed: signed.map(Box::new),
            }),
            decrypted: true,
            same_bytes: false,
        },
        Err(e) => FileResult::Failed(Problem::from(e), Some(Failed { sha256, basis })),
    }
}
