//! Identities: the private keys that decrypt secrets.
//!
//! Accepted: age identity files (as written by `age-keygen` or
//! `meshseal keygen`) and unencrypted OpenSSH private keys. Like ssh, meshseal
//! refuses an identity file that group or others can read. Symlinks are
//! followed: the mode that counts is the key's, so a link to a 0600 key is
//! accepted and a link to a world-readable key is refused, naming the target.
//! The file is opened once and judged by its handle (kind, mode, size), so the
//! file checked is the file read; a FIFO neither blocks nor passes.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::atomic;
use crate::problem::Diagnostic;
use crate::recipients::Recipient;

/// Environment variable naming an identity file.
pub const IDENTITY_ENV: &str = "MESHSEAL_IDENTITY";

/// Largest identity file we read (a 16k-bit RSA key is ~13 KiB).
const MAX_IDENTITY_BYTES: u64 = 1024 * 1024;

/// Why identities could not be loaded.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// No `-i`, no `MESHSEAL_IDENTITY`, no default file.
    #[error("no identity: this command needs a private key to decrypt")]
    NoneConfigured {
        /// The default path that was looked for.
        default: Option<PathBuf>,
    },
    /// The file could not be read.
    #[error("cannot read identity file: {source}")]
    Unreadable {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Group or others may read the file.
    #[error("permissions {mode:04o} for identity file are too open: it must not be accessible by group or others{}", link_note(.path, *.through_link))]
    LoosePermissions {
        /// The file's mode bits.
        mode: u32,
        /// The file (or, for a symlink, its target).
        path: PathBuf,
        /// Whether the path given is a symlink to `path`.
        through_link: bool,
    },
    /// The file is not an identity meshseal understands.
    #[error("invalid identity file: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// A passphrase-protected ssh key.
    #[error("identity file is a passphrase-protected SSH key")]
    EncryptedSsh,
    /// The file is empty of identities.
    #[error("identity file contains no identities")]
    Empty,
    /// age cannot use an identity the file holds (a plugin identity).
    #[error("invalid identity file: {0}")]
    Unusable(#[source] age::DecryptError),
    /// `keygen` refuses to overwrite.
    #[error("identity file already exists")]
    Exists,
    /// `keygen` without `-o` on a system with no config directory.
    #[error("no config directory; pass -o FILE")]
    NoConfigDir,
}

impl Diagnostic for IdentityError {
    fn code(&self) -> &'static str {
        match self {
            IdentityError::NoneConfigured { .. } => "no-identity",
            IdentityError::Unreadable { .. } => "identity-unreadable",
            IdentityError::LoosePermissions { .. } => "identity-permissions",
            IdentityError::Invalid { .. } | IdentityError::Empty | IdentityError::Unusable(_) => {
                "invalid-identity"
            }
            IdentityError::EncryptedSsh => "encrypted-identity",
            IdentityError::Exists => "identity-exists",
            IdentityError::NoConfigDir => "no-config-dir",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            IdentityError::NoneConfigured {
                default: Some(default),
            } if is_dangling_link(default) => format!(
                "{} is a symlink to {}, which does not exist: restore the key there or point the link at it; or pass -i FILE, or set {IDENTITY_ENV}",
                default.display(),
                fs::read_link(default).unwrap_or_default().display()
            ),
            IdentityError::NoneConfigured { default } => format!(
                "pass -i FILE, set {IDENTITY_ENV}{}",
                default
                    .as_ref()
                    .map(|d| format!(", or create {} with `meshseal keygen -o {}`", d.display(), d.display()))
                    .unwrap_or_default()
            ),
            IdentityError::LoosePermissions { path, .. } => {
                format!("run `chmod 600 {}`", path.display())
            }
            IdentityError::EncryptedSsh => "meshseal runs unattended and cannot ask for a passphrase; use an age identity (`meshseal keygen`) or an unencrypted key".to_string(),
            IdentityError::Invalid { .. } | IdentityError::Empty | IdentityError::Unusable(_) => "identity files hold AGE-SECRET-KEY-1… lines (from `meshseal keygen` or `age-keygen`) or an unencrypted OpenSSH private key".to_string(),
            IdentityError::Exists => "choose another file, or remove the old one if you really mean to replace that key".to_string(),
            IdentityError::Unreadable { .. } | IdentityError::NoConfigDir => return None,
        })
    }
}

/// ` (the link points to …)` when the mode judged is a symlink target's.
fn link_note(target: &Path, through_link: bool) -> String {
    if through_link {
        format!(" (the link points to {})", target.display())
    } else {
        String::new()
    }
}

/// Whether `path` is a symlink whose target is missing.
fn is_dangling_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) && !path.exists()
}

/// Where `keygen` writes and where identities are looked for by default:
/// `<config dir>/meshseal/identity.txt`.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("meshseal").join("identity.txt"))
}

/// The private keys of one or more identity files.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    public: Vec<Recipient>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities([REDACTED {} keys])", self.keys.len())
    }
}

impl Identities {
    /// Loads every file; the first bad one fails the whole load, naming it.
    pub fn load(paths: &[PathBuf]) -> Result<Identities, (PathBuf, IdentityError)> {
        let mut all = Identities {
            keys: Vec::new(),
            public: Vec::new(),
        };
        for path in paths {
            let one = load_file(path).map_err(|e| (path.clone(), e))?;
            all.keys.extend(one.keys);
            all.public.extend(one.public);
        }
        Ok(all)
    }

    /// Identities from the text of an age identity file (for tests and tools
    /// that hold keys in memory).
    pub fn from_age_text(text: &str) -> Result<Identities, IdentityError> {
        parse_age(text)
    }

