//! Every bad input of issue 2, through the built binary. Each one must give a
//! clear error naming the file (and the field), exit 1 (2 for usage errors),
//! never panic, and leave every file of the store exactly as it was (bytes,
//! mode, mtime, inode): `TestEnv::refuses` snapshots the store around the
//! command.

use std::fs;
use std::os::unix::fs::symlink;

use crate::age_files::*;
use crate::env::*;
use crate::snapshot::*;

const RFC1123: &str = "name: invalid characters. A lowercase RFC 1123 subdomain must consist of";

/// A file next to the store (outside it) holding `yaml`; returns its path as
/// a string for `apply -f`.
fn yaml_file(env: &TestEnv, name: &str, yaml: &str) -> String {
    env.outside(name, yaml).display().to_string()
}

fn secret_yaml(mesh: &str, name: &str, data: &str) -> String {
    format!("type: Secret\nmesh: {mesh}\nname: {name}\ndata: {data}\n")
}

/// Problem codes of `check -o json` (must exit 1).
fn check_codes(env: &TestEnv, with_key: bool) -> Vec<(String, String)> {
    let mut cmd = if with_key { env.kcmd() } else { env.cmd() };
    let r = env.refuses(cmd.args(["check", "-o", "json"]), 1, &[]);
    r.json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap_or("").to_string(),
                p["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[track_caller]
fn assert_has_problem(codes: &[(String, String)], file: &str, code: &str) {
    assert!(
        codes.iter().any(|(f, c)| f == file && c == code),
        "expected {code} for {file}, got {codes:?}"
    );
}

// ------------------------------------------------------------ YAML and apply

#[test]
fn malformed_yaml_names_the_file_and_line_and_applies_nothing() {
    let env = TestEnv::new();
    let yaml = format!(
        "{}---\ntype: Secret\nmesh: default\nname: b\ndata: [YQ==\n",
        secret_yaml("default", "a", "YQ==")
    );
    let f = yaml_file(&env, "broken.yaml", &yaml);
    let r = env.refuses(
        env.cmd().args(["apply", "-f", &f]),
        1,
        &["broken.yaml:", "invalid YAML", "nothing was applied"],
    );
    // The problem line is `file:line: ...` with the line of the error.
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("invalid YAML"))
        .unwrap();
    let after = line.split("broken.yaml:").nth(1).unwrap();
    let n: usize = after
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a line number");
    assert!((9..=10).contains(&n), "{line}");
}

#[test]
fn malformed_yaml_on_stdin_is_named_stdin() {
    let env = TestEnv::new();
    env.refuses(
        env.cmd()
            .args(["apply", "-f", "-"])
            .write_stdin("type: Secret\n\tmesh: default\n"),
        1,
        &["<stdin>", "invalid YAML"],
    );
    env.refuses(
        env.cmd()
            .args(["apply", "-f", "-"])
            .write_stdin(b"type: Secret\nname: \xff\xfe\n".to_vec()),
        1,
        &["<stdin>"],
    );
}

#[test]
fn apply_of_a_missing_file_names_it() {
    let env = TestEnv::new();
    env.refuses(
        env.cmd().args(["apply", "-f", "no-such-file.yaml"]),
        1,
        &["no-such-file.yaml"],
    );
}

#[test]
fn bad_names_are_refused_with_kumas_texts() {
    let env = TestEnv::new();
    let long = "a".repeat(254);
    let cases: &[(&str, &str)] = &[
        ("Upper", RFC1123),
        ("under_score", RFC1123),
        ("-leading", RFC1123),
        ("trailing-", RFC1123),
        ("dots..twice", RFC1123),
        ("\"../escape\"", RFC1123),
        ("\"has space\"", RFC1123),
        ("\"\"", "name: cannot be empty"),
        (&long, "name: must be no more than 253 characters"),
    ];
    for (name, text) in cases {
        let f = yaml_file(&env, "bad-name.yaml", &secret_yaml("default", name, "YQ=="));
        env.refuses(
            env.cmd().args(["apply", "-f", &f]),
            1,
            &["bad-name.yaml", "document 1", text],
        );
        let unquoted = name.trim_matches('"');
        // After `--`, so that "-leading" is a name, not a flag.
        env.refuses(
            env.cmd()
                .args(["create", "secret", "--from-literal", "x", "--", unquoted]),
            1,
            &[text],
        );
        env.refuses(
            env.cmd().args([
                "create",
                "global-secret",
                "--from-literal",
                "x",
                "--",
                unquoted,
            ]),
            1,
            &[text],
        );
    }
    // Nothing escaped the store either.
    assert!(!env.tmp().join("escape.age").exists());
    assert!(!env.root.join("meshes/escape.age").exists());
}

#[test]
fn bad_meshes_are_refused() {
    let env = TestEnv::new();
    let cases: &[(&str, &str)] = &[
        ("Payments", "mesh: invalid characters"),
        ("\"a/b\"", "mesh: invalid characters"),
        ("\"..\"", "mesh: invalid characters"),
        (".hidden", "mesh: invalid characters"),
        ("\"has space\"", "mesh: invalid characters"),
        ("\"\"", "mesh: cannot be empty"),
    ];
    for (mesh, text) in cases {
        let f = yaml_file(&env, "bad-mesh.yaml", &secret_yaml(mesh, "db", "YQ=="));
        env.refuses(
            env.cmd().args(["apply", "-f", &f]),
            1,
            &["bad-mesh.yaml", text],
        );
        env.refuses(
            env.cmd().args([
                "create",
                "secret",
                "db",
                "-m",
                mesh.trim_matches('"'),
                "--from-literal",
                "x",
            ]),
            1,
            &[text],
        );
    }
    env.refuses(
        env.cmd().args(["get", "secrets", "-m", "../.."]),
        1,
        &["mesh: invalid characters"],
    );
}

#[test]
fn mesh_on_a_global_secret_is_refused() {
    let env = TestEnv::new();
    let universal = "type: GlobalSecret\nmesh: default\nname: ca\ndata: YQ==\n";
    let kubernetes = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ca\n  labels:\n    kuma.io/mesh: default\ndata:\n  value: YQ==\ntype: system.kuma.io/global-secret\n";
    for (file, yaml) in [("u.yaml", universal), ("k.yaml", kubernetes)] {
        let f = yaml_file(&env, file, yaml);
        env.refuses(
            env.cmd().args(["apply", "-f", &f]),
            1,
            &[file, "mesh cannot be set on global secret"],
        );
    }
}

#[test]
fn documents_of_the_wrong_shape_are_refused() {
    let env = TestEnv::new();
    let cases: &[(&str, &str)] = &[
        ("type: Secret\nname: db\ndata: YQ==\n", "mesh: cannot be empty"),
        ("mesh: default\nname: db\ndata: YQ==\n", "type: cannot be empty"),
        (
            "apiVersion: kuma.io/v1alpha1\nkind: Mesh\n",
            "metadata: cannot be empty",
        ),
        ("kind: Deployment\n", "unsupported resource Deployment"),
        (
            "type: Secret\nmesh: default\nname: db\ndata: YQ==\nvalue: YQ==\n",
            "unknown key \"value\"",
        ),
        (
            "type: Secret\nmesh: default\nname: db\ndata: 42\n",
            "data: must be a string",
        ),
        ("- just\n- a list\n", "must be a mapping"),
        (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  value: YQ==\ntype: Opaque\n",
            "unsupported resource",
        ),
        (
            "type: Secret\nmesh: default\nname: db\ndata: YQ==\n---\ntype: Secret\nmesh: default\nname: db\ndata: Yg==\n",
            "also defined by document 1",
        ),
    ];
    for (yaml, text) in cases {
        let f = yaml_file(&env, "shape.yaml", yaml);
        env.refuses(
            env.cmd().args(["apply", "-f", &f]),
            1,
            &["shape.yaml", text],
        );
    }
}

#[test]
fn empty_data_is_refused() {
    let env = TestEnv::new();
    for (yaml, file) in [
        (secret_yaml("default", "db", "\"\""), "empty.yaml"),
        ("type: Secret\nmesh: default\nname: db\n".to_string(), "nodata.yaml"),
        (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata: {}\ntype: system.kuma.io/secret\n"
                .to_string(),
            "k8s-empty.yaml",
        ),
    ] {
        let f = yaml_file(&env, file, &yaml);
        env.refuses(
            env.cmd().args(["apply", "-f", &f]),
            1,
            &[file, "data: cannot be empty"],
        );
    }
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-literal", ""]),
        1,
        &["data: cannot be empty"],
    );
    env.refuses(
        env.cmd()
            .args(["create", "global-secret", "db", "--from-stdin"])
            .write_stdin(""),
        1,
        &["data: cannot be empty"],
    );
    let empty = env.outside("empty.bin", "");
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-file"])
            .arg(&empty),
        1,
        &["data: cannot be empty"],
    );
}

