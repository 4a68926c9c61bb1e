//! The names an Envoy asks for over SDS, checked with the store's own rules.
//!
//! ```text
//! <mesh>/<name>          secret <name> of mesh <mesh>
//! <mesh>/<cert>+<key>    secret <cert> (PEM chain) and secret <key> (PEM key), one tls_certificate
//! ```
//!
//! A mesh name never holds `/` or `+` and a secret name is an RFC 1123
//! subdomain, so each resource name splits one way only. There is no form for
//! a global secret: global secrets are for meshseal's own use and are never
//! served over SDS (a mesh called `global` is just a mesh).
//!
//! A request names at most [`MAX_NAMES`] resources: more is refused before
//! any of them is looked at, so a request costs bounded work.

use std::collections::BTreeSet;
use std::fmt;

use thiserror::Error;

use crate::problem::Diagnostic;
use crate::scope::{validate_mesh, validate_name, NameError, Scope, SecretId};

/// Most resource names one stream (or one fetch) may ask for.
pub const MAX_NAMES: usize = 1000;

/// Most characters of a refused name quoted back in an error.
const QUOTE_CHARS: usize = 80;

/// What a resource name asks for: one secret, or a certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceName {
    /// `<mesh>/<name>`: one secret, its kind decided by its data.
    Single(SecretId),
    /// `<mesh>/<cert>+<key>`: a PEM chain and a PEM key in two secrets.
    Pair {
        /// The secret holding the certificate chain.
        cert: SecretId,
        /// The secret holding the private key.
        key: SecretId,
    },
}

/// Why a requested resource name is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResourceNameError {
    /// No `/` between a mesh and a name.
    #[error("resource name {0}: expected `<mesh>/<name>` or `<mesh>/<cert>+<key>`")]
    Shape(String),
    /// The mesh part breaks the mesh name rules.
    #[error("resource name {quoted}: {err}")]
    Mesh {
        /// The name as asked, quoted and shortened.
        quoted: String,
        /// The rule it breaks.
        err: NameError,
    },
    /// A secret name part breaks the secret name rules.
    #[error("resource name {quoted}: {err}")]
    Name {
        /// The name as asked, quoted and shortened.
        quoted: String,
        /// The rule it breaks.
        err: NameError,
    },
    /// More names than [`MAX_NAMES`].
    #[error("{count} resource names requested: at most {MAX_NAMES} per stream")]
    TooMany {
        /// How many were asked for (at least).
        count: usize,
    },
}

impl Diagnostic for ResourceNameError {
    fn code(&self) -> &'static str {
        match self {
            ResourceNameError::TooMany { .. } => "sds-too-many-names",
            _ => "sds-invalid-name",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ResourceNameError::TooMany { .. } => {
                "split the secrets over several SDS config sources (each opens its own stream)"
                    .to_string()
            }
            _ => "name the secret as `<mesh>/<name>` (or `<mesh>/<cert>+<key>` for a chain and a key kept apart), as in `meshseal get secret <name> -m <mesh>`".to_string(),
        })
    }
}

impl ResourceName {
    /// Parses and validates one requested name.
    pub fn parse(text: &str) -> Result<ResourceName, ResourceNameError> {
        let quoted = || quote(text);
        let Some((mesh, rest)) = text.split_once('/') else {
            return Err(ResourceNameError::Shape(quoted()));
        };
        validate_mesh(mesh).map_err(|err| ResourceNameError::Mesh {
            quoted: quoted(),
            err,
        })?;
        let scope = Scope::Mesh(mesh.to_string());
        let id = |name: &str| {
            validate_name(name)
                .map(|()| SecretId {
                    scope: scope.clone(),
                    name: name.to_string(),
                })
                .map_err(|err| ResourceNameError::Name {
                    quoted: quoted(),
                    err,
                })
        };
        match rest.split_once('+') {
            None => Ok(ResourceName::Single(id(rest)?)),
            Some((cert, key)) => Ok(ResourceName::Pair {
                cert: id(cert)?,
                key: id(key)?,
            }),
        }
    }

    /// The mesh every secret of this resource belongs to.
    pub fn scope(&self) -> &Scope {
        match self {
            ResourceName::Single(id) => &id.scope,
            ResourceName::Pair { cert, .. } => &cert.scope,
        }
    }

