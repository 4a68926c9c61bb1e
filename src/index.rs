//! The in-memory index: every secret of a store, decrypted, validated and
//! bound to its path, as one immutable *generation*.
//!
//! A generation is never changed in place. An update (a batch of changed
//! paths, or a full rescan) builds the next generation from the current one
//! and the watcher publishes it with one atomic pointer swap (see [`Live`]),
//! so a reader holds either the old generation or the new one, never a mix.
//!
//! Why the index remembers the sha256 of every file's bytes, good or bad: a
//! `git checkout` that touches thousands of files overflows the kernel's event
//! queue and arrives as one "rescan" notice naming only some of them. A rescan
//! must then be cheap: read and hash every file, and decrypt only those whose
//! bytes changed. Decryption, not reading, is the cost.
//!
//! *Last good wins*: when a file's new bytes fail to load (corrupt, wrong key,
//! moved or renamed ciphertext, invalid document), the previous good entry
//! stays in the index and the problem is recorded beside it. Only a file that
//! is gone removes its entry.
//!
//! With a trust root (SPEC 9, [`signatures`]), "good" also means *verified*:
//! signed by a writer of the scope, and not a rollback against the highest
//! verified generation the index has seen for the path (kept for deleted
//! files too, and across restarts by the watcher's `--state`). A refused
//! version keeps the last good one served, except when the writer of that
//! one was removed from `writers.txt`: then nothing is served until the file
//! is re-signed.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use imbl::{OrdMap, OrdSet};
use rayon::prelude::*;

use crate::document::Document;
use crate::identity::Identities;
use crate::policy::Policy;
use crate::problem::Problem;
use crate::scope::{Scope, SecretId, StorePath};
use crate::store::{ScanError, Store};
use crate::writers::history::{Record, Seen};

mod files;
mod policies;
mod signatures;
mod update;

use signatures::Signatures;
pub use signatures::{Refused, Signed, REFUSAL_CODES};

/// One secret as served: the document and where it came from.
#[derive(Debug)]
pub struct Secret {
    /// The decrypted document (its data stays in a `SecretData`).
    pub doc: Document,
    /// sha256 of the ciphertext file this entry was decrypted from.
    pub file_sha256: [u8; 32],
    /// The recipients fingerprint from the header metadata, if any.
    pub recipients_fingerprint: Option<String>,
    /// How it verified, when the store is read under a trust root (`None`:
    /// not verified, as without one, or a cached entry not yet judged).
    /// Boxed: a verdict is 336 bytes, which every unsigned secret carried
    /// too (480 bytes a secret, 31 MiB at 100,000).
    pub signed: Option<Box<Signed>>,
}

/// A secret as an element of the index's set, ordered by its id.
///
/// Why a set of `Arc<Secret>` and not a map from `SecretId`: the id is
/// already inside the document, and a map would store a second copy of it
/// (two more allocations) and a 56-byte entry per secret in its B-tree
/// nodes instead of 8. At 100,000 secrets that is about 15 MiB.
#[derive(Debug, Clone)]
struct Entry(Arc<Secret>);

impl Entry {
    fn id(&self) -> &SecretId {
        &self.0.doc.id
    }
}

impl Borrow<SecretId> for Entry {
    fn borrow(&self) -> &SecretId {
        self.id()
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.id().cmp(other.id())
    }
}

/// How a generation came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// The first, full load.
    Cold,
    /// A batch of changed paths.
    Incremental,
    /// A full walk after an event overflow, a watcher error or SIGHUP.
    Rescan,
    /// The first load of a restart, reusing the state cache.
    Warm,
}

impl UpdateKind {
    /// Lowercase name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Cold => "cold",
            UpdateKind::Incremental => "incremental",
            UpdateKind::Rescan => "rescan",
            UpdateKind::Warm => "warm",
        }
    }
}

/// What one update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateStats {
    /// How the generation was built.
    pub kind: UpdateKind,
    /// Files read and hashed.
    pub hashed: usize,
    /// Files decrypted (their bytes were new).
    pub decrypted: usize,
    /// Secrets added or replaced.
    pub changed: Vec<SecretId>,
    /// Secrets removed (their file is gone).
    pub removed: Vec<SecretId>,
    /// Problems new in this update (a file whose new bytes failed to load).
    pub new_problems: Vec<Problem>,
    /// Secret files refused by signature in this update for which no
    /// version is served (none was good, or its writer was removed).
    pub unserved: BTreeSet<PathBuf>,
    /// Wall time of the update.
    pub duration: Duration,
}