#[test]
fn create_from_a_bad_file_names_the_file() {
    let env = TestEnv::new();
    let empty = env.outside("empty-value.bin", "");
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-file"])
            .arg(&empty),
        1,
        &["empty-value.bin", "data: cannot be empty"],
    );
    let big = env.outside("big-value.bin", vec![b'x'; 1024 * 1024 + 1]);
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-file"])
            .arg(&big),
        1,
        &["big-value.bin", "exceed the limit of 1048576 bytes"],
    );
}

#[test]
fn invalid_base64_data_is_refused() {
    let env = TestEnv::new();
    for data in ["\"!!!!\"", "YQ", "YQ=", "\"YQ== \"", "Y-Q_", "YQ==YQ=="] {
        let f = yaml_file(&env, "b64.yaml", &secret_yaml("default", "db", data));
        env.refuses(
            env.cmd().args(["apply", "-f", &f]),
            1,
            &["b64.yaml", "data: must be valid base64"],
        );
    }
}

#[test]
fn data_over_the_default_one_mebibyte_limit_is_refused() {
    let env = TestEnv::new();
    let over = vec![b'z'; 1024 * 1024 + 1];
    let f = yaml_file(
        &env,
        "huge.yaml",
        &secret_yaml("default", "db", &b64(&over)),
    );
    env.refuses(
        env.cmd().args(["apply", "-f", &f]),
        1,
        &[
            "huge.yaml",
            "1048577 bytes exceed the limit of 1048576 bytes",
        ],
    );
    let file = env.outside("huge.bin", &over);
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-file"])
            .arg(&file),
        1,
        &["exceed the limit of 1048576 bytes"],
    );
    env.refuses(
        env.cmd()
            .args(["create", "global-secret", "db", "--from-stdin"])
            .write_stdin(over),
        1,
        &["exceed the limit of 1048576 bytes"],
    );
    // Exactly the limit is fine.
    let exact: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let file = env.outside("exact.bin", &exact);
    env.ok(env
        .cmd()
        .args(["create", "secret", "exact", "--from-file"])
        .arg(&file));
    assert_eq!(env.raw("default", "exact"), exact);
}

