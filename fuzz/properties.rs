//! What each fuzz target checks, in one place for two users: the cargo-fuzz
//! targets in `fuzz_targets/`, and `tests/fuzz_corpus.rs`, which replays the
//! committed corpus (`corpus/<target>/`) and every past finding
//! (`regressions/<target>/`) in the normal test suite, so that CI runs them.
//!
//! Each property takes arbitrary bytes and may only return or panic; a panic
//! is a finding.

use meshseal::document::Document;
use meshseal::kuma::{self, Export};
use meshseal::policy::{to_universal, Policy, Resource};
use meshseal::recipients::{add_to_text, remove_from_text, RecipientSet};

/// A property: returns, or panics on a finding.
pub type Property = fn(&[u8]);

/// Every target, by the name of its folder under `corpus/`.
pub const TARGETS: &[(&str, Property)] = &[
    ("apply_yaml", apply_yaml),
    ("document", document),
    ("header", header),
    ("policy", policy),
    ("recipients", recipients),
    ("sds_names", sds_names),
    ("tokens", tokens),
    ("signature", signature),
];

/// The Kuma YAML parser behind `apply -f` (Universal and Kubernetes forms):
/// what parses exports and parses back to the same documents.
pub fn apply_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(docs) = meshseal::kuma::parse_apply(text, 4096) {
            let refs: Vec<_> = docs.iter().collect();
            let yaml = meshseal::kuma::export_universal(&refs);
            assert_eq!(
                meshseal::kuma::parse_apply(&yaml, 4096).expect("round trip"),
                docs
            );
        }
    }
}

/// The decrypted secret document parser: any bytes give a document or an
/// error; a parsed document re-serializes and parses to itself.
pub fn document(data: &[u8]) {
    if let Ok(doc) = Document::parse(data, 4096) {
        let again = Document::parse(doc.to_toml().as_bytes(), 4096).expect("round trip");
        assert_eq!(again, doc);
    }
}

/// The keyless header reader (armor, age header, meshseal's stanza).
pub fn header(data: &[u8]) {
    let _ = meshseal::envelope::read_header(data);
    let _ = meshseal::envelope::sniff(data);
}

/// The policy parser (Mesh and policies, TOML and both YAML forms, one or
/// several documents) and reference resolution: never a panic. Beside it,
/// the paths issue 14 added: the same text read as whole resources
/// (`Resource::parse_file`), each one's Kubernetes form read back as the
/// same resource, and read as an `apply -f` input (`kuma::parse_input`,
/// lists included), whose export in either form applies back to the same
/// secrets and resources.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for rel in POLICY_PATHS {
        let parsed = Policy::parse_file(std::path::Path::new(rel), text).expect("a policy path");
        if let Ok(policies) = parsed {
            for p in policies {
                assert_eq!(p.mesh, "m");
                let _ = p.resolve(&|id| id.name.len() % 2 == 0);
            }
        }
        let parsed = Resource::parse_file(std::path::Path::new(rel), text).expect("a policy path");
        if let Ok(all) = parsed {
            for r in &all {
                assert_eq!(r.policy.mesh, "m");
                kubernetes_round_trip(r);
            }
        }
    }
    policy_apply_input(text);
}

/// Where `policy` reads its text: each kind of policy file.
const POLICY_PATHS: [&str; 4] = [
    "meshes/m/mesh.toml",
    "meshes/m/mesh.yaml",
    "meshes/m/policies/n.toml",
    "meshes/m/policies/n.yaml",
];

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

/// `text` as an `apply -f` input: its resources' Kubernetes forms read
/// back, and both exports apply back to the same secrets and resources.
fn policy_apply_input(text: &str) {
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

/// The recipients-file parser (age's format), and add/remove on its text:
/// removing a key and adding it back gives the same recipient set.
pub fn recipients(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = RecipientSet::parse(text) {
        let _ = set.fingerprint();
        let keys: Vec<_> = set.iter().cloned().collect();
        if let Some(first) = keys.first() {
            let (removed, _) = remove_from_text(text, first);
            let (back, _) = add_to_text(&removed, &keys).expect("removed text still parses");
            assert_eq!(
                RecipientSet::parse(&back).unwrap().fingerprint(),
                set.fingerprint()
            );
        }
    }
}

/// The API tokens-file parser and authorization.
pub fn tokens(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tokens) = meshseal::tokens::Tokens::parse(text) {
            let _ = tokens.authorize(text);
        }
    }
}

