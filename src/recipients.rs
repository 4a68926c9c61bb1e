//! Recipients files: who can read a scope's secrets.
//!
//! The format is age's own (`age -R` reads the same file): one recipient per
//! line, `age1…` X25519 keys or `ssh-ed25519` / `ssh-rsa` public keys (with an
//! optional comment), `#` comments and blank lines.
//!
//! The *fingerprint* of a set is a digest of its sorted, canonical keys. Each
//! secret's header metadata records the fingerprint it was encrypted to, so a
//! file whose fingerprint differs from its scope's current one is stale: it
//! needs `rekey`, and `check` can say so without any private key.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::problem::Diagnostic;
use crate::scope::Scope;

/// One public key.
#[derive(Clone)]
pub enum Recipient {
    /// `age1…`
    X25519(age::x25519::Recipient),
    /// `ssh-ed25519 …` or `ssh-rsa …`
    Ssh(age::ssh::Recipient),
}

impl Recipient {
    /// The age trait object for encryption.
    pub fn as_age(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r,
        }
    }
}

impl fmt::Display for Recipient {
    /// The canonical text (ssh keys without their comment).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::X25519(r) => write!(f, "{r}"),
            Recipient::Ssh(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self})")
    }
}

impl FromStr for Recipient {
    type Err = RecipientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("age1") {
            return age::x25519::Recipient::from_str(s)
                .map(Recipient::X25519)
                .map_err(|e| RecipientError::Invalid {
                    reason: e.to_string(),
                    line: None,
                });
        }
        if s.starts_with("ssh-") {
            return age::ssh::Recipient::from_str(s)
                .map(Recipient::Ssh)
                .map_err(|e| RecipientError::Invalid {
                    reason: match e {
                        age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                            "ssh-rsa key is smaller than 2048 bits".to_string()
                        }
                        age::ssh::ParseRecipientKeyError::RsaModulusTooLarge => {
                            "ssh-rsa key is too large".to_string()
                        }
                        age::ssh::ParseRecipientKeyError::Unsupported(t) => {
                            format!("unsupported SSH key type {t}")
                        }
                        _ => "invalid SSH public key".to_string(),
                    },
                    line: None,
                });
        }
        Err(RecipientError::Invalid {
            reason: "not an age (age1…) or SSH (ssh-ed25519, ssh-rsa) public key".to_string(),
            line: None,
        })
    }
}

/// Why a recipient or recipients file is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecipientError {
    /// A line that is not a supported public key.
    #[error("invalid recipient: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
        /// The line in the recipients file.
        line: Option<usize>,
    },
    /// The file lists nobody.
    #[error("no recipients: nobody could decrypt secrets of this scope")]
    Empty,
    /// The file is missing.
    #[error("recipients file is missing")]
    Missing,
}

impl Diagnostic for RecipientError {
    fn code(&self) -> &'static str {
        match self {
            RecipientError::Invalid { .. } => "invalid-recipient",
            RecipientError::Empty => "no-recipients",
            RecipientError::Missing => "missing-recipients",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RecipientError::Invalid { .. } => Some(
                "recipients are age1… keys (from `meshseal keygen` or `age-keygen`) or ssh-ed25519/ssh-rsa public keys"
                    .to_string(),
            ),
            RecipientError::Empty | RecipientError::Missing => {
                Some("add one with `meshseal recipients add -m MESH KEY`, or `meshseal recipients add --global KEY` for global secrets".to_string())
            }
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            RecipientError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

/// The parsed content of a recipients file.
#[derive(Clone, Debug)]
pub struct RecipientSet {
    recipients: Vec<Recipient>,
}

impl RecipientSet {
    /// Parses a recipients file. An empty set is valid here; encrypting to it
    /// is not (see [`RecipientSet::require_some`]).
    pub fn parse(text: &str) -> Result<Self, RecipientError> {
        let mut recipients = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let r = Recipient::from_str(line).map_err(|e| match e {
                RecipientError::Invalid { reason, .. } => RecipientError::Invalid {
                    reason,
                    line: Some(i + 1),
                },
                other => other,
            })?;
            recipients.push(r);
        }
        Ok(RecipientSet { recipients })
    }

    /// A set from parsed recipients.
    pub fn from_recipients(recipients: Vec<Recipient>) -> Self {
        RecipientSet { recipients }
    }

    /// Errors when nobody is listed.
    pub fn require_some(&self) -> Result<&Self, RecipientError> {
        if self.recipients.is_empty() {
            Err(RecipientError::Empty)
        } else {
            Ok(self)
        }
    }

    /// The recipients in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter()
    }

    /// Number of recipients.
    pub fn len(&self) -> usize {
        self.recipients.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty()
    }

    /// Whether the set holds this key (canonical comparison).
    pub fn contains(&self, key: &Recipient) -> bool {
        let key = key.to_string();
        self.recipients.iter().any(|r| r.to_string() == key)
    }

    /// A digest of the sorted, deduplicated canonical keys: 16 hex digits.
    /// Order, comments and ssh key comments do not change it.
    pub fn fingerprint(&self) -> String {
        let keys: BTreeSet<String> = self.recipients.iter().map(|r| r.to_string()).collect();
        let mut hasher = Sha256::new();
        for k in keys {
            hasher.update(k.as_bytes());
            hasher.update(b"\n");
        }
        hex(&hasher.finalize()[..8])
    }
}

