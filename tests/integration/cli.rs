//! Every command through the built binary, on its happy paths: init, keygen,
//! recipients, create, apply, get, delete, export, check, and the ways of
//! naming an identity (`-i`, `MESHSEAL_IDENTITY`, the config-dir default,
//! OpenSSH keys).

use std::fs;
use std::time::{Duration, SystemTime};

use crate::age_files::*;
use crate::env::*;
use crate::snapshot::*;
use crate::tools::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The documents of a YAML stream.
fn yaml_docs(text: &str) -> Vec<serde_yaml_ng::Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn s<'a>(v: &'a serde_yaml_ng::Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for key in path {
        v = v
            .get(*key)
            .unwrap_or_else(|| panic!("missing {path:?} in {v:?}"));
    }
    v.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

/// The `-> meshseal ...` stanza line of a secret file, read from the header.
fn metadata_line(armored: &[u8]) -> String {
    let binary = dearmor(armored);
    let header = String::from_utf8_lossy(&binary[..payload_offset(&binary)]).into_owned();
    header
        .lines()
        .find(|l| l.starts_with("-> meshseal "))
        .unwrap_or_else(|| panic!("no meshseal stanza in header:\n{header}"))
        .to_string()
}

/// Puts a file's mtime far in the past, so that a rewrite within the same
/// clock tick cannot go unnoticed (no sleeping).
fn age_mtime(path: &std::path::Path) {
    let f = fs::File::options().write(true).open(path).expect("open");
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .expect("set mtime");
}

// ---------------------------------------------------------------- init

#[test]
fn init_lays_out_a_store() {
    let env = TestEnv::without_store();
    let r = env.ok(env.cmd().args(["init", "--recipient", env.public.as_str()]));
    for f in [
        "meshseal.toml",
        "global/recipients.txt",
        "meshes/default/recipients.txt",
        ".gitattributes",
    ] {
        r.assert_stdout_has(&format!("created {f}"));
        assert!(env.path(f).is_file(), "{f} missing");
    }
    for scope in ["global", "meshes/default"] {
        let text = String::from_utf8(env.read(&format!("{scope}/recipients.txt"))).unwrap();
        assert!(
            text.lines().any(|l| l.trim() == env.public),
            "{scope}: {text}"
        );
    }
    let attributes = String::from_utf8(env.read(".gitattributes")).unwrap();
    assert!(attributes
        .lines()
        .any(|l| l.trim() == "*.age -text diff=meshseal"));
    env.ok_args(&["recipients", "list", "-m", "default"])
        .assert_stdout_has(&env.public);
    env.ok_args(&["check"]).assert_stdout_has("ok: 0 secret(s)");
}

#[test]
fn init_takes_recipients_from_the_identity() {
    let env = TestEnv::without_store();
    env.ok_key(&["init"]);
    env.ok_args(&["recipients", "list", "--global"])
        .assert_stdout_has(&env.public);
    env.create("default", "db", "from-identity-init");
    assert_eq!(env.raw("default", "db"), b"from-identity-init");
}

#[test]
fn init_twice_changes_nothing_and_keeps_gitattributes() {
    let env = TestEnv::without_store();
    env.write(".gitattributes", "*.png binary");
    env.ok(env.cmd().args(["init", "--recipient", env.public.as_str()]));
    let attributes = String::from_utf8(env.read(".gitattributes")).unwrap();
    assert_eq!(
        attributes,
        "*.png binary\n*.age -text diff=meshseal\n*.sig -diff\n"
    );
    let before = env.snapshot();
    let r = env.ok(env.cmd().args(["init", "--recipient", env.public.as_str()]));
    r.assert_stdout_has("kept meshseal.toml");
    assert_same(&before, &env.snapshot(), "a second init");
}

#[test]
fn init_without_recipients_hints_and_create_then_fails() {
    let env = TestEnv::without_store();
    env.ok_args(&["init"]).assert_stderr_has("keygen");
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-literal", "x"]),
        1,
        &["meshes/default/recipients.txt"],
    );
}

// ---------------------------------------------------------------- keygen

#[test]
fn keygen_writes_a_private_identity_and_prints_its_public_key() {
    let env = TestEnv::without_store();
    let path = env.keys.join("new.txt");
    let r = env.ok(env.cmd().arg("keygen").arg("-o").arg(&path));
    assert_eq!(mode_of(&path), 0o600);
    let text = fs::read_to_string(&path).unwrap();
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("an age identity line");
    let public = r.stdout().trim().to_string();
    assert!(
        public.starts_with("age1") && !public.contains('\n'),
        "{public}"
    );
    r.assert_never_shows(secret_line);
    // The file is usable as an identity for a store encrypted to that key.
    env.ok(env.cmd().args(["init", "--recipient", public.as_str()]));
    env.create("default", "k", "v");
    run(env
        .cmd()
        .arg("-i")
        .arg(&path)
        .args(["get", "secret", "k", "-o", "raw"]))
    .success()
    .assert_stdout_has("v");
}

#[test]
fn keygen_refuses_to_overwrite() {
    let env = TestEnv::without_store();
    let before = fs::read(&env.identity).unwrap();
    run(env.cmd().arg("keygen").arg("-o").arg(&env.identity))
        .failure(1)
        .assert_stderr_has("already exists")
        .assert_stderr_has(&env.identity.display().to_string());
    assert_eq!(fs::read(&env.identity).unwrap(), before);
    assert_eq!(mode_of(&env.identity), 0o600);
}

