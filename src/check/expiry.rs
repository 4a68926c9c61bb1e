//! Certificates near expiry (SPEC 8): `check` warns about each certificate
//! in a secret that a Kuma resource references (a `secret` data source, or
//! a builtin CA backend's certificate) and that expires within the warning
//! window (30 days unless told), and about one that has expired.
//!
//! Only what check decrypted can be judged: without an identity, or for a
//! secret the identity does not open, nothing is said (the summary says the
//! contents were not verified). A warning does not change the exit code:
//! expiry is a date, not a broken store, and a commit must not start
//! failing because a day passed. The certificates themselves are read by
//! [`crate::certs`], as the watcher reads them.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

use crate::certs::{self, Certificate};
use crate::policy::{list_references, Policy, Reference};
use crate::problem::{Diagnostic, Problem};
use crate::scope::{Scope, SecretId};

/// How long before expiry a certificate is warned about, unless told: the
/// watcher's 30 days.
pub const DEFAULT_EXPIRY_WARNING: Duration = certs::DEFAULT_WARN_WITHIN;

/// A warning window of `days` days.
pub fn expiry_warning_days(days: u64) -> Duration {
    Duration::from_secs(days.saturating_mul(DAY as u64))
}

const DAY: i64 = 86_400;

/// A referenced certificate that expires soon or has expired.
#[derive(Debug, Error)]
pub enum ExpiryWarning {
    /// It expires within the warning window.
    #[error("certificate {subject:?} expires in {days} day(s) (notAfter {not_after}); used by {}", list_references(.users))]
    Soon {
        /// The secret.
        id: SecretId,
        /// The certificate's subject.
        subject: String,
        /// Days left, a started day counting as one.
        days: i64,
        /// Its `notAfter`, RFC 3339.
        not_after: String,
        /// The resources that reference the secret.
        users: Vec<Reference>,
    },
    /// It has expired.
    #[error("certificate {subject:?} has expired (notAfter {not_after}, {days} day(s) ago); used by {}", list_references(.users))]
    Expired {
        /// The secret.
        id: SecretId,
        /// The certificate's subject.
        subject: String,
        /// Days since it expired, a started day counting as one.
        days: i64,
        /// Its `notAfter`, RFC 3339.
        not_after: String,
        /// The resources that reference the secret.
        users: Vec<Reference>,
    },
}

impl Diagnostic for ExpiryWarning {
    fn code(&self) -> &'static str {
        match self {
            ExpiryWarning::Soon { .. } => "certificate-expires-soon",
            ExpiryWarning::Expired { .. } => "certificate-expired",
        }
    }

    fn hint(&self) -> Option<String> {
        let (ExpiryWarning::Soon { id, .. } | ExpiryWarning::Expired { id, .. }) = self;
        let mesh = id.scope.mesh_name().unwrap_or("default");
        Some(format!(
            "renew the certificate, then store it with `meshseal apply -f FILE` (a Secret named {:?} of mesh {mesh:?})",
            id.name
        ))
    }
}

/// The secrets the resources reference, each with its users, in order.
fn referenced(policies: &[Policy]) -> BTreeMap<SecretId, Vec<Reference>> {
    let mut out: BTreeMap<SecretId, Vec<Reference>> = BTreeMap::new();
    for policy in policies {
        let mut add = |name: &str, field: String| {
            let Ok(id) = SecretId::new(Scope::Mesh(policy.mesh.clone()), name) else {
                return; // an invalid name is reported by resolve()
            };
            out.entry(id).or_default().push(Reference {
                file: policy.path(),
                field,
            });
        };
        for (field, name) in policy.secret_refs() {
            add(name, field.to_string());
        }
        for ca in policy.builtin_cas() {
            add(&ca.cert, ca.field());
        }
    }
    out
}

