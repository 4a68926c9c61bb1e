//! `meshseal check`: find every problem in a store, with or without a key.
//!
//! Without an identity, check judges what anyone can see: every file under
//! `meshes/` and `global/` must be something the layout knows; a `secrets/`
//! folder holds only age files with valid names; each file's header metadata
//! must name the scope and name its path gives, and the recipient set its
//! scope has now (else it is stale). With an identity it also decrypts every
//! secret and validates the document, and warns about referenced
//! certificates near expiry ([`expiry`]). Every problem is collected and
//! reported; nothing stops at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rayon::prelude::*;
use thiserror::Error;

use crate::envelope::{self, Sniff};
use crate::identity::Identities;
use crate::policy::{Policy, PolicyError, Presence};
use crate::problem::{Diagnostic, Problem};
use crate::recipients::{RecipientError, RecipientSet};
use crate::scope::{Scope, ScopeFile, SecretId, StorePath};
use sha2::{Digest, Sha256};

use crate::signing::sshsig::MAX_SIGNATURE_BYTES;
use crate::store::{
    layout, scope_flag, text_from_bytes, Entry, FileKind, Moved, RecipientsError, Store,
    StoreError, MAX_TEXT_FILE_BYTES,
};
use crate::writers::history::{self, Seen};
use crate::writers::Verifier;

pub mod expiry;

pub use expiry::{expiry_warning_days, ExpiryWarning, DEFAULT_EXPIRY_WARNING};

/// What the header of a secret file shows without a key.
#[derive(Debug, Error)]
pub enum HeaderFinding {
    /// A binary age file: git diffs and reviews cannot show it.
    #[error("age file is binary, not ASCII-armored")]
    NotArmored {
        /// The file's scope.
        scope: Scope,
    },
    /// A file without meshseal's header stanza (made by stock age).
    #[error("age file has no meshseal metadata (made by stock age?)")]
    MissingMetadata {
        /// The file's scope.
        scope: Scope,
    },
    /// Encrypted to another recipient set than its scope's current one.
    #[error("encrypted to recipient set {header} but {} now lists {current}", .scope.recipients_path().display())]
    Stale {
        /// The file's scope.
        scope: Scope,
        /// The fingerprint in the header.
        header: String,
        /// The scope's current fingerprint.
        current: String,
    },
}

impl Diagnostic for HeaderFinding {
    fn code(&self) -> &'static str {
        match self {
            HeaderFinding::NotArmored { .. } => "not-armored",
            HeaderFinding::MissingMetadata { .. } => "missing-metadata",
            HeaderFinding::Stale { .. } => "stale",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            HeaderFinding::NotArmored { scope } => {
                format!("run `meshseal rekey {}--force`", scope_flag(scope))
            }
            // A plain rekey rewrites the files without metadata (they count
            // as stale); --force would rewrite every file of the scope.
            HeaderFinding::MissingMetadata { scope } => format!(
                "run `meshseal rekey {}` to add it; without it moved or stale files cannot be detected without a key",
                scope_flag(scope).trim_end()
            ),
            HeaderFinding::Stale { scope, .. } => {
                format!("run `meshseal rekey {}`", scope_flag(scope).trim_end())
            }
        })
    }
}

/// What to check.
pub struct CheckOptions<'a> {
    /// Decrypt and validate documents too.
    pub identities: Option<&'a Identities>,
    /// Only report problems about these paths (relative to the root); empty
    /// means the whole store.
    pub only: Vec<PathBuf>,
    /// Warn about a referenced certificate that expires within this long
    /// (with identities; an expired one is always warned about).
    pub expiry_warning: Duration,
}

impl Default for CheckOptions<'_> {
    fn default() -> Self {
        CheckOptions {
            identities: None,
            only: Vec::new(),
            expiry_warning: DEFAULT_EXPIRY_WARNING,
        }
    }
}

/// What `check` could say about signatures (SPEC 9).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Signatures {
    /// Verified against a trust root.
    Verified,
    /// The store has signatures, but there is no trust root to verify them.
    NotVerified,
    /// The store has no signature at all, and there is no trust root.
    #[default]
    Unsigned,
}

