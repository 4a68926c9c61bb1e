//! The policy parser (Mesh and policies, TOML and both YAML forms, one or
//! several documents) and reference resolution (`properties::policy`,
//! shared with `tests/fuzz_corpus.rs`), and the paths issue 14 added beside
//! it: the same text read as whole resources (`Resource::parse_file`), each
//! one's Kubernetes form read back as the same resource, and read as an
//! `apply -f` input (`kuma::parse_input`, lists included), whose export in
//! either form applies back to the same secrets and resources.
#![no_main]
use libfuzzer_sys::fuzz_target;

use meshseal::kuma::{self, Export};
use meshseal::policy::{to_universal, Resource};

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

/// A resource's Kubernetes form is the same resource in Universal.
fn kubernetes_round_trip(r: &Resource) {
    let k8s = r
        .to_kubernetes("kuma-system")
        .expect("a parsed resource has a Kubernetes form");
    let back = to_universal(&k8s).expect("its Kubernetes form reads back");
    assert!(
        meshseal::policy::same_resource(&back, &r.universal),
        "{:?} != {:?}",
        back,
        r.universal
    );
}

fn resources(text: &str) {
    for rel in [
        "meshes/m/mesh.toml",
        "meshes/m/mesh.yaml",
        "meshes/m/policies/n.toml",
        "meshes/m/policies/n.yaml",
    ] {
        let parsed = Resource::parse_file(std::path::Path::new(rel), text).expect("a policy path");
        if let Ok(all) = parsed {
            for r in &all {
                assert_eq!(r.policy.mesh, "m");
                kubernetes_round_trip(r);
            }
        }
    }
}

fn apply_input(text: &str) {
    let Ok(parsed) = kuma::parse_input(text, 4096) else {
        return;
    };
    for (_, r) in &parsed.resources {
        kubernetes_round_trip(r);
    }
    let export = Export {
        secrets: parsed.secrets.iter().collect(),
        resources: parsed.resources.iter().map(|(_, r)| r).collect(),
    };
    for namespace in [None, Some("kuma-system")] {
        // A Kubernetes export may be refused (a name clash): that is its answer.
        let Ok(out) = kuma::export_all(&export, namespace) else {
            assert!(namespace.is_some(), "a Universal export is never refused");
            continue;
        };
        let again = kuma::parse_input(&out, 4096).expect("an export applies back");
        let mut secrets = again.secrets.clone();
        let mut want = parsed.secrets.clone();
        secrets.sort_by(|a, b| a.id.cmp(&b.id));
        want.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(secrets, want);
        assert_eq!(again.resources.len(), parsed.resources.len());
        for (_, r) in &parsed.resources {
            assert!(
                again.resources.iter().any(|(_, b)| b.same_as(r)),
                "{} did not come back",
                r.describe()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    properties::policy(data);
    if let Ok(text) = std::str::from_utf8(data) {
        resources(text);
        apply_input(text);
    }
});
