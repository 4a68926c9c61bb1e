//! The decrypted secret document parser: any bytes give a document or an
//! error, never a panic; a parsed document re-serializes and parses to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshseal::document::Document;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = Document::parse(data, 4096) {
        let again = Document::parse(doc.to_toml().as_bytes(), 4096).expect("round trip");
        assert_eq!(again, doc);
    }
});
