//! The update thread: the only writer of the indexes. It takes every queued
//! message as one batch, brings each store's index up to date (decrypting
//! only files whose bytes changed), publishes the next generation with one
//! atomic swap and then brings the materialized folder in step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use arc_swap::ArcSwap;
use notify_debouncer_full::DebounceEventResult;
use tracing::{error, info, warn};

use crate::identity::Identities;
use crate::index::{Index, Live, UpdateStats};
use crate::problem::Problem;
use crate::store::Store;

use super::error::log_problem;
use super::events::Batch;
use super::materialize::Materializer;
use super::sources::{load_identities, log_conflicts, millis, RootChange, RootStatus, Sources};

/// Batches up to this size log one line per secret.
const MAX_NAMED_PER_BATCH: usize = 50;

/// Messages to the update thread.
pub enum Msg {
    /// File events from the debouncer.
    Events(DebounceEventResult),
    /// SIGHUP: reload identities and rescan.
    Reload,
    /// Stop.
    Stop,
}

/// Where the update thread publishes.
pub struct Publisher {
    /// The generation readers see.
    pub live: Arc<Live>,
    /// Told the generation after each publish (the SDS streams wait on it).
    pub changes: tokio::sync::watch::Sender<u64>,
    /// Where each store's root stands.
    pub roots: Arc<ArcSwap<Vec<RootStatus>>>,
}

impl Publisher {
    fn publish(&self, next: Arc<Index>) {
        let generation = next.generation();
        self.live.store(next);
        self.changes.send_replace(generation);
    }
}

/// The file watches the update thread adds and drops as folders come and
/// go (a new `meshes/`, a swapped store root).
pub trait Watches {
    /// Watches `dir`, recursively or not; a failure is logged.
    fn watch(&self, dir: &Path, recursive: bool);
    /// Stops watching `dir` (gone or replaced); a failure is ignored.
    fn unwatch(&self, dir: &Path);
}

/// Watches a store root: the root itself (so a `meshes/` or `global/` that
/// appears is seen), its `meshes/` and `global/` recursively, the folder
/// holding the root as given (so a root that returns is seen), and every
/// folder holding a link on the root's path (so a swapped link is seen).
pub fn watch_store(watches: &dyn Watches, given: &Path, root: &Path) {
    if let Some(parent) = given.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        watches.watch(parent, false);
    }
    for folder in super::sources::link_folders(given) {
        watches.watch(&folder, false);
    }
    watches.watch(root, false);
    for top in ["meshes", "global"] {
        let dir = root.join(top);
        if dir.is_dir() {
            watches.watch(&dir, true);
        }
    }
}

/// What the update thread needs besides its messages.
pub struct Updater<'a> {
    /// The stores and their indexes.
    pub sources: Sources,
    /// The identities (replaced on SIGHUP).
    pub identities: Identities,
    /// The identity files, re-read on SIGHUP.
    pub identity_files: &'a [PathBuf],
    /// Where generations go.
    pub publisher: &'a Publisher,
    /// The materialized folder, if any.
    pub materializer: Option<&'a Materializer>,
    /// Adds and drops file watches.
    pub watches: &'a dyn Watches,
    /// Where the state cache is kept, if anywhere.
    pub state: Option<&'a super::state::StateDir>,
    /// When the state cache was last saved.
    pub saved: std::time::Instant,
}

