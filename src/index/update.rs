//! Building the next generation: from a batch of changed paths, or from a
//! full walk (a rescan, the warm start); files whose bytes are unchanged are
//! only hashed.
//!
//! Under a trust root a batch also re-judges what its signature files
//! cover: a changed `.sig` its secret, a changed scope file (`writers.txt`,
//! `recipients.txt`, their `.sig`) every secret of its scope. Files whose
//! bytes are unchanged are judged again without being decrypted.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::files::{is_file_like, is_file_like_as};
use super::policies::{is_policy, is_policy_as};
use super::signatures::Signatures;
use super::{scope_fingerprints, Index, UpdateKind, UpdateStats};
use crate::identity::Identities;
use crate::scope::{Scope, SecretId, StorePath};
use crate::store::{ScanError, Store};

/// The scope whose verdicts a file of this kind takes part in.
fn signed_scope(what: &StorePath) -> Option<&Scope> {
    match what {
        StorePath::Secret(id) | StorePath::SecretSig(id) => Some(&id.scope),
        StorePath::Recipients(scope)
        | StorePath::Writers(scope)
        | StorePath::ScopeSig(scope, _) => Some(scope),
        _ => None,
    }
}

/// Whether a file is one of a scope's signed files.
fn is_scope_file(what: &StorePath) -> bool {
    matches!(
        what,
        StorePath::Recipients(_) | StorePath::Writers(_) | StorePath::ScopeSig(..)
    )
}

impl Index {
    /// The next generation after a batch of changed paths (relative to the
    /// store root). A path that no longer exists removes every entry at or
    /// below it (a folder moved out of the tree arrives as one event); a
    /// folder that appeared is walked.
    pub fn update(
        &self,
        store: &Store,
        identities: &Identities,
        changed: &BTreeSet<PathBuf>,
    ) -> (Index, UpdateStats) {
        let start = Instant::now();
        let mut candidates = BTreeSet::new();
        let mut gone = Vec::new();
        let mut dirs = Vec::new();
        let mut fingerprints_changed = false;
        let verifies = self.signatures.is_some();
        // Under a trust root: scopes whose signed files may have changed.
        let mut scopes: BTreeSet<Scope> = BTreeSet::new();
        for rel in changed {
            let what = StorePath::classify(rel);
            match fs::symlink_metadata(store.root().join(rel)) {
                Ok(m) if m.is_dir() => dirs.push(rel.clone()),
                Ok(_) => {
                    if is_file_like(rel) {
                        candidates.insert(rel.clone());
                    }
                }
                Err(_) => gone.push(rel.clone()),
            }
            if matches!(what, StorePath::Recipients(_)) {
                fingerprints_changed = true;
            }
            if verifies {
                match &what {
                    // A signature, there or gone, re-judges its secret.
                    StorePath::SecretSig(id) => {
                        candidates.insert(id.path());
                    }
                    what if is_scope_file(what) => {
                        scopes.extend(signed_scope(what).cloned());
                    }
                    _ => {}
                }
            }
        }
        let mut policies: BTreeSet<PathBuf> =
            changed.iter().filter(|p| is_policy(p)).cloned().collect();
        // A folder that came or went may hold a recipients file.
        fingerprints_changed |= !dirs.is_empty();
        if !dirs.is_empty() {
            // A folder that appeared (moved in, or created with its files
            // inside one debounce window) is walked once for all of them.
            if let Ok(entries) = store.scan() {
                for e in entries {
                    if !dirs.iter().any(|d| e.rel.starts_with(d)) {
                        continue;
                    }
                    if verifies {
                        match &e.what {
                            StorePath::SecretSig(id) => {
                                candidates.insert(id.path());
                            }
                            what if is_scope_file(what) => {
                                scopes.extend(signed_scope(what).cloned());
                            }
                            _ => {}
                        }
                    }
                    if is_file_like_as(&e.rel, &e.what) {
                        candidates.insert(e.rel);
                    } else if is_policy_as(&e.what) {
                        policies.insert(e.rel);
                    }
                }
            }
        }
        let mut next = self.successor();
        let mut stats = UpdateStats::new(UpdateKind::Incremental);
        for rel in &gone {
            next.remove_under(rel, &mut stats);
        }
        if let Some(signatures) = next.signatures.as_mut() {
            let signatures = Arc::make_mut(signatures);
            // A folder that came or went may have held a scope's files.
            for rel in dirs.iter().chain(&gone) {
                scopes.extend(signatures.scopes_at_or_below(rel));
            }
            // A secret of a scope not read yet.
            for rel in &candidates {
                if let Some(scope) = signed_scope(&StorePath::classify(rel)) {
                    if !signatures.knows(scope) {
                        scopes.insert(scope.clone());
                    }
                }
            }
            let scopes: Vec<&Scope> = scopes.iter().collect();
            let changed = signatures.load_scopes(store, &scopes);
            for (scope, changed) in scopes.into_iter().zip(changed) {
                if changed {
                    // Every secret of the scope is judged again.
                    if let Ok(ids) = store.secret_ids(Some(scope)) {
                        candidates.extend(ids.iter().map(SecretId::path));
                    }
                }
            }
        }
        next.refresh_policies(store, policies, &mut stats);
        let candidates = candidates
            .into_iter()
            .map(|rel| {
                let what = StorePath::classify(&rel);
                (rel, what)
            })
            .collect();
        next.apply(store, identities, candidates, false, &mut stats);
        // Recipients changed, or a secret of a scope not seen before.
        let new_scope = stats
            .changed
            .iter()
            .any(|id| !next.fingerprints.contains_key(&id.scope));
        if fingerprints_changed || new_scope {
            next.fingerprints = scope_fingerprints(store, next.ids());
        }
        next.resolve_policies();
        stats.duration = start.elapsed();
        next.count(&stats);
        (next, stats)
    }

