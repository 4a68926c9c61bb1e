//! API tokens: who may read what from the watcher.
//!
//! The tokens file keeps, one per line, the sha256 digest of a token and its
//! scope, never the token itself, so the file can be backed up or shown
//! without handing out access:
//!
//! ```text
//! # meshseal API tokens: sha256 digests only
//! sha256:9f86d081884c7d65… admin
//! sha256:2c26b46b68ffc68f… mesh:payments
//! ```
//!
//! A token is 32 random bytes, printed once by `meshseal token create`.
//! Checking a presented token hashes it and compares against every digest in
//! constant time, so response timing tells nothing about how close a guess was.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::atomic;
use crate::problem::Diagnostic;
use crate::recipients::hex;
use crate::scope::{validate_mesh, Scope};

/// Largest tokens file read: a token line is under 100 bytes.
const MAX_TOKENS_FILE_BYTES: u64 = 1024 * 1024;

/// Prefix of every token, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "mst_";
/// Mode of the tokens file: digests are not secrets, but nobody else needs them.
const TOKENS_MODE: u32 = 0o600;
const HEADER: &str = "# meshseal API tokens: sha256 digests and scopes, never tokens\n";

/// What a token may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    /// Everything: every mesh and the global secrets.
    Admin,
    /// One mesh's secrets only.
    Mesh(String),
}

impl TokenScope {
    /// Parses `admin` or `mesh:<name>`.
    pub fn parse(text: &str) -> Option<TokenScope> {
        if text == "admin" {
            return Some(TokenScope::Admin);
        }
        let mesh = text.strip_prefix("mesh:")?;
        validate_mesh(mesh).ok()?;
        Some(TokenScope::Mesh(mesh.to_string()))
    }

    /// Whether this token may read secrets of `scope`.
    pub fn allows(&self, scope: &Scope) -> bool {
        match (self, scope) {
            (TokenScope::Admin, _) => true,
            (TokenScope::Mesh(own), Scope::Mesh(m)) => own == m,
            (TokenScope::Mesh(_), Scope::Global) => false,
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenScope::Admin => f.write_str("admin"),
            TokenScope::Mesh(m) => write!(f, "mesh:{m}"),
        }
    }
}

/// Why a tokens file could not be used.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A line is not `sha256:<64 hex> <scope>`.
    #[error("line {line}: expected `sha256:<64 hex digits> admin|mesh:<name>`")]
    Invalid {
        /// 1-based line.
        line: usize,
    },
    /// Someone other than its owner (and root) can write the file or its
    /// folder, and could add a token of their own (sshd's StrictModes).
    #[error("can be written by {who}: anyone who can write it can add an admin token")]
    Writable {
        /// "group or others", or "its folder's group or others".
        who: &'static str,
    },
}

/// A tokens file could not be used: which file, and why.
#[derive(Debug, Error)]
#[error("{source}")]
pub struct TokensFileError {
    /// The tokens file.
    pub file: PathBuf,
    /// Why.
    #[source]
    pub source: TokenError,
}

impl Diagnostic for TokensFileError {
    fn code(&self) -> &'static str {
        self.source.code()
    }

    fn hint(&self) -> Option<String> {
        match &self.source {
            TokenError::Writable { .. } => Some(format!(
                "chmod go-w {} (and its folder)",
                self.file.display()
            )),
            other => other.hint(),
        }
    }

    fn line(&self) -> Option<usize> {
        self.source.line()
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.file)
    }
}

impl Diagnostic for TokenError {
    fn code(&self) -> &'static str {
        match self {
            TokenError::Io(_) => "io",
            TokenError::Invalid { .. } => "invalid-token-line",
            TokenError::Writable { .. } => "tokens-file-writable",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            TokenError::Invalid { .. } => Some(
                "lines are written by `meshseal token create`; remove the broken line and create a new token"
                    .to_string(),
            ),
            TokenError::Io(e) if e.kind() == io::ErrorKind::NotFound => Some(
                "check the --tokens path; `meshseal token create` makes the file (to revoke every token, keep the file with no token lines)"
                    .to_string(),
            ),
            TokenError::Io(_) | TokenError::Writable { .. } => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            TokenError::Invalid { line } => Some(*line),
            TokenError::Io(_) | TokenError::Writable { .. } => None,
        }
    }
}