#[test]
fn keygen_default_path_is_the_default_identity() {
    let env = TestEnv::without_store();
    let r = env.ok_args(&["keygen"]);
    let default = env.default_identity_path();
    assert_eq!(mode_of(&default), 0o600);
    let public = r.stdout().trim().to_string();
    env.ok(env.cmd().args(["init", "--recipient", public.as_str()]));
    env.create("default", "db", "via-default-identity");
    // No -i, no MESHSEAL_IDENTITY: the config-dir default is used.
    env.ok_args(&["get", "secret", "db", "-o", "raw"])
        .assert_stdout_has("via-default-identity");
    // And a second keygen without -o refuses to replace it.
    let before = fs::read(&default).unwrap();
    run(env.cmd().arg("keygen"))
        .failure(1)
        .assert_stderr_has("already exists");
    assert_eq!(fs::read(&default).unwrap(), before);
}

// ---------------------------------------------------------------- recipients

#[test]
fn recipients_add_list_remove() {
    let env = TestEnv::new();
    let (_, other) = env.new_identity("other.txt");
    let original = env.fingerprint(&["-m", "default"]);

    env.ok_args(&["recipients", "add", "-m", "default", other.as_str()])
        .assert_stdout_has("added 1 recipient(s)");
    let r = env.ok_args(&["recipients", "list", "-m", "default"]);
    r.assert_stdout_has(&env.public).assert_stdout_has(&other);
    r.assert_stderr_has("2 recipient(s)");
    let with_other = env.fingerprint(&["-m", "default"]);
    assert_ne!(with_other, original);

    // Adding a key twice adds nothing and leaves the file alone.
    let before = env.snapshot();
    env.ok_args(&["recipients", "add", "-m", "default", other.as_str()])
        .assert_stdout_has("added 0 recipient(s)");
    assert_same(&before, &env.snapshot(), "adding a present key");

    env.ok_args(&["recipients", "remove", "-m", "default", other.as_str()])
        .assert_stdout_has("removed 1 recipient(s)");
    let r = env.ok_args(&["recipients", "list", "-m", "default"]);
    assert!(!r.stdout().contains(&other));
    assert_eq!(env.fingerprint(&["-m", "default"]), original);
    // Comments written by init survive edits.
    let text = String::from_utf8(env.read("meshes/default/recipients.txt")).unwrap();
    assert!(text.starts_with('#'), "{text}");
}

#[test]
fn recipients_of_the_global_scope_and_a_new_mesh() {
    let env = TestEnv::new();
    let (_, other) = env.new_identity("other.txt");
    env.ok_args(&["recipients", "add", "--global", other.as_str()]);
    env.ok_args(&["recipients", "list", "--global"])
        .assert_stdout_has(&other);
    // A new mesh gets its recipients file on first add.
    env.ok_args(&["recipients", "add", "-m", "payments", other.as_str()]);
    assert!(env.path("meshes/payments/recipients.txt").is_file());
    let r = env.ok_args(&["recipients", "list", "-m", "payments"]);
    assert_eq!(r.stdout().trim(), other);
}

#[test]
fn recipients_remove_warns_which_secrets_the_key_could_read() {
    let env = TestEnv::new();
    let (_, other) = env.new_identity("other.txt");
    env.add_mesh("pay");
    env.ok_args(&["recipients", "add", "-m", "default", other.as_str()]);
    env.create("default", "db", "a");
    env.create("default", "api-token", "b");
    env.create("pay", "card-key", "c");
    let r = env.ok_args(&["recipients", "remove", "-m", "default", other.as_str()]);
    r.assert_stderr_has("warning")
        .assert_stderr_has("meshes/default/secrets/db.age")
        .assert_stderr_has("meshes/default/secrets/api-token.age");
    assert!(
        !r.stderr.contains("card-key"),
        "only the scope's secrets: {}",
        r.stderr
    );
}

#[test]
fn recipients_stale_hint_only_when_secrets_are_stale() {
    let env = TestEnv::new();
    let (_, other) = env.new_identity("other.txt");
    env.create("default", "db", "x");
    let r = env.ok_args(&["recipients", "add", "-m", "default", env.public.as_str()]);
    r.assert_stdout_has("added 0 recipient(s)");
    env.ok_args(&["check"]);
    assert!(
        !r.stderr.contains("stale"),
        "nothing is stale: {}",
        r.stderr
    );

    env.ok_args(&["recipients", "add", "-m", "default", other.as_str()])
        .assert_stderr_has("stale");
    let r = env.ok_args(&["recipients", "remove", "-m", "default", other.as_str()]);
    env.ok_args(&["check"]);
    assert!(
        !r.stderr.contains("stale"),
        "nothing is stale: {}",
        r.stderr
    );
}

#[test]
fn adding_a_recipient_makes_secrets_stale_until_reapplied() {
    let env = TestEnv::new();
    let (other_id, other) = env.new_identity("other.txt");
    env.create("default", "db", "stale-value");
    env.ok_args(&["recipients", "add", "-m", "default", other.as_str()]);

    let r = run(env.cmd().args(["check", "-o", "json"])).failure(1);
    let problems = r.json();
    let codes: Vec<&str> = problems
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["stale"], "{problems}");
    assert_eq!(problems[0]["file"], "meshes/default/secrets/db.age");

    // The new recipient cannot read the stale file yet ...
    run(env
        .cmd()
        .arg("-i")
        .arg(&other_id)
        .args(["get", "secret", "db", "-o", "raw"]))
    .failure(1)
    .assert_stderr_has("meshes/default/secrets/db.age");
    // ... re-applying the same data with a key re-encrypts it (same data,
    // new recipients is not "unchanged") ...
    let yaml = format!(
        "type: Secret\nmesh: default\nname: db\ndata: {}\n",
        b64(b"stale-value")
    );
    env.ok(env.kcmd().args(["apply", "-f", "-"]).write_stdin(yaml))
        .assert_stdout_has("Secret default/db configured");
    env.ok_args(&["check"]);
    // ... and now it can.
    run(env
        .cmd()
        .arg("-i")
        .arg(&other_id)
        .args(["get", "secret", "db", "-o", "raw"]))
    .success()
    .assert_stdout_has("stale-value");
}

