//! Kuma's data sources: the classic variants (`secret`, `inline`,
//! `inlineString`, `file`) and the newer typed ones (`type: Secret` with a
//! `secretRef`, `File`, `EnvVar`, `InsecureInline`), exactly one of them,
//! non-empty, with Kuma's texts.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

use super::parse::{at, field, get, get_str};
use super::{DataSource, PolicyError};
use crate::scope::validate_name;

/// The variants of Kuma's classic data source (`system.v1alpha1.DataSource`;
/// `common.v1alpha1.DataSource` has no `file`).
pub(super) const CLASSIC_VARIANTS: &[&str] = &["secret", "inline", "inlineString", "file"];

/// Parses a classic data source (`{ secret = "name" }`...) at `path`,
/// allowing the variants in `allowed`.
pub(super) fn classic_source(
    path: &str,
    value: &Value,
    allowed: &[&str],
) -> Result<DataSource, Vec<PolicyError>> {
    let Value::Object(t) = value else {
        return Err(vec![field(
            path,
            format!("must be a data source: one of {}", allowed.join(", ")),
        )]);
    };
    if let Some(k) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(vec![field(
            &at(path, k),
            format!(
                "unknown field: a data source is one of {}",
                allowed.join(", ")
            ),
        )]);
    }
    if t.is_empty() {
        // Kuma's text (pkg/core/datasource/validator.go).
        return Err(vec![field(
            path,
            "data source has to be chosen. Available sources: secret, file, inline",
        )]);
    }
    if t.len() > 1 {
        return Err(vec![field(
            path,
            format!("must have exactly one of {}", allowed.join(", ")),
        )]);
    }
    let (k, v) = t.iter().next().expect("one entry");
    let s = v
        .as_str()
        .ok_or_else(|| vec![field(&at(path, k), "must be a string")])?;
    if s.is_empty() {
        return Err(vec![field(&at(path, k), "cannot be empty")]);
    }
    match k.as_str() {
        "secret" => {
            validate_name(s).map_err(|e| vec![field(&at(path, "secret"), e.to_string())])?;
            Ok(DataSource::Secret(s.to_string()))
        }
        "inline" => BASE64
            .decode(s)
            .map(DataSource::Inline)
            .map_err(|_| vec![field(&at(path, "inline"), "must be valid base64")]),
        "inlineString" => Ok(DataSource::InlineString(s.to_string())),
        _ => Ok(DataSource::File(s.to_string())),
    }
}

/// The types of Kuma's SecureDataSource
/// (`api/common/v1alpha1/datasource/datasource.go`).
pub(super) const SECURE_TYPES: &[&str] = &["EnvVar", "InsecureInline", "File", "Secret"];

/// Parses a SecureDataSource (`type` + `secretRef` / `file` /
/// `insecureInline` / `envVar`) at `path`, allowing the types in `allowed`.
/// `Ok(None)` for an environment variable (read by Kuma's control plane,
/// nothing meshseal can resolve).
pub(super) fn secure_source(
    path: &str,
    value: &Value,
    allowed: &[&str],
) -> Result<Option<DataSource>, Vec<PolicyError>> {
    let Value::Object(t) = value else {
        return Err(vec![field(path, "must be a data source with a type")]);
    };
    let known = ["type", "secretRef", "file", "insecureInline", "envVar"];
    if let Some(k) = t.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(vec![field(&at(path, k), "unknown field")]);
    }
    let ty = get_str(value, "type").unwrap_or("");
    if !allowed.contains(&ty) {
        return Err(vec![field(
            &at(path, "type"),
            format!("{ty} must be one of: {}", allowed.join(", ")),
        )]);
    }
    let variant = match ty {
        "EnvVar" => "envVar",
        "InsecureInline" => "insecureInline",
        "File" => "file",
        _ => "secretRef",
    };
    // Exactly one variant: the one its type names.
    let mut errors: Vec<PolicyError> = t
        .keys()
        .filter(|k| *k != "type" && *k != variant)
        .map(|k| {
            field(
                &at(path, k),
                format!("must not be defined when type is {ty}"),
            )
        })
        .collect();
    let vpath = at(path, variant);
    let Some(inner) = t.get(variant) else {
        errors.push(field(&vpath, "must be defined"));
        return Err(errors);
    };
    let inner_str = |key: &str, errors: &mut Vec<PolicyError>| -> Option<String> {
        match get(inner, key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::String(_)) | None => {
                errors.push(field(&at(&vpath, key), "must be defined"));
                None
            }
            Some(_) => {
                errors.push(field(&at(&vpath, key), "must be a string"));
                None
            }
        }
    };
    let source = match ty {
        "Secret" => {
            match get_str(inner, "kind") {
                Some("Secret") => {}
                other => errors.push(field(
                    &at(&vpath, "kind"),
                    format!("{} must be one of: Secret", other.unwrap_or("")),
                )),
            }
            inner_str("name", &mut errors).and_then(|n| match validate_name(&n) {
                Ok(()) => Some(DataSource::Secret(n)),
                Err(e) => {
                    errors.push(field(&at(&vpath, "name"), e.to_string()));
                    None
                }
            })
        }
        "File" => inner_str("path", &mut errors).and_then(|p| {
            if p.contains("..") {
                errors.push(field(
                    &at(&vpath, "path"),
                    format!("file path contains directory traversal sequence: {p}"),
                ));
                None
            } else if !p.starts_with('/') {
                errors.push(field(
                    &at(&vpath, "path"),
                    format!("file path must be absolute: {p}"),
                ));
                None
            } else {
                Some(DataSource::File(p))
            }
        }),
        "InsecureInline" => inner_str("value", &mut errors).map(DataSource::InlineString),
        _ => {
            inner_str("name", &mut errors);
            None
        }
    };
    if errors.is_empty() {
        Ok(source)
    } else {
        Err(errors)
    }
}

/// Parses `{ secret = "name" }`, `{ inline = "<base64>" }`... at `path`: the
/// one reader of every data source field a resource may hold. Classic
/// sources only: kept for callers that parse one field.
pub fn parse_source(path: &str, value: &toml::Value) -> Result<DataSource, PolicyError> {
    let value = serde_json::to_value(value).map_err(|e| field(path, e.to_string()))?;
    classic_source(path, &value, CLASSIC_VARIANTS).map_err(|mut e| e.remove(0))
}

/// What a data source field may hold.
#[derive(Clone, Copy)]
pub(super) enum SourceShape {
    /// Classic only, with these variants.
    Classic(&'static [&'static str]),
    /// Classic (Kuma 2.14) or SecureDataSource (Kuma main) with these types.
    Either(&'static [&'static str], &'static [&'static str]),
    /// SecureDataSource only.
    Secure(&'static [&'static str]),
}
