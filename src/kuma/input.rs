//! An `apply -f` input: a YAML stream of Kuma resources in either form,
//! lists of them included (`kumactl get -o yaml`, `kubectl get -o yaml`),
//! sorted into secrets (judged by [`parse_one`]) and every other resource
//! (judged by the policy schema, as `check` judges it in its folder).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::{parse_one, At, ResourceError};
use crate::document::Document;
use crate::policy::{Resource, KUMA_API_VERSION};
use crate::scope::SecretId;

/// Everything one `apply -f` input holds, in input order.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Secrets and GlobalSecrets.
    pub secrets: Vec<Document>,
    /// Kuma's other resources (Meshes, policies...), each with its place in
    /// the input.
    pub resources: Vec<(At, Resource)>,
}

/// Parses a (multi-document) YAML stream of Secrets and GlobalSecrets, in
/// Universal or Kubernetes form. Every problem is reported; on any problem no
/// document is returned. Other Kuma resources are refused as unsupported
/// (see [`parse_input`] for an apply that takes them).
pub fn parse_apply(text: &str, max_data_bytes: usize) -> Result<Vec<Document>, Vec<ResourceError>> {
    let parsed = parse_input(text, max_data_bytes)?;
    let others: Vec<ResourceError> = parsed
        .resources
        .iter()
        .map(|(at, r)| ResourceError::Unsupported {
            at: *at,
            kind: r.policy.kind.as_str().chars().take(64).collect(),
        })
        .collect();
    if others.is_empty() {
        Ok(parsed.secrets)
    } else {
        Err(others)
    }
}

/// What a document is.
enum Shape<'a> {
    /// A Secret or GlobalSecret (or something that must be reported as one).
    Secret,
    /// Any other Kuma resource.
    Resource,
    /// A list of resources (`items`).
    List(&'a [Value]),
}

fn shape(value: &Value, at: At) -> Result<Shape<'_>, ResourceError> {
    let Value::Mapping(map) = value else {
        return Ok(Shape::Secret); // reported as "must be a mapping"
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str);
    let items = || match map.get("items") {
        Some(Value::Sequence(items)) => Ok(Shape::List(items)),
        _ => Err(ResourceError::Field {
            at,
            message: "items: must be a list of resources".to_string(),
        }),
    };
    let resource = |kind_field: &str| {
        let kind = text(kind_field).unwrap_or_default();
        let field = |message: String| ResourceError::Field { at, message };
        // Resources are written in plaintext: nothing that may be a secret
        // with a misspelt type ever is.
        if kind.eq_ignore_ascii_case("Secret") || kind.eq_ignore_ascii_case("GlobalSecret") {
            return Err(field(format!(
                "{kind_field}: {kind:?} is not a Kuma type: a secret is a Secret or GlobalSecret (the case matters)"
            )));
        }
        if let Some(key) = ["data", "stringData"]
            .into_iter()
            .find(|k| map.contains_key(*k))
        {
            return Err(field(format!(
                "{key}: a {kind} has no such field; resources are written in plaintext, so a document with secret data is refused (a secret is a Secret or GlobalSecret)"
            )));
        }
        Ok(Shape::Resource)
    };
    match (text("apiVersion"), text("kind"), text("type")) {
        (Some(KUMA_API_VERSION), Some("Secret" | "GlobalSecret"), _) => Ok(Shape::Secret),
        (Some(KUMA_API_VERSION), _, _) => resource("kind"),
        // kubectl get -o yaml
        (Some(_), Some("List"), _) => items(),
        (_, Some(_), _) => Ok(Shape::Secret),
        (None, None, Some("Secret" | "GlobalSecret")) => Ok(Shape::Secret),
        (None, None, Some(t)) if !t.is_empty() => resource("type"),
        // kumactl get -o yaml: items, total, next
        (None, None, None) if map.contains_key("items") => items(),
        _ => Ok(Shape::Secret),
    }
}

/// Parses a (multi-document) YAML stream of Kuma resources, in Universal or
/// Kubernetes form, lists of them included: the secrets (judged as
/// [`parse_apply`] judges them) and every other resource (judged as `check`
/// judges it in its mesh's folder). Every problem of every document is
/// reported; on any problem nothing is returned.
pub fn parse_input(text: &str, max_data_bytes: usize) -> Result<Parsed, Vec<ResourceError>> {
    let (parsed, errors) = parse_input_partly(text, max_data_bytes);
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// [`parse_input`]'s documents that parse, and the problems of the others:
/// for an apply that judges the good ones further before it reports every
/// problem at once.
pub fn parse_input_partly(text: &str, max_data_bytes: usize) -> (Parsed, Vec<ResourceError>) {
    let mut parsed = Parsed::default();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<SecretId, At> = BTreeMap::new();
    let mut seen_resources: BTreeMap<(String, String, String), At> = BTreeMap::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = match Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                errors.push(ResourceError::Yaml(e));
                // The stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        let whole = At {
            document,
            item: None,
        };
        let items: Vec<(At, &Value)> = match shape(&value, whole) {
            Ok(Shape::List(items)) => items
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let at = At {
                        document,
                        item: Some(j),
                    };
                    (at, v)
                })
                .collect(),
            Ok(_) => vec![(whole, &value)],
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for (at, value) in items {
            match shape(value, at) {
                Ok(Shape::Secret) => match parse_one(value, at, max_data_bytes) {
                    Ok(doc) => {
                        if let Some(&first) = seen.get(&doc.id) {
                            errors.push(ResourceError::Duplicate {
                                at,
                                first,
                                id: doc.id.clone(),
                            });
                        } else {
                            seen.insert(doc.id.clone(), at);
                            parsed.secrets.push(doc);
                        }
                    }
                    Err(e) => errors.push(e),
                },
                Ok(Shape::Resource) => match parse_resource(value, at) {
                    Ok(r) => {
                        let key = (
                            r.policy.mesh.clone(),
                            r.policy.kind.as_str().to_string(),
                            r.policy.name.clone(),
                        );
                        if let Some(&first) = seen_resources.get(&key) {
                            errors.push(ResourceError::DuplicateResource {
                                at,
                                first,
                                what: r.describe(),
                            });
                        } else {
                            seen_resources.insert(key, at);
                            parsed.resources.push((at, r));
                        }
                    }
                    Err(e) => errors.extend(e),
                },
                Ok(Shape::List(_)) => errors.push(ResourceError::Field {
                    at,
                    message: "a list inside a list is not a resource".to_string(),
                }),
                Err(e) => errors.push(e),
            }
        }
    }
    (parsed, errors)
}

/// A Mesh or policy resource, judged by the policy schema.
fn parse_resource(value: &Value, at: At) -> Result<Resource, Vec<ResourceError>> {
    let json = serde_json::to_value(value).map_err(|_| {
        vec![ResourceError::Field {
            at,
            message: "keys must be strings".to_string(),
        }]
    })?;
    Resource::from_input(&json, at.document).map_err(|errors| {
        errors
            .into_iter()
            .map(|error| ResourceError::Resource { at, error })
            .collect()
    })
}