// ---------------------------------------------------------------- create

#[test]
fn create_secret_from_literal_file_and_stdin() {
    let env = TestEnv::new();
    env.ok_args(&["create", "secret", "lit", "--from-literal", "literal-value"])
        .assert_stdout_has("Secret default/lit created");
    let every_byte: Vec<u8> = (0..=255u8).rev().collect();
    let file = env.outside("value.bin", &every_byte);
    env.ok(env
        .cmd()
        .args(["create", "secret", "bin", "--from-file"])
        .arg(&file));
    env.ok(env
        .cmd()
        .args(["create", "secret", "piped", "--from-stdin"])
        .write_stdin("line one\nline two\n"));
    assert_eq!(env.raw("default", "lit"), b"literal-value");
    assert_eq!(env.raw("default", "bin"), every_byte);
    assert_eq!(env.raw("default", "piped"), b"line one\nline two\n");
}

#[test]
fn create_global_secret_from_literal_file_and_stdin() {
    let env = TestEnv::new();
    env.ok_args(&["create", "global-secret", "a", "--from-literal", "ga"])
        .assert_stdout_has("GlobalSecret a created");
    let file = env.outside("g.txt", "gb");
    env.ok(env
        .cmd()
        .args(["create", "global-secret", "b", "--from-file"])
        .arg(&file));
    env.ok(env
        .cmd()
        .args(["create", "global-secret", "c", "--from-stdin"])
        .write_stdin("gc"));
    for (name, value) in [("a", "ga"), ("b", "gb"), ("c", "gc")] {
        assert!(env.path(&format!("global/secrets/{name}.age")).is_file());
        env.ok_key(&["get", "global-secret", name, "-o", "raw"])
            .assert_stdout_has(value);
    }
    // Mesh listings do not show global secrets.
    let r = env.ok_key(&["get", "secrets", "-A"]);
    assert!(!r.stdout().contains(" a "), "{}", r.stdout());
}

#[test]
fn create_in_another_mesh() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.ok_args(&[
        "create",
        "secret",
        "db",
        "-m",
        "payments",
        "--from-literal",
        "p",
    ])
    .assert_stdout_has("Secret payments/db created");
    assert!(env.path("meshes/payments/secrets/db.age").is_file());
    assert!(!env.path("meshes/default/secrets/db.age").exists());
    assert_eq!(env.raw("payments", "db"), b"p");
}

#[test]
fn create_of_an_existing_secret_fails_with_kumas_text() {
    let env = TestEnv::new();
    env.create("default", "db", "first");
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-literal", "second"]),
        1,
        &[
            r#"resource already exists: type="Secret" name="db" mesh="default""#,
            "meshes/default/secrets/db.age",
        ],
    );
    env.create_global("ca", "first");
    env.refuses(
        env.cmd()
            .args(["create", "global-secret", "ca", "--from-stdin"])
            .write_stdin("second"),
        1,
        &[r#"resource already exists: type="GlobalSecret" name="ca""#],
    );
    assert_eq!(env.raw("default", "db"), b"first");
}

