//! Resolution: whether a policy's references name secrets that exist, by
//! Kuma's scope rule (a policy uses only Secrets of its own mesh).

use super::{DataSource, Policy, PolicyError};
use crate::scope::{Scope, SecretId};

impl Policy {
    /// The secret names this policy references, with their fields.
    pub fn secret_refs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sources.iter().filter_map(|s| match &s.source {
            DataSource::Secret(name) => Some((s.field.as_str(), name.as_str())),
            _ => None,
        })
    }

    /// Checks every reference with Kuma's scope rule. `exists` tells whether a
    /// secret file is present. Every problem is returned.
    pub fn resolve(&self, exists: &dyn Fn(&SecretId) -> bool) -> Vec<PolicyError> {
        self.resolve_with(&|id| {
            if exists(id) {
                Presence::Present
            } else {
                Presence::Absent
            }
        })
    }

    /// Checks every reference with Kuma's scope rule, telling a secret that
    /// is absent from one whose file is there but does not open.
    pub fn resolve_with(&self, presence: &dyn Fn(&SecretId) -> Presence) -> Vec<PolicyError> {
        let in_mesh = |name: &str| SecretId {
            scope: Scope::Mesh(self.mesh.clone()),
            name: name.to_string(),
        };
        let mut problems = Vec::new();
        for (field, name) in self.secret_refs() {
            match presence(&in_mesh(name)) {
                Presence::Present => continue,
                Presence::Undecryptable => {
                    problems.push(PolicyError::CannotDecrypt {
                        field: field.to_string(),
                        names: name.to_string(),
                        mesh: self.mesh.clone(),
                    });
                    continue;
                }
                Presence::Absent => {}
            }
            let global_id = SecretId {
                scope: Scope::Global,
                name: name.to_string(),
            };
            problems.push(if presence(&global_id) != Presence::Absent {
                PolicyError::GlobalSecret {
                    field: field.to_string(),
                    name: name.to_string(),
                }
            } else {
                PolicyError::NotFound {
                    field: field.to_string(),
                    name: name.to_string(),
                    mesh: self.mesh.clone(),
                }
            });
        }
        for ca in self.builtin_cas() {
            let field = ca.field();
            let names = [ca.cert, ca.key];
            let with = |want: Presence| -> Vec<&str> {
                names
                    .iter()
                    .filter(|n| presence(&in_mesh(n)) == want)
                    .map(String::as_str)
                    .collect()
            };
            let (missing, locked) = (with(Presence::Absent), with(Presence::Undecryptable));
            if !missing.is_empty() {
                problems.push(PolicyError::BuiltinMissing {
                    field: field.clone(),
                    missing: missing.join(", "),
                    mesh: self.mesh.clone(),
                });
            }
            if !locked.is_empty() {
                problems.push(PolicyError::CannotDecrypt {
                    field,
                    names: locked.join(", "),
                    mesh: self.mesh.clone(),
                });
            }
        }
        problems
    }
}

/// Whether a referenced secret is there, and opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Its file is there (and, where a key was given, opens).
    Present,
    /// Its file is there but does not open with the key given.
    Undecryptable,
    /// No file.
    Absent,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str = r#"
type = "Mesh"
name = "pay"
[mtls]
enabled_backend = "ca-1"
[[mtls.backends]]
name = "ca-1"
type = "provided"
[mtls.backends.conf]
cert = { secret = "ca-cert" }
key = { secret = "ca-key" }
"#;

    const BUILTIN: &str = r#"
type = "Mesh"
name = "pay"
[mtls]
enabledBackend = "ca-2"
[[mtls.backends]]
name = "ca-2"
type = "builtin"
"#;

    fn parse(text: &str) -> Policy {
        Policy::parse_text(
            std::path::Path::new("meshes/pay/mesh.toml"),
            text,
            "pay",
            true,
        )
        .unwrap()
        .remove(0)
    }

    fn exists_in(ids: &[SecretId]) -> impl Fn(&SecretId) -> bool + '_ {
        move |id| ids.contains(id)
    }

    fn mid(m: &str, n: &str) -> SecretId {
        SecretId::new(Scope::Mesh(m.into()), n).unwrap()
    }

    #[test]
    fn mesh_backends_and_references() {
        let p = parse(MESH);
        assert_eq!(p.backends.len(), 1);
        let refs: Vec<_> = p.secret_refs().collect();
        assert_eq!(
            refs,
            vec![
                ("mtls.backends[0].conf.cert", "ca-cert"),
                ("mtls.backends[0].conf.key", "ca-key")
            ]
        );
        let all = [mid("pay", "ca-cert"), mid("pay", "ca-key")];
        assert!(p.resolve(&exists_in(&all)).is_empty());
        let b = parse(BUILTIN);
        let all = [
            mid("pay", "pay.ca-builtin-cert-ca-2"),
            mid("pay", "pay.ca-builtin-key-ca-2"),
        ];
        assert!(b.resolve(&exists_in(&all)).is_empty());
        // The files are there but the key does not open one: not "missing".
        let locked = b.resolve_with(&|id| {
            if id.name.contains("key") {
                Presence::Undecryptable
            } else {
                Presence::Present
            }
        });
        assert_eq!(locked.len(), 1);
        assert_eq!(
            locked[0].to_string(),
            "mtls.backends[0]: cannot decrypt secret(s) pay.ca-builtin-key-ca-2 of mesh \"pay\" with the given identities: the file exists"
        );
        let problems = b.resolve(&exists_in(&[]));
        assert!(matches!(problems[0], PolicyError::BuiltinMissing { .. }));
        assert_eq!(
            problems[0].to_string(),
            "mtls.backends[0]: builtin CA secrets are missing (pay.ca-builtin-cert-ca-2, pay.ca-builtin-key-ca-2)"
        );
    }

    #[test]
    fn builtin_backends_name_their_ca_secrets_once() {
        assert_eq!(
            parse(MESH).builtin_cas().count(),
            0,
            "a provided backend has none"
        );
        let p = parse(BUILTIN);
        let cas: Vec<_> = p.builtin_cas().collect();
        assert_eq!(cas.len(), 1);
        assert_eq!(cas[0].backend, "ca-2");
        assert_eq!(cas[0].cert, "pay.ca-builtin-cert-ca-2");
        assert_eq!(cas[0].key, "pay.ca-builtin-key-ca-2");
        assert_eq!(cas[0].field(), "mtls.backends[0]");
    }

    #[test]
    fn kuma_scope_rule_texts() {
        let p = parse(MESH);
        let ids = [
            SecretId::new(Scope::Global, "ca-cert").unwrap(),
            mid("other", "ca-key"),
        ];
        let problems = p.resolve(&exists_in(&ids));
        assert_eq!(
            problems[0].to_string(),
            "mtls.backends[0].conf.cert: global-scoped secret \"ca-cert\" cannot be used in mesh policies"
        );
        assert_eq!(
            problems[1].to_string(),
            "mtls.backends[0].conf.key: could not load data: resource not found: type=\"Secret\" name=\"ca-key\" mesh=\"pay\""
        );
    }
}
