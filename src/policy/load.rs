//! A mesh's policy files in the work tree, read through the store's one text
//! reader ([`Store::read_text`]: confined, bounded, UTF-8), and who uses a
//! secret.

use std::path::{Path, PathBuf};

use super::{mesh_files, InUse, Policy, PolicyError, PolicyFileError, Reference, Resource};
use crate::scope::{Scope, SecretId};
use crate::store::Store;

/// How a policy file's text becomes its resources: [`Policy::parse_file`]
/// or [`Resource::parse_file`].
type Parser<T> = fn(&Path, &str) -> Option<Result<Vec<T>, Vec<PolicyFileError>>>;

/// Reads and parses one policy file of the work tree; `None` when it does
/// not exist.
fn read<T>(store: &Store, rel: &Path, parse: Parser<T>) -> Option<Vec<Result<T, PolicyFileError>>> {
    let text = match store.read_text(rel) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return None,
        Err(source) => {
            return Some(vec![Err(PolicyFileError::Read {
                file: rel.to_path_buf(),
                source,
            })])
        }
    };
    Some(match parse(rel, &text)? {
        Ok(policies) => policies.into_iter().map(Ok).collect(),
        Err(errors) => errors.into_iter().map(Err).collect(),
    })
}

/// The Mesh resource files of a mesh that exist, each read: `mesh.yaml`
/// and `mesh.toml` both present is an error of the second.
fn mesh_file_results<T>(
    store: &Store,
    mesh: &str,
    parse: Parser<T>,
) -> Vec<Result<T, PolicyFileError>> {
    let mut found = Vec::new();
    for rel in mesh_files(mesh) {
        if let Some(results) = read(store, &rel, parse) {
            if !found.is_empty() {
                return vec![Err(PolicyFileError::Invalid {
                    file: rel,
                    source: PolicyError::TwoMeshFiles {
                        mesh: mesh.to_string(),
                    },
                })];
            }
            found = results;
        }
    }
    found
}

/// The Mesh resource of a mesh (`meshes/<mesh>/mesh.yaml` or `mesh.toml`),
/// or `None` when the mesh has none.
pub fn load_mesh(store: &Store, mesh: &str) -> Result<Option<Policy>, PolicyFileError> {
    let mut results = mesh_file_results(store, mesh, Policy::parse_file).into_iter();
    results.next().transpose()
}

/// The meshes of the store: the folders of `meshes/` with a valid mesh
/// name (a link is not one), sorted.
pub fn mesh_names(store: &Store) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(store.root().join("meshes")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| crate::scope::validate_mesh(n).is_ok())
        .collect();
    names.sort();
    names
}

/// Whether a file name is a policy file's (`*.yaml`, `*.yml`, `*.toml`).
pub fn is_policy_file_name(name: &str) -> bool {
    [".yaml", ".yml", ".toml"].iter().any(|x| name.ends_with(x))
}

/// Every resource of a mesh in the work tree (the Mesh first), each parsed
/// or its problem.
pub fn load_mesh_policies(store: &Store, mesh: &str) -> Vec<Result<Policy, PolicyFileError>> {
    load_all(store, mesh, Policy::parse_file)
}

/// Every resource of a mesh in the work tree with its document (the Mesh
/// first), each parsed or its problem: what `export` prints.
pub fn load_mesh_resources(store: &Store, mesh: &str) -> Vec<Result<Resource, PolicyFileError>> {
    load_all(store, mesh, Resource::parse_file)
}

/// The Mesh resource of a mesh with its document, or its problem; `None`
/// when the mesh has none.
pub fn load_mesh_resource(store: &Store, mesh: &str) -> Option<Result<Resource, PolicyFileError>> {
    mesh_file_results(store, mesh, Resource::parse_file)
        .into_iter()
        .next()
}

fn load_all<T>(store: &Store, mesh: &str, parse: Parser<T>) -> Vec<Result<T, PolicyFileError>> {
    let dir = Path::new("meshes").join(mesh).join("policies");
    let mut out = mesh_file_results(store, mesh, parse);
    if let Ok(rd) = std::fs::read_dir(store.root().join(&dir)) {
        let mut names: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(is_policy_file_name))
            .map(|e| dir.join(e.file_name()))
            .collect();
        names.sort();
        for rel in names {
            out.extend(read(store, &rel, parse).into_iter().flatten());
        }
    }
    out
}

/// The policies (file and field) that reference a secret, builtin CA
/// backends included.
pub fn references_to(store: &Store, id: &SecretId) -> Vec<Reference> {
    let Scope::Mesh(mesh) = &id.scope else {
        return Vec::new(); // mesh policies can never use global secrets
    };
    let mut refs = Vec::new();
    for policy in load_mesh_policies(store, mesh).into_iter().flatten() {
        for (field, name) in policy.secret_refs() {
            if name == id.name {
                refs.push(Reference {
                    file: policy.path(),
                    field: field.to_string(),
                });
            }
        }
        for ca in policy.builtin_cas() {
            if id.name == ca.cert || id.name == ca.key {
                refs.push(Reference {
                    file: policy.path(),
                    field: ca.field(),
                });
            }
        }
    }
    refs
}

/// `Err` naming every use when a policy references the secret: `delete`
/// refuses to break a policy (unless forced).
pub fn ensure_unused(store: &Store, id: &SecretId) -> Result<(), InUse> {
    let users = references_to(store, id);
    if users.is_empty() {
        Ok(())
    } else {
        Err(InUse {
            id: id.clone(),
            file: id.path(),
            users,
        })
    }
}
