//! `--state DIR`: what a watcher keeps between runs, so that a restart does
//! not decrypt again what it already knew.
//!
//! `DIR/cache.age` maps each secret file's sha256 to the document it
//! decrypted to. It is one age file, encrypted to the watcher's own
//! identities' public keys: one X25519 (or SSH) operation opens the whole
//! cache, where a cold load pays one per file. Secret bytes are never on
//! disk in clear, and the buffers that hold the cache's plaintext are wiped
//! when dropped.
//!
//! A cached document is used only for a file whose bytes hash to the same
//! sha256 it was decrypted from, and it is bound to the file's path again on
//! load, so it serves exactly what decrypting the file would. Its integrity
//! rests on the folder: created 0700, and refused at start when it is not
//! owned by the watcher's user or when group or others can write it (as
//! ssh's `~/.ssh`); whoever could write it could as well read the watcher's
//! identity. A cache that cannot be read (another identity, a corrupt or
//! truncated file, a killed writer's leftover) is ignored with a warning:
//! the load is then cold, never wrong.
//!
//! `DIR/generations.json` is the rollback record of a watcher with a trust
//! root (SPEC 9): the highest verified generation of every secret path it
//! has served, deleted ones included, and the sha256 of the versions seen
//! at it. Lower versions are refused after a restart as before it. It holds
//! paths, numbers and hashes, no secret bytes (the paths are the
//! repository's own), so it is plain JSON; like the cache it rests on the
//! folder's integrity. It is saved, atomically, after every update that
//! verified a new version and before that version is served. Unlike the
//! cache, a record that cannot be read stops the start: ignoring it would
//! silently accept every rollback since it was written.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::atomic;
use crate::document::Document;
use crate::identity::Identities;
use crate::index::{Index, Secret, Warm};
use crate::problem::Diagnostic;
use crate::scope::{Scope, SecretId};
use crate::writers::history::Seen;

/// The cache file's name in the state folder.
const CACHE_FILE: &str = "cache.age";
/// Format version of the cache's plaintext.
const CACHE_VERSION: u32 = 1;
/// The largest cache read: 1 MiB per 1,000 secrets of a million would be
/// far more than any store holds.
const MAX_CACHE_BYTES: u64 = 4 << 30;
/// The rollback record's name in the state folder.
const GENERATIONS_FILE: &str = "generations.json";
/// Format version of the rollback record.
const GENERATIONS_VERSION: u32 = 1;

/// The state folder cannot be used.
#[derive(Debug, Error)]
pub enum StateError {
    /// It cannot be created or read.
    #[error("cannot use the state folder: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It is a symlink, owned by someone else, or writable by others.
    #[error("the state folder {why}: whoever can write it could make the watcher serve values of their choosing")]
    Unsafe {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// The rollback record is there but cannot be used.
    #[error("the rollback record cannot be read: {reason}")]
    Record {
        /// The record.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Diagnostic for StateError {
    fn code(&self) -> &'static str {
        match self {
            StateError::Io { .. } => "io",
            StateError::Unsafe { .. } => "unsafe-state-folder",
            StateError::Record { .. } => "unreadable-rollback-record",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StateError::Io { .. } => None,
            StateError::Unsafe { path, .. } => Some(format!(
                "use a folder of your own: `chmod 700 {0}` (and `chown` it to the watcher's user), or pick another --state",
                path.display()
            )),
            StateError::Record { path, .. } => Some(format!(
                "restore it from a backup; or, knowing that rollbacks since it was written are then not detected, remove it: `rm {}`",
                path.display()
            )),
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            StateError::Io { path, .. }
            | StateError::Unsafe { path, .. }
            | StateError::Record { path, .. } => Some(path),
        }
    }
}

/// One cached secret.
#[derive(Serialize, Deserialize)]
struct CachedSecret {
    /// Hex sha256 of the ciphertext file it was decrypted from.
    sha256: String,
    /// The recipients fingerprint in that file's header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    /// Mesh, or none for a global secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mesh: Option<String>,
    /// Name.
    name: String,
    /// The document's TOML, as `Document::to_toml` writes it.
    document: String,
}

#[derive(Serialize, Deserialize)]
struct Cache {
    version: u32,
    secrets: Vec<CachedSecret>,
}

impl Drop for CachedSecret {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.document.zeroize();
    }
}

