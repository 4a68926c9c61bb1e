//! Writing a store: one secret, a batch of them, a scope's recipients
//! file, a removal. Every write is atomic (see [`crate::atomic`]) and
//! refuses to go through a symlink.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::atomic;
use crate::config::Signatures;
use crate::document::Document;
use crate::envelope::{self, Metadata};
use crate::identity::Identities;
use crate::recipients::RecipientSet;
use crate::scope::{Scope, ScopeFile, SecretId, StorePath};
use crate::signing::Namespace;
use crate::writers::header::{self, ScopeHeader};
use crate::writers::{history, Verifier};

use super::{RecipientsError, Store, StoreError, Target, WriteError, WriteOutcome, SECRET_MODE};

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
        self.outcome_at(doc, fingerprint, identities, self.exists(&doc.id))
    }

    /// [`Store::outcome_of`] where whether the file exists is known (from
    /// the check of its path).
    fn outcome_at(
        &self,
        doc: &Document,
        fingerprint: &str,
        identities: Option<&Identities>,
        exists: bool,
    ) -> WriteOutcome {
        if !exists {
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

    /// Replaces a scope's recipients file atomically (see
    /// [`Store::write_scope_file`]).
    pub fn write_recipients(&self, scope: &Scope, text: &str) -> Result<(), WriteError> {
        self.write_scope_file(scope, ScopeFile::Recipients, text)
    }

    /// Replaces a scope file (`recipients.txt`, `writers.txt`) atomically.
    /// In a store with a `store_id` its first line becomes the header that
    /// binds it (SPEC 9) with the next generation; with a sign key it is
    /// signed as an admin (`<file>.sig`), else a `.sig` left from before is
    /// removed, since it no longer covers the file.
    pub fn write_scope_file(
        &self,
        scope: &Scope,
        kind: ScopeFile,
        text: &str,
    ) -> Result<(), WriteError> {
        let file = scope.file_path(kind);
        let sig_file = scope.sig_path(kind);
        self.ensure_no_symlinks(&file)?;
        self.ensure_no_symlinks(&sig_file)?;
        if self.config.signatures == Signatures::Required && self.signing.signer.is_none() {
            return Err(WriteError::SignKeyRequired { file });
        }
        let text = match &self.config.store_id {
            Some(store_id) => {
                let generation = self.next_generations(std::slice::from_ref(&file))?[&file];
                header::with_header(
                    text,
                    &ScopeHeader {
                        file: kind,
                        store_id: store_id.clone(),
                        scope: scope.clone(),
                        generation,
                    },
                )
            }
            None => text.to_string(),
        };
        let sig = match &self.signing.signer {
            Some(signer) => {
                if let Some(trust) = &self.signing.trust {
                    let admin = trust.signers().authorize(
                        signer.public_key().key_data(),
                        None,
                        crate::signing::SCOPE_NAMESPACE,
                        crate::signing::now(),
                    );
                    if admin.is_err() {
                        return Err(WriteError::NotAnAdmin {
                            file,
                            fingerprint: signer.fingerprint().to_string(),
                            trust: trust.path().to_path_buf(),
                        });
                    }
                }
                Some(
                    signer
                        .sign(Namespace::Scope, text.as_bytes())
                        .map_err(|source| WriteError::Sign {
                            file: file.clone(),
                            source: Box::new(source),
                        })?,
                )
            }
            None => None,
        };
        atomic::write(&self.root.join(&file), text.as_bytes(), SECRET_MODE)
            .map_err(|source| WriteError::Io { file, source })?;
        self.write_or_drop_sig(&sig_file, sig.as_deref())
    }

    /// Writes signatures (`sign`): each beside its file, atomically, never
    /// through a link, all made durable together.
    pub fn write_signatures(&self, sigs: &[(PathBuf, String)]) -> Result<(), WriteError> {
        let mut targets = self.targets();
        for (rel, _) in sigs {
            targets.check(rel)?;
        }
        let items: Vec<(PathBuf, &[u8])> = sigs
            .iter()
            .map(|(rel, s)| (self.root.join(rel), s.as_bytes()))
            .collect();
        atomic::write_batch(&items, SECRET_MODE).map_err(|e| WriteError::Batch {
            file: e
                .path
                .strip_prefix(&self.root)
                .unwrap_or(&e.path)
                .to_path_buf(),
            renamed: e.renamed,
            source: e.source,
        })
    }

    /// Writes a signature beside its file, or removes one that no longer
    /// covers it.
    fn write_or_drop_sig(&self, sig_file: &Path, sig: Option<&str>) -> Result<(), WriteError> {
        let path = self.root.join(sig_file);
        let io = |source| WriteError::Io {
            file: sig_file.to_path_buf(),
            source,
        };
        match sig {
            Some(sig) => atomic::write(&path, sig.as_bytes(), SECRET_MODE).map_err(io),
            None if fs::symlink_metadata(&path).is_ok() => atomic::remove(&path).map_err(io),
            None => Ok(()),
        }
    }

    /// The generation each file's next write gets: one more than the
    /// highest it has had, on disk, at `HEAD` and in the git history
    /// (SPEC 9). Without a `store_id` nothing is numbered (v1): all 0.
    pub fn next_generations(
        &self,
        files: &[PathBuf],
    ) -> Result<BTreeMap<PathBuf, u64>, WriteError> {
        let mut next: BTreeMap<PathBuf, u64> = files.iter().map(|f| (f.clone(), 0)).collect();
        if self.config.store_id.is_none() || files.is_empty() {
            return Ok(next);
        }
        // Few files: ask git about them; many: about their folders.
        let pathspecs: Vec<PathBuf> = if files.len() <= 64 {
            files.to_vec()
        } else {
            let dirs: std::collections::BTreeSet<PathBuf> = files
                .iter()
                .filter_map(|f| f.parent().map(Path::to_path_buf))
                .collect();
            dirs.into_iter().collect()
        };
        let seen =
            history::from_git(&self.root, &pathspecs).map_err(|source| WriteError::History {
                file: files[0].clone(),
                source,
            })?;
        for (file, generation) in next.iter_mut() {
            let on_disk = self
                .read_file(file, self.config.max_file_bytes())
                .map_or(0, |bytes| history::generation_of_file(file, &bytes));
            let in_git = seen.get(file).map_or(0, |s| s.generation);
            *generation = on_disk.max(in_git) + 1;
        }
        Ok(next)
    }

    /// The checks every secret write makes first: with a trust root, the
    /// scope's recipients must verify; with `signatures = "required"`, a
    /// sign key must be given.
    fn may_write(&self, scope: &Scope, verifier: Option<&Verifier>) -> Result<(), WriteError> {
        let file = scope.recipients_path();
        if let Some(verifier) = verifier {
            verifier
                .recipients_trusted(scope)
                .map_err(|source| WriteError::Untrusted {
                    file: file.clone(),
                    source: Box::new(source),
                })?;
        }
        if self.config.signatures == Signatures::Required && self.signing.signer.is_none() {
            return Err(WriteError::SignKeyRequired { file });
        }
        Ok(())
    }

    /// A verifier with the scopes of `scopes` loaded, when there is a
    /// trust root.
    fn write_verifier<'a>(&self, scopes: impl Iterator<Item = &'a Scope>) -> Option<Verifier> {
        let mut verifier = self.verifier()?;
        let read = |rel: &Path| match self.read_file(rel, super::MAX_TEXT_FILE_BYTES) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        };
        let scopes: std::collections::BTreeSet<&Scope> = scopes.collect();
        for scope in scopes {
            verifier.load_scope(scope, &read);
        }
        Some(verifier)
    }

    /// Encrypts `doc` as generation `generation` to `recipients` (whose
    /// fingerprint is `fingerprint`) and signs it with the sign key, if any.
    fn seal(
        &self,
        doc: &Document,
        (recipients, fingerprint): (&RecipientSet, &str),
        generation: u64,
    ) -> Result<(Vec<u8>, Option<String>), WriteError> {
        let file = doc.id.path();
        let metadata = Metadata {
            id: doc.id.clone(),
            recipients_fingerprint: fingerprint.to_string(),
            store_id: self.config.store_id.clone(),
            generation,
        };
        let ciphertext = envelope::encrypt(doc.to_toml().as_bytes(), recipients, &metadata)
            .map_err(|source| WriteError::Encrypt {
                file: file.clone(),
                source,
            })?;
        let sig = match &self.signing.signer {
            Some(signer) => Some(signer.sign(Namespace::Secret, &ciphertext).map_err(
                |source| WriteError::Sign {
                    file,
                    source: Box::new(source),
                },
            )?),
            None => None,
        };
        Ok((ciphertext, sig))
    }

    /// Encrypts a document to its scope's recipients and writes it atomically,
    /// signed with the sign key if there is one. With identities, an
    /// existing file that already holds the same document for the same
    /// recipients is left untouched.
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
        let verifier = self.write_verifier(std::iter::once(&id.scope));
        self.may_write(&id.scope, verifier.as_ref())?;
        let fingerprint = recipients.fingerprint();
        let mut targets = self.targets();
        let exists = targets.check(&file)? == Target::File;
        targets.check(&id.sig_path())?;
        let outcome = self.outcome_at(doc, &fingerprint, identities, exists);
        if outcome == WriteOutcome::Unchanged {
            return Ok(WriteOutcome::Unchanged);
        }
        let generation = self.next_generations(std::slice::from_ref(&file))?[&file];
        let (ciphertext, sig) = self.seal(doc, (&recipients, &fingerprint), generation)?;
        atomic::write(&self.root.join(&file), &ciphertext, SECRET_MODE)
            .map_err(|source| WriteError::Io { file, source })?;
        self.write_or_drop_sig(&id.sig_path(), sig.as_deref())?;
        Ok(outcome)
    }

    /// Writes many documents as one batch: each scope's recipients read
    /// once, unchanged files (same document, same recipients) left alone,
    /// encryption (and signing) in parallel with the staging of what is
    /// encrypted, and every file made durable with one flush of the file
    /// system rather than two `fsync`s each (see [`atomic::Batch`]). Every
    /// check and every encryption happens before the first file is
    /// replaced: a refusal, a missing recipients file or a full disk while
    /// staging leaves the store unchanged. Without identities nothing can
    /// be compared, so every document is rewritten (`rekey`, whose plan
    /// chose the files, `--force` or not).
    pub fn put_many(
        &self,
        docs: &[Document],
        identities: Option<&Identities>,
    ) -> Result<Vec<WriteOutcome>, WriteError> {
        self.put_many_with_progress(docs, identities, &|| {})
    }

    /// [`Store::put_many`], calling `progress` once per document as it is
    /// staged (or found unchanged): `docs.len()` calls when nothing fails
    /// before the commit, which then replaces them all.
    pub fn put_many_with_progress(
        &self,
        docs: &[Document],
        identities: Option<&Identities>,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Vec<WriteOutcome>, WriteError> {
        // Each scope's recipients read, judged and fingerprinted once.
        let mut recipients: BTreeMap<&Scope, (RecipientSet, String)> = BTreeMap::new();
        let verifier = self.write_verifier(docs.iter().map(|d| &d.id.scope));
        let files: Vec<PathBuf> = docs.iter().map(|d| d.id.path()).collect();
        // Each folder on the way looked at once, then the file and its
        // signature: whether each is there.
        let mut targets = self.targets();
        let mut present: Vec<(bool, bool)> = Vec::with_capacity(docs.len());
        for (doc, file) in docs.iter().zip(&files) {
            let scope = &doc.id.scope;
            if !recipients.contains_key(scope) {
                let set = self.recipients(scope)?;
                set.require_some()
                    .map_err(|source| RecipientsError::Invalid {
                        file: scope.recipients_path(),
                        source,
                    })?;
                self.may_write(scope, verifier.as_ref())?;
                let fingerprint = set.fingerprint();
                recipients.insert(scope, (set, fingerprint));
            }
            let exists = targets.check(file)? == Target::File;
            let signed = targets.check(&crate::scope::sig_path(file))? == Target::File;
            present.push((exists, signed));
        }
        let generations = self.next_generations(&files)?;
        let generations: Vec<u64> = files.iter().map(|f| generations[f]).collect();
        // Each document's outcome and, unless unchanged, its ciphertext and
        // signature.
        type Sealed = (WriteOutcome, Option<(Vec<u8>, Option<String>)>);
        let seal_one = |i: usize| -> Result<Sealed, WriteError> {
            let doc = &docs[i];
            let (set, fingerprint) = &recipients[&doc.id.scope];
            let outcome = self.outcome_at(doc, fingerprint, identities, present[i].0);
            if outcome == WriteOutcome::Unchanged {
                return Ok((outcome, None));
            }
            let sealed = self.seal(doc, (set, fingerprint), generations[i])?;
            Ok((outcome, Some(sealed)))
        };
        let batch_error = |e: atomic::BatchError| WriteError::Batch {
            file: e
                .path
                .strip_prefix(&self.root)
                .unwrap_or(&e.path)
                .to_path_buf(),
            renamed: e.renamed,
            source: e.source,
        };
        let per_doc = if self.signing.signer.is_some() { 2 } else { 1 };
        let mut batch = atomic::Batch::new(SECRET_MODE, docs.len() * per_doc);
        let mut outcomes = vec![WriteOutcome::Unchanged; docs.len()];
        // Signatures that no longer cover their file (an unsigned rewrite).
        let mut stale_sigs = Vec::new();
        // The documents are encrypted on every core (X25519 per file is the
        // cost) while this thread stages each one as it comes, in whatever
        // order, so that creating the files overlaps the encryption instead
        // of following it; each folder's renames keep the input order. A
        // failure drops the channel, which stops the encryption, and the
        // batch, which removes what was staged.
        std::thread::scope(|threads| -> Result<(), WriteError> {
            let (sealed_tx, sealed_rx) = std::sync::mpsc::channel();
            let seal_one = &seal_one;
            threads.spawn(move || {
                let _stopped = (0..docs.len())
                    .into_par_iter()
                    .try_for_each_with(sealed_tx, |tx, i| tx.send((i, seal_one(i))));
            });
            for (i, sealed) in sealed_rx {
                let (outcome, sealed) = sealed?;
                outcomes[i] = outcome;
                let Some((ciphertext, sig)) = sealed else {
                    progress();
                    continue;
                };
                let path = self.root.join(&files[i]);
                batch
                    .stage(2 * i, &path, &ciphertext)
                    .map_err(batch_error)?;
                match sig {
                    Some(sig) => {
                        let sig_path = crate::scope::sig_path(&path);
                        batch
                            .stage(2 * i + 1, &sig_path, sig.as_bytes())
                            .map_err(batch_error)?;
                    }
                    None if present[i].1 => stale_sigs.push(crate::scope::sig_path(&files[i])),
                    None => {}
                }
                progress();
            }
            Ok(())
        })?;
        batch.commit().map_err(batch_error)?;
        for sig_file in stale_sigs {
            self.write_or_drop_sig(&sig_file, None)?;
        }
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
        self.ensure_no_symlinks(&id.sig_path())?;
        atomic::remove(&self.root.join(&file)).map_err(|source| WriteError::Io {
            file: file.clone(),
            source,
        })?;
        self.write_or_drop_sig(&id.sig_path(), None)?;
        // A long name's folder goes with its last file (fails if not empty).
        if let Some(dir) = file.parent() {
            if matches!(StorePath::classify(dir), StorePath::LongNameDir(_)) {
                let _ = fs::remove_dir(self.root.join(dir));
            }
        }
        Ok(())
    }

    /// Refuses a secret path that a write would follow out of the store: a
    /// symlinked folder on the way, or a symlink (or non-file) at the target
    /// (see [`Store::ensure_no_symlinks`]).
    pub fn check_writable(&self, id: &SecretId) -> Result<(), WriteError> {
        self.ensure_no_symlinks(&id.path()).map(|_| ())
    }
}
