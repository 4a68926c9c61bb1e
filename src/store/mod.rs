//! A store on disk: walking it, reading and writing secrets safely.
//!
//! Every read goes through [`Store::read_file`], which refuses symlinks (at
//! any depth below the store root), non-regular files and files larger than
//! the limits allow, so a hostile checkout cannot point meshseal at
//! `/etc/shadow`, block it on a FIFO or make it allocate without bound.
//! Every write is atomic (see [`crate::atomic`]). Whole-store loads decrypt
//! in parallel on all cores.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use walkdir::WalkDir;

use crate::atomic;
use crate::config::{Config, CONFIG_FILE};
use crate::confine::{ConfineError, Confined};
use crate::document::Document;
use crate::envelope::{self, Header, Metadata};
use crate::identity::Identities;
use crate::recipients::RecipientSet;
use crate::scope::{Scope, SecretId, StorePath};

mod error;
pub mod layout;

pub use error::{
    LoadError, Moved, OpenError, RecipientsError, ScanError, StoreError, WriteError,
};

/// The largest text file (policy, Mesh resource, recipients, writers,
/// config) any reader accepts: one limit for every text file of a store.
pub const MAX_TEXT_FILE_BYTES: usize = 1024 * 1024;

/// Mode of secret files (ciphertext, meant for git).
const SECRET_MODE: u32 = 0o644;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new file.
    Created,
    /// The file was replaced.
    Updated,
    /// Same content, same recipients: the file was left untouched.
    Unchanged,
}

/// The kind of a file found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A symlink (never followed).
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

/// One file found under `meshes/` or `global/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the store root.
    pub rel: PathBuf,
    /// What the layout says the path is.
    pub what: StorePath,
    /// What kind of file it is.
    pub kind: FileKind,
}

/// A secret read and decrypted.
#[derive(Debug)]
pub struct Loaded {
    /// The document (bound to its path).
    pub doc: Document,
    /// The header as read without a key.
    pub header: Header,
    /// sha256 of the file's bytes.
    pub file_sha256: [u8; 32],
}

/// A store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    config: Config,
    /// Reads below the root (shared by clones: it holds the root's handle).
    files: Arc<Confined>,
}