#[test]
fn data_over_a_store_limit_is_refused() {
    let env = TestEnv::new();
    env.set_max_data_bytes(16);
    env.refuses(
        env.cmd().args([
            "create",
            "secret",
            "db",
            "--from-literal",
            "seventeen-bytes!!",
        ]),
        1,
        &["17 bytes exceed the limit of 16 bytes", "max_data_bytes"],
    );
    let f = yaml_file(
        &env,
        "limit.yaml",
        &secret_yaml("default", "db", &b64(b"seventeen-bytes!!")),
    );
    env.refuses(
        env.cmd().args(["apply", "-f", &f]),
        1,
        &["limit.yaml", "exceed the limit of 16 bytes"],
    );
    env.create("default", "db", "sixteen-bytes!!!");
}

#[test]
fn secrets_over_a_lowered_limit_fail_to_load_and_check() {
    let env = TestEnv::new();
    env.create("default", "db", "0123456789");
    env.set_max_data_bytes(8);
    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[
            "meshes/default/secrets/db.age",
            "exceed the limit of 8 bytes",
        ],
    );
    let codes = check_codes(&env, true);
    assert_has_problem(&codes, "meshes/default/secrets/db.age", "data-too-large");
}

#[test]
fn oversize_error_reports_the_decoded_size() {
    let env = TestEnv::new();
    env.set_max_data_bytes(8);
    let f = yaml_file(
        &env,
        "ten.yaml",
        &secret_yaml("default", "db", &b64(b"0123456789")),
    );
    env.refuses(
        env.cmd().args(["apply", "-f", &f]),
        1,
        &["ten.yaml", "10 bytes exceed the limit of 8 bytes"],
    );
}

#[test]
fn invalid_store_config_is_named() {
    let env = TestEnv::new();
    env.write("meshseal.toml", "version = 1\n[limits\n");
    env.refuses(
        env.cmd().arg("check"),
        1,
        &["meshseal.toml:2", "invalid store config"],
    );
    env.write("meshseal.toml", "version = 1\nbogus = 3\n");
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-literal", "x"]),
        1,
        &["meshseal.toml:2"],
    );
    env.write("meshseal.toml", "version = 2\n");
    env.refuses(
        env.cmd().args(["get", "secrets"]),
        1,
        &["meshseal.toml", "version 2"],
    );
    env.write("meshseal.toml", "[limits]\nmax_data_bytes = 0\n");
    env.refuses(
        env.cmd().arg("check"),
        1,
        &["meshseal.toml", "max_data_bytes"],
    );
}

#[test]
fn apply_checks_every_scope_before_writing_anything() {
    let env = TestEnv::new();
    let yaml = format!(
        "{}---\n{}",
        secret_yaml("default", "first", "YQ=="),
        secret_yaml("no-recipients-yet", "second", "YQ==")
    );
    let f = yaml_file(&env, "two.yaml", &yaml);
    env.refuses(
        env.cmd().args(["apply", "-f", &f]),
        1,
        &["meshes/no-recipients-yet/recipients.txt"],
    );
}

