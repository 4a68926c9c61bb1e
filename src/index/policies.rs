//! The policies of the index: the last good parse of every policy file,
//! and, for each generation, which of their references do not resolve.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Index, UpdateStats};
use crate::policy::Policy;
use crate::problem::Problem;
use crate::scope::StorePath;
use crate::store::Store;

impl Index {
    /// The policies of a mesh (last good versions), sorted by path.
    pub fn policies<'a>(&'a self, mesh: &'a str) -> impl Iterator<Item = &'a Arc<Policy>> {
        self.policies.values().filter(move |p| p.mesh == mesh)
    }

    /// The problems of one policy file.
    pub fn policy_problems<'a>(&'a self, policy: &Policy) -> impl Iterator<Item = &'a Problem> {
        let path = policy.path();
        self.problems
            .get(&path)
            .into_iter()
            .chain(self.unresolved.get(&path).into_iter().flatten())
    }

    /// Re-reads policy files: a good new version replaces the old one, a
    /// bad one is recorded and the last good version stays; a missing file
    /// leaves.
    pub(super) fn refresh_policies(
        &mut self,
        store: &Store,
        paths: BTreeSet<PathBuf>,
        stats: &mut UpdateStats,
    ) {
        for rel in paths {
            let (mesh, name) = match StorePath::classify(&rel) {
                StorePath::Mesh(mesh) => (mesh, None),
                StorePath::Policy { mesh, name } => (mesh, Some(name)),
                _ => continue,
            };
            let text = match store.read_text(&rel) {
                Ok(t) => t,
                Err(e) if e.is_not_found() => {
                    self.policies.remove(&rel);
                    self.problems.remove(&rel);
                    continue;
                }
                Err(e) => {
                    self.record_problem(rel.clone(), Problem::at(&rel, &e), stats);
                    continue;
                }
            };
            match Policy::parse(&text, &mesh, name.as_deref()) {
                Ok(policy) => {
                    self.problems.remove(&rel);
                    self.policies.insert(rel, Arc::new(policy));
                }
                Err(e) => {
                    let p = Problem::at(&rel, &e);
                    self.record_problem(rel, p, stats);
                }
            }
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

    /// Checks every policy's references against this generation's secrets.
    pub(super) fn resolve_policies(&mut self) {
        let secrets = &self.secrets;
        self.unresolved = self
            .policies
            .iter()
            .filter_map(|(rel, policy)| {
                let problems: Vec<Problem> = policy
                    .resolve(&|id| secrets.contains(id))
                    .iter()
                    .map(|e| Problem::at(rel, e))
                    .collect();
                (!problems.is_empty()).then(|| (rel.clone(), problems))
            })
            .collect();
    }
}

/// Whether a path is a policy file (`mesh.toml` or `policies/*.toml`).
pub(super) fn is_policy(rel: &Path) -> bool {
    matches!(
        StorePath::classify(rel),
        StorePath::Mesh(_) | StorePath::Policy { .. }
    )
}