impl Store {
    /// Opens an existing store.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, OpenError> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(OpenError::NoSuchFolder {
                    root,
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                })
            }
            Err(source) => return Err(OpenError::NoSuchFolder { root, source }),
        }
        if !root.join("meshes").is_dir() && !root.join("global").is_dir() {
            return Err(OpenError::NotAStore { root });
        }
        Self::with_config(root)
    }

    /// Opens a directory as a store even if it has no scopes yet. The config
    /// file is read like every other store file: confined, bounded, never
    /// through a link.
    pub fn with_config(root: PathBuf) -> Result<Store, OpenError> {
        let mut store = Store {
            files: Arc::new(Confined::new(root.clone())),
            root,
            config: Config::default(),
        };
        let file = PathBuf::from(CONFIG_FILE);
        match store.read_text(&file) {
            Ok(text) => {
                store.config =
                    Config::parse(&text).map_err(|source| OpenError::Config { file, source })?;
            }
            Err(e) if e.is_not_found() => {}
            Err(source) => return Err(OpenError::ReadConfig { file, source }),
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads a file below the root, refusing symlinks at any depth, non-regular
    /// files and files over `limit` bytes.
    pub fn read_file(&self, rel: &Path, limit: usize) -> Result<Vec<u8>, StoreError> {
        // The file is opened without following a link at any depth and
        // without blocking (a FIFO), then judged by the handle, so nothing
        // can be swapped in between a check and the read.
        let file = self.files.open(rel).map_err(|e| match e {
            ConfineError::Symlink => StoreError::Symlink,
            ConfineError::Io(e) => StoreError::Io(e),
        })?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(StoreError::NotRegular);
        }
        if meta.len() > limit as u64 {
            return Err(StoreError::TooLarge {
                size: meta.len(),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
        if bytes.len() > limit {
            return Err(StoreError::TooLarge {
                size: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }

    /// Reads a text file below the root (a policy, the Mesh resource, a
    /// recipients or config file): confined like every read, at most
    /// [`MAX_TEXT_FILE_BYTES`], UTF-8 required.
    pub fn read_text(&self, rel: &Path) -> Result<String, StoreError> {
        text_from_bytes(self.read_file(rel, MAX_TEXT_FILE_BYTES)?)
    }

    /// A scope's recipients. A missing file is an error naming it.
    pub fn recipients(&self, scope: &Scope) -> Result<RecipientSet, RecipientsError> {
        let file = scope.recipients_path();
        let text = match self.read_text(&file) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => {
                return Err(RecipientsError::Missing {
                    file,
                    scope: scope.clone(),
                })
            }
            Err(source) => return Err(RecipientsError::Read { file, source }),
        };
        RecipientSet::parse(&text).map_err(|source| RecipientsError::Invalid { file, source })
    }

    /// The recipients file's text, or empty when it does not exist.
    pub fn recipients_text(&self, scope: &Scope) -> Result<String, RecipientsError> {
        let file = scope.recipients_path();
        match self.read_text(&file) {
            Ok(t) => Ok(t),
            Err(e) if e.is_not_found() => Ok(String::new()),
            Err(source) => Err(RecipientsError::Read { file, source }),
        }
    }

    /// Replaces a scope's recipients file atomically.
    pub fn write_recipients(&self, scope: &Scope, text: &str) -> Result<(), WriteError> {
        let file = scope.recipients_path();
        self.ensure_no_symlinks(&file)?;
        atomic::write(&self.root.join(&file), text.as_bytes(), SECRET_MODE)
            .map_err(|source| WriteError::Io { file, source })
    }

    /// Every file under `meshes/` and `global/`, sorted by path. Symlinks are
    /// reported, never followed.
    pub fn scan(&self) -> Result<Vec<Entry>, ScanError> {
        self.files.reopen();
        let mut entries = Vec::new();
        for top in ["global", "meshes"] {
            let dir = self.root.join(top);
            match fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ScanError {
                        file: PathBuf::from(top),
                        source,
                    })
                }
                Ok(m) if m.file_type().is_symlink() => {
                    entries.push(Entry {
                        rel: PathBuf::from(top),
                        what: StorePath::Unexpected,
                        kind: FileKind::Symlink,
                    });
                    continue;
                }
                Ok(_) => {}
            }
            for item in WalkDir::new(&dir)
                .follow_links(false)
                .sort_by_file_name()
                .min_depth(1)
            {
                let item = item.map_err(|e| {
                    let file = e
                        .path()
                        .and_then(|p| p.strip_prefix(&self.root).ok())
                        .unwrap_or(Path::new(top))
                        .to_path_buf();
                    ScanError {
                        file,
                        source: e.into(),
                    }
                })?;
                let ft = item.file_type();
                let rel = item
                    .path()
                    .strip_prefix(&self.root)
                    .expect("walk stays below the root")
                    .to_path_buf();
                if ft.is_dir() {
                    // A folder where a secret file belongs (`secrets/x.age/`)
                    // is reported; other folders are just walked.
                    let what = StorePath::classify(&rel);
                    if matches!(what, StorePath::Secret(_) | StorePath::StraySecret { .. }) {
                        entries.push(Entry {
                            what,
                            rel,
                            kind: FileKind::Special,
                        });
                    }
                    continue;
                }
                let kind = if ft.is_symlink() {
                    FileKind::Symlink
                } else if ft.is_file() {
                    FileKind::Regular
                } else {
                    FileKind::Special
                };
                entries.push(Entry {
                    what: StorePath::classify(&rel),
                    rel,
                    kind,
                });
            }
        }
        Ok(entries)
    }

    /// The secrets present, optionally only those of one scope, sorted.
    pub fn secret_ids(&self, scope: Option<&Scope>) -> Result<Vec<SecretId>, ScanError> {
        let mut ids: Vec<SecretId> = match scope {
            // Fast path: list one folder rather than walk the store.
            Some(scope) => {
                let dir = self.root.join(scope.secrets_dir());
                let read = match fs::read_dir(&dir) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(source) => {
                        return Err(ScanError {
                            file: scope.secrets_dir(),
                            source,
                        })
                    }
                };
                read.filter_map(Result::ok)
                    .filter_map(|e| {
                        let rel = scope.secrets_dir().join(e.file_name());
                        match StorePath::classify(&rel) {
                            StorePath::Secret(id) => Some(id),
                            _ => None,
                        }
                    })
                    .collect()
            }
            None => self
                .scan()?
                .into_iter()
                .filter_map(|e| match e.what {
                    StorePath::Secret(id) => Some(id),
                    _ => None,
                })
                .collect(),
        };
        ids.sort();
        Ok(ids)
    }

    /// Whether the secret's file exists.
    pub fn exists(&self, id: &SecretId) -> bool {
        fs::symlink_metadata(self.root.join(id.path())).is_ok()
    }

    /// Reads a secret's file (not decrypted).
    pub fn read_secret_file(&self, id: &SecretId) -> Result<Vec<u8>, LoadError> {
        let file = id.path();
        self.read_file(&file, self.config.max_file_bytes())
            .map_err(|e| LoadError::Read {
                source: if e.is_not_found() {
                    StoreError::NotFound(id.clone())
                } else {
                    e
                },
                file,
            })
    }

    /// Reads the header of a secret without a key.
    pub fn inspect(&self, id: &SecretId) -> Result<(Header, [u8; 32]), LoadError> {
        let bytes = self.read_secret_file(id)?;
        let header = envelope::read_header(&bytes).map_err(|source| LoadError::Envelope {
            file: id.path(),
            source,
        })?;
        Ok((header, Sha256::digest(&bytes).into()))
    }

    /// Reads, decrypts, parses and binds one secret.
    pub fn load(&self, id: &SecretId, identities: &Identities) -> Result<Loaded, LoadError> {
        let bytes = self.read_secret_file(id)?;
        self.open_bytes(id, &bytes, identities)
    }

    /// Decrypts, parses and binds a secret's file content (read elsewhere, for
    /// example from the git index).
    pub fn open_bytes(
        &self,
        id: &SecretId,
        bytes: &[u8],
        identities: &Identities,
    ) -> Result<Loaded, LoadError> {
        let file = || id.path();
        let (header, plaintext) =
            envelope::open(bytes, identities, self.config.max_plaintext_bytes()).map_err(
                |source| LoadError::Envelope {
                    file: file(),
                    source,
                },
            )?;
        let doc = Document::parse(&plaintext, self.config.limits.max_data_bytes).map_err(
            |source| LoadError::Document {
                file: file(),
                source,
            },
        )?;
        doc.bind(id).map_err(|source| LoadError::Document {
            file: file(),
            source,
        })?;
        if let Some(meta) = &header.metadata {
            // The document binds but the header disagrees: the header was
            // written by hand-crafted tooling. Refuse rather than guess.
            Moved::check(&meta.id, id).map_err(|source| LoadError::Moved {
                file: file(),
                source,
            })?;
        }
        Ok(Loaded {
            doc,
            header,
            file_sha256: Sha256::digest(bytes).into(),
        })
    }

    /// Loads many secrets in parallel, each result on its own.
    pub fn load_many(
        &self,
        ids: &[SecretId],
        identities: &Identities,
    ) -> Vec<Result<Loaded, LoadError>> {
        ids.par_iter().map(|id| self.load(id, identities)).collect()
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
        let existed = self.exists(id);
        if existed {
            if let Some(ids) = identities {
                if let Ok(old) = self.load(id, ids) {
                    let same_recipients = old
                        .header
                        .metadata
                        .as_ref()
                        .is_some_and(|m| m.recipients_fingerprint == fingerprint);
                    if same_recipients && old.header.armored && old.doc == *doc {
                        return Ok(WriteOutcome::Unchanged);
                    }
                }
            }
        }
        let metadata = Metadata {
            id: id.clone(),
            recipients_fingerprint: fingerprint,
        };
        let plaintext = doc.to_toml();
        let ciphertext = envelope::encrypt(plaintext.as_bytes(), &recipients, &metadata)
            .map_err(|source| WriteError::Encrypt {
                file: file.clone(),
                source,
            })?;
        self.check_writable(id)?;
        atomic::write(&self.root.join(&file), &ciphertext, SECRET_MODE)
            .map_err(|source| WriteError::Io { file, source })?;
        Ok(if existed {
            WriteOutcome::Updated
        } else {
            WriteOutcome::Created
        })
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
                set.require_some().map_err(|source| RecipientsError::Invalid {
                    file: scope.recipients_path(),
                    source,
                })?;
                recipients.insert(scope, set);
            }
            self.check_writable(&doc.id)?;
        }
        // Decide and encrypt in parallel: X25519 per file is the cost.
        let planned: Vec<Result<(WriteOutcome, Option<Vec<u8>>), WriteError>> = docs
            .par_iter()
            .map(|doc| {
                let set = &recipients[&doc.id.scope];
                let fingerprint = set.fingerprint();
                let existed = self.exists(&doc.id);
                if existed {
                    if let Some(ids) = identities {
                        if let Ok(old) = self.load(&doc.id, ids) {
                            let same = old
                                .header
                                .metadata
                                .as_ref()
                                .is_some_and(|m| m.recipients_fingerprint == fingerprint);
                            if same && old.header.armored && old.doc == *doc {
                                return Ok((WriteOutcome::Unchanged, None));
                            }
                        }
                    }
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
                let outcome = if existed {
                    WriteOutcome::Updated
                } else {
                    WriteOutcome::Created
                };
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
        let items: Vec<(PathBuf, &[u8])> =
            writes.iter().map(|(p, c)| (p.clone(), c.as_slice())).collect();
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

/// The text of a file read as bytes (from the working tree or the git
/// index): UTF-8 or refused, by one rule.
pub fn text_from_bytes(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| StoreError::NotUtf8)
}

/// `-m MESH ` or `--global ` for hints.
pub fn scope_flag(scope: &Scope) -> String {
    match scope {
        Scope::Global => "--global ".to_string(),
        Scope::Mesh(m) => format!("-m {m} "),
    }
}

/// sha256 hex prefix used as a short fingerprint in listings.
pub fn short_sha(sha: &[u8; 32]) -> String {
    crate::recipients::hex(&sha[..6])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::SecretData;

    /// A store with one mesh `m` encrypted to a fresh identity.
    fn store() -> (tempfile::TempDir, Store, Identities) {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = crate::identity::generate();
        let ids = Identities::from_age_text(&secret).unwrap();
        for scope in ["meshes/m", "global"] {
            fs::create_dir_all(dir.path().join(scope)).unwrap();
            fs::write(dir.path().join(scope).join("recipients.txt"), format!("{public}\n")).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        (dir, store, ids)
    }

    fn doc(name: &str, data: &[u8]) -> Document {
        let id = SecretId::new(Scope::mesh("m").unwrap(), name).unwrap();
        Document::new(id, SecretData::new(data.to_vec()))
    }

    #[test]
    fn open_tells_a_missing_folder_from_a_folder_that_is_no_store() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Store::open(dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, OpenError::NoSuchFolder { .. }), "{missing:?}");
        let empty = Store::open(dir.path()).unwrap_err();
        assert!(matches!(empty, OpenError::NotAStore { .. }), "{empty:?}");
        assert_eq!(crate::problem::Problem::from(empty).code, "not-a-store");
    }

    #[test]
    fn a_config_file_that_is_a_link_is_refused_not_followed() {
        let (dir, _, _) = store();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join(CONFIG_FILE)).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, OpenError::ReadConfig { source: StoreError::Symlink, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn text_files_must_be_utf8() {
        let (dir, store, _) = store();
        fs::write(dir.path().join("meshes/m/mesh.toml"), [0xff, 0xfe]).unwrap();
        let err = store.read_text(Path::new("meshes/m/mesh.toml")).unwrap_err();
        assert!(matches!(err, StoreError::NotUtf8));
    }

    #[test]
    fn a_missing_recipients_file_names_its_scope() {
        let (dir, store, _) = store();
        fs::remove_file(dir.path().join("global/recipients.txt")).unwrap();
        let err = store.recipients(&Scope::Global).unwrap_err();
        let p = crate::problem::Problem::from(err);
        assert_eq!(p.file.as_deref(), Some(Path::new("global/recipients.txt")));
        assert!(p.hint.unwrap().contains("--global"));
    }

    #[test]
    fn put_many_writes_all_and_leaves_unchanged_files_alone() {
        let (dir, store, ids) = store();
        let docs = vec![doc("a", b"1"), doc("b", b"2")];
        let outcomes = store.put_many(&docs, Some(&ids)).unwrap();
        assert_eq!(outcomes, vec![WriteOutcome::Created, WriteOutcome::Created]);
        let before = fs::read(dir.path().join("meshes/m/secrets/a.age")).unwrap();
        let again = store.put_many(&[doc("a", b"1"), doc("b", b"3")], Some(&ids)).unwrap();
        assert_eq!(again, vec![WriteOutcome::Unchanged, WriteOutcome::Updated]);
        assert_eq!(fs::read(dir.path().join("meshes/m/secrets/a.age")).unwrap(), before);
        assert_eq!(store.load(&docs[1].id, &ids).unwrap().doc.data.expose(), b"3");
    }

    #[test]
    fn put_many_with_one_refused_path_writes_nothing() {
        let (dir, store, ids) = store();
        fs::create_dir_all(dir.path().join("meshes/m/secrets")).unwrap();
        std::os::unix::fs::symlink("/tmp", dir.path().join("meshes/m/secrets/b.age")).unwrap();
        let err = store.put_many(&[doc("a", b"1"), doc("b", b"2")], None).unwrap_err();
        assert!(matches!(err, WriteError::Refused { .. }), "{err:?}");
        assert!(!dir.path().join("meshes/m/secrets/a.age").exists());
    }

    #[test]
    fn a_header_that_disagrees_with_the_path_is_moved() {
        let (dir, store, ids) = store();
        store.put(&doc("a", b"1"), None).unwrap();
        fs::copy(
            dir.path().join("meshes/m/secrets/a.age"),
            dir.path().join("meshes/m/secrets/b.age"),
        )
        .unwrap();
        let b = SecretId::new(Scope::mesh("m").unwrap(), "b").unwrap();
        let err = store.load(&b, &ids).unwrap_err();
        assert!(err.is_moved(), "{err:?}");
    }
}
