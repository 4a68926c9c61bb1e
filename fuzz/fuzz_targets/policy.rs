//! The policy parser (Mesh and policies) and reference resolution.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshseal::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in [None, Some("n")] {
        if let Ok(p) = Policy::parse(text, "m", name) {
            let _ = p.resolve(&|id| id.name.len() % 2 == 0);
        }
    }
});
