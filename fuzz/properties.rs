//! What each fuzz target checks, in one place for two users: the cargo-fuzz
//! targets in `fuzz_targets/`, and `tests/fuzz_corpus.rs`, which replays the
//! committed corpus (`corpus/<target>/`) and every past finding
//! (`regressions/<target>/`) in the normal test suite, so that CI runs them.
//!
//! Each property takes arbitrary bytes and may only return or panic; a panic
//! is a finding.

use meshseal::document::Document;
use meshseal::policy::Policy;
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
    ("tokens", tokens),
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

/// The policy parser (Mesh and policies) and reference resolution.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in [None, Some("n")] {
        if let Ok(p) = Policy::parse(text, "m", name) {
            let _ = p.resolve(&|id| id.name.len() % 2 == 0);
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