/// The rollback record of one path.
#[derive(Serialize, Deserialize)]
struct Generation {
    /// The highest verified generation.
    generation: u64,
    /// Hex sha256 of every version seen at it.
    sha256: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Generations {
    version: u32,
    /// By path relative to the store root.
    files: BTreeMap<String, Generation>,
}

/// The state folder of a watcher.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    /// The rollback record as read at start.
    seen: Arc<BTreeMap<PathBuf, Seen>>,
    /// `Index::seen_changes` + 1 of the last record saved (0: none yet).
    saved: Arc<AtomicU64>,
}

impl StateDir {
    /// Creates the folder (0700) or accepts an existing one that is ours
    /// and that nobody else can write.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        let io = |source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        };
        match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io)?;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
            Ok(m) => {
                let unsafe_because = |why| StateError::Unsafe {
                    path: dir.to_path_buf(),
                    why,
                };
                if m.file_type().is_symlink() {
                    return Err(unsafe_because("is a symlink"));
                }
                if !m.is_dir() {
                    return Err(io(io::Error::from(io::ErrorKind::NotADirectory)));
                }
                if m.uid() != rustix::process::geteuid().as_raw() {
                    return Err(unsafe_because("is owned by another user"));
                }
                if m.permissions().mode() & 0o022 != 0 {
                    return Err(unsafe_because("can be written by group or others"));
                }
            }
        }
        let path = dir.join(GENERATIONS_FILE);
        let seen = read_generations(&path)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            seen: Arc::new(seen),
            saved: Arc::new(AtomicU64::new(0)),
        })
    }

    fn cache_path(&self) -> PathBuf {
        self.dir.join(CACHE_FILE)
    }

    fn generations_path(&self) -> PathBuf {
        self.dir.join(GENERATIONS_FILE)
    }

    /// What a restart starts from: the cached secrets, each bound to its
    /// path (none, with a warning, when there is no usable cache), and the
    /// rollback record read at start.
    pub fn load_cache(&self, identities: &Identities, max_data_bytes: usize) -> Warm {
        Warm {
            secrets: self.cached_secrets(identities, max_data_bytes),
            seen: (*self.seen).clone(),
        }
    }

    fn cached_secrets(&self, identities: &Identities, max_data_bytes: usize) -> Vec<Secret> {
        let path = self.cache_path();
        let bytes = match read_bounded(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                warn!(file = %path.display(), error = %e, "state cache unreadable: cold load");
                return Vec::new();
            }
        };
        match open_cache(&bytes, identities, max_data_bytes) {
            Ok(secrets) => secrets,
            Err(why) => {
                warn!(file = %path.display(), reason = why, "state cache not used: cold load");
                Vec::new()
            }
        }
    }

    /// Saves the rollback record of `index` when it verifies and its
    /// record changed since the last save; whether it wrote.
    pub fn save_generations(&self, index: &Index) -> Result<bool, StateError> {
        // Without a trust root nothing is verified: the record kept from
        // runs with one stays as it is.
        let version = index.seen_changes() + 1;
        if !index.verifies() || self.saved.load(Ordering::SeqCst) == version {
            return Ok(false);
        }
        let record = Generations {
            version: GENERATIONS_VERSION,
            files: index
                .seen()
                .filter_map(|(path, seen)| {
                    let generation = Generation {
                        generation: seen.generation,
                        sha256: seen
                            .versions
                            .iter()
                            .map(|s| crate::recipients::hex(s))
                            .collect(),
                    };
                    Some((path.to_str()?.to_string(), generation))
                })
                .collect(),
        };
        let path = self.generations_path();
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec(&record).map_err(|e| io(e.into()))?;
        atomic::write(&path, &text, 0o600).map_err(io)?;
        self.saved.store(version, Ordering::SeqCst);
        Ok(true)
    }

    /// Replaces the cache with the secrets of `index`, encrypted to the
    /// public keys of `identities`.
    pub fn save_cache(&self, index: &Index, identities: &Identities) -> Result<usize, StateError> {
        let io = |source| StateError::Io {
            path: self.cache_path(),
            source,
        };
        let cache = Cache {
            version: CACHE_VERSION,
            secrets: index
                .secrets()
                .map(|s| CachedSecret {
                    sha256: crate::recipients::hex(&s.file_sha256),
                    fingerprint: s.recipients_fingerprint.clone(),
                    mesh: s.doc.id.scope.mesh_name().map(str::to_string),
                    name: s.doc.id.name.clone(),
                    document: s.doc.to_toml().to_string(),
                })
                .collect(),
        };
        let count = cache.secrets.len();
        // Pre-sized (JSON escapes at most double a TOML document, plus the
        // keys): a growing buffer would leave unwiped copies behind.
        let estimate: usize = cache
            .secrets
            .iter()
            .map(|c| 2 * c.document.len() + c.name.len() + 256)
            .sum::<usize>()
            + 64;
        let mut plaintext = Zeroizing::new(Vec::with_capacity(estimate));
        serde_json::to_writer(&mut *plaintext, &cache).map_err(|e| io(e.into()))?;
        drop(cache);
        let recipients: Vec<&dyn age::Recipient> =
            identities.recipients().iter().map(|r| r.as_age()).collect();
        let encryptor = age::Encryptor::with_recipients(recipients.into_iter())
            .map_err(|e| io(io::Error::other(e)))?;
        let mut out = Vec::with_capacity(plaintext.len() + 1024);
        let mut writer = encryptor.wrap_output(&mut out).map_err(io)?;
        writer.write_all(&plaintext).map_err(io)?;
        writer.finish().map_err(io)?;
        atomic::write(&self.cache_path(), &out, 0o600).map_err(io)?;
        info!(file = %self.cache_path().display(), secrets = count, "state cache saved");
        Ok(count)
    }
}

