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
use thiserror::Error;
use walkdir::WalkDir;

use crate::atomic;
use crate::config::{Config, CONFIG_FILE};
use crate::confine::{ConfineError, Confined};
use crate::document::Document;
use crate::envelope::{self, Header, Metadata};
use crate::identity::Identities;
use crate::problem::{Diagnostic, Problem};
use crate::recipients::{RecipientError, RecipientSet};
use crate::scope::{Scope, SecretId, StorePath};

/// Mode of secret files (ciphertext, meant for git).
const SECRET_MODE: u32 = 0o644;

/// Why a store operation failed (beyond document and envelope errors).
#[derive(Debug, Error)]
pub enum StoreError {
    /// The directory is not a store.
    #[error("not a meshseal store (no meshes/ or global/ folder)")]
    NotAStore,
    /// I/O failure.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A symlink where a regular file or folder belongs.
    #[error("is a symlink: store files must be regular files inside the store")]
    Symlink,
    /// A FIFO, socket, device or folder where a file belongs.
    #[error("is not a regular file")]
    NotRegular,
    /// The file exceeds what any valid secret needs.
    #[error("file is {size} bytes, more than the {limit} bytes any valid secret needs")]
    TooLarge {
        /// Actual size.
        size: u64,
        /// Limit.
        limit: usize,
    },
    /// Kuma's not-found text.
    #[error("resource not found: {}", .0.kuma_ref())]
    NotFound(SecretId),
    /// Kuma's conflict text.
    #[error("resource already exists: {}", .0.kuma_ref())]
    AlreadyExists(SecretId),
}