#[test]
fn apply_writes_nothing_when_one_target_is_a_symlink() {
    let env = TestEnv::new();
    let outside = env.outside("elsewhere.age", "not ours");
    fs::create_dir_all(env.path("meshes/default/secrets")).unwrap();
    symlink(&outside, env.path("meshes/default/secrets/linked.age")).unwrap();
    let yaml = format!(
        "{}---\n{}",
        secret_yaml("default", "first", "YQ=="),
        secret_yaml("default", "linked", "YQ==")
    );
    let f = yaml_file(&env, "two.yaml", &yaml);
    env.refuses(
        env.cmd().args(["apply", "-f", &f]),
        1,
        &["meshes/default/secrets/linked.age", "symlink"],
    );
    assert_eq!(fs::read(&outside).unwrap(), b"not ours");
}

// ------------------------------------------------------------ recipients

#[test]
fn invalid_recipient_keys_are_refused() {
    let env = TestEnv::new();
    for key in [
        "garbage",
        "age1qqqqqqqq",
        "ssh-ed25519 AAAAnotbase64!!",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
    ] {
        env.refuses(
            env.cmd().args(["recipients", "add", "-m", "default", key]),
            1,
            &["invalid recipient"],
        );
    }
    let (_, stranger) = env.new_identity("stranger.txt");
    env.refuses(
        env.cmd()
            .args(["recipients", "remove", "-m", "default", stranger.as_str()]),
        1,
        &["meshes/default/recipients.txt", "not a recipient"],
    );
}

#[test]
fn a_broken_recipients_file_is_named_with_its_line() {
    let env = TestEnv::new();
    let text = format!("# ok\n{}\nnot-a-key\n", env.public);
    env.write("meshes/default/recipients.txt", text);
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-literal", "x"]),
        1,
        &["meshes/default/recipients.txt:3", "invalid recipient"],
    );
    let codes = check_codes(&env, false);
    assert_has_problem(&codes, "meshes/default/recipients.txt", "invalid-recipient");
}

#[test]
fn a_scope_with_no_recipients_is_refused() {
    let env = TestEnv::new();
    env.write("meshes/default/recipients.txt", "# nobody\n");
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-literal", "x"]),
        1,
        &["meshes/default/recipients.txt", "no recipients"],
    );
}

// ------------------------------------------------------------ identities

#[test]
fn wrong_identity_is_refused_naming_the_file() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    let (wrong, _) = env.new_identity("wrong.txt");
    let with_wrong = |args: &[&str]| {
        let mut c = env.cmd();
        c.arg("-i").arg(&wrong).args(args);
        c
    };
    env.refuses(
        &mut with_wrong(&["get", "secret", "db", "-o", "raw"]),
        1,
        &["meshes/default/secrets/db.age", "no identity matched"],
    );
    // Listing needs no key: a key that opens nothing still lists (issue 16 #4).
    let listed = env.ok(&mut with_wrong(&["get", "secrets"]));
    assert!(listed.stdout().contains("db  "), "{}", listed.stdout());
    assert!(listed.stdout().contains("no-key"), "{}", listed.stdout());
    env.refuses(
        &mut with_wrong(&["export", "--kuma"]),
        1,
        &["meshes/default/secrets/db.age", "nothing was exported"],
    );
    let r = env.refuses(&mut with_wrong(&["check", "-o", "json"]), 1, &[]);
    let p = &r.json()[0];
    assert_eq!(p["file"], "meshes/default/secrets/db.age");
    assert_eq!(p["code"], "no-matching-key");
}

#[test]
fn missing_identity_is_refused_with_a_hint() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    env.create_global("ca", "y");
    let default = env.default_identity_path().display().to_string();
    for args in [
        &["get", "secret", "db", "-o", "raw"][..],
        &["get", "global-secret", "ca", "-o", "yaml"],
        &["export", "--kubernetes"],
    ] {
        env.refuses(
            env.cmd().args(args),
            1,
            &["no identity", "-i FILE", "MESHSEAL_IDENTITY", &default],
        );
    }
}

#[test]
fn an_identity_file_that_does_not_exist_is_named() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    let missing = env.keys.join("missing.txt");
    env.refuses(
        env.cmd()
            .arg("-i")
            .arg(&missing)
            .args(["get", "secret", "db", "-o", "raw"]),
        1,
        &["missing.txt"],
    );
    env.refuses(
        env.cmd()
            .env("MESHSEAL_IDENTITY", &missing)
            .args(["get", "secret", "db", "-o", "raw"]),
        1,
        &["missing.txt"],
    );
}