/// Counters carried from generation to generation, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Updates after the cold load.
    pub updates: u64,
    /// Full rescans after the cold load.
    pub rescans: u64,
    /// Signature refusals by reason ([`REFUSAL_CODES`]), counted each time
    /// a file's verdict became a new refusal.
    pub refusals: [u64; REFUSAL_CODES.len()],
    /// Files that failed to load, counted each time new bytes failed.
    pub load_errors: u64,
    /// Files decrypted since start.
    pub decrypted: u64,
    /// Duration of the cold load.
    pub cold_load: Duration,
    /// Duration of the latest update.
    pub last_update: Duration,
}

/// One immutable generation of the index.
#[derive(Debug, Default)]
pub struct Index {
    generation: u64,
    // Persistent maps: the next generation shares all unchanged entries, so
    // building it costs O(changes · log n), not a copy of the whole store.
    secrets: OrdSet<Entry>,
    /// The bytes of files whose current version failed to load or was
    /// refused. The bytes of a good file are known from its secret
    /// (`Secret::file_sha256`): its path follows from its id, so the index
    /// keeps no path per secret.
    failed: OrdMap<PathBuf, files::Failed>,
    problems: OrdMap<PathBuf, Problem>,
    fingerprints: BTreeMap<Scope, String>,
    counters: Counters,
    /// Zone mode: repository secrets not served because a zone-local secret
    /// of the same name exists.
    conflicts: Vec<SecretId>,
    /// The last good parse of each policy file (`mesh.toml`, `policies/*.toml`).
    policies: OrdMap<PathBuf, Arc<Policy>>,
    /// References of each policy that do not resolve against this
    /// generation's secrets (recomputed for every generation).
    unresolved: BTreeMap<PathBuf, Vec<Problem>>,
    /// With a trust root: the verifier and each scope's verdict.
    signatures: Option<Arc<Signatures>>,
    /// With a trust root: the highest verified generation of each secret
    /// path, and the bytes seen at it; kept when the file goes.
    seen: Record,
    /// How many times `seen` changed (the watcher saves it when it did).
    seen_changes: u64,
    /// Secret files whose current version is refused by signature.
    refused: OrdMap<PathBuf, Arc<Refused>>,
    /// Verified versions no longer served because their writer was
    /// removed: served again, without decrypting, once re-signed.
    withheld: OrdMap<PathBuf, Arc<Secret>>,
}

/// The published generation, swapped atomically; readers never block.
pub type Live = ArcSwap<Index>;

impl Index {
    /// Loads the whole store in parallel: generation 1.
    pub fn load(store: &Store, identities: &Identities) -> Result<Index, ScanError> {
        Index::default().first_load(store, identities, UpdateKind::Cold)
    }

    /// Loads the whole store as [`Index::load`] does, reusing `warm.secrets`
    /// (a watcher's state cache, each bound to its path): a file whose bytes
    /// hash to a cached secret's is not decrypted, every other file is, and
    /// cached secrets whose file is gone or changed are not served. Under a
    /// trust root every file is verified all the same, and judged against
    /// the generations `warm.seen` recorded. Generation 1.
    pub fn load_warm(
        store: &Store,
        identities: &Identities,
        warm: Warm,
    ) -> Result<Index, ScanError> {
        let mut seed = Index::default();
        for secret in warm.secrets {
            seed.secrets.insert(Entry(Arc::new(secret)));
        }
        seed.seen = warm.seen.into_iter().collect();
        seed.first_load(store, identities, UpdateKind::Warm)
    }

    /// Generation 1 from `self` (empty, or seeded with cached secrets).
    fn first_load(
        self,
        store: &Store,
        identities: &Identities,
        kind: UpdateKind,
    ) -> Result<Index, ScanError> {
        let start = Instant::now();
        let (mut index, stats) = self.rescan_inner(store, identities, kind, false)?;
        index.generation = 1;
        index.counters = Counters {
            decrypted: stats.decrypted as u64,
            load_errors: index.problems.len() as u64,
            cold_load: start.elapsed(),
            ..Counters::default()
        };
        Ok(index)
    }

    /// The generation number (1 for the cold load).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// One secret.
    pub fn get(&self, id: &SecretId) -> Option<&Arc<Secret>> {
        self.secrets.get(id).map(|e| &e.0)
    }

    /// Every secret, sorted by scope then name (global first).
    pub fn secrets(&self) -> impl Iterator<Item = &Arc<Secret>> {
        self.secrets.iter().map(|e| &e.0)
    }

