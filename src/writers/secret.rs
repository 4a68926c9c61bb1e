//! The verdict on one secret: its `.sig` verified (alone, or deferred to
//! a batch with the others of a load), its writer allowed by the scope's
//! trusted `writers.txt`, its header bound to this store and path.

use std::sync::Arc;

use ssh_key::Fingerprint;

use super::{Refusal, ScopeFile, Verdict, Verifier};
use crate::envelope::{self, EnvelopeError, Header};
use crate::problem::Diagnostic;
use crate::scope::{Scope, SecretId};
use crate::signing::{
    self, AcceptError, AllowedSigners, Deferral, Deferred, Namespace, Signature, Verified,
    VerifyError,
};

/// A secret's `.sig`, parsed and verified over its file's bytes (alone, or
/// in a batch: [`Checked::concluded`]).
#[derive(Debug)]
pub struct Checked {
    /// The signer's fingerprint, when the signature parses.
    pub fingerprint: Option<Fingerprint>,
    /// Whether it verified, and by whom.
    pub verified: Result<Verified, VerifyError>,
}

/// A secret's `.sig` on its way to a verdict.
/// (One a signature, moved into its batch at once: not worth a box.)
#[allow(clippy::large_enum_variant)]
pub enum SecretCheck {
    /// Its verification waits for a batch.
    Batch(Deferred),
    /// It was verified alone.
    Alone(Checked),
}

impl Checked {
    /// A deferred verification, concluded (`ok`: from
    /// [`signing::verify_deferred`]).
    pub fn concluded(deferred: Deferred, ok: bool) -> Checked {
        let (fingerprint, verified) = deferred.conclude(ok);
        Checked {
            fingerprint: Some(fingerprint),
            verified,
        }
    }
}

impl Verifier {
    /// The verdict on a secret's file `bytes` and its `.sig`.
    pub fn secret(
        &self,
        id: &SecretId,
        bytes: &[u8],
        sig: Option<&[u8]>,
    ) -> Result<Verdict, Refusal> {
        let checked = sig.map(|s| {
            let parsed = Signature::parse(s);
            let fingerprint = parsed.as_ref().ok().map(Signature::fingerprint);
            let writers = self.known_writers(&id.scope);
            let verified = parsed.and_then(|p| {
                p.verify_known(bytes, Namespace::Secret, |k| {
                    writers.and_then(|w| w.verifying_key(k).copied())
                })
            });
            Checked {
                fingerprint,
                verified,
            }
        });
        self.secret_checked(id, envelope::read_header(bytes).as_ref(), checked)
    }

    /// The verification of a secret's `.sig` over `bytes`, deferred to a
    /// batch ([`signing::verify_deferred`]) when it can be: an Ed25519
    /// signature by a key its scope's `writers.txt` lists. Otherwise what
    /// [`Verifier::secret_checked`] takes, verified alone.
    pub fn defer(&self, id: &SecretId, bytes: &[u8], sig: &[u8]) -> SecretCheck {
        let parsed = match Signature::parse(sig) {
            Ok(p) => p,
            Err(e) => {
                return SecretCheck::Alone(Checked {
                    fingerprint: None,
                    verified: Err(e),
                })
            }
        };
        let writers = self.known_writers(&id.scope);
        match parsed.defer(bytes, Namespace::Secret, |k| {
            writers.and_then(|w| w.prepared_key(k).cloned())
        }) {
            Deferral::Batch(d) => SecretCheck::Batch(d),
            Deferral::Alone(alone) => SecretCheck::Alone(Checked {
                fingerprint: Some(alone.fingerprint()),
                verified: alone.verify(bytes, Namespace::Secret),
            }),
        }
    }

    /// The writers of a scope whose `writers.txt` is trusted.
    fn known_writers(&self, scope: &Scope) -> Option<&AllowedSigners> {
        match self.scopes.get(scope).map(|t| &t.writers) {
            Some(Ok(w)) => Some(w),
            _ => None,
        }
    }

    /// The verdict on a secret's file, its `.sig` already verified over
    /// the file's bytes (`checked`; `None`: there is no `.sig`) and its
    /// `header` read from them (judged only once the signature is).
    pub fn secret_checked(
        &self,
        id: &SecretId,
        header: Result<&Header, &EnvelopeError>,
        checked: Option<Checked>,
    ) -> Result<Verdict, Refusal> {
        let accepted = self.secret_writer(id, checked)?;
        self.secret_bound(id, header, accepted)
    }