/// The state cache is saved at most this often while updates come in (and
/// at every stop): a crash loses at most this much reuse, never a value.
const SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Updater<'_> {
    /// Runs until `Msg::Stop` or until every sender is gone.
    pub fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let (mut reload, mut stop) = (false, false);
            let mut events = Vec::new();
            let mut lost = false;
            // Everything already queued joins this batch.
            for msg in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match msg {
                    Msg::Stop => stop = true,
                    Msg::Reload => reload = true,
                    Msg::Events(Ok(batch)) => events.extend(batch),
                    Msg::Events(Err(errors)) => {
                        for e in errors {
                            warn!(error = %e, "file watcher error: full rescan");
                        }
                        lost = true;
                    }
                }
            }
            if stop {
                break;
            }
            if self.state.is_some() && self.saved.elapsed() >= SAVE_INTERVAL {
                self.save_state();
            }
            // Where the roots are now decides which events count: those of
            // a tree that was swapped away (git-sync deletes it) do not.
            let moved = self.follow_roots();
            let mut batch = Batch {
                rescan: lost,
                ..Batch::default()
            };
            let repo_root = self.sources.repo.root.clone();
            let zone_root = self.sources.zone.as_ref().map(|z| z.source.root.clone());
            for event in &events {
                batch.add(event, &repo_root, zone_root.as_deref());
            }
            if batch.rescan && !lost {
                warn!("file events were lost (queue overflow): full rescan");
            }
            if reload {
                match load_identities(self.identity_files) {
                    Ok(ids) => {
                        info!(keys = ids.len(), "identities reloaded");
                        self.identities = ids;
                    }
                    Err(e) => log_problem(&Problem::from(e), "kept the previous identities"),
                }
            }
            self.apply(batch, reload, moved);
        }
        self.save_state();
    }

    fn save_state(&mut self) {
        if let Some(state) = self.state {
            super::save_state(state, &self.sources.repo.index, &self.identities);
            self.saved = std::time::Instant::now();
        }
    }

    /// Resolves every store's root again, following a swapped link, and
    /// says which stores moved (and must be rescanned).
    fn follow_roots(&mut self) -> [bool; 2] {
        let mut moved = [false; 2];
        let mut changed_state = false;
        for (i, (name, source)) in self.sources.all_mut().into_iter().enumerate() {
            match source.follow_root() {
                RootChange::Same | RootChange::StillMissing => {}
                RootChange::Moved { from, returned } => {
                    moved[i] = true;
                    changed_state |= returned;
                    self.watches.unwatch(&from);
                    for top in ["meshes", "global"] {
                        self.watches.unwatch(&from.join(top));
                    }
                    watch_store(self.watches, &source.given, &source.root);
                    if returned {
                        info!(store = name, root = %source.given.display(), target = %source.root.display(), "store root is back: following it again");
                    } else {
                        info!(store = name, root = %source.given.display(), from = %from.display(), target = %source.root.display(), "store root swapped: following the new tree");
                    }
                }
                RootChange::Missing { reason } => {
                    changed_state = true;
                    warn!(store = name, root = %source.given.display(), reason = %reason, "store root is gone: the last good index stays served until it returns");
                }
                RootChange::Refused { target } => {
                    warn!(store = name, root = %source.given.display(), target = %target.display(), "store root now points outside the folder it may point into: not followed, the last good index stays served");
                }
            }
        }
        if changed_state {
            self.publisher.roots.store(Arc::new(self.sources.status()));
        }
        moved
    }

    fn apply(&mut self, batch: Batch, reload: bool, moved: [bool; 2]) {
        // A `meshes/` or `global/` that (re)appeared is followed before it
        // is walked, so nothing written into it from now on is missed.
        for folder in &batch.arrived {
            self.watches.watch(folder, true);
        }
        let full = batch.rescan || reload;
        let sources = &mut self.sources;
        // A root that is gone is not walked: its last good index stays.
        let repo_update = sources
            .repo
            .is_present()
            .then(|| {
                update_source(
                    &sources.repo.store,
                    &sources.repo.index,
                    &self.identities,
                    &batch.repo,
                    full || moved[0],
                    reload,
                )
            })
            .flatten();
        let zone_update = sources
            .zone
            .as_ref()
            .filter(|z| z.source.is_present())
            .and_then(|z| {
                update_source(
                    &z.source.store,
                    &z.source.index,
                    &self.identities,
                    &batch.zone,
                    full || moved[1],
                    reload,
                )
            });
        if repo_update.is_none() && zone_update.is_none() {
            return;
        }
        let mut stats = Vec::new();
        if let Some((index, s)) = repo_update {
            sources.repo.index = Arc::new(index);
            stats.push((s, "repository"));
        }
        if let (Some((index, s)), Some(z)) = (zone_update, sources.zone.as_mut()) {
            z.source.index = Arc::new(index);
            stats.push((s, "zone"));
        }
        let current = self.publisher.live.load_full();
        let next = sources.view();
        if !reload && next.same_content(&current) {
            // Touched but unchanged files: no new generation.
            return;
        }
        self.publisher.publish(Arc::clone(&next));
        for (s, source) in &stats {
            log_update(&next, s, source);
        }
        // Problems that no file change caused: references that stopped
        // resolving because a secret went away, for instance.
        for p in next.problems() {
            let reported = stats.iter().any(|(s, _)| s.new_problems.contains(p));
            if !reported && !current.problems().any(|q| q == p) {
                log_problem(p, "reported in /status");
            }
        }
        log_conflicts(Some(&current), &next, sources.zone_name());
        if let Some(m) = self.materializer {
            let (_, problems) = m.sync(Some(&current), &next);
            for e in problems {
                log_problem(&Problem::from(e), "materialized file not updated");
            }
        }
    }
}

/// Brings one source's index up to date; `None` when nothing was to do or
/// the rescan failed (logged).
fn update_source(
    store: &Store,
    index: &Index,
    identities: &Identities,
    changed: &BTreeSet<PathBuf>,
    full: bool,
    retry_failed: bool,
) -> Option<(Index, UpdateStats)> {
    if full {
        match index.rescan(store, identities, retry_failed) {
            Ok(r) => Some(r),
            Err(e) => {
                error!(problem = %Problem::from(e), "rescan failed: the last good index stays served");
                None
            }
        }
    } else if !changed.is_empty() {
        Some(index.update(store, identities, changed))
    } else {
        None
    }
}

/// Logs one source's update, as part of generation `index`.
fn log_update(index: &Index, stats: &UpdateStats, source: &str) {
    info!(
        generation = index.generation(),
        store = source,
        kind = stats.kind.as_str(),
        secrets = index.len(),
        changed = stats.changed.len(),
        removed = stats.removed.len(),
        decrypted = stats.decrypted,
        hashed = stats.hashed,
        problems = index.problem_count(),
        duration_ms = millis(stats.duration),
        "index updated"
    );
    // Name each secret for small batches; a checkout of thousands is summed
    // up in the line above.
    if stats.changed.len() + stats.removed.len() <= MAX_NAMED_PER_BATCH {
        for id in &stats.changed {
            info!(mesh = id.scope.mesh_name(), name = %id.name, file = %id.path().display(), "secret loaded");
        }
        for id in &stats.removed {
            info!(mesh = id.scope.mesh_name(), name = %id.name, file = %id.path().display(), "secret removed");
        }
    }
    for p in &stats.new_problems {
        log_problem(p, "kept the last good version");
    }
}