#[test]
fn secret_files_are_armored_age_with_readable_metadata() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("payments", "db-password", "x");
    env.create_global("ca", "y");
    let file = env.read("meshes/payments/secrets/db-password.age");
    assert!(file.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----\n"));
    assert_eq!(
        mode_of(&env.path("meshes/payments/secrets/db-password.age")) & 0o077,
        0o044
    );
    let fp = env.fingerprint(&["-m", "payments"]);
    let config = String::from_utf8(env.read("meshseal.toml")).unwrap();
    let store_id = config
        .lines()
        .find_map(|l| l.strip_prefix("store_id = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("init writes a store id");
    // v2 (SPEC 9): store id, scope, name, recipients, generation 1.
    assert_eq!(
        metadata_line(&file),
        format!("-> meshseal v2 {store_id} mesh:payments db-password {fp} 1")
    );
    let fp = env.fingerprint(&["--global"]);
    assert_eq!(
        metadata_line(&env.read("global/secrets/ca.age")),
        format!("-> meshseal v2 {store_id} global ca {fp} 1")
    );
    // No temporary files are left behind by atomic writes.
    let names: Vec<_> = fs::read_dir(env.path("meshes/payments/secrets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["db-password.age"]);
}

// ---------------------------------------------------------------- apply

const MULTI: &str = "\
type: Secret
mesh: default
name: db
data: ZGItdmFsdWU=
---
type: Secret
mesh: payments
name: api
data: YXBpLXZhbHVl
labels:
  team: core
---
type: GlobalSecret
name: ca
data: Y2EtdmFsdWU=
---
";

#[test]
fn apply_universal_multi_document_file() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    let file = env.outside("secrets.yaml", MULTI);
    let r = env.ok(env.cmd().args(["apply", "-f"]).arg(&file));
    assert_eq!(
        r.stdout(),
        "Secret default/db created\nSecret payments/api created\nGlobalSecret ca created\n"
    );
    assert_eq!(env.raw("default", "db"), b"db-value");
    assert_eq!(env.raw("payments", "api"), b"api-value");
    env.ok_key(&["get", "global-secret", "ca", "-o", "raw"])
        .assert_stdout_has("ca-value");
    let json: serde_json::Value = serde_json::from_slice(
        &env.ok_key(&["get", "secret", "api", "-m", "payments", "-o", "json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json["labels"]["team"], "core");
}

#[test]
fn apply_reports_created_configured_unchanged() {
    let env = TestEnv::new();
    let v1 = format!(
        "type: Secret\nmesh: default\nname: db\ndata: {}\n",
        b64(b"v1")
    );
    let v2 = format!(
        "type: Secret\nmesh: default\nname: db\ndata: {}\n",
        b64(b"v2")
    );
    env.ok(env
        .kcmd()
        .args(["apply", "-f", "-"])
        .write_stdin(v1.clone()))
        .assert_stdout_has("Secret default/db created");
    env.ok(env.kcmd().args(["apply", "-f", "-"]).write_stdin(v1))
        .assert_stdout_has("Secret default/db unchanged");
    env.ok(env.kcmd().args(["apply", "-f", "-"]).write_stdin(v2))
        .assert_stdout_has("Secret default/db configured");
    assert_eq!(env.raw("default", "db"), b"v2");
}

#[test]
fn reapplying_identical_data_leaves_the_file_untouched() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    let file = env.outside("secrets.yaml", MULTI);
    env.ok(env.kcmd().args(["apply", "-f"]).arg(&file));
    for rel in [
        "meshes/default/secrets/db.age",
        "meshes/payments/secrets/api.age",
        "global/secrets/ca.age",
    ] {
        age_mtime(&env.path(rel));
    }
    let before = env.snapshot();
    let r = env.ok(env.kcmd().args(["apply", "-f"]).arg(&file));
    assert_eq!(
        r.stdout(),
        "Secret default/db unchanged\nSecret payments/api unchanged\nGlobalSecret ca unchanged\n"
    );
    // Same bytes, same mtime, same inode: not even rewritten identically.
    assert_same(&before, &env.snapshot(), "re-applying identical data");
}

#[test]
fn reapplying_from_stdin_with_the_env_identity_is_unchanged() {
    let env = TestEnv::new();
    let yaml = format!("type: GlobalSecret\nname: tok\ndata: {}\n", b64(b"t"));
    env.ok(env
        .cmd()
        .args(["apply", "-f", "-"])
        .write_stdin(yaml.clone()));
    age_mtime(&env.path("global/secrets/tok.age"));
    let before = env.snapshot();
    env.ok(env
        .cmd()
        .env("MESHSEAL_IDENTITY", &env.identity)
        .args(["apply", "-f", "-"])
        .write_stdin(yaml))
        .assert_stdout_has("GlobalSecret tok unchanged");
    assert_same(
        &before,
        &env.snapshot(),
        "re-applying via MESHSEAL_IDENTITY",
    );
}

#[test]
fn apply_kubernetes_secret_form() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    let yaml = format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: k8s-db
  namespace: kuma-system
  labels:
    kuma.io/mesh: payments
data:
  value: {}
type: system.kuma.io/secret
---
apiVersion: v1
kind: Secret
metadata:
  name: k8s-default
  namespace: kuma-system
data:
  value: {}
type: system.kuma.io/secret
---
apiVersion: v1
kind: Secret
metadata:
  name: k8s-global
  namespace: kuma-system
data:
  value: {}
type: system.kuma.io/global-secret
",
        b64(b"kube-payments"),
        b64(b"kube-default"),
        b64(b"kube-global")
    );
    let r = env.ok(env.cmd().args(["apply", "-f", "-"]).write_stdin(yaml));
    assert_eq!(
        r.stdout(),
        "Secret payments/k8s-db created\nSecret default/k8s-default created\nGlobalSecret k8s-global created\n"
    );
    assert_eq!(env.raw("payments", "k8s-db"), b"kube-payments");
    assert_eq!(env.raw("default", "k8s-default"), b"kube-default");
    env.ok_key(&["get", "global-secret", "k8s-global", "-o", "raw"])
        .assert_stdout_has("kube-global");
}

// ---------------------------------------------------------------- get

#[test]
fn get_secrets_lists_meshes_without_data() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("default", "db", "12345");
    env.create("payments", "api", "1234567");
    env.create_global("ca", "123");

    // Keyless: from headers; sizes unknown.
    let r = env.ok_args(&["get", "secrets"]);
    let lines: Vec<Vec<String>> = r
        .stdout()
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(lines[0], ["MESH", "NAME", "BYTES", "FINGERPRINT"]);
    assert_eq!(lines.len(), 2, "{}", r.stdout());
    assert_eq!(lines[1][..3], ["default", "db", "-"]);
    // The fingerprint is a prefix of the file's sha256.
    let sha = hex(&Sha256::digest(env.read("meshes/default/secrets/db.age")));
    assert!(
        sha.starts_with(&lines[1][3]) && lines[1][3].len() >= 8,
        "{sha}"
    );

    // With a key: sizes.
    let r = env.ok_key(&["get", "secrets", "-m", "payments"]);
    assert!(r.stdout().lines().nth(1).unwrap().starts_with("payments"));
    assert_eq!(
        r.stdout().lines().nth(1).unwrap().split_whitespace().nth(2),
        Some("7")
    );

    // -A: every mesh, no global secrets.
    let r = env.ok_key(&["get", "secrets", "-A", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["total"], 2);
    let items = v["items"].as_array().unwrap();
    let names: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap(),
                i["mesh"].as_str().unwrap(),
                i["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("Secret", "default", "db"), ("Secret", "payments", "api")]
    );
    assert_eq!(items[0]["bytes"], 5);
    assert!(items.iter().all(|i| i.get("data").is_none()));

    let r = env.ok_key(&["get", "secrets", "-A", "-o", "yaml"]);
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&r.stdout).unwrap();
    assert_eq!(v["items"].as_sequence().unwrap().len(), 2);
    assert!(v["items"][1].get("data").is_none());
}

#[test]
fn get_secret_in_kumas_shapes() {
    let env = TestEnv::new();
    env.create("default", "db", "s3cr3t");
    let r = env.ok_key(&["get", "secret", "db", "-o", "yaml"]);
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&r.stdout).unwrap();
    assert_eq!(s(&v, &["type"]), "Secret");
    assert_eq!(s(&v, &["mesh"]), "default");
    assert_eq!(s(&v, &["name"]), "db");
    assert_eq!(s(&v, &["data"]), b64(b"s3cr3t"));

    let r = env.ok_key(&["get", "secret", "db", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type": "Secret", "name": "db", "mesh": "default", "data": b64(b"s3cr3t")})
    );

    assert_eq!(
        env.ok_key(&["get", "secret", "db", "-o", "raw"]).stdout,
        b"s3cr3t"
    );
    let r = env.ok_key(&["get", "secret", "db"]);
    r.assert_stdout_has("NAME").assert_stdout_has("db");
    r.assert_never_shows("s3cr3t");
}

#[test]
fn get_global_secrets_and_one_global_secret() {
    let env = TestEnv::new();
    env.create_global("ca", "global-bytes");
    env.create_global("token", "t");
    let r = env.ok_key(&["get", "global-secrets"]);
    let rows: Vec<Vec<&str>> = r
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).unwrap().split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "BYTES", "FINGERPRINT"]);
    assert_eq!(rows[1][..2], ["ca", "12"]);
    assert_eq!(rows[2][..2], ["token", "1"]);
    let r = env.ok_key(&["get", "global-secret", "ca", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type": "GlobalSecret", "name": "ca", "data": b64(b"global-bytes")})
    );
    assert_eq!(
        env.ok_key(&["get", "global-secret", "ca", "-o", "raw"])
            .stdout,
        b"global-bytes"
    );
}