/// The warnings about the referenced secrets' certificates at `now` (Unix
/// seconds): `certificates` holds what check decrypted, by secret.
pub fn judge(
    policies: &[Policy],
    certificates: &BTreeMap<SecretId, Vec<Certificate>>,
    within: Duration,
    now: i64,
) -> Vec<Problem> {
    let within = i64::try_from(within.as_secs()).unwrap_or(i64::MAX);
    let mut warnings = Vec::new();
    for (id, users) in referenced(policies) {
        let Some(found) = certificates.get(&id) else {
            continue;
        };
        for cert in found {
            let left = cert.not_after - now;
            if left >= within {
                continue;
            }
            let (subject, not_after) = (cert.subject.clone(), certs::rfc3339(cert.not_after));
            let users = users.clone();
            let warning = if left < 0 {
                ExpiryWarning::Expired {
                    days: days(-left),
                    id: id.clone(),
                    subject,
                    not_after,
                    users,
                }
            } else {
                ExpiryWarning::Soon {
                    days: days(left),
                    id: id.clone(),
                    subject,
                    not_after,
                    users,
                }
            };
            warnings.push(Problem::at(id.path(), &warning));
        }
    }
    warnings
}

/// Whole days, a started day counting as one: a certificate issued for 5
/// days expires "in 5 days" until its last day, and one expired an hour ago
/// expired "1 day ago".
fn days(seconds: i64) -> i64 {
    seconds.div_euclid(DAY) + i64::from(seconds.rem_euclid(DAY) != 0)
}

/// The report's order: by file, then message.
pub(super) fn sort(warnings: &mut [Problem]) {
    warnings.sort_by(|a, b| (&a.file, &a.message).cmp(&(&b.file, &b.message)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str, file: &str) -> Vec<Policy> {
        Policy::parse_file(std::path::Path::new(file), yaml)
            .expect("a policy path")
            .expect("valid")
    }

    fn cert(subject: &str, not_after: i64) -> Certificate {
        Certificate {
            subject: subject.to_string(),
            not_after,
        }
    }

    #[test]
    fn only_referenced_certificates_within_the_window_are_warned_about() {
        let now = 1_700_000_000;
        // A MeshExternalService whose caCert and clientCert are secrets
        // (kumahq/kuma: docs' MeshExternalService TLS example).
        let policies = policy(
            "type: MeshExternalService\nname: db\nmesh: payments\nspec:\n  match:\n    type: HostnameGenerator\n    port: 5432\n    protocol: tcp\n  endpoints:\n    - address: db.example\n      port: 5432\n  tls:\n    enabled: true\n    verification:\n      caCert:\n        secret: db-ca\n      clientCert:\n        secret: db-client\n      clientKey:\n        secret: db-key\n",
            "meshes/payments/policies/db.yaml",
        );
        let id = |n: &str| SecretId::new(Scope::mesh("payments").unwrap(), n).unwrap();
        let mut found = BTreeMap::new();
        found.insert(id("db-ca"), vec![cert("CN=ca", now + 400 * DAY)]);
        found.insert(
            id("db-client"),
            vec![
                cert("CN=client", now + 5 * DAY - 60),
                cert("CN=old", now - 2 * DAY + 60),
            ],
        );
        found.insert(id("unused"), vec![cert("CN=unused", now + DAY)]);
        let w = judge(&policies, &found, DEFAULT_EXPIRY_WARNING, now);
        let codes: Vec<_> = w.iter().map(|p| p.code).collect();
        assert_eq!(
            codes,
            ["certificate-expires-soon", "certificate-expired"],
            "{w:?}"
        );
        assert_eq!(
            w[0].file.as_deref(),
            Some(std::path::Path::new(
                "meshes/payments/secrets/db-client.age"
            ))
        );
        assert!(
            w[0].message
                .starts_with("certificate \"CN=client\" expires in 5 day(s) (notAfter 2023-"),
            "{}",
            w[0].message
        );
        assert!(
            w[0].message.ends_with(
                "used by meshes/payments/policies/db.yaml (spec.tls.verification.clientCert)"
            ),
            "{}",
            w[0].message
        );
        assert!(w[1].message.contains("2 day(s) ago"), "{}", w[1].message);
        assert!(w[0].hint.as_deref().unwrap().contains("meshseal apply"));
        // A narrower window: only the expired one.
        let w = judge(&policies, &found, Duration::from_secs(3 * 86_400), now);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, "certificate-expired");
        // A wider one: the CA too.
        let w = judge(&policies, &found, Duration::from_secs(500 * 86_400), now);
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn a_started_day_counts_as_one() {
        assert_eq!(
            [0, 1, DAY - 1, DAY, DAY + 1, 5 * DAY].map(days),
            [0, 1, 1, 1, 2, 5]
        );
    }
}
