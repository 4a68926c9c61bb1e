//! No lock-in: the stock `age` CLI (Debian's `age` package) reads what
//! meshseal writes, despite meshseal's extra header stanza, and meshseal reads
//! what `age -R recipients.txt -a` writes, flagging it for `rekey`.
//!
//! When `age` is missing these tests print a note and return, except under
//! CI (`CI` set), where they fail: see `tools::external_tool`.

use std::process::Command as StdCommand;

use crate::age_files::*;
use crate::env::*;
use crate::tools::*;

/// Runs a stock tool, which must succeed; returns stdout.
fn stock(cmd: &mut StdCommand) -> Vec<u8> {
    let out = cmd.output().expect("spawn stock tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The TOML document inside a secret, as a table.
fn parse_toml(bytes: &[u8]) -> toml::Table {
    toml::from_str(std::str::from_utf8(bytes).expect("UTF-8 document")).expect("TOML document")
}

#[test]
fn stock_age_decrypts_what_meshseal_writes() {
    let Some(age) = stock_age() else { return };
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("payments", "db-password", "hunter2-interop");
    env.create_global("ca", "global-interop");

    let file = env.path("meshes/payments/secrets/db-password.age");
    // The file does carry meshseal's stanza: stock age must skip it.
    let header = dearmor(&env.read("meshes/payments/secrets/db-password.age"));
    assert!(
        String::from_utf8_lossy(&header).contains(" mesh:payments db-password "),
        "no meshseal stanza to ignore"
    );
    let plaintext = stock(
        StdCommand::new(&age)
            .arg("-d")
            .arg("-i")
            .arg(&env.identity)
            .arg(&file),
    );
    let doc = parse_toml(&plaintext);
    assert_eq!(doc["type"].as_str(), Some("Secret"));
    assert_eq!(doc["mesh"].as_str(), Some("payments"));
    assert_eq!(doc["name"].as_str(), Some("db-password"));
    assert_eq!(doc["data"].as_str(), Some(b64(b"hunter2-interop").as_str()));
    assert_eq!(doc.len(), 4, "{doc:?}");

    let plaintext = stock(
        StdCommand::new(&age)
            .arg("--decrypt")
            .arg("--identity")
            .arg(&env.identity)
            .arg(env.path("global/secrets/ca.age")),
    );
    let doc = parse_toml(&plaintext);
    assert_eq!(doc["type"].as_str(), Some("GlobalSecret"));
    assert!(doc.get("mesh").is_none());
    assert_eq!(doc["data"].as_str(), Some(b64(b"global-interop").as_str()));

    // A key that is not a recipient gets nothing from stock age either.
    let (wrong, _) = env.new_identity("wrong.txt");
    let out = StdCommand::new(&age)
        .arg("-d")
        .arg("-i")
        .arg(&wrong)
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn stock_age_decrypts_for_an_ssh_recipient() {
    let Some(age) = stock_age() else { return };
    let env = TestEnv::new();
    let Some((ssh_key, ssh_pub)) = ssh_ed25519_key(&env.keys, "id_ed25519") else {
        return;
    };
    env.ok_args(&["recipients", "add", "-m", "ssh", ssh_pub.as_str()]);
    env.create("ssh", "token", "ssh-interop");
    let plaintext = stock(
        StdCommand::new(&age)
            .arg("-d")
            .arg("-i")
            .arg(&ssh_key)
            .arg(env.path("meshes/ssh/secrets/token.age")),
    );
    assert_eq!(
        parse_toml(&plaintext)["data"].as_str(),
        Some(b64(b"ssh-interop").as_str())
    );
}

#[test]
fn meshseal_reads_a_file_made_by_stock_age_and_check_asks_for_rekey() {
    let Some(age) = stock_age() else { return };
    let env = TestEnv::new();
    env.add_mesh("m");
    let rel = "meshes/m/secrets/x.age";
    std::fs::create_dir_all(env.path("meshes/m/secrets")).unwrap();
    // Exactly `age -R meshes/m/recipients.txt -a`, on the store's own
    // recipients file (comments and all).
    let doc = document("Secret", Some("m"), "x", b"made-by-stock-age");
    let mut child = StdCommand::new(&age)
        .current_dir(&env.root)
        .args(["-R", "meshes/m/recipients.txt", "-a", "-o", rel])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn age");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(env
        .read(rel)
        .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));

    assert_eq!(env.raw("m", "x"), b"made-by-stock-age");
    env.ok_key(&["get", "secrets", "-m", "m"])
        .assert_stdout_has("x");
    env.ok_key(&["get", "secret", "x", "-m", "m", "-o", "json"])
        .assert_stdout_has(&b64(b"made-by-stock-age"));

    for with_key in [false, true] {
        let mut cmd = if with_key { env.kcmd() } else { env.cmd() };
        let r = env.refuses(cmd.args(["check", "-o", "json"]), 1, &[]);
        let problems = r.json();
        let problems = problems.as_array().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0]["file"], rel);
        assert_eq!(problems[0]["code"], "missing-metadata");
        assert!(
            problems[0]["hint"].as_str().unwrap().contains("rekey"),
            "{problems:?}"
        );
    }

    // Following the hint gives the file its metadata.
    env.ok_key(&["rekey", "-m", "m", "--force"]);
    env.ok_key(&["check"]);
    assert_eq!(env.raw("m", "x"), b"made-by-stock-age");
}

