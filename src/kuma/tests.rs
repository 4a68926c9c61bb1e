//! Kuma YAML in and out: secrets, both forms, every problem at once.
use super::*;
use crate::document::{SecretData, DEFAULT_MAX_DATA_BYTES as MAX};

#[test]
fn json_bytes_match_the_json_value() {
    for (scope, labels) in [
        (Scope::Mesh("pay".into()), vec![]),
        (
            Scope::Global,
            vec![("team".to_string(), "a \"b\"\u{1}\n\u{7f}é".to_string())],
        ),
    ] {
        // Every padding (lengths 1 to 3 modulo 3) and a longer value.
        for data in [
            vec![0, 255, b'x', 7],
            vec![1],
            vec![1, 2],
            vec![1, 2, 3],
            (0..=255).collect(),
        ] {
            let id = SecretId::new(scope.clone(), "db").unwrap();
            let mut doc = Document::new(id, SecretData::new(data));
            doc.labels = labels.iter().cloned().collect();
            let bytes = to_json_bytes(&doc);
            let mut want = serde_json::to_vec(&to_json(&doc, true)).unwrap();
            want.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&want)
            );
        }
    }
}

#[test]
fn json_bytes_fit_the_buffer_with_labels_that_escape_every_byte() {
    // Control characters escape to six bytes each: the worst case the
    // buffer is sized for (a debug assertion checks that it never grew).
    let worst: String = (0u8..32).map(char::from).collect();
    let id = SecretId::new(Scope::Mesh("pay".into()), "db").unwrap();
    let mut doc = Document::new(id, SecretData::new(vec![9; 100]));
    doc.labels = (0..8)
        .map(|i| (format!("{worst}{i}"), worst.clone()))
        .collect();
    let bytes = to_json_bytes(&doc);
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed, to_json(&doc, true));
}

#[test]
fn universal_multi_document() {
    let docs = parse_apply(
        "type: Secret\nmesh: pay\nname: db\ndata: c2VjcmV0\n---\ntype: GlobalSecret\nname: ca\ndata: YQ==\n---\n",
        MAX,
    )
    .unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].data.expose(), b"secret");
    assert_eq!(docs[1].id.scope, Scope::Global);
}

#[test]
fn every_problem_is_reported() {
    let errs = parse_apply(
        "type: Secret\nmesh: pay\nname: BAD\ndata: YQ==\n---\ntype: GlobalSecret\nmesh: m\nname: a\ndata: YQ==\n---\ntype: Secret\nmesh: pay\nname: e\ndata: ''\n",
        MAX,
    )
    .unwrap_err();
    assert_eq!(errs.len(), 3);
    assert!(errs[1]
        .to_string()
        .contains("mesh cannot be set on global secret"));
    assert!(errs[2].to_string().contains("data: cannot be empty"));
}

#[test]
fn kubernetes_round_trip() {
    let a = Document::new(
        SecretId::new(Scope::Mesh("pay".into()), "db").unwrap(),
        SecretData::new(b"s3".to_vec()),
    );
    let b = Document::new(
        SecretId::new(Scope::Global, "ca").unwrap(),
        SecretData::new(b"x".to_vec()),
    );
    let yaml = export_kubernetes(&[&a, &b], DEFAULT_NAMESPACE);
    assert!(yaml.contains("type: system.kuma.io/secret"));
    assert!(yaml.contains("kuma.io/mesh: pay"));
    assert!(yaml.contains("type: system.kuma.io/global-secret"));
    let back = parse_apply(&yaml, MAX).unwrap();
    assert_eq!(back, vec![a.clone(), b.clone()]);
    let uni = export_universal(&[&a, &b]);
    assert_eq!(parse_apply(&uni, MAX).unwrap(), vec![a, b]);
}

