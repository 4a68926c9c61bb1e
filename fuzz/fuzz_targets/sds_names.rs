//! What the SDS server parses: resource names, PEM bundles and its lean gRPC requests.
//! The property itself is in `properties.rs`, shared with `tests/fuzz_corpus.rs`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

fuzz_target!(|data: &[u8]| properties::sds_names(data));
