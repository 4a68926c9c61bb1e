//! The git workflow through the built binary and real git: the pre-commit
//! hook (`check --staged`), redacted diffs, safe edit and all-or-nothing rekey.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::{chmod, run, Run, TestEnv};
use crate::snapshot::assert_same;
use crate::tools::stock_age;

#[test]
fn init_installs_hook_and_diff_driver() {
    let r = TestEnv::git_repo();
    let hook = fs::read_to_string(r.root.join(".git/hooks/pre-commit")).unwrap();
    assert!(hook.contains("check --staged"));
    assert_ne!(
        fs::metadata(r.root.join(".git/hooks/pre-commit"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0
    );
    assert!(r
        .git_ok(&["config", "diff.meshseal.textconv"])
        .contains("textconv"));
    assert!(fs::read_to_string(r.root.join(".gitattributes"))
        .unwrap()
        .contains("*.age -text diff=meshseal"));
    r.ok_key(&["create", "secret", "db", "--from-literal", "v1"]);
    let (ok, err) = r.commit("first");
    assert!(ok, "a clean commit passes the keyless hook: {err}");
}

#[test]
fn hook_install_refuses_a_foreign_hook() {
    let r = TestEnv::git_repo();
    let hook = r.root.join(".git/hooks/pre-commit");
    fs::write(&hook, "#!/bin/sh\necho mine\n").unwrap();
    let out = run(r.cmd().args(["hook", "install"]));
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("did not write"));
    assert_eq!(fs::read_to_string(&hook).unwrap(), "#!/bin/sh\necho mine\n");
    r.ok_key(&["hook", "install", "--force"]);
    assert!(fs::read_to_string(&hook)
        .unwrap()
        .contains("check --staged"));
}

#[test]
fn staged_plaintext_is_refused() {
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "db", "--from-literal", "v1"]);
    assert!(r.commit("first").0);
    fs::write(
        r.root.join("meshes/default/secrets/leak.age"),
        "type = \"Secret\"\nmesh = \"default\"\nname = \"leak\"\ndata = \"aHVudGVyMg==\"\n",
    )
    .unwrap();
    let (ok, err) = r.commit("leak");
    assert!(!ok, "plaintext must not be committed");
    assert!(err.contains("meshes/default/secrets/leak.age"), "{err}");
    assert!(err.contains("not an age-encrypted file"), "{err}");
    assert!(
        !err.contains("aHVudGVyMg=="),
        "the hook must not echo the plaintext: {err}"
    );
    fs::write(r.root.join("meshes/default/secrets/notes.txt"), "x").unwrap();
    fs::remove_file(r.root.join("meshes/default/secrets/leak.age")).unwrap();
    let (ok, err) = r.commit("stray");
    assert!(!ok);
    assert!(err.contains("not a .age secret"), "{err}");
}

#[test]
fn staged_moved_ciphertext_is_refused_without_a_key() {
    let r = TestEnv::git_repo();
    r.ok_key(&["recipients", "add", "-m", "payments", &r.public]);
    r.ok_key(&[
        "create",
        "secret",
        "db",
        "-m",
        "default",
        "--from-literal",
        "v1",
    ]);
    assert!(r.commit("first").0);
    fs::create_dir_all(r.root.join("meshes/payments/secrets")).unwrap();
    fs::copy(
        r.root.join("meshes/default/secrets/db.age"),
        r.root.join("meshes/payments/secrets/db.age"),
    )
    .unwrap();
    let (ok, err) = r.commit("copy");
    assert!(!ok, "a copied ciphertext must be refused");
    assert!(err.contains("meshes/payments/secrets/db.age"), "{err}");
    assert!(
        err.contains("header metadata says secret \"db\" of mesh \"default\""),
        "{err}"
    );
    // Renamed within a mesh.
    r.git_ok(&["reset", "-q"]);
    fs::remove_file(r.root.join("meshes/payments/secrets/db.age")).unwrap();
    fs::rename(
        r.root.join("meshes/default/secrets/db.age"),
        r.root.join("meshes/default/secrets/db2.age"),
    )
    .unwrap();
    let (ok, err) = r.commit("rename");
    assert!(!ok);
    assert!(err.contains("db2.age"), "{err}");
}

