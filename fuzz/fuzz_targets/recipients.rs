//! The recipients-file parser (age's format), add/remove on its text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshseal::recipients::{add_to_text, remove_from_text, RecipientSet};

fuzz_target!(|data: &[u8]| {
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
});