    /// The secrets of one scope, sorted by name.
    pub fn scope_secrets<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Arc<Secret>> {
        let start = SecretId {
            scope: scope.clone(),
            name: String::new(),
        };
        self.secrets
            .range::<_, SecretId>(start..)
            .take_while(move |e| &e.id().scope == scope)
            .map(|e| &e.0)
    }

    /// Number of secrets.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether the index holds no secret.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Current problems, sorted by path: one per secret file, and for a
    /// policy its parse problem or every reference that does not resolve.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .values()
            .chain(self.unresolved.values().flatten())
    }

    /// Number of current problems.
    pub fn problem_count(&self) -> usize {
        self.problems.len() + self.unresolved.values().map(Vec::len).sum::<usize>()
    }

    /// Secrets whose header names a recipient set other than their scope's
    /// current one: they need `meshseal rekey`.
    pub fn stale(&self) -> impl Iterator<Item = &SecretId> {
        self.secrets.iter().filter_map(|e| {
            let id = e.id();
            let current = self.fingerprints.get(&id.scope)?;
            match &e.0.recipients_fingerprint {
                Some(f) if f == current => None,
                _ => Some(id),
            }
        })
    }

    /// Counters for metrics.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether secrets are verified against a trust root (SPEC 9).
    pub fn verifies(&self) -> bool {
        self.signatures.is_some()
    }

    /// Secret files whose current version is refused by signature, sorted
    /// by path.
    pub fn refused(&self) -> impl Iterator<Item = &Refused> {
        self.refused.values().map(|r| &**r)
    }

    /// The highest verified generation of every secret path seen (deleted
    /// ones included), for the watcher's `--state`.
    pub fn seen(&self) -> impl Iterator<Item = (&Path, &Seen)> {
        self.seen.iter()
    }

    /// How many times the record of [`seen`](Self::seen) changed: the same
    /// number means nothing new to save.
    pub fn seen_changes(&self) -> u64 {
        self.seen_changes
    }

    /// Whether `other` serves the same secrets (same file bytes), the same
    /// problems and the same recipients: then a new generation is pointless.
    pub fn same_content(&self, other: &Index) -> bool {
        self.problems == other.problems
            && self.unresolved == other.unresolved
            && self.policies == other.policies
            && self.conflicts == other.conflicts
            && self.fingerprints == other.fingerprints
            && self.secrets.len() == other.secrets.len()
            && self
                .secrets
                .iter()
                .zip(&other.secrets)
                .all(|(a, b)| a.id() == b.id() && a.0.file_sha256 == b.0.file_sha256)
    }

    /// Zone mode: the view served from this (the repository's) index and a
    /// zone-local store's. Secrets flow from the repository to the zone
    /// only: on a name conflict the zone-local secret is kept, as a Kuma zone
    /// keeps its own resource over a synced one. Problems of the zone store
    /// are listed under `zone_root`. The result is for serving only: updates
    /// go to the two source indexes.
    pub fn with_zone(&self, zone: &Index, zone_root: &Path, generation: u64) -> Index {
        let mut merged = Index {
            generation,
            failed: OrdMap::new(),
            ..self.successor()
        };
        for entry in &zone.secrets {
            if merged.secrets.insert(entry.clone()).is_some() {
                merged.conflicts.push(entry.id().clone());
            }
        }
        for (path, problem) in &zone.problems {
            let mut p = problem.clone();
            let file = zone_root.join(path);
            p.file = Some(file.clone());
            merged.problems.insert(file, p);
        }
        // Zone-local policies are not served; repository policies resolve
        // against what the zone serves.
        merged.resolve_policies();
        merged.counters.decrypted += zone.counters.decrypted;
        merged.counters.load_errors += zone.counters.load_errors;
        merged
    }

    /// Zone mode: repository secrets shadowed by zone-local ones.
    pub fn conflicts(&self) -> &[SecretId] {
        &self.conflicts
    }

    /// The meshes that have at least one secret.
    pub fn meshes(&self) -> BTreeSet<&str> {
        self.secrets
            .iter()
            .filter_map(|e| e.id().scope.mesh_name())
            .collect()
    }

    /// A copy to build the next generation from (entries are shared).
    fn successor(&self) -> Index {
        Index {
            generation: self.generation + 1,
            secrets: self.secrets.clone(),
            failed: self.failed.clone(),
            problems: self.problems.clone(),
            fingerprints: self.fingerprints.clone(),
            counters: self.counters,
            conflicts: Vec::new(),
            policies: self.policies.clone(),
            unresolved: BTreeMap::new(),
            signatures: self.signatures.clone(),
            seen: self.seen.clone(),
            seen_changes: self.seen_changes,
            refused: self.refused.clone(),
            withheld: self.withheld.clone(),
        }
    }

    fn count(&mut self, stats: &UpdateStats) {
        self.counters.updates += 1;
        self.counters.decrypted += stats.decrypted as u64;
        self.counters.load_errors += stats.new_problems.len() as u64;
        self.counters.last_update = stats.duration;
    }

    /// Every secret id, sorted.
    fn ids(&self) -> impl Iterator<Item = &SecretId> {
        self.secrets.iter().map(Entry::id)
    }

    /// The ids of the secrets whose file is at or below `rel`, by the
    /// path's shape: one secret is a lookup, a folder one scope's range; no
    /// path is built per secret (a checkout deleting a thousand files from a
    /// large mesh must not cost a thousand scans of it).
    fn ids_under(&self, rel: &Path) -> Vec<SecretId> {
        if let StorePath::Secret(id) = StorePath::classify(rel) {
            return self
                .secrets
                .contains(&id)
                .then_some(id)
                .into_iter()
                .collect();
        }
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        let scope = match parts.as_deref() {
            Some([] | ["meshes"]) => None,
            Some(["meshes", mesh] | ["meshes", mesh, "secrets"]) => {
                Some(Scope::Mesh(mesh.to_string()))
            }
            Some(["global"] | ["global", "secrets"]) => Some(Scope::Global),
            // Anything else (a policy folder, a file that is not a secret)
            // holds no secret.
            _ => return Vec::new(),
        };
        match scope {
            Some(scope) => self
                .scope_secrets(&scope)
                .map(|s| s.doc.id.clone())
                .collect(),
            None => {
                let meshes_only = rel.as_os_str() == "meshes";
                self.ids()
                    .filter(|id| !meshes_only || id.scope != Scope::Global)
                    .cloned()
                    .collect()
            }
        }
    }

    /// Removes every file, secret and problem at or below `rel`.
    fn remove_under(&mut self, rel: &Path, stats: &mut UpdateStats) {
        for f in keys_under(&self.failed, rel) {
            self.failed.remove(&f);
        }
        for id in self.ids_under(rel) {
            self.secrets.remove(&id);
            stats.removed.push(id);
        }
        for p in keys_under(&self.problems, rel) {
            self.problems.remove(&p);
        }
        for p in keys_under(&self.policies, rel) {
            self.policies.remove(&p);
        }
        // What was seen of a path stays: a deleted file restored later
        // must not be older than what was served.
        for p in keys_under(&self.refused, rel) {
            self.refused.remove(&p);
        }
        for p in keys_under(&self.withheld, rel) {
            self.withheld.remove(&p);
        }
    }
}

