//! A mesh's policy files in the work tree, read through the store's one text
//! reader ([`Store::read_text`]: confined, bounded, UTF-8), and who uses a
//! secret.

use std::path::{Path, PathBuf};

use super::{InUse, Policy, PolicyFileError, Reference};
use crate::scope::{Scope, SecretId};
use crate::store::Store;

/// Reads and parses one policy file of the work tree; `None` when it does
/// not exist.
fn read(store: &Store, rel: &Path) -> Option<Result<Policy, PolicyFileError>> {
    let text = match store.read_text(rel) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return None,
        Err(source) => {
            return Some(Err(PolicyFileError::Read {
                file: rel.to_path_buf(),
                source,
            }))
        }
    };
    Policy::parse_file(rel, &text)
}

/// The Mesh resource of a mesh (`meshes/<mesh>/mesh.toml`), or `None` when
/// the mesh has none.
pub fn load_mesh(store: &Store, mesh: &str) -> Result<Option<Policy>, PolicyFileError> {
    let rel = Path::new("meshes").join(mesh).join("mesh.toml");
    read(store, &rel).transpose()
}

/// Every policy of a mesh in the work tree (mesh.toml first), each parsed or
/// its problem.
pub fn load_mesh_policies(store: &Store, mesh: &str) -> Vec<Result<Policy, PolicyFileError>> {
    let dir = Path::new("meshes").join(mesh).join("policies");
    let mut files: Vec<PathBuf> = vec![Path::new("meshes").join(mesh).join("mesh.toml")];
    if let Ok(rd) = std::fs::read_dir(store.root().join(&dir)) {
        let mut names: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| dir.join(e.file_name()))
            .filter(|rel| rel.extension().is_some_and(|x| x == "toml"))
            .collect();
        names.sort();
        files.extend(names);
    }
    files.iter().filter_map(|rel| read(store, rel)).collect()
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
