//! `meshseal rekey`: re-encrypt secrets to their scope's current recipients.
//!
//! All or nothing where it can be: every file that will be rewritten is
//! decrypted and validated first; if any one fails, nothing is written.
//! Only then are the files re-encrypted (in parallel) and written as one
//! durable batch ([`Store::put_many`]: staged, one flush of the file system,
//! renamed, each folder flushed once), so a failure while staging (a full
//! disk) still writes nothing; only a failure among the renames leaves a
//! partly rekeyed store, whose replaced files are named.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::document::Document;
use crate::identity::Identities;
use crate::problem::Diagnostic;
use crate::recipients::{Recipient, RecipientSet};
use crate::scope::{Scope, SecretId};
use crate::store::{LoadError, RecipientsError, ScanError, Store, WriteError};

/// What to rekey.
#[derive(Debug, Clone)]
pub enum Selection {
    /// One scope.
    Scope(Scope),
    /// Every scope in the store.
    All,
}

/// Why a secret cannot be rekeyed.
#[derive(Debug, Error)]
pub enum RekeyError {
    /// The store's secrets could not be listed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A scope's recipients cannot be read, or list nobody.
    #[error(transparent)]
    Recipients(#[from] RecipientsError),
    /// A secret does not decrypt or is invalid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A secret could not be rewritten.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Under a trust root, a secret that does not verify: rekeying it would
    /// sign whatever a pusher put there (SPEC 9).
    #[error("not rekeyed: {source}")]
    Refused {
        /// The secret's file.
        file: std::path::PathBuf,
        /// Why it does not verify.
        #[source]
        source: crate::writers::Refusal,
    },
}

impl RekeyError {
    fn source_diagnostic(&self) -> &dyn Diagnostic {
        match self {
            RekeyError::Scan(e) => e,
            RekeyError::Recipients(e) => e,
            RekeyError::Load(e) => e,
            RekeyError::Write(e) => e,
            RekeyError::Refused { source, .. } => source,
        }
    }
}

impl Diagnostic for RekeyError {
    fn code(&self) -> &'static str {
        self.source_diagnostic().code()
    }

    fn hint(&self) -> Option<String> {
        self.source_diagnostic().hint()
    }

    fn line(&self) -> Option<usize> {
        self.source_diagnostic().line()
    }

    fn file(&self) -> Option<&Path> {
        match self {
            RekeyError::Refused { file, .. } => Some(file),
            _ => self.source_diagnostic().file(),
        }
    }
}

/// The keys a scope's `recipients.txt` gained and lost since the commit
/// that last wrote the secrets about to be rekeyed (SPEC 9): what a
/// teammate must see before re-encrypting to a list anyone could push.
#[derive(Debug, Default, Clone)]
pub struct KeyDiff {
    /// The scope.
    pub scope: Option<Scope>,
    /// The commit the comparison is against.
    pub commit: String,
    /// Keys in the current file but not at that commit.
    pub added: Vec<Recipient>,
    /// Keys at that commit but not in the current file.
    pub removed: Vec<Recipient>,
}

/// For each scope of `ids`, the [`KeyDiff`] against the commit that last
/// wrote any of its secrets; scopes outside git history are left out.
pub fn key_diffs(store: &Store, ids: &[SecretId]) -> Vec<KeyDiff> {
    let mut scopes: BTreeMap<&Scope, Vec<String>> = BTreeMap::new();
    for id in ids {
        scopes
            .entry(&id.scope)
            .or_default()
            .push(id.path().to_string_lossy().into_owned());
    }
    let mut diffs = Vec::new();
    for (scope, paths) in scopes {
        let mut args = vec!["log", "-1", "--format=%H", "--"];
        args.extend(paths.iter().map(String::as_str));
        let Ok(out) = crate::git::git(store.root(), &args) else {
            continue;
        };
        let commit = String::from_utf8_lossy(&out).trim().to_string();
        if commit.is_empty() {
            continue;
        }
        let rel = scope.recipients_path();
        let spec = format!("{commit}:./{}", rel.to_string_lossy());
        let old = crate::git::git(store.root(), &["show", &spec])
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| RecipientSet::parse(&t).ok())
            .unwrap_or_else(|| RecipientSet::from_recipients(Vec::new()));
        let Ok(now) = store.recipients(scope) else {
            continue;
        };
        let added: Vec<Recipient> = now.iter().filter(|k| !old.contains(k)).cloned().collect();
        let removed: Vec<Recipient> = old.iter().filter(|k| !now.contains(k)).cloned().collect();
        diffs.push(KeyDiff {
            scope: Some(scope.clone()),
            commit,
            added,
            removed,
        });
    }
    diffs
}