/// What a restart starts from: a watcher's `--state`.
#[derive(Default)]
pub struct Warm {
    /// Secrets decrypted before, each bound to its path.
    pub secrets: Vec<Secret>,
    /// The highest verified generation of each secret path.
    pub seen: BTreeMap<PathBuf, Seen>,
}

impl UpdateStats {
    fn new(kind: UpdateKind) -> Self {
        UpdateStats {
            kind,
            hashed: 0,
            decrypted: 0,
            changed: Vec::new(),
            removed: Vec::new(),
            new_problems: Vec::new(),
            unserved: BTreeSet::new(),
            duration: Duration::ZERO,
        }
    }

    /// What became of the file a new problem is about, for its log line.
    pub fn consequence(&self, problem: &Problem) -> &'static str {
        match &problem.file {
            Some(file) if self.unserved.contains(file) => "not served",
            _ => "kept the last good version",
        }
    }
}

/// The keys at or below `rel`. Paths order component by component, so they
/// follow `rel` contiguously: a range, not a scan of the whole map.
fn keys_under<V: Clone>(map: &OrdMap<PathBuf, V>, rel: &Path) -> Vec<PathBuf> {
    map.range(rel.to_path_buf()..)
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(rel))
        .cloned()
        .collect()
}

/// The current recipients fingerprint of every scope that has secrets.
fn scope_fingerprints<'a>(
    store: &Store,
    ids: impl Iterator<Item = &'a SecretId>,
) -> BTreeMap<Scope, String> {
    // The ids come in order, scope first: each scope once is a comparison
    // with the last one (out of order, a scope read twice is still one
    // entry). The scopes' recipients files are read in parallel.
    let mut scopes: Vec<&Scope> = Vec::new();
    for id in ids {
        if scopes.last() != Some(&&id.scope) {
            scopes.push(&id.scope);
        }
    }
    scopes
        .into_par_iter()
        .filter_map(|s| {
            let set = store.recipients(s).ok()?;
            Some((s.clone(), set.fingerprint()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