/// The rollback record at `path`; empty when there is none.
fn read_generations(path: &Path) -> Result<BTreeMap<PathBuf, Seen>, StateError> {
    let bytes = match read_bounded(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(StateError::Record {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    let bad = |reason: String| StateError::Record {
        path: path.to_path_buf(),
        reason,
    };
    let record: Generations = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if record.version != GENERATIONS_VERSION {
        return Err(bad(format!(
            "format version {} is not {GENERATIONS_VERSION}",
            record.version
        )));
    }
    let mut seen = BTreeMap::new();
    for (file, g) in record.files {
        let mut versions = std::collections::BTreeSet::new();
        for hex in &g.sha256 {
            versions.insert(
                base16_32(hex).ok_or_else(|| bad(format!("{file}: {hex:?} is not a sha256")))?,
            );
        }
        if versions.is_empty() {
            return Err(bad(format!(
                "{file}: no version at generation {}",
                g.generation
            )));
        }
        seen.insert(
            PathBuf::from(file),
            Seen {
                generation: g.generation,
                versions,
            },
        );
    }
    Ok(seen)
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CACHE_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn open_cache(
    bytes: &[u8],
    identities: &Identities,
    max_data_bytes: usize,
) -> Result<Vec<Secret>, &'static str> {
    let decryptor = age::Decryptor::new_buffered(bytes).map_err(|_| "not an age file")?;
    let mut reader = decryptor
        .decrypt(identities.iter())
        .map_err(|_| "encrypted to other identities, or corrupt")?;
    // Pre-sized: a growing buffer would leave unwiped copies behind.
    let mut plaintext = Zeroizing::new(Vec::with_capacity(bytes.len()));
    reader
        .read_to_end(&mut plaintext)
        .map_err(|_| "truncated or corrupt")?;
    let cache: Cache = serde_json::from_slice(&plaintext).map_err(|_| "not a cache")?;
    if cache.version != CACHE_VERSION {
        return Err("written by another version");
    }
    let mut out = Vec::with_capacity(cache.secrets.len());
    for c in &cache.secrets {
        // An entry that does not bind is skipped: its file is decrypted.
        let Some(secret) = cached_secret(c, max_data_bytes) else {
            continue;
        };
        out.push(secret);
    }
    Ok(out)
}

fn cached_secret(c: &CachedSecret, max_data_bytes: usize) -> Option<Secret> {
    let scope = match &c.mesh {
        Some(m) => Scope::mesh(m).ok()?,
        None => Scope::Global,
    };
    let id = SecretId::new(scope, &c.name).ok()?;
    let doc = Document::parse(c.document.as_bytes(), max_data_bytes).ok()?;
    doc.bind(&id).ok()?;
    let sha = base16_32(&c.sha256)?;
    Some(Secret {
        doc,
        file_sha256: sha,
        recipients_fingerprint: c.fingerprint.clone(),
        signed: None,
    })
}

fn base16_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