/// The digests and scopes of a tokens file.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], TokenScope)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens([{} digests])", self.entries.len())
    }
}

impl Tokens {
    /// Parses the text of a tokens file.
    pub fn parse(text: &str) -> Result<Tokens, TokenError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid = TokenError::Invalid { line: i + 1 };
            let mut parts = line.split_whitespace();
            let (Some(digest), Some(scope), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid);
            };
            let digest = digest
                .strip_prefix("sha256:")
                .and_then(parse_hex32)
                .ok_or(TokenError::Invalid { line: i + 1 })?;
            let scope = TokenScope::parse(scope).ok_or(invalid)?;
            entries.push((digest, scope));
        }
        Ok(Tokens { entries })
    }

    /// Reads a tokens file. A file that group or others can write, or in a
    /// folder they can write, is refused (sshd's StrictModes): whoever can
    /// write it can add an admin token of their own.
    pub fn load(path: &Path) -> Result<Tokens, TokensFileError> {
        let text = Tokens::read(path)?;
        Tokens::parse(&text).map_err(|source| TokensFileError {
            file: path.to_path_buf(),
            source,
        })
    }

    /// The text of a tokens file, read as [`Tokens::load`] reads it.
    pub fn read(path: &Path) -> Result<Zeroizing<String>, TokensFileError> {
        let fail = |source| TokensFileError {
            file: path.to_path_buf(),
            source,
        };
        let io = |e: io::Error| fail(TokenError::Io(e));
        // Without blocking (a FIFO), a regular file only, and bounded: a
        // tokens file is a few lines.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() || meta.len() > MAX_TOKENS_FILE_BYTES {
            let reason = if meta.is_file() {
                "is larger than 1 MiB"
            } else {
                "is not a regular file"
            };
            return Err(io(io::Error::new(io::ErrorKind::InvalidData, reason)));
        }
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            if meta.permissions().mode() & 0o022 != 0 {
                return Err(fail(TokenError::Writable {
                    who: "group or others",
                }));
            }
            // The folder the file really is in: a link's target's folder
            // (a Kubernetes mount's `..data/`) as well as the link's own.
            let mut folders = vec![crate::atomic::parent(path).to_path_buf()];
            if let Ok(target) = fs::canonicalize(path) {
                folders.push(crate::atomic::parent(&target).to_path_buf());
            }
            for folder in folders {
                let Ok(m) = fs::metadata(&folder) else {
                    continue;
                };
                // A shared folder with the sticky bit (/tmp) lets nobody
                // else replace our file.
                let sticky = m.permissions().mode() & 0o1000 != 0;
                let foreign_owner = m.uid() != meta.uid() && m.uid() != 0;
                if (m.permissions().mode() & 0o022 != 0 && !sticky) || foreign_owner {
                    return Err(fail(TokenError::Writable {
                        who: "its folder's group or others",
                    }));
                }
            }
        }
        let mut text = Zeroizing::new(String::with_capacity(meta.len() as usize + 1));
        file.take(MAX_TOKENS_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        Ok(text)
    }

    /// The tokens of a file that may hold broken lines, failing closed: the
    /// tokens of the lines that parse, and the first broken line. A token
    /// whose line was removed is never kept because another line broke.
    pub fn parse_valid_lines(text: &str) -> (Tokens, Option<TokenError>) {
        let mut valid = String::with_capacity(text.len());
        let mut first_error = None;
        for (i, line) in text.lines().enumerate() {
            match Tokens::parse(line) {
                Ok(_) => {
                    valid.push_str(line);
                    valid.push('\n');
                }
                Err(_) => {
                    first_error.get_or_insert(TokenError::Invalid { line: i + 1 });
                    valid.push('\n');
                }
            }
        }
        let tokens = Tokens::parse(&valid).unwrap_or_default();
        (tokens, first_error)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tokens (then nothing is readable).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many tokens (digest and scope) are new in `self` compared with
    /// `old`, and how many of `old` are gone: for logging a reload.
    pub fn changes_from(&self, old: &Tokens) -> (usize, usize) {
        let missing_from =
            |a: &Tokens, b: &Tokens| a.entries.iter().filter(|e| !b.entries.contains(e)).count();
        (missing_from(self, old), missing_from(old, self))
    }

    /// The scope of a presented token, or `None` if it is unknown. Every
    /// digest is compared, in constant time each.
    pub fn authorize(&self, presented: &str) -> Option<&TokenScope> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (d, scope) in &self.entries {
            if bool::from(d.ct_eq(&digest)) && found.is_none() {
                found = Some(scope);
            }
        }
        found
    }
}

