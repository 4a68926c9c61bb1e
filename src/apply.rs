//! `meshseal apply`: Kuma YAML in, secrets and resources written,
//! everything judged first.
//!
//! An apply is a [`Plan`]: the whole input is read and parsed (Kuma's rules,
//! one document per secret or resource), every scope it writes secrets to
//! must have recipients, every Mesh or policy resource must pass `check`'s
//! rules (its secret references resolving to secrets of the store or of the
//! same input) and have its place ([`policy::place`]), and every target path
//! must be writable, all before the first write. So a bad document, a
//! missing recipients file or a symlink in the way leaves the store exactly
//! as it was, and every problem is told at once. Only then are the secrets
//! written, as one batch ([`Store::put_many`]: encrypted and staged first,
//! then renamed into place, so a full disk before the first rename still
//! changes nothing), and then the resource files, as a second batch (so a
//! resource never names a secret that is not written yet). A dry run judges
//! the plan the same way and says what each write would do, writing nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;
use zeroize::Zeroizing;

use crate::atomic;
use crate::config::Config;
use crate::document::Document;
use crate::identity::Identities;
use crate::kuma::{self, At, ResourceError};
use crate::policy::{self, PlaceError, Placed, PolicyError, Presence, Resource};
use crate::problem::{Diagnostic, Problem};
use crate::scope::{Scope, SecretId};
use crate::store::{RecipientsError, Store, WriteError, WriteOutcome};

/// The largest input worth reading: four of the largest secret files, far
/// more than YAML needs for one secret of the largest size.
pub fn input_limit(config: &Config) -> usize {
    config.max_file_bytes().saturating_mul(4)
}

/// The input could not be read as YAML text.
#[derive(Debug, Error)]
pub enum InputError {
    /// Reading failed.
    #[error("{source}")]
    Read {
        /// The file, or `<stdin>`.
        input: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Larger than [`input_limit`].
    #[error("input is larger than any valid apply")]
    TooLarge {
        /// The file, or `<stdin>`.
        input: PathBuf,
    },
    /// Not UTF-8, so not YAML.
    #[error("input is not UTF-8 text")]
    NotUtf8 {
        /// The file, or `<stdin>`.
        input: PathBuf,
    },
}

impl Diagnostic for InputError {
    fn code(&self) -> &'static str {
        match self {
            InputError::Read { .. } => "io",
            InputError::TooLarge { .. } => "too-large",
            InputError::NotUtf8 { .. } => "invalid-yaml",
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            InputError::Read { input, .. }
            | InputError::TooLarge { input }
            | InputError::NotUtf8 { input } => Some(input),
        }
    }
}

/// The text of an apply's input (secret values in base64), zeroed on drop.
pub struct Input {
    bytes: Zeroizing<Vec<u8>>,
}

impl Input {
    /// Reads at most `limit` bytes of UTF-8 text from `reader`; `input` names
    /// it in errors (a file, or `<stdin>`).
    pub fn read(reader: impl Read, input: &Path, limit: usize) -> Result<Input, InputError> {
        let mut bytes = Zeroizing::new(Vec::new());
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| InputError::Read {
                input: input.to_path_buf(),
                source,
            })?;
        if bytes.len() > limit {
            return Err(InputError::TooLarge {
                input: input.to_path_buf(),
            });
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Err(InputError::NotUtf8 {
                input: input.to_path_buf(),
            });
        }
        Ok(Input { bytes })
    }

    /// The text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes).expect("checked when read")
    }
}

/// Why nothing was applied.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// Documents are invalid: every problem found, in input order.
    #[error("{} invalid document(s)", .0.len())]
    Invalid(Vec<ResourceError>),
    /// A scope the input writes to has no usable recipients.
    #[error(transparent)]
    Recipients(#[from] RecipientsError),
    /// Secrets whose paths cannot be written (a symlink in the way): every
    /// one of them.
    #[error("{} secret(s) cannot be written", .0.len())]
    Unwritable(Vec<WriteError>),
    /// Resources that have no place in the store (a shared file, a file of
    /// the mesh that does not parse...): every one of them.
    #[error("{} resource(s) cannot be placed", .0.len())]
    Unplaced(Vec<PlaceError>),
}

