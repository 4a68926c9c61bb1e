//! Secret bytes never show where they should not: distinctive values are
//! planted, then searched for (raw, base64, and a fragment of each) in every
//! listing, in the stderr and stdout of failing commands, in `Debug` output,
//! and in the files on disk.

mod common;

use common::*;

/// Distinctive values, one per way a secret gets in.
const LITERAL: &str = "canary-literal-Qz7Wx9Lk2Vb";
const FROM_FILE: &str = "canary-file-Hd83Jq0PzXm";
const FROM_STDIN: &str = "canary-stdin-Yt51Mb6RuNc";
const GLOBAL: &str = "canary-global-Pv28Nc4KsTe";
const APPLIED: &str = "canary-apply-Fg47Tr9AxLo";

const ALL: [&str; 5] = [LITERAL, FROM_FILE, FROM_STDIN, GLOBAL, APPLIED];

/// What must never appear for a value: the value, its base64 (the `data`
/// field), and fragments of both (a partial echo is a leak too).
fn forms(value: &str) -> Vec<String> {
    let encoded = b64(value.as_bytes());
    vec![
        value.to_string(),
        value[value.len() - 10..].to_string(),
        encoded.clone(),
        encoded[4..16].to_string(),
    ]
}

#[track_caller]
fn assert_hidden(r: &Run, values: &[&str]) {
    for v in values {
        for f in forms(v) {
            r.assert_never_shows(&f);
        }
    }
}

/// A store holding every canary.
fn planted() -> TestEnv {
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("default", "literal", LITERAL);
    let file = env.outside("value.txt", FROM_FILE);
    env.ok(env
        .cmd()
        .args(["create", "secret", "file", "-m", "payments", "--from-file"])
        .arg(&file));
    env.ok(env
        .cmd()
        .args(["create", "secret", "stdin", "--from-stdin"])
        .write_stdin(FROM_STDIN));
    env.create_global("global", GLOBAL);
    let yaml = format!(
        "type: Secret\nmesh: payments\nname: applied\ndata: {}\n",
        b64(APPLIED.as_bytes())
    );
    env.ok(env.cmd().args(["apply", "-f", "-"]).write_stdin(yaml));
    // The values really are in there.
    assert_eq!(env.raw("default", "literal"), LITERAL.as_bytes());
    assert_eq!(env.raw("payments", "applied"), APPLIED.as_bytes());
    env
}

#[test]
fn listings_never_show_secret_data() {
    let env = planted();
    let mut runs = Vec::new();
    for output in ["table", "json", "yaml"] {
        for scope in [&["-A"][..], &["-m", "payments"], &[]] {
            let mut args = vec!["get", "secrets", "-o", output];
            args.extend_from_slice(scope);
            runs.push(env.ok_args(&args));
            runs.push(env.ok_key(&args));
        }
        runs.push(env.ok_args(&["get", "global-secrets", "-o", output]));
        runs.push(env.ok_key(&["get", "global-secrets", "-o", output]));
    }
    runs.push(env.ok_key(&["get", "secret", "literal"]));
    runs.push(env.ok_key(&["get", "secret", "applied", "-m", "payments"]));
    runs.push(env.ok_key(&["get", "global-secret", "global"]));
    runs.push(env.ok_key(&["check"]));
    runs.push(env.ok_key(&["check", "-o", "json"]));
    runs.push(env.ok_args(&["recipients", "list", "-m", "payments"]));
    for r in &runs {
        assert_hidden(r, &ALL);
    }
    // The listings did list them.
    let r = env.ok_key(&["get", "secrets", "-A"]);
    for name in ["literal", "file", "stdin", "applied"] {
        r.assert_stdout_has(name);
    }
}

#[test]
fn files_on_disk_never_contain_secret_data() {
    let env = planted();
    let files = all_file_bytes(&env.root);
    assert!(files.len() >= 9, "{files:?}");
    for (path, bytes) in &files {
        for v in ALL {
            for f in forms(v) {
                assert!(
                    !contains(bytes, f.as_bytes()),
                    "{} contains {f:?}",
                    path.display()
                );
            }
        }
        // No plaintext document either.
        assert!(!contains(bytes, b"data = "), "{}", path.display());
    }
}