    /// The next generation after a full walk: files whose bytes changed are
    /// decrypted, files that are gone leave. With `retry_failed`, files whose
    /// current bytes failed are decrypted again (new identities, SIGHUP).
    pub fn rescan(
        &self,
        store: &Store,
        identities: &Identities,
        retry_failed: bool,
    ) -> Result<(Index, UpdateStats), ScanError> {
        let (mut next, stats) =
            self.rescan_inner(store, identities, UpdateKind::Rescan, retry_failed)?;
        next.counters.rescans += 1;
        next.count(&stats);
        Ok((next, stats))
    }

    pub(super) fn rescan_inner(
        &self,
        store: &Store,
        identities: &Identities,
        kind: UpdateKind,
        retry_failed: bool,
    ) -> Result<(Index, UpdateStats), ScanError> {
        let start = Instant::now();
        let entries = store.scan()?;
        let mut next = self.successor();
        let mut stats = UpdateStats::new(kind);
        // Every scope's signed files are read again: each file's verdict is
        // then out of date exactly when what it rests on changed.
        next.signatures = Signatures::new(store).map(|mut signatures| {
            let scopes: BTreeSet<&Scope> = entries
                .iter()
                .filter_map(|e| signed_scope(&e.what))
                .collect();
            let scopes: Vec<&Scope> = scopes.into_iter().collect();
            signatures.load_scopes(store, &scopes);
            Arc::new(signatures)
        });
        if kind != UpdateKind::Cold {
            let present: BTreeSet<&Path> = entries.iter().map(|e| e.rel.as_path()).collect();
            let mut vanished: Vec<PathBuf> = next
                .failed
                .keys()
                .chain(next.problems.keys())
                .chain(next.policies.keys())
                .filter(|p| !present.contains(p.as_path()))
                .cloned()
                .collect();
            vanished.extend(
                next.ids()
                    .map(SecretId::path)
                    .filter(|p| !present.contains(p.as_path())),
            );
            for rel in &vanished {
                next.remove_under(rel, &mut stats);
            }
        }
        let policies = entries
            .iter()
            .filter(|e| is_policy_as(&e.what))
            .map(|e| e.rel.clone())
            .collect();
        next.refresh_policies(store, policies, &mut stats);
        let candidates = entries
            .into_iter()
            .filter(|e| is_file_like_as(&e.rel, &e.what))
            .map(|e| (e.rel, e.what))
            .collect();
        next.apply(store, identities, candidates, retry_failed, &mut stats);
        next.fingerprints = scope_fingerprints(store, next.ids());
        next.resolve_policies();
        stats.duration = start.elapsed();
        Ok((next, stats))
    }
}
