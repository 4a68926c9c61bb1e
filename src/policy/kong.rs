//! Kong Mesh's secret-bearing fields (Kong Mesh 2.14; Kong Mesh is not open
//! source, so the shapes come from its documentation, developer.konghq.com):
//! the `vault`, `acmpca` and `certmanager` CA backends of a Mesh, MeshOPA's
//! Rego policies and agent configuration, and MeshIdentity's `Extension`
//! provider (Kong Mesh's vault, acmpca and certmanager extensions). Only
//! their data sources are judged (one variant, non-empty, a `secret`
//! resolving to a Secret of the mesh): their other rules are Kong Mesh's,
//! and unpublished.

use serde_json::Value;

use super::parse::*;

/// The data-source fields of a Kong Mesh CA backend's `conf`, by type
/// (developer.konghq.com: mesh/vault, mesh/acm-private-ca-policy,
/// mesh/cert-manager).
fn backend_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "vault" => &[
            "fromCp.tls.caCert",
            "fromCp.auth.token",
            "fromCp.auth.tls.clientKey",
            "fromCp.auth.tls.clientCert",
        ],
        "acmpca" => &[
            "caCert",
            "auth.awsCredentials.accessKey",
            "auth.awsCredentials.accessKeySecret",
        ],
        "certmanager" => &["caCert"],
        _ => &[],
    }
}

/// Whether `ty` is one of Kong Mesh's CA backends.
pub(super) fn is_kong_backend(ty: &str) -> bool {
    !backend_fields(ty).is_empty()
}

/// The value at a dotted path below `v`.
fn at_path<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| get(v, k))
}

/// A Kong Mesh CA backend's data sources (classic: `secret`, `inline`,
/// `inlineString`, `file`, as its documentation lists them).
pub(super) fn kong_backend(walk: &mut Walk<'_>, ty: &str, backend: &Value, path: &str) {
    let Some(conf) = get(backend, "conf") else {
        return;
    };
    let conf_path = at(path, "conf");
    for f in backend_fields(ty) {
        if let Some(v) = at_path(conf, f) {
            walk.source(
                &at(&conf_path, f),
                v,
                SourceShape::Classic(CLASSIC_VARIANTS),
            );
        }
    }
}

/// MeshOPA `spec.default.agentConfig` and `spec.default.appendPolicies[].rego`:
/// Kong Mesh's classic `inlineString` / `secret` (its docs: "one of:
/// inlineString, secret"; `inline` as Kuma's common DataSource has it), or a
/// SecureDataSource as its newer examples write it.
pub(super) fn mesh_opa(walk: &mut Walk<'_>, spec: &Value, prefix: &str) {
    let Some(default) = get(spec, "default") else {
        return;
    };
    let path = at(prefix, "default");
    let shape = SourceShape::Either(&["secret", "inline", "inlineString"], SECURE_TYPES);
    if let Some(v) = get(default, "agentConfig") {
        walk.source(&at(&path, "agentConfig"), v, shape);
    }
    let list_path = at(&path, "appendPolicies");
    let policies = walk.array(default, "appendPolicies", &list_path);
    for (i, p) in policies.iter().enumerate() {
        if let Some(rego) = get(p, "rego") {
            walk.source(&format!("{list_path}[{i}].rego"), rego, shape);
        }
    }
}

/// MeshIdentity's `Extension` provider (Kong Mesh 2.14: vault, acmpca,
/// certmanager): its `config` is the extension's own, so every
/// SecureDataSource in it (an object with a `secretRef`, or `type: Secret`)
/// is judged where it is, e.g. `connection.server.auth.token`.
pub(super) fn identity_extension(walk: &mut Walk<'_>, provider: &Value, prefix: &str) {
    let Some(config) = get(provider, "extension").and_then(|e| get(e, "config")) else {
        return;
    };
    let path = at(prefix, "provider.extension.config");
    secure_sources_below(walk, config, &path, 0);
}

/// The deepest a configuration is searched for data sources.
const MAX_DEPTH: usize = 16;

