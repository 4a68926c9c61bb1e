//! The schema against Kuma's shapes, both forms, YAML and TOML.
use super::*;

fn parse(rel: &str, text: &str) -> Result<Vec<Policy>, Vec<String>> {
    Policy::parse_file(Path::new(rel), text)
        .expect("a policy path")
        .map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

#[test]
fn policy_types() {
    let es = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking]\naddress = \"httpbin.org:443\"\n[networking.tls]\ncaCert = { secret = \"ca\" }\nclientCert = { inline = \"YQ==\" }\n";
    let p = parse("meshes/pay/policies/bin.toml", es).unwrap();
    assert_eq!(p[0].sources.len(), 2);
    let mes = "type = \"MeshExternalService\"\nmesh = \"pay\"\nname = \"x\"\n[spec.tls.verification]\nclientCert = { secret = \"c\" }\n";
    assert_eq!(
        parse("meshes/pay/policies/x.toml", mes).unwrap_err(),
        vec!["spec.tls.verification.clientKey: must be defined when clientCert is defined"]
    );
    let gw = "type = \"MeshGateway\"\nmesh = \"pay\"\nname = \"gw\"\n[[conf.listeners]]\nport = 443\n[conf.listeners.tls]\ncertificates = [{ secret = \"a\" }, { file = \"/x\" }]\n";
    let p = parse("meshes/pay/policies/gw.toml", gw).unwrap();
    assert_eq!(
        p[0].secret_refs().next(),
        Some(("conf.listeners[0].tls.certificates[0]", "a"))
    );
    assert_eq!(
        parse("meshes/other/policies/bin.toml", es).unwrap_err(),
        vec!["mesh: \"pay\" does not match its path (\"other\")"]
    );
    let two = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n[networking.tls]\ncaCert = { secret = \"ca\", file = \"/x\" }\n";
    assert!(parse("meshes/pay/policies/bin.toml", two).unwrap_err()[0].contains("exactly one of"));
}

#[test]
fn older_flattened_toml_still_reads() {
    let gw = "type = \"MeshGateway\"\nmesh = \"pay\"\nname = \"gw\"\n[[listeners]]\nport = 443\n[listeners.tls]\ncertificates = [{ secret = \"a\" }]\n";
    let p = parse("meshes/pay/policies/gw.toml", gw).unwrap();
    assert_eq!(
        p[0].secret_refs().next(),
        Some(("listeners[0].tls.certificates[0]", "a"))
    );
    let mes = "type = \"MeshExternalService\"\nmesh = \"pay\"\nname = \"x\"\n[tls.verification]\ncaCert = { secret = \"c\" }\n";
    let p = parse("meshes/pay/policies/x.toml", mes).unwrap();
    assert_eq!(
        p[0].secret_refs().next(),
        Some(("tls.verification.caCert", "c"))
    );
}

#[test]
fn a_file_is_parsed_by_what_its_path_says() {
    let es = "type = \"ExternalService\"\nmesh = \"pay\"\nname = \"bin\"\n";
    let p = parse("meshes/pay/policies/anything.toml", es).unwrap();
    assert_eq!((p[0].mesh.as_str(), p[0].name.as_str()), ("pay", "bin"));
    let e = Policy::parse_file(Path::new("meshes/web/policies/bin.toml"), es)
        .expect("a policy path")
        .unwrap_err();
    assert!(matches!(
        &e[0],
        PolicyFileError::Invalid {
            source: PolicyError::Mismatch { field: "mesh", .. },
            ..
        }
    ));
    assert_eq!(
        crate::problem::Diagnostic::file(&e[0]),
        Some(Path::new("meshes/web/policies/bin.toml"))
    );
    assert!(Policy::parse_file(Path::new("meshes/pay/recipients.txt"), es).is_none());
}

#[test]
fn malformed_yaml_names_its_line() {
    let e = Policy::parse_file(Path::new("meshes/pay/policies/x.yaml"), "a: [\n")
        .unwrap()
        .unwrap_err();
    assert!(e[0].to_string().starts_with("invalid YAML"), "{}", e[0]);
    assert!(crate::problem::Diagnostic::line(&e[0]).is_some());
}

/// Found by the policy fuzz target: a MeshOPA with `default` beside `spec`
/// read as the older shape in its Kubernetes form, where `spec.default` is
/// judged. A newer kind keeps its fields under `spec`.
#[test]
fn a_newer_kind_has_no_field_beside_spec() {
    let text = "type: MeshOPA\nmesh: m\nname: o\nspec:\n  targetRef:\n    kind: Mesh\ndefault:\n  agentConfig:\n    inlineSttring: x\n";
    assert_eq!(
        parse("meshes/m/policies/o.yaml", text).unwrap_err(),
        vec!["default: unknown field: a MeshOPA keeps its fields under spec"]
    );
    // The older kinds keep theirs at the top; a Mesh is in no mesh.
    assert!(parse(
        "meshes/m/policies/e.yaml",
        "type: ExternalService\nmesh: m\nname: e\nnetworking: {}\n"
    )
    .is_ok());
    assert_eq!(
        parse("meshes/m/mesh.yaml", "type: Mesh\nname: m\nmesh: m\n").unwrap_err(),
        vec!["mesh: cannot be set on a Mesh"]
    );
}
