//! The schema: a policy's text, parsed field by field into the parts that
//! touch secrets, with Kuma's field paths in every error.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use toml::Value;

use super::{
    Backend, DataSource, Policy, PolicyError, PolicyFileError, PolicyKind, SourceRef, NAME_RULE,
};
use crate::problem::line_of;
use crate::scope::{validate_mesh, validate_name, StorePath};

fn field(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: path.to_string(),
        message: message.into(),
    }
}

/// Parses a data source table at `path`.
pub fn parse_source(path: &str, value: &Value) -> Result<DataSource, PolicyError> {
    let Value::Table(t) = value else {
        return Err(field(path, "must be a data source table ({ secret = \"name\" }, { inline = \"<base64>\" }, { inlineString = \"…\" } or { file = \"/path\" })"));
    };
    if t.len() != 1 {
        return Err(field(
            path,
            "must have exactly one of secret, inline, inlineString, file",
        ));
    }
    let (k, v) = t.iter().next().expect("one entry");
    let s = v
        .as_str()
        .ok_or_else(|| field(&format!("{path}.{k}"), "must be a string"))?;
    match k.as_str() {
        "secret" => {
            validate_name(s).map_err(|e| field(&format!("{path}.secret"), e.to_string()))?;
            Ok(DataSource::Secret(s.to_string()))
        }
        "inline" => BASE64
            .decode(s)
            .map(DataSource::Inline)
            .map_err(|_| field(&format!("{path}.inline"), "must be valid base64")),
        "inlineString" => Ok(DataSource::InlineString(s.to_string())),
        "file" => {
            if s.is_empty() {
                Err(field(&format!("{path}.file"), "cannot be empty"))
            } else {
                Ok(DataSource::File(s.to_string()))
            }
        }
        other => Err(field(
            path,
            format!("unknown data source {other:?}: use secret, inline, inlineString or file"),
        )),
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_table().and_then(|t| t.get(key))
}

fn opt_source(
    v: &Value,
    key: &str,
    path: &str,
    out: &mut Vec<SourceRef>,
) -> Result<Option<DataSource>, PolicyError> {
    match get(v, key) {
        None => Ok(None),
        Some(s) => {
            let field = format!("{path}.{key}");
            let source = parse_source(&field, s)?;
            out.push(SourceRef {
                field,
                source: source.clone(),
            });
            Ok(Some(source))
        }
    }
}

impl Policy {
    /// Parses `meshes/<mesh>/mesh.toml` (`name` None) or
    /// `meshes/<mesh>/policies/<name>.toml`.
    pub fn parse(text: &str, mesh: &str, name: Option<&str>) -> Result<Policy, PolicyError> {
        if text.bytes().filter(|b| matches!(b, b'[' | b'{')).count() > 4096 {
            return Err(field("(document)", "too deeply nested or complex"));
        }
        let doc: toml::Table = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            message: e.message().trim_end().to_string(),
            line: e.span().map(|s| line_of(text, s.start)),
        })?;
        let doc = Value::Table(doc);
        let ty = get(&doc, "type")
            .and_then(Value::as_str)
            .ok_or_else(|| field("type", "cannot be empty"))?;
        let kind = match (ty, name) {
            ("Mesh", None) => PolicyKind::Mesh,
            ("ExternalService", Some(_)) => PolicyKind::ExternalService,
            ("MeshExternalService", Some(_)) => PolicyKind::MeshExternalService,
            ("MeshGateway", Some(_)) => PolicyKind::MeshGateway,
            (_, None) => return Err(field("type", "mesh.toml must hold type = \"Mesh\"")),
            (other, Some(_)) => return Err(PolicyError::UnsupportedType(other.to_string())),
        };
        let doc_name = get(&doc, "name")
            .and_then(Value::as_str)
            .ok_or_else(|| field("name", "cannot be empty"))?;
        // A Mesh is named after its folder; a policy after its file.
        let (expected, mesh_field) = match name {
            None => (mesh, None),
            Some(n) => (n, get(&doc, "mesh").and_then(Value::as_str)),
        };
        if name.is_some() && validate_mesh(expected).is_err() {
            // The API serves policies by name with the same rule, so a file
            // named otherwise could never be read: say so here, in check.
            return Err(field("name", NAME_RULE));
        }
        if doc_name != expected {
            return Err(PolicyError::Mismatch {
                field: "name",
                found: doc_name.to_string(),
                expected: expected.to_string(),
            });
        }
        if name.is_some() {
            let m = mesh_field.ok_or_else(|| field("mesh", "cannot be empty"))?;
            if m != mesh {
                return Err(PolicyError::Mismatch {
                    field: "mesh",
                    found: m.to_string(),
                    expected: mesh.to_string(),
                });
            }
        }
        let mut policy = Policy {
            kind,
            mesh: mesh.to_string(),
            name: doc_name.to_string(),
            sources: Vec::new(),
            backends: Vec::new(),
        };
        match kind {
            PolicyKind::Mesh => policy.parse_mesh(&doc)?,
            PolicyKind::ExternalService => {
                if let Some(tls) = get(&doc, "networking").and_then(|n| get(n, "tls")) {
                    for k in ["caCert", "clientCert", "clientKey"] {
                        opt_source(tls, k, "networking.tls", &mut policy.sources)?;
                    }
                }
            }
            PolicyKind::MeshExternalService => {
                if let Some(v) = get(&doc, "tls").and_then(|t| get(t, "verification")) {
                    let path = "tls.verification";
                    opt_source(v, "caCert", path, &mut policy.sources)?;
                    let cert = opt_source(v, "clientCert", path, &mut policy.sources)?;
                    let key = opt_source(v, "clientKey", path, &mut policy.sources)?;
                    if cert.is_some() != key.is_some() {
                        return Err(field(path, "clientCert and clientKey must be set together"));
                    }
                }
            }
            PolicyKind::MeshGateway => {
                if let Some(listeners) = get(&doc, "listeners") {
                    let listeners = listeners
                        .as_array()
                        .ok_or_else(|| field("listeners", "must be an array"))?;
                    for (i, l) in listeners.iter().enumerate() {
                        let Some(certs) = get(l, "tls").and_then(|t| get(t, "certificates")) else {
                            continue;
                        };
                        let path = format!("listeners[{i}].tls.certificates");
                        let certs = certs
                            .as_array()
                            .ok_or_else(|| field(&path, "must be an array"))?;
                        for (j, c) in certs.iter().enumerate() {
                            let f = format!("{path}[{j}]");
                            let source = parse_source(&f, c)?;
                            policy.sources.push(SourceRef { field: f, source });
                        }
                    }
                }
            }
        }
        Ok(policy)
    }

    fn parse_mesh(&mut self, doc: &Value) -> Result<(), PolicyError> {
        let Some(mtls) = get(doc, "mtls") else {
            return Ok(());
        };
        let backends = match get(mtls, "backends") {
            None => &Vec::new(),
            Some(b) => b
                .as_array()
                .ok_or_else(|| field("mtls.backends", "must be an array"))?,
        };
        for (i, b) in backends.iter().enumerate() {
            let name = get(b, "name")
                .and_then(Value::as_str)
                .ok_or_else(|| field(&format!("mtls.backends[{i}].name"), "cannot be empty"))?;
            let path = format!("mtls.backends[{name}]");
            let ty = get(b, "type").and_then(Value::as_str).unwrap_or("");
            let backend = match ty {
                "builtin" => Backend {
                    name: name.to_string(),
                    builtin: true,
                    cert: None,
                    key: None,
                },
                "provided" => {
                    let conf = get(b, "conf")
                        .ok_or_else(|| field(&format!("{path}.conf"), "cannot be empty"))?;
                    let conf_path = format!("{path}.conf");
                    let cert = opt_source(conf, "cert", &conf_path, &mut self.sources)?
                        .ok_or_else(|| field(&format!("{conf_path}.cert"), "cannot be empty"))?;
                    let key = opt_source(conf, "key", &conf_path, &mut self.sources)?
                        .ok_or_else(|| field(&format!("{conf_path}.key"), "cannot be empty"))?;
                    Backend {
                        name: name.to_string(),
                        builtin: false,
                        cert: Some(cert),
                        key: Some(key),
                    }
                }
                other => {
                    return Err(field(
                        &format!("{path}.type"),
                        format!("unsupported backend type {other:?} (builtin or provided)"),
                    ))
                }
            };
            if self.backends.iter().any(|x| x.name == backend.name) {
                return Err(field(&path, "duplicate backend name"));
            }
            self.backends.push(backend);
        }
        if let Some(enabled) = get(mtls, "enabled_backend").and_then(Value::as_str) {
            if !enabled.is_empty() && !self.backends.iter().any(|b| b.name == enabled) {
                return Err(field(
                    "mtls.enabled_backend",
                    format!(
                        "has to be set to one of the backends in the mesh (no backend {enabled:?})"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Parses the policy file at `rel` (relative to the store root): its
    /// path says its mesh and name. The one way every reader (the work tree,
    /// the git index, the watcher) turns a policy file's text into a policy;
    /// `None` when `rel` is not a policy file's path.
    pub fn parse_file(rel: &Path, text: &str) -> Option<Result<Policy, PolicyFileError>> {
        let parsed = match StorePath::classify(rel) {
            StorePath::Mesh(mesh) => Policy::parse(text, &mesh, None),
            StorePath::Policy { mesh, name } => Policy::parse(text, &mesh, Some(&name)),
            _ => return None,
        };
        Some(parsed.map_err(|source| PolicyFileError::Invalid {
            file: rel.to_path_buf(),
            source,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_file_names_follow_the_api_rule() {
        let text =
            |n: &str| format!("type = \"ExternalService\"\nmesh = \"pay\"\nname = \"{n}\"\n");
        assert!(Policy::parse(&text("web_1.v2"), "pay", Some("web_1.v2")).is_ok());
        for bad in ["Web", ".hidden", "a b", "x%2f"] {
            let e = Policy::parse(&text(bad), "pay", Some(bad)).unwrap_err();
            assert!(e.to_string().contains("policy file name"), "{bad}: {e}");
        }
    }

    #[test]
    fn policy_types() {
        let es = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking]\naddress = \"httpbin.org:443\"\n[networking.tls]\ncaCert = { secret = \"ca\" }\nclientCert = { inline = \"YQ==\" }\n";
        let p = Policy::parse(es, "pay", Some("bin")).unwrap();
        assert_eq!(p.sources.len(), 2);
        let mes = "type = \"MeshExternalService\"\nmesh = \"pay\"\nname = \"x\"\n[tls.verification]\nclientCert = { secret = \"c\" }\n";
        assert!(Policy::parse(mes, "pay", Some("x"))
            .unwrap_err()
            .to_string()
            .contains("clientCert and clientKey must be set together"));
        let gw = "type = \"MeshGateway\"\nmesh = \"pay\"\nname = \"gw\"\n[[listeners]]\nport = 443\n[listeners.tls]\ncertificates = [{ secret = \"a\" }, { file = \"/x\" }]\n";
        let p = Policy::parse(gw, "pay", Some("gw")).unwrap();
        assert_eq!(
            p.secret_refs().next(),
            Some(("listeners[0].tls.certificates[0]", "a"))
        );
        assert!(matches!(
            Policy::parse(es, "other", Some("bin")),
            Err(PolicyError::Mismatch { field: "mesh", .. })
        ));
        let two = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking.tls]\ncaCert = { secret = \"ca\", file = \"/x\" }\n";
        assert!(Policy::parse(two, "pay", Some("bin"))
            .unwrap_err()
            .to_string()
            .contains("exactly one of"));
    }

    #[test]
    fn a_file_is_parsed_by_what_its_path_says() {
        let es = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n";
        let p = Policy::parse_file(Path::new("meshes/pay/policies/bin.toml"), es)
            .expect("a policy path")
            .unwrap();
        assert_eq!((p.mesh.as_str(), p.name.as_str()), ("pay", "bin"));
        // The same text under another mesh's folder is that mesh's, and wrong.
        let e = Policy::parse_file(Path::new("meshes/web/policies/bin.toml"), es)
            .expect("a policy path")
            .unwrap_err();
        assert!(matches!(
            e,
            PolicyFileError::Invalid {
                source: PolicyError::Mismatch { field: "mesh", .. },
                ..
            }
        ));
        assert_eq!(
            crate::problem::Diagnostic::file(&e),
            Some(Path::new("meshes/web/policies/bin.toml"))
        );
        assert!(Policy::parse_file(Path::new("meshes/pay/recipients.txt"), es).is_none());
    }
}