/// The outcome: problems and warnings, sorted by file, and how many
/// secrets were seen.
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// What is worth saying but does not fail the check (certificates near
    /// expiry).
    pub warnings: Vec<Problem>,
    /// Whether signatures were verified.
    pub signatures: Signatures,
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
    /// The bytes of the file at `rel`, `None` when there is none (a
    /// signature, a scope file).
    fn read_optional(&self, rel: &Path, limit: usize) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether the files are the staged ones (then rollbacks are judged
    /// against the history of `HEAD`, which does not hold them yet).
    fn is_staged(&self) -> bool {
        false
    }
    /// What the history of `HEAD` (in the repository holding `root`) holds
    /// of the files below `pathspecs` ([`history::from_git`]).
    fn history(
        &self,
        root: &Path,
        pathspecs: &[PathBuf],
    ) -> Result<BTreeMap<PathBuf, Seen>, crate::git::GitError> {
        history::from_git(root, pathspecs)
    }
}

impl Source for Store {
    fn entries(&self) -> Result<Vec<Entry>, Problem> {
        Ok(self.scan()?)
    }
    fn read(&self, entry: &Entry, limit: usize) -> Result<Vec<u8>, StoreError> {
        self.read_file(&entry.rel, limit)
    }
    fn has_secret(&self, id: &SecretId) -> bool {
        self.exists(id)
    }
    fn read_optional(&self, rel: &Path, limit: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.read_file(rel, limit) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
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
                            report
                                .problems
                                .push(Problem::at(&entry.rel, &RecipientError::Empty));
                        }
                        Some(set)
                    }
                    Err(e) => {
                        report.problems.push(e.into());
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
            report
                .problems
                .push(Problem::from(RecipientsError::Missing {
                    file: scope.recipients_path(),
                    scope: scope.clone(),
                }));
        }
    }

    let signed = signatures(store, source, &entries, &mut report);
    let secrets: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e.what, StorePath::Secret(_)) && e.kind == FileKind::Regular)
        .collect();
    report.secrets = secrets.len();
    let results: Vec<Checked> = secrets
        .par_iter()
        .map(|entry| {
            let mut checked = check_secret(store, source, entry, &recipients, options.identities);
            if let Some(signed) = &signed {
                checked
                    .problems
                    .extend(signed.judge_secret(store, source, entry));
            }
            checked
        })
        .collect();
    let mut certificates = BTreeMap::new();
    for checked in results {
        report.problems.extend(checked.problems);
        report.decrypted += usize::from(checked.decrypted);
        if let Some((id, found)) = checked.certificates {
            certificates.insert(id, found);
        }
    }
    let mut policies = Vec::new();
    for entry in &entries {
        report
            .problems
            .extend(layout::judge(entry, store.root()).map(|e| Problem::at(&entry.rel, &e)));
        if entry.kind == FileKind::Regular {
            let (problems, parsed) = check_policy(store, source, entry, options.identities);
            report.problems.extend(problems);
            policies.extend(parsed);
        }
    }
    // A resource defined in two files: once, on the later file.
    report.problems.extend(
        crate::policy::duplicates(&policies)
            .iter()
            .map(|d| Problem::from(d.error())),
    );
    report.warnings = expiry::judge(
        &policies,
        &certificates,
        options.expiry_warning,
        crate::certs::unix_now(),
    );

    if !options.only.is_empty() {
        let wanted = |p: &Problem| {
            p.file
                .as_ref()
                .is_some_and(|f| options.only.iter().any(|o| f.starts_with(o)))
        };
        report.problems.retain(wanted);
        report.warnings.retain(wanted);
    }
    report
        .problems
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    expiry::sort(&mut report.warnings);
    report
}

fn read_recipients(source: &dyn Source, entry: &Entry) -> Result<RecipientSet, RecipientsError> {
    let file = entry.rel.clone();
    let text = source
        .read(entry, MAX_TEXT_FILE_BYTES)
        .and_then(text_from_bytes)
        .map_err(|source| RecipientsError::Read {
            file: file.clone(),
            source,
        })?;
    RecipientSet::parse(&text).map_err(|source| RecipientsError::Invalid { file, source })
}

