//! OpenSSH `allowed_signers` files: who may sign, with which key, for what.
//!
//! The format and its meaning are ssh-keygen's (`ssh-keygen(1)`, ALLOWED
//! SIGNERS; `sshsig.c`), so that `ssh-keygen -Y verify -f FILE` and meshseal
//! always agree:
//!
//! ```text
//! # comment
//! alice@example.com,*@ops.example.com namespaces="meshseal",valid-after="20250101Z" ssh-ed25519 AAAA... alice
//! "ci bot" ssh-ed25519 AAAA...
//! *@example.com cert-authority ssh-ed25519 AAAA... the CA
//! ```
//!
//! A line is a principals pattern list (`*` and `?` wildcards, `!` negation,
//! matched case-sensitively as ssh's `match_pattern_list`), optional options,
//! and a public key. ssh-keygen reads only the lines whose principals match
//! the one it is asked about and skips what it cannot parse elsewhere;
//! meshseal reads every line and refuses the whole file on any line it
//! cannot honour (unknown option, bad key, a key type it cannot verify, a
//! time it cannot pin down), naming the line. Where meshseal answers, its
//! answer is ssh-keygen's.
//!
//! One deliberate narrowing: `valid-after`/`valid-before` must be UTC
//! (`...Z` or `...UTC`). ssh-keygen reads a time without a zone in the local
//! time zone of whoever runs it, so the same file would admit a signature on
//! one machine and refuse it on another.

mod edit;
mod line;
mod pattern;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use ssh_key::public::KeyData;
use ssh_key::{Certificate, HashAlg, PublicKey};

use super::sshsig::PreparedKey;
use crate::problem::Diagnostic;
pub use edit::{add_to_text, remove_from_text, EditError, Removal};
pub use line::LineProblem;
use line::{format_time, needs_quotes, openssh, parse_line, shorten};
use pattern::{match_pattern, match_pattern_list, ListMatch};

/// Largest `allowed_signers` text meshseal reads (a trust root or a
/// `writers.txt`; ten thousand RSA-4096 lines fit).
pub const MAX_ALLOWED_SIGNERS_BYTES: usize = 8 * 1024 * 1024;

/// Why an `allowed_signers` text is refused.
#[derive(Debug, thiserror::Error)]
pub enum AllowedSignersError {
    /// The text is larger than [`MAX_ALLOWED_SIGNERS_BYTES`].
    #[error("allowed signers file is too large ({len} bytes; the limit is {max})")]
    TooLarge {
        /// The text's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// One line meshseal cannot honour (the line is in [`Diagnostic::line`],
    /// which reports print before the message).
    #[error("{problem}")]
    Line {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        #[source]
        problem: LineProblem,
    },
}

impl Diagnostic for AllowedSignersError {
    fn code(&self) -> &'static str {
        "invalid-allowed-signers"
    }

    fn line(&self) -> Option<usize> {
        match self {
            AllowedSignersError::Line { line, .. } => Some(*line),
            AllowedSignersError::TooLarge { .. } => None,
        }
    }

    fn hint(&self) -> Option<String> {
        let AllowedSignersError::Line { problem, .. } = self else {
            return Some(
                "an allowed signers file lists principals and public keys, one per line"
                    .to_string(),
            );
        };
        problem.hint()
    }
}

/// One line of an `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    line: usize,
    principals: String,
    cert_authority: bool,
    namespaces: Option<String>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
    key: PublicKey,
}

impl Entry {
    /// The 1-based line this entry was read from.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The principals pattern list, as written (without quotes).
    pub fn principals(&self) -> &str {
        &self.principals
    }

    /// The principals, one pattern each.
    pub fn principal_list(&self) -> impl Iterator<Item = &str> {
        self.principals.split(',')
    }

    /// Whether the key is a certificate authority (`cert-authority`).
    pub fn cert_authority(&self) -> bool {
        self.cert_authority
    }

    /// The `namespaces=` pattern list, if given.
    pub fn namespaces(&self) -> Option<&str> {
        self.namespaces.as_deref()
    }