    /// The age trait objects, for decryption.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)
    }

    /// The public keys of these identities.
    pub fn recipients(&self) -> &[Recipient] {
        &self.public
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn load_file(path: &Path) -> Result<Identities, IdentityError> {
    let file = open(path).map_err(|source| IdentityError::Unreadable { source })?;
    let meta = file
        .metadata()
        .map_err(|source| IdentityError::Unreadable { source })?;
    // Kind first: "permissions too open" would be the wrong cure for a folder.
    if !meta.is_file() {
        return Err(IdentityError::Invalid {
            reason: "not a regular file".to_string(),
        });
    }
    check_permissions(path, &meta)?;
    if meta.len() > MAX_IDENTITY_BYTES {
        return Err(IdentityError::Invalid {
            reason: "file is too large to be an identity".to_string(),
        });
    }
    // Sized up front: a growing buffer would leave pieces of the key in
    // freed memory.
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    file.take(MAX_IDENTITY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| IdentityError::Unreadable { source })?;
    if bytes.len() as u64 > MAX_IDENTITY_BYTES {
        return Err(IdentityError::Invalid {
            reason: "file is too large to be an identity".to_string(),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| IdentityError::Invalid {
        reason: "not UTF-8 text".to_string(),
    })?;
    if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
        || text.contains("-----BEGIN RSA PRIVATE KEY-----")
    {
        parse_ssh(text, path)
    } else {
        parse_age(text)
    }
}

/// Opens for reading, following links, without blocking on a FIFO.
#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let through_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        return Err(IdentityError::LoosePermissions {
            mode,
            path: target,
            through_link,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), IdentityError> {
    Ok(())
}

fn parse_age(text: &str) -> Result<Identities, IdentityError> {
    let file = age::IdentityFile::from_buffer(BufReader::new(text.as_bytes())).map_err(|e| {
        IdentityError::Invalid {
            reason: sanitize_io(&e),
        }
    })?;
    // The age crate does not hand back public keys; derive them for `init`
    // and `recipients` from the X25519 lines ourselves.
    let public = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .filter_map(|l| age::x25519::Identity::from_str(l).ok())
        .map(|k| Recipient::X25519(k.to_public()))
        .collect();
    let keys = file.into_identities().map_err(IdentityError::Unusable)?;
    if keys.is_empty() {
        return Err(IdentityError::Empty);
    }
    Ok(Identities { keys, public })
}

fn parse_ssh(text: &str, path: &Path) -> Result<Identities, IdentityError> {
    let id = age::ssh::Identity::from_buffer(
        BufReader::new(text.as_bytes()),
        Some(path.display().to_string()),
    )
    .map_err(|e| IdentityError::Invalid {
        reason: sanitize_io(&e),
    })?;
    match id {
        age::ssh::Identity::Unencrypted(_) => {
            let public = age::ssh::Recipient::try_from(id.clone())
                .ok()
                .map(Recipient::Ssh)
                .into_iter()
                .collect();
            Ok(Identities {
                keys: vec![Box::new(id)],
                public,
            })
        }
        age::ssh::Identity::Encrypted(_) => Err(IdentityError::EncryptedSsh),
        age::ssh::Identity::Unsupported(_) => Err(IdentityError::Invalid {
            reason: "unsupported SSH key type (use ssh-ed25519 or ssh-rsa)".to_string(),
        }),
    }
}

/// I/O errors from identity parsers name the problem, never the key material.
fn sanitize_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::InvalidData => "malformed identity".to_string(),
        _ => e.to_string(),
    }
}

/// A new X25519 identity: the file text (`age-keygen`'s format) and its public key.
pub fn generate() -> (Zeroizing<String>, String) {
    let key = age::x25519::Identity::generate();
    let public = key.to_public().to_string();
    let text = Zeroizing::new(format!(
        "# meshseal identity: keep this file private (mode 0600)\n# public key: {public}\n{}\n",
        key.to_string().expose_secret()
    ));
    (text, public)
}

/// Writes a new identity file with mode 0600, refusing to overwrite one.
pub fn write_new(path: &Path, text: &str) -> Result<(), IdentityError> {
    if path.exists() {
        return Err(IdentityError::Exists);
    }
    atomic::create_new(path, text.as_bytes(), 0o600).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            IdentityError::Exists
        } else {
            IdentityError::Unreadable { source }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn generated_identity_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.txt");
        let (text, public) = generate();
        write_new(&p, &text).unwrap();
        let ids = Identities::load(std::slice::from_ref(&p)).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.recipients()[0].to_string(), public);
        assert!(matches!(write_new(&p, &text), Err(IdentityError::Exists)));
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_refused_even_through_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.txt");
        let (text, _) = generate();
        fs::write(&p, text.as_bytes()).unwrap();
        chmod(&p, 0o644);
        let err = Identities::load(std::slice::from_ref(&p)).unwrap_err().1;
        assert!(matches!(
            err,
            IdentityError::LoosePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("0644"));
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(
            Identities::load(&[link]).unwrap_err().1,
            IdentityError::LoosePermissions { .. }
        ));
    }

    #[cfg(unix)]
    #[test]
    fn garbage_is_invalid_and_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.txt");
        fs::write(&p, "AGE-SECRET-KEY-1NOTAKEY8675309\n").unwrap();
        chmod(&p, 0o600);
        let err = Identities::load(&[p]).unwrap_err().1;
        assert!(!err.to_string().contains("8675309"), "{err}");
    }
}