#[test]
fn binary_stock_age_file_is_read_but_flagged() {
    let Some(age) = stock_age() else { return };
    let env = TestEnv::new();
    let rel = "meshes/default/secrets/bin.age";
    std::fs::create_dir_all(env.path("meshes/default/secrets")).unwrap();
    let input = env.outside(
        "bin.toml",
        document("Secret", Some("default"), "bin", b"binary-age"),
    );
    stock(
        StdCommand::new(&age)
            .current_dir(&env.root)
            .args(["-R", "meshes/default/recipients.txt", "-o", rel])
            .arg(&input),
    );
    assert!(env.read(rel).starts_with(b"age-encryption.org/v1"));
    assert_eq!(env.raw("default", "bin"), b"binary-age");
    let r = env.refuses(env.cmd().args(["check", "-o", "json"]), 1, &[]);
    let codes: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect();
    assert!(codes.contains(&"not-armored".to_string()), "{codes:?}");
    assert!(codes.contains(&"missing-metadata".to_string()), "{codes:?}");
}

#[test]
fn age_keygen_identities_work_with_meshseal() {
    let Some(_) = stock_age() else { return };
    let Some(age_keygen) = external_tool("age-keygen") else {
        return;
    };
    let env = TestEnv::new();
    let id = env.keys.join("age-keygen.txt");
    stock(StdCommand::new(age_keygen).arg("-o").arg(&id));
    chmod(&id, 0o600);
    let text = std::fs::read_to_string(&id).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen prints the public key in a comment")
        .to_string();
    env.ok_args(&["recipients", "add", "-m", "keygen", public.as_str()]);
    env.create("keygen", "db", "age-keygen-value");
    env.ok(env
        .cmd()
        .arg("-i")
        .arg(&id)
        .args(["get", "secret", "db", "-m", "keygen", "-o", "raw"]))
        .assert_stdout_has("age-keygen-value");
}

#[test]
fn rage_decrypts_what_meshseal_writes() {
    let Some(rage) = external_tool("rage") else {
        return;
    };
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("payments", "db-password", "hunter2-rage");
    let file = env.path("meshes/payments/secrets/db-password.age");
    assert!(String::from_utf8_lossy(&dearmor(
        &env.read("meshes/payments/secrets/db-password.age")
    ))
    .contains("-> meshseal v2 "));
    let plaintext = stock(
        StdCommand::new(&rage)
            .arg("-d")
            .arg("-i")
            .arg(&env.identity)
            .arg(&file),
    );
    let doc = parse_toml(&plaintext);
    assert_eq!(doc["name"].as_str(), Some("db-password"));
    assert_eq!(doc["data"].as_str(), Some(b64(b"hunter2-rage").as_str()));
}
