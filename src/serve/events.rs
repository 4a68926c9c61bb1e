//! Turning debounced file events into one batch of work for the update
//! thread: which store-relative paths changed in which store, which top
//! folders (`meshes/`, `global/`) appeared and need a new watch, and whether
//! events were lost (then everything is rescanned).
//!
//! Pure: it looks at paths only, so it is tested without a file system.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::event::ModifyKind;
use notify::{Event, EventKind};

/// What one batch of events asks of the update thread.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Changed paths of the repository's store, relative to its root.
    pub repo: BTreeSet<PathBuf>,
    /// Changed paths of the zone-local store, relative to its root.
    pub zone: BTreeSet<PathBuf>,
    /// `meshes/` or `global/` folders created or moved in: watch them.
    pub arrived: BTreeSet<PathBuf>,
    /// Events were lost or the watcher failed: rescan everything.
    pub rescan: bool,
}

impl Batch {
    /// Adds one event. `repo` and `zone` are the store roots as watched.
    /// (Access events, our own reads, never get here: the debouncer drops
    /// them.)
    pub fn add(&mut self, event: &Event, repo: &Path, zone: Option<&Path>) {
        if event.need_rescan() {
            self.rescan = true;
        }
        // Only a folder created or moved in needs a new watch; a chmod or
        // touch of it does not.
        let arrival = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        for path in &event.paths {
            let is_top =
                |root: &Path| path.parent() == Some(root) && relevant(root, path).is_some();
            if arrival && (is_top(repo) || zone.is_some_and(is_top)) {
                self.arrived.insert(path.clone());
            }
            if let Some(rel) = zone.and_then(|z| relevant(z, path)) {
                self.zone.insert(rel);
            } else if let Some(rel) = relevant(repo, path) {
                self.repo.insert(rel);
            }
        }
    }

    /// Whether the batch asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.repo.is_empty() && self.zone.is_empty() && self.arrived.is_empty() && !self.rescan
    }
}

/// The store-relative path of an event, if it is under `meshes/` or `global/`.
pub fn relevant(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root).ok()?;
    let top = rel.components().next()?;
    (top.as_os_str() == "meshes" || top.as_os_str() == "global").then(|| rel.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, Flag, ModifyKind, RenameMode};

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn paths_go_to_their_store_relative_to_its_root() {
        let mut b = Batch::default();
        let kind = EventKind::Modify(ModifyKind::Any);
        b.add(
            &event(
                kind,
                &["/repo/meshes/m/secrets/a.age", "/zone/global/secrets/z.age"],
            ),
            Path::new("/repo"),
            Some(Path::new("/zone")),
        );
        assert_eq!(
            b.repo,
            BTreeSet::from([PathBuf::from("meshes/m/secrets/a.age")])
        );
        assert_eq!(
            b.zone,
            BTreeSet::from([PathBuf::from("global/secrets/z.age")])
        );
        assert!(b.arrived.is_empty() && !b.rescan);
    }

    #[test]
    fn files_outside_meshes_and_global_are_ignored() {
        let mut b = Batch::default();
        let kind = EventKind::Modify(ModifyKind::Any);
        b.add(
            &event(
                kind,
                &["/repo/.git/index", "/repo/README.md", "/elsewhere/meshes/x"],
            ),
            Path::new("/repo"),
            None,
        );
        assert!(b.is_empty(), "{b:?}");
    }

    #[test]
    fn a_top_folder_created_or_moved_in_needs_a_watch_but_a_chmod_does_not() {
        let root = Path::new("/repo");
        let mut b = Batch::default();
        b.add(
            &event(EventKind::Create(CreateKind::Folder), &["/repo/meshes"]),
            root,
            None,
        );
        b.add(
            &event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                &["/repo/global"],
            ),
            root,
            None,
        );
        assert_eq!(
            b.arrived,
            BTreeSet::from([PathBuf::from("/repo/meshes"), PathBuf::from("/repo/global")])
        );
        let mut chmod = Batch::default();
        chmod.add(
            &event(
                EventKind::Modify(ModifyKind::Metadata(
                    notify::event::MetadataKind::Permissions,
                )),
                &["/repo/meshes"],
            ),
            root,
            None,
        );
        assert!(chmod.arrived.is_empty());
        assert_eq!(chmod.repo, BTreeSet::from([PathBuf::from("meshes")]));
    }

    #[test]
    fn a_lost_event_asks_for_a_rescan() {
        let mut b = Batch::default();
        b.add(
            &Event::new(EventKind::Other).set_flag(Flag::Rescan),
            Path::new("/repo"),
            None,
        );
        assert!(b.rescan);
    }
}
