//! Secret bytes never show where they should not: distinctive values are
//! planted, then searched for (raw, base64, and a fragment of each) in every
//! listing, in the stderr and stdout of failing commands, in `Debug` output,
//! and in the files on disk.

use crate::age_files::*;
use crate::env::*;
use crate::snapshot::*;

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
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData: [{raw}]\ntype: system.kuma.io/secret\n"
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

// Hostile input through every command, with backtraces on: a value planted in
// malformed, oversized and undecryptable input never comes back out.

/// Planted by the tests below. Its base64 has `+`, `/` and padding, so that
/// the URL-safe and unpadded spellings differ from the standard one.
const PLANTED: &str = "planted~marker?>Wq4~~x";
/// What a misbehaving editor writes.
const EDITED: &str = "edited~marker?>Pz7~~y";
/// A key name. Key names are structure, not secret: an error names an
/// unknown key so the user can find it (as Kuma names unknown fields); the
/// value next to it is never shown.
const KEY_NAME: &str = "planted-key-name-Vb3";

const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

fn url_safe(encoded: &str) -> String {
    encoded.replace('+', "-").replace('/', "_")
}

/// Every spelling of a planted value that must never be printed.
fn planted_forms(value: &str) -> Vec<String> {
    let mut f = forms(value);
    f.push(url_safe(&b64(value.as_bytes())));
    f
}

#[track_caller]
fn assert_planted_hidden(r: &Run) {
    for value in [PLANTED, EDITED] {
        for f in planted_forms(value) {
            r.assert_never_shows(&f);
        }
    }
}

/// Backtraces on, so that a panic's whole output is searched too.
fn bt(cmd: &mut assert_cmd::Command) -> &mut assert_cmd::Command {
    cmd.env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .timeout(LIMIT)
}

/// `PLANTED` repeated to one byte over the default 1 MiB data limit.
fn oversized() -> Vec<u8> {
    let limit = meshseal::document::DEFAULT_MAX_DATA_BYTES;
    PLANTED.bytes().cycle().take(limit + 1).collect()
}

#[test]
fn hostile_apply_input_never_echoes_a_planted_value() {
    let env = TestEnv::new();
    env.create("default", "db", LITERAL);
    let enc = b64(PLANTED.as_bytes());
    assert!(enc.contains('+') && enc.contains('/') && enc.ends_with('='));
    let head = "type: Secret\nmesh: default\nname: db\n";
    // An alias bomb whose every leaf is the value.
    let mut bomb = format!("a0: &a0 [{enc}, {enc}, {enc}, {enc}, {enc}, {enc}, {enc}, {enc}]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // The same key twice.
        (
            format!("{head}data: {enc}\ndata: {enc}\n").into(),
            "duplicate entry with key \"data\"",
        ),
        // The value aliased into fields whose errors name them.
        (
            format!("type: Secret\nmesh: default\ndata: &v {enc}\nname: *v\n").into(),
            "name: invalid characters",
        ),
        (
            format!("type: Secret\nname: db\ndata: &v {enc}\nmesh: *v\n").into(),
            "document 1",
        ),
        // Almost base64: unpadded, URL-safe, spaced, padded twice, prefixed.
        (
            format!("{head}data: {}\n", enc.trim_end_matches('=')).into(),
            "must be valid base64",
        ),
        (
            format!("{head}data: {}\n", url_safe(&enc)).into(),
            "must be valid base64",
        ),
        (
            format!("{head}data: \"{} {}\"\n", &enc[..8], &enc[8..]).into(),
            "must be valid base64",
        ),
        (
            format!("{head}data: {enc}{enc}\n").into(),
            "must be valid base64",
        ),
        (
            format!("{head}data: \"={enc}\"\n").into(),
            "must be valid base64",
        ),
        // Kubernetes: the value under another key, or misspelled.
        (
            format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: {enc}\ntype: system.kuma.io/secret\n").into(),
            "data: cannot be empty",
        ),
        (
            format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  value: {}\ntype: system.kuma.io/secret\n", url_safe(&enc)).into(),
            "must be valid base64",
        ),
        // Exponential aliases.
        (bomb.into_bytes(), "<stdin>"),
        // Not UTF-8, with the value before the bad byte.
        (
            [format!("{head}data: {enc} {PLANTED}").as_bytes(), &[0xff, b'\n']].concat(),
            "not UTF-8",
        ),
        // Over the default 1 MiB data limit.
        (
            format!("{head}data: {}\n", b64(oversized())).into(),
            "exceed the limit of 1048576 bytes",
        ),
        // Over what any apply may read.
        (
            format!("{head}data: {enc}\n").repeat(9 * 1024 * 1024 / head.len()).into(),
            "larger than any valid apply",
        ),
    ];
    for (input, mention) in &cases {
        let f = env.outside("hostile.yaml", input);
        let r = env.refuses(
            bt(env.cmd().arg("apply").arg("-f").arg(&f)),
            1,
            &["hostile.yaml"],
        );
        assert_planted_hidden(&r);
        let r = env.refuses(
            bt(env
                .cmd()
                .args(["apply", "-f", "-"])
                .write_stdin(input.clone())),
            1,
            &["<stdin>", mention],
        );
        assert_planted_hidden(&r);
        assert_hidden(&r, &[LITERAL]);
    }

    // A key name is named; the value beside it is not.
    let r = env.refuses(
        bt(env
            .cmd()
            .args(["apply", "-f", "-"])
            .write_stdin(format!("{head}data: {enc}\n{KEY_NAME}: {enc}\n"))),
        1,
        &[&format!("unknown key \"{KEY_NAME}\"")],
    );
    assert_planted_hidden(&r);
}

