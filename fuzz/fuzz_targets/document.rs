//! The decrypted secret document parser: any bytes give a document or an
//! error, never a panic; a parsed document re-serializes and parses to itself.
//! The property itself is in `properties.rs`, shared with `tests/fuzz_corpus.rs`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

fuzz_target!(|data: &[u8]| properties::document(data));
