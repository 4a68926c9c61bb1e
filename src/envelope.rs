//! The age envelope around a secret document, and its readable metadata.
//!
//! A secret file is an ordinary ASCII-armored age file. Its header carries one
//! extra stanza that stock age and rage ignore, as they ignore any stanza they
//! do not recognise (age itself adds random "grease" stanzas to every file to
//! keep that door open):
//!
//! ```text
//! -> meshseal v2 5c1d0a3f9e27b846 mesh:payments db-password 3f2a9c0d1e4b5a67 7
//! ```
//!
//! naming the format version, the store (its `store_id`), the scope, the
//! name, the fingerprint of the recipient set the file was encrypted to and
//! the file's generation (SPEC 9: one more than the highest that path has
//! had, so a signed older file is a rollback). Version 1, written by stores
//! without a store id and by older meshseal, has no store and no
//! generation: `-> meshseal v1 mesh:payments db-password 3f2a9c0d1e4b5a67`,
//! read as generation 0. The header MAC covers it, so it
//! cannot be edited without the file key; but it can be *read* without any
//! key, which is what lets `check` catch moved, renamed and stale files in a
//! pre-commit hook that has no secrets.

use std::collections::HashSet;
use std::io::{self, BufRead, Read, Write};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age_core::format::{FileKey, Stanza};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::identity::Identities;
use crate::problem::Diagnostic;
use crate::recipients::{RecipientError, RecipientSet};
use crate::scope::{validate_name, Scope, SecretId};

/// The tag of meshseal's header stanza.
pub const STANZA_TAG: &str = "meshseal";
/// The metadata format version without a store id (generation 0).
pub const FORMAT_V1: &str = "v1";
/// The metadata format version with a store id and a generation.
pub const FORMAT_V2: &str = "v2";

const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const BINARY_MAGIC: &[u8] = b"age-encryption.org/";
const V1_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// Headers are small; a "header" larger than this is hostile or not a header.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What meshseal's header stanza says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Scope and name the file was written for.
    pub id: SecretId,
    /// Fingerprint of the recipient set it was encrypted to.
    pub recipients_fingerprint: String,
    /// The store it was written for (v2); `None` in a v1 stanza.
    pub store_id: Option<String>,
    /// The write's generation (v2); 0 in a v1 stanza.
    pub generation: u64,
}

/// What can be learned from a file without a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// ASCII-armored (as meshseal writes and the store expects).
    pub armored: bool,
    /// meshseal's stanza, absent in files made by stock age.
    pub metadata: Option<Metadata>,
}

/// How a file's first bytes look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// `-----BEGIN AGE ENCRYPTED FILE-----`
    Armored,
    /// `age-encryption.org/…`
    Binary,
    /// Anything else: a plaintext file where a secret belongs.
    NotAge,
}

/// Why a file could not be encrypted, decrypted or read.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// Not an age file at all.
    #[error("not an age-encrypted file (plaintext where a secret belongs?)")]
    NotAge,
    /// The age header or armor is malformed.
    #[error("malformed age file: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// meshseal's stanza is present but malformed.
    #[error("malformed meshseal metadata in the age header: {reason}")]
    BadMetadata {
        /// What is wrong.
        reason: String,
    },
    /// None of the identities can decrypt the file.
    #[error("no identity matched any of the file's recipients")]
    NoMatchingKeys,
    /// Decryption failed: wrong MAC, flipped bytes, truncation.
    #[error("decryption failed: the file is corrupt, truncated or was tampered with")]
    Corrupt,
    /// The decrypted document is larger than allowed.
    #[error("decrypted document is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// There is nobody to encrypt to.
    #[error("encryption failed: {0}")]
    NoRecipients(#[source] RecipientError),
    /// age refused the recipients (boxed: it is large, and rare).
    #[error("encryption failed: {0}")]
    Encrypt(#[source] Box<age::EncryptError>),
    /// Writing the ciphertext failed.
    #[error("encryption failed: {0}")]
    Write(#[source] io::Error),
}

impl Diagnostic for EnvelopeError {
    fn code(&self) -> &'static str {
        match self {
            EnvelopeError::NotAge => "plaintext",
            EnvelopeError::Malformed { .. } => "malformed-age",
            EnvelopeError::BadMetadata { .. } => "bad-metadata",
            EnvelopeError::NoMatchingKeys => "no-matching-key",
            EnvelopeError::Corrupt => "corrupt",
            EnvelopeError::TooLarge { .. } => "too-large",
            EnvelopeError::NoRecipients(_)
            | EnvelopeError::Encrypt(_)
            | EnvelopeError::Write(_) => "encrypt-failed",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            EnvelopeError::NotAge => Some(
                "never commit plaintext secrets: remove the file and create it with `meshseal create secret` or `meshseal apply`"
                    .to_string(),
            ),
            EnvelopeError::NoMatchingKeys => Some(
                "this file is not encrypted to any of your identities; check -i / MESHSEAL_IDENTITY, or ask a recipient to `meshseal rekey` after adding your key"
                    .to_string(),
            ),
            EnvelopeError::Corrupt | EnvelopeError::Malformed { .. } => Some(
                "restore the file from git (`git checkout -- FILE`) or recreate the secret".to_string(),
            ),
            _ => None,
        }
    }
}

/// Classifies a file by its first bytes.
pub fn sniff(bytes: &[u8]) -> Sniff {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    if bytes.starts_with(ARMOR_BEGIN) {
        Sniff::Armored
    } else if bytes.starts_with(BINARY_MAGIC) {
        Sniff::Binary
    } else {
        Sniff::NotAge
    }
}

/// A pseudo-recipient that adds meshseal's stanza to the header without
/// wrapping the file key: it cannot decrypt anything.
struct MetadataStanza<'a>(&'a Metadata);

