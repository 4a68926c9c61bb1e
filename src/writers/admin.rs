//! What admins and writers do to a store (SPEC 9): `writers add|remove|list`
//! and `sign`. Every write goes through the store, so scope files get their
//! header and an admin signature from the store's sign key.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use ssh_key::{Fingerprint, PublicKey};
use thiserror::Error;

use super::header::ScopeHeader;
use crate::problem::Diagnostic;
use crate::scope::{Scope, ScopeFile, SecretId};
use crate::signing::allowed_signers::{self as edit, EditError};
use crate::signing::{self, AllowedSigners, Entry, Namespace, Signature, Signer};
use crate::store::{Store, StoreError, WriteError, MAX_TEXT_FILE_BYTES};

/// Why an admin or writer command failed.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The command signs, and no sign key was given.
    #[error("no sign key: this command signs what it writes")]
    NoSignKey,
    /// A file could not be read.
    #[error("{source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// `writers.txt` could not be edited.
    #[error("{source}")]
    Edit {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: EditError,
    },
    /// The KEY argument is neither a public key nor a file holding one.
    #[error("not an OpenSSH public key, nor a file holding one: {given}")]
    BadKey {
        /// What was given (a path or the key's first word).
        given: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl Diagnostic for AdminError {
    fn code(&self) -> &'static str {
        match self {
            AdminError::NoSignKey => "sign-key-required",
            AdminError::Read { source, .. } => source.code(),
            AdminError::Edit { source, .. } => source.code(),
            AdminError::BadKey { .. } => "invalid-key",
            AdminError::Write(e) => e.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            AdminError::NoSignKey => Some(
                "give a key: `meshseal -S ~/.ssh/id_ed25519 ...` (a private key file, or a .pub whose key ssh-agent holds), or MESHSEAL_SIGN_KEY"
                    .to_string(),
            ),
            AdminError::BadKey { .. } => Some(
                "give `ssh-ed25519 AAAA...` (quoted) or the path of a .pub file".to_string(),
            ),
            AdminError::Read { source, .. } => source.hint(),
            AdminError::Edit { source, .. } => source.hint(),
            AdminError::Write(e) => e.hint(),
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            AdminError::Edit { source, .. } => source.line(),
            AdminError::Write(e) => e.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            AdminError::Read { file, .. } | AdminError::Edit { file, .. } => Some(file),
            AdminError::Write(e) => e.file(),
            _ => None,
        }
    }
}

/// A public key from the command line: the key itself, or a file holding
/// one (a `.pub`).
pub fn parse_key(given: &str) -> Result<PublicKey, AdminError> {
    if let Ok(key) = PublicKey::from_openssh(given.trim()) {
        return Ok(key);
    }
    let bad = || AdminError::BadKey {
        given: given
            .split_whitespace()
            .next()
            .unwrap_or("")
            .chars()
            .take(80)
            .collect(),
    };
    let text = std::fs::read_to_string(given).map_err(|_| bad())?;
    PublicKey::from_openssh(text.trim()).map_err(|_| bad())
}

/// A scope file's text, empty when it does not exist.
fn read_scope_text(store: &Store, file: &Path) -> Result<String, AdminError> {
    match store.read_text(file) {
        Ok(t) => Ok(t),
        Err(e) if e.is_not_found() => Ok(String::new()),
        Err(source) => Err(AdminError::Read {
            file: file.to_path_buf(),
            source,
        }),
    }
}

/// The writers of `scope` as `writers.txt` lists them.
pub fn list(store: &Store, scope: &Scope) -> Result<Vec<Entry>, AdminError> {
    let file = scope.writers_path();
    let text = read_scope_text(store, &file)?;
    let signers = AllowedSigners::parse(&text).map_err(|e| AdminError::Edit {
        file,
        source: EditError::Invalid(e),
    })?;
    Ok(signers.entries().to_vec())
}

/// Adds `principal` with `key` to `scope`'s `writers.txt` (re-signed by
/// the store's sign key as an admin). `false`: it was already there.
pub fn add(
    store: &Store,
    scope: &Scope,
    principal: &str,
    key: &PublicKey,
) -> Result<bool, AdminError> {
    let file = scope.writers_path();
    let text = read_scope_text(store, &file)?;
    let (text, added) =
        edit::add_to_text(&text, principal, key).map_err(|source| AdminError::Edit {
            file: file.clone(),
            source,
        })?;
    if added {
        store.write_scope_file(scope, ScopeFile::Writers, &text)?;
    }
    Ok(added)
}

/// What `writers remove` did.
#[derive(Debug, Default)]
pub struct Removed {
    /// The keys no longer listed.
    pub keys: Vec<Fingerprint>,
    /// Secrets signed by one of them: a remaining writer re-signs them.
    pub to_resign: Vec<PathBuf>,
}

