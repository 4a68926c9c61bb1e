//! Hostile files, properly encrypted to the store's own key or not encrypted
//! at all: each is refused with an error naming the file, never a crash or
//! a hang, and nothing in the store changes.

use std::fs;
use std::time::Duration;

use crate::age_files::*;
use crate::env::*;
use crate::tools::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Writes a properly encrypted file for `meshes/default/secrets/<name>.age`
/// with a correct header, around `plaintext`.
fn plant(env: &TestEnv, name: &str, plaintext: &[u8]) -> String {
    let rel = format!("meshes/default/secrets/{name}.age");
    let fp = env.fingerprint(&["-m", "default"]);
    let bytes = encrypt_with_metadata(plaintext, &[env.public.as_str()], "mesh:default", name, &fp);
    env.write(&rel, bytes);
    rel
}

fn refused_everywhere(env: &TestEnv, name: &str, rel: &str, mentions: &[&str]) {
    let mut all = vec![rel];
    all.extend_from_slice(mentions);
    env.refuses(
        env.kcmd()
            .args(["get", "secret", name, "-o", "raw"])
            .timeout(LIMIT),
        1,
        &all,
    );
    env.refuses(env.kcmd().arg("check").timeout(LIMIT), 1, &all);
}

#[test]
fn deeply_nested_toml_is_refused_without_recursing() {
    let env = TestEnv::new();
    let mut doc =
        b"type = \"Secret\"\nmesh = \"default\"\nname = \"deep\"\ndata = \"YQ==\"\nx = ".to_vec();
    doc.extend(std::iter::repeat_n(b'[', 300_000));
    let rel = plant(&env, "deep", &doc);
    refused_everywhere(&env, "deep", &rel, &["too deeply nested"]);
}

#[test]
fn duplicate_keys_are_refused_with_a_line() {
    let env = TestEnv::new();
    let rel = plant(
        &env,
        "dup",
        b"type = \"Secret\"\nmesh = \"default\"\nname = \"dup\"\ndata = \"YQ==\"\ndata = \"Yg==\"\n",
    );
    refused_everywhere(&env, "dup", &format!("{rel}:5"), &["invalid TOML"]);
}

#[test]
fn binary_plaintext_is_refused() {
    let env = TestEnv::new();
    let rel = plant(&env, "bin", &[0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28]);
    refused_everywhere(&env, "bin", &rel, &["not UTF-8 text"]);
}

#[test]
fn megabytes_of_random_bytes_as_a_secret_are_refused() {
    let env = TestEnv::new();
    // Pseudo-random bytes from a small xorshift: no extra dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = Vec::with_capacity(5 * 1024 * 1024);
    while noise.len() < 5 * 1024 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let rel = "meshes/default/secrets/noise.age";
    env.write(rel, &noise);
    refused_everywhere(&env, "noise", rel, &["bytes"]);
    // Under the size limit, random bytes are simply not an age file.
    env.write(rel, &noise[..64 * 1024]);
    refused_everywhere(&env, "noise", rel, &["not an age-encrypted file"]);
}

#[test]
fn a_directory_named_like_a_secret_is_reported() {
    let env = TestEnv::new();
    fs::create_dir_all(env.path("meshes/default/secrets/x.age")).unwrap();
    let rel = "meshes/default/secrets/x.age";
    env.refuses(
        env.kcmd().arg("check").timeout(LIMIT),
        1,
        &[rel, "not a regular file"],
    );
    env.refuses(
        env.cmd().arg("check").timeout(LIMIT),
        1,
        &[rel, "not a regular file"],
    );
    env.refuses(
        env.kcmd()
            .args(["get", "secret", "x", "-o", "raw"])
            .timeout(LIMIT),
        1,
        &[rel, "not a regular file"],
    );
}

#[test]
fn a_passphrase_protected_ssh_key_is_refused_clearly() {
    let Some(keygen) = external_tool("ssh-keygen") else {
        return;
    };
    let env = TestEnv::new();
    env.create("default", "db", "v");
    let key = env.tmp().join("enc_ed25519");
    let out = std::process::Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    chmod(&key, 0o600);
    let run = env.refuses(
        env.cmd()
            .arg("-i")
            .arg(&key)
            .args(["get", "secret", "db", "-o", "raw"])
            .timeout(LIMIT),
        1,
        &[
            "passphrase-protected SSH key",
            "cannot ask for a passphrase",
        ],
    );
    run.assert_never_shows("correct horse");
}
