//! The stores a watcher serves from: the repository's, and in zone mode a
//! zone-local store merged over it. `watch --once` and the long-running
//! watcher open them the same way ([`Sources::open`]), so both canonicalize
//! the roots, refuse overlapping stores and merge by the same rule.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use crate::identity::Identities;
use crate::index::Index;
use crate::problem::Problem;
use crate::signing::TrustRoot;
use crate::store::{Signing, Store};

use super::error::{log_problem, ServeError};
use super::state::StateDir;
use super::worktree::Checkout;

/// Loads identity files, naming the one that fails.
pub fn load_identities(files: &[PathBuf]) -> Result<Identities, ServeError> {
    Identities::load(files).map_err(|(file, source)| ServeError::Identity { file, source })
}

/// Opens the store and loads it once.
pub fn load(root: &Path, identities: &Identities) -> Result<(Store, Index), ServeError> {
    let store = Store::open(root)?;
    let index = Index::load(&store, identities)?;
    Ok((store, index))
}

/// The store read under the trust root, if any (SPEC 9): its index then
/// serves only what verifies. The watcher never writes, so it has no sign
/// key.
fn verifying(store: Store, trust: Option<TrustRoot>) -> Store {
    store
        .with_signing(Signing {
            signer: None,
            trust,
        })
        .expect("without a sign key, reading under a trust root writes nothing")
}

/// One store and its current index.
pub struct Source {
    /// The root as given: possibly a link that is swapped (git-sync's
    /// `--link`, a Kubernetes volume's `..data`).
    pub given: PathBuf,
    /// What it resolved to last: the store's canonical root.
    pub root: PathBuf,
    /// The store.
    pub store: Store,
    /// Its latest index.
    pub index: Arc<Index>,
    /// Since when the root has been gone (the last good index stays served).
    pub missing_since: Option<SystemTime>,
    /// The link now points outside the folder it may point into: not
    /// followed, the last good index stays served.
    pub refused: Option<Refusal>,
    /// Whether the root can be swapped: a link is on its way.
    pub swappable: bool,
    /// What git lists of the tree the index was built from (swappable roots
    /// in a git checkout only): a swap then reads only what git says
    /// changed.
    pub checkout: Option<Checkout>,
    /// The root moved but the index could not be rebuilt from the new tree
    /// (it failed, or the tree moved again meanwhile): the next batch
    /// rebuilds it.
    pub stale: bool,
}

/// What became of a store's root since the last look.
#[derive(Debug, PartialEq, Eq)]
pub enum RootChange {
    /// It resolves where it did.
    Same,
    /// It now resolves elsewhere (a link was swapped), or came back: the
    /// index must be rebuilt from the new tree (unchanged files are reused
    /// by content hash).
    Moved {
        /// The previous root.
        from: PathBuf,
        /// Whether it had been missing.
        returned: bool,
    },
    /// It just went missing (or is no store any more): nothing of the old
    /// tree is dropped.
    Missing {
        /// Why it cannot be used.
        reason: String,
    },
    /// It was missing and still is.
    StillMissing,
    /// It now points outside the folder its links may point into (and did
    /// not, or pointed elsewhere, at the last look).
    Refused {
        /// Where it points.
        target: PathBuf,
    },
    /// It was refused and still points where it did.
    StillRefused,
}

/// A swapped link that points outside the folder it may point into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Since when it has been refused.
    pub since: SystemTime,
    /// Where it points (canonical).
    pub target: PathBuf,
}

impl Source {
    fn open(
        given: &Path,
        identities: &Identities,
        state: Option<&StateDir>,
        trust: Option<&TrustRoot>,
    ) -> Result<Source, ServeError> {
        // A root that cannot be resolved is "no such folder", as for every
        // other command.
        let root = fs::canonicalize(given).map_err(|source| {
            ServeError::Open(crate::store::OpenError::NoSuchFolder {
                root: given.to_path_buf(),
                source,
            })
        })?;
        let store = verifying(Store::open(&root)?, trust.cloned());
        let index = match state {
            Some(state) => {
                let cached = state.load_cache(identities, store.config().limits.max_data_bytes);
                Index::load_warm(&store, identities, cached)?
            }
            None => Index::load(&store, identities)?,
        };
        Ok(Source {
            given: given.to_path_buf(),
            root,
            store,
            index: Arc::new(index),
            missing_since: None,
            refused: None,
            swappable: !link_folders(given).is_empty(),
            checkout: None,
            stale: false,
        })
    }