    /// `valid-after`, in seconds since the Unix epoch.
    pub fn valid_after(&self) -> Option<u64> {
        self.valid_after
    }

    /// `valid-before`, in seconds since the Unix epoch.
    pub fn valid_before(&self) -> Option<u64> {
        self.valid_before
    }

    /// The public key (with its comment).
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The key's `SHA256:` fingerprint.
    pub fn fingerprint(&self) -> ssh_key::Fingerprint {
        self.key.fingerprint(HashAlg::Sha256)
    }

    /// The line in canonical form (no newline): what [`AllowedSigners::parse`]
    /// reads back as this same entry.
    pub fn to_line(&self) -> String {
        let mut out = String::new();
        if needs_quotes(&self.principals) {
            out.push('"');
            out.push_str(&self.principals);
            out.push('"');
        } else {
            out.push_str(&self.principals);
        }
        out.push(' ');
        let mut options = Vec::new();
        if self.cert_authority {
            options.push("cert-authority".to_string());
        }
        if let Some(ns) = &self.namespaces {
            options.push(format!("namespaces=\"{ns}\""));
        }
        if let Some(t) = self.valid_after {
            options.push(format!("valid-after=\"{}\"", format_time(t)));
        }
        if let Some(t) = self.valid_before {
            options.push(format!("valid-before=\"{}\"", format_time(t)));
        }
        if !options.is_empty() {
            out.push_str(&options.join(","));
            out.push(' ');
        }
        out.push_str(&openssh(&self.key));
        out
    }

    /// Whether ssh-keygen's options of this line let a signature at `at`
    /// in `namespace` through.
    fn options_allow(&self, namespace: &str, at: u64) -> Result<(), Unauthorized> {
        if let Some(ns) = &self.namespaces {
            if match_pattern_list(namespace, ns) != ListMatch::Positive {
                return Err(Unauthorized::NamespaceNotAllowed {
                    line: self.line,
                    namespace: shorten(namespace),
                });
            }
        }
        if let Some(after) = self.valid_after {
            if at < after {
                return Err(Unauthorized::NotYetValid {
                    line: self.line,
                    valid_after: after,
                });
            }
        }
        if let Some(before) = self.valid_before {
            if at > before {
                return Err(Unauthorized::Expired {
                    line: self.line,
                    valid_before: before,
                });
            }
        }
        Ok(())
    }

    fn lists_principal(&self, principal: Option<&str>) -> bool {
        principal.is_none_or(|p| match_pattern_list(p, &self.principals) == ListMatch::Positive)
    }
}

/// A parsed `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
    /// The entries' Ed25519 keys, prepared once. A signed store's
    /// signatures are made by a few keys, and verifying one by a listed
    /// key then skips decompressing that key twice (vetting it, then
    /// verifying with it) and computing its fingerprint: a cold load
    /// verifies 10,000 of them.
    prepared: BTreeMap<[u8; 32], Arc<PreparedKey>>,
}

/// Why no line of an `allowed_signers` file lets a key sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthorized {
    /// No line lists this key.
    #[error("the key is not listed")]
    NotListed,
    /// Lines list the key, but none for the principal asked about.
    #[error("the key is not listed for principal {principal:?}")]
    NotForPrincipal {
        /// The principal asked about.
        principal: String,
    },
    /// The line's `namespaces=` does not include the signature's namespace.
    #[error("allowed signers line {line}: the key may not sign in namespace {namespace:?}")]
    NamespaceNotAllowed {
        /// The line.
        line: usize,
        /// The namespace asked about.
        namespace: String,
    },
    /// The time is before the line's `valid-after`.
    #[error("allowed signers line {line}: the key is not valid before {}", format_time(*.valid_after))]
    NotYetValid {
        /// The line.
        line: usize,
        /// Its `valid-after`.
        valid_after: u64,
    },
    /// The time is after the line's `valid-before`.
    #[error("allowed signers line {line}: the key expired at {}", format_time(*.valid_before))]
    Expired {
        /// The line.
        line: usize,
        /// Its `valid-before`.
        valid_before: u64,
    },
    /// A `cert-authority` line signed the certificate, but the certificate
    /// does not authorize this use.
    #[error("allowed signers line {line}: certificate not authorized: {reason}")]
    CertificateNotAuthorized {
        /// The line.
        line: usize,
        /// What the certificate lacks.
        reason: &'static str,
    },
}

