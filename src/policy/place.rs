//! Where `apply -f` puts each resource (SPEC 8), decided before anything is
//! written:
//!
//! - a Mesh in its mesh's `mesh.yaml`, or the `mesh.toml` it already has;
//! - any other resource in the file that already defines it (same kind and
//!   name in its mesh), when that file holds nothing else; a file shared
//!   with other resources is not rewritten (their comments and layout would
//!   be lost): the apply is refused, naming it;
//! - a new resource in `policies/<name>.yaml`, or `policies/<kind>.<name>.yaml`
//!   when another file has that stem (names are unique per kind, not across
//!   kinds); a name too long for a file name is shortened with a hash.
//!
//! A resource equal to what its file holds (whatever the form or key order)
//! leaves the file untouched. An apply that would leave a resource it
//! applies defined in two files (because the store already has it twice)
//! is refused, naming both. A file is written in its own format: a TOML
//! file stays TOML (Universal shape), a YAML file takes the document as it
//! was given. Each new text is parsed back as `check` would read it before
//! it is accepted, so `apply` never writes a file `check` refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{
    duplicates, load_mesh_resources, mesh_files, Policy, PolicyError, PolicyFileError, PolicyKind,
    Resource,
};
use crate::problem::Diagnostic;
use crate::store::{Store, WriteOutcome};

/// Unix permissions of the plaintext resource files `apply` writes.
pub const RESOURCE_FILE_MODE: u32 = 0o644;

/// The longest file stem taken from a resource name as it is; longer names
/// are shortened (a Kuma name has up to 253 characters, a file name at most
/// 255 bytes, and `<kind>.<name>.yaml` must fit too).
const MAX_STEM: usize = 160;

/// The file stem of a resource named `name`: the name, or for a long one
/// its start and a hash of the whole.
pub(super) fn file_stem(name: &str) -> String {
    if name.len() <= MAX_STEM {
        return name.to_string();
    }
    let mut cut = MAX_STEM - 17;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = Sha256::digest(name.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &name[..cut])
}

/// A resource placed: its file (`resource.policy.file`), what writing it
/// does, and the file's new text (`None` when unchanged).
#[derive(Debug)]
pub struct Placed {
    /// The resource, at its file.
    pub resource: Resource,
    /// Created, updated or unchanged.
    pub outcome: WriteOutcome,
    /// The file's new text, unless unchanged.
    pub text: Option<String>,
}

/// Why a resource cannot be placed.
#[derive(Debug, Error)]
pub enum PlaceError {
    /// The resource lives in a file with other resources.
    #[error("{what} is defined in {} (document {document}) with other resources; apply rewrites a file only when the resource is alone in it", .file.display())]
    SharedFile {
        /// `MeshGateway pay/edge`.
        what: String,
        /// That file.
        file: PathBuf,
        /// Its document there.
        document: usize,
    },
    /// Every file name apply would use is taken.
    #[error("{what}: no free file name for it ({tried})")]
    NoFileName {
        /// `MeshGateway pay/edge`.
        what: String,
        /// The first name tried.
        file: PathBuf,
        /// The names tried.
        tried: String,
    },
    /// A policy file of the mesh does not parse, so apply cannot tell
    /// whether it already defines a resource.
    #[error("{source}")]
    Unreadable {
        /// The mesh.
        mesh: String,
        /// The file's problem.
        #[source]
        source: Box<PolicyFileError>,
    },
    /// The new text would not read back as the resource.
    #[error("{what}: cannot be written to this file: {message}")]
    Render {
        /// `MeshGateway pay/edge`.
        what: String,
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// A link or a folder is in the way.
    #[error(
        "{what}: a symbolic link or a non-file is in the way; apply does not write through it"
    )]
    Unwritable {
        /// `MeshGateway pay/edge`.
        what: String,
        /// The file.
        file: PathBuf,
    },
    /// After the apply, a resource it applies would be defined in two files.
    #[error("{source}; apply would leave both")]
    Duplicate {
        /// Kuma's error, about the later file.
        #[source]
        source: Box<PolicyFileError>,
    },
}

impl Diagnostic for PlaceError {
    fn code(&self) -> &'static str {
        match self {
            PlaceError::SharedFile { .. } | PlaceError::NoFileName { .. } => "cannot-place",
            PlaceError::Unreadable { source, .. } | PlaceError::Duplicate { source } => {
                source.code()
            }
            PlaceError::Render { .. } => "invalid-policy",
            PlaceError::Unwritable { .. } => "symlink",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            PlaceError::SharedFile { .. } => Some(
                "edit that file, or move the resource into a file of its own and apply again"
                    .to_string(),
            ),
            PlaceError::NoFileName { .. } => {
                Some("rename or move the files that take those names".to_string())
            }
            PlaceError::Unreadable { mesh, .. } => Some(format!(
                "apply must read every resource of mesh {mesh:?} to place one: fix or remove this file first"
            )),
            PlaceError::Duplicate { .. } => Some(
                "a name is unique per kind and mesh: remove one of the two definitions, then apply again"
                    .to_string(),
            ),
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            PlaceError::Unreadable { source, .. } => source.line(),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            PlaceError::SharedFile { file, .. }
            | PlaceError::NoFileName { file, .. }
            | PlaceError::Render { file, .. }
            | PlaceError::Unwritable { file, .. } => Some(file),
            PlaceError::Unreadable { source, .. } | PlaceError::Duplicate { source } => {
                source.file()
            }
        }
    }
}

