//! `meshseal check`: find every problem in a store, with or without a key.
//!
//! Without an identity, check judges what anyone can see: every file under
//! `meshes/` and `global/` must be something the layout knows; a `secrets/`
//! folder holds only age files with valid names; each file's header metadata
//! must name the scope and name its path gives, and the recipient set its
//! scope has now (else it is stale). With an identity it also decrypts every
//! secret and validates the document. Every problem is collected and
//! reported; nothing stops at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::atomic;
use crate::envelope::{self, Sniff};
use crate::identity::Identities;
use crate::policy::Policy;
use crate::problem::Problem;
use crate::recipients::RecipientSet;
use crate::scope::{Scope, SecretId, StorePath, StrayReason};
use crate::store::{scope_flag, Entry, FileKind, Store, StoreError};

/// What to check.
#[derive(Default)]
pub struct CheckOptions<'a> {
    /// Decrypt and validate documents too.
    pub identities: Option<&'a Identities>,
    /// Only report problems about these paths (relative to the root); empty
    /// means the whole store.
    pub only: Vec<PathBuf>,
}

/// The outcome: problems, sorted by file, and how many secrets were seen.
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// Secrets examined.
    pub secrets: usize,
    /// Secrets decrypted successfully (with an identity).
    pub decrypted: usize,
}

/// The content of one file to judge, from the working tree or elsewhere
/// (the git index, for `check --staged`).
pub trait Source: Sync {
    /// Every file under meshes/ and global/.
    fn entries(&self) -> Result<Vec<Entry>, Problem>;
    /// The bytes of one of them.
    fn read(&self, entry: &Entry, limit: usize) -> Result<Vec<u8>, StoreError>;
    /// Whether a secret's file is present (policy references resolve by path).
    fn has_secret(&self, id: &SecretId) -> bool;
}

impl Source for Store {
    fn entries(&self) -> Result<Vec<Entry>, Problem> {
        self.scan()
    }
    fn read(&self, entry: &Entry, limit: usize) -> Result<Vec<u8>, StoreError> {
        self.read_file(&entry.rel, limit)
    }
    fn has_secret(&self, id: &SecretId) -> bool {
        self.exists(id)
    }
}

/// Checks the working tree of a store.
pub fn check(store: &Store, options: &CheckOptions<'_>) -> Report {
    check_source(store, store, options)
}

/// Checks files from `source` by the rules and limits of `store`.
pub fn check_source(store: &Store, source: &dyn Source, options: &CheckOptions<'_>) -> Report {
    let mut report = Report::default();
    let entries = match source.entries() {
        Ok(e) => e,
        Err(p) => {
            report.problems.push(p);
            return report;
        }
    };

    // Recipients first: secrets are judged against them.
    let mut recipients: BTreeMap<Scope, Option<RecipientSet>> = BTreeMap::new();
    let mut scopes_with_secrets = BTreeSet::new();
    for entry in &entries {
        match &entry.what {
            StorePath::Recipients(scope) if entry.kind == FileKind::Regular => {
                let set = match read_recipients(source, entry) {
                    Ok(set) => {
                        if set.is_empty() {
                            report.problems.push(Problem::at(
                                &entry.rel,
                                &crate::recipients::RecipientError::Empty,
                            ));
                        }
                        Some(set)
                    }
                    Err(p) => {
                        report.problems.push(p);
                        None
                    }
                };
                recipients.insert(scope.clone(), set);
            }
            StorePath::Secret(id) => {
                scopes_with_secrets.insert(id.scope.clone());
            }
            _ => {}
        }
    }
    for scope in &scopes_with_secrets {
        if !recipients.contains_key(scope) {
            report.problems.push(
                Problem::at(
                    scope.recipients_path(),
                    &crate::recipients::RecipientError::Missing,
                )
                .with_hint(format!(
                    "add one with `meshseal recipients add {}KEY`",
                    scope_flag(scope)
                )),
            );
        }
    }

    let secrets: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e.what, StorePath::Secret(_)) && e.kind == FileKind::Regular)
        .collect();
    report.secrets = secrets.len();
    let results: Vec<(Vec<Problem>, bool)> = secrets
        .par_iter()
        .map(|entry| check_secret(store, source, entry, &recipients, options.identities))
        .collect();
    for (problems, decrypted) in results {
        report.problems.extend(problems);
        report.decrypted += usize::from(decrypted);
    }
    for entry in &entries {
        report.problems.extend(check_layout(entry, store.root()));
        if entry.kind == FileKind::Regular {
            report
                .problems
                .extend(check_policy(store, source, entry, options.identities));
        }
    }

    if !options.only.is_empty() {
        report.problems.retain(|p| {
            p.file
                .as_ref()
                .is_some_and(|f| options.only.iter().any(|o| f.starts_with(o)))
        });
    }
    report
        .problems
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    report
}

