//! The keyless header reader (armor, age header, meshseal's stanza).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meshseal::envelope::read_header(data);
    let _ = meshseal::envelope::sniff(data);
});