/// Appends keys to a recipients file's text, skipping ones already present.
/// Returns the new text and how many keys were added.
pub fn add_to_text(text: &str, keys: &[Recipient]) -> Result<(String, usize), RecipientError> {
    let mut set = RecipientSet::parse(text)?;
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let mut added = 0;
    for key in keys {
        if !set.contains(key) {
            out.push_str(&key.to_string());
            out.push('\n');
            set.recipients.push(key.clone());
            added += 1;
        }
    }
    Ok((out, added))
}

/// Removes every line holding `key` from a recipients file's text, keeping
/// comments and other lines. Returns the new text and how many lines went.
pub fn remove_from_text(text: &str, key: &Recipient) -> (String, usize) {
    let canonical = key.to_string();
    let mut removed = 0;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim();
        let matches = !t.is_empty()
            && !t.starts_with('#')
            && Recipient::from_str(t).is_ok_and(|r| r.to_string() == canonical);
        if matches {
            removed += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, removed)
}

/// A key to remove is not in the scope's recipients file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key} is not a recipient of {scope}")]
pub struct NotARecipient {
    /// The key (canonical text).
    pub key: String,
    /// The scope.
    pub scope: Scope,
    /// Its recipients file.
    pub file: PathBuf,
}

impl Diagnostic for NotARecipient {
    fn code(&self) -> &'static str {
        "not-a-recipient"
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.file)
    }
}

/// Removes every key from the text of `scope`'s recipients file. All or
/// nothing: a key that is not listed fails the whole removal. Returns the
/// new text and how many lines went.
pub fn remove_keys(
    text: &str,
    keys: &[Recipient],
    scope: &Scope,
) -> Result<(String, usize), NotARecipient> {
    let mut text = text.to_string();
    let mut removed = 0;
    for key in keys {
        let (rest, n) = remove_from_text(&text, key);
        if n == 0 {
            return Err(NotARecipient {
                key: key.to_string(),
                scope: scope.clone(),
                file: scope.recipients_path(),
            });
        }
        text = rest;
        removed += n;
    }
    Ok((text, removed))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN";

    fn key() -> String {
        age::x25519::Identity::generate().to_public().to_string()
    }

    #[test]
    fn parses_age_format() {
        let a = key();
        let text = format!("# team\n\n{a}\n  {ED} alice@laptop\n");
        let set = RecipientSet::parse(&text).unwrap();
        assert_eq!(set.len(), 2);
        let err = RecipientSet::parse(&format!("{a}\nnope\n")).unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(RecipientSet::parse("age1qqqq\n").is_err());
        assert!(RecipientSet::parse("# nobody\n")
            .unwrap()
            .require_some()
            .is_err());
    }

    #[test]
    fn fingerprint_ignores_order_comments_and_duplicates() {
        let (a, b) = (key(), key());
        let one = RecipientSet::parse(&format!("{a}\n{b}\n")).unwrap();
        let two = RecipientSet::parse(&format!("# x\n{b}\n{a}\n{a}\n")).unwrap();
        let three = RecipientSet::parse(&format!("{a}\n")).unwrap();
        assert_eq!(one.fingerprint(), two.fingerprint());
        assert_ne!(one.fingerprint(), three.fingerprint());
        assert_eq!(one.fingerprint().len(), 16);
        let with_comment = RecipientSet::parse(&format!("{ED} bob\n")).unwrap();
        let without = RecipientSet::parse(&format!("{ED}\n")).unwrap();
        assert_eq!(with_comment.fingerprint(), without.fingerprint());
    }

    #[test]
    fn add_and_remove_keep_comments() {
        let (a, b) = (key(), key());
        let text = format!("# ops\n{a}\n");
        let rb = Recipient::from_str(&b).unwrap();
        let (text, added) = add_to_text(&text, &[rb.clone(), rb.clone()]).unwrap();
        assert_eq!(added, 1);
        assert_eq!(text, format!("# ops\n{a}\n{b}\n"));
        let ra = Recipient::from_str(&a).unwrap();
        let (text, removed) = remove_from_text(&text, &ra);
        assert_eq!(removed, 1);
        assert_eq!(text, format!("# ops\n{b}\n"));
    }

    #[test]
    fn removing_a_key_that_is_not_listed_removes_nothing() {
        let (a, b, c) = (key(), key(), key());
        let text = format!("{a}\n{b}\n");
        let [ra, rb, rc] = [&a, &b, &c].map(|k| Recipient::from_str(k).unwrap());
        let scope = Scope::Mesh("pay".into());
        let (rest, removed) = remove_keys(&text, &[ra.clone(), rb], &scope).unwrap();
        assert_eq!((rest.as_str(), removed), ("", 2));
        let err = remove_keys(&text, &[ra, rc], &scope).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{c} is not a recipient of mesh \"pay\"")
        );
        assert_eq!(err.file(), Some(Path::new("meshes/pay/recipients.txt")));
    }
}
