//! `sshsig` signatures and `allowed_signers` files: parse, verify, render,
//! look up and edit. The property itself is in `properties.rs`, shared with
//! the test suite's corpus replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

fuzz_target!(|data: &[u8]| properties::signature(data));
