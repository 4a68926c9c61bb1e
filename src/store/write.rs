//! Writing a store: one secret, a batch of them, a scope's recipients
//! file, a removal. Every write is atomic (see [`crate::atomic`]) and
//! refuses to go through a symlink.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::atomic;
use crate::document::Document;
use crate::envelope::{self, Metadata};
use crate::identity::Identities;
use crate::recipients::RecipientSet;
use crate::scope::{Scope, SecretId};

use super::{RecipientsError, Store, StoreError, WriteError, WriteOutcome, SECRET_MODE};

impl Store {
    /// What writing `doc` for the recipient set `fingerprint` does: a new
    /// file, or an existing one that, with identities to compare, holds the
    /// same document, armored, for the same recipients (left untouched), or
    /// else is replaced. The one rule of `put`, `put_many` and dry runs.
    pub fn outcome_of(
        &self,
        doc: &Document,
        fingerprint: &str,
        identities: Option<&Identities>,
    ) -> WriteOutcome {
        if !self.exists(&doc.id) {
            return WriteOutcome::Created;
        }
        let unchanged = identities
            .and_then(|ids| self.load(&doc.id, ids).ok())
            .is_some_and(|old| {
                old.header.armored
                    && old
                        .header
                        .metadata
                        .as_ref()
                        .is_some_and(|m| m.recipients_fingerprint == fingerprint)
                    && old.doc == *doc
            });
        if unchanged {
            WriteOutcome::Unchanged
        } else {
            WriteOutcome::Updated
        }
    }

    /// Replaces a scope's recipients file atomically.
    pub fn write_recipients(&self, scope: &Scope, text: &str) -> Result<(), WriteError> {
        let file = scope.recipients_path();
        self.ensure_no_symlinks(&file)?;
        atomic::write(&self.root.join(&file), text.as_bytes(), SECRET_MODE)
            .map_err(|source| WriteError::Io { file, source })
    }

    /// Encrypts a document to its scope's recipients and writes it atomically.
    /// With identities, an existing file that already holds the same document
    /// for the same recipients is left untouched.
    pub fn put(
        &self,
        doc: &Document,
        identities: Option<&Identities>,
    ) -> Result<WriteOutcome, WriteError> {
        let id = &doc.id;
        let file = id.path();
        let recipients = self.recipients(&id.scope)?;
        recipients
            .require_some()
            .map_err(|source| RecipientsError::Invalid {
                file: id.scope.recipients_path(),
                source,
            })?;
        let fingerprint = recipients.fingerprint();
        let outcome = self.outcome_of(doc, &fingerprint, identities);
        if outcome == WriteOutcome::Unchanged {
            return Ok(WriteOutcome::Unchanged);
        }
        let metadata = Metadata {
            id: id.clone(),
            recipients_fingerprint: fingerprint,
        };
        let plaintext = doc.to_toml();
        let ciphertext =
            envelope::encrypt(plaintext.as_bytes(), &recipients, &metadata).map_err(|source| {
                WriteError::Encrypt {
                    file: file.clone(),
                    source,
                }
            })?;
        self.check_writable(id)?;
        atomic::write(&self.root.join(&file), &ciphertext, SECRET_MODE)
            .map_err(|source| WriteError::Io { file, source })?;
        Ok(outcome)
    }

    /// Writes many documents as one batch: each scope's recipients read
    /// once, unchanged files (same document, same recipients) left alone,
    /// encryption in parallel, and every file made durable with one flush
    /// of the file system rather than two `fsync`s each (see
    /// [`atomic::write_batch`]). Every check and every encryption happens
    /// before the first file is replaced: a refusal, a missing recipients
    /// file or a full disk while staging leaves the store unchanged.
    pub fn put_many(
        &self,
        docs: &[Document],
        identities: Option<&Identities>,
    ) -> Result<Vec<WriteOutcome>, WriteError> {
        let mut recipients: std::collections::BTreeMap<&Scope, RecipientSet> =
            std::collections::BTreeMap::new();
        for doc in docs {
            let scope = &doc.id.scope;
            if !recipients.contains_key(scope) {
                let set = self.recipients(scope)?;
                set.require_some()
                    .map_err(|source| RecipientsError::Invalid {
                        file: scope.recipients_path(),
                        source,
                    })?;
                recipients.insert(scope, set);
            }
            self.check_writable(&doc.id)?;
        }
        // Decide and encrypt in parallel: X25519 per file is the cost. Each
        // is its outcome and, unless unchanged, the new ciphertext.
        type Planned = Result<(WriteOutcome, Option<Vec<u8>>), WriteError>;
        let planned: Vec<Planned> = docs
            .par_iter()
            .map(|doc| {
                let set = &recipients[&doc.id.scope];
                let fingerprint = set.fingerprint();
                let outcome = self.outcome_of(doc, &fingerprint, identities);
                if outcome == WriteOutcome::Unchanged {
                    return Ok((WriteOutcome::Unchanged, None));
                }
                let metadata = Metadata {
                    id: doc.id.clone(),
                    recipients_fingerprint: fingerprint,
                };
                let ciphertext = envelope::encrypt(doc.to_toml().as_bytes(), set, &metadata)
                    .map_err(|source| WriteError::Encrypt {
                        file: doc.id.path(),
                        source,
                    })?;
                Ok((outcome, Some(ciphertext)))
            })
            .collect();
        let mut outcomes = Vec::with_capacity(docs.len());
        let mut writes = Vec::new();
        for (doc, planned) in docs.iter().zip(planned) {
            let (outcome, ciphertext) = planned?;
            outcomes.push(outcome);
            if let Some(c) = ciphertext {
                writes.push((self.root.join(doc.id.path()), c));
            }
        }
        let items: Vec<(PathBuf, &[u8])> = writes
            .iter()
            .map(|(p, c)| (p.clone(), c.as_slice()))
            .collect();
        atomic::write_batch(&items, SECRET_MODE).map_err(|e| WriteError::Batch {
            file: e
                .path
                .strip_prefix(&self.root)
                .unwrap_or(&e.path)
                .to_path_buf(),
            renamed: e.renamed,
            source: e.source,
        })?;
        Ok(outcomes)
    }

    /// Removes a secret's file.
    pub fn delete(&self, id: &SecretId) -> Result<(), WriteError> {
        let file = id.path();
        if !self.exists(id) {
            return Err(WriteError::Refused {
                file,
                source: StoreError::NotFound(id.clone()),
            });
        }
        self.ensure_no_symlinks(&file)?;
        atomic::remove(&self.root.join(&file)).map_err(|source| WriteError::Io { file, source })
    }

    /// Refuses a secret path that a write would follow out of the store: a
    /// symlinked folder on the way, or a symlink (or non-file) at the target.
    pub fn check_writable(&self, id: &SecretId) -> Result<(), WriteError> {
        let file = id.path();
        self.ensure_no_symlinks(&file)?;
        match fs::symlink_metadata(self.root.join(&file)) {
            Ok(m) if !m.is_file() => Err(WriteError::Refused {
                file,
                source: StoreError::NotRegular,
            }),
            _ => Ok(()),
        }
    }

    /// Refuses to write through a symlinked folder (or onto a symlink).
    fn ensure_no_symlinks(&self, rel: &Path) -> Result<(), WriteError> {
        let mut path = self.root.clone();
        for c in rel.components() {
            path.push(c);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(WriteError::Refused {
                        file: rel.to_path_buf(),
                        source: StoreError::Symlink,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }
}
