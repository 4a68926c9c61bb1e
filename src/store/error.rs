//! The store's errors: what can be wrong with one file ([`StoreError`]), and
//! one enum per operation that says which file ([`OpenError`],
//! [`RecipientsError`], [`ScanError`], [`LoadError`], [`WriteError`]).
//!
//! Each operation's error knows its file (relative to the store root), so a
//! report is made from it with `Problem::from` and nothing is located twice.
//! Sources are kept, never flattened into strings.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::ConfigError;
use crate::document::DocumentError;
use crate::envelope::EnvelopeError;
use crate::problem::Diagnostic;
use crate::recipients::RecipientError;
use crate::scope::{Scope, SecretId, StorePath};

/// What is wrong with one file of the store, wherever it is.
#[derive(Debug, Error)]
pub enum StoreError {
    /// I/O failure.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A symlink where a regular file or folder belongs.
    #[error("is a symlink: store files must be regular files inside the store")]
    Symlink,
    /// A FIFO, socket, device or folder where a file belongs.
    #[error("is not a regular file")]
    NotRegular,
    /// A file (or FIFO, socket, device) where a folder on the way belongs.
    #[error("a folder on its path is not a folder")]
    NotAFolder,
    /// The file exceeds what any valid content of its kind needs.
    #[error("file is {size} bytes, more than the {limit} bytes any valid {kind} needs")]
    TooLarge {
        /// Actual size.
        size: u64,
        /// The limit for its kind.
        limit: usize,
        /// What the file is.
        kind: ReadKind,
    },
    /// A text file (policy, recipients, config) that is not UTF-8.
    #[error("is not UTF-8 text")]
    NotUtf8,
    /// Kuma's not-found text.
    #[error("resource not found: {}", .0.kuma_ref())]
    NotFound(SecretId),
    /// Kuma's conflict text.
    #[error("resource already exists: {}", .0.kuma_ref())]
    AlreadyExists(SecretId),
}

/// What kind of store file a read was refused for (each is read with its
/// own limit: [`super::MAX_TEXT_FILE_BYTES`],
/// [`crate::signing::sshsig::MAX_SIGNATURE_BYTES`], or what a
/// secret's `max_data_bytes` allows), judged by the file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// A secret's age file.
    Secret,
    /// A `.sig` file.
    Signature,
    /// A text file: `meshseal.toml`, recipients, policies, the Mesh
    /// resource, signed lists.
    Text,
}

impl ReadKind {
    /// The kind of the file at `rel` (relative to the store root).
    pub fn of(rel: &Path) -> ReadKind {
        if rel.extension().is_some_and(|e| e == "sig") {
            return ReadKind::Signature;
        }
        match StorePath::classify(rel) {
            StorePath::Secret(_) | StorePath::StraySecret { .. } => ReadKind::Secret,
            _ => ReadKind::Text,
        }
    }
}

impl std::fmt::Display for ReadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadKind::Secret => "secret",
            ReadKind::Signature => "signature",
            ReadKind::Text => "text file of the store",
        })
    }
}

impl StoreError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::Io(e) => e.kind() == io::ErrorKind::NotFound,
            StoreError::NotFound(_) => true,
            _ => false,
        }
    }
}

impl Diagnostic for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::Io(_) => "io",
            StoreError::Symlink => "symlink",
            StoreError::NotRegular => "not-regular-file",
            StoreError::NotAFolder => "not-a-folder",
            StoreError::TooLarge { .. } => "too-large",
            StoreError::NotUtf8 => "not-utf8",
            StoreError::NotFound(_) => "not-found",
            StoreError::AlreadyExists(_) => "already-exists",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StoreError::Symlink => Some(
                "replace the link with the file itself; meshseal never follows links out of the store"
                    .to_string(),
            ),
            StoreError::NotAFolder => Some(
                "move the file that stands where the store needs a folder".to_string(),
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

/// A file's header names another scope or name than its path: the
/// ciphertext was moved, copied or renamed. One rule, used by every reader.
#[derive(Debug, Error)]
#[error("header metadata says {header} but the path says {path}")]
pub struct Moved {
    /// What the header metadata says.
    pub header: SecretId,
    /// What the path says.
    pub path: SecretId,
}

impl Moved {
    /// `Err` when the header's id is not the path's.
    pub fn check(header: &SecretId, path: &SecretId) -> Result<(), Moved> {
        if header == path {
            Ok(())
        } else {
            Err(Moved {
                header: header.clone(),
                path: path.clone(),
            })
        }
    }
}

impl Diagnostic for Moved {
    fn code(&self) -> &'static str {
        "scope-mismatch"
    }

    fn hint(&self) -> Option<String> {
        Some("a ciphertext is bound to its scope and name: it was moved, copied or renamed; restore it, or recreate the secret at this path with `meshseal apply`".to_string())
    }
}

