//! A whole resource, as `apply` writes it and `export` prints it: its parse
//! ([`Policy`]: kind, mesh, name, secret references) beside its document.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::forms::{self, Form};
use super::parse::{field, header, kind_of, parse_document, Place};
use super::{Policy, PolicyError, PolicyFileError, PolicyKind};
use crate::scope::{validate_mesh, StorePath, DEFAULT_MESH};

/// One resource with its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// What meshseal judges of it; `policy.file` is where it is (or, given
    /// to `apply`, where it would go by default).
    pub policy: Policy,
    /// The document, in the form it was written or given, without the
    /// fields Kuma or Kubernetes fill in.
    pub document: Value,
    /// Its Universal form.
    pub universal: Value,
}

impl Resource {
    fn new(policy: Policy, doc: &Value) -> Result<Resource, PolicyError> {
        let document = forms::without_server_fields(doc);
        let universal = forms::to_universal(&document)?;
        Ok(Resource {
            policy,
            document,
            universal,
        })
    }

    /// A resource given to `apply` (document `index` of its input), judged
    /// as `check` judges it in its mesh's folder. Its mesh is the one it
    /// names (a Mesh's is its name; a Kubernetes resource without one is in
    /// `default`, as Kuma on Kubernetes puts it).
    pub fn from_input(doc: &Value, index: usize) -> Result<Resource, Vec<PolicyError>> {
        let h = header(doc).map_err(|e| vec![e])?;
        let kind = kind_of(h.kind);
        let (mesh, mesh_field) = if kind == PolicyKind::Mesh {
            (h.name, h.name_field)
        } else {
            match h.mesh {
                Some(m) => m,
                None if h.kubernetes => (DEFAULT_MESH, "metadata.labels[\"kuma.io/mesh\"]"),
                None => return Err(vec![field("mesh", "cannot be empty")]),
            }
        };
        if let Err(e) = validate_mesh(mesh) {
            return Err(vec![field(mesh_field, e.to_string())]);
        }
        let mesh_file = kind == PolicyKind::Mesh;
        let file = if mesh_file {
            Path::new("meshes").join(mesh).join("mesh.yaml")
        } else {
            Path::new("meshes")
                .join(mesh)
                .join("policies")
                .join(format!("{}.yaml", super::place::file_stem(h.name)))
        };
        let place = Place {
            mesh,
            mesh_file,
            toml: false,
        };
        let policy = parse_document(doc, place, &file, index)?;
        Resource::new(policy, doc).map_err(|e| vec![e])
    }

    /// Every resource of the policy file at `rel` with its document, as
    /// [`Policy::parse_file`] parses it; `None` when `rel` is not a policy
    /// file's path.
    pub fn parse_file(
        rel: &Path,
        text: &str,
    ) -> Option<Result<Vec<Resource>, Vec<PolicyFileError>>> {
        let (mesh, mesh_file) = match StorePath::classify(rel) {
            StorePath::Mesh(mesh) => (mesh, true),
            StorePath::Policy { mesh, .. } => (mesh, false),
            _ => return None,
        };
        let invalid = |source| PolicyFileError::Invalid {
            file: rel.to_path_buf(),
            source,
        };
        let parsed = Policy::parse_with_documents(rel, text, &mesh, mesh_file)
            .map_err(|errors| errors.into_iter().map(invalid).collect::<Vec<_>>());
        Some(parsed.and_then(|all| {
            all.into_iter()
                .map(|(policy, doc)| Resource::new(policy, &doc))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| vec![invalid(e)])
        }))
    }

    /// The form it is in.
    pub fn form(&self) -> Form {
        Form::of(&self.document)
    }

    /// Its Kubernetes form, a newer kind in `namespace`.
    pub fn to_kubernetes(&self, namespace: &str) -> Result<Value, PolicyError> {
        forms::to_kubernetes(&self.universal, namespace)
    }

    /// Whether it is the same resource as `other`, whatever their forms.
    pub fn same_as(&self, other: &Resource) -> bool {
        forms::same_resource(&self.universal, &other.universal)
    }

    /// `Mesh pay`, `MeshGateway pay/edge`: how meshseal names a resource in
    /// what it prints, as [`crate::kuma::describe`] names a secret.
    pub fn describe(&self) -> String {
        describe(&self.policy.kind, &self.policy.mesh, &self.policy.name)
    }

    /// Its file, relative to the store root.
    pub fn file(&self) -> &Path {
        &self.policy.file
    }

    /// Moves it to `file`, document `index` there.
    pub(super) fn placed_at(mut self, file: PathBuf, index: usize) -> Resource {
        self.policy.file = file;
        self.policy.document = index;
        self
    }
}

/// `Mesh pay` or `<Kind> <mesh>/<name>`.
pub fn describe(kind: &PolicyKind, mesh: &str, name: &str) -> String {
    match kind {
        PolicyKind::Mesh => format!("Mesh {name}"),
        other => format!("{} {mesh}/{name}", other.as_str()),
    }
}