/// Makes a new random token for `scope`, appends its digest to the tokens
/// file (created with mode 0600 if missing, replaced atomically) and returns
/// the token, which exists nowhere else.
pub fn create(path: &Path, scope: &TokenScope) -> Result<Zeroizing<String>, TokensFileError> {
    let fail = |source| TokensFileError {
        file: path.to_path_buf(),
        source,
    };
    let existing = match fs::read_to_string(path) {
        Ok(t) => {
            Tokens::parse(&t).map_err(fail)?;
            t
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => HEADER.to_string(),
        Err(e) => return Err(fail(TokenError::Io(e))),
    };
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex(raw.as_ref())));
    let digest = Sha256::digest(token.as_bytes());
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("sha256:{} {scope}\n", hex(&digest)));
    atomic::write(path, text.as_bytes(), TOKENS_MODE).map_err(|e| fail(TokenError::Io(e)))?;
    Ok(token)
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_authorize() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let admin = create(&path, &TokenScope::Admin).unwrap();
        let pay = create(&path, &TokenScope::Mesh("payments".into())).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(admin.as_str()) && !text.contains(pay.as_str()));
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.authorize(&admin), Some(&TokenScope::Admin));
        assert_eq!(
            tokens.authorize(&pay),
            Some(&TokenScope::Mesh("payments".into()))
        );
        assert_eq!(tokens.authorize("mst_nope"), None);
        assert_eq!(tokens.authorize(""), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn scopes() {
        let pay = TokenScope::parse("mesh:payments").unwrap();
        assert!(pay.allows(&Scope::Mesh("payments".into())));
        assert!(!pay.allows(&Scope::Mesh("other".into())));
        assert!(!pay.allows(&Scope::Global));
        assert!(TokenScope::Admin.allows(&Scope::Global));
        assert_eq!(TokenScope::parse("mesh:.."), None);
        assert_eq!(TokenScope::parse("root"), None);
    }

    #[test]
    fn changes_count_added_and_removed_tokens() {
        let line = |c: char, scope: &str| format!("sha256:{} {scope}\n", c.to_string().repeat(64));
        let old = Tokens::parse(&(line('a', "admin") + &line('b', "mesh:x"))).unwrap();
        let new = Tokens::parse(&(line('a', "admin") + &line('c', "mesh:x"))).unwrap();
        assert_eq!(new.changes_from(&old), (1, 1));
        assert_eq!(old.changes_from(&old), (0, 0));
        // The same digest with another scope is a different token.
        let rescoped = Tokens::parse(&(line('a', "mesh:y") + &line('b', "mesh:x"))).unwrap();
        assert_eq!(rescoped.changes_from(&old), (1, 1));
    }

    #[test]
    fn bad_lines_are_located() {
        let e = Tokens::parse("# c\n\nsha256:abc admin\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        let ok = format!("sha256:{} mesh:a\n", "0".repeat(64));
        assert_eq!(Tokens::parse(&ok).unwrap().len(), 1);
    }
}
