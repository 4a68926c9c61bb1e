//! Who may change a secret (SPEC 9): the verdicts of `check`, the hook and
//! the watcher on signed files, without any private key.
//!
//! Admins (the trust root, outside the repository) sign each scope's
//! `recipients.txt` and `writers.txt`; writers (listed in `writers.txt`)
//! sign the scope's secrets. A [`Verifier`] holds the trust root and the
//! verdict on every scope's files, and judges one secret at a time:
//!
//! - the scope's `writers.txt` and `recipients.txt` must verify under the
//!   trust root (namespace `meshseal-scope`) and bind, by their first line
//!   (see [`header`]), to their kind, store and scope;
//! - the secret's `.sig` must verify (namespace `meshseal`) under that
//!   `writers.txt`, and its v2 header name this store.
//!
//! Rollbacks are judged by the caller against what it has seen
//! ([`history::Seen`]): git history for `check`, the `--state` record for
//! the watcher.

pub mod admin;
pub mod header;
pub mod history;
mod secret;

use secret::for_secret;
pub use secret::{Checked, SecretCheck, WriterSigned};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ssh_key::{Fingerprint, PublicKey};
use thiserror::Error;

use crate::config::{Config, Signatures};
use crate::problem::Diagnostic;
use crate::scope::{Scope, ScopeFile};
use crate::signing::{self, AcceptError, AllowedSigners, Namespace, Signature, TrustRoot};
use crate::store::{scope_flag, StoreError};
use header::ScopeHeader;

