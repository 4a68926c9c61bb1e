//! The last good version of every subscribed resource, shared by all streams.
//!
//! The index already keeps the last good *decryption* of a file; this keeps
//! the last good *Envoy resource*: a secret that decrypts but whose new
//! certificate is expired, or whose new key does not match, leaves the
//! resource built from its previous version in place. Each new version is
//! built (and, when refused, warned about) once, whatever the number of
//! streams asking for it: entries are keyed by resource name and remember the
//! sha256 of the files they were built from.
//!
//! Entries live while at least one stream subscribes to their name, so the
//! cache is bounded by the open subscriptions, not by what was ever asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{info, warn};

use super::metrics::SdsMetrics;
use super::names::ResourceName;
use super::resources::{self, Resource, ResourceError};
use crate::index::Index;
use crate::problem::Diagnostic;
use crate::scope::SecretId;

/// What a name resolves to now.
#[derive(Debug)]
pub(super) enum Lookup {
    /// A resource to serve (the current version, or the last good one).
    Served(Arc<Resource>),
    /// A secret it is made of is not in the index.
    Missing(SecretId),
    /// The current version is refused and there is no earlier good one.
    Refused(ResourceError),
}

#[derive(Default)]
struct Entry {
    subscribers: usize,
    /// The files `good` was built from.
    good_sources: Vec<[u8; 32]>,
    good: Option<Arc<Resource>>,
    /// The files of the latest refused version (warned about once).
    refused: Option<(Vec<[u8; 32]>, ResourceError)>,
}