/// Opening a store failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The directory does not exist or is not a folder.
    #[error("no such folder")]
    NoSuchFolder {
        /// The path given.
        root: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: io::Error,
    },
    /// The directory is not a store.
    #[error("not a meshseal store (no meshes/ or global/ folder)")]
    NotAStore {
        /// The directory.
        root: PathBuf,
    },
    /// `meshseal.toml` could not be read.
    #[error("{source}")]
    ReadConfig {
        /// The config file.
        file: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// `meshseal.toml` is invalid.
    #[error("{source}")]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
}

impl Diagnostic for OpenError {
    fn code(&self) -> &'static str {
        match self {
            OpenError::NoSuchFolder { .. } => "no-such-folder",
            OpenError::NotAStore { .. } => "not-a-store",
            OpenError::ReadConfig { source, .. } => source.code(),
            OpenError::Config { source, .. } => source.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            OpenError::NoSuchFolder { .. } => {
                Some("check the -C/--repo path; `meshseal init` makes a new store".to_string())
            }
            OpenError::NotAStore { .. } => {
                Some("run `meshseal init` here, or point -C/--repo at a store".to_string())
            }
            OpenError::ReadConfig { source, .. } => source.hint(),
            OpenError::Config { source, .. } => source.hint(),
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            OpenError::Config { source, .. } => source.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            OpenError::NoSuchFolder { root, .. } | OpenError::NotAStore { root } => Some(root),
            OpenError::ReadConfig { file, .. } | OpenError::Config { file, .. } => Some(file),
        }
    }
}

/// A scope's recipients could not be read.
#[derive(Debug, Error)]
pub enum RecipientsError {
    /// The scope has no recipients file.
    #[error("{}", RecipientError::Missing)]
    Missing {
        /// The recipients file.
        file: PathBuf,
        /// Its scope.
        scope: Scope,
    },
    /// The file could not be read.
    #[error("{source}")]
    Read {
        /// The recipients file.
        file: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A line is not a recipient, or the file lists nobody.
    #[error("{source}")]
    Invalid {
        /// The recipients file.
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: RecipientError,
    },
}

impl Diagnostic for RecipientsError {
    fn code(&self) -> &'static str {
        match self {
            RecipientsError::Missing { .. } => RecipientError::Missing.code(),
            RecipientsError::Read { source, .. } => source.code(),
            RecipientsError::Invalid { source, .. } => source.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RecipientsError::Missing { scope, .. } => Some(format!(
                "add a recipient with `meshseal recipients add {}KEY` (or `--self` for your own key)",
                super::scope_flag(scope)
            )),
            RecipientsError::Read { source, .. } => source.hint(),
            RecipientsError::Invalid { source, .. } => source.hint(),
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            RecipientsError::Invalid { source, .. } => source.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            RecipientsError::Missing { file, .. }
            | RecipientsError::Read { file, .. }
            | RecipientsError::Invalid { file, .. } => Some(file),
        }
    }
}

/// Walking the store failed.
#[derive(Debug, Error)]
#[error("cannot read the folder: {source}")]
pub struct ScanError {
    /// The folder, relative to the root.
    pub file: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl Diagnostic for ScanError {
    fn code(&self) -> &'static str {
        "io"
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.file)
    }
}

/// One secret could not be loaded: read, decrypted, parsed and bound.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be read (missing, a link, too large...).
    #[error("{source}")]
    Read {
        /// The secret file.
        file: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Not a valid age file, or no identity opens it.
    #[error("{source}")]
    Envelope {
        /// The secret file.
        file: PathBuf,
        /// Why.
        #[source]
        source: EnvelopeError,
    },
    /// The plaintext is not a valid document for this path.
    #[error("{source}")]
    Document {
        /// The secret file.
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: DocumentError,
    },
    /// The header names another scope or name than the path.
    #[error("{source}")]
    Moved {
        /// The secret file.
        file: PathBuf,
        /// What the header and the path say.
        #[source]
        source: Moved,
    },
}

impl LoadError {
    /// Whether the file is bound to another scope or name than its path
    /// (by its header or by its document).
    pub fn is_moved(&self) -> bool {
        matches!(
            self,
            LoadError::Moved { .. }
                | LoadError::Document {
                    source: DocumentError::Mismatch { .. },
                    ..
                }
        )
    }

    /// Whether the file opened with none of the identities.
    pub fn is_no_matching_key(&self) -> bool {
        matches!(
            self,
            LoadError::Envelope {
                source: EnvelopeError::NoMatchingKeys,
                ..
            }
        )
    }

    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, LoadError::Read { source, .. } if source.is_not_found())
    }

    fn source_diagnostic(&self) -> &dyn Diagnostic {
        match self {
            LoadError::Read { source, .. } => source,
            LoadError::Envelope { source, .. } => source,
            LoadError::Document { source, .. } => source,
            LoadError::Moved { source, .. } => source,
        }
    }
}