    /// What a git listing of this store's tree is expected to take: the
    /// last one's size, else about 40 bytes a secret (a listing that grows
    /// as it is read would briefly need twice its size, and the watcher's
    /// memory is locked).
    pub fn listing_capacity(&self) -> usize {
        self.checkout
            .as_ref()
            .map_or(self.index.len() * 40, |c| c.size() + c.size() / 16)
    }

    /// Whether the given root still resolves to the tree the index is being
    /// built from: otherwise files missing from a build may be missing
    /// because the tree was swapped away or deleted under it.
    pub fn still_at_root(&self) -> bool {
        fs::canonicalize(&self.given).is_ok_and(|t| t == self.root)
    }

    /// Resolves the given root again. A root that moved is reopened (the
    /// caller rescans it); one that vanished, no longer holds a store, or
    /// points where it may not, keeps everything as it was. A refusal ends
    /// once the link points into its folder again.
    pub fn follow_root(&mut self) -> RootChange {
        let target = match fs::canonicalize(&self.given) {
            Ok(t) => t,
            Err(e) => return self.missing(format!("cannot resolve: {e}")),
        };
        if target == self.root && self.missing_since.is_none() {
            self.refused = None;
            return RootChange::Same;
        }
        if target != self.root && !self.may_move_to(&target) {
            return self.refuse(target);
        }
        let trust = self.store.signing().trust.clone();
        let store = match Store::open(&target).map(|s| verifying(s, trust)) {
            Ok(s) => s,
            // `meshseal.toml: is not a regular file`: the file as well as
            // the reason (the root itself when it is no store).
            Err(e) => return self.missing(Problem::from(e).to_string()),
        };
        let from = std::mem::replace(&mut self.root, target);
        self.store = store;
        self.refused = None;
        let returned = self.missing_since.take().is_some();
        RootChange::Moved { from, returned }
    }

    fn refuse(&mut self, target: PathBuf) -> RootChange {
        match &mut self.refused {
            Some(r) if r.target == target => RootChange::StillRefused,
            // Refused since the first refusal, wherever it points now.
            Some(r) => {
                r.target.clone_from(&target);
                RootChange::Refused { target }
            }
            None => {
                self.refused = Some(Refusal {
                    since: SystemTime::now(),
                    target: target.clone(),
                });
                RootChange::Refused { target }
            }
        }
    }

    /// A swapped link may point anywhere below the folder that holds a link
    /// on the root's path (git-sync's `--root`, holding `.worktrees/` and
    /// the link), or beside the first target (a Kubernetes volume's
    /// `..2026_12_01_...` folders); nowhere else.
    fn may_move_to(&self, target: &Path) -> bool {
        let beside = self
            .root
            .parent()
            .is_some_and(|p| target.parent() == Some(p));
        beside
            || link_folders(&self.given)
                .iter()
                .any(|folder| target.starts_with(folder))
    }

    fn missing(&mut self, reason: String) -> RootChange {
        // A refused link that now leads nowhere usable is missing.
        if self.refused.take().is_none() && self.missing_since.is_some() {
            return RootChange::StillMissing;
        }
        self.missing_since.get_or_insert_with(SystemTime::now);
        RootChange::Missing { reason }
    }

    /// Whether the root is usable now.
    pub fn is_present(&self) -> bool {
        self.missing_since.is_none()
    }
}

/// Zone mode: the zone's name and its zone-local store.
pub struct Zone {
    /// The zone's name.
    pub name: String,
    /// The zone-local store.
    pub source: Source,
}

/// The stores the update thread keeps indexes of, and the view it publishes.
pub struct Sources {
    /// The repository's store.
    pub repo: Source,
    /// The zone-local store, in zone mode.
    pub zone: Option<Zone>,
    /// Generation counter of merged views (zone mode only).
    generation: u64,
}

fn canonical(dir: &Path) -> Result<PathBuf, ServeError> {
    fs::canonicalize(dir).map_err(|source| ServeError::Folder {
        dir: dir.to_path_buf(),
        source,
    })
}

impl Sources {
    /// Opens and loads the repository's store and, in zone mode, the zone's.
    /// With `state`, the repository's store is loaded warm from its cache
    /// (the zone-local store, small and local, always cold). With `trust`,
    /// the repository's store is verified (the zone-local store is written
    /// by the zone's operator, never pushed to: it is not).
    pub fn open(
        root: &Path,
        zone: Option<(&str, &Path)>,
        identities: &Identities,
        state: Option<&StateDir>,
        trust: Option<&TrustRoot>,
    ) -> Result<Sources, ServeError> {
        let repo = Source::open(root, identities, state, trust)?;
        let zone = match zone {
            Some((name, dir)) => {
                let zone_root = canonical(dir)?;
                if zone_root.starts_with(&repo.root) || repo.root.starts_with(&zone_root) {
                    return Err(ServeError::ZoneOverlap {
                        dir: dir.to_path_buf(),
                    });
                }
                Some(Zone {
                    name: name.to_string(),
                    source: Source::open(dir, identities, None, None)?,
                })
            }
            None => None,
        };
        Ok(Sources {
            repo,
            zone,
            generation: 0,
        })
    }