#[test]
fn bad_staged_file_is_refused_even_when_the_work_tree_is_good() {
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "db", "--from-literal", "v1"]);
    assert!(r.commit("first").0);
    let path = r.root.join("meshes/default/secrets/db.age");
    let good = fs::read(&path).unwrap();
    fs::write(&path, "password = \"plain\"\n").unwrap();
    r.git_ok(&["add", "-A"]);
    fs::write(&path, &good).unwrap(); // the work tree is good again; the index is not
    let out = run(r.cmd().args(["check", "--staged"]));
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("not an age-encrypted file"));
    assert!(
        run(r.cmd().args(["check"])).code == Some(0),
        "the work tree itself is fine"
    );
    let out = r.git(&["commit", "-q", "-m", "bad"]);
    assert_ne!(out.code, Some(0));
}

#[test]
fn recipients_change_without_rekey_is_stale_then_passes_after_rekey() {
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "db", "--from-literal", "s3cr3t-value"]);
    assert!(r.commit("first").0);
    let (newcomer, new_pub) = r.new_identity("new.txt");
    r.ok_key(&["recipients", "add", "-m", "default", &new_pub]);
    let (ok, err) = r.commit("add member");
    assert!(!ok, "recipients change without rekey must be refused");
    assert!(err.contains("stale") || err.contains("now lists"), "{err}");
    assert!(err.contains("meshseal rekey -m default"), "{err}");
    // Without a trust root, rekey shows the added key and asks (SPEC 9).
    r.refuses(
        r.kcmd().args(["rekey", "-m", "default"]),
        1,
        &["--yes", &format!("+ {new_pub}")],
    );
    r.ok_key(&["rekey", "-m", "default", "--yes"]);
    let (ok, err) = r.commit("add member, rekeyed");
    assert!(ok, "{err}");
    if let Some(age) = stock_age() {
        let out = Command::new(age)
            .args(["-d", "-i"])
            .arg(&newcomer)
            .arg(r.root.join("meshes/default/secrets/db.age"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("data = "));
    }
}

#[test]
fn git_diff_shows_that_data_changed_never_the_value() {
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "db", "--from-literal", "old-value-1234"]);
    assert!(r.commit("first").0);
    let doc = "type: Secret\nmesh: default\nname: db\ndata: bmV3LXZhbHVlLTU2Nzg=\n"; // new-value-5678
    let yaml = r.keys.join("new.yaml");
    fs::write(&yaml, doc).unwrap();
    r.ok_key(&["apply", "-f", yaml.to_str().unwrap()]);
    let diff = run(r
        .git_cmd()
        .args(["diff"])
        .env("MESHSEAL_IDENTITY", &r.identity))
    .stdout();
    assert!(diff.contains("-data = \"<redacted: 14 bytes"), "{diff}");
    assert!(diff.contains("+data = \"<redacted: 14 bytes"), "{diff}");
    for value in [
        "old-value-1234",
        "new-value-5678",
        "b2xkLXZhbHVlLTEyMzQ=",
        "bmV3LXZhbHVlLTU2Nzg=",
    ] {
        assert!(!diff.contains(value), "diff shows {value}: {diff}");
    }
    // Without a key the diff still shows that the file changed.
    let diff = r.git_ok(&["diff"]);
    assert!(diff.contains("ciphertext sha256:"), "{diff}");
    assert!(!diff.contains("BEGIN AGE"), "{diff}");
    // --reveal shows it whole, on request.
    let out = r
        .ok_key(&["textconv", "--reveal", "meshes/default/secrets/db.age"])
        .stdout();
    assert!(out.contains("bmV3LXZhbHVlLTU2Nzg="));
}