impl age::Recipient for MetadataStanza<'_> {
    fn wrap_file_key(
        &self,
        _file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        let m = self.0;
        let args = match &m.store_id {
            Some(store) => vec![
                FORMAT_V2.to_string(),
                store.clone(),
                m.id.scope.to_tag(),
                m.id.name.clone(),
                m.recipients_fingerprint.clone(),
                m.generation.to_string(),
            ],
            None => vec![
                FORMAT_V1.to_string(),
                m.id.scope.to_tag(),
                m.id.name.clone(),
                m.recipients_fingerprint.clone(),
            ],
        };
        Ok((
            vec![Stanza {
                tag: STANZA_TAG.to_string(),
                args,
                body: Vec::new(),
            }],
            HashSet::new(),
        ))
    }
}

/// Encrypts a plaintext document to `recipients`, armored, with metadata.
pub fn encrypt(
    plaintext: &[u8],
    recipients: &RecipientSet,
    metadata: &Metadata,
) -> Result<Vec<u8>, EnvelopeError> {
    recipients
        .require_some()
        .map_err(EnvelopeError::NoRecipients)?;
    let meta = MetadataStanza(metadata);
    let all =
        std::iter::once(&meta as &dyn age::Recipient).chain(recipients.iter().map(|r| r.as_age()));
    let encryptor =
        age::Encryptor::with_recipients(all).map_err(|e| EnvelopeError::Encrypt(Box::new(e)))?;
    let mut out = Vec::with_capacity(plaintext.len() * 2 + 512);
    let io_err = EnvelopeError::Write;
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(io_err)?;
    let mut writer = encryptor.wrap_output(armor).map_err(io_err)?;
    writer.write_all(plaintext).map_err(io_err)?;
    writer.finish().and_then(|a| a.finish()).map_err(io_err)?;
    Ok(out)
}

/// Decrypts a file with the given identities. `max_plaintext` bounds the
/// output, so a hostile file cannot make us allocate without limit.
pub fn decrypt(
    ciphertext: &[u8],
    identities: &Identities,
    max_plaintext: usize,
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    decrypt_observed(ciphertext, identities, max_plaintext, None)
}

/// [`decrypt`], with an observer shown the header's stanzas first.
fn decrypt_observed(
    ciphertext: &[u8],
    identities: &Identities,
    max_plaintext: usize,
    observer: Option<&Observer>,
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if sniff(ciphertext) == Sniff::NotAge {
        return Err(EnvelopeError::NotAge);
    }
    let decryptor =
        age::Decryptor::new_buffered(ArmoredReader::new(ciphertext)).map_err(map_decrypt_error)?;
    let observer = observer.map(|o| o as &dyn age::Identity);
    let reader = decryptor
        .decrypt(observer.into_iter().chain(identities.iter()))
        .map_err(map_decrypt_error)?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    let read = reader
        .take(max_plaintext as u64 + 1)
        .read_to_end(&mut plaintext);
    match read {
        Ok(n) if n > max_plaintext => Err(EnvelopeError::TooLarge {
            limit: max_plaintext,
        }),
        Ok(_) => Ok(plaintext),
        Err(_) => Err(EnvelopeError::Corrupt),
    }
}

