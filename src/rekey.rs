//! `meshseal rekey`: re-encrypt secrets to their scope's current recipients.
//!
//! All or nothing: every file that will be rewritten is decrypted and
//! validated first; if any one fails, nothing is written. Only then are the
//! files re-encrypted (in parallel) and replaced, each atomically.

use rayon::prelude::*;

use crate::identity::Identities;
use crate::problem::Problem;
use crate::scope::{Scope, SecretId};
use crate::store::{Loaded, Store};

/// What to rekey.
#[derive(Debug, Clone)]
pub enum Selection {
    /// One scope.
    Scope(Scope),
    /// Every scope in the store.
    All,
}

/// Secrets of the selection that need rekeying: stale ones (recipient
/// fingerprint differs, no metadata, or not armored), or all with `force`.
pub fn plan(
    store: &Store,
    selection: &Selection,
    force: bool,
) -> Result<Vec<SecretId>, Vec<Problem>> {
    let ids = match selection {
        Selection::Scope(s) => store.secret_ids(Some(s)),
        Selection::All => store.secret_ids(None),
    }
    .map_err(|e| vec![Problem::from(e)])?;
    if force {
        return Ok(ids);
    }
    let mut fingerprints = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for id in ids {
        let fp = match fingerprints.entry(id.scope.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => match store.recipients(&id.scope) {
                Ok(set) => e.insert(set.fingerprint()),
                Err(e) => {
                    problems.push(Problem::from(e));
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

/// How a rekey failed.
#[derive(Debug)]
pub enum RekeyFailure {
    /// A file could not be decrypted or a scope has no recipients: no file
    /// was written.
    NothingWritten(Vec<Problem>),
    /// Writing failed part way (disk full, permissions): some files hold the
    /// new encryption, the rest the old one; both decrypt.
    Partial(Vec<Problem>),
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
/// written (so `2 * ids.len()` calls in all on success).
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
    let problems: Vec<Problem> = loaded
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| Problem::report(e)))
        .collect();
    if !problems.is_empty() {
        return Err(RekeyFailure::NothingWritten(problems));
    }
    let docs: Vec<Loaded> = loaded
        .into_iter()
        .map(|r| r.expect("checked above"))
        .collect();
    for scope in docs
        .iter()
        .map(|l| &l.doc.id.scope)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let set = store
            .recipients(scope)
            .map_err(|e| RekeyFailure::NothingWritten(vec![e.into()]))?;
        set.require_some().map_err(|e| {
            RekeyFailure::NothingWritten(vec![Problem::at(scope.recipients_path(), &e)])
        })?;
    }
    let failures: Vec<Problem> = docs
        .par_iter()
        .filter_map(|l| {
            let r = store.put(&l.doc, None).err();
            progress();
            r.map(Problem::from)
        })
        .collect();
    if failures.is_empty() {
        Ok(docs.len())
    } else {
        Err(RekeyFailure::Partial(failures))
    }
}