fn editor_script(r: &TestEnv, body: &str) -> PathBuf {
    let script = r.keys.join("editor.sh");
    fs::write(&script, format!("#!/bin/sh\nset -e\nf=\"$1\"\n{body}\n")).unwrap();
    chmod(&script, 0o755);
    script
}

fn edit(r: &TestEnv, editor: &Path, name: &str) -> Run {
    run(r
        .kcmd()
        .args(["edit", "secret", name])
        .env("VISUAL", editor))
}

#[test]
fn edit_uses_a_private_folder_and_removes_it() {
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "db", "--from-literal", "before"]);
    let log = r.keys.join("log.txt");
    let editor = editor_script(
        &r,
        &format!(
            "stat -c '%a' \"$f\" > {log}\nstat -c '%a' \"$(dirname \"$f\")\" >> {log}\necho \"$f\" >> {log}\nprintf after > \"$f\"",
            log = log.display()
        ),
    );
    let out = edit(&r, &editor, "db");
    assert!(out.code == Some(0), "{}", out.stderr);
    let logged = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines[0], "600", "plaintext file mode");
    assert_eq!(lines[1], "700", "private folder mode");
    let file = Path::new(lines[2]);
    assert!(!file.exists(), "plaintext file removed");
    assert!(!file.parent().unwrap().exists(), "private folder removed");
    if Path::new("/dev/shm").is_dir() {
        assert!(
            file.starts_with("/dev/shm"),
            "RAM-backed where available: {}",
            file.display()
        );
    }
    assert_eq!(
        r.ok_key(&["get", "secret", "db", "-o", "raw"]).stdout(),
        "after"
    );
}

#[test]
fn edit_unchanged_or_failing_leaves_the_file_untouched() {
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "db", "--from-literal", "same"]);
    let path = r.root.join("meshes/default/secrets/db.age");
    let before = fs::read(&path).unwrap();
    // Saving as is (editors add a final newline) changes nothing.
    let out = edit(&r, &editor_script(&r, "printf '\\n' >> \"$f\""), "db");
    assert!(out.code == Some(0), "{}", out.stderr);
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));
    assert_eq!(fs::read(&path).unwrap(), before);
    // A failing editor changes nothing and still cleans up.
    let log = r.keys.join("fail.txt");
    let failing = editor_script(
        &r,
        &format!(
            "echo \"$f\" > {}\nprintf changed > \"$f\"\nexit 3",
            log.display()
        ),
    );
    let out = edit(&r, &failing, "db");
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("nothing changed"));
    assert_eq!(fs::read(&path).unwrap(), before);
    let tmp = fs::read_to_string(&log).unwrap();
    assert!(!Path::new(tmp.trim()).exists());
    // An empty result is refused.
    let out = edit(&r, &editor_script(&r, ": > \"$f\""), "db");
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("data: cannot be empty"));
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn rekey_with_an_undecryptable_file_changes_nothing() {
    let r = TestEnv::git_repo();
    for name in ["a", "b", "c"] {
        r.ok_key(&["create", "secret", name, "--from-literal", "value"]);
    }
    // Encrypt one file to a foreign key only: give the scope a stranger's key,
    // create the file, and restore the recipients.
    let recipients = r.root.join("meshes/default/recipients.txt");
    let ours = fs::read_to_string(&recipients).unwrap();
    let (_, stranger_pub) = r.new_identity("stranger.txt");
    fs::write(&recipients, format!("{stranger_pub}\n")).unwrap();
    r.ok_key(&["create", "secret", "foreign", "--from-literal", "theirs"]);
    fs::write(&recipients, &ours).unwrap();
    let (_, newcomer) = r.new_identity("n.txt");
    r.ok_key(&["recipients", "add", "-m", "default", &newcomer]);
    let before = r.snapshot();
    let out = run(r.kcmd().args(["rekey", "-m", "default", "--force"]));
    assert_eq!(out.code, Some(1));
    let err = out.stderr;
    assert!(err.contains("foreign.age"), "{err}");
    assert!(err.contains("nothing was rewritten"), "{err}");
    assert_same(
        &before,
        &r.snapshot(),
        "a refused rekey: no file may change",
    );
}