/// The resources of one mesh as the work tree has them.
struct Existing {
    /// The Mesh file's resource, or its problem; `None`: no Mesh file.
    mesh: Option<Result<Resource, PolicyFileError>>,
    /// The resources of `policies/`.
    resources: Vec<Resource>,
    /// How many resources each file of `policies/` holds.
    per_file: BTreeMap<PathBuf, usize>,
    /// The policy files that do not parse.
    broken: Vec<PolicyFileError>,
    /// Whether a file does not parse (`broken` is emptied once reported).
    blocked: bool,
}

impl Existing {
    fn load(store: &Store, mesh: &str) -> Existing {
        let mesh_paths = mesh_files(mesh);
        let mut e = Existing {
            mesh: None,
            resources: Vec::new(),
            per_file: BTreeMap::new(),
            broken: Vec::new(),
            blocked: false,
        };
        for r in load_mesh_resources(store, mesh) {
            let in_mesh_file = match &r {
                Ok(res) => mesh_paths.iter().any(|p| p == res.file()),
                Err(err) => err
                    .file()
                    .is_some_and(|f| mesh_paths.iter().any(|p| p == f)),
            };
            match r {
                _ if in_mesh_file => e.mesh = Some(r),
                Ok(res) => {
                    *e.per_file.entry(res.file().to_path_buf()).or_default() += 1;
                    e.resources.push(res);
                }
                Err(err) => e.broken.push(err),
            }
        }
        e.blocked = !e.broken.is_empty();
        e
    }
}

/// Places every resource (see the module's text): each one's file, outcome
/// and new text, or every problem.
pub fn place(store: &Store, resources: Vec<Resource>) -> Result<Vec<Placed>, Vec<PlaceError>> {
    let mut meshes: BTreeMap<String, Existing> = BTreeMap::new();
    let mut claimed: BTreeSet<PathBuf> = BTreeSet::new();
    let mut placed = Vec::new();
    let mut errors = Vec::new();
    for r in resources {
        let existing = meshes
            .entry(r.policy.mesh.clone())
            .or_insert_with(|| Existing::load(store, &r.policy.mesh));
        match place_one(store, existing, &mut claimed, r) {
            Ok(p) => placed.push(p),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        errors = left_twice(&meshes, &placed);
    }
    if errors.is_empty() {
        Ok(placed)
    } else {
        Err(errors)
    }
}

fn place_one(
    store: &Store,
    existing: &mut Existing,
    claimed: &mut BTreeSet<PathBuf>,
    r: Resource,
) -> Result<Placed, Vec<PlaceError>> {
    let what = r.describe();
    let mesh = r.policy.mesh.clone();
    let dir = Path::new("meshes").join(&mesh);
    if r.policy.kind == PolicyKind::Mesh {
        let (file, outcome) = match &existing.mesh {
            None => (dir.join("mesh.yaml"), WriteOutcome::Created),
            Some(Ok(old)) if old.same_as(&r) => {
                let file = old.file().to_path_buf();
                return Ok(unchanged(r, file, 1));
            }
            Some(Ok(old)) => (old.file().to_path_buf(), WriteOutcome::Updated),
            // Both mesh.yaml and mesh.toml: which one to write is the user's
            // choice.
            Some(Err(PolicyFileError::Invalid {
                source: PolicyError::TwoMeshFiles { .. },
                ..
            })) => {
                let Some(Err(source)) = existing.mesh.take() else {
                    unreachable!("matched above")
                };
                return Err(vec![PlaceError::Unreadable {
                    mesh,
                    source: Box::new(source),
                }]);
            }
            // A Mesh file that does not parse is replaced: its path says it
            // holds this mesh's Mesh, whatever it says.
            Some(Err(e)) => (
                e.file()
                    .map(Path::to_path_buf)
                    .unwrap_or(dir.join("mesh.yaml")),
                WriteOutcome::Updated,
            ),
        };
        return written(store, r, file, outcome).map_err(|e| vec![e]);
    }
    if existing.blocked {
        // Reported once, with the first resource of the mesh.
        return Err(std::mem::take(&mut existing.broken)
            .into_iter()
            .map(|source| PlaceError::Unreadable {
                mesh: mesh.clone(),
                source: Box::new(source),
            })
            .collect());
    }
    let found = existing
        .resources
        .iter()
        .find(|old| old.policy.kind == r.policy.kind && old.policy.name == r.policy.name);
    if let Some(old) = found {
        let file = old.file().to_path_buf();
        if old.same_as(&r) {
            let document = old.policy.document;
            return Ok(unchanged(r, file, document));
        }
        if existing.per_file.get(&file).copied().unwrap_or(0) > 1 {
            return Err(vec![PlaceError::SharedFile {
                what,
                file,
                document: old.policy.document,
            }]);
        }
        return written(store, r, file, WriteOutcome::Updated).map_err(|e| vec![e]);
    }
    let stem = file_stem(&r.policy.name);
    let kind = r.policy.kind.as_str();
    let mut stems = vec![stem.clone()];
    if !kind.is_empty() && kind.len() <= 64 && kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
        stems.push(format!("{}.{stem}", kind.to_ascii_lowercase()));
    }
    let policies = dir.join("policies");
    let free = |stem: &str| {
        let taken = ["yaml", "yml", "toml"].iter().any(|x| {
            let p = policies.join(format!("{stem}.{x}"));
            claimed.contains(&p) || fs::symlink_metadata(store.root().join(&p)).is_ok()
        });
        !taken
    };
    match stems.iter().find(|s| free(s)) {
        Some(stem) => {
            let file = policies.join(format!("{stem}.yaml"));
            claimed.insert(file.clone());
            written(store, r, file, WriteOutcome::Created).map_err(|e| vec![e])
        }
        None => Err(vec![PlaceError::NoFileName {
            what,
            file: policies.join(format!("{stem}.yaml")),
            tried: stems
                .iter()
                .map(|s| format!("{s}.yaml"))
                .collect::<Vec<_>>()
                .join(", "),
        }]),
    }
}

