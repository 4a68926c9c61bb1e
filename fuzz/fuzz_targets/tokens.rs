//! The API tokens-file parser and authorization.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tokens) = meshseal::tokens::Tokens::parse(text) {
            let _ = tokens.authorize(text);
        }
    }
});