/// Removes every line of `principal` from `scope`'s `writers.txt`
/// (re-signed by the store's sign key) and names the secrets its keys
/// signed.
pub fn remove(store: &Store, scope: &Scope, principal: &str) -> Result<Removed, AdminError> {
    let file = scope.writers_path();
    let text = read_scope_text(store, &file)?;
    let removal = edit::remove_from_text(&text, principal).map_err(|source| AdminError::Edit {
        file: file.clone(),
        source,
    })?;
    store.write_scope_file(scope, ScopeFile::Writers, &removal.text)?;
    let gone: Vec<Fingerprint> = removal
        .keys
        .iter()
        .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256))
        .collect();
    let ids = store
        .secret_ids(Some(scope))
        .map_err(|e| AdminError::Read {
            file: e.file.clone(),
            source: StoreError::Io(e.source),
        })?;
    let to_resign = ids
        .par_iter()
        .filter(|id| signer_of(store, id).is_some_and(|f| gone.contains(&f)))
        .map(SecretId::path)
        .collect();
    Ok(Removed {
        keys: gone,
        to_resign,
    })
}

/// The key a secret's `.sig` names, if it parses.
fn signer_of(store: &Store, id: &SecretId) -> Option<Fingerprint> {
    let sig = store
        .read_file(&id.sig_path(), signing::sshsig::MAX_SIGNATURE_BYTES)
        .ok()?;
    Signature::parse(&sig).ok().map(|s| s.fingerprint())
}

/// What `sign` did, file by file.
#[derive(Debug, Default)]
pub struct SignReport {
    /// Files signed now.
    pub signed: Vec<PathBuf>,
    /// Files already signed (secrets by this key, scope files by an admin): left as they are.
    pub already: Vec<PathBuf>,
    /// Files the key may not sign, and why: left alone.
    pub refused: Vec<(PathBuf, String)>,
}

/// Signs what exists in `scopes`: scope files where the sign key is an
/// admin of the trust root, secrets where it is a writer of the scope (as
/// `writers.txt` lists it once the scope files are signed). A scope file
/// without its binding header is rewritten with one (the next generation);
/// everything else is signed over its exact bytes, so a re-signed secret
/// keeps its generation.
pub fn sign(store: &Store, scopes: &[Scope]) -> Result<SignReport, AdminError> {
    let signer = store
        .signing()
        .signer
        .as_ref()
        .ok_or(AdminError::NoSignKey)?;
    let mut report = SignReport::default();
    for scope in scopes {
        sign_scope_files(store, signer, scope, &mut report)?;
        sign_secrets(store, signer, scope, &mut report)?;
    }
    Ok(report)
}

fn sign_scope_files(
    store: &Store,
    signer: &Signer,
    scope: &Scope,
    report: &mut SignReport,
) -> Result<(), AdminError> {
    for kind in [ScopeFile::Writers, ScopeFile::Recipients] {
        let file = scope.file_path(kind);
        let text = match store.read_text(&file) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => continue,
            Err(source) => return Err(AdminError::Read { file, source }),
        };
        let Some(trust) = &store.signing().trust else {
            report.refused.push((
                file,
                "no trust root: cannot tell that the sign key is an admin (--trust FILE)"
                    .to_string(),
            ));
            continue;
        };
        if trust
            .signers()
            .authorize(
                signer.public_key().key_data(),
                None,
                signing::SCOPE_NAMESPACE,
                signing::now(),
            )
            .is_err()
        {
            // Not this key's to sign; but an admin's signature that holds
            // is not a problem for a writer's `sign`.
            let verifier = crate::writers::Verifier::new(trust, store.config());
            let bytes = crate::writers::ScopeFileBytes {
                text: Some(text.clone().into_bytes()),
                sig: store
                    .read_file(&scope.sig_path(kind), signing::sshsig::MAX_SIGNATURE_BYTES)
                    .ok(),
            };
            if verifier.judge_scope_file(scope, kind, &bytes).is_ok() {
                report.already.push(file);
                continue;
            }
            report.refused.push((
                file,
                format!(
                    "the sign key {} is not an admin in {}",
                    signer.fingerprint(),
                    trust.path().display()
                ),
            ));
            continue;
        }
        let bound = matches!(ScopeHeader::parse(&text), Some(Ok(h))
            if h.binds(kind, store.config().store_id.as_deref(), scope).is_ok());
        let sig_file = scope.sig_path(kind);
        if bound && signed_by(store, &sig_file, text.as_bytes(), Namespace::Scope, signer) {
            report.already.push(file);
            continue;
        }
        // Signed as it is only when another admin's signature vouches for
        // these bytes; a file edited since (or never signed) gets the next
        // generation, so that no verifier takes it for a rollback.
        let vouched = bound
            && store
                .read_file(&sig_file, signing::sshsig::MAX_SIGNATURE_BYTES)
                .ok()
                .is_some_and(|sig| {
                    signing::accept(
                        Some(&sig),
                        text.as_bytes(),
                        Namespace::Scope,
                        trust.signers(),
                        signing::now(),
                    )
                    .is_ok()
                });
        if !vouched {
            store.write_scope_file(scope, kind, &text)?;
            report.signed.push(file);
            continue;
        }
        let sig = signer
            .sign(Namespace::Scope, text.as_bytes())
            .map_err(|source| WriteError::Sign {
                file: file.clone(),
                source: Box::new(source),
            })?;
        write_sig(store, &sig_file, &sig)?;
        report.signed.push(file);
    }
    Ok(())
}

