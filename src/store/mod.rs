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

use crate::config::{Config, CONFIG_FILE};
use crate::confine::{ConfineError, Confined};
use crate::document::Document;
use crate::envelope::{self, Header};
use crate::identity::Identities;
use crate::recipients::RecipientSet;
use crate::scope::{Scope, SecretId, StorePath};

mod error;
pub mod layout;
mod scan;
mod target;
mod write;

pub use error::{
    LoadError, Moved, OpenError, ReadKind, RecipientsError, ScanError, StoreError, WriteError,
};
pub use target::{Target, Targets};

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

/// Who writes (SPEC 9): the sign key and the trust root that a writing
/// command runs with. Every write of a store opened with one signs what it
/// writes (secrets as a writer, scope files as an admin) and, with a trust
/// root, refuses to encrypt to a `recipients.txt` that does not verify.
#[derive(Debug, Default)]
pub struct Signing {
    /// The sign key (`-S`), if any: without one, files are written unsigned.
    pub signer: Option<crate::signing::Signer>,
    /// The trust root (`--trust`), if any.
    pub trust: Option<crate::signing::TrustRoot>,
}

/// A store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    config: Config,
    /// Reads below the root (shared by clones: it holds the root's handle).
    files: Arc<Confined>,
    /// Who writes; unsigned and unverified by default.
    signing: Arc<Signing>,
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
            signing: Arc::new(Signing::default()),
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

    /// The store, writing as `signing` says. With a sign key, a store that
    /// has no `store_id` yet gets one (written to `meshseal.toml`), so that
    /// what is signed is bound to this store.
    pub fn with_signing(mut self, signing: Signing) -> Result<Store, WriteError> {
        if signing.signer.is_some() && self.config.store_id.is_none() {
            self.adopt_store_id()?;
        }
        self.signing = Arc::new(signing);
        Ok(self)
    }

    /// Who writes.
    pub fn signing(&self) -> &Signing {
        &self.signing
    }

    /// A verifier for this store under the trust root it was opened with,
    /// with no scope loaded.
    pub fn verifier(&self) -> Option<crate::writers::Verifier> {
        self.signing
            .trust
            .as_ref()
            .map(|t| crate::writers::Verifier::new(t, &self.config))
    }

    /// Gives the store a `store_id`, keeping the rest of `meshseal.toml` as
    /// it is (the key goes before the first table).
    fn adopt_store_id(&mut self) -> Result<(), WriteError> {
        let file = PathBuf::from(CONFIG_FILE);
        let text = match self.read_text(&file) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => String::new(),
            Err(source) => return Err(WriteError::Refused { file, source }),
        };
        let id = crate::config::new_store_id();
        let line = format!("store_id = \"{id}\"\n");
        let at = text
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .chain(std::iter::once(0))
            .filter(|&i| text[i..].trim_start().starts_with('['))
            .min();
        let new = match at {
            Some(i) => format!("{}{line}{}", &text[..i], &text[i..]),
            None if text.is_empty() || text.ends_with('\n') => format!("{text}{line}"),
            None => format!("{text}\n{line}"),
        };
        self.ensure_no_symlinks(&file)?;
        crate::atomic::write(&self.root.join(&file), new.as_bytes(), SECRET_MODE)
            .map_err(|source| WriteError::Io { file, source })?;
        self.config.store_id = Some(id);
        Ok(())
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
                kind: ReadKind::of(rel),
            });
        }
        let bytes = read_sized(file, meta.len() as usize, limit)?;
        if bytes.len() > limit {
            return Err(StoreError::TooLarge {
                size: bytes.len() as u64,
                limit,
                kind: ReadKind::of(rel),
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
                let mut ids = Vec::new();
                for e in read.filter_map(Result::ok) {
                    let rel = scope.secrets_dir().join(e.file_name());
                    match StorePath::classify(&rel) {
                        StorePath::Secret(id) => ids.push(id),
                        // Names too long for one file name: one folder down.
                        StorePath::LongNameDir(_) if e.file_type().is_ok_and(|t| t.is_dir()) => {
                            let Ok(inner) = fs::read_dir(self.root.join(&rel)) else {
                                continue;
                            };
                            for f in inner.filter_map(Result::ok) {
                                if let StorePath::Secret(id) =
                                    StorePath::classify(&rel.join(f.file_name()))
                                {
                                    ids.push(id);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                ids
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
        self.open_hashed(id, bytes, Sha256::digest(bytes).into(), identities)
    }

    /// [`Store::open_bytes`] for a file whose sha256 is known.
    pub fn open_hashed(
        &self,
        id: &SecretId,
        bytes: &[u8],
        file_sha256: [u8; 32],
        identities: &Identities,
    ) -> Result<Loaded, LoadError> {
        let opened = envelope::open(bytes, identities, self.config.max_plaintext_bytes());
        self.open_document(id, opened, file_sha256)
    }

    /// Parses and binds what opening a file gave.
    fn open_document(
        &self,
        id: &SecretId,
        opened: Result<envelope::Opened, envelope::EnvelopeError>,
        file_sha256: [u8; 32],
    ) -> Result<Loaded, LoadError> {
        let file = || id.path();
        let (header, plaintext) = opened.map_err(|source| LoadError::Envelope {
            file: file(),
            source,
        })?;
        let doc =
            Document::parse(&plaintext, self.config.limits.max_data_bytes).map_err(|source| {
                LoadError::Document {
                    file: file(),
                    source,
                }
            })?;
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
            file_sha256,
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
}

/// Reads a regular file whose size (`size`, at most `limit`) its handle
/// just gave: one `read` when the file is as large as it said, rather than
/// a second one to find its end (a load reads 20,000 files). Store files
/// are replaced by renames, never rewritten in place: a file that grows
/// meanwhile yields its first `size` bytes, which then fail to verify or
/// decrypt like any damaged file, and its change event reads it again. A
/// size of 0 (a file that does not know its size) is read to its end.
fn read_sized(mut file: fs::File, size: usize, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if size == 0 {
        file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    bytes.resize(size, 0);
    let mut filled = 0;
    while filled < size {
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
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
pub(crate) mod tests;