impl ApplyError {
    /// Every problem, as reports; `input` names the YAML (a file, or
    /// `<stdin>`), which invalid documents are about.
    pub fn problems(&self, input: &Path) -> Vec<Problem> {
        match self {
            ApplyError::Invalid(errors) => errors.iter().map(|e| Problem::at(input, e)).collect(),
            ApplyError::Recipients(e) => vec![Problem::report(e)],
            ApplyError::Unwritable(errors) => errors
                .iter()
                .map(|e| Problem::report(e as &dyn Diagnostic))
                .collect(),
            ApplyError::Unplaced(errors) => errors
                .iter()
                .map(|e| Problem::report(e as &dyn Diagnostic))
                .collect(),
        }
    }
}

/// Documents judged fit to write, in input order.
#[derive(Debug)]
pub struct Plan {
    docs: Vec<Document>,
    /// Each scope's recipient fingerprint when the plan was judged.
    fingerprints: BTreeMap<Scope, String>,
    /// The Mesh and policy resources, each placed, in input order.
    resources: Vec<Placed>,
}

/// What writing one document did, or would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The secret.
    pub id: SecretId,
    /// Created, updated or unchanged.
    pub outcome: WriteOutcome,
}

/// What writing one Mesh or policy resource did, or would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedResource {
    /// `Mesh pay`, `MeshGateway pay/edge`.
    pub what: String,
    /// Its file, relative to the store root.
    pub file: PathBuf,
    /// Created, updated or unchanged.
    pub outcome: WriteOutcome,
}

/// What an apply did, or would do: the secrets, then the resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcomes {
    /// The secrets, in input order.
    pub secrets: Vec<Applied>,
    /// The resources, in input order.
    pub resources: Vec<AppliedResource>,
}

/// Judges the resources of an apply beyond their own schema: their mesh
/// exists (a folder in the store, or a Mesh of the same input), and every
/// secret they name is a Secret of their mesh, in the store or in the same
/// input (a builtin CA's secrets are `mtls init`'s to make, not a reason to
/// refuse). Every problem, in input order.
fn judge_resources(
    store: &Store,
    secrets: &[Document],
    resources: &[(At, Resource)],
) -> Vec<ResourceError> {
    let given: BTreeSet<&SecretId> = secrets.iter().map(|d| &d.id).collect();
    let new_meshes: BTreeSet<&str> = resources
        .iter()
        .filter(|(_, r)| r.policy.kind == policy::PolicyKind::Mesh)
        .map(|(_, r)| r.policy.mesh.as_str())
        .collect();
    let presence = |id: &SecretId| {
        if given.contains(id) || store.exists(id) {
            Presence::Present
        } else {
            Presence::Absent
        }
    };
    let mut errors = Vec::new();
    for (at, r) in resources {
        let mesh = r.policy.mesh.as_str();
        if !new_meshes.contains(mesh) && !store.root().join("meshes").join(mesh).is_dir() {
            errors.push(ResourceError::MeshNotFound {
                at: *at,
                mesh: mesh.to_string(),
            });
            continue;
        }
        errors.extend(
            r.policy
                .resolve_with(&presence)
                .into_iter()
                .filter(|e| !matches!(e, PolicyError::BuiltinMissing { .. }))
                .map(|error| ResourceError::Resource { at: *at, error }),
        );
    }
    errors
}

impl Plan {
    /// Parses `text` (Secrets, GlobalSecrets, Meshes and other Kuma
    /// resources, Universal or Kubernetes YAML) and judges it against
    /// `store`: recipients for every scope, resources valid and placed,
    /// writable targets. Writes nothing.
    pub fn new(store: &Store, text: &str) -> Result<Plan, ApplyError> {
        let (parsed, mut invalid) =
            kuma::parse_input_partly(text, store.config().limits.max_data_bytes);
        let docs = parsed.secrets;
        invalid.extend(judge_resources(store, &docs, &parsed.resources));
        if !invalid.is_empty() {
            // In input order; a syntax error, which ends the stream, last.
            invalid.sort_by_key(|e| e.at().map_or((usize::MAX, None), |a| (a.document, a.item)));
            return Err(ApplyError::Invalid(invalid));
        }
        let scopes: BTreeSet<&Scope> = docs.iter().map(|d| &d.id.scope).collect();
        let mut fingerprints = BTreeMap::new();
        for scope in scopes {
            let recipients = store.recipients(scope)?;
            recipients
                .require_some()
                .map_err(|source| RecipientsError::Invalid {
                    file: scope.recipients_path(),
                    source,
                })?;
            fingerprints.insert(scope.clone(), recipients.fingerprint());
        }
        // Each folder on the way looked at once for the whole input.
        let mut targets = store.targets();
        let unwritable: Vec<WriteError> = docs
            .iter()
            .filter_map(|d| targets.check(&d.id.path()).err())
            .collect();
        if !unwritable.is_empty() {
            return Err(ApplyError::Unwritable(unwritable));
        }
        let resources = parsed.resources.into_iter().map(|(_, r)| r).collect();
        let resources = policy::place(store, resources).map_err(ApplyError::Unplaced)?;
        Ok(Plan {
            docs,
            fingerprints,
            resources,
        })
    }