/// No `line()`: the line is of the allowed signers file, while the report is
/// about the signed file; the message names it.
impl Diagnostic for Unauthorized {
    fn code(&self) -> &'static str {
        "unknown-writer"
    }

    fn hint(&self) -> Option<String> {
        match self {
            Unauthorized::NotListed | Unauthorized::NotForPrincipal { .. } => Some(
                "sign with a key that is listed, or have an admin add it (`meshseal writers add`)"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// A key's permission to sign, as found in an `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized<'a> {
    /// The line that allows it.
    pub entry: &'a Entry,
    /// The principals it signs as: the one asked about, else the line's
    /// patterns (for a certificate, its principals the line's patterns match).
    pub principals: Vec<String>,
}

impl AllowedSigners {
    /// Parses the text; the first line meshseal cannot honour fails it all.
    pub fn parse(text: &str) -> Result<AllowedSigners, AllowedSignersError> {
        check_size(text)?;
        let mut entries = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            match parse_line(raw, line) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(problem) => return Err(AllowedSignersError::Line { line, problem }),
            }
        }
        let prepared = entries
            .iter()
            .filter_map(|e| match e.key.key_data() {
                KeyData::Ed25519(k) => PreparedKey::new(k).map(|p| (k.0, Arc::new(p))),
                _ => None,
            })
            .collect();
        Ok(AllowedSigners { entries, prepared })
    }

    /// The decompressed form of `key` when a line lists it (whether the
    /// line allows it to sign is [`AllowedSigners::authorize`]'s to say).
    pub fn verifying_key(&self, key: &[u8; 32]) -> Option<&ed25519_dalek::VerifyingKey> {
        self.prepared.get(key).map(|p| &p.verifying)
    }

    /// `key` prepared for a batch of its signatures, when a line lists it.
    pub fn prepared_key(&self, key: &[u8; 32]) -> Option<&Arc<PreparedKey>> {
        self.prepared.get(key)
    }

    /// Every problem of the text, in line order (for `check`, which reports
    /// them all).
    pub fn problems(text: &str) -> Vec<AllowedSignersError> {
        if let Err(e) = check_size(text) {
            return vec![e];
        }
        text.split('\n')
            .enumerate()
            .filter_map(|(index, raw)| {
                parse_line(raw, index + 1)
                    .err()
                    .map(|problem| AllowedSignersError::Line {
                        line: index + 1,
                        problem,
                    })
            })
            .collect()
    }

    /// The lines, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether no line lists a key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The canonical text of these entries, one line each (comments and
    /// blank lines are not kept: edit a file with [`add_to_text`] and
    /// [`remove_from_text`]).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            out.push_str(&entry.to_line());
            out.push('\n');
        }
        out
    }

    /// Whether `key` may sign in `namespace` at `at` (seconds since the Unix
    /// epoch) as `principal`, or as any principal when `principal` is `None`:
    /// the first line that allows it, as `ssh-keygen -Y verify -I principal`
    /// decides. A plain key never matches a `cert-authority` line.
    pub fn authorize(
        &self,
        key: &KeyData,
        principal: Option<&str>,
        namespace: &str,
        at: u64,
    ) -> Result<Authorized<'_>, Unauthorized> {
        let mut refusal = None;
        let mut listed_elsewhere = false;
        for entry in &self.entries {
            if entry.cert_authority || entry.key.key_data() != key {
                continue;
            }
            if !entry.lists_principal(principal) {
                listed_elsewhere = true;
                continue;
            }
            match entry.options_allow(namespace, at) {
                Ok(()) => {
                    let principals = match principal {
                        Some(p) => vec![p.to_string()],
                        None => entry.principal_list().map(str::to_string).collect(),
                    };
                    return Ok(Authorized { entry, principals });
                }
                Err(why) => {
                    refusal.get_or_insert(why);
                }
            }
        }
        Err(refusal.unwrap_or(match (principal, listed_elsewhere) {
            (Some(p), true) => Unauthorized::NotForPrincipal {
                principal: shorten(p),
            },
            _ => Unauthorized::NotListed,
        }))
    }

    /// [`authorize`](Self::authorize) for a signature made with an OpenSSH
    /// user certificate: a `cert-authority` line whose key signed the
    /// certificate allows it while the certificate is valid at `at` and
    /// names the principal; a plain line allows it when its key is the
    /// certificate's own key (as ssh-keygen does).
    pub fn authorize_certificate(
        &self,
        cert: &Certificate,
        principal: Option<&str>,
        namespace: &str,
        at: u64,
    ) -> Result<Authorized<'_>, Unauthorized> {
        // ssh-keygen checks the CA's signature when it parses the certificate.
        if cert.verify_signature().is_err() {
            return Err(Unauthorized::NotListed);
        }
        let mut refusal = None;
        let mut listed_elsewhere = false;
        for entry in &self.entries {
            let found = if entry.cert_authority {
                entry.key.key_data() == cert.signature_key()
            } else {
                entry.key.key_data() == cert.public_key()
            };
            if !found {
                continue;
            }
            if !entry.lists_principal(principal) {
                listed_elsewhere = true;
                continue;
            }
            let principals = if !entry.cert_authority {
                match principal {
                    Some(p) => Ok(vec![p.to_string()]),
                    None => Ok(entry.principal_list().map(str::to_string).collect()),
                }
            } else {
                certificate_principals(cert, entry, principal, at)
            };
            let verdict = principals.and_then(|principals| {
                entry.options_allow(namespace, at)?;
                Ok(principals)
            });
            match verdict {
                Ok(principals) => return Ok(Authorized { entry, principals }),
                Err(why) => {
                    refusal.get_or_insert(why);
                }
            }
        }
        Err(refusal.unwrap_or(match (principal, listed_elsewhere) {
            (Some(p), true) => Unauthorized::NotForPrincipal {
                principal: shorten(p),
            },
            _ => Unauthorized::NotListed,
        }))
    }
}