/// Why a signed file is refused. Every variant names what it can of the
/// signer; none carries the file's bytes.
#[derive(Debug, Clone, Error)]
pub enum Refusal {
    /// There is no `.sig`.
    #[error("not signed: {} is missing", .sig.display())]
    Unsigned {
        /// The signature file that is not there.
        sig: PathBuf,
        /// The scope, for the hint.
        scope: Scope,
    },
    /// The `.sig` is malformed, for another namespace, or does not verify
    /// over the file's bytes.
    #[error("bad signature: {reason}{}", signed_by_suffix(.fingerprint, .reason))]
    BadSignature {
        /// The key the signature names, when it parses.
        fingerprint: Option<Fingerprint>,
        /// Why.
        reason: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The signature verifies, but its key is not a writer of the scope.
    #[error("signed by {fingerprint}, which is not a writer of {scope} ({}): {reason}", .scope.writers_path().display())]
    UnknownWriter {
        /// The signer.
        fingerprint: Fingerprint,
        /// The scope.
        scope: Scope,
        /// Why `writers.txt` does not allow it.
        reason: String,
    },
    /// The scope has no `writers.txt`: nobody may sign its secrets.
    #[error("signed by {fingerprint}, but {scope} has no writers ({} is missing or lists no key)", .scope.writers_path().display())]
    NoWriters {
        /// The signer.
        fingerprint: Fingerprint,
        /// The scope.
        scope: Scope,
    },
    /// A scope file does not verify under the trust root (said of the file
    /// itself, and of every secret of its scope).
    #[error("{}not trusted: {reason}", if *.of_secret { format!("{} is ", .file.display()) } else { String::new() })]
    UntrustedScopeFile {
        /// Said of a secret of the scope (the message names the file),
        /// rather than of the file itself.
        of_secret: bool,
        /// The scope file.
        file: PathBuf,
        /// Which one.
        kind: ScopeFile,
        /// The scope.
        scope: Scope,
        /// Why.
        reason: String,
    },
    /// The file is signed, but names another store, scope or kind, or has
    /// no header that binds it.
    #[error("wrong binding: {reason}")]
    WrongBinding {
        /// What does not match.
        reason: String,
        /// The scope, for the hint.
        scope: Scope,
    },
    /// A signed `writers.txt` that is not an `allowed_signers` file.
    #[error("{message}")]
    InvalidWriters {
        /// The parser's message.
        message: String,
        /// Its line.
        line: Option<usize>,
    },
    /// An older version than one already seen.
    #[error("rollback: generation {generation} is not above generation {highest}, already seen for this file")]
    Rollback {
        /// This file's generation.
        generation: u64,
        /// The highest seen.
        highest: u64,
    },
}

fn signed_by_suffix(fingerprint: &Option<Fingerprint>, reason: &str) -> String {
    match fingerprint {
        Some(f) if !reason.contains(&f.to_string()) => format!(" (signed by {f})"),
        _ => String::new(),
    }
}

impl Diagnostic for Refusal {
    fn code(&self) -> &'static str {
        match self {
            Refusal::Unsigned { .. } => "unsigned",
            Refusal::BadSignature { .. } => "bad-signature",
            Refusal::UnknownWriter { .. } | Refusal::NoWriters { .. } => "unknown-writer",
            Refusal::UntrustedScopeFile {
                kind: ScopeFile::Writers,
                ..
            } => "untrusted-writers-file",
            Refusal::UntrustedScopeFile {
                kind: ScopeFile::Recipients,
                ..
            } => "untrusted-recipients-file",
            Refusal::WrongBinding { .. } => "wrong-binding",
            Refusal::InvalidWriters { .. } => "invalid-writers",
            Refusal::Rollback { .. } => "rollback",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            Refusal::Unsigned { scope, .. } => format!(
                "a writer of the scope signs it: `meshseal -S KEY sign {}`",
                scope_flag(scope).trim_end()
            ),
            Refusal::BadSignature { hint, .. } => hint.clone()?,
            Refusal::UnknownWriter { scope, .. } | Refusal::NoWriters { scope, .. } => format!(
                "sign with a key listed in {}, or have an admin add it: `meshseal -S ADMIN_KEY writers add {}PRINCIPAL KEY`",
                scope.writers_path().display(),
                scope_flag(scope)
            ),
            Refusal::UntrustedScopeFile { scope, file, .. } => format!(
                "review the change (`git log -p -- {}`): anyone who can push can edit it; restore the signed version, or if every key in it is right an admin signs it: `meshseal -S ADMIN_KEY sign {}`",
                file.display(),
                scope_flag(scope).trim_end()
            ),
            Refusal::WrongBinding { scope, .. } => format!(
                "the file was copied from another store or scope, or written without a store id; a writer rewrites it: `meshseal -S KEY rekey --force {}`",
                scope_flag(scope).trim_end()
            ),
            Refusal::InvalidWriters { .. } => {
                "writers.txt is an OpenSSH allowed_signers file: `PRINCIPAL [OPTIONS] KEYTYPE KEY`".to_string()
            }
            Refusal::Rollback { .. } => {
                "this is an older version than one already seen; restore the newest (`git log -- FILE`) or write a new value"
                    .to_string()
            }
        })
    }

    fn line(&self) -> Option<usize> {
        match self {
            Refusal::InvalidWriters { line, .. } => *line,
            _ => None,
        }
    }
}

/// A secret that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Its generation (0 for a v1 file).
    pub generation: u64,
    /// The writer's key's fingerprint.
    pub signer: Fingerprint,
    /// The writer's key, to tell whether a later `writers.txt` still lists it.
    pub key: PublicKey,
    /// The principals it signed as.
    pub principals: Vec<String>,
}

/// The verdict on one scope's signed files.
#[derive(Debug, Clone)]
struct ScopeTrust {
    /// The writers, empty when there is no `writers.txt`; or why the file
    /// is not trusted.
    writers: Result<Arc<AllowedSigners>, Refusal>,
    /// Whether `recipients.txt` is trusted (a missing one is: there is
    /// nothing to encrypt to, which the store reports on its own).
    recipients: Result<(), Refusal>,
}

/// A scope's files as [`Verifier::judge_scope`] judged them, to record.
pub struct JudgedScope(ScopeTrust);