    /// The Mesh and policy resources, placed, in input order.
    pub fn resources(&self) -> &[Placed] {
        &self.resources
    }

    /// Writes everything: the secrets as [`Plan::write`] does, then every
    /// resource file that changes, as one batch ([`atomic::write_batch`]).
    pub fn write_all(
        &self,
        store: &Store,
        identities: Option<&Identities>,
    ) -> Result<Outcomes, WriteError> {
        let secrets = self.write(store, identities)?;
        let items: Vec<(PathBuf, &[u8])> = self
            .resources
            .iter()
            .filter_map(|p| {
                Some((
                    store.root().join(p.resource.file()),
                    p.text.as_ref()?.as_bytes(),
                ))
            })
            .collect();
        atomic::write_batch(&items, policy::RESOURCE_FILE_MODE).map_err(|e| {
            let written = secrets
                .iter()
                .filter(|a| a.outcome != WriteOutcome::Unchanged)
                .count();
            WriteError::Batch {
                file: e
                    .path
                    .strip_prefix(store.root())
                    .unwrap_or(&e.path)
                    .to_path_buf(),
                renamed: written + e.renamed,
                source: e.source,
            }
        })?;
        Ok(Outcomes {
            secrets,
            resources: self.resource_outcomes(),
        })
    }

    /// What [`Plan::write_all`] would do, writing nothing (see
    /// [`Plan::preview`] for the secrets).
    pub fn preview_all(&self, store: &Store, identities: Option<&Identities>) -> Outcomes {
        Outcomes {
            secrets: self.preview(store, identities),
            resources: self.resource_outcomes(),
        }
    }

    /// The meshes whose applied Mesh has a builtin CA backend without its
    /// CA secrets (in the store or this apply): Kuma makes them when it
    /// creates the Mesh, here `mtls init` does.
    pub fn meshes_needing_mtls_init(&self, store: &Store) -> Vec<String> {
        let given: BTreeSet<&SecretId> = self.docs.iter().map(|d| &d.id).collect();
        let mut meshes: Vec<String> = self
            .resources
            .iter()
            .map(|p| &p.resource.policy)
            .filter(|policy| {
                policy.builtin_cas().any(|ca| {
                    [ca.cert, ca.key].into_iter().any(|name| {
                        let id = SecretId {
                            scope: Scope::Mesh(policy.mesh.clone()),
                            name,
                        };
                        !given.contains(&id) && !store.exists(&id)
                    })
                })
            })
            .map(|policy| policy.mesh.clone())
            .collect();
        meshes.dedup();
        meshes
    }

    fn resource_outcomes(&self) -> Vec<AppliedResource> {
        self.resources
            .iter()
            .map(|p| AppliedResource {
                what: p.resource.describe(),
                file: p.resource.file().to_path_buf(),
                outcome: p.outcome,
            })
            .collect()
    }

    /// The documents, in input order.
    pub fn documents(&self) -> &[Document] {
        &self.docs
    }

    /// Writes every document as one batch ([`Store::put_many`]: one flush
    /// of the file system, nothing replaced when anything fails before the
    /// first rename), in input order. With identities, a document equal to
    /// what its file holds leaves the file untouched.
    pub fn write(
        &self,
        store: &Store,
        identities: Option<&Identities>,
    ) -> Result<Vec<Applied>, WriteError> {
        let outcomes = store.put_many(&self.docs, identities)?;
        Ok(self
            .docs
            .iter()
            .zip(outcomes)
            .map(|(doc, outcome)| Applied {
                id: doc.id.clone(),
                outcome,
            })
            .collect())
    }