/// A policy file's resources: their syntax and their secret references
/// (by path, so no key is needed), every problem of every document; and
/// the resources that parsed.
fn check_policy(
    store: &Store,
    source: &dyn Source,
    entry: &Entry,
    identities: Option<&Identities>,
) -> (Vec<Problem>, Vec<Policy>) {
    let mesh = match &entry.what {
        StorePath::Mesh(mesh) | StorePath::Policy { mesh, .. } => mesh,
        _ => return (Vec::new(), Vec::new()),
    };
    let mut problems = Vec::new();
    if let StorePath::Mesh(_) = &entry.what {
        // mesh.yaml and mesh.toml both: reported once, on the second.
        let [yaml, toml] = crate::policy::mesh_files(mesh);
        if entry.rel == toml {
            let other = Entry {
                what: entry.what.clone(),
                rel: yaml,
                kind: FileKind::Regular,
            };
            if source.read(&other, MAX_TEXT_FILE_BYTES).is_ok() {
                problems.push(Problem::at(
                    &entry.rel,
                    &PolicyError::TwoMeshFiles { mesh: mesh.clone() },
                ));
            }
        }
    }
    let text = match source
        .read(entry, MAX_TEXT_FILE_BYTES)
        .and_then(text_from_bytes)
    {
        Ok(t) => t,
        Err(e) => return (vec![Problem::at(&entry.rel, &e)], Vec::new()),
    };
    let policies = match Policy::parse_file(&entry.rel, &text) {
        None => return (problems, Vec::new()),
        Some(Ok(p)) => p,
        Some(Err(errors)) => {
            problems.extend(errors.iter().map(|e| Problem::at(&entry.rel, e)));
            return (problems, Vec::new());
        }
    };
    let read = |id: &SecretId| {
        let rel = id.path();
        let e = Entry {
            what: StorePath::classify(&rel),
            rel,
            kind: FileKind::Regular,
        };
        source.read(&e, store.config().max_file_bytes()).ok()
    };
    // With a key, a referenced file that is there but does not open is
    // "cannot decrypt", not "missing".
    let presence = |id: &SecretId| match (source.has_secret(id), identities) {
        (false, _) => Presence::Absent,
        (true, None) => Presence::Present,
        (true, Some(identities)) => match read(id) {
            Some(bytes) if store.open_bytes(id, &bytes, identities).is_err() => {
                Presence::Undecryptable
            }
            _ => Presence::Present,
        },
    };
    let several = policies.len() > 1;
    for policy in &policies {
        problems.extend(policy.resolve_with(&presence).into_iter().map(|e| {
            // In a file of several resources, say which one.
            let e = if several {
                PolicyError::InDocument {
                    index: policy.document,
                    source: Box::new(e),
                }
            } else {
                e
            };
            Problem::at(&entry.rel, &e)
        }));
        if let Some(identities) = identities {
            problems.extend(crate::ca::check_provided(store, policy, identities, &read));
        }
    }
    (problems, policies)
}

/// What signatures are judged by: the verifier and what the history holds.
struct Signed {
    verifier: Verifier,
    seen: BTreeMap<PathBuf, Seen>,
}

impl Signed {
    /// A secret's signature, binding and generation.
    fn judge_secret(&self, store: &Store, source: &dyn Source, entry: &Entry) -> Option<Problem> {
        let StorePath::Secret(id) = &entry.what else {
            return None;
        };
        let limit = store.config().max_file_bytes();
        let bytes = source.read(entry, limit).ok()?;
        let sig = match source.read_optional(&id.sig_path(), MAX_SIGNATURE_BYTES) {
            Ok(sig) => sig,
            Err(e) => return Some(Problem::at(id.sig_path(), &e)),
        };
        let verdict = match self.verifier.secret(id, &bytes, sig.as_deref()) {
            Ok(v) => v,
            Err(e) => return Some(Problem::at(&entry.rel, &e)),
        };
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        let seen = self.seen.get(&entry.rel)?;
        seen.judge(verdict.generation, &sha)
            .err()
            .map(|e| Problem::at(&entry.rel, &e))
    }
}