#[test]
fn group_or_world_readable_identity_is_refused_with_chmod_hint() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    for mode in [0o644, 0o640, 0o604] {
        chmod(&env.identity, mode);
        let id = env.identity.display().to_string();
        let text = format!("{mode:04o}");
        env.refuses(
            env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
            1,
            &[&id, &text, "chmod 600"],
        );
        env.refuses(
            env.cmd()
                .env("MESHSEAL_IDENTITY", &env.identity)
                .args(["get", "secret", "db", "-o", "raw"]),
            1,
            &[&id, "chmod 600"],
        );
        // Commands for which a key is optional refuse it too, and write nothing.
        env.refuses(
            env.kcmd()
                .args(["apply", "-f", "-"])
                .write_stdin(secret_yaml("default", "db", "Yg==")),
            1,
            &["chmod 600"],
        );
        env.refuses(env.kcmd().arg("check"), 1, &["chmod 600"]);
    }
    // A symlink to a loose key is refused too.
    let link = env.keys.join("link.txt");
    symlink(&env.identity, &link).unwrap();
    env.refuses(
        env.cmd()
            .arg("-i")
            .arg(&link)
            .args(["get", "secret", "db", "-o", "raw"]),
        1,
        &["chmod 600"],
    );
    chmod(&env.identity, 0o600);
    assert_eq!(env.raw("default", "db"), b"x");
}

#[test]
fn an_identity_file_that_is_not_a_key_is_named() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    let bad = env.keys.join("not-a-key.txt");
    fs::write(&bad, "AGE-SECRET-KEY-1NOTREALLYAKEY\n").unwrap();
    chmod(&bad, 0o600);
    env.refuses(
        env.cmd()
            .arg("-i")
            .arg(&bad)
            .args(["get", "secret", "db", "-o", "raw"]),
        1,
        &["not-a-key.txt", "invalid identity file"],
    );
    // A public key where a private key belongs.
    fs::write(&bad, format!("{}\n", env.public)).unwrap();
    env.refuses(
        env.cmd()
            .arg("-i")
            .arg(&bad)
            .args(["get", "secret", "db", "-o", "raw"]),
        1,
        &["not-a-key.txt"],
    );
}

// ------------------------------------------------------------ damaged files

#[test]
fn tampered_ciphertext_is_refused() {
    let env = TestEnv::new();
    env.create("default", "db", &"v".repeat(200));
    let original = env.read("meshes/default/secrets/db.age");
    env.write(
        "meshes/default/secrets/db.age",
        flip_payload_char(&original),
    );
    let file = "meshes/default/secrets/db.age";
    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[file, "decryption failed"],
    );
    env.refuses(env.kcmd().args(["get", "secrets"]), 1, &[file]);
    env.refuses(
        env.kcmd().args(["export", "--kuma"]),
        1,
        &[file, "nothing was exported"],
    );
    assert_has_problem(&check_codes(&env, true), file, "corrupt");
}

#[test]
fn damaged_armor_is_seen_without_a_key() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    let mut bytes = env.read("meshes/default/secrets/db.age");
    let pos = "-----BEGIN AGE ENCRYPTED FILE-----\n".len() + 20;
    bytes[pos] = b'!';
    env.write("meshes/default/secrets/db.age", bytes);
    let file = "meshes/default/secrets/db.age";
    assert_has_problem(&check_codes(&env, false), file, "malformed-age");
    env.refuses(env.cmd().args(["get", "secrets"]), 1, &[file]);
    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[file],
    );
}

#[test]
fn truncated_files_are_refused() {
    let env = TestEnv::new();
    env.create("default", "db", &"t".repeat(200));
    let original = env.read("meshes/default/secrets/db.age");
    let file = "meshes/default/secrets/db.age";

    // Cut in half: the armor is broken, visible without a key.
    env.write(file, &original[..original.len() / 2]);
    assert_has_problem(&check_codes(&env, false), file, "malformed-age");
    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[file],
    );

    // Valid armor around a payload that lost its end: only decryption sees it.
    env.write(file, truncate_payload(&original, 10));
    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[file, "decryption failed"],
    );
    assert_has_problem(&check_codes(&env, true), file, "corrupt");

    // Empty.
    env.write(file, "");
    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[file],
    );
    let codes = check_codes(&env, false);
    assert!(codes.iter().any(|(f, _)| f == file), "{codes:?}");
}

#[test]
fn plaintext_where_a_secret_belongs_is_refused() {
    let env = TestEnv::new();
    env.add_mesh("m");
    let file = "meshes/m/secrets/x.age";
    env.write(file, document("Secret", Some("m"), "x", b"oops-plaintext"));
    assert_has_problem(&check_codes(&env, false), file, "plaintext");
    assert_has_problem(&check_codes(&env, true), file, "plaintext");
    env.refuses(
        env.kcmd()
            .args(["get", "secret", "x", "-m", "m", "-o", "raw"]),
        1,
        &[file, "not an age-encrypted file"],
    );
    env.refuses(env.cmd().args(["get", "secrets", "-m", "m"]), 1, &[file]);
    env.refuses(env.kcmd().args(["export", "--kuma", "-m", "m"]), 1, &[file]);
}