impl JudgedScope {
    /// The writers its `writers.txt` lists when the file is trusted (empty
    /// when there is none); `None` when it is not trusted.
    pub fn writers(&self) -> Option<&Arc<AllowedSigners>> {
        self.0.writers.as_ref().ok()
    }
}

/// A scope file as read: its bytes and its signature's, each `None` when
/// absent.
#[derive(Debug, Clone, Default)]
pub struct ScopeFileBytes {
    /// The file.
    pub text: Option<Vec<u8>>,
    /// `<file>.sig`.
    pub sig: Option<Vec<u8>>,
}

/// The trust root and the verdict on every scope's files.
#[derive(Debug, Clone)]
pub struct Verifier {
    admins: AllowedSigners,
    trust_path: PathBuf,
    store_id: Option<String>,
    require_v2: bool,
    at: u64,
    scopes: BTreeMap<Scope, ScopeTrust>,
}

/// How a scope file is read: `Ok(None)` when it does not exist.
pub type ReadFile<'a> = dyn Fn(&Path) -> Result<Option<Vec<u8>>, StoreError> + Sync + 'a;

impl Verifier {
    /// A verifier for a store with `config`, under `trust`, at the current
    /// time; no scope loaded yet.
    pub fn new(trust: &TrustRoot, config: &Config) -> Verifier {
        Verifier {
            admins: trust.signers().clone(),
            trust_path: trust.path().to_path_buf(),
            store_id: config.store_id.clone(),
            require_v2: config.signatures == Signatures::Required,
            at: signing::now(),
            scopes: BTreeMap::new(),
        }
    }

    /// The trust root's file.
    pub fn trust_path(&self) -> &Path {
        &self.trust_path
    }

    /// Reads and judges a scope's `writers.txt` and `recipients.txt` (and
    /// their signatures) with `read`, replacing what was known of it.
    pub fn load_scope(&mut self, scope: &Scope, read: &ReadFile<'_>) {
        let judged = self.judge_scope(scope, read);
        self.set_scope(scope.clone(), judged);
    }

    /// What [`Verifier::load_scope`] would record of a scope, judged
    /// without changing the verifier (so scopes can be judged in parallel,
    /// then recorded with [`Verifier::set_scope`]).
    pub fn judge_scope(&self, scope: &Scope, read: &ReadFile<'_>) -> JudgedScope {
        let mut files = BTreeMap::new();
        for kind in [ScopeFile::Writers, ScopeFile::Recipients] {
            let get = |rel: PathBuf| match read(&rel) {
                Ok(bytes) => Ok(bytes),
                Err(e) => Err(Refusal::UntrustedScopeFile {
                    of_secret: false,
                    file: rel,
                    kind,
                    scope: scope.clone(),
                    reason: e.to_string(),
                }),
            };
            let bytes = get(scope.file_path(kind)).and_then(|text| {
                Ok(ScopeFileBytes {
                    text,
                    sig: get(scope.sig_path(kind))?,
                })
            });
            files.insert(kind, bytes);
        }
        let mut take = |kind| files.remove(&kind).expect("both kinds were read");
        let writers = take(ScopeFile::Writers)
            .and_then(|b| self.judge_writers(scope, &b))
            .map(Arc::new);
        let recipients = take(ScopeFile::Recipients).and_then(|b| {
            self.judge_scope_file(scope, ScopeFile::Recipients, &b)
                .map(drop)
        });
        JudgedScope(ScopeTrust {
            writers,
            recipients,
        })
    }

    /// Records a scope as [`Verifier::judge_scope`] judged it.
    pub fn set_scope(&mut self, scope: Scope, judged: JudgedScope) {
        self.scopes.insert(scope, judged.0);
    }

