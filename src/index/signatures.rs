//! Signed writers in the index (SPEC 9): with a trust root, a secret is
//! served only when its `.sig` verifies under its scope's `writers.txt`,
//! that file and `recipients.txt` verify under the trust root, and its
//! generation does not go back on the highest *verified* one seen for its
//! path.
//!
//! Why every verdict remembers its [`Basis`] (the sha256 of the `.sig` and
//! a digest of the scope's signed files): a verdict depends on more than
//! the `.age` file's bytes. A re-signed secret, a writer added or removed,
//! a scope file edited without an admin's signature must each re-judge what
//! they cover, and only that; comparing bases tells which verdicts are out
//! of date without decrypting anything (decryption, not verification, is
//! the cost). A rescan compares every file's basis, so an event overflow
//! misses nothing.
//!
//! Why the index keeps the writers of each scope beside the verifier: the
//! watcher keeps the last good version of a refused secret, except when
//! the writer who signed that version was removed from a signed
//! `writers.txt`. Then the version is withheld (not served) until a
//! remaining writer re-signs the file; an unsigned edit of `writers.txt`
//! removes no one, and keeps the last good version served.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::envelope::{EnvelopeError, Header};
use crate::problem::{Diagnostic, Problem};
use crate::scope::{Scope, ScopeFile, SecretId};
use crate::signing::{self, AllowedSigners, Namespace};
use crate::store::{Store, StoreError, MAX_TEXT_FILE_BYTES};
use crate::writers::history::Seen;
use crate::writers::{Checked, JudgedScope, Refusal, Verdict, Verifier, WriterSigned};

/// The reason codes of signature refusals, in the order `/metrics` lists
/// them (the codes of [`Refusal`]).
pub const REFUSAL_CODES: [&str; 8] = [
    "unsigned",
    "bad-signature",
    "unknown-writer",
    "untrusted-writers-file",
    "untrusted-recipients-file",
    "wrong-binding",
    "invalid-writers",
    "rollback",
];

/// What one verdict was reached from, besides the `.age` file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Basis {
    /// sha256 of the `.sig`, `None` when there is none.
    sig: Option<[u8; 32]>,
    /// Digest of the trust root, the store's binding and the scope's signed
    /// files.
    scope: [u8; 32],
}

/// How a served secret verified.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The verdict: generation, signer, principals.
    pub verdict: Verdict,
    /// What it was reached from.
    pub(super) basis: Basis,
}

/// A secret file whose current version is refused (`/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The secret.
    pub id: SecretId,
    /// The refusal: file, reason code, message (naming the signer), hint.
    pub problem: Problem,
    /// Since when this file has been refused (the first refusal of a run of
    /// refused versions).
    pub since: SystemTime,
    /// Whether a last good version is served meanwhile (false: nothing is,
    /// or the writer of the last good one was removed).
    pub served: bool,
}

/// The trust root's verdict on every scope, as the index knows it.
#[derive(Debug, Clone)]
pub(super) struct Signatures {
    verifier: Verifier,
    /// Digest of what every verdict depends on besides scope files: the
    /// trust root and the store's binding (`store_id`, `signatures`).
    epoch: [u8; 32],
    scopes: BTreeMap<Scope, ScopeTrust>,
}

#[derive(Debug, Clone)]
struct ScopeTrust {
    /// Digest of the epoch and the scope's four signed files.
    digest: [u8; 32],
    /// The writers of a `writers.txt` that exists and verifies; `None`
    /// otherwise (then nobody counts as removed).
    writers: Option<Arc<AllowedSigners>>,
}

/// A scope's signed files as read and judged, to record.
struct JudgedScopeFiles {
    /// The verifier's verdict on them.
    verdict: JudgedScope,
    /// The index's.
    trust: ScopeTrust,
}

/// Bytes read through the verifier, by path, for the scope digest.
type Read = BTreeMap<PathBuf, Option<Vec<u8>>>;

impl Signatures {
    /// For a store opened with a trust root; `None` without one.
    pub(super) fn new(store: &Store) -> Option<Signatures> {
        let verifier = store.verifier()?;
        let mut epoch = Sha256::new();
        let config = store.config();
        epoch.update(config.store_id.as_deref().unwrap_or("").as_bytes());
        epoch.update([
            0,
            u8::from(config.signatures == crate::config::Signatures::Required),
        ]);
        if let Some(trust) = &store.signing().trust {
            epoch.update(trust.signers().to_text().as_bytes());
        }
        Some(Signatures {
            verifier,
            epoch: epoch.finalize().into(),
            scopes: BTreeMap::new(),
        })
    }

    /// What judges the signatures.
    pub(super) fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Whether the scope's files were read.
    pub(super) fn knows(&self, scope: &Scope) -> bool {
        self.scopes.contains_key(scope)
    }

    /// The scopes known whose folder is `rel` or lies below it.
    pub(super) fn scopes_at_or_below(&self, rel: &Path) -> Vec<Scope> {
        self.scopes
            .keys()
            .filter(|s| s.dir().starts_with(rel))
            .cloned()
            .collect()
    }

    /// Reads and judges scopes' signed files again, in parallel, then
    /// records them; whether anything of each changed, in order (a scope
    /// not known before counts as changed).
    pub(super) fn load_scopes(&mut self, store: &Store, scopes: &[&Scope]) -> Vec<bool> {
        let judged: Vec<JudgedScopeFiles> = scopes
            .par_iter()
            .map(|scope| self.judge_scope(store, scope))
            .collect();
        scopes
            .iter()
            .zip(judged)
            .map(|(scope, judged)| self.record_scope(scope, judged))
            .collect()
    }