fn read_recipients(source: &dyn Source, entry: &Entry) -> Result<RecipientSet, Problem> {
    let bytes = source
        .read(entry, 1024 * 1024)
        .map_err(|e| Problem::at(&entry.rel, &e))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Problem::new(
            Some(entry.rel.clone()),
            "invalid-recipient",
            "recipients file is not UTF-8 text",
        )
    })?;
    RecipientSet::parse(&text).map_err(|e| Problem::at(&entry.rel, &e))
}

/// A policy's syntax and its secret references (by path, so no key is needed).
fn check_policy(
    store: &Store,
    source: &dyn Source,
    entry: &Entry,
    identities: Option<&Identities>,
) -> Vec<Problem> {
    let (mesh, name) = match &entry.what {
        StorePath::Mesh(mesh) => (mesh, None),
        StorePath::Policy { mesh, name } => (mesh, Some(name.as_str())),
        _ => return Vec::new(),
    };
    let text = match source.read(entry, 1024 * 1024) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => {
                return vec![Problem::new(
                    Some(entry.rel.clone()),
                    "invalid-policy",
                    "policy is not UTF-8 text",
                )]
            }
        },
        Err(e) => return vec![Problem::at(&entry.rel, &e)],
    };
    let policy = match Policy::parse(&text, mesh, name) {
        Ok(p) => p,
        Err(e) => return vec![Problem::at(&entry.rel, &e)],
    };
    let mut problems: Vec<Problem> = policy
        .resolve(&|id| source.has_secret(id))
        .iter()
        .map(|e| Problem::at(&entry.rel, e))
        .collect();
    if let Some(identities) = identities {
        let read = |id: &SecretId| {
            let rel = id.path();
            let e = Entry {
                what: StorePath::classify(&rel),
                rel,
                kind: FileKind::Regular,
            };
            source.read(&e, store.config().max_file_bytes()).ok()
        };
        problems.extend(crate::ca::check_provided(store, &policy, identities, &read));
    }
    problems
}

/// Problems that the path and file kind alone show.
fn check_layout(entry: &Entry, root: &Path) -> Option<Problem> {
    let rel = &entry.rel;
    match entry.kind {
        FileKind::Symlink => return Some(Problem::at(rel, &StoreError::Symlink)),
        FileKind::Special => return Some(Problem::at(rel, &StoreError::NotRegular)),
        FileKind::Regular => {}
    }
    if let Some(p) = leftover_temp(rel, root) {
        return Some(p);
    }
    match &entry.what {
        StorePath::StraySecret { scope, reason } => Some(match reason {
            StrayReason::NotAge => Problem::new(
                Some(rel.clone()),
                "not-age-file",
                "file in a secrets folder is not a .age secret",
            )
            .with_hint(format!(
                "secrets folders hold only <name>.age files; if this is a plaintext secret, delete it and run `meshseal create {} NAME --from-file FILE`",
                match scope { Scope::Global => "global-secret", Scope::Mesh(_) => "secret" }
            )),
            StrayReason::BadName(e) => Problem::at(rel, e)
                .with_hint("rename the secret: file names are the secret's name plus .age".to_string()),
        }),
        StorePath::BadMeshDir(e) => Some(Problem::at(rel, e)),
        StorePath::Unexpected => Some(
            Problem::new(
                Some(rel.clone()),
                "unexpected-file",
                "file is not part of the store layout",
            )
            .with_hint("meshes/<mesh>/ holds recipients.txt, mesh.toml, secrets/*.age and policies/*.toml; global/ holds recipients.txt and secrets/*.age"),
        ),
        _ => None,
    }
}