#[test]
fn get_of_a_missing_secret_is_kumas_not_found() {
    let env = TestEnv::new();
    env.refuses(
        env.kcmd().args(["get", "secret", "nope", "-o", "raw"]),
        1,
        &[r#"resource not found: type="Secret" name="nope" mesh="default""#],
    );
    env.refuses(
        env.kcmd().args(["get", "global-secret", "nope"]),
        1,
        &[r#"resource not found: type="GlobalSecret" name="nope""#],
    );
}

// ---------------------------------------------------------------- delete

#[test]
fn delete_secret_and_global_secret() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("payments", "db", "x");
    env.create("default", "db", "y");
    env.create_global("ca", "z");
    env.ok_args(&["delete", "secret", "db", "-m", "payments"])
        .assert_stdout_has("Secret payments/db deleted");
    assert!(!env.path("meshes/payments/secrets/db.age").exists());
    assert!(env.path("meshes/default/secrets/db.age").exists());
    env.ok_args(&["delete", "global-secret", "ca"])
        .assert_stdout_has("GlobalSecret ca deleted");
    assert!(!env.path("global/secrets/ca.age").exists());
    env.refuses(
        env.cmd().args(["delete", "secret", "db", "-m", "payments"]),
        1,
        &[r#"resource not found: type="Secret" name="db" mesh="payments""#],
    );
    env.refuses(
        env.cmd().args(["delete", "global-secret", "ca"]),
        1,
        &[r#"resource not found: type="GlobalSecret" name="ca""#],
    );
    assert_eq!(env.raw("default", "db"), b"y");
}

// ---------------------------------------------------------------- export

fn export_store() -> TestEnv {
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("default", "db", "default-db");
    env.create("payments", "api", "payments-api");
    env.create_global("ca", "global-ca");
    env
}

#[test]
fn export_kuma_universal_yaml() {
    let env = export_store();
    let r = env.ok_key(&["export", "--kuma"]);
    let docs = yaml_docs(&r.stdout());
    assert_eq!(docs.len(), 1, "default mesh only: {}", r.stdout());
    assert_eq!(s(&docs[0], &["type"]), "Secret");
    assert_eq!(s(&docs[0], &["mesh"]), "default");
    assert_eq!(s(&docs[0], &["name"]), "db");
    assert_eq!(s(&docs[0], &["data"]), b64(b"default-db"));

    let r = env.ok_key(&["export", "--kuma", "-A"]);
    let docs = yaml_docs(&r.stdout());
    let mut seen: Vec<(String, String)> = docs
        .iter()
        .map(|d| (s(d, &["type"]).to_string(), s(d, &["name"]).to_string()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("GlobalSecret".to_string(), "ca".to_string()),
            ("Secret".to_string(), "api".to_string()),
            ("Secret".to_string(), "db".to_string())
        ]
    );
    let global = docs
        .iter()
        .find(|d| s(d, &["type"]) == "GlobalSecret")
        .unwrap();
    assert!(global.get("mesh").is_none());

    let r = env.ok_key(&["export", "--kuma", "--global"]);
    let docs = yaml_docs(&r.stdout());
    assert_eq!(docs.len(), 1);
    assert_eq!(s(&docs[0], &["data"]), b64(b"global-ca"));
}

#[test]
fn export_kubernetes_secrets_of_kumas_types() {
    let env = export_store();
    let r = env.ok_key(&["export", "--kubernetes", "-A"]);
    let docs = yaml_docs(&r.stdout());
    assert_eq!(docs.len(), 3);
    for d in &docs {
        assert_eq!(s(d, &["apiVersion"]), "v1");
        assert_eq!(s(d, &["kind"]), "Secret");
        assert_eq!(s(d, &["metadata", "namespace"]), "kuma-system");
        let name = s(d, &["metadata", "name"]);
        let (ty, mesh, value) = match name {
            "db" => ("system.kuma.io/secret", Some("default"), "default-db"),
            "api" => ("system.kuma.io/secret", Some("payments"), "payments-api"),
            "ca" => ("system.kuma.io/global-secret", None, "global-ca"),
            other => panic!("unexpected {other}"),
        };
        assert_eq!(s(d, &["type"]), ty);
        assert_eq!(s(d, &["data", "value"]), b64(value.as_bytes()));
        let label = d["metadata"]
            .get("labels")
            .and_then(|l| l.get("kuma.io/mesh"))
            .and_then(|m| m.as_str());
        assert_eq!(label, mesh, "{name}");
    }
    let r = env.ok_key(&[
        "export",
        "--kubernetes",
        "-m",
        "payments",
        "--namespace",
        "mesh-ns",
    ]);
    let docs = yaml_docs(&r.stdout());
    assert_eq!(docs.len(), 1);
    assert_eq!(s(&docs[0], &["metadata", "namespace"]), "mesh-ns");
    assert_eq!(
        s(&docs[0], &["metadata", "labels", "kuma.io/mesh"]),
        "payments"
    );
}

#[test]
fn export_output_reapplies_cleanly() {
    let env = export_store();
    for flag in ["--kuma", "--kubernetes"] {
        let exported = env.ok_key(&["export", flag, "-A"]).stdout;
        // Into the same store: nothing changes.
        let before = env.snapshot();
        let r = env.ok(env
            .kcmd()
            .args(["apply", "-f", "-"])
            .write_stdin(exported.clone()));
        assert_eq!(
            r.stdout().matches(" unchanged").count(),
            3,
            "{}",
            r.stdout()
        );
        assert_same(&before, &env.snapshot(), "re-applying an export");

        // Into a fresh store: the same secrets, created.
        let other = TestEnv::new();
        other.add_mesh("payments");
        let r = other.ok(other
            .kcmd()
            .args(["apply", "-f", "-"])
            .write_stdin(exported));
        assert_eq!(r.stdout().matches(" created").count(), 3, "{}", r.stdout());
        assert_eq!(other.raw("default", "db"), b"default-db");
        assert_eq!(other.raw("payments", "api"), b"payments-api");
        other
            .ok_key(&["get", "global-secret", "ca", "-o", "raw"])
            .assert_stdout_has("global-ca");
    }
}

// ---------------------------------------------------------------- check

#[test]
fn check_a_clean_store_with_and_without_a_key() {
    let env = export_store();
    env.ok_args(&["check"])
        .assert_stdout_has("ok: 3 secret(s) checked (without a key");
    env.ok_key(&["check"])
        .assert_stdout_has("ok: 3 secret(s) checked (3 decrypted)");
    let r = env.ok_key(&["check", "-o", "json"]);
    assert_eq!(r.json(), serde_json::json!([]));
}

#[test]
fn check_json_gives_file_line_code_message_hint() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    env.write("meshes/default/secrets/notes.txt", "not a secret");
    env.write("meshes/default/secrets/plain.age", "type = \"Secret\"\n");
    let r = env.refuses(env.cmd().args(["check", "-o", "json"]), 1, &[]);
    let problems = r.json();
    let problems = problems.as_array().expect("an array");
    assert_eq!(problems.len(), 2, "{problems:?}");
    for p in problems {
        let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["code", "file", "hint", "line", "message"], "{p}");
        assert!(p["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(p["hint"].as_str().is_some_and(|m| !m.is_empty()), "{p}");
    }
    let by_file = |f: &str| {
        problems
            .iter()
            .find(|p| p["file"] == f)
            .unwrap_or_else(|| panic!("no problem for {f}: {problems:?}"))
    };
    assert_eq!(
        by_file("meshes/default/secrets/notes.txt")["code"],
        "not-age-file"
    );
    assert_eq!(
        by_file("meshes/default/secrets/plain.age")["code"],
        "plaintext"
    );
}

#[test]
fn check_reports_every_problem_not_just_the_first() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("default", "db", "x");
    env.write("meshes/default/secrets/a.txt", "x");
    env.write("meshes/payments/secrets/b.txt", "x");
    env.write("global/secrets/c.age", "plain");
    let r = env.refuses(env.kcmd().arg("check"), 1, &[]);
    for f in [
        "meshes/default/secrets/a.txt",
        "meshes/payments/secrets/b.txt",
        "global/secrets/c.age",
    ] {
        r.assert_stderr_has(f);
    }
    // Limited to paths.
    let r = env.refuses(
        env.cmd().args(["check", "meshes/payments", "-o", "json"]),
        1,
        &[],
    );
    let files: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(files, ["meshes/payments/secrets/b.txt"]);
}

// ---------------------------------------------------------------- identities

#[test]
fn identity_from_the_environment_variable() {
    let env = TestEnv::new();
    env.create("default", "db", "env-identity");
    env.ok(env
        .cmd()
        .env("MESHSEAL_IDENTITY", &env.identity)
        .args(["get", "secret", "db", "-o", "raw"]))
        .assert_stdout_has("env-identity");
    // -i wins over the variable.
    let (other, _) = env.new_identity("other.txt");
    env.ok(env
        .cmd()
        .env("MESHSEAL_IDENTITY", &other)
        .arg("-i")
        .arg(&env.identity)
        .args(["get", "secret", "db", "-o", "raw"]));
}

#[test]
fn identity_flag_is_repeatable() {
    let env = TestEnv::new();
    env.create("default", "db", "two-keys");
    let (other, _) = env.new_identity("other.txt");
    env.ok(env
        .cmd()
        .arg("-i")
        .arg(&other)
        .arg("-i")
        .arg(&env.identity)
        .args(["get", "secret", "db", "-o", "raw"]))
        .assert_stdout_has("two-keys");
}

#[test]
fn openssh_ed25519_key_as_identity_and_recipient() {
    let env = TestEnv::new();
    let Some((ssh_key, ssh_pub)) = ssh_ed25519_key(&env.keys, "id_ed25519") else {
        return;
    };
    assert!(ssh_pub.starts_with("ssh-ed25519 ") && ssh_pub.ends_with("test@meshseal"));
    // A mesh readable by the ssh key only (the comment is kept or dropped,
    // but the key is accepted as is).
    env.ok_args(&["recipients", "add", "-m", "ssh-only", ssh_pub.as_str()]);
    env.ok_args(&["recipients", "list", "-m", "ssh-only"])
        .assert_stdout_has(ssh_pub.split_whitespace().nth(1).unwrap());
    env.create("ssh-only", "db", "for-ssh-eyes");
    env.ok(env
        .cmd()
        .arg("-i")
        .arg(&ssh_key)
        .args(["get", "secret", "db", "-m", "ssh-only", "-o", "raw"]))
        .assert_stdout_has("for-ssh-eyes");
    env.ok(env.cmd().env("MESHSEAL_IDENTITY", &ssh_key).args(["check"]))
        .assert_stdout_has("decrypted");
    // The age identity is not a recipient of that mesh.
    run(env
        .kcmd()
        .args(["get", "secret", "db", "-m", "ssh-only", "-o", "raw"]))
    .failure(1)
    .assert_stderr_has("meshes/ssh-only/secrets/db.age");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------- first use (issue 16)

/// Issue 16 #9: a file made by stock `age -R` lacks meshseal's metadata;
/// `check` advises a plain `rekey` (which adds it), never `--force` (which
/// would rewrite every file of the scope), and that plain rekey fixes it.
#[test]
fn issue16_stock_age_file_is_fixed_by_a_plain_rekey() {
    let env = TestEnv::new();
    env.create("default", "kept", "k");
    let doc = format!(
        "type = \"Secret\"\nmesh = \"default\"\nname = \"stock\"\ndata = \"{}\"\n",
        b64(b"from-stock-age")
    );
    env.write(
        "meshes/default/secrets/stock.age",
        stock_encrypt(doc.as_bytes(), &[env.public.as_str()]),
    );
    let r = env.refuses(
        env.cmd().args(["check", "--no-decrypt"]),
        1,
        &[
            "meshes/default/secrets/stock.age",
            "run `meshseal rekey -m default`",
        ],
    );
    assert!(!r.stderr.contains("--force"), "{}", r.stderr);
    let kept = env.read("meshes/default/secrets/kept.age");
    env.ok_key(&["rekey", "-m", "default"]);
    assert_eq!(
        env.read("meshes/default/secrets/kept.age"),
        kept,
        "a plain rekey leaves fresh files alone"
    );
    env.ok_args(&["check", "--no-decrypt"]);
    assert_eq!(env.raw("default", "stock"), b"from-stock-age");
}

/// Issue 16 #8: `watch --once` at a folder that does not exist names the
/// folder, before it looks for any identity.
#[test]
fn issue16_watch_once_reports_a_missing_store_before_the_identity() {
    let env = TestEnv::new();
    let r = run(env.cmd().args(["-C", "no/such/dir", "watch", "--once"])).failure(1);
    r.assert_stderr_has("no/such/dir");
    assert!(!r.stderr.contains("identity"), "{}", r.stderr);
}

/// Issue 16 #13: `apply --dry-run` validates and says what would change,
/// and writes nothing.
#[test]
fn issue16_apply_dry_run_writes_nothing() {
    let env = TestEnv::new();
    let yaml = env.outside(
        "s.yaml",
        format!(
            "type: Secret\nname: fresh\nmesh: default\ndata: {}\n",
            b64(b"v")
        ),
    );
    let before = env.snapshot();
    let r = env.ok(env.kcmd().args(["apply", "--dry-run", "-f"]).arg(&yaml));
    assert_eq!(r.stdout(), "Secret default/fresh created (dry run)\n");
    assert_same(&before, &env.snapshot(), "apply --dry-run");
    env.ok(env.kcmd().args(["apply", "-f"]).arg(&yaml));
    assert_eq!(env.raw("default", "fresh"), b"v");
}

/// Issue 16 #2: `init` makes only `default` and `global`; a new mesh gets
/// its first recipient with `recipients add -m MESH --self`, and `create`
/// in a mesh without one says exactly that.
#[test]
fn issue16_a_new_mesh_takes_my_own_key_with_self() {
    let env = TestEnv::new();
    env.refuses(
        env.kcmd().args([
            "create",
            "secret",
            "db",
            "-m",
            "payments",
            "--from-literal",
            "v",
        ]),
        1,
        &[
            "meshes/payments/recipients.txt",
            "`meshseal recipients add -m payments KEY` (or `--self` for your own key)",
        ],
    );
    env.ok_key(&["recipients", "add", "-m", "payments", "--self"]);
    let listed = env.ok_args(&["recipients", "list", "-m", "payments"]);
    assert_eq!(listed.stdout().trim(), env.public);
    env.ok_key(&[
        "create",
        "secret",
        "db",
        "-m",
        "payments",
        "--from-literal",
        "v",
    ]);
    assert_eq!(env.raw("payments", "db"), b"v");
    // Without any identity, --self has nothing to add.
    run(env
        .cmd()
        .args(["recipients", "add", "-m", "orders", "--self"]))
    .failure(1);
    assert!(!env.path("meshes/orders/recipients.txt").exists());
}

/// Issue 16 #12: JSON logs carry the file as a field of its own, not in a
/// prose string, and durations are rounded, not `0.40687900000000005`.
#[test]
fn issue16_json_logs_have_fields_and_rounded_durations() {
    let (env, _tokens) = TestEnv::serving();
    env.set("payments", "db", "v");
    let w = env.watch(&["--log-format", "json"]);
    let file = env.secret_file("payments", "db");
    let good = fs::read(&file).unwrap();
    fs::write(&file, "type = \"Secret\"\n").unwrap();
    w.eventually("the bad version is logged", |w| {
        w.log().contains("meshes/payments/secrets/db.age")
    });
    fs::write(&file, good).unwrap();
    env.set("payments", "db", "v2");
    env.set_global("root-ca", "g");
    // db is loaded twice (the good version back, then v2): wait for the
    // global secret's own line, not for a count.
    w.eventually("the global secret is logged as loaded", |w| {
        w.log()
            .lines()
            .any(|l| l.contains("secret loaded") && l.contains("\"name\":\"root-ca\""))
    });
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let warned = lines
        .iter()
        .find(|v| v["fields"]["file"] == "meshes/payments/secrets/db.age")
        .unwrap_or_else(|| panic!("no line with a file field:\n{log}"));
    let message = warned["fields"]["message"].as_str().unwrap();
    assert!(!message.contains("meshes/payments"), "{message}");
    // Scope and name are fields of their own; `mesh` is absent for a
    // global secret (SPEC 7).
    let loaded: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["fields"]["message"] == "secret loaded")
        .collect();
    let mesh_secret = loaded
        .iter()
        .find(|v| v["fields"]["name"] == "db")
        .unwrap_or_else(|| panic!("no `secret loaded` line for db:\n{log}"));
    assert_eq!(mesh_secret["fields"]["mesh"], "payments", "{log}");
    assert_eq!(
        mesh_secret["fields"]["file"],
        "meshes/payments/secrets/db.age"
    );
    let global = loaded
        .iter()
        .find(|v| v["fields"]["name"] == "root-ca")
        .unwrap_or_else(|| panic!("no `secret loaded` line for root-ca:\n{log}"));
    assert!(global["fields"].get("mesh").is_none(), "{log}");
    let mut durations = 0;
    for v in &lines {
        if let Some(d) = v["fields"].get("duration_ms") {
            durations += 1;
            let text = d.to_string();
            let decimals = text.split_once('.').map_or(0, |(_, f)| f.len());
            assert!(decimals <= 3, "duration_ms {text} is not rounded");
        }
    }
    assert!(durations > 0, "no duration_ms in:\n{log}");
}

/// Issue 16 #11: removing the global scope's only key needs --force, and
/// what follows says how to add one back with `--global`, not `-m MESH`.
#[test]
fn issue16_emptying_the_global_scope_needs_force_and_the_hint_says_global() {
    let env = TestEnv::new();
    let r = env.refuses(
        env.cmd()
            .args(["recipients", "remove", "--global", env.public.as_str()]),
        1,
        &[
            "global/recipients.txt",
            "last recipient",
            "`meshseal recipients add --global KEY`",
        ],
    );
    assert!(!r.stderr.contains("-m MESH"), "{}", r.stderr);
    let r = env.ok(env.cmd().args([
        "recipients",
        "remove",
        "--global",
        "--force",
        env.public.as_str(),
    ]));
    r.assert_stderr_has("`meshseal recipients add --global KEY`");
    let r = run(env
        .kcmd()
        .args(["create", "global-secret", "g", "--from-literal", "v"]))
    .failure(1);
    r.assert_stderr_has("global/recipients.txt");
    r.assert_stderr_has("`meshseal recipients add --global KEY`");
}

#[test]
fn the_longest_kuma_names_round_trip_without_an_os_error() {
    // SPEC 2: a 253-character name; `<name>.age.sig` would be 261 bytes.
    let env = TestEnv::new();
    let name = format!("{}.{}", "a".repeat(200), "b".repeat(52));
    assert_eq!(name.len(), 253);
    env.create("default", &name, "long-name-value");
    assert_eq!(env.raw("default", &name), b"long-name-value");
    let listing = env.ok_key(&["get", "secrets", "-m", "default"]);
    listing.assert_stdout_has(&name);
    env.ok_key(&["check"]);
    for file in walk(&env.path("meshes")) {
        let longest = file
            .components()
            .map(|c| c.as_os_str().len())
            .max()
            .unwrap();
        assert!(longest + ".sig".len() <= 255, "{}", file.display());
    }
    env.ok_key(&["delete", "secret", &name, "-m", "default"]);
    assert!(
        !env.path("meshes/default/secrets")
            .join(&name[..128])
            .exists(),
        "the long name's folder goes with its last file"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
