//! The secret-bearing fields of each Kuma resource kind, walked with Kuma's
//! field paths: Mesh mTLS backends, ExternalService, MeshExternalService,
//! MeshGateway, MeshIdentity and MeshTrust (see `parse.rs` for the sources).

use serde_json::{Map, Value};

use super::parse::*;
use super::Backend;
use crate::scope::validate_name;

/// Mesh `mtls` (mesh_validator.go, provided/manager.go).
pub(super) fn mesh_backends(walk: &mut Walk<'_>, body: &Value, prefix: &str) -> Vec<Backend> {
    let mut backends: Vec<Backend> = Vec::new();
    let Some(mtls) = get(body, "mtls") else {
        return backends;
    };
    let mtls_path = at(prefix, "mtls");
    let list_path = at(&mtls_path, "backends");
    let list = walk.array(mtls, "backends", &list_path);
    if list.len() > MAX_MTLS_BACKENDS {
        walk.errors.push(field(
            &list_path,
            format!("cannot have more than {MAX_MTLS_BACKENDS} backends"),
        ));
    }
    for (i, b) in list.iter().enumerate() {
        let path = format!("{list_path}[{i}]");
        let name = get_str(b, "name").unwrap_or("");
        if name.is_empty() {
            walk.errors
                .push(field(&at(&path, "name"), "cannot be empty"));
            continue;
        }
        if backends.iter().any(|x| x.name == name) {
            walk.errors.push(field(
                &at(&path, "name"),
                format!("{name:?} name is already used for another backend"),
            ));
            continue;
        }
        let ty = get_str(b, "type").unwrap_or("");
        let mut backend = Backend {
            name: name.to_string(),
            field: path.clone(),
            builtin: ty == "builtin",
            cert: None,
            key: None,
        };
        match ty {
            "builtin" => {
                // Its secrets are named after the mesh and the backend.
                if let Err(e) = validate_name(&format!("m.ca-builtin-cert-{name}")) {
                    walk.errors.push(field(&at(&path, "name"), e.to_string()));
                }
            }
            "provided" => {
                let conf_path = at(&path, "conf");
                let conf = get(b, "conf").cloned().unwrap_or(Value::Object(Map::new()));
                for (key, slot) in [("cert", &mut backend.cert), ("key", &mut backend.key)] {
                    let p = at(&conf_path, key);
                    match get(&conf, key) {
                        None => walk.errors.push(field(&p, "has to be defined")),
                        Some(v) => {
                            let before = walk.sources.len();
                            if walk.source(&p, v, SourceShape::Classic(CLASSIC_VARIANTS)) {
                                *slot = walk.sources.get(before).map(|s| s.source.clone());
                            }
                        }
                    }
                }
            }
            // Kong Mesh's CA backends: their data sources.
            ty if super::kong::is_kong_backend(ty) => {
                super::kong::kong_backend(walk, ty, b, &path);
            }
            other => walk.errors.push(field(
                &at(&path, "type"),
                format!("unsupported backend type {other:?} (builtin or provided)"),
            )),
        }
        backends.push(backend);
    }
    let enabled = get_str(mtls, "enabledBackend").or_else(|| get_str(mtls, "enabled_backend"));
    if let Some(enabled) = enabled {
        if !enabled.is_empty() && !backends.iter().any(|b| b.name == enabled) {
            walk.errors.push(field(
                &at(&mtls_path, "enabledBackend"),
                "has to be set to one of the backends in the mesh",
            ));
        }
    }
    backends
}

/// ExternalService `networking.tls` (external_service_validator.go).
pub(super) fn external_service(walk: &mut Walk<'_>, body: &Value, prefix: &str) {
    let Some(tls) = get(body, "networking").and_then(|n| get(n, "tls")) else {
        return;
    };
    let path = at(prefix, "networking.tls");
    for k in ["caCert", "clientCert", "clientKey"] {
        if let Some(v) = get(tls, k) {
            walk.source(&at(&path, k), v, SourceShape::Classic(CLASSIC_VARIANTS));
        }
    }
}

/// MeshExternalService `spec.tls.verification` (its validator.go: a
/// classic source in 2.14, a SecureDataSource of type Secret or
/// InsecureInline on main).
pub(super) fn mesh_external_service(walk: &mut Walk<'_>, body: &Value, prefix: &str) {
    let Some(v) = get(body, "tls").and_then(|t| get(t, "verification")) else {
        return;
    };
    let path = at(prefix, "tls.verification");
    let shape = SourceShape::Either(
        &["secret", "inline", "inlineString"],
        &["Secret", "InsecureInline"],
    );
    for k in ["caCert", "clientCert", "clientKey"] {
        if let Some(s) = get(v, k) {
            walk.source(&at(&path, k), s, shape);
        }
    }
    match (
        get(v, "clientCert").is_some(),
        get(v, "clientKey").is_some(),
    ) {
        (true, false) => walk.errors.push(field(
            &at(&path, "clientKey"),
            "must be defined when clientCert is defined",
        )),
        (false, true) => walk.errors.push(field(
            &at(&path, "clientCert"),
            "must be defined when clientKey is defined",
        )),
        _ => {}
    }
}