/// See the module documentation.
#[derive(Default)]
pub(super) struct Cache {
    entries: Mutex<HashMap<ResourceName, Entry>>,
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, HashMap<ResourceName, Entry>> {
        // A panic while holding the lock leaves entries that are still
        // consistent (each field is replaced whole).
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream now asks for `name`.
    pub(super) fn subscribe(&self, name: &ResourceName) {
        self.lock().entry(name.clone()).or_default().subscribers += 1;
    }

    /// A stream no longer asks for `name`.
    pub(super) fn unsubscribe(&self, name: &ResourceName) {
        let mut entries = self.lock();
        if let Some(e) = entries.get_mut(name) {
            e.subscribers = e.subscribers.saturating_sub(1);
            if e.subscribers == 0 {
                entries.remove(name);
            }
        }
    }

    /// Number of names with a subscriber.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// What `name` serves in `index`. A name no stream subscribes to (a
    /// FetchSecrets) is built without being remembered.
    pub(super) fn resolve(
        &self,
        index: &Index,
        name: &ResourceName,
        metrics: &SdsMetrics,
    ) -> Lookup {
        let mut secrets = Vec::with_capacity(2);
        for id in name.sources() {
            match index.get(id) {
                Some(s) => secrets.push(s),
                None => return Lookup::Missing(id.clone()),
            }
        }
        let sources: Vec<[u8; 32]> = secrets.iter().map(|s| s.file_sha256).collect();
        let mut entries = self.lock();
        let mut scratch = Entry::default();
        let entry = entries.get_mut(name).unwrap_or(&mut scratch);
        if let Some(good) = &entry.good {
            if entry.good_sources == sources {
                return Lookup::Served(good.clone());
            }
        }
        if let Some((refused, err)) = &entry.refused {
            if *refused == sources {
                return match &entry.good {
                    Some(good) => Lookup::Served(good.clone()),
                    None => Lookup::Refused(err.clone()),
                };
            }
        }
        let data: Vec<&[u8]> = secrets.iter().map(|s| s.doc.data.expose()).collect();
        match resources::build(name, &data, resources::now()) {
            Ok(resource) => {
                if entry.good.is_some() {
                    info!(resource = %name, kind = resource.kind().as_str(), "sds: new version");
                }
                entry.good_sources = sources;
                entry.good = Some(resource.clone());
                entry.refused = None;
                Lookup::Served(resource)
            }
            Err(err) => {
                metrics.refused_version();
                let files: Vec<String> = name
                    .sources()
                    .iter()
                    .map(|id| id.path().display().to_string())
                    .collect();
                warn!(
                    mesh = name.scope().mesh_name().unwrap_or_default(),
                    resource = %name,
                    file = files.join(","),
                    code = err.code(),
                    kept = if entry.good.is_some() { "the last good version" } else { "nothing (never served)" },
                    "sds: refused a new version: {err}"
                );
                entry.refused = Some((sources, err.clone()));
                match &entry.good {
                    Some(good) => Lookup::Served(good.clone()),
                    None => Lookup::Refused(err),
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::document::{Document, SecretData};
    use crate::identity::Identities;
    use crate::scope::Scope;
    use crate::store::Store;
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::str::FromStr;

    pub(crate) fn store() -> (tempfile::TempDir, Store, Identities) {
        let dir = tempfile::tempdir().unwrap();
        let (text, public) = crate::identity::generate();
        let ids = Identities::from_age_text(&text).unwrap();
        let r = crate::recipients::Recipient::from_str(&public).unwrap();
        let (store, _) = crate::init::init(dir.path(), &[r]).unwrap();
        (dir, store, ids)
    }

    /// Writes secret `name` of `mesh` (its recipients copied from the
    /// default mesh's) and returns its path.
    pub(crate) fn put_in(store: &Store, mesh: &str, name: &str, data: &str) -> PathBuf {
        let scope = Scope::Mesh(mesh.into());
        if store.recipients(&scope).is_err() {
            let text = store.recipients_text(&Scope::Mesh("default".into()));
            store.write_recipients(&scope, &text.unwrap()).unwrap();
        }
        let id = SecretId::new(scope, name).unwrap();
        store
            .put(
                &Document::new(id.clone(), SecretData::new(data.into())),
                None,
            )
            .unwrap();
        id.path()
    }

    fn put(store: &Store, name: &str, data: &str) -> PathBuf {
        put_in(store, "m", name, data)
    }

    #[test]
    fn a_refused_version_keeps_the_last_good_and_is_counted_once() {
        let (_d, store, ids) = store();
        let (c, k) = super::super::resources::tests::cert(30);
        let (old_c, old_k) = super::super::resources::tests::cert(-1);
        let path = put(&store, "gw", &format!("{c}{k}"));
        let index = Index::load(&store, &ids).unwrap();
        let cache = Cache::default();
        let metrics = SdsMetrics::default();
        let name = ResourceName::parse("m/gw").unwrap();
        cache.subscribe(&name);
        let Lookup::Served(first) = cache.resolve(&index, &name, &metrics) else {
            panic!("not served");
        };
        put(&store, "gw", &format!("{old_c}{old_k}"));
        let changed: BTreeSet<PathBuf> = [path.clone()].into();
        let (next, _) = index.update(&store, &ids, &changed);
        for _ in 0..3 {
            let Lookup::Served(again) = cache.resolve(&next, &name, &metrics) else {
                panic!("the last good version is not served");
            };
            assert_eq!(again.digest(), first.digest());
        }
        assert_eq!(metrics.snapshot().refused_versions, 1);
        // A good new version replaces it.
        let (c2, k2) = super::super::resources::tests::cert(30);
        put(&store, "gw", &format!("{c2}{k2}"));
        let (third, _) = next.update(&store, &ids, &changed);
        let Lookup::Served(new) = cache.resolve(&third, &name, &metrics) else {
            panic!("not served");
        };
        assert_ne!(new.digest(), first.digest());
        // Unsubscribed, the entry leaves; a fetch of a refused-only name is refused.
        cache.unsubscribe(&name);
        assert_eq!(cache.len(), 0);
        let bad_path = put(&store, "bad", &format!("{old_c}{old_k}"));
        let (fourth, _) = third.update(&store, &ids, &[bad_path].into());
        let bad = ResourceName::parse("m/bad").unwrap();
        assert!(matches!(
            cache.resolve(&fourth, &bad, &metrics),
            Lookup::Refused(ResourceError::Expired { .. })
        ));
        assert!(matches!(
            cache.resolve(&fourth, &ResourceName::parse("m/none").unwrap(), &metrics),
            Lookup::Missing(_)
        ));
    }
}