    /// The secrets this resource is made of (one or two).
    pub fn sources(&self) -> Vec<&SecretId> {
        match self {
            ResourceName::Single(id) => vec![id],
            ResourceName::Pair { cert, key } => vec![cert, key],
        }
    }
}

impl fmt::Display for ResourceName {
    /// The canonical form, as Envoy asked for it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mesh = self.scope().mesh_name().unwrap_or_default();
        match self {
            ResourceName::Single(id) => write!(f, "{mesh}/{}", id.name),
            ResourceName::Pair { cert, key } => write!(f, "{mesh}/{}+{}", cert.name, key.name),
        }
    }
}

/// Parses the names of one request: at most [`MAX_NAMES`] (counted before
/// anything is parsed), each valid; duplicates count once.
pub fn parse_all<'a>(
    names: impl ExactSizeIterator<Item = &'a str>,
) -> Result<BTreeSet<ResourceName>, ResourceNameError> {
    if names.len() > MAX_NAMES {
        return Err(ResourceNameError::TooMany { count: names.len() });
    }
    names.map(ResourceName::parse).collect()
}

/// A client-supplied name for an error message: escaped (no control
/// characters reach a log line) and shortened.
fn quote(text: &str) -> String {
    let mut short: String = text.chars().take(QUOTE_CHARS).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("{short:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(mesh: &str, name: &str) -> SecretId {
        SecretId::new(Scope::Mesh(mesh.into()), name).unwrap()
    }

    #[test]
    fn single_and_pair_names_parse_and_print_back() {
        let single = ResourceName::parse("payments/gateway-tls").unwrap();
        assert_eq!(single, ResourceName::Single(id("payments", "gateway-tls")));
        assert_eq!(single.to_string(), "payments/gateway-tls");
        let pair = ResourceName::parse("mesh_1.a/web.crt+web.key").unwrap();
        assert_eq!(
            pair,
            ResourceName::Pair {
                cert: id("mesh_1.a", "web.crt"),
                key: id("mesh_1.a", "web.key"),
            }
        );
        assert_eq!(pair.to_string(), "mesh_1.a/web.crt+web.key");
        assert_eq!(pair.sources().len(), 2);
        assert_eq!(pair.scope(), &Scope::Mesh("mesh_1.a".into()));
        // `global` is a mesh name like any other, not the global scope.
        let g = ResourceName::parse("global/ca").unwrap();
        assert_eq!(g.scope(), &Scope::Mesh("global".into()));
    }

    #[test]
    fn names_outside_the_store_rules_are_refused() {
        for bad in [
            "",
            "payments",
            "/name",
            "payments/",
            "payments/a/b",
            "../x",
            "./x",
            "Payments/x",
            "payments/X",
            "payments/-x",
            "payments/a+",
            "payments/+b",
            "payments/a+b+c",
            "payments/a b",
            "payments/a\u{0}b",
            "*",
        ] {
            assert!(ResourceName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("m/{}", "a".repeat(254));
        let err = ResourceName::parse(&long).unwrap_err();
        assert!(matches!(
            err,
            ResourceNameError::Name {
                err: NameError::NameTooLong,
                ..
            }
        ));
        // The longest valid parts pass.
        let longest = format!("{0}/{1}+{1}", "m".repeat(253), "a".repeat(253));
        assert!(ResourceName::parse(&longest).is_ok());
    }

    #[test]
    fn errors_quote_a_short_escaped_name() {
        let err = ResourceName::parse(&format!("a\nb/{}", "x".repeat(500))).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.len() < 300, "{text}");
        assert_eq!(err.code(), "sds-invalid-name");
    }

    #[test]
    fn at_most_a_thousand_names() {
        let names: Vec<String> = (0..MAX_NAMES).map(|i| format!("m/s{i}")).collect();
        let parsed = parse_all(names.iter().map(String::as_str)).unwrap();
        assert_eq!(parsed.len(), MAX_NAMES);
        let mut more = names.clone();
        more.push("m/extra".into());
        let err = parse_all(more.iter().map(String::as_str)).unwrap_err();
        assert_eq!(
            err,
            ResourceNameError::TooMany {
                count: MAX_NAMES + 1
            }
        );
        assert_eq!(err.code(), "sds-too-many-names");
        // Duplicates count once in the result.
        let dup = ["m/a", "m/a"];
        assert_eq!(parse_all(dup.into_iter()).unwrap().len(), 1);
    }
}