/// Every command that reads `name`'s file, with the store key, expecting each
/// to refuse it (or, for textconv, to describe the failure) and name `file`.
fn every_reader(env: &TestEnv, name: &str, file: &str, identity: &std::path::Path) -> Vec<Run> {
    let key = |args: &[&str]| {
        let mut c = env.cmd();
        c.arg("-i").arg(identity).args(args);
        c
    };
    let mut runs = vec![
        env.refuses(
            bt(&mut key(&["get", "secret", name, "-o", "raw"])),
            1,
            &[file],
        ),
        env.refuses(
            bt(&mut key(&["get", "secret", name, "-o", "json"])),
            1,
            &[file],
        ),
        // A listing needs no key: with one that opens nothing it still lists
        // (the rows marked locked, exit 0); with the right key a bad file
        // is refused. Either way the value never shows.
        crate::env::run(bt(&mut key(&["get", "secrets", "-o", "yaml"]))),
        env.refuses(bt(&mut key(&["check"])), 1, &[file]),
        env.refuses(bt(&mut key(&["export", "--kubernetes"])), 1, &[file]),
        env.refuses(bt(&mut key(&["rekey", "--force"])), 1, &[file]),
        env.refuses(bt(&mut key(&["watch", "--once"])), 1, &[file]),
        env.refuses(
            bt(key(&["edit", "secret", name])
                .env_remove("VISUAL")
                .env("EDITOR", "false")),
            1,
            &[file],
        ),
    ];
    let json = env.refuses(bt(&mut key(&["check", "-o", "json"])), 1, &[]);
    json.assert_stdout_has(file);
    runs.push(json);
    let textconv = run(bt(key(&["textconv"]).arg(env.path(file)))).success();
    textconv.assert_stdout_has("# ");
    runs.push(textconv);
    runs
}

#[test]
fn hostile_secret_files_never_echo_a_planted_value() {
    let env = TestEnv::new();
    let enc = b64(PLANTED.as_bytes());
    let head = "type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\n";
    let big = b64(oversized());
    let documents: Vec<(String, &str)> = vec![
        (
            format!("{head}data = \"{}\"\n", enc.trim_end_matches('=')),
            "base64",
        ),
        (format!("{head}data = \"{}\"\n", url_safe(&enc)), "base64"),
        (
            format!("{head}data = \"\"\"\n{enc}\n{enc}\n\"\"\"\n"),
            "base64",
        ),
        (format!("{head}data = \"{enc}\" {enc}\n"), "invalid TOML"),
        (format!("{head}data = \"{enc}\\q\"\n"), "invalid TOML"),
        (format!("{head}data = '''{enc}\n"), "invalid TOML"),
        (format!("{head}data = \"{enc}\u{1}\"\n"), "invalid TOML"),
        (
            format!("{head}data = \"{enc}\"\n[data]\nx = \"{enc}\"\n"),
            "invalid TOML",
        ),
        (
            format!("{head}data = \"{enc}\"\ndata.x = \"{enc}\"\n"),
            "invalid TOML",
        ),
        (format!("{head}data = \"{big}\"\n"), "exceed the limit"),
        (
            format!("{head}data = \"{big}{big}\"\n"),
            "bytes any valid secret needs",
        ),
        (
            format!("{head}data = \"{enc}\"\n{KEY_NAME} = \"{enc}\"\n"),
            KEY_NAME,
        ),
    ];
    let file = "meshes/default/secrets/bad.age";
    for (doc, mention) in &documents {
        env.craft(file, doc, "mesh:default", "bad");
        for r in every_reader(&env, "bad", file, &env.identity) {
            assert_planted_hidden(&r);
        }
        env.refuses(bt(env.kcmd().arg("check")), 1, &[mention]);
    }

    // A good file and the wrong key: nothing but "no identity matched".
    std::fs::remove_file(env.path(file)).unwrap();
    env.create("default", "db", PLANTED);
    let (wrong, _) = env.new_identity("wrong.txt");
    for r in every_reader(&env, "db", "meshes/default/secrets/db.age", &wrong) {
        assert_planted_hidden(&r);
    }
    assert_eq!(env.raw("default", "db"), PLANTED.as_bytes());
}