#[test]
fn staged_check_reads_only_what_the_commit_touches() {
    let r = TestEnv::git_repo();
    for i in 0..20 {
        r.ok_key(&["create", "secret", &format!("s{i}"), "--from-literal", "v"]);
    }
    assert!(r.commit("many").0);
    // Break a committed file in the work tree only: a commit touching
    // another file must not be blamed for it.
    fs::write(r.root.join("meshes/default/secrets/s0.age"), "garbage").unwrap();
    r.ok_key(&["create", "secret", "new", "--from-literal", "v"]);
    r.git_ok(&["add", "meshes/default/secrets/new.age"]);
    let out = run(r.cmd().args(["check", "--staged"]));
    assert!(out.code == Some(0), "{}", out.stderr);
}

#[test]
fn staged_references_resolve_against_the_index_of_the_mesh() {
    // The hook lists only what a commit touches and what it is judged
    // against: a reference to an unchanged secret must still resolve, a
    // global one must still be named as global, a missing one as missing.
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "ca", "--from-literal", "v"]);
    r.ok_key(&["create", "global-secret", "root", "--from-literal", "v"]);
    r.write(
        "meshes/default/policies/ok.toml",
        external_service("ok", "ca"),
    );
    assert!(r.commit("a policy and its secret").0);

    // A new secret in the mesh: the unchanged policy's reference resolves
    // from the index, not the work tree (where `ca.age` is gone).
    r.ok_key(&["create", "secret", "other", "--from-literal", "v"]);
    r.git_ok(&["add", "meshes/default/secrets/other.age"]);
    fs::rename(
        r.root.join("meshes/default/secrets/ca.age"),
        r.root.join("ca.age.moved"),
    )
    .unwrap();
    let out = run(r.cmd().args(["check", "--staged"]));
    assert!(out.code == Some(0), "{}", out.stderr);
    fs::rename(
        r.root.join("ca.age.moved"),
        r.root.join("meshes/default/secrets/ca.age"),
    )
    .unwrap();

    r.write(
        "meshes/default/policies/global.toml",
        external_service("global", "root"),
    );
    r.write(
        "meshes/default/policies/gone.toml",
        external_service("gone", "nowhere"),
    );
    r.git_ok(&["add", "meshes/default/policies"]);
    let out = run(r.cmd().args(["check", "--staged"]));
    assert!(out.code != Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("global-scoped secret \"root\" cannot be used in mesh policies"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "could not load data: resource not found: type=\"Secret\" name=\"nowhere\" mesh=\"default\""
        ),
        "{}",
        out.stderr
    );

    // Deleting the referenced secret is caught from the index alone.
    r.git_ok(&[
        "rm",
        "-q",
        "--cached",
        "meshes/default/policies/global.toml",
    ]);
    r.git_ok(&["rm", "-q", "--cached", "meshes/default/policies/gone.toml"]);
    r.git_ok(&["rm", "-q", "--cached", "meshes/default/secrets/ca.age"]);
    let out = run(r.cmd().args(["check", "--staged"]));
    assert!(out.code != Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("meshes/default/policies/ok.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_monorepo_hook_checks_each_registered_store_and_passes_unrelated_commits() {
    // A repository whose root is above two stores (SPEC 11).
    let r = TestEnv::without_store();
    let repo = r.root.clone();
    r.git_ok(&["init", "-q", "-b", "main"]);
    r.git_ok(&["config", "user.email", "test@example.com"]);
    r.git_ok(&["config", "user.name", "test"]);
    for store in ["infra/mesh-a", "infra/mesh-b"] {
        let dir = repo.join(store);
        fs::create_dir_all(&dir).unwrap();
        r.ok(r
            .kcmd_at(&dir)
            .args(["init", "--recipient", r.public.as_str()]));
    }
    let registered = r.git_ok(&["config", "--get-all", "meshseal.store"]);
    assert_eq!(registered, "infra/mesh-a\ninfra/mesh-b\n");
    // `hook install` again registers nothing twice.
    r.ok(r
        .kcmd_at(&repo.join("infra/mesh-a"))
        .args(["hook", "install"]));
    assert_eq!(
        r.git_ok(&["config", "--get-all", "meshseal.store"]),
        registered
    );
    r.ok(r.kcmd_at(&repo.join("infra/mesh-a")).args([
        "create",
        "secret",
        "db",
        "--from-literal",
        "v1",
    ]));
    let (ok, err) = r.commit("two stores");
    assert!(ok, "{err}");

    // A commit that touches no store passes (it used to fail: `.` is no store).
    fs::write(repo.join("README.md"), "hello\n").unwrap();
    let (ok, err) = r.commit("docs");
    assert!(ok, "an unrelated commit was refused: {err}");

    // Plaintext in the second store is refused, naming its file.
    fs::create_dir_all(repo.join("infra/mesh-b/meshes/default/secrets")).unwrap();
    fs::write(
        repo.join("infra/mesh-b/meshes/default/secrets/leak.txt"),
        "hunter2",
    )
    .unwrap();
    let (ok, err) = r.commit("leak");
    assert!(!ok, "the second store's plaintext passed");
    assert!(err.contains("meshes/default/secrets/leak.txt"), "{err}");
    assert!(!err.contains("hunter2"));
    fs::remove_file(repo.join("infra/mesh-b/meshes/default/secrets/leak.txt")).unwrap();

    // A change in the first store alone is checked there: a good one passes.
    r.ok(r.kcmd_at(&repo.join("infra/mesh-a")).args([
        "create",
        "secret",
        "db2",
        "--from-literal",
        "v2",
    ]));
    let (ok, err) = r.commit("a second secret");
    assert!(ok, "{err}");
}

#[test]
fn an_edit_killed_with_sigkill_leaves_plaintext_only_until_the_next_command() {
    let r = TestEnv::git_repo();
    r.ok_key(&[
        "create",
        "secret",
        "db",
        "--from-literal",
        "planted-edit-value",
    ]);
    let started = r.keys.join("editor-started");
    // The editor reports its file, then waits to be killed with meshseal.
    let editor = editor_script(
        &r,
        &format!("echo \"$f\" > {}\nsleep 30", started.display()),
    );
    let mut cmd = r.kcmd();
    cmd.args(["edit", "secret", "db"]).env("VISUAL", &editor);
    let mut child = crate::env::spawnable(&cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the editor never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let file = PathBuf::from(fs::read_to_string(&started).unwrap().trim());
    // While the edit runs, another command leaves its folder alone.
    r.ok_args(&["--help"]);
    assert!(file.exists(), "a sweep removed a live edit's folder");
    // SIGKILL: meshseal cannot clean up. Its editor, orphaned, is killed
    // after it (killed first, it would let meshseal clean up).
    let pid = child.id().to_string();
    let editors = std::process::Command::new("pgrep")
        .args(["-P", &pid])
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // Every meshseal command sweeps the same /dev/shm, those of the tests
    // running beside this one too: the dead edit's folder is locked here,
    // as a live edit holds it, until its leftover has been seen.
    let folder = fs::File::open(file.parent().unwrap()).unwrap();
    folder.lock().unwrap();
    for editor in String::from_utf8_lossy(&editors.stdout).split_whitespace() {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-P", editor])
            .status();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", editor])
            .status();
    }
    assert!(
        file.exists(),
        "the killed edit's plaintext is there until the next command"
    );
    drop(folder);
    // Any next command removes it.
    r.ok_key(&["get", "secrets"]);
    assert!(
        !file.exists(),
        "the next command left the plaintext: {}",
        file.display()
    );
    assert!(!file.parent().unwrap().exists());
}

#[test]
fn the_first_commit_and_a_merge_in_progress_are_judged_from_the_index() {
    // Before the first commit there is no HEAD: all that is staged is new,
    // and what it is judged against comes from the index alone.
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "ca", "--from-literal", "v"]);
    r.write(
        "meshes/default/policies/ok.toml",
        external_service("ok", "ca"),
    );
    r.write(
        "meshes/default/policies/gone.toml",
        external_service("gone", "nowhere"),
    );
    r.git_ok(&["add", "-A"]);
    let out = run(r.cmd().args(["check", "--staged"]));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("policies/gone.toml"), "{}", out.stderr);
    assert!(!out.stderr.contains("policies/ok.toml"), "{}", out.stderr);
    r.git_ok(&["rm", "-q", "--cached", "meshes/default/policies/gone.toml"]);
    fs::remove_file(r.root.join("meshes/default/policies/gone.toml")).unwrap();
    let (ok, err) = r.commit("first");
    assert!(ok, "{err}");

    // A merge whose two sides changed the same secret: the index holds the
    // file's stages, not one record, and the check still reads it.
    r.ok_key(&["create", "secret", "db", "--from-literal", "v1"]);
    assert!(r.commit("db").0);
    let set_db = |value: &str| {
        let yaml = r.root.join("../db.yaml");
        fs::write(
            &yaml,
            format!("type: Secret\nmesh: default\nname: db\ndata: {value}\n"),
        )
        .unwrap();
        r.ok_key(&["apply", "-f", yaml.to_str().unwrap()]);
    };
    r.git_ok(&["checkout", "-q", "-b", "side"]);
    set_db("djI=");
    assert!(r.commit("db on the side").0);
    r.git_ok(&["checkout", "-q", "-"]);
    set_db("djM=");
    assert!(r.commit("db on main").0);
    let merge = r.git(&["merge", "-q", "side"]);
    assert_ne!(merge.code, Some(0), "the merge conflicts");
    let staged = r.git_ok(&["ls-files", "-u", "--", "meshes/default/secrets/db.age"]);
    assert_eq!(staged.lines().count(), 3, "three stages: {staged}");
    let out = run(r.cmd().args(["check", "--staged"]));
    assert!(
        !out.stderr.contains("unexpected output from git"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.code,
        Some(0),
        "each stage is a good file: {}",
        out.stderr
    );
}

/// An ExternalService policy of mesh `default` whose CA certificate is the
/// secret `ca`.
fn external_service(name: &str, ca: &str) -> String {
    format!(
        "type = \"ExternalService\"\nmesh = \"default\"\nname = \"{name}\"\n\
         [networking]\naddress = \"httpbin.org:443\"\n\
         [networking.tls]\ncaCert = {{ secret = \"{ca}\" }}\n"
    )
}

#[test]
fn a_gitlink_staged_into_a_secrets_folder_is_refused_whatever_the_diff_config() {
    // A repository may set diff.ignoreSubmodules: the hook's own diff must
    // still see a gitlink (mode 160000) staged where a secret would be.
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "db", "--from-literal", "v"]);
    assert!(r.commit("first").0);
    r.git_ok(&["config", "diff.ignoreSubmodules", "all"]);
    let head = r.git_ok(&["rev-parse", "HEAD"]);
    r.git_ok(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{},meshes/default/secrets/sub.age", head.trim()),
    ]);
    let out = run(r.cmd().args(["check", "--staged"]));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("meshes/default/secrets/sub.age"),
        "{}",
        out.stderr
    );
}
