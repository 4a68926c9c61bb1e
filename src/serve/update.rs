//! The update thread: the only writer of the indexes. It takes every queued
//! message as one batch, brings each store's index up to date (decrypting
//! only files whose bytes changed), publishes the next generation with one
//! atomic swap and then brings the materialized folder in step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::identity::Identities;
use crate::index::{Index, Live, UpdateStats};
use crate::problem::Problem;

use super::error::log_problem;
use super::events::Batch;
use super::materialize::Materializer;
use super::sources::{
    load_identities, log_conflicts, millis, RootChange, RootStatus, Source, Sources,
};
use super::worktree::{Changes, Checkout, Listing, PendingListing, Prefetch, WorktreeError};

/// Batches up to this size log one line per secret.
const MAX_NAMED_PER_BATCH: usize = 50;

/// Messages to the update thread.
pub enum Msg {
    /// File events from the debouncer.
    Events(super::debounce::Delivered),
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
    /// Lists the repository's swapped-in tree as soon as its link moves.
    pub prefetch: Option<Arc<Prefetch>>,
    /// When the state cache was last saved.
    pub saved: std::time::Instant,
}

/// The state cache is saved at most this often while updates come in (and
/// at every stop): a crash loses at most this much reuse, never a value.
const SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Updater<'_> {
    /// Runs until `Msg::Stop` or until every sender is gone.
    pub fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        self.list_checkouts();
        if let Some(p) = &self.prefetch {
            p.expect(self.sources.repo.listing_capacity());
        }
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
                super::reload_trust(&mut self.sources.repo);
            }
            self.apply(batch, reload, moved);
        }
        self.save_state();
    }

    /// What git lists of every swappable root's tree, so that its first
    /// swap reads only what changed. Read after the load, from the root it
    /// was loaded from (not through the link): the same tree.
    fn list_checkouts(&mut self) {
        for (name, source) in self.sources.all_mut() {
            if !source.swappable {
                continue;
            }
            match Checkout::read(&source.root, source.listing_capacity()) {
                Ok(c) => source.checkout = Some(c),
                Err(e) => {
                    let problem = Problem::from(e);
                    info!(store = name, root = %source.given.display(), problem = %problem.message, hint = problem.hint.as_deref().unwrap_or(""), "git cannot list the store's tree: a swap of the root will be rescanned whole");
                }
            }
        }
    }

    fn save_state(&mut self) {
        if let Some(state) = self.state {
            super::save_state(state, &self.sources.repo.index, &self.identities);
            self.saved = std::time::Instant::now();
        }
    }

    /// Resolves every store's root again, following a swapped link, and
    /// says which stores moved (and must be rescanned). `/status` is told
    /// when a root's state changed.
    fn follow_roots(&mut self) -> [Option<Moved>; 2] {
        let mut moved = [None, None];
        for (i, (name, source)) in self.sources.all_mut().into_iter().enumerate() {
            let was_refused = source.refused.is_some();
            let change = source.follow_root();
            if was_refused && source.refused.is_none() && source.is_present() {
                info!(store = name, root = %source.given.display(), target = %source.root.display(), "store root points into its folder again: followed");
            }
            match change {
                // The last move's tree could not be read: again.
                RootChange::Same if source.stale => {
                    moved[i] = Some(Moved::start(source, None, name, None))
                }
                RootChange::Same | RootChange::StillMissing | RootChange::StillRefused => {}
                RootChange::Moved { from, returned } => {
                    if returned {
                        info!(store = name, root = %source.given.display(), target = %source.root.display(), "store root is back: following it again");
                    } else {
                        info!(store = name, root = %source.given.display(), from = %from.display(), target = %source.root.display(), "store root swapped: following the new tree");
                    }
                    // The repository's new tree may have been listed
                    // while the debounce window ran.
                    let early = match (i, &self.prefetch) {
                        (0, Some(p)) => p.take(&source.root),
                        _ => None,
                    };
                    moved[i] = Some(Moved::start(source, Some(from), name, early));
                }
                RootChange::Missing { reason } => {
                    warn!(store = name, root = %source.given.display(), reason = %reason, "store root is gone: the last good index stays served until it returns");
                }
                RootChange::Refused { target } => {
                    warn!(store = name, root = %source.given.display(), target = %target.display(), "store root now points outside the folder it may point into: not followed, the last good index stays served (/status: refused)");
                }
            }
        }
        let status = self.sources.status();
        if **self.publisher.roots.load() != status {
            self.publisher.roots.store(Arc::new(status));
        }
        moved
    }

    fn apply(&mut self, batch: Batch, reload: bool, moved: [Option<Moved>; 2]) {
        let mut moves = Vec::new();
        self.apply_in(batch, reload, moved, &mut moves);
        if let Some(p) = &self.prefetch {
            p.expect(self.sources.repo.listing_capacity());
        }
        // The watches of a tree followed from git's listing move once its
        // generation is published: off the path to serving it (the walk
        // costs more than the files git named). git vouches for the new
        // tree's files meanwhile, and the rescan moves them first.
        for m in moves {
            m.run(self.watches);
        }
    }

    fn apply_in(
        &mut self,
        batch: Batch,
        reload: bool,
        mut moved: [Option<Moved>; 2],
        moves: &mut Vec<WatchMove>,
    ) {
        // A `meshes/` or `global/` that (re)appeared is followed before it
        // is walked, so nothing written into it from now on is missed.
        for folder in &batch.arrived {
            self.watches.watch(folder, true);
        }
        let full = if reload {
            Some(Full::Reload)
        } else {
            batch.rescan.then_some(Full::EventsLost)
        };
        let mut stats = Vec::new();
        for (i, (name, source)) in self.sources.all_mut().into_iter().enumerate() {
            let moved = moved[i].take();
            // A root that is gone is not walked: its last good index stays.
            if !source.is_present() {
                moves.extend(moved.and_then(|m| m.watches));
                continue;
            }
            let events = if i == 0 { &batch.repo } else { &batch.zone };
            let update = if let Some(mut m) = moved {
                let update = follow_tree(
                    source,
                    &self.identities,
                    events,
                    full,
                    name,
                    &mut m,
                    self.watches,
                );
                moves.extend(m.watches);
                update
            } else if full.is_some() {
                rescan(source, &self.identities, reload)
            } else if !events.is_empty() {
                let update = source.index.update(&source.store, &self.identities, events);
                if let Some(c) = &mut source.checkout {
                    c.touch(events);
                }
                Some(update)
            } else {
                None
            };
            if let Some((index, s)) = update {
                source.index = Arc::new(index);
                // The rollback record is saved before what it records is
                // served (only the repository's store is verified).
                if let (0, Some(state)) = (i, self.state) {
                    super::save_generations(state, &source.index);
                }
                stats.push((s, name));
            }
        }
        if stats.is_empty() {
            return;
        }
        let sources = &mut self.sources;
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

/// A store whose root moved in this batch.
struct Moved {
    /// git listing the new tree (swappable roots), under way meanwhile.
    listing: Option<Result<PendingListing, WorktreeError>>,
    /// Whether that listing was started when the link moved, before the
    /// debounce window ended.
    early: bool,
    /// Its watches, still to move from the previous tree (none when they
    /// already have).
    watches: Option<WatchMove>,
}

impl Moved {
    /// Starts git on the new tree's listing; `from`: the tree whose
    /// watches move to it.
    /// Starts git on the new tree's listing unless it was started `early`;
    /// `from`: the tree whose watches move to it.
    fn start(
        source: &Source,
        from: Option<PathBuf>,
        name: &'static str,
        early: Option<Result<PendingListing, WorktreeError>>,
    ) -> Moved {
        Moved {
            early: early.is_some(),
            listing: source.swappable.then(|| {
                early.unwrap_or_else(|| Listing::start(&source.root, source.listing_capacity()))
            }),
            watches: from.map(|from| WatchMove {
                store: name,
                from,
                given: source.given.clone(),
                root: source.root.clone(),
            }),
        }
    }
}

/// A store's file watches, to move from the tree swapped out to the new one.
struct WatchMove {
    store: &'static str,
    from: PathBuf,
    given: PathBuf,
    root: PathBuf,
}

impl WatchMove {
    fn run(self, watches: &dyn Watches) {
        let start = std::time::Instant::now();
        watches.unwatch(&self.from);
        for top in ["meshes", "global"] {
            watches.unwatch(&self.from.join(top));
        }
        watch_store(watches, &self.given, &self.root);
        info!(
            store = self.store,
            duration_ms = millis(start.elapsed()),
            "file watches moved to the new tree"
        );
    }
}

/// A full walk of a source's tree; `None` when it failed (logged). What git
/// lists of the tree is read again first, for the next swap.
fn rescan(
    source: &mut Source,
    identities: &Identities,
    retry_failed: bool,
) -> Option<(Index, UpdateStats)> {
    let listing = source
        .swappable
        .then(|| Listing::read(&source.root, source.listing_capacity()).ok())
        .flatten();
    match source.index.rescan(&source.store, identities, retry_failed) {
        Ok(r) => {
            // The same tree: what changed in it since it was listed still
            // differs from git's account.
            let touched = source.checkout.take();
            source.checkout = listing.map(|l| Checkout::from(l).keeping_touched(touched));
            Some(r)
        }
        Err(e) => {
            source.checkout = None;
            error!(problem = %Problem::from(e), "rescan failed: the last good index stays served");
            None
        }
    }
}

/// The index of a source whose root now resolves to another tree: built
/// from the files git says differ when both trees are git checkouts, else
/// from a full walk. `None` when it failed, or when the root moved again
/// while the tree was read (then nothing of it is trusted: files it lacked
/// may have been deleted under it); the next batch builds it again.
fn follow_tree(
    source: &mut Source,
    identities: &Identities,
    events: &BTreeSet<PathBuf>,
    full: Option<Full>,
    name: &str,
    moved: &mut Moved,
    watches: &dyn Watches,
) -> Option<(Index, UpdateStats)> {
    let t = std::time::Instant::now();
    let next = moved.listing.take().and_then(|pending| {
        pending
            .and_then(PendingListing::wait)
            .map_err(|e| {
                let problem = Problem::from(e);
                info!(store = name, problem = %problem.message, hint = problem.hint.as_deref().unwrap_or(""), "git cannot list the new tree");
            })
            .ok()
    });
    let listing_ms = millis(t.elapsed());
    let retry_failed = matches!(full, Some(Full::Reload));
    let changes = match (&source.checkout, &next) {
        _ if retry_failed => Changes::Rescan("identities were reloaded"),
        // Lost events may have been changes to the tree swapped out that
        // git's listing does not know of.
        _ if full.is_some() => Changes::Rescan("file events were lost"),
        (Some(old), Some(next)) => old.changes_to(next),
        (None, Some(_)) => Changes::Rescan("git could not list the tree swapped out"),
        (_, None) if source.swappable => Changes::Rescan("git cannot list the new tree"),
        (_, None) => Changes::Rescan("the root is not a link"),
    };
    let update = match changes {
        Changes::Files(mut files) => {
            info!(
                store = name,
                files = files.len(),
                listing_ms,
                listed_early = moved.early,
                "git names the files the new tree changed: only those are read"
            );
            files.extend(events.iter().cloned());
            Some(source.index.update(&source.store, identities, &files))
        }
        Changes::Rescan(reason) => {
            info!(store = name, reason, "rescanning the new tree whole");
            // Watched before it is walked: nothing changed meanwhile is
            // missed. (Only git's changed files are read on the fast path,
            // and git vouches for the others.)
            if let Some(m) = moved.watches.take() {
                m.run(watches);
            }
            match source.index.rescan(&source.store, identities, retry_failed) {
                Ok(r) => Some(r),
                Err(e) => {
                    error!(problem = %Problem::from(e), "rescan failed: the last good index stays served");
                    None
                }
            }
        }
    };
    if update.is_some() && !source.still_at_root() {
        warn!(store = name, root = %source.given.display(), "store root changed again while the new tree was read: the last good index stays served until the next change");
        source.stale = true;
        return None;
    }
    source.stale = update.is_none();
    if update.is_some() {
        source.checkout = next.map(|next| {
            let mut checkout = Checkout::from(next);
            // Events of the new tree, if any came: git does not know them.
            checkout.touch(events);
            checkout
        });
    }
    update
}

/// Why a batch walks every tree whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    /// File events were lost (a queue overflow, a watcher error).
    EventsLost,
    /// SIGHUP: identities were reloaded; files that failed are retried.
    Reload,
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
        log_problem(p, stats.consequence(p));
    }
}
