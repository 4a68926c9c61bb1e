//! The policies of the index: the last good parse of every policy file,
//! and, for each generation, which of their references do not resolve.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{keys_under, Index, UpdateStats};
use crate::policy::{Policy, PolicyError, PolicyKind, Presence};
use crate::problem::Problem;
use crate::scope::StorePath;
use crate::store::Store;

impl Index {
    /// The resources of a mesh (last good versions), sorted by file and
    /// document.
    pub fn policies<'a>(&'a self, mesh: &'a str) -> impl Iterator<Item = &'a Arc<Policy>> {
        self.policies.values().filter(move |p| p.mesh == mesh)
    }

    /// The problems of one resource: its file's parse problems, then its
    /// references that do not resolve.
    pub fn policy_problems<'a>(&'a self, policy: &Policy) -> impl Iterator<Item = &'a Problem> {
        keys_under(&self.problems, &policy.path())
            .into_iter()
            .filter_map(|k| self.problems.get(&k))
            .chain(self.unresolved.get(&policy.key()).into_iter().flatten())
    }

    /// Re-reads policy files: a good new version replaces the old one's
    /// resources, a bad one is recorded (every problem) and the last good
    /// version stays; a missing file leaves. The maps are keyed below the
    /// file (`<file>/<document>`, `<file>/problem-<n>`), so one file's
    /// entries sort together.
    pub(super) fn refresh_policies(
        &mut self,
        store: &Store,
        paths: BTreeSet<PathBuf>,
        stats: &mut UpdateStats,
    ) {
        for rel in paths {
            if !is_policy(&rel) {
                continue;
            }
            let text = match store.read_text(&rel) {
                Ok(t) => t,
                Err(e) if e.is_not_found() => {
                    for k in keys_under(&self.policies, &rel) {
                        self.policies.remove(&k);
                    }
                    self.clear_problems(&rel);
                    continue;
                }
                Err(e) => {
                    self.clear_problems(&rel);
                    self.record_problem(rel.join("problem-1"), Problem::at(&rel, &e), stats);
                    continue;
                }
            };
            match Policy::parse_file(&rel, &text) {
                None => {}
                Some(Ok(policies)) => {
                    self.clear_problems(&rel);
                    for k in keys_under(&self.policies, &rel) {
                        self.policies.remove(&k);
                    }
                    for p in policies {
                        self.policies.insert(p.key(), Arc::new(p));
                    }
                }
                Some(Err(errors)) => {
                    self.clear_problems(&rel);
                    for (n, e) in errors.iter().enumerate() {
                        let key = rel.join(format!("problem-{}", n + 1));
                        self.record_problem(key, Problem::report(e), stats);
                    }
                }
            }
        }
    }

    fn clear_problems(&mut self, rel: &Path) {
        self.problems.remove(rel);
        for k in keys_under(&self.problems, rel) {
            self.problems.remove(&k);
        }
    }

    pub(super) fn record_problem(
        &mut self,
        rel: PathBuf,
        problem: Problem,
        stats: &mut UpdateStats,
    ) {
        if self.problems.get(&rel) != Some(&problem) {
            stats.new_problems.push(problem.clone());
        }
        self.problems.insert(rel, problem);
    }

    /// Checks every resource's references against this generation's
    /// secrets, and that no two resources of a mesh share a kind and name.
    pub(super) fn resolve_policies(&mut self) {
        let secrets = &self.secrets;
        let failed = &self.failed;
        let mut unresolved: BTreeMap<PathBuf, Vec<Problem>> = BTreeMap::new();
        let mut seen: BTreeMap<(&str, &PolicyKind, &str), &Policy> = BTreeMap::new();
        for (key, policy) in self.policies.iter() {
            let rel = policy.path();
            let mut problems: Vec<Problem> = policy
                .resolve_with(&|id| {
                    if secrets.contains(id) {
                        Presence::Present
                    } else if failed.contains_key(&id.path()) {
                        // The file is there; this generation could not open it.
                        Presence::Undecryptable
                    } else {
                        Presence::Absent
                    }
                })
                .iter()
                .map(|e| Problem::at(&rel, e))
                .collect();
            let id = (policy.mesh.as_str(), &policy.kind, policy.name.as_str());
            if let Some(first) = seen.get(&id) {
                problems.push(Problem::at(&rel, &duplicate(policy, first)));
            } else {
                seen.insert(id, policy);
            }
            if !problems.is_empty() {
                unresolved.insert(key.clone(), problems);
            }
        }
        self.unresolved = unresolved;
    }
}

/// The error for a second resource of a kind and name in one mesh.
pub(crate) fn duplicate(policy: &Policy, first: &Policy) -> PolicyError {
    PolicyError::Duplicate {
        kind: policy.kind.as_str().to_string(),
        name: policy.name.clone(),
        mesh: policy.mesh.clone(),
        other: first.path().display().to_string(),
    }
}

/// Whether a path is a policy file (`mesh.yaml`, `mesh.toml`,
/// `policies/*.yaml|yml|toml`).
pub(super) fn is_policy(rel: &Path) -> bool {
    is_policy_as(&StorePath::classify(rel))
}

/// [`is_policy`] for a path the layout already classified as `what`.
pub(super) fn is_policy_as(what: &StorePath) -> bool {
    matches!(what, StorePath::Mesh(_) | StorePath::Policy { .. })
}