/// Whether the `.sig` at `sig_file` is a good signature of `bytes` by
/// `signer`.
fn signed_by(store: &Store, sig_file: &Path, bytes: &[u8], ns: Namespace, signer: &Signer) -> bool {
    store
        .read_file(sig_file, signing::sshsig::MAX_SIGNATURE_BYTES)
        .ok()
        .and_then(|sig| signing::sshsig::verify(&sig, bytes, ns).ok())
        .is_some_and(|v| v.fingerprint == signer.fingerprint())
}

fn write_sig(store: &Store, sig_file: &Path, sig: &str) -> Result<(), WriteError> {
    store.write_signatures(&[(sig_file.to_path_buf(), sig.to_string())])
}

fn sign_secrets(
    store: &Store,
    signer: &Signer,
    scope: &Scope,
    report: &mut SignReport,
) -> Result<(), AdminError> {
    let ids = store
        .secret_ids(Some(scope))
        .map_err(|e| AdminError::Read {
            file: e.file.clone(),
            source: StoreError::Io(e.source),
        })?;
    if ids.is_empty() {
        return Ok(());
    }
    let writers_file = scope.writers_path();
    let text = match store.read_file(&writers_file, MAX_TEXT_FILE_BYTES) {
        Ok(b) => String::from_utf8(b).unwrap_or_default(),
        Err(e) if e.is_not_found() => String::new(),
        Err(source) => {
            return Err(AdminError::Read {
                file: writers_file,
                source,
            })
        }
    };
    let writers = AllowedSigners::parse(&text).unwrap_or_default();
    let allowed = writers.authorize(
        signer.public_key().key_data(),
        None,
        signing::SECRET_NAMESPACE,
        signing::now(),
    );
    if let Err(reason) = allowed {
        let why = format!(
            "the sign key {} is not a writer of {scope} ({}): {reason}",
            signer.fingerprint(),
            writers_file.display()
        );
        report
            .refused
            .extend(ids.iter().map(|id| (id.path(), why.clone())));
        return Ok(());
    }
    enum Outcome {
        Already,
        Sign(String),
        Refused(String),
    }
    let results: Vec<Result<Outcome, AdminError>> = ids
        .par_iter()
        .map(|id| {
            let file = id.path();
            let bytes = store
                .read_file(&file, store.config().max_file_bytes())
                .map_err(|source| AdminError::Read {
                    file: file.clone(),
                    source,
                })?;
            if signed_by(store, &id.sig_path(), &bytes, Namespace::Secret, signer) {
                return Ok(Outcome::Already);
            }
            // A signature that no longer covers the file: its bytes changed
            // after a writer signed them (a forgery through stock age, say).
            // Signing over it would launder the change.
            if let Ok(sig) = store.read_file(&id.sig_path(), signing::sshsig::MAX_SIGNATURE_BYTES) {
                if signing::sshsig::verify(&sig, &bytes, Namespace::Secret).is_err() {
                    return Ok(Outcome::Refused(format!(
                        "its signature ({}) no longer covers it: the file changed after it was signed; review the change (`git log -p -- {}`), then delete the .sig to sign it",
                        id.sig_path().display(),
                        file.display()
                    )));
                }
            }
            let sig = signer
                .sign(Namespace::Secret, &bytes)
                .map_err(|source| WriteError::Sign {
                        file,
                        source: Box::new(source),
                    })?;
            Ok(Outcome::Sign(sig))
        })
        .collect();
    let mut writes = Vec::new();
    for (id, result) in ids.iter().zip(results) {
        match result? {
            Outcome::Already => report.already.push(id.path()),
            Outcome::Refused(why) => report.refused.push((id.path(), why)),
            Outcome::Sign(sig) => {
                writes.push((id.sig_path(), sig));
                report.signed.push(id.path());
            }
        }
    }
    store.write_signatures(&writes)?;
    Ok(())
}