/// Signature bookkeeping of a check: orphan signatures, and with a trust
/// root the verdict on every scope file (reported once, on the file) and
/// the history that rollbacks are judged against.
fn signatures(
    store: &Store,
    source: &dyn Source,
    entries: &[Entry],
    report: &mut Report,
) -> Option<Signed> {
    let present: BTreeSet<&Path> = entries.iter().map(|e| e.rel.as_path()).collect();
    let mut has_signatures = false;
    let mut scopes = BTreeSet::new();
    for entry in entries {
        let covered = match &entry.what {
            StorePath::SecretSig(id) => Some(id.path()),
            StorePath::ScopeSig(scope, kind) => Some(scope.file_path(*kind)),
            _ => None,
        };
        match &entry.what {
            StorePath::Secret(id) | StorePath::SecretSig(id) => {
                scopes.insert(id.scope.clone());
            }
            StorePath::Recipients(scope)
            | StorePath::Writers(scope)
            | StorePath::ScopeSig(scope, _) => {
                scopes.insert(scope.clone());
            }
            _ => {}
        }
        if matches!(entry.what, StorePath::Writers(_)) {
            has_signatures = true;
        }
        if let Some(covered) = covered {
            has_signatures = true;
            // A staged signature's file may be unchanged, so not staged:
            // ask the source rather than the list.
            let there = present.contains(covered.as_path())
                || source
                    .read_optional(&covered, store.config().max_file_bytes())
                    .is_ok_and(|b| b.is_some());
            if !there {
                report.problems.push(Problem::at(
                    &entry.rel,
                    &SignatureFinding::Orphan { file: covered },
                ));
            }
        }
    }
    let Some(mut verifier) = store.verifier() else {
        report.signatures = if has_signatures {
            Signatures::NotVerified
        } else {
            Signatures::Unsigned
        };
        return None;
    };
    report.signatures = Signatures::Verified;
    let read = |rel: &Path| source.read_optional(rel, MAX_TEXT_FILE_BYTES);
    for scope in &scopes {
        verifier.load_scope(scope, &read);
    }
    for (file, refusal) in verifier.scope_refusals() {
        report.problems.push(Problem::at(&file, &refusal));
    }
    // Rollbacks: against every version the history of HEAD holds.
    let files: Vec<PathBuf> = entries
        .iter()
        .filter(|e| history::has_generation(&e.what))
        .map(|e| e.rel.clone())
        .collect();
    let pathspecs = if source.is_staged() || files.len() <= 64 {
        files.clone()
    } else {
        vec![PathBuf::from("meshes"), PathBuf::from("global")]
    };
    let seen = match source.history(store.root(), &pathspecs) {
        Ok(seen) => seen,
        Err(e) => {
            report.problems.push(Problem::from(e));
            BTreeMap::new()
        }
    };
    for entry in entries {
        // A file that does not verify is reported as such; only a signed
        // one can be a rollback.
        let trusted = match &entry.what {
            StorePath::Recipients(scope) => {
                verifier.scope_file_trusted(scope, ScopeFile::Recipients)
            }
            StorePath::Writers(scope) => verifier.scope_file_trusted(scope, ScopeFile::Writers),
            _ => false,
        };
        if !trusted {
            continue;
        }
        let (Some(seen), Ok(bytes)) = (
            seen.get(&entry.rel),
            source.read(entry, MAX_TEXT_FILE_BYTES),
        ) else {
            continue;
        };
        let generation = history::generation_of_file(&entry.rel, &bytes);
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        if let Err(e) = seen.judge(generation, &sha) {
            report.problems.push(Problem::at(&entry.rel, &e));
        }
    }
    Some(Signed { verifier, seen })
}

/// What is wrong with a signature file by itself.
#[derive(Debug, Error)]
pub enum SignatureFinding {
    /// A `.sig` whose file is not there.
    #[error("signature without its file ({} is missing)", .file.display())]
    Orphan {
        /// The file it would cover.
        file: PathBuf,
    },
}

impl Diagnostic for SignatureFinding {
    fn code(&self) -> &'static str {
        "orphan-signature"
    }

    fn hint(&self) -> Option<String> {
        Some("delete the .sig, or restore the file it signs".to_string())
    }
}

/// What checking one secret found.
#[derive(Default)]
struct Checked {
    problems: Vec<Problem>,
    /// Whether it was decrypted.
    decrypted: bool,
    /// Its certificates, when it was decrypted and holds some.
    certificates: Option<(SecretId, Vec<crate::certs::Certificate>)>,
}