    /// Reads and judges a scope's signed files, changing nothing.
    fn judge_scope(&self, store: &Store, scope: &Scope) -> JudgedScopeFiles {
        let read: Mutex<Read> = Mutex::new(BTreeMap::new());
        let reader = |rel: &Path| -> Result<Option<Vec<u8>>, StoreError> {
            let bytes = match store.read_file(rel, MAX_TEXT_FILE_BYTES) {
                Ok(b) => Some(b),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            let mut read = read.lock().unwrap_or_else(|e| e.into_inner());
            read.insert(rel.to_path_buf(), bytes.clone());
            Ok(bytes)
        };
        let verdict = self.verifier.judge_scope(scope, &reader);
        let read = read.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut digest = Sha256::new();
        digest.update(self.epoch);
        for kind in [ScopeFile::Writers, ScopeFile::Recipients] {
            for rel in [scope.file_path(kind), scope.sig_path(kind)] {
                // An unreadable file digests as its own state: "error".
                match read.get(&rel) {
                    Some(Some(bytes)) => {
                        digest.update([1]);
                        digest.update(Sha256::digest(bytes));
                    }
                    Some(None) => digest.update([0]),
                    None => digest.update([2]),
                }
            }
        }
        // The writers of a `writers.txt` that exists and that the trust
        // root vouches for: the verifier's, which judged that same file.
        let exists = matches!(read.get(&scope.writers_path()), Some(Some(_)));
        let writers = verdict.writers().filter(|_| exists).cloned();
        JudgedScopeFiles {
            verdict,
            trust: ScopeTrust {
                digest: digest.finalize().into(),
                writers,
            },
        }
    }

    /// Records a judged scope; whether it changed.
    fn record_scope(&mut self, scope: &Scope, judged: JudgedScopeFiles) -> bool {
        let changed = self.scopes.get(scope).map(|t| t.digest) != Some(judged.trust.digest);
        self.verifier.set_scope(scope.clone(), judged.verdict);
        self.scopes.insert(scope.clone(), judged.trust);
        changed
    }

    /// What a verdict on a secret of `scope` whose `.sig` hashes to `sig`
    /// rests on.
    pub(super) fn basis(&self, scope: &Scope, sig: Option<[u8; 32]>) -> Basis {
        Basis {
            sig,
            scope: self.scopes.get(scope).map_or([0; 32], |t| t.digest),
        }
    }

    /// The verdict on a secret's current bytes (reached from `basis`):
    /// signed by a writer of a trusted scope, bound to this store and path,
    /// and not older than the highest verified version `seen` of its path.
    pub(super) fn judge(
        &self,
        id: &SecretId,
        header: Result<&Header, &EnvelopeError>,
        sha256: &[u8; 32],
        checked: Option<Checked>,
        basis: Basis,
        seen: Option<&Seen>,
    ) -> Result<Signed, Refusal> {
        let writer = self.judge_writer(id, checked)?;
        self.judge_bound(id, header, sha256, writer, basis, seen)
    }

    /// [`Signatures::judge`]'s first half: signed by a writer of its scope.
    pub(super) fn judge_writer(
        &self,
        id: &SecretId,
        checked: Option<Checked>,
    ) -> Result<WriterSigned, Refusal> {
        self.verifier.secret_writer(id, checked)
    }

    /// [`Signatures::judge`]'s second half, for a file a writer signed:
    /// bound to this store and path, and no rollback.
    pub(super) fn judge_bound(
        &self,
        id: &SecretId,
        header: Result<&Header, &EnvelopeError>,
        sha256: &[u8; 32],
        writer: WriterSigned,
        basis: Basis,
        seen: Option<&Seen>,
    ) -> Result<Signed, Refusal> {
        let verdict = self.verifier.secret_bound(id, header, writer)?;
        if let Some(seen) = seen {
            seen.judge(verdict.generation, sha256)?;
        }
        Ok(Signed { basis, verdict })
    }

    /// Whether the writer who signed `signed` was removed from its scope's
    /// (trusted) `writers.txt`: then what they signed is no longer served.
    pub(super) fn writer_removed(&self, scope: &Scope, signed: &Signed) -> bool {
        let Some(Some(writers)) = self.scopes.get(scope).map(|t| &t.writers) else {
            return false;
        };
        writers
            .authorize(
                signed.verdict.key.key_data(),
                None,
                Namespace::Secret.as_str(),
                signing::now(),
            )
            .is_err()
    }
}

/// The problem of a version withheld because its writer was removed.
pub(super) fn withheld_problem(id: &SecretId, refusal: &Refusal, signed: &Signed) -> Problem {
    let mut problem = Problem::at(id.path(), refusal);
    problem.message = format!(
        "{}; not served: the last good version was signed by {}, who is no longer a writer in {}",
        problem.message,
        signed.verdict.signer,
        id.scope.writers_path().display()
    );
    problem.hint = Some(format!(
        "a remaining writer re-signs it: `meshseal -S KEY sign {}`",
        crate::store::scope_flag(&id.scope).trim_end()
    ));
    problem
}

/// Where a refusal's code falls in [`REFUSAL_CODES`].
pub(super) fn refusal_slot(refusal: &Refusal) -> Option<usize> {
    let code = refusal.code();
    REFUSAL_CODES.iter().position(|c| *c == code)
}