#[test]
fn failing_apply_never_echoes_the_value() {
    let env = TestEnv::new();
    let raw = APPLIED;
    let enc = b64(raw.as_bytes());
    let head = "type: Secret\nmesh: default\nname: db\n";
    let cases = [
        format!("{head}data: [{enc}\n"),
        format!("{head}data: \"{enc}\n"),
        format!("{head}data: '{enc}\n"),
        format!("{head}data: {enc}\n\tbad: indent\n"),
        format!("{head}data: {enc}: nested\n"),
        format!("{head}data: \"\\q{enc}\"\n"),
        format!("{head}data: {{{enc}\n"),
        format!("{head}data: \"{raw}\"\n"),
        format!("{head}data: \"{raw} {enc}\"\n"),
        format!("{head}data: [{enc}]\n"),
        format!("{head}data:\n  value: {enc}\n"),
        format!("{head}data: {enc}\nunknown: 1\n"),
        format!("type: Secret\nmesh: default\nname: Bad_Name\ndata: {enc}\n"),
        format!("type: Secret\nmesh: Bad/Mesh\nname: db\ndata: {enc}\n"),
        format!("type: GlobalSecret\nmesh: default\nname: db\ndata: {enc}\n"),
        format!("type: Secret\nname: db\ndata: {enc}\n"),
        format!("{head}data: {enc}\n---\n{head}data: {enc}\n"),
        format!("{head}data: {enc}\n---\n{head}data: [{enc}\n"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  value: {raw}\ntype: system.kuma.io/secret\n"
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  value: [{enc}]\ntype: system.kuma.io/secret\n"
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  value: {enc}\ntype: Opaque\n"
        ),
    ];
    for yaml in &cases {
        let f = env.outside("leak.yaml", yaml);
        let r = env.refuses(env.cmd().arg("apply").arg("-f").arg(&f), 1, &["leak.yaml"]);
        assert_hidden(&r, &[raw]);
        let r = env.refuses(
            env.cmd()
                .args(["apply", "-f", "-"])
                .write_stdin(yaml.clone()),
            1,
            &["<stdin>"],
        );
        assert_hidden(&r, &[raw]);
    }
    // Over a store limit.
    env.set_max_data_bytes(8);
    let r = env.refuses(
        env.cmd()
            .args(["apply", "-f", "-"])
            .write_stdin(format!("{head}data: {enc}\n")),
        1,
        &["limit"],
    );
    assert_hidden(&r, &[raw]);
}

#[test]
fn failing_create_never_echoes_the_value() {
    let env = TestEnv::new();
    env.create("default", "db", LITERAL);
    let attempts = [
        // Exists already.
        vec!["create", "secret", "db", "--from-literal", FROM_STDIN],
        // No recipients for that mesh.
        vec![
            "create",
            "secret",
            "x",
            "-m",
            "nobody",
            "--from-literal",
            FROM_STDIN,
        ],
        // Bad name.
        vec!["create", "secret", "Bad", "--from-literal", FROM_STDIN],
    ];
    for args in &attempts {
        let r = env.refuses(env.cmd().args(args), 1, &[]);
        assert_hidden(&r, &[LITERAL, FROM_STDIN]);
    }
    env.set_max_data_bytes(8);
    let r = env.refuses(
        env.cmd()
            .args(["create", "secret", "big", "--from-stdin"])
            .write_stdin(FROM_STDIN),
        1,
        &["limit"],
    );
    assert_hidden(&r, &[LITERAL, FROM_STDIN]);
}