#[test]
fn kubernetes_string_data_is_plain_text_and_wins_over_data() {
    let yaml = "apiVersion: v1\nkind: Secret\ntype: system.kuma.io/secret\nmetadata:\n  name: db\n  labels: { kuma.io/mesh: pay }\nstringData:\n  value: hunter2\n";
    let docs = parse_apply(yaml, MAX).unwrap();
    assert_eq!(docs[0].data.expose(), b"hunter2");
    let both = format!("{yaml}data:\n  value: b3RoZXI=\n");
    assert_eq!(
        parse_apply(&both, MAX).unwrap()[0].data.expose(),
        b"hunter2"
    );
}

#[test]
fn yaml_errors_have_lines_and_no_values() {
    let errs = parse_apply("type: Secret\nmesh: pay\nname: x\ndata: [8675309\n", MAX).unwrap_err();
    assert!(errs[0].line().is_some());
    assert!(!errs[0].to_string().contains("8675309"));
    let errs = parse_apply("type: Secret\nmesh: pay\nname: x\ndata: 8675309\n", MAX).unwrap_err();
    assert!(!errs[0].to_string().contains("8675309"), "{}", errs[0]);
    let errs = parse_apply("kind: Deployment\n", MAX).unwrap_err();
    assert!(matches!(errs[0], ResourceError::Unsupported { .. }));
    let errs = parse_apply("type: Secret\nmesh: p\nname: a\ndata: YQ==\n---\ntype: Secret\nmesh: p\nname: a\ndata: Yg==\n", MAX).unwrap_err();
    assert!(matches!(errs[0], ResourceError::Duplicate { .. }));
}

/// Resources are written in plaintext: a secret with a misspelt type, or any
/// document carrying secret data, is never taken for one.
#[test]
fn nothing_secret_is_taken_for_a_plaintext_resource() {
    for yaml in [
        "type: secret\nmesh: pay\nname: db\ndata: c2VjcmV0\n",
        "type: Secrets\nmesh: pay\nname: db\ndata: c2VjcmV0\n",
        "apiVersion: kuma.io/v1alpha1\nkind: globalsecret\nmetadata:\n  name: db\n",
        "apiVersion: kuma.io/v1alpha1\nkind: Token\nmetadata:\n  name: db\nstringData:\n  value: hunter2\n",
        "items:\n  - type: GlobalSecrets\n    name: db\n    data: c2VjcmV0\n",
    ] {
        let errs = parse_input(yaml, MAX).unwrap_err();
        assert_eq!(errs.len(), 1, "{yaml}: {errs:?}");
        let text = errs[0].to_string();
        assert!(
            text.contains("a secret is a Secret or GlobalSecret"),
            "{yaml}: {text}"
        );
        assert!(!text.contains("c2VjcmV0") && !text.contains("hunter2"), "{text}");
    }
}

/// `kumactl get meshes -o yaml` and `kubectl get meshes -o yaml` print
/// lists; each item is a resource, named by its place in the list.
#[test]
fn lists_of_resources() {
    let uni = "items:\n  - type: Mesh\n    name: pay\n  - type: Secret\n    mesh: pay\n    name: db\n    data: YQ==\nnext: null\ntotal: 2\n";
    let parsed = parse_input(uni, MAX).unwrap();
    assert_eq!(parsed.secrets.len(), 1);
    assert_eq!(parsed.resources.len(), 1);
    assert_eq!(parsed.resources[0].0.to_string(), "document 1: items[0]");
    let k8s = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: kuma.io/v1alpha1\n    kind: Mesh\n    metadata:\n      name: pay\n  - apiVersion: kuma.io/v1alpha1\n    kind: Mesh\n    metadata:\n      name: Bad\n";
    let errs = parse_input(k8s, MAX).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .starts_with("document 1: items[1]: metadata.name: "),
        "{}",
        errs[0]
    );
    // parse_apply (secrets only) refuses the resources, naming them.
    let errs = parse_apply(uni, MAX).unwrap_err();
    assert!(matches!(errs[0], ResourceError::Unsupported { .. }));
}