    /// The index to publish: the repository's, or in zone mode the merge.
    pub fn view(&mut self) -> Arc<Index> {
        match &self.zone {
            None => Arc::clone(&self.repo.index),
            Some(z) => {
                self.generation += 1;
                Arc::new(self.repo.index.with_zone(
                    &z.source.index,
                    &z.source.root,
                    self.generation,
                ))
            }
        }
    }

    /// The zone's name, in zone mode.
    pub fn zone_name(&self) -> Option<&str> {
        self.zone.as_ref().map(|z| z.name.as_str())
    }

    /// Every store, the repository's first, with its name for logs.
    pub fn all(&self) -> Vec<(&'static str, &Source)> {
        let mut all = vec![("repository", &self.repo)];
        all.extend(self.zone.as_ref().map(|z| ("zone", &z.source)));
        all
    }

    /// Every store, mutably.
    pub fn all_mut(&mut self) -> Vec<(&'static str, &mut Source)> {
        let mut all = vec![("repository", &mut self.repo)];
        all.extend(self.zone.as_mut().map(|z| ("zone", &mut z.source)));
        all
    }

    /// Logs the cold load of each store.
    pub fn log_loaded(&self) {
        log_loaded(&self.repo.index, "repository");
        if let Some(z) = &self.zone {
            log_loaded(&z.source.index, "zone");
        }
    }
}

fn log_loaded(index: &Index, source: &str) {
    info!(
        store = source,
        generation = index.generation(),
        secrets = index.len(),
        meshes = index.meshes().len(),
        problems = index.problem_count(),
        duration_ms = millis(index.counters().cold_load),
        "store loaded"
    );
    for p in index.problems() {
        log_problem(p, "not served");
    }
}

/// The folders (canonical) that hold a symlink on `path`'s way: where a
/// swap of that link shows up as an event, and below which a swapped link
/// may point. `-C /git/current/store` with `/git/current` a link gives
/// `/git`.
pub fn link_folders(path: &Path) -> Vec<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => return Vec::new(),
        }
    };
    let mut folders = Vec::new();
    let mut prefix = PathBuf::new();
    for component in absolute.components() {
        prefix.push(component);
        let is_link = fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            if let Some(folder) = prefix.parent().and_then(|p| fs::canonicalize(p).ok()) {
                if !folders.contains(&folder) {
                    folders.push(folder);
                }
            }
        }
    }
    folders
}

/// Where one store's root stands, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootStatus {
    /// `repository` or `zone`.
    pub store: &'static str,
    /// The root as given.
    pub path: PathBuf,
    /// `present`; `missing` (gone, or no store); `refused` (the link points
    /// outside the folder it may point into). The last good index is
    /// served while it is not `present`.
    pub state: &'static str,
    /// Since when it has been missing or refused (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Where a refused link points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
}

impl Source {
    /// Where this store's root stands.
    fn root_status(&self, store: &'static str) -> RootStatus {
        let (state, since, target) = match (&self.refused, self.missing_since) {
            (Some(r), _) => ("refused", Some(r.since), Some(r.target.clone())),
            (None, Some(since)) => ("missing", Some(since), None),
            (None, None) => ("present", None, None),
        };
        RootStatus {
            store,
            path: self.given.clone(),
            state,
            since: since.map(rfc3339),
            target,
        }
    }
}

impl Sources {
    /// Where every store's root stands.
    pub fn status(&self) -> Vec<RootStatus> {
        self.all()
            .into_iter()
            .map(|(store, s)| s.root_status(store))
            .collect()
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Logs the conflicts of `new` that `old` did not have, with Kuma's text.
pub fn log_conflicts(old: Option<&Index>, new: &Index, zone: Option<&str>) {
    for id in new.conflicts() {
        if old.is_some_and(|o| o.conflicts().contains(id)) {
            continue;
        }
        warn!(
            zone = zone.unwrap_or(""),
            "resource already exists: {}: the zone-local secret is kept",
            id.kuma_ref()
        );
    }
}

/// A duration in milliseconds, rounded to the microsecond for logs (a raw
/// `f64` prints as `0.40687900000000005`).
pub fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}
