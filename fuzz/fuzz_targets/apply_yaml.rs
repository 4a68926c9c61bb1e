//! The Kuma YAML parser behind `apply -f` (Universal and Kubernetes forms).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