#[test]
fn files_in_secrets_that_are_not_age_secrets_are_reported() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    env.write("meshes/default/secrets/db.yaml", "data: eA==\n");
    env.write("meshes/default/secrets/README", "notes\n");
    env.write(
        "global/secrets/Bad_Name.age",
        env.read("meshes/default/secrets/db.age"),
    );
    for with_key in [false, true] {
        let codes = check_codes(&env, with_key);
        assert_has_problem(&codes, "meshes/default/secrets/db.yaml", "not-age-file");
        assert_has_problem(&codes, "meshes/default/secrets/README", "not-age-file");
        assert_has_problem(&codes, "global/secrets/Bad_Name.age", "invalid-name");
    }
}

#[test]
fn malformed_toml_inside_a_secret_is_named_with_its_line() {
    let env = TestEnv::new();
    let file = "meshes/default/secrets/db.age";
    let cases: &[(&str, &str)] = &[
        (
            "type = \"Secret\"\nmesh = \"default\"\nname = \"db\"\ndata = \"YQ==\n",
            "db.age:4: invalid TOML",
        ),
        (
            "type = \"Secret\"\nmesh = \"default\"\nname = \"db\"\ndata = \"YQ==\"\nextra = 1\n",
            "db.age:5: unknown key \"extra\"",
        ),
        (
            "type = \"Secret\"\nmesh = \"default\"\nname = \"db\"\ndata = 5\n",
            "db.age:4: data: must be a string",
        ),
        (
            "type = \"Secret\"\nmesh = \"default\"\nname = \"db\"\ndata = \"\"\n",
            "data: cannot be empty",
        ),
        (
            "type = \"Secret\"\nmesh = \"default\"\nname = \"db\"\ndata = \"not base64!\"\n",
            "db.age:4: data: must be valid base64",
        ),
        (
            "type = \"Secret\"\nname = \"db\"\ndata = \"YQ==\"\n",
            "mesh: cannot be empty",
        ),
        (
            "type = \"Secret\"\nmesh = \"default\"\nname = \"Db\"\ndata = \"YQ==\"\n",
            RFC1123,
        ),
        (
            "type = \"Secret\"\nmesh = \"default\"\nname = \"db\"\ndata = \"YQ==\"\n[labels]\nteam = 1\n",
            "labels",
        ),
    ];
    for (plaintext, text) in cases {
        env.craft(file, plaintext, "mesh:default", "db");
        env.refuses(
            env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
            1,
            &[file, text],
        );
        let r = env.refuses(env.kcmd().arg("check"), 1, &[file]);
        r.assert_stderr_has(text);
    }
}

#[test]
fn symlink_in_secrets_pointing_out_of_the_store_is_refused() {
    let env = TestEnv::new();
    env.create("default", "db", "linked-value");
    // A perfectly valid ciphertext for this very path, but outside the store.
    let outside = env.tmp().join("db.age");
    fs::rename(env.path("meshes/default/secrets/db.age"), &outside).unwrap();
    symlink(&outside, env.path("meshes/default/secrets/db.age")).unwrap();
    let original = fs::read(&outside).unwrap();
    let file = "meshes/default/secrets/db.age";

    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[file, "symlink"],
    );
    env.refuses(env.cmd().args(["get", "secrets"]), 1, &[file, "symlink"]);
    env.refuses(env.kcmd().args(["get", "secrets"]), 1, &[file, "symlink"]);
    for with_key in [false, true] {
        assert_has_problem(&check_codes(&env, with_key), file, "symlink");
    }
    env.refuses(
        env.cmd().args(["delete", "secret", "db"]),
        1,
        &[file, "symlink"],
    );
    env.refuses(
        env.kcmd()
            .args(["apply", "-f", "-"])
            .write_stdin(secret_yaml("default", "db", "Yg==")),
        1,
        &[file, "symlink"],
    );
    env.refuses(
        env.cmd()
            .args(["create", "secret", "db", "--from-literal", "new"]),
        1,
        &[file],
    );
    assert_eq!(
        fs::read(&outside).unwrap(),
        original,
        "the link target was touched"
    );
}

#[test]
fn symlinked_secrets_folder_is_refused() {
    let env = TestEnv::new();
    env.add_mesh("pay");
    env.create("pay", "db", "x");
    let outside = env.tmp().join("elsewhere");
    fs::rename(env.path("meshes/pay/secrets"), &outside).unwrap();
    symlink(&outside, env.path("meshes/pay/secrets")).unwrap();
    let outside_before = snapshot(&outside);

    env.refuses(
        env.kcmd()
            .args(["get", "secret", "db", "-m", "pay", "-o", "raw"]),
        1,
        &["meshes/pay/secrets", "symlink"],
    );
    assert_has_problem(&check_codes(&env, false), "meshes/pay/secrets", "symlink");
    env.refuses(
        env.cmd().args([
            "create",
            "secret",
            "new",
            "-m",
            "pay",
            "--from-literal",
            "x",
        ]),
        1,
        &["symlink"],
    );
    env.refuses(
        env.kcmd()
            .args(["apply", "-f", "-"])
            .write_stdin(secret_yaml("pay", "db", "Yg==")),
        1,
        &["symlink"],
    );
    env.refuses(
        env.cmd().args(["delete", "secret", "db", "-m", "pay"]),
        1,
        &["symlink"],
    );
    assert_same(
        &outside_before,
        &snapshot(&outside),
        "writes through a linked folder",
    );
}