#[test]
fn wrong_keys_and_damaged_files_never_echo_the_value() {
    let env = TestEnv::new();
    env.add_mesh("pay");
    env.create("default", "db", LITERAL);
    let (wrong, _) = env.new_identity("wrong.txt");
    let r = env.refuses(
        env.cmd()
            .arg("-i")
            .arg(&wrong)
            .args(["get", "secret", "db", "-o", "raw"]),
        1,
        &["db.age"],
    );
    assert_hidden(&r, &[LITERAL]);

    // Documents that hold the value but fail for another reason.
    let enc = b64(FROM_FILE.as_bytes());
    let file = "meshes/default/secrets/bad.age";
    let documents = [
        format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = \"{enc}\"\nextra = \"{enc}\"\n"),
        format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = \"{enc}\"\n[[["),
        format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = \"{enc}\n"),
        format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = {enc}\n"),
        format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = \"{FROM_FILE}\"\n"),
        format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = [\"{enc}\"]\n"),
        format!("type = \"Secret\"\nmesh = \"pay\"\nname = \"bad\"\ndata = \"{enc}\"\n"),
        format!("type = \"GlobalSecret\"\nname = \"bad\"\ndata = \"{enc}\"\n"),
        format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = \"{enc}\"\ndata = \"{enc}\"\n"),
        format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = \"{enc}\"\n[labels]\nx = 1\n"),
        format!("{FROM_FILE}\n"),
    ];
    for doc in &documents {
        env.craft(file, doc, "mesh:default", "bad");
        for r in [
            env.refuses(
                env.kcmd().args(["get", "secret", "bad", "-o", "raw"]),
                1,
                &[file],
            ),
            env.refuses(
                env.kcmd().args(["get", "secret", "bad", "-o", "yaml"]),
                1,
                &[file],
            ),
            env.refuses(env.kcmd().args(["get", "secrets"]), 1, &[file]),
            env.refuses(env.kcmd().arg("check"), 1, &[file]),
            env.refuses(env.kcmd().args(["check", "-o", "json"]), 1, &[]),
            env.refuses(env.kcmd().args(["export", "--kuma"]), 1, &[file]),
        ] {
            assert_hidden(&r, &[FROM_FILE, LITERAL]);
        }
    }
    // Tampered and too large for a lowered limit.
    env.create("default", "big", FROM_STDIN);
    env.write(
        file,
        flip_payload_char(&env.read("meshes/default/secrets/db.age")),
    );
    env.set_max_data_bytes(8);
    for r in [
        env.refuses(
            env.kcmd().arg("check"),
            1,
            &[file, "meshes/default/secrets/big.age"],
        ),
        env.refuses(
            env.kcmd().args(["get", "secret", "big", "-o", "raw"]),
            1,
            &["big.age"],
        ),
        env.refuses(env.kcmd().args(["get", "secrets"]), 1, &[]),
    ] {
        assert_hidden(&r, &[LITERAL, FROM_STDIN]);
    }
}

#[test]
fn plaintext_in_the_store_is_not_echoed_by_check() {
    let env = TestEnv::new();
    env.write(
        "meshes/default/secrets/oops.age",
        document("Secret", Some("default"), "oops", GLOBAL.as_bytes()),
    );
    env.write("meshes/default/secrets/oops.txt", GLOBAL);
    env.write("meshes/default/notes.md", GLOBAL);
    for r in [
        env.refuses(
            env.cmd().arg("check"),
            1,
            &["oops.age", "oops.txt", "notes.md"],
        ),
        env.refuses(env.kcmd().args(["check", "-o", "json"]), 1, &[]),
        env.refuses(env.cmd().args(["get", "secrets"]), 1, &["oops.age"]),
    ] {
        assert_hidden(&r, &[GLOBAL]);
    }
}

#[test]
fn debug_output_never_shows_the_data() {
    use meshseal::document::Document;
    use meshseal::identity::Identities;
    use meshseal::scope::{Scope, SecretId};
    use meshseal::store::Store;

    let env = TestEnv::new();
    env.create("default", "db", LITERAL);
    let plaintext = document("Secret", Some("default"), "db", LITERAL.as_bytes());
    let doc = Document::parse(plaintext.as_bytes(), 1024).expect("valid document");
    let ids = Identities::load(std::slice::from_ref(&env.identity)).expect("identity");
    let store = Store::open(&env.root).expect("store");
    let id = SecretId::new(Scope::Mesh("default".into()), "db").unwrap();
    let loaded = store.load(&id, &ids).expect("loads");
    assert_eq!(loaded.doc.data.expose(), LITERAL.as_bytes());

    let key_line = std::fs::read_to_string(&env.identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_string();
    for text in [
        format!("{doc:?}"),
        format!("{doc:#?}"),
        format!("{:?}", doc.data),
        format!("{loaded:?}"),
        format!("{loaded:#?}"),
        format!("{ids:?}"),
    ] {
        for f in forms(LITERAL) {
            assert!(!text.contains(&f), "Debug reveals {f:?}: {text}");
        }
        assert!(
            !text.contains(&key_line[16..40]),
            "Debug reveals the key: {text}"
        );
    }
}
