//! What `get secrets` shows: one row per secret, never its data.
//!
//! With an identity every secret is decrypted, so the row has its size and a
//! broken file is reported; without one only headers are read, and a file
//! whose header names another scope or name than its path (moved, copied,
//! renamed) is reported by the store's one rule for it ([`Moved`]) instead of
//! being listed. A file that none of the identities opens is listed as it
//! would be without a key, marked [`Row::locked`]: listing needs no key, so
//! a key for other meshes must not hide a mesh's secrets.

use crate::envelope::EnvelopeError;
use crate::identity::Identities;
use crate::scope::SecretId;
use crate::store::{short_sha, LoadError, Moved, Store};

/// One listed secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The secret.
    pub id: SecretId,
    /// Its data's size, when it was decrypted.
    pub bytes: Option<usize>,
    /// A short sha256 of its file.
    pub fingerprint: String,
    /// Identities were given but none of them opens this file.
    pub locked: bool,
}

/// Rows for `ids` (in order), and every secret that could not be listed.
pub fn list(
    store: &Store,
    ids: &[SecretId],
    identities: Option<&Identities>,
) -> (Vec<Row>, Vec<LoadError>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    match identities {
        Some(identities) => {
            for (id, result) in ids.iter().zip(store.load_many(ids, identities)) {
                match result {
                    Ok(l) => rows.push(Row {
                        id: id.clone(),
                        bytes: Some(l.doc.data.len()),
                        fingerprint: short_sha(&l.file_sha256),
                        locked: false,
                    }),
                    Err(LoadError::Envelope {
                        source: EnvelopeError::NoMatchingKeys,
                        ..
                    }) => match header_row(store, id) {
                        Ok(row) => rows.push(Row {
                            locked: true,
                            ..row
                        }),
                        Err(e) => problems.push(e),
                    },
                    Err(e) => problems.push(e),
                }
            }
        }
        None => {
            for id in ids {
                match header_row(store, id) {
                    Ok(row) => rows.push(row),
                    Err(e) => problems.push(e),
                }
            }
        }
    }
    (rows, problems)
}

/// A row from the header alone: no size.
fn header_row(store: &Store, id: &SecretId) -> Result<Row, LoadError> {
    let (header, sha) = store.inspect(id)?;
    if let Some(meta) = &header.metadata {
        Moved::check(&meta.id, id).map_err(|source| LoadError::Moved {
            file: id.path(),
            source,
        })?;
    }
    Ok(Row {
        id: id.clone(),
        bytes: None,
        fingerprint: short_sha(&sha),
        locked: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::document::{Document, SecretData};
    use crate::problem::Diagnostic;
    use crate::scope::Scope;

    #[test]
    fn a_moved_file_is_reported_not_listed_without_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let (text, public) = crate::identity::generate();
        let ids = Identities::from_age_text(&text).unwrap();
        let (store, _) = crate::init::init(dir.path(), &[public.parse().unwrap()]).unwrap();
        let a = SecretId::new(Scope::Mesh("default".into()), "a").unwrap();
        let b = SecretId::new(Scope::Mesh("default".into()), "b").unwrap();
        store
            .put(
                &Document::new(a.clone(), SecretData::new(b"x".to_vec())),
                None,
            )
            .unwrap();
        std::fs::copy(dir.path().join(a.path()), dir.path().join(b.path())).unwrap();
        let both = [a.clone(), b.clone()];

        let (rows, problems) = list(&store, &both, None);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].id.clone(), rows[0].bytes), (a.clone(), None));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].is_moved());
        assert_eq!(problems[0].code(), "scope-mismatch");
        assert_eq!(
            problems[0].to_string(),
            format!("header metadata says {a} but the path says {b}")
        );

        let (rows, problems) = list(&store, &both, Some(&ids));
        assert_eq!(rows[0].bytes, Some(1));
        assert!(problems[0].is_moved(), "{}", problems[0]);
    }

    #[test]
    fn a_key_that_opens_nothing_still_lists_every_secret_marked_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = crate::identity::generate();
        let (other, _) = crate::identity::generate();
        let other = Identities::from_age_text(&other).unwrap();
        let (store, _) = crate::init::init(dir.path(), &[public.parse().unwrap()]).unwrap();
        let a = SecretId::new(Scope::Mesh("default".into()), "a").unwrap();
        store
            .put(
                &Document::new(a.clone(), SecretData::new(b"x".to_vec())),
                None,
            )
            .unwrap();
        let (rows, problems) = list(&store, std::slice::from_ref(&a), Some(&other));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].bytes, rows[0].locked), (None, true));
    }
}