    /// Whether a scope file (`recipients.txt` or `writers.txt`) with these
    /// bytes verifies under the trust root and binds to its path; its
    /// generation when it does (`None`: the file does not exist).
    pub fn judge_scope_file(
        &self,
        scope: &Scope,
        kind: ScopeFile,
        bytes: &ScopeFileBytes,
    ) -> Result<Option<u64>, Refusal> {
        let Some(text) = &bytes.text else {
            return Ok(None);
        };
        let file = scope.file_path(kind);
        let untrusted = |reason: String| Refusal::UntrustedScopeFile {
            of_secret: false,
            file: file.clone(),
            kind,
            scope: scope.clone(),
            reason,
        };
        match signing::accept(
            bytes.sig.as_deref(),
            text,
            Namespace::Scope,
            &self.admins,
            self.at,
        ) {
            Ok(_) => {}
            Err(AcceptError::Unsigned) => {
                return Err(untrusted(format!(
                    "not signed by an admin ({} is missing)",
                    scope.sig_path(kind).display()
                )))
            }
            Err(AcceptError::BadSignature { source }) => {
                let by = bytes
                    .sig
                    .as_deref()
                    .and_then(|s| Signature::parse(s).ok())
                    .map(|s| s.fingerprint());
                let reason = source.to_string();
                return Err(untrusted(format!(
                    "bad admin signature: {reason}{}",
                    signed_by_suffix(&by, &reason)
                )));
            }
            Err(AcceptError::UnknownWriter {
                fingerprint,
                reason,
            }) => {
                return Err(untrusted(format!(
                    "signed by {fingerprint}, which is not an admin in the trust root {}: {reason}",
                    self.trust_path.display()
                )))
            }
        }
        let text = std::str::from_utf8(text).map_err(|_| untrusted("not UTF-8".to_string()))?;
        let wrong = |reason: String| Refusal::WrongBinding {
            reason: format!("{}: {reason}", file.display()),
            scope: scope.clone(),
        };
        match ScopeHeader::parse(text) {
            None => Err(wrong(format!(
                "no `# meshseal {} <store-id> <scope> generation <N>` first line",
                kind.as_str()
            ))),
            Some(Err(reason)) => Err(wrong(reason)),
            Some(Ok(h)) => {
                h.binds(kind, self.store_id.as_deref(), scope)
                    .map_err(wrong)?;
                Ok(Some(h.generation))
            }
        }
    }

    fn judge_writers(
        &self,
        scope: &Scope,
        bytes: &ScopeFileBytes,
    ) -> Result<AllowedSigners, Refusal> {
        if self
            .judge_scope_file(scope, ScopeFile::Writers, bytes)?
            .is_none()
        {
            return Ok(AllowedSigners::default());
        }
        let text = std::str::from_utf8(bytes.text.as_deref().unwrap_or_default())
            .expect("judged UTF-8 above");
        AllowedSigners::parse(text).map_err(|e| Refusal::InvalidWriters {
            message: e.to_string(),
            line: e.line(),
        })
    }

    /// Why a scope's files are not trusted, each once: for `check`, which
    /// reports them on the scope files themselves.
    pub fn scope_refusals(&self) -> Vec<(PathBuf, Refusal)> {
        let mut out = Vec::new();
        for (scope, trust) in &self.scopes {
            if let Err(e) = &trust.writers {
                out.push((scope.writers_path(), e.clone()));
            }
            if let Err(e) = &trust.recipients {
                out.push((scope.recipients_path(), e.clone()));
            }
        }
        out
    }

    /// Whether a scope's file verified (a missing file counts as verified:
    /// it vouches for nothing).
    pub fn scope_file_trusted(&self, scope: &Scope, kind: ScopeFile) -> bool {
        match (self.scopes.get(scope), kind) {
            (Some(t), ScopeFile::Writers) => t.writers.is_ok(),
            (Some(t), ScopeFile::Recipients) => t.recipients.is_ok(),
            (None, _) => false,
        }
    }

    /// Whether the scope's `recipients.txt` may be encrypted to.
    pub fn recipients_trusted(&self, scope: &Scope) -> Result<(), Refusal> {
        match self.scopes.get(scope).map(|t| &t.recipients) {
            Some(Err(e)) => Err(for_secret(e, scope, ScopeFile::Recipients)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