#[test]
fn special_and_huge_files_are_refused_without_hanging() {
    let env = TestEnv::new();
    let limit = std::time::Duration::from_secs(20);
    // Endless and non-regular inputs.
    env.refuses(
        env.cmd()
            .args(["create", "secret", "z", "--from-file", "/dev/zero"])
            .timeout(limit),
        1,
        &["exceed the limit"],
    );
    env.refuses(
        env.cmd().args(["apply", "-f", "/dev/zero"]).timeout(limit),
        1,
        &["/dev/zero"],
    );
    let dir = env.tmp().display().to_string();
    env.refuses(
        env.cmd().args(["apply", "-f", &dir]).timeout(limit),
        1,
        &[&dir],
    );
    // A FIFO where a secret belongs: never opened, so never blocks.
    let fifo = env.path("meshes/default/secrets/fifo.age");
    fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let file = "meshes/default/secrets/fifo.age";
        env.refuses(
            env.kcmd()
                .args(["get", "secret", "fifo", "-o", "raw"])
                .timeout(limit),
            1,
            &[file, "not a regular file"],
        );
        env.refuses(env.cmd().arg("check").timeout(limit), 1, &[file]);
        env.refuses(
            env.kcmd().args(["get", "secrets"]).timeout(limit),
            1,
            &[file],
        );
        fs::remove_file(&fifo).unwrap();
    }
    // A file far larger than any valid secret is not even read.
    let file = "meshes/default/secrets/huge.age";
    let mut huge = b"-----BEGIN AGE ENCRYPTED FILE-----\n".to_vec();
    huge.extend(std::iter::repeat_n(b'A', 3 * 1024 * 1024));
    env.write(file, huge);
    env.refuses(env.cmd().arg("check").timeout(limit), 1, &[file, "bytes"]);
    env.refuses(
        env.kcmd()
            .args(["get", "secret", "huge", "-o", "raw"])
            .timeout(limit),
        1,
        &[file],
    );
}

// ------------------------------------------------------------ scope binding

#[test]
fn ciphertext_copied_into_another_mesh_fails_check_with_and_without_a_key() {
    let env = TestEnv::new();
    env.add_mesh("pay");
    env.create("default", "db", "default-only");
    env.write(
        "meshes/pay/secrets/db.age",
        env.read("meshes/default/secrets/db.age"),
    );
    let file = "meshes/pay/secrets/db.age";
    for with_key in [false, true] {
        let codes = check_codes(&env, with_key);
        assert_has_problem(&codes, file, "scope-mismatch");
        assert!(
            codes.iter().all(|(f, _)| f == file),
            "only the copy is wrong: {codes:?}"
        );
    }
    env.refuses(
        env.kcmd()
            .args(["get", "secret", "db", "-m", "pay", "-o", "raw"]),
        1,
        &[file],
    );
    env.refuses(env.kcmd().args(["get", "secrets", "-m", "pay"]), 1, &[file]);
    env.refuses(
        env.kcmd().args(["export", "--kuma", "-m", "pay"]),
        1,
        &[file],
    );
    // The original is fine.
    assert_eq!(env.raw("default", "db"), b"default-only");
}

#[test]
fn keyless_listing_flags_a_copied_ciphertext() {
    let env = TestEnv::new();
    env.add_mesh("pay");
    env.create("default", "db", "x");
    env.write(
        "meshes/pay/secrets/db.age",
        env.read("meshes/default/secrets/db.age"),
    );
    env.refuses(
        env.cmd().args(["get", "secrets", "-m", "pay"]),
        1,
        &["meshes/pay/secrets/db.age"],
    );
}

#[test]
fn renamed_ciphertext_fails_to_load() {
    let env = TestEnv::new();
    env.create("default", "db", "x");
    fs::rename(
        env.path("meshes/default/secrets/db.age"),
        env.path("meshes/default/secrets/other.age"),
    )
    .unwrap();
    let file = "meshes/default/secrets/other.age";
    for with_key in [false, true] {
        assert_has_problem(&check_codes(&env, with_key), file, "scope-mismatch");
    }
    env.refuses(
        env.kcmd().args(["get", "secret", "other", "-o", "raw"]),
        1,
        &[file],
    );
}