/// The resources this apply places that the store would then define twice:
/// the files' resources after the writes (a rewritten file holds only its
/// placed resource), judged as `check` judges them.
fn left_twice(meshes: &BTreeMap<String, Existing>, placed: &[Placed]) -> Vec<PlaceError> {
    let written: Vec<&Policy> = placed
        .iter()
        .filter(|p| p.text.is_some())
        .map(|p| &p.resource.policy)
        .collect();
    let rewritten: BTreeSet<&Path> = written.iter().map(|p| p.file.as_path()).collect();
    let kept = meshes
        .values()
        .flat_map(|e| &e.resources)
        .map(|r| &r.policy)
        .filter(|p| !rewritten.contains(p.file.as_path()));
    let applied: BTreeSet<(&str, &PolicyKind, &str)> = placed
        .iter()
        .map(|p| &p.resource.policy)
        .map(|p| (p.mesh.as_str(), &p.kind, p.name.as_str()))
        .collect();
    duplicates(kept.chain(written))
        .iter()
        .filter(|d| {
            applied.contains(&(d.again.mesh.as_str(), &d.again.kind, d.again.name.as_str()))
        })
        .map(|d| PlaceError::Duplicate {
            source: Box::new(d.error()),
        })
        .collect()
}

fn unchanged(r: Resource, file: PathBuf, document: usize) -> Placed {
    Placed {
        resource: r.placed_at(file, document),
        outcome: WriteOutcome::Unchanged,
        text: None,
    }
}

/// The resource's new file text at `file`, read back as `check` reads it.
fn written(
    store: &Store,
    r: Resource,
    file: PathBuf,
    outcome: WriteOutcome,
) -> Result<Placed, PlaceError> {
    let what = r.describe();
    if store.ensure_no_symlinks(&file).is_err() {
        return Err(PlaceError::Unwritable { what, file });
    }
    let render_error = |message: String| PlaceError::Render {
        what: what.clone(),
        file: file.clone(),
        message,
    };
    let toml = file.extension().is_some_and(|x| x == "toml");
    let text = if toml {
        let value = without_nulls(&r.universal);
        toml::to_string(&value).map_err(|e| render_error(format!("as TOML: {e}")))?
    } else {
        serde_yaml_ng::to_string(&r.document).map_err(|e| render_error(e.to_string()))?
    };
    match Resource::parse_file(&file, &text) {
        Some(Ok(back)) if back.len() == 1 && back[0].same_as(&r) => {}
        Some(Err(errors)) => {
            let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(render_error(messages.join("; ")));
        }
        _ => {
            return Err(render_error(
                "it does not read back as the same resource".to_string(),
            ))
        }
    }
    Ok(Placed {
        resource: r.placed_at(file, 1),
        outcome,
        text: Some(text),
    })
}

/// TOML has no null: a null field is an absent one.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}