    /// The first half of [`Verifier::secret_checked`]: whether the file is
    /// signed by a writer of its scope (its header not yet judged). A file
    /// that is not is refused unopened.
    pub fn secret_writer(
        &self,
        id: &SecretId,
        checked: Option<Checked>,
    ) -> Result<WriterSigned, Refusal> {
        let scope = &id.scope;
        let writers = match self.scopes.get(scope).map(|t| &t.writers) {
            Some(Ok(w)) => Arc::clone(w),
            Some(Err(e)) => return Err(for_secret(e, scope, ScopeFile::Writers)),
            None => Arc::new(AllowedSigners::default()),
        };
        self.recipients_trusted(scope)?;
        let Some(checked) = checked else {
            return Err(Refusal::Unsigned {
                sig: id.sig_path(),
                scope: scope.clone(),
            });
        };
        let accepted =
            match signing::authorize(checked.verified, Namespace::Secret, &writers, self.at) {
                Ok(a) => a,
                Err(AcceptError::Unsigned) => {
                    return Err(Refusal::Unsigned {
                        sig: id.sig_path(),
                        scope: scope.clone(),
                    })
                }
                Err(AcceptError::BadSignature { source }) => {
                    return Err(Refusal::BadSignature {
                        fingerprint: checked.fingerprint,
                        reason: source.to_string(),
                        hint: source.hint(),
                    })
                }
                Err(AcceptError::UnknownWriter {
                    fingerprint,
                    reason,
                }) => {
                    return Err(if writers.is_empty() {
                        Refusal::NoWriters {
                            fingerprint,
                            scope: scope.clone(),
                        }
                    } else {
                        Refusal::UnknownWriter {
                            fingerprint,
                            scope: scope.clone(),
                            reason: reason.to_string(),
                        }
                    })
                }
            };
        Ok(WriterSigned(accepted))
    }

    /// The second half of [`Verifier::secret_checked`]: the verdict on a
    /// file a writer signed, from its header's binding.
    pub fn secret_bound(
        &self,
        id: &SecretId,
        header: Result<&Header, &EnvelopeError>,
        accepted: WriterSigned,
    ) -> Result<Verdict, Refusal> {
        let WriterSigned(accepted) = accepted;
        let scope = &id.scope;
        let wrong = |reason: String| Refusal::WrongBinding {
            reason,
            scope: scope.clone(),
        };
        let meta = header
            .map_err(|e| wrong(e.to_string()))?
            .metadata
            .as_ref()
            .ok_or_else(|| {
                wrong(
                    "no meshseal header stanza: the file's store, scope and name are not bound"
                        .to_string(),
                )
            })?;
        if meta.id != *id {
            return Err(wrong(format!(
                "its header names {} {:?}, not this path's",
                meta.id.scope, meta.id.name
            )));
        }
        match (&meta.store_id, &self.store_id) {
            (Some(file), Some(store)) if file == store => {}
            (Some(file), Some(store)) => {
                return Err(wrong(format!(
                    "its header binds it to store {file}, but this store is {store}"
                )))
            }
            (Some(file), None) => {
                return Err(wrong(format!(
                    "its header binds it to store {file}, but meshseal.toml has no store_id"
                )))
            }
            (None, _) if self.require_v2 => return Err(wrong(
                "a v1 file (no store id, no generation) where meshseal.toml requires signatures"
                    .to_string(),
            )),
            (None, _) => {}
        }
        Ok(Verdict {
            generation: meta.generation,
            signer: accepted.signer.fingerprint,
            key: accepted.signer.key,
            principals: accepted.principals,
        })
    }
}

/// A secret file signed by a writer of its scope, its binding not yet
/// judged ([`Verifier::secret_writer`]).
pub struct WriterSigned(signing::Accepted);

/// A scope file's refusal as said of one of its scope's secrets: the file
/// is not trusted, so neither is what it vouches for.
pub(super) fn for_secret(e: &Refusal, scope: &Scope, kind: ScopeFile) -> Refusal {
    match e {
        Refusal::UntrustedScopeFile {
            file,
            kind,
            scope,
            reason,
            ..
        } => Refusal::UntrustedScopeFile {
            of_secret: true,
            file: file.clone(),
            kind: *kind,
            scope: scope.clone(),
            reason: reason.clone(),
        },
        other => Refusal::UntrustedScopeFile {
            of_secret: true,
            file: scope.file_path(kind),
            kind,
            scope: scope.clone(),
            reason: other.to_string(),
        },
    }
}