impl Diagnostic for LoadError {
    fn code(&self) -> &'static str {
        self.source_diagnostic().code()
    }

    fn hint(&self) -> Option<String> {
        self.source_diagnostic().hint()
    }

    fn line(&self) -> Option<usize> {
        self.source_diagnostic().line()
    }

    fn file(&self) -> Option<&Path> {
        match self {
            LoadError::Read { file, .. }
            | LoadError::Envelope { file, .. }
            | LoadError::Document { file, .. }
            | LoadError::Moved { file, .. } => Some(file),
        }
    }
}

/// Writing a secret or a scope file failed.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The scope's recipients could not be read.
    #[error(transparent)]
    Recipients(#[from] RecipientsError),
    /// The path cannot be written (a link on the way, not a regular file,
    /// nothing to delete).
    #[error("{source}")]
    Refused {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Encryption failed.
    #[error("{source}")]
    Encrypt {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: EnvelopeError,
    },
    /// A batch of writes failed.
    #[error("{source}; {}", if *.renamed == 0 { "nothing was written".to_string() } else { format!("{} file(s) were already replaced, the others are unchanged", .renamed) })]
    Batch {
        /// The file it failed on.
        file: PathBuf,
        /// How many files had been replaced before it.
        renamed: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The atomic write failed.
    #[error("{source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// With a trust root, the scope's `recipients.txt` does not verify: a
    /// pusher may have added their key (SPEC 9).
    #[error("refusing to encrypt: {source}")]
    Untrusted {
        /// The file that would have been written.
        file: PathBuf,
        /// Why the recipients are not trusted.
        #[source]
        source: Box<crate::writers::Refusal>,
    },
    /// `meshseal.toml` says `signatures = "required"` and no sign key was given.
    #[error("meshseal.toml requires signatures, and no sign key was given")]
    SignKeyRequired {
        /// The file that would have been written.
        file: PathBuf,
    },
    /// The sign key could not sign.
    #[error("{source}")]
    Sign {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: Box<crate::signing::SignError>,
    },
    /// A scope file may only be signed by an admin of the trust root.
    #[error("the sign key {fingerprint} is not an admin in the trust root {}", .trust.display())]
    NotAnAdmin {
        /// The scope file.
        file: PathBuf,
        /// The sign key's fingerprint.
        fingerprint: String,
        /// The trust root.
        trust: PathBuf,
    },
    /// The path's generations could not be read from git.
    #[error("cannot read the file's history: {source}")]
    History {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: crate::git::GitError,
    },
}

impl Diagnostic for WriteError {
    fn code(&self) -> &'static str {
        match self {
            WriteError::Recipients(e) => e.code(),
            WriteError::Refused { source, .. } => source.code(),
            WriteError::Encrypt { source, .. } => source.code(),
            WriteError::Io { .. } | WriteError::Batch { .. } => "io",
            WriteError::Untrusted { source, .. } => source.code(),
            WriteError::SignKeyRequired { .. } => "sign-key-required",
            WriteError::Sign { source, .. } => source.code(),
            WriteError::NotAnAdmin { .. } => "not-an-admin",
            WriteError::History { source, .. } => source.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            WriteError::Recipients(e) => e.hint(),
            WriteError::Refused { source, .. } => source.hint(),
            WriteError::Encrypt { source, .. } => source.hint(),
            WriteError::Io { .. } | WriteError::Batch { .. } => None,
            WriteError::Untrusted { source, .. } => source.hint(),
            WriteError::SignKeyRequired { .. } => Some(
                "give your writer key: `meshseal -S ~/.ssh/id_ed25519 ...` or MESHSEAL_SIGN_KEY"
                    .to_string(),
            ),
            WriteError::Sign { source, .. } => source.hint(),
            WriteError::NotAnAdmin { .. } => Some(
                "scope files are signed by admins: use a key listed in the trust root, or leave out -S to write the file unsigned"
                    .to_string(),
            ),
            WriteError::History { source, .. } => source.hint(),
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            WriteError::Recipients(e) => e.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            WriteError::Recipients(e) => e.file(),
            WriteError::Refused { file, .. }
            | WriteError::Encrypt { file, .. }
            | WriteError::Batch { file, .. }
            | WriteError::Io { file, .. }
            | WriteError::Untrusted { file, .. }
            | WriteError::SignKeyRequired { file }
            | WriteError::Sign { file, .. }
            | WriteError::NotAnAdmin { file, .. }
            | WriteError::History { file, .. } => Some(file),
        }
    }
}

#[cfg(test)]
mod tests;
