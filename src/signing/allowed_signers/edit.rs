//! `writers add|remove`: edits of an `allowed_signers` text that keep every
//! other line (comments, the meshseal header, other principals) as it is.

use ssh_key::PublicKey;

use super::line::{openssh, shorten};
use super::pattern::MAX_PATTERN_BYTES;
use super::{AllowedSigners, AllowedSignersError};
use crate::problem::Diagnostic;
use crate::signing::keys::{self, KeyProblem};

/// Why `writers add|remove` cannot edit a file.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file as it is does not parse.
    #[error(transparent)]
    Invalid(#[from] AllowedSignersError),
    /// The principal cannot be written as one allowed signers principal.
    #[error("invalid principal {principal:?}: {reason}")]
    InvalidPrincipal {
        /// The principal (shortened).
        principal: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key cannot be used for meshseal signatures.
    #[error("{0}")]
    UnsupportedKey(#[source] KeyProblem),
    /// `remove` of a principal no line lists.
    #[error("{principal:?} is not listed")]
    NotListed {
        /// The principal (shortened).
        principal: String,
    },
}

impl Diagnostic for EditError {
    fn code(&self) -> &'static str {
        match self {
            EditError::Invalid(e) => e.code(),
            EditError::InvalidPrincipal { .. } => "invalid-principal",
            EditError::UnsupportedKey(_) => "unsupported-key",
            EditError::NotListed { .. } => "unknown-writer",
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            EditError::Invalid(e) => e.line(),
            _ => None,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            EditError::Invalid(e) => e.hint(),
            EditError::InvalidPrincipal { .. } => Some(
                "a principal is one name (e.g. alice@example.com) without spaces, quotes or commas"
                    .to_string(),
            ),
            EditError::UnsupportedKey(_) => Some(
                "use an ssh-ed25519, sk-ssh-ed25519@openssh.com, ECDSA or RSA (2048 to 4096 bits) key"
                    .to_string(),
            ),
            EditError::NotListed { .. } => Some("list the file's principals with `meshseal writers list`".to_string()),
        }
    }
}

fn check_principal(principal: &str) -> Result<(), EditError> {
    let refuse = |reason| EditError::InvalidPrincipal {
        principal: shorten(principal),
        reason,
    };
    if principal.is_empty() {
        return Err(refuse("empty"));
    }
    if principal.len() >= MAX_PATTERN_BYTES {
        return Err(refuse("too long"));
    }
    if principal
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == ',')
    {
        return Err(refuse(
            "contains a space, a control character, a quote or a comma",
        ));
    }
    if principal.starts_with(['!', '#']) {
        return Err(refuse("starts with ! or #"));
    }
    Ok(())
}

/// `writers add`: the text with a line `PRINCIPAL KEY` appended, and whether
/// it changed (it does not when that exact line's entry is already there).
/// Every other line, comments included, is kept as it is.
pub fn add_to_text(
    text: &str,
    principal: &str,
    key: &PublicKey,
) -> Result<(String, bool), EditError> {
    let signers = AllowedSigners::parse(text)?;
    check_principal(principal)?;
    keys::check(key.key_data()).map_err(EditError::UnsupportedKey)?;
    let present = signers.entries.iter().any(|e| {
        e.principals == principal
            && e.key.key_data() == key.key_data()
            && !e.cert_authority
            && e.namespaces.is_none()
            && e.valid_after.is_none()
            && e.valid_before.is_none()
    });
    if present {
        return Ok((text.to_string(), false));
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(principal);
    out.push(' ');
    out.push_str(&openssh(key));
    out.push('\n');
    Ok((out, true))
}

/// What [`remove_from_text`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The new text.
    pub text: String,
    /// The keys of the lines that listed the principal (their signatures
    /// must be re-made by a remaining writer).
    pub keys: Vec<PublicKey>,
}

/// `writers remove`: `principal` taken out of every line's principals list
/// (as written, not as a pattern match); a line left without principals is
/// removed. Other lines, comments included, are kept as they are.
pub fn remove_from_text(text: &str, principal: &str) -> Result<Removal, EditError> {
    let signers = AllowedSigners::parse(text)?;
    let mut by_line = signers.entries.iter().map(|e| (e.line, e)).peekable();
    let mut out = String::with_capacity(text.len());
    let mut keys = Vec::new();
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let entry = match by_line.peek() {
            Some((line, entry)) if *line == index + 1 => {
                let entry = *entry;
                by_line.next();
                Some(entry)
            }
            _ => None,
        };
        let Some(entry) = entry.filter(|e| e.principal_list().any(|p| p == principal)) else {
            out.push_str(raw);
            continue;
        };
        keys.push(entry.key.clone());
        // Empty patterns (`alice,`) match no principal; left alone they
        // would make a line without principals.
        let left: Vec<&str> = entry
            .principal_list()
            .filter(|p| *p != principal && !p.is_empty())
            .collect();
        if left.is_empty() {
            continue;
        }
        let mut kept = entry.clone();
        kept.principals = left.join(",");
        out.push_str(&kept.to_line());
        if raw.ends_with('\n') {
            out.push('\n');
        }
    }
    if keys.is_empty() {
        return Err(EditError::NotListed {
            principal: shorten(principal),
        });
    }
    Ok(Removal { text: out, keys })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{key, ED};
    use super::*;
    use crate::signing::keys::tests::DSA;
    #[test]
    fn add_and_remove_keep_comments_and_other_lines() {
        let text = format!(
            "# meshseal writers s1 global generation 1\nalice,bob {ED}\n# keep me\ncarol {ED}\n"
        );
        let (added, changed) = add_to_text(&text, "dave@example.com", &key()).unwrap();
        assert!(changed);
        assert!(added.starts_with(&text));
        assert!(added.ends_with(&format!("dave@example.com {ED}\n")));
        let (same, changed) = add_to_text(&added, "dave@example.com", &key()).unwrap();
        assert!(!changed);
        assert_eq!(same, added);

        let removal = remove_from_text(&added, "bob").unwrap();
        assert_eq!(removal.keys.len(), 1);
        assert_eq!(
            removal.text,
            format!("# meshseal writers s1 global generation 1\nalice {ED}\n# keep me\ncarol {ED}\ndave@example.com {ED}\n")
        );
        // Fuzzing found this: what is left of `carol,` is no principal.
        let trailing = format!("carol, {ED}\n");
        assert_eq!(remove_from_text(&trailing, "carol").unwrap().text, "");
        let removal = remove_from_text(&removal.text, "carol").unwrap();
        assert!(!removal.text.contains("carol"));
        assert!(removal.text.contains("# keep me\n"));
        assert!(matches!(
            remove_from_text(&removal.text, "nobody"),
            Err(EditError::NotListed { .. })
        ));
        assert!(matches!(
            add_to_text(&text, "two words", &key()),
            Err(EditError::InvalidPrincipal { .. })
        ));
        assert!(matches!(
            add_to_text(&text, "x", &PublicKey::from_openssh(DSA).unwrap()),
            Err(EditError::UnsupportedKey(_))
        ));
        let mut sneaky = key();
        sneaky.set_comment(format!("c\nmallory {ED}"));
        let (added, _) = add_to_text(&text, "erin", &sneaky).unwrap();
        assert_eq!(added.lines().count(), text.lines().count() + 1);
        assert!(!added.contains("mallory"));
        assert!(matches!(
            add_to_text("bad line\n", "x", &key()),
            Err(EditError::Invalid(_))
        ));
    }
}