fn map_decrypt_error(e: age::DecryptError) -> EnvelopeError {
    match e {
        age::DecryptError::NoMatchingKeys => EnvelopeError::NoMatchingKeys,
        age::DecryptError::UnknownFormat => EnvelopeError::Malformed {
            reason: "unknown age format version".to_string(),
        },
        age::DecryptError::InvalidHeader => EnvelopeError::Malformed {
            reason: "invalid header".to_string(),
        },
        age::DecryptError::Io(e) => EnvelopeError::Malformed {
            reason: format!("invalid armor or header ({})", e.kind()),
        },
        _ => EnvelopeError::Corrupt,
    }
}

/// A file opened: its header and its plaintext.
pub type Opened = (Header, Zeroizing<Vec<u8>>);

/// Reads the header and decrypts, as `read_header` then `decrypt` would, but
/// with one parse of the header, age's: meshseal's stanza is taken from what
/// age parsed (see [`Observer`]), and the armor is decoded as age reads it.
/// The cold load opens every file of the store this way; decoding and parsing
/// each header a second time, with its allocations, was about 1% of its
/// instructions. The errors are the two steps': a bad or repeated meshseal
/// stanza, a broken header or armor, no matching key.
pub fn open(
    bytes: &[u8],
    identities: &Identities,
    max_plaintext: usize,
) -> Result<Opened, EnvelopeError> {
    if let Some(opened) = open_once(bytes, identities, max_plaintext) {
        return opened;
    }
    let header = read_header(bytes)?;
    Ok((header, decrypt(bytes, identities, max_plaintext)?))
}

/// [`open`]'s one pass: what the two steps would say, or `None` where they
/// must be taken (a file too large to trust its header to age's reading
/// alone, a bad or repeated meshseal stanza).
fn open_once(
    bytes: &[u8],
    identities: &Identities,
    max_plaintext: usize,
) -> Option<Result<Opened, EnvelopeError>> {
    // A header is never longer than its file, so no header of a file this
    // size is one `read_header` refuses as too large.
    if bytes.len() > MAX_HEADER_BYTES {
        return None;
    }
    let armored = sniff(bytes) == Sniff::Armored;
    let observer = Observer::default();
    let decrypted = decrypt_observed(bytes, identities, max_plaintext, Some(&observer));
    let metadata = match observer.seen.into_inner() {
        Seen::Bad => return None,
        Seen::Nothing => None,
        Seen::One(metadata) => Some(metadata),
    };
    Some(match decrypted {
        Ok(plaintext) => Ok((Header { armored, metadata }, plaintext)),
        // The two steps' error without a second decryption: the header's
        // (read without a key, which may read more of a broken armor than
        // age did), else the decryption's. A file this key cannot open is
        // not tried twice.
        Err(e) => Err(read_header(bytes).err().unwrap_or(e)),
    })
}

/// Shown the header's stanzas as age parsed them, before any identity tries
/// them, it keeps meshseal's metadata. age shows its parse of a header only
/// to identities (its one joint for recipient types), so this is an identity
/// that unwraps nothing: every stanza stays for the real identities.
#[derive(Default)]
struct Observer {
    seen: std::cell::RefCell<Seen>,
}

/// What an [`Observer`] saw of meshseal's stanza.
#[derive(Default)]
enum Seen {
    /// No meshseal stanza (or no stanza shown: age did not read the
    /// header, and decrypting failed).
    #[default]
    Nothing,
    One(Metadata),
    /// More than one, or one whose metadata does not parse.
    Bad,
}

impl age::Identity for Observer {
    fn unwrap_stanza(&self, _: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        None
    }

    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, age::DecryptError>> {
        let mut ours = stanzas.iter().filter(|s| s.tag == STANZA_TAG);
        let seen = match (ours.next(), ours.next()) {
            (None, _) => Seen::Nothing,
            (Some(stanza), None) => {
                let args: Vec<&str> = stanza.args.iter().map(String::as_str).collect();
                parse_metadata(&args).map_or(Seen::Bad, Seen::One)
            }
            (Some(_), Some(_)) => Seen::Bad,
        };
        self.seen.replace(seen);
        None
    }
}