/// An editor script in the test's temp dir; `$SEEN` records the file it was
/// given and the modes of that file and its folder.
fn editor(env: &TestEnv, name: &str, body: &str) -> String {
    let seen = env.tmp().join("seen");
    let path = env.tmp().join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nstat -c '%a' \"$(dirname \"$1\")\" \"$1\" >> '{}'\n{body}\n",
            seen.display(),
            seen.display()
        ),
    )
    .unwrap();
    chmod(&path, 0o755);
    path.display().to_string()
}

#[test]
fn failing_editors_never_echo_the_value_and_leave_no_plaintext() {
    let env = TestEnv::new();
    env.create("default", "db", PLANTED);
    let file = "meshes/default/secrets/db.age";
    let seen = env.tmp().join("seen");
    let broken_toml = format!("type = \\\"Secret\\\"\\ndata = \\\"{EDITED}\\n[[[");
    let failing = [
        ("false".to_string(), "editor exited with"),
        (
            editor(
                &env,
                "toml-fail",
                &format!("printf \"{broken_toml}\" > \"$1\"\nexit 3"),
            ),
            "editor exited with",
        ),
        (
            editor(
                &env,
                "killed",
                &format!("printf '{EDITED}' > \"$1\"\nkill -9 $$"),
            ),
            "exit status: 137",
        ),
        (editor(&env, "empty", ": > \"$1\""), "data: cannot be empty"),
        (
            editor(
                &env,
                "huge",
                &format!("yes '{EDITED}' | head -c 1100000 > \"$1\""),
            ),
            "exceed the limit",
        ),
        (
            editor(&env, "removes", "rm \"$1\""),
            "db.age: cannot read the edited value back",
        ),
        (
            editor(&env, "folder", "rm \"$1\" && mkdir \"$1\""),
            "db.age: cannot read the edited value back",
        ),
    ];
    for (command, mention) in &failing {
        let _ = std::fs::remove_file(&seen);
        let r = env.refuses(
            bt(env
                .kcmd()
                .args(["edit", "secret", "db"])
                .env_remove("VISUAL")
                .env("EDITOR", command)),
            1,
            &[mention, "nothing changed"],
        );
        assert_planted_hidden(&r);
        if command != "false" {
            let record = std::fs::read_to_string(&seen).expect("the editor ran");
            let mut lines = record.lines();
            let given = std::path::PathBuf::from(lines.next().unwrap());
            assert_eq!(lines.next(), Some("700"), "{command}: folder mode");
            assert_eq!(lines.next(), Some("600"), "{command}: file mode");
            let folder = given.parent().unwrap();
            assert!(!folder.exists(), "{command} left {}", folder.display());
        }
    }
    assert_eq!(env.raw("default", "db"), PLANTED.as_bytes());

    // Broken TOML saved by a working editor is just the new value: edit
    // changes the value, not the document. Saved, and not echoed.
    let command = editor(
        &env,
        "toml-ok",
        &format!("printf \"{broken_toml}\" > \"$1\""),
    );
    let r = env.ok(bt(env
        .kcmd()
        .args(["edit", "secret", "db"])
        .env_remove("VISUAL")
        .env("EDITOR", &command)));
    r.assert_stdout_has("edited");
    assert_planted_hidden(&r);
    let value = env.raw("default", "db");
    assert!(contains(&value, EDITED.as_bytes()) && value.ends_with(b"[[["));
    assert!(!contains(&env.read(file), EDITED.as_bytes()));
}