impl Diagnostic for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::NotAStore => "not-a-store",
            StoreError::Io(_) => "io",
            StoreError::Symlink => "symlink",
            StoreError::NotRegular => "not-regular-file",
            StoreError::TooLarge { .. } => "too-large",
            StoreError::NotFound(_) => "not-found",
            StoreError::AlreadyExists(_) => "already-exists",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StoreError::NotAStore => {
                Some("run `meshseal init` here, or point -C/--repo at a store".to_string())
            }
            StoreError::Symlink => Some(
                "replace the link with the file itself; meshseal never follows links out of the store"
                    .to_string(),
            ),
            StoreError::AlreadyExists(_) => {
                Some("use `meshseal apply` or `meshseal edit` to change it".to_string())
            }
            StoreError::NotFound(id) => Some(match &id.scope {
                Scope::Global => "list global secrets with `meshseal get global-secrets`".to_string(),
                Scope::Mesh(m) => format!("list the mesh's secrets with `meshseal get secrets -m {m}`"),
            }),
            _ => None,
        }
    }
}

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
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, Problem> {
        let root = root.into();
        if !root.join("meshes").is_dir() && !root.join("global").is_dir() {
            return Err(Problem::at(&root, &StoreError::NotAStore));
        }
        Self::with_config(root)
    }

    /// Opens a directory as a store even if it has no scopes yet.
    pub fn with_config(root: PathBuf) -> Result<Store, Problem> {
        let config_path = root.join(CONFIG_FILE);
        let config = match fs::read_to_string(&config_path) {
            Ok(text) => Config::parse(&text).map_err(|e| Problem::at(CONFIG_FILE, &e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(Problem::at(CONFIG_FILE, &StoreError::Io(e))),
        };
        Ok(Store {
            files: Arc::new(Confined::new(root.clone())),
            root,
            config,
        })
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

    /// A scope's recipients. A missing file is an error naming it.
    pub fn recipients(&self, scope: &Scope) -> Result<RecipientSet, Problem> {
        let rel = scope.recipients_path();
        let text = match self.read_file(&rel, 1024 * 1024) {
            Ok(b) => b,
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                return Err(
                    Problem::at(&rel, &RecipientError::Missing).with_hint(format!(
                        "add a recipient with `meshseal recipients add {}KEY`",
                        scope_flag(scope)
                    )),
                )
            }
            Err(e) => return Err(Problem::at(&rel, &e)),
        };
        let text = String::from_utf8(text).map_err(|_| {
            Problem::at(
                &rel,
                &RecipientError::Invalid {
                    reason: "not UTF-8 text".to_string(),
                    line: None,
                },
            )
        })?;
        RecipientSet::parse(&text).map_err(|e| Problem::at(&rel, &e))
    }

    /// The recipients file's text, or empty when it does not exist.
    pub fn recipients_text(&self, scope: &Scope) -> Result<String, Problem> {
        let rel = scope.recipients_path();
        match self.read_file(&rel, 1024 * 1024) {
            Ok(b) => String::from_utf8(b).map_err(|_| {
                Problem::new(
                    Some(rel),
                    "invalid-recipient",
                    "recipients file is not UTF-8 text",
                )
            }),
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(Problem::at(&rel, &e)),
        }
    }

    /// Replaces a scope's recipients file atomically.
    pub fn write_recipients(&self, scope: &Scope, text: &str) -> Result<(), Problem> {
        let rel = scope.recipients_path();
        atomic::write(&self.root.join(&rel), text.as_bytes(), SECRET_MODE)
            .map_err(|e| Problem::at(&rel, &StoreError::Io(e)))
    }

    /// Every file under `meshes/` and `global/`, sorted by path. Symlinks are
    /// reported, never followed.
    pub fn scan(&self) -> Result<Vec<Entry>, Problem> {
        self.files.reopen();
        let mut entries = Vec::new();
        for top in ["global", "meshes"] {
            let dir = self.root.join(top);
            match fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Problem::at(top, &StoreError::Io(e))),
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
                    let path = e
                        .path()
                        .and_then(|p| p.strip_prefix(&self.root).ok())
                        .unwrap_or(Path::new(top))
                        .to_path_buf();
                    Problem::new(Some(path), "io", e.to_string())
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
    pub fn secret_ids(&self, scope: Option<&Scope>) -> Result<Vec<SecretId>, Problem> {
        let mut ids: Vec<SecretId> = match scope {
            // Fast path: list one folder rather than walk the store.
            Some(scope) => {
                let dir = self.root.join(scope.secrets_dir());
                let read = match fs::read_dir(&dir) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(Problem::at(scope.secrets_dir(), &StoreError::Io(e))),
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
    pub fn read_secret_file(&self, id: &SecretId) -> Result<Vec<u8>, Problem> {
        let rel = id.path();
        self.read_file(&rel, self.config.max_file_bytes())
            .map_err(|e| match e {
                StoreError::Io(io) if io.kind() == io::ErrorKind::NotFound => {
                    Problem::at(&rel, &StoreError::NotFound(id.clone()))
                }
                other => Problem::at(&rel, &other),
            })
    }

    /// Reads the header of a secret without a key.
    pub fn inspect(&self, id: &SecretId) -> Result<(Header, [u8; 32]), Problem> {
        let bytes = self.read_secret_file(id)?;
        let header = envelope::read_header(&bytes).map_err(|e| Problem::at(id.path(), &e))?;
        Ok((header, Sha256::digest(&bytes).into()))
    }

    /// Reads, decrypts, parses and binds one secret.
    pub fn load(&self, id: &SecretId, identities: &Identities) -> Result<Loaded, Problem> {
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
    ) -> Result<Loaded, Problem> {
        let rel = id.path();
        let (header, plaintext) =
            envelope::open(bytes, identities, self.config.max_plaintext_bytes())
                .map_err(|e| Problem::at(&rel, &e))?;
        let doc = Document::parse(&plaintext, self.config.limits.max_data_bytes)
            .map_err(|e| Problem::at(&rel, &e))?;
        doc.bind(id).map_err(|e| Problem::at(&rel, &e))?;
        if let Some(meta) = &header.metadata {
            if &meta.id != id {
                // The document binds but the header disagrees: the header was
                // written by hand-crafted tooling. Refuse rather than guess.
                return Err(Problem::new(
                    Some(rel),
                    "scope-mismatch",
                    format!("header metadata says {} but the path says {id}", meta.id),
                ));
            }
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
    ) -> Vec<Result<Loaded, Problem>> {
        ids.par_iter().map(|id| self.load(id, identities)).collect()
    }

    /// Encrypts a document to its scope's recipients and writes it atomically.
    /// With identities, an existing file that already holds the same document
    /// for the same recipients is left untouched.
    pub fn put(
        &self,
        doc: &Document,
        identities: Option<&Identities>,
    ) -> Result<WriteOutcome, Problem> {
        let id = &doc.id;
        let rel = id.path();
        let recipients = self.recipients(&id.scope)?;
        recipients
            .require_some()
            .map_err(|e| Problem::at(id.scope.recipients_path(), &e))?;
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
            .map_err(|e| Problem::at(&rel, &e))?;
        self.check_writable(id)?;
        atomic::write(&self.root.join(&rel), &ciphertext, SECRET_MODE)
            .map_err(|e| Problem::at(&rel, &StoreError::Io(e)))?;
        Ok(if existed {
            WriteOutcome::Updated
        } else {
            WriteOutcome::Created
        })
    }

    /// Removes a secret's file.
    pub fn delete(&self, id: &SecretId) -> Result<(), Problem> {
        let rel = id.path();
        if !self.exists(id) {
            return Err(Problem::at(&rel, &StoreError::NotFound(id.clone())));
        }
        self.ensure_no_symlinks(&rel)?;
        atomic::remove(&self.root.join(&rel)).map_err(|e| Problem::at(&rel, &StoreError::Io(e)))
    }

    /// Refuses a secret path that a write would follow out of the store: a
    /// symlinked folder on the way, or a symlink (or non-file) at the target.
    pub fn check_writable(&self, id: &SecretId) -> Result<(), Problem> {
        let rel = id.path();
        self.ensure_no_symlinks(&rel)?;
        match fs::symlink_metadata(self.root.join(&rel)) {
            Ok(m) if !m.is_file() => Err(Problem::at(&rel, &StoreError::NotRegular)),
            _ => Ok(()),
        }
    }

    /// Refuses to write through a symlinked folder (or onto a symlink).
    fn ensure_no_symlinks(&self, rel: &Path) -> Result<(), Problem> {
        let mut path = self.root.clone();
        for c in rel.components() {
            path.push(c);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Problem::at(rel, &StoreError::Symlink))
                }
                _ => {}
            }
        }
        Ok(())
    }
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