/// Reads the header without any key: armor, and meshseal's metadata if any.
pub fn read_header(bytes: &[u8]) -> Result<Header, EnvelopeError> {
    let armored = match sniff(bytes) {
        Sniff::NotAge => return Err(EnvelopeError::NotAge),
        Sniff::Armored => true,
        Sniff::Binary => false,
    };
    parse_header(&header_bytes(bytes, armored)?, armored)
}

/// Parses decoded header bytes (as `header_bytes` returns them).
fn parse_header(header: &[u8], armored: bool) -> Result<Header, EnvelopeError> {
    let mut rest = header
        .strip_prefix(V1_MAGIC)
        .ok_or_else(|| EnvelopeError::Malformed {
            reason: "unknown age format version".to_string(),
        })?;
    let mut metadata = None;
    while !rest.starts_with(b"---") {
        let (next, stanza) =
            // As age reads a v1 header: a stanza in the legacy body encoding
            // too, so that what age opens, this reads.
            age_core::format::read::legacy_age_stanza(rest).map_err(|_| EnvelopeError::Malformed {
                reason: "invalid recipient stanza in header".to_string(),
            })?;
        if stanza.tag == STANZA_TAG {
            if metadata.is_some() {
                return Err(EnvelopeError::BadMetadata {
                    reason: "more than one meshseal stanza".to_string(),
                });
            }
            metadata = Some(parse_metadata(&stanza.args)?);
        }
        rest = next;
    }
    Ok(Header { armored, metadata })
}

fn parse_metadata(args: &[&str]) -> Result<Metadata, EnvelopeError> {
    let bad = |reason: &str| EnvelopeError::BadMetadata {
        reason: reason.to_string(),
    };
    let (store_id, scope, name, fingerprint, generation) = match args {
        [v, scope, name, fingerprint] if *v == FORMAT_V1 => (None, scope, name, fingerprint, 0),
        [v, store, scope, name, fingerprint, generation] if *v == FORMAT_V2 => {
            if !crate::config::is_valid_store_id(store) {
                return Err(bad("invalid store id"));
            }
            // Decimal digits only: no sign, no leading zeros (one spelling
            // per number, as the signature covers the spelling).
            let canonical = !generation.is_empty()
                && generation.bytes().all(|b| b.is_ascii_digit())
                && (*generation == "0" || !generation.starts_with('0'));
            let generation: u64 = generation
                .parse()
                .ok()
                .filter(|_| canonical)
                .ok_or_else(|| bad("invalid generation"))?;
            (
                Some(store.to_string()),
                scope,
                name,
                fingerprint,
                generation,
            )
        }
        [v, ..] if *v != FORMAT_V1 && *v != FORMAT_V2 => {
            return Err(bad(&format!("unsupported version {v:?}; upgrade meshseal")))
        }
        _ => return Err(bad(
            "expected: v1 scope name fingerprint, or v2 store scope name fingerprint generation",
        )),
    };
    let scope = Scope::from_tag(scope).ok_or_else(|| bad("invalid scope"))?;
    validate_name(name).map_err(|_| bad("invalid name"))?;
    if fingerprint.len() != 16 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("invalid recipients fingerprint"));
    }
    Ok(Metadata {
        id: SecretId {
            scope,
            name: name.to_string(),
        },
        recipients_fingerprint: fingerprint.to_string(),
        store_id,
        generation,
    })
}

/// The decoded bytes of the header, up to and including the `---` line start.
fn header_bytes(bytes: &[u8], armored: bool) -> Result<Vec<u8>, EnvelopeError> {
    let malformed = |reason: &str| EnvelopeError::Malformed {
        reason: reason.to_string(),
    };
    let mut reader: Box<dyn BufRead> = if armored {
        Box::new(io::BufReader::new(ArmoredReader::new(bytes)))
    } else {
        Box::new(bytes)
    };
    let mut header = Vec::new();
    loop {
        let start = header.len();
        let n = reader
            .by_ref()
            .take((MAX_HEADER_BYTES + 1 - start) as u64)
            .read_until(b'\n', &mut header)
            .map_err(|_| malformed("invalid armor"))?;
        if n == 0 {
            return Err(malformed("truncated header"));
        }
        if header[start..].starts_with(b"---") {
            return Ok(header);
        }
        if header.len() > MAX_HEADER_BYTES {
            return Err(malformed("header is too large"));
        }
    }
}

#[cfg(test)]
mod tests;