/// Keyless checks of one secret, then decryption when identities are given.
fn check_secret(
    store: &Store,
    source: &dyn Source,
    entry: &Entry,
    recipients: &BTreeMap<Scope, Option<RecipientSet>>,
    identities: Option<&Identities>,
) -> Checked {
    let StorePath::Secret(id) = &entry.what else {
        return Checked::default();
    };
    let rel = &entry.rel;
    let mut problems = Vec::new();
    let failed = |e: &dyn Diagnostic| Checked {
        problems: vec![Problem::at(rel, e)],
        ..Checked::default()
    };
    let bytes = match source.read(entry, store.config().max_file_bytes()) {
        Ok(b) => b,
        Err(e) => return failed(&e),
    };
    let header = match envelope::read_header(&bytes) {
        Ok(h) => h,
        Err(e) => return failed(&e),
    };
    let scope = || id.scope.clone();
    if envelope::sniff(&bytes) == Sniff::Binary {
        problems.push(Problem::at(
            rel,
            &HeaderFinding::NotArmored { scope: scope() },
        ));
    }
    let mut moved = false;
    match &header.metadata {
        None => problems.push(Problem::at(
            rel,
            &HeaderFinding::MissingMetadata { scope: scope() },
        )),
        Some(meta) => {
            if let Err(e) = Moved::check(&meta.id, id) {
                moved = true;
                problems.push(Problem::at(rel, &e));
            } else if let Some(Some(set)) = recipients.get(&id.scope) {
                if meta.recipients_fingerprint != set.fingerprint() {
                    problems.push(Problem::at(
                        rel,
                        &HeaderFinding::Stale {
                            scope: scope(),
                            header: meta.recipients_fingerprint.clone(),
                            current: set.fingerprint(),
                        },
                    ));
                }
            }
        }
    }
    let mut decrypted = false;
    let mut certificates = None;
    if let Some(identities) = identities {
        match store.open_bytes(id, &bytes, identities) {
            Ok(opened) => {
                decrypted = true;
                let found = crate::certs::certificates(opened.doc.data.expose());
                if !found.is_empty() {
                    certificates = Some((id.clone(), found));
                }
            }
            // A moved file fails binding too; say it once.
            Err(e) if moved && e.is_moved() => {}
            Err(e) => problems.push(e.into()),
        }
    }
    Checked {
        problems,
        decrypted,
        certificates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Document, SecretData};
    use std::fs;

    fn store_with(names: &[&str]) -> (tempfile::TempDir, Store, Identities) {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = crate::identity::generate();
        let ids = Identities::from_age_text(&secret).unwrap();
        fs::create_dir_all(dir.path().join("meshes/m")).unwrap();
        fs::write(
            dir.path().join("meshes/m/recipients.txt"),
            format!("{public}\n"),
        )
        .unwrap();
        let store = Store::open(dir.path()).unwrap();
        for name in names {
            let id = SecretId::new(Scope::mesh("m").unwrap(), name).unwrap();
            store
                .put(&Document::new(id, SecretData::new(b"v".to_vec())), None)
                .unwrap();
        }
        (dir, store, ids)
    }

    fn codes(report: &Report) -> Vec<&'static str> {
        report.problems.iter().map(|p| p.code).collect()
    }

    #[test]
    fn a_clean_store_has_no_problem() {
        let (_dir, store, ids) = store_with(&["a", "b"]);
        let report = check(
            &store,
            &CheckOptions {
                identities: Some(&ids),
                ..CheckOptions::default()
            },
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.secrets, report.decrypted), (2, 2));
    }

    #[test]
    fn a_moved_file_is_reported_once_with_or_without_a_key() {
        let (dir, store, ids) = store_with(&["a"]);
        fs::copy(
            dir.path().join("meshes/m/secrets/a.age"),
            dir.path().join("meshes/m/secrets/b.age"),
        )
        .unwrap();
        for identities in [None, Some(&ids)] {
            let report = check(
                &store,
                &CheckOptions {
                    identities,
                    ..CheckOptions::default()
                },
            );
            assert_eq!(
                codes(&report),
                vec!["scope-mismatch"],
                "{:?}",
                report.problems
            );
        }
    }

    #[test]
    fn a_new_recipient_makes_every_file_stale() {
        let (dir, store, _) = store_with(&["a", "b"]);
        let (_, other) = crate::identity::generate();
        let path = dir.path().join("meshes/m/recipients.txt");
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&format!("{other}\n"));
        fs::write(&path, text).unwrap();
        let report = check(&store, &CheckOptions::default());
        assert_eq!(codes(&report), vec!["stale", "stale"]);
        assert_eq!(
            report.problems[0].hint.as_deref(),
            Some("run `meshseal rekey -m m`")
        );
    }

    #[test]
    fn plaintext_in_a_secrets_folder_and_stray_files_are_reported() {
        let (dir, store, _) = store_with(&["a"]);
        fs::write(dir.path().join("meshes/m/secrets/leak.txt"), "hunter2").unwrap();
        fs::write(dir.path().join("meshes/m/notes.md"), "x").unwrap();
        let report = check(&store, &CheckOptions::default());
        assert_eq!(codes(&report), vec!["unexpected-file", "not-age-file"]);
    }

    #[test]
    fn only_restricts_the_report_to_the_given_paths() {
        let (dir, store, _) = store_with(&["a"]);
        fs::write(dir.path().join("meshes/m/secrets/leak.txt"), "x").unwrap();
        let report = check(
            &store,
            &CheckOptions {
                only: vec![PathBuf::from("global")],
                ..CheckOptions::default()
            },
        );
        assert!(report.problems.is_empty());
    }
}