fn secure_sources_below(walk: &mut Walk<'_>, v: &Value, path: &str, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(map) => {
            if map.contains_key("secretRef") || get_str(v, "type") == Some("Secret") {
                walk.source(path, v, SourceShape::Secure(SECURE_TYPES));
                return;
            }
            for (k, child) in map {
                secure_sources_below(walk, child, &at(path, k), depth + 1);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                secure_sources_below(walk, child, &format!("{path}[{i}]"), depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Policy;

    fn parse(rel: &str, text: &str) -> Result<Vec<Policy>, Vec<String>> {
        Policy::parse_file(Path::new(rel), text)
            .expect("a policy path")
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    fn refs(p: &Policy) -> Vec<(String, String)> {
        p.secret_refs()
            .map(|(f, n)| (f.to_string(), n.to_string()))
            .collect()
    }

    /// developer.konghq.com mesh/vault (Universal tab) and
    /// mesh/acm-private-ca-policy, mesh/cert-manager.
    #[test]
    fn kong_mesh_ca_backends() {
        let vault = "type: Mesh\nname: pay\nmtls:\n  enabledBackend: vault-1\n  backends:\n  - name: vault-1\n    type: vault\n    conf:\n      fromCp:\n        address: https://vault.8200\n        pki: kmesh-pki-default\n        role: dataplane-proxies\n        tls:\n          caCert:\n            secret: sec-1\n        auth:\n          token:\n            secret: token-1\n          tls:\n            clientKey:\n              secret: sec-2\n            clientCert:\n              file: /tmp/cert.pem\n";
        let p = parse("meshes/pay/mesh.yaml", vault).unwrap();
        assert_eq!(
            refs(&p[0]),
            [
                ("mtls.backends[0].conf.fromCp.tls.caCert", "sec-1"),
                ("mtls.backends[0].conf.fromCp.auth.token", "token-1"),
                ("mtls.backends[0].conf.fromCp.auth.tls.clientKey", "sec-2"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(p[0].builtin_cas().count(), 0);
        let acm = "type: Mesh\nname: pay\nmtls:\n  backends:\n  - name: acmpca-1\n    type: acmpca\n    conf:\n      arn: arn:aws:acm-pca:region:account:certificate-authority/1\n      caCert:\n        secret: sec-1\n      auth:\n        awsCredentials:\n          accessKey:\n            secret: sec-2\n          accessKeySecret:\n            file: /tmp/k\n";
        assert_eq!(
            refs(&parse("meshes/pay/mesh.yaml", acm).unwrap()[0]).len(),
            2
        );
        let cm = "apiVersion: kuma.io/v1alpha1\nkind: Mesh\nmetadata:\n  name: pay\nspec:\n  mtls:\n    backends:\n    - name: certmanager-1\n      type: certmanager\n      conf:\n        issuerRef:\n          name: my-ca-issuer\n        caCert:\n          secret: ''\n";
        assert_eq!(
            parse("meshes/pay/mesh.yaml", cm).unwrap_err(),
            vec!["spec.mtls.backends[0].conf.caCert.secret: cannot be empty"]
        );
    }

    /// developer.konghq.com mesh policies "MeshOPA": `rego.secret` (With
    /// secrets), `inlineString` (Inline), and the SecureDataSource of the
    /// example "Keep a rego policy in a secret".
    #[test]
    fn mesh_opa_policies() {
        let opa = "type: MeshOPA\nmesh: pay\nname: mopa-1\nspec:\n  targetRef:\n    kind: Mesh\n  default:\n    agentConfig:\n      inlineString: |\n        decision_logs:\n          console: true\n    appendPolicies:\n      - rego:\n          secret: mopa-policy\n      - rego:\n          type: Secret\n          secretRef:\n            kind: Secret\n            name: backend-authz-policy\n";
        let p = parse("meshes/pay/policies/opa.yaml", opa).unwrap();
        assert_eq!(
            refs(&p[0]),
            [
                ("spec.default.appendPolicies[0].rego", "mopa-policy"),
                (
                    "spec.default.appendPolicies[1].rego",
                    "backend-authz-policy"
                ),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // The same in TOML, Universal's keys and nesting.
        let toml = "type = \"MeshOPA\"\nmesh = \"pay\"\nname = \"mopa-1\"\n[spec.targetRef]\nkind = \"Mesh\"\n[[spec.default.appendPolicies]]\nrego = { secret = \"mopa-policy\" }\n[[spec.default.appendPolicies]]\nrego = { type = \"Secret\", secretRef = { kind = \"Secret\", name = \"\" } }\n";
        assert_eq!(
            parse("meshes/pay/policies/opa.toml", toml).unwrap_err(),
            vec!["spec.default.appendPolicies[1].rego.secretRef.name: must be defined"]
        );
        let two = opa.replace(
            "secret: mopa-policy",
            "secret: a\n          inlineString: b",
        );
        assert_eq!(
            parse("meshes/pay/policies/opa.yaml", &two).unwrap_err(),
            vec!["spec.default.appendPolicies[0].rego: must have exactly one of secret, inline, inlineString"]
        );
    }

    /// developer.konghq.com mesh policies "MeshIdentity" examples
    /// vault-provider.yaml and certmanager-provider.yaml (Kong Mesh 2.14).
    #[test]
    fn mesh_identity_extension_providers() {
        let vault = "type: MeshIdentity\nmesh: pay\nname: identity-vault\nspec:\n  selector:\n    dataplane:\n      matchLabels: {}\n  provider:\n    type: Extension\n    extension:\n      name: vault\n      config:\n        connection:\n          type: Server\n          server:\n            address: https://vault.vault.svc:8200\n            tls:\n              caCert:\n                type: Secret\n                secretRef:\n                  kind: Secret\n                  name: vault-ca\n            auth:\n              type: Token\n              token:\n                type: Secret\n                secretRef:\n                  kind: Secret\n                  name: vault-token\n        pki:\n          mount: kong-mesh-pki-default\n          role: dataplanes\n";
        let p = parse("meshes/pay/policies/id.yaml", vault).unwrap();
        assert_eq!(
            refs(&p[0]),
            [
                (
                    "spec.provider.extension.config.connection.server.tls.caCert",
                    "vault-ca"
                ),
                (
                    "spec.provider.extension.config.connection.server.auth.token",
                    "vault-token"
                ),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let bad = vault.replace(
            "kind: Secret\n                  name: vault-ca",
            "kind: ConfigMap\n                  name: vault-ca",
        );
        assert_eq!(
            parse("meshes/pay/policies/id.yaml", &bad).unwrap_err(),
            vec!["spec.provider.extension.config.connection.server.tls.caCert.secretRef.kind: ConfigMap must be one of: Secret"]
        );
    }
}