/// MeshGateway `conf.listeners[].tls` (gateway_validator.go). meshseal's
/// older TOML kept `listeners` at the top.
pub(super) fn mesh_gateway(walk: &mut Walk<'_>, body: &Value, prefix: &str, toml: bool) {
    let (holder, list_prefix) = match get(body, "conf") {
        Some(conf) => (conf, at(prefix, "conf")),
        None if toml && get(body, "listeners").is_some() => (body, prefix.to_string()),
        None => return,
    };
    let list_path = at(&list_prefix, "listeners");
    let listeners = walk.array(holder, "listeners", &list_path);
    for (i, l) in listeners.iter().enumerate() {
        let Some(tls) = get(l, "tls") else {
            continue;
        };
        let tls_path = format!("{list_path}[{i}].tls");
        let certs_path = at(&tls_path, "certificates");
        let certs = walk.array(tls, "certificates", &certs_path);
        let cross_mesh = get(l, "crossMesh")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if get_str(tls, "mode") == Some("TERMINATE") && !cross_mesh {
            if certs.is_empty() {
                walk.errors.push(field(
                    &certs_path,
                    "cannot be empty in TLS termination mode",
                ));
            } else if certs.len() > MAX_GATEWAY_CERTIFICATES {
                walk.errors.push(field(
                    &certs_path,
                    format!("cannot have more than {MAX_GATEWAY_CERTIFICATES} certificates"),
                ));
            }
        }
        for (j, c) in certs.iter().enumerate() {
            walk.source(
                &format!("{certs_path}[{j}]"),
                c,
                SourceShape::Classic(CLASSIC_VARIANTS),
            );
        }
    }
}

/// MeshIdentity `spec.provider.bundled.ca` (meshidentity validator.go).
pub(super) fn mesh_identity(walk: &mut Walk<'_>, spec: &Value, prefix: &str) {
    let Some(provider) = get(spec, "provider") else {
        return;
    };
    match get_str(provider, "type") {
        Some("Bundled") => {}
        Some("Extension") => return super::kong::identity_extension(walk, provider, prefix),
        _ => return, // Spire holds no secret
    }
    let path = at(prefix, "provider.bundled");
    let Some(bundled) = get(provider, "bundled") else {
        walk.errors
            .push(field(&path, "configuration needs to be defined"));
        return;
    };
    let autogenerate = get(bundled, "autogenerate")
        .and_then(|a| get(a, "enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ca_path = at(&path, "ca");
    match (autogenerate, get(bundled, "ca")) {
        (true, Some(_)) => walk.errors.push(field(
            &ca_path,
            "shouldn't be defined once using autogenerated",
        )),
        (true, None) => {}
        (false, None) => walk.errors.push(field(&ca_path, "must be defined")),
        (false, Some(ca)) => {
            for k in ["certificate", "privateKey"] {
                let p = at(&ca_path, k);
                match get(ca, k) {
                    None => walk.errors.push(field(&p, "must be defined")),
                    Some(v) => {
                        walk.source(&p, v, SourceShape::Secure(SECURE_TYPES));
                    }
                }
            }
        }
    }
}

/// MeshTrust `spec.caBundles` (meshtrust validator.go): PEM bundles in the
/// resource itself, no secret.
pub(super) fn mesh_trust(walk: &mut Walk<'_>, spec: &Value, prefix: &str) {
    let path = at(prefix, "caBundles");
    let bundles = walk.array(spec, "caBundles", &path);
    if bundles.is_empty() {
        walk.errors.push(field(&path, "must not be empty"));
    }
    for (i, b) in bundles.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match get_str(b, "type").unwrap_or("") {
            "Pem" => match get(b, "pem") {
                None => walk.errors.push(field(&at(&p, "pem"), "must be defined")),
                Some(pem) => {
                    let value = get_str(pem, "value").unwrap_or("");
                    let is_cert = pem_rfc7468::decode_vec(value.trim().as_bytes())
                        .is_ok_and(|(label, _)| label == "CERTIFICATE");
                    if !is_cert {
                        walk.errors.push(field(
                            &at(&p, "pem.value"),
                            "provided certificate has incorrect format",
                        ));
                    }
                }
            },
            other => walk.errors.push(field(
                &at(&p, "type"),
                format!("{other} must be one of: Pem"),
            )),
        }
    }
}