#[test]
fn a_closed_stdout_neither_panics_nor_shows_the_value() {
    // A closed stdout made every println! panic: the one panic any user
    // could force (`meshseal ... | head -0`). Output now goes through
    // `say!`, which ignores it; should a panic come back, its message and
    // backtrace must still not carry the value.
    let env = TestEnv::new();
    env.create("default", "db", PLANTED);
    let enc = b64(PLANTED.as_bytes());
    env.craft(
        "meshes/default/secrets/bad.age",
        &format!("type = \"Secret\"\nmesh = \"default\"\nname = \"bad\"\ndata = \"{enc}\"\n{KEY_NAME} = \"{enc}\"\n"),
        "mesh:default",
        "bad",
    );
    let yaml = env.outside(
        "one.yaml",
        format!("type: Secret\nmesh: default\nname: applied\ndata: {enc}\n"),
    );
    let appender = editor(&env, "append", "printf x >> \"$1\"");
    let mut edit = env.kcmd();
    edit.args(["edit", "secret", "db"])
        .env_remove("VISUAL")
        .env("EDITOR", &appender);
    let mut commands = vec![
        {
            let mut c = env.kcmd();
            c.args(["check", "-o", "json"]);
            c
        },
        {
            let mut c = env.kcmd();
            c.arg("apply").arg("-f").arg(&yaml);
            c
        },
        {
            let mut c = env.cmd();
            c.args(["create", "secret", "new", "--from-literal", PLANTED]);
            c
        },
        edit,
        {
            let mut c = env.kcmd();
            c.args(["get", "secret", "db", "-o", "json"]);
            c
        },
        {
            let mut c = env.kcmd();
            c.args(["watch", "--once"]);
            c
        },
    ];
    let mut panicked = 0;
    for cmd in &mut commands {
        let out = spawnable(bt(cmd))
            .stdout(closed_pipe())
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run meshseal");
        let stderr = String::from_utf8_lossy(&out.stderr);
        panicked += usize::from(stderr.contains("panicked"));
        for f in planted_forms(PLANTED) {
            assert!(!stderr.contains(&f), "{cmd:?} shows {f:?}:\n{stderr}");
        }
    }
    assert_eq!(panicked, 0, "a command panicked on a closed stdout");
}

#[test]
fn identity_links_are_judged_by_the_key_they_point_to() {
    use std::os::unix::fs::symlink;
    let env = TestEnv::new();
    env.create("default", "db", "v");
    let key_line = std::fs::read_to_string(&env.identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_string();
    let key = env.keys.join("key.txt");
    std::fs::copy(&env.identity, &key).unwrap();
    let link = env.tmp().join("id-link");
    let chain = env.tmp().join("id-chain");
    symlink(&key, &link).unwrap();
    symlink(&link, &chain).unwrap();
    let default = env.default_identity_path();
    std::fs::create_dir_all(default.parent().unwrap()).unwrap();
    symlink(&key, &default).unwrap();
    let target = std::fs::canonicalize(&key).unwrap();
    let get = ["get", "secret", "db", "-o", "raw"];
    // The three ways to name an identity: -i, the variable, the default file.
    let ways = |path: &std::path::Path| -> Vec<(assert_cmd::Command, String)> {
        let mut flag = env.cmd();
        flag.arg("-i").arg(path).args(get);
        let mut var = env.cmd();
        var.env("MESHSEAL_IDENTITY", path).args(get);
        let mut implicit = env.cmd();
        implicit.args(get);
        vec![
            (flag, path.display().to_string()),
            (var, path.display().to_string()),
            (implicit, default.display().to_string()),
        ]
    };

    // A link (or a chain of links) to a world- or group-readable key is
    // refused, naming the file given, the key it reaches, and the cure.
    for mode in [0o644, 0o640] {
        chmod(&key, mode);
        for path in [&link, &chain] {
            for (mut cmd, named) in ways(path) {
                let r = env.refuses(
                    &mut cmd,
                    1,
                    &[
                        &format!(
                            "error: {named}: permissions {mode:04o} for identity file are too open"
                        ),
                        &format!("(the link points to {})", target.display()),
                        &format!("hint: run `chmod 600 {}`", target.display()),
                    ],
                );
                r.assert_never_shows(&key_line[16..40]);
            }
        }
    }
    // A link to a 0600 key is accepted: the key's mode is what counts.
    chmod(&key, 0o600);
    for path in [&link, &chain] {
        for (mut cmd, _) in ways(path) {
            assert_eq!(env.ok(&mut cmd).stdout, b"v");
        }
    }

    // A folder is not a key: said so, not "permissions too open".
    let folder = env.tmp().join("id-folder");
    std::fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o755);
    let r = env.refuses(
        env.cmd().arg("-i").arg(&folder).args(get),
        1,
        &["invalid identity file: not a regular file"],
    );
    assert!(!r.stderr.contains("chmod"), "{}", r.stderr);
    // A default file that is a dangling link is named as such.
    std::fs::remove_file(&default).unwrap();
    symlink(env.tmp().join("unplugged/key.txt"), &default).unwrap();
    env.refuses(
        env.cmd().args(get),
        1,
        &[
            &format!("{} is a symlink to", default.display()),
            "which does not exist",
        ],
    );
}