    /// What [`Plan::write`] would do, writing nothing. Without identities an
    /// existing file cannot be compared, and counts as updated (as a write
    /// without identities would rewrite it).
    pub fn preview(&self, store: &Store, identities: Option<&Identities>) -> Vec<Applied> {
        self.docs
            .iter()
            .map(|doc| Applied {
                id: doc.id.clone(),
                outcome: store.outcome_of(doc, &self.fingerprints[&doc.id.scope], identities),
            })
            .collect()
    }
}

#[cfg(test)]
mod resource_tests;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::document::SecretData;
    use crate::recipients::Recipient;

    fn store() -> (tempfile::TempDir, Store, Identities) {
        let dir = tempfile::tempdir().unwrap();
        let (text, public) = crate::identity::generate();
        let ids = Identities::from_age_text(&text).unwrap();
        let recipient: Recipient = public.parse().unwrap();
        let (store, _) = crate::init::init(dir.path(), &[recipient]).unwrap();
        (dir, store, ids)
    }

    fn yaml(name: &str, value: &str) -> String {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(value);
        format!("type: Secret\nmesh: default\nname: {name}\ndata: {data}\n---\n")
    }

    #[test]
    fn one_bad_document_writes_nothing_and_every_problem_is_told() {
        let (_dir, store, _) = store();
        let text = format!(
            "{}type: Secret\nmesh: default\nname: Bad\ndata: eA==\n---\n{}type: Mesh\n",
            yaml("a", "1"),
            yaml("b", "2")
        );
        let Err(ApplyError::Invalid(errors)) = Plan::new(&store, &text) else {
            panic!("invalid documents must refuse the plan");
        };
        assert_eq!(errors.len(), 2, "{errors:?}");
        let problems = ApplyError::Invalid(errors).problems(Path::new("<stdin>"));
        assert!(problems
            .iter()
            .all(|p| p.file.as_deref() == Some(Path::new("<stdin>"))));
        assert!(store.secret_ids(None).unwrap().is_empty());
    }

    #[test]
    fn a_scope_without_recipients_refuses_the_plan() {
        let (_dir, store, _) = store();
        let text = yaml("a", "1").replace("mesh: default", "mesh: web");
        let err = Plan::new(&store, &text).unwrap_err();
        assert!(matches!(
            err,
            ApplyError::Recipients(RecipientsError::Missing { .. })
        ));
    }

    #[test]
    fn preview_tells_what_write_then_does() {
        let (_dir, store, ids) = store();
        let id = SecretId::new(Scope::Mesh("default".into()), "same").unwrap();
        store
            .put(&Document::new(id, SecretData::new(b"1".to_vec())), None)
            .unwrap();
        let text = format!(
            "{}{}",
            yaml("same", "1"),
            yaml("new", "2") + &yaml("changed", "3")
        );
        let id = SecretId::new(Scope::Mesh("default".into()), "changed").unwrap();
        store
            .put(&Document::new(id, SecretData::new(b"old".to_vec())), None)
            .unwrap();
        let plan = Plan::new(&store, &text).unwrap();
        let outcomes = |applied: Vec<Applied>| -> Vec<(String, WriteOutcome)> {
            applied
                .into_iter()
                .map(|a| (a.id.name, a.outcome))
                .collect()
        };
        let before = crate::store::short_sha(&store.inspect(&plan.docs[0].id).unwrap().1);
        let preview = outcomes(plan.preview(&store, Some(&ids)));
        assert!(!store.exists(&plan.docs[1].id), "a dry run writes nothing");
        assert_eq!(
            preview,
            vec![
                ("same".to_string(), WriteOutcome::Unchanged),
                ("new".to_string(), WriteOutcome::Created),
                ("changed".to_string(), WriteOutcome::Updated),
            ]
        );
        assert_eq!(outcomes(plan.write(&store, Some(&ids)).unwrap()), preview);
        let after = crate::store::short_sha(&store.inspect(&plan.docs[0].id).unwrap().1);
        assert_eq!(before, after, "an unchanged secret is not rewritten");
    }

    #[test]
    fn input_is_bounded_and_must_be_text() {
        let input = Path::new("<stdin>");
        assert!(matches!(
            Input::read(&b"12345"[..], input, 4),
            Err(InputError::TooLarge { .. })
        ));
        assert!(matches!(
            Input::read(&b"\xff\xfe"[..], input, 4),
            Err(InputError::NotUtf8 { .. })
        ));
        assert_eq!(Input::read(&b"1234"[..], input, 4).unwrap().text(), "1234");
    }
}