#[test]
fn ciphertext_moved_between_global_and_meshes_fails_to_load() {
    let env = TestEnv::new();
    env.create("default", "db", "mesh-secret");
    env.create_global("ca", "global-secret");
    env.write(
        "global/secrets/db.age",
        env.read("meshes/default/secrets/db.age"),
    );
    env.write(
        "meshes/default/secrets/ca.age",
        env.read("global/secrets/ca.age"),
    );
    for with_key in [false, true] {
        let codes = check_codes(&env, with_key);
        assert_has_problem(&codes, "global/secrets/db.age", "scope-mismatch");
        assert_has_problem(&codes, "meshes/default/secrets/ca.age", "scope-mismatch");
    }
    env.refuses(
        env.kcmd().args(["get", "global-secret", "db", "-o", "raw"]),
        1,
        &["global/secrets/db.age"],
    );
    env.refuses(
        env.kcmd().args(["get", "secret", "ca", "-o", "raw"]),
        1,
        &["meshes/default/secrets/ca.age"],
    );
}

#[test]
fn stock_age_document_for_another_mesh_is_caught_with_a_key() {
    let env = TestEnv::new();
    env.add_mesh("pay");
    let file = "meshes/default/secrets/db.age";
    // What `age -R meshes/default/recipients.txt -a` makes from a document
    // that says it belongs to mesh "pay": no metadata to catch it keyless.
    env.write(
        file,
        stock_encrypt(
            document("Secret", Some("pay"), "db", b"x").as_bytes(),
            &[env.public.as_str()],
        ),
    );
    let keyless = check_codes(&env, false);
    assert_has_problem(&keyless, file, "missing-metadata");
    let with_key = check_codes(&env, true);
    assert_has_problem(&with_key, file, "scope-mismatch");
    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[file, "mesh \"pay\""],
    );
}

#[test]
fn document_whose_type_mesh_or_name_disagrees_with_a_correct_header_is_refused() {
    let env = TestEnv::new();
    env.add_mesh("pay");
    let file = "meshes/default/secrets/db.age";
    for plaintext in [
        document("GlobalSecret", None, "db", b"x"),
        document("Secret", Some("pay"), "db", b"x"),
        document("Secret", Some("default"), "other", b"x"),
    ] {
        env.craft(file, &plaintext, "mesh:default", "db");
        // The header is right, so only a key can tell.
        env.ok_args(&["check"]);
        assert_has_problem(&check_codes(&env, true), file, "scope-mismatch");
        env.refuses(
            env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
            1,
            &[file, "path says"],
        );
    }
}

#[test]
fn header_that_disagrees_with_its_path_is_refused_even_if_the_document_agrees() {
    let env = TestEnv::new();
    env.add_mesh("pay");
    let file = "meshes/default/secrets/db.age";
    env.craft(
        file,
        &document("Secret", Some("default"), "db", b"x"),
        "mesh:pay",
        "db",
    );
    for with_key in [false, true] {
        assert_has_problem(&check_codes(&env, with_key), file, "scope-mismatch");
    }
    env.refuses(
        env.kcmd().args(["get", "secret", "db", "-o", "raw"]),
        1,
        &[file, "header metadata"],
    );
}

// ------------------------------------------------------------ usage

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    for args in [
        &[][..],
        &["frobnicate"],
        &["create", "secret", "x"],
        &[
            "create",
            "secret",
            "x",
            "--from-literal",
            "a",
            "--from-stdin",
        ],
        &["create", "global-secret"],
        &["recipients", "list"],
        &["recipients", "add", "-m", "default"],
        &["recipients", "add", "-m", "default", "--global", "age1x"],
        &["export"],
        &["export", "--kuma", "--kubernetes"],
        &["get", "secret"],
        &["get", "secrets", "-o", "xml"],
        &["apply"],
        &["delete", "secret"],
        &["check", "-o", "csv"],
    ] {
        env.refuses(env.cmd().args(args), 2, &[]);
    }
}

#[test]
fn raw_output_of_a_listing_is_a_usage_error() {
    let env = TestEnv::new();
    env.refuses(
        env.cmd().args(["get", "secrets", "-o", "raw"]),
        2,
        &["-o raw"],
    );
    env.refuses(
        env.cmd().args(["get", "global-secrets", "-o", "raw"]),
        2,
        &["-o raw"],
    );
}

#[test]
fn a_directory_that_is_not_a_store_is_named() {
    let env = TestEnv::without_store();
    let dir = env.root.display().to_string();
    for args in [
        &["get", "secrets"][..],
        &["check"],
        &["create", "secret", "x", "--from-literal", "y"],
    ] {
        env.refuses(env.cmd().args(args), 1, &[".: not a meshseal store"]);
        env.refuses(
            env.cmd().arg("-C").arg(&env.root).args(args),
            1,
            &[&dir, "not a meshseal store"],
        );
    }
}
