//! The policy parser (Mesh and policies, TOML and both YAML forms, one or
//! several documents), reference resolution, whole resources and their
//! Kubernetes form, and the same text as an `apply -f` input whose exports
//! apply back. The property itself is in `properties.rs`, shared with
//! `tests/fuzz_corpus.rs`, which replays the committed corpus.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

fuzz_target!(|data: &[u8]| properties::policy(data));