/// Secrets of the selection that need rekeying: stale ones (recipient
/// fingerprint differs, no metadata, or not armored), or all with `force`.
pub fn plan(
    store: &Store,
    selection: &Selection,
    force: bool,
) -> Result<Vec<SecretId>, Vec<RekeyError>> {
    let ids = match selection {
        Selection::Scope(s) => store.secret_ids(Some(s)),
        Selection::All => store.secret_ids(None),
    }
    .map_err(|e| vec![e.into()])?;
    if force {
        return Ok(ids);
    }
    let mut fingerprints = BTreeMap::new();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for id in ids {
        let fp = match fingerprints.entry(id.scope.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => match store.recipients(&id.scope) {
                Ok(set) => e.insert(set.fingerprint()),
                Err(err) => {
                    problems.push(err.into());
                    continue;
                }
            },
        };
        match store.inspect(&id) {
            Ok((header, _)) => {
                let fresh = header.armored
                    && header
                        .metadata
                        .as_ref()
                        .is_some_and(|m| &m.recipients_fingerprint == fp);
                if !fresh {
                    out.push(id);
                }
            }
            // Unreadable headers are rekeyed too; decryption below decides.
            Err(_) => out.push(id),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Under a trust root, the secrets of `ids` that do not verify as they
/// are (a v1 file counts as verified here, so that a store that requires
/// signatures can be rekeyed to v2).
fn unverified(store: &Store, ids: &[SecretId]) -> Vec<RekeyError> {
    let Some(trust) = &store.signing().trust else {
        return Vec::new();
    };
    let config = crate::config::Config {
        signatures: crate::config::Signatures::Optional,
        ..store.config().clone()
    };
    let mut verifier = crate::writers::Verifier::new(trust, &config);
    let read = |rel: &Path| match store.read_file(rel, crate::store::MAX_TEXT_FILE_BYTES) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    };
    for scope in ids.iter().map(|id| &id.scope).collect::<BTreeSet<_>>() {
        verifier.load_scope(scope, &read);
    }
    ids.par_iter()
        .filter_map(|id| {
            let bytes = store.read_secret_file(id).ok()?;
            let sig = store
                .read_file(&id.sig_path(), crate::signing::sshsig::MAX_SIGNATURE_BYTES)
                .ok();
            verifier
                .secret(id, &bytes, sig.as_deref())
                .err()
                .map(|source| RekeyError::Refused {
                    file: id.path(),
                    source,
                })
        })
        .collect()
}

/// How a rekey failed.
#[derive(Debug)]
pub enum RekeyFailure {
    /// A file could not be decrypted or verified, a scope has no
    /// recipients, or writing failed before the first file was replaced (a
    /// full disk while staging): no file was written.
    NothingWritten(Vec<RekeyError>),
    /// Writing failed part way, among the renames (permissions, a folder
    /// that cannot be flushed): the files of `rekeyed` hold the new
    /// encryption, the rest the old one; both decrypt.
    Partial {
        /// Why.
        errors: Vec<RekeyError>,
        /// The files replaced before the failure.
        rekeyed: Vec<PathBuf>,
    },
}

/// Decrypts every secret in `ids`, then rewrites them all. If any secret
/// cannot be decrypted or validated, or any scope has no recipients, nothing
/// is written.
pub fn rekey(
    store: &Store,
    ids: &[SecretId],
    identities: &Identities,
) -> Result<usize, RekeyFailure> {
    rekey_with_progress(store, ids, identities, &|| {})
}

/// [`rekey`], calling `progress` once per file decrypted and once per file
/// encrypted and staged (so `2 * ids.len()` calls in all on success); the
/// staged files are then replaced together, as one durable batch
/// ([`Store::put_many`]).
pub fn rekey_with_progress(
    store: &Store,
    ids: &[SecretId],
    identities: &Identities,
    progress: &(dyn Fn() + Sync),
) -> Result<usize, RekeyFailure> {
    let loaded: Vec<_> = ids
        .par_iter()
        .map(|id| {
            let r = store.load(id, identities);
            progress();
            r
        })
        .collect();
    let mut docs: Vec<Document> = Vec::with_capacity(loaded.len());
    // What each file held before: how a failed batch tells what it replaced.
    let mut before: Vec<[u8; 32]> = Vec::with_capacity(loaded.len());
    let mut problems: Vec<RekeyError> = Vec::new();
    for result in loaded {
        match result {
            Ok(l) => {
                docs.push(l.doc);
                before.push(l.file_sha256);
            }
            Err(e) => problems.push(e.into()),
        }
    }
    problems.extend(unverified(store, ids));
    if !problems.is_empty() {
        return Err(RekeyFailure::NothingWritten(problems));
    }
    for scope in docs.iter().map(|d| &d.id.scope).collect::<BTreeSet<_>>() {
        let nobody = |e: RecipientsError| RekeyFailure::NothingWritten(vec![e.into()]);
        let set = store.recipients(scope).map_err(nobody)?;
        set.require_some()
            .map_err(|source| RecipientsError::Invalid {
                file: scope.recipients_path(),
                source,
            })
            .map_err(nobody)?;
    }
    // Without identities `put_many` compares nothing: every planned file is
    // rewritten, fresh ones too under `--force`.
    match store.put_many_with_progress(&docs, None, progress) {
        Ok(_) => Ok(docs.len()),
        // The batch says how many files it replaced before failing, not
        // which (its renames run on two threads): those are named by their
        // bytes, read again.
        Err(e @ WriteError::Batch { renamed, .. }) if renamed > 0 => Err(RekeyFailure::Partial {
            rekeyed: replaced(store, &docs, &before),
            errors: vec![e.into()],
        }),
        // Anything else fails before the first file is replaced.
        Err(e) => Err(RekeyFailure::NothingWritten(vec![e.into()])),
    }
}

/// After a batch that replaced some files and failed, the files of `docs`
/// whose bytes are no longer those of `before` (their sha256 when read):
/// the ones it replaced. A rekey always changes a file's bytes (a new file
/// key); a file that cannot be read now counts as replaced.
fn replaced(store: &Store, docs: &[Document], before: &[[u8; 32]]) -> Vec<PathBuf> {
    docs.par_iter()
        .zip(before)
        .filter(|(doc, old)| {
            store.read_secret_file(&doc.id).map_or(true, |bytes| {
                Sha256::digest(&bytes).as_slice() != old.as_slice()
            })
        })
        .map(|(doc, _)| doc.id.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::document::SecretData;
    use crate::store::Loaded;

    /// A store with one mesh `m` encrypted to a fresh identity, and
    /// `count` secrets in it.
    fn store(count: usize) -> (tempfile::TempDir, Store, Identities, Vec<SecretId>) {
        let (dir, store, identities) = crate::store::tests::scratch();
        let docs: Vec<Document> = (0..count)
            .map(|i| {
                let id = SecretId::new(Scope::mesh("m").unwrap(), &format!("s{i}")).unwrap();
                Document::new(id, SecretData::new(format!("v{i}").into_bytes()))
            })
            .collect();
        store.put_many(&docs, None).unwrap();
        let ids = docs.into_iter().map(|d| d.id).collect();
        (dir, store, identities, ids)
    }

    fn bytes(store: &Store, ids: &[SecretId]) -> Vec<Vec<u8>> {
        ids.iter()
            .map(|id| store.read_secret_file(id).unwrap())
            .collect()
    }

    #[test]
    fn a_forced_rekey_rewrites_every_file_and_reports_twice_per_file() {
        let (_dir, store, identities, ids) = store(12);
        let planned = plan(&store, &Selection::All, true).unwrap();
        assert_eq!(planned.len(), ids.len());
        assert!(plan(&store, &Selection::All, false).unwrap().is_empty());
        let old = bytes(&store, &ids);
        let calls = AtomicUsize::new(0);
        let n = rekey_with_progress(&store, &planned, &identities, &|| {
            calls.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(n, ids.len());
        assert_eq!(calls.into_inner(), 2 * ids.len());
        for ((id, old), new) in ids.iter().zip(&old).zip(bytes(&store, &ids)) {
            assert_ne!(old, &new, "{id} was not rewritten");
            let loaded = store.load(id, &identities).unwrap();
            assert_eq!(
                loaded.doc.data.expose(),
                format!("v{}", &id.name[1..]).as_bytes()
            );
        }
    }

    #[test]
    fn a_rekey_that_cannot_decrypt_one_file_writes_none() {
        let (_dir, store, identities, ids) = store(4);
        let old = bytes(&store, &ids);
        let (other, _) = crate::identity::generate();
        let wrong = Identities::from_age_text(&other).unwrap();
        match rekey(&store, &ids, &wrong) {
            Err(RekeyFailure::NothingWritten(errors)) => assert_eq!(errors.len(), ids.len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(bytes(&store, &ids), old);
        assert!(rekey(&store, &ids, &identities).is_ok());
    }

    #[test]
    fn after_a_failed_batch_the_replaced_files_are_those_whose_bytes_changed() {
        let (_dir, store, identities, ids) = store(3);
        let loaded: Vec<Loaded> = ids
            .iter()
            .map(|id| store.load(id, &identities).unwrap())
            .collect();
        let before: Vec<[u8; 32]> = loaded.iter().map(|l| l.file_sha256).collect();
        let docs: Vec<Document> = loaded.into_iter().map(|l| l.doc).collect();
        assert!(replaced(&store, &docs, &before).is_empty());
        // One file rewritten (as a batch that failed after its rename).
        store.put(&docs[1], None).unwrap();
        assert_eq!(replaced(&store, &docs, &before), vec![ids[1].path()]);
    }
}