/// A temporary file of an atomic write (`.meshseal-<pid>-<random>.tmp`),
/// wherever it is: never a secret, a stray or a policy, whatever folder it is
/// in. Whether its writer is still at work is judged by the lock on the file
/// in the working tree under `root` (see `atomic::is_abandoned_file`); a
/// staged copy with none there, by the pid in its name and its age.
fn leftover_temp(rel: &Path, root: &Path) -> Option<Problem> {
    let name = rel.file_name()?.to_str()?;
    if !atomic::is_temp_name(name) {
        return None;
    }
    let path = root.join(rel);
    let modified = std::fs::symlink_metadata(&path)
        .and_then(|m| m.modified())
        .ok();
    Some(if atomic::is_abandoned_file(&path, name, modified) {
        Problem::new(
            Some(rel.to_path_buf()),
            "interrupted-write",
            "temporary file left behind by an interrupted write; it is not a secret, and the file it was meant to replace is intact",
        )
        .with_hint("delete it; the next meshseal command that writes to this folder removes it too")
    } else {
        match atomic::writer_pid(name) {
            Some(pid) => Problem::new(
                Some(rel.to_path_buf()),
                "write-in-progress",
                format!("temporary file of a write in progress (process {pid})"),
            )
            .with_hint("run check again when that command has finished"),
            // Made by an older meshseal, whose names do not say the writer.
            None => Problem::new(
                Some(rel.to_path_buf()),
                "write-in-progress",
                "temporary file of a write in progress, or of one interrupted less than an hour ago",
            )
            .with_hint("if no meshseal command is running, delete it; meshseal's next write to this folder removes it once it is an hour old"),
        }
    })
}

/// Keyless checks of one secret, then decryption when identities are given.
fn check_secret(
    store: &Store,
    source: &dyn Source,
    entry: &Entry,
    recipients: &BTreeMap<Scope, Option<RecipientSet>>,
    identities: Option<&Identities>,
) -> (Vec<Problem>, bool) {
    let StorePath::Secret(id) = &entry.what else {
        return (Vec::new(), false);
    };
    let rel = &entry.rel;
    let mut problems = Vec::new();
    let bytes = match source.read(entry, store.config().max_file_bytes()) {
        Ok(b) => b,
        Err(e) => return (vec![Problem::at(rel, &e)], false),
    };
    let header = match envelope::read_header(&bytes) {
        Ok(h) => h,
        Err(e) => return (vec![Problem::at(rel, &e)], false),
    };
    if envelope::sniff(&bytes) == Sniff::Binary {
        problems.push(
            Problem::new(
                Some(rel.clone()),
                "not-armored",
                "age file is binary, not ASCII-armored",
            )
            .with_hint(format!(
                "run `meshseal rekey {}--force`",
                scope_flag(&id.scope)
            )),
        );
    }
    match &header.metadata {
        None => problems.push(
            Problem::new(
                Some(rel.clone()),
                "missing-metadata",
                "age file has no meshseal metadata (made by stock age?)",
            )
            .with_hint(format!(
                "run `meshseal rekey {}--force` to add it; without it moved or stale files cannot be detected without a key",
                scope_flag(&id.scope)
            )),
        ),
        Some(meta) => {
            if &meta.id != id {
                problems.push(moved(rel, &meta.id, id));
            } else if let Some(Some(set)) = recipients.get(&id.scope) {
                if meta.recipients_fingerprint != set.fingerprint() {
                    problems.push(
                        Problem::new(
                            Some(rel.clone()),
                            "stale",
                            format!(
                                "encrypted to recipient set {} but {} now lists {}",
                                meta.recipients_fingerprint,
                                id.scope.recipients_path().display(),
                                set.fingerprint()
                            ),
                        )
                        .with_hint(format!("run `meshseal rekey {}`", scope_flag(&id.scope).trim_end())),
                    );
                }
            }
        }
    }
    let mut decrypted = false;
    if let Some(identities) = identities {
        match store.open_bytes(id, &bytes, identities) {
            Ok(_) => decrypted = true,
            Err(p) => {
                // A moved file fails binding too; say it once.
                if !(p.code == "scope-mismatch"
                    && problems.iter().any(|q| q.code == "scope-mismatch"))
                {
                    problems.push(p);
                }
            }
        }
    }
    (problems, decrypted)
}

fn moved(rel: &Path, header: &SecretId, path: &SecretId) -> Problem {
    Problem::new(
        Some(rel.to_path_buf()),
        "scope-mismatch",
        format!("header metadata says {header} but the path says {path}"),
    )
    .with_hint(
        "a ciphertext is bound to its scope and name: it was moved, copied or renamed; restore it, or recreate the secret at this path with `meshseal apply`"
            .to_string(),
    )
}