/// ssh's `sshkey_cert_check_authority` for a user certificate, then the
/// principals it signs as under a `cert-authority` line.
fn certificate_principals(
    cert: &Certificate,
    entry: &Entry,
    principal: Option<&str>,
    at: u64,
) -> Result<Vec<String>, Unauthorized> {
    let refuse = |reason| Unauthorized::CertificateNotAuthorized {
        line: entry.line,
        reason,
    };
    if cert.cert_type() != ssh_key::certificate::CertType::User {
        return Err(refuse("not a user certificate"));
    }
    if at < cert.valid_after() {
        return Err(refuse("not yet valid"));
    }
    if at >= cert.valid_before() {
        return Err(refuse("expired"));
    }
    let names = cert.valid_principals();
    if names.is_empty() {
        return Err(refuse("the certificate lacks a principal list"));
    }
    match principal {
        Some(p) if names.iter().any(|n| n == p) => Ok(vec![p.to_string()]),
        Some(_) => Err(refuse("the name is not a listed principal")),
        None => {
            // ssh's cert_filter_principals: each line pattern up to the
            // first empty one, matched literally (no negation) against the
            // certificate's principals.
            let mut matched = Vec::new();
            for pattern in entry.principals.split(',').take_while(|p| !p.is_empty()) {
                for name in names {
                    if match_pattern(name.as_bytes(), pattern.as_bytes()) {
                        matched.push(name.clone());
                    }
                }
            }
            if matched.is_empty() {
                Err(refuse("no valid principals found"))
            } else {
                Ok(matched)
            }
        }
    }
}

fn check_size(text: &str) -> Result<(), AllowedSignersError> {
    if text.len() > MAX_ALLOWED_SIGNERS_BYTES {
        return Err(AllowedSignersError::TooLarge {
            len: text.len(),
            max: MAX_ALLOWED_SIGNERS_BYTES,
        });
    }
    Ok(())
}

impl fmt::Display for AllowedSigners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
pub(crate) mod tests;
