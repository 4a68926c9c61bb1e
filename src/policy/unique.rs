//! A resource's name is unique per kind and mesh (SPEC 8), across every
//! file of its mesh's folder, as Kuma's store keys resources: a second
//! create of the same type, mesh and name is refused with `resource already
//! exists`. One file's duplicates are found by its parse
//! ([`Policy::parse_file`]); this finds them across files, for `check` and
//! for `apply -f` (which must not leave a resource defined twice).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::Path;

use super::{Policy, PolicyError, PolicyFileError, PolicyKind};

/// A resource defined again in another file.
#[derive(Debug, Clone, Copy)]
pub struct Duplicate<'a> {
    /// The first definition (by file, then document).
    pub first: &'a Policy,
    /// A later one.
    pub again: &'a Policy,
    /// Whether each one's file holds several resources (then the error
    /// says which document).
    several: (bool, bool),
}

/// Every later definition of a resource among `policies` (same mesh, kind
/// and name as an earlier one), ordered by file and document.
pub fn duplicates<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Vec<Duplicate<'a>> {
    let mut all: Vec<&Policy> = policies.into_iter().collect();
    all.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
    let mut per_file: BTreeMap<&Path, usize> = BTreeMap::new();
    for p in &all {
        *per_file.entry(&p.file).or_default() += 1;
    }
    let several = |p: &Policy| per_file.get(p.file.as_path()).copied().unwrap_or(0) > 1;
    let mut first: BTreeMap<(&str, &PolicyKind, &str), &Policy> = BTreeMap::new();
    let mut out = Vec::new();
    for p in all {
        match first.entry((&p.mesh, &p.kind, &p.name)) {
            Entry::Vacant(v) => {
                v.insert(p);
            }
            Entry::Occupied(o) => out.push(Duplicate {
                first: o.get(),
                again: p,
                several: (several(o.get()), several(p)),
            }),
        }
    }
    out
}

impl Duplicate<'_> {
    /// Kuma's error, about the later definition's file, naming the first's
    /// (`resource already exists: type="MeshTimeout" name="t" mesh="pay"
    /// (also defined in meshes/pay/policies/a.yaml)`).
    pub fn error(&self) -> PolicyFileError {
        let (first_several, again_several) = self.several;
        let mut other = self.first.file.display().to_string();
        if first_several {
            other.push_str(&format!(" (document {})", self.first.document));
        }
        let duplicate = PolicyError::Duplicate {
            kind: self.again.kind.as_str().to_string(),
            name: self.again.name.clone(),
            mesh: self.again.mesh.clone(),
            other,
        };
        PolicyFileError::Invalid {
            file: self.again.file.clone(),
            source: if again_several {
                PolicyError::InDocument {
                    index: self.again.document,
                    source: Box::new(duplicate),
                }
            } else {
                duplicate
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(file: &str, text: &str) -> Vec<Policy> {
        Policy::parse_file(Path::new(file), text)
            .expect("a policy path")
            .expect("valid")
    }

    #[test]
    fn a_resource_in_two_files_is_reported_on_the_second_naming_the_first() {
        let timeout = "type: MeshTimeout\nmesh: pay\nname: t\nspec: {}\n";
        let retry = "type: MeshRetry\nmesh: pay\nname: t\nspec: {}\n";
        let mut all = parse("meshes/pay/policies/b.yaml", timeout);
        all.extend(parse(
            "meshes/pay/policies/a.yaml",
            &format!("{retry}---\n{timeout}"),
        ));
        // Another kind of the same name, and another mesh, are not duplicates.
        all.extend(parse(
            "meshes/other/policies/c.yaml",
            "type: MeshTimeout\nmesh: other\nname: t\nspec: {}\n",
        ));
        let found = duplicates(&all);
        assert_eq!(found.len(), 1, "{found:?}");
        let e = found[0].error();
        assert_eq!(
            e.to_string(),
            "resource already exists: type=\"MeshTimeout\" name=\"t\" mesh=\"pay\" (also defined in meshes/pay/policies/a.yaml (document 2))"
        );
        assert_eq!(
            crate::problem::Diagnostic::file(&e),
            Some(Path::new("meshes/pay/policies/b.yaml"))
        );
    }
}