/// `sshsig` signatures and `allowed_signers` files (SPEC 9): any bytes give a
/// value or an error, never a panic. A parsed signature re-armors to one
/// that parses the same and verifies (or not) in either namespace; a parsed
/// allowed signers text renders to one that parses to the same entries, its
/// lookups answer, and `writers remove` then `add` of a listed principal
/// leaves that principal's key allowed.
pub fn signature(data: &[u8]) {
    use meshseal::signing::allowed_signers::{self, AllowedSigners};
    use meshseal::signing::{verify_deferred, Deferral, Namespace, Signature};

    if let Ok(sig) = Signature::parse(data) {
        let again = Signature::parse(sig.to_armored().as_bytes()).expect("re-armored parses");
        assert_eq!(again, sig);
        // The fast armor decoder accepts nothing ssh-key's own would not,
        // and reads the same signature from it.
        let reference = ssh_key::SshSig::from_pem(data).expect("ssh-key accepts it too");
        assert_eq!(
            reference.to_pem(ssh_key::LineEnding::LF).ok(),
            Some(sig.to_armored()),
            "ssh-key reads another signature"
        );
        for namespace in [Namespace::Secret, Namespace::Scope] {
            let alone = sig.verify(b"meshseal fuzz", namespace);
            // With its key decompressed as a writers.txt listing it holds
            // it: verified as a known key it verifies exactly as alone; in
            // a batch, whatever verifies alone verifies (docs/writers.md
            // says why the converse needs the signer's private key).
            let Ok(key) = sig.public_key().to_openssh() else {
                continue;
            };
            let Ok(signers) = AllowedSigners::parse(&format!("fuzz@example.com {key}\n")) else {
                continue;
            };
            let known = |k: &[u8; 32]| signers.verifying_key(k).copied();
            let fast = sig.verify_known(b"meshseal fuzz", namespace, known);
            assert_eq!(fast.is_ok(), alone.is_ok(), "verify_known disagrees");
            assert_eq!(fast.ok(), alone.as_ref().ok().cloned());
            let prepared = |k: &[u8; 32]| signers.prepared_key(k).cloned();
            if let Deferral::Batch(d) = sig.clone().defer(b"meshseal fuzz", namespace, prepared) {
                let ok = verify_deferred(&[&d]);
                assert!(
                    ok[0] || alone.is_err(),
                    "a batch refused what verifies alone"
                );
                // The prepared key's fingerprint and key are the ones the
                // signature's own verification reports.
                if let (Ok(alone), (_, Ok(batched))) = (&alone, d.conclude(ok[0])) {
                    assert_eq!(&batched, alone, "a batch names another signer");
                }
            }
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    scope_header(text);
    let parsed = AllowedSigners::parse(text);
    assert_eq!(
        parsed.is_ok(),
        AllowedSigners::problems(text).is_empty(),
        "parse and problems disagree"
    );
    let Ok(signers) = parsed else {
        return;
    };
    let fields = |s: &AllowedSigners| {
        s.entries()
            .iter()
            .map(|e| {
                (
                    e.principals().to_string(),
                    e.cert_authority(),
                    e.namespaces().map(str::to_string),
                    e.valid_after(),
                    e.valid_before(),
                    e.key().clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let rendered = AllowedSigners::parse(&signers.to_text()).expect("rendered text parses");
    assert_eq!(fields(&rendered), fields(&signers));
    const AT: u64 = 1_750_000_000;
    for entry in signers.entries() {
        let key = entry.key().key_data();
        for principal in entry.principal_list() {
            let _ = signers.authorize(key, Some(principal), "meshseal", AT);
        }
        let _ = signers.authorize(key, None, "meshseal-scope", AT);
    }
    let Some(entry) = signers.entries().first() else {
        return;
    };
    let principal = entry.principal_list().next().unwrap_or_default();
    let removal =
        allowed_signers::remove_from_text(text, principal).expect("a listed principal is removed");
    AllowedSigners::parse(&removal.text).expect("the text left parses");
    if let Ok((added, _)) = allowed_signers::add_to_text(&removal.text, principal, entry.key()) {
        let back = AllowedSigners::parse(&added).expect("the text with the line added parses");
        assert!(
            back.authorize(entry.key().key_data(), Some(principal), "meshseal", AT)
                .is_ok(),
            "a principal just added is not allowed"
        );
    }
}

/// What the SDS server parses from Envoy and from a secret's data: resource
/// names (one per line; a valid one prints back as itself, and a request's
/// names parse as a bounded set) and the data as PEM (a resource built from
/// it is built again, identically, from what it serves; split at the first
/// NUL it is a certificate secret and a key secret), and the bytes as a
/// gRPC request, decoded lean and in full ([`sds_requests`]).
pub fn sds_names(data: &[u8]) {
    use meshseal::serve::sds::names::{parse_all, ResourceName};
    use meshseal::serve::sds::resources::build;
    // A fixed clock: the same input always gives the same outcome.
    const NOW: i64 = 1_750_000_000;
    if let Ok(text) = std::str::from_utf8(data) {
        let lines: Vec<&str> = text.lines().collect();
        for line in lines.iter().take(64) {
            if let Ok(name) = ResourceName::parse(line) {
                assert_eq!(name.to_string(), *line);
                assert_eq!(ResourceName::parse(&name.to_string()).unwrap(), name);
            }
        }
        if let Ok(set) = parse_all(lines.iter().copied()) {
            assert!(set.len() <= lines.len());
        }
    }
    let single = ResourceName::parse("m/s").unwrap();
    if let Ok(r) = build(&single, &[data], NOW) {
        let again = build(&single, &[&r.served_data()], NOW).expect("served data builds");
        assert_eq!(again.digest(), r.digest());
        assert_eq!(again.kind(), r.kind());
    }
    if let Some(at) = data.iter().position(|&b| b == 0) {
        let pair = ResourceName::parse("m/c+k").unwrap();
        let _ = build(&pair, &[&data[..at], &data[at + 1..]], NOW);
    }
    sds_requests(data);
}

/// The same bytes as a gRPC request of the SDS server: its lean messages
/// (`serve::sds::request`) decode whatever the Envoy API's full messages
/// decode, to the same values in the fields they keep.
fn sds_requests(data: &[u8]) {
    use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
    use meshseal::serve::sds::request::{DeltaRequest, SotwRequest};
    use prost::Message as _;

    let lean = SotwRequest::decode(data);
    if let Ok(full) = DiscoveryRequest::decode(data) {
        let lean = lean.expect("a request the full message decodes decodes lean");
        assert_eq!(lean.version_info, full.version_info);
        assert_eq!(
            lean.node.map(|n| (n.id, n.cluster)),
            full.node.map(|n| (n.id, n.cluster))
        );
        assert_eq!(lean.resource_names, full.resource_names);
        assert_eq!(lean.type_url, full.type_url);
        assert_eq!(lean.response_nonce, full.response_nonce);
        assert_eq!(
            lean.error_detail.map(|d| (d.code, d.message)),
            full.error_detail.map(|d| (d.code, d.message))
        );
    }
    let lean = DeltaRequest::decode(data);
    if let Ok(full) = DeltaDiscoveryRequest::decode(data) {
        let lean = lean.expect("a delta request the full message decodes decodes lean");
        assert_eq!(
            lean.node.map(|n| (n.id, n.cluster)),
            full.node.map(|n| (n.id, n.cluster))
        );
        assert_eq!(lean.type_url, full.type_url);
        assert_eq!(lean.resource_names_subscribe, full.resource_names_subscribe);
        assert_eq!(
            lean.resource_names_unsubscribe,
            full.resource_names_unsubscribe
        );
        let full_versions: std::collections::BTreeMap<String, String> =
            full.initial_resource_versions.into_iter().collect();
        assert_eq!(lean.initial_resource_versions, full_versions);
        assert_eq!(lean.response_nonce, full.response_nonce);
        assert_eq!(
            lean.error_detail.map(|d| (d.code, d.message)),
            full.error_detail.map(|d| (d.code, d.message))
        );
    }
}

/// A scope file's `# meshseal <kind> <store> <scope> generation <N>` first
/// line (SPEC 9): what parses renders back to itself, and putting a header
/// on any text yields exactly that header.
fn scope_header(text: &str) {
    use meshseal::writers::header::{generation_of, with_header, ScopeHeader};

    let parsed = ScopeHeader::parse(text);
    if let Some(Ok(h)) = &parsed {
        assert_eq!(ScopeHeader::parse(&h.line()), Some(Ok(h.clone())));
        assert_eq!(generation_of(text), h.generation);
    }
    let header = ScopeHeader {
        file: meshseal::scope::ScopeFile::Writers,
        store_id: "0123456789abcdef".to_string(),
        scope: meshseal::scope::Scope::Global,
        generation: 7,
    };
    let rewritten = with_header(text, &header);
    assert_eq!(ScopeHeader::parse(&rewritten), Some(Ok(header)));
    // What follows the header is kept.
    let body = match parsed {
        Some(_) => text.split_once('\n').map_or("", |(_, rest)| rest),
        None => text,
    };
    assert!(rewritten.ends_with(body));
}
