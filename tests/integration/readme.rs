//! README.md's "Your own store" works as written (issue 16): its command
//! lines are read from the README itself and run in order, each through
//! `sh -c`, in a temporary git repository with a HOME of its own and the
//! built `meshseal` first on PATH. What a test cannot do is stood in for,
//! explicitly: `cargo install` is the binary under test, `age1…` is a
//! teammate's fresh key, `kubectl` is a script that checks what it is fed,
//! the editor changes nothing, and `secrets.yaml` is a Kuma Secret written
//! here.

use assert_cmd::Command;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::env::{chmod, run};
use crate::tools::external_tool;

const README: &str = include_str!("../../README.md");

/// The lines of the fenced `sh` blocks of the README's section `heading`.
fn section_commands(heading: &str) -> Vec<String> {
    let start = README
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?} section"));
    let section = &README[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        let line = line.trim_end();
        if in_block && line == "```" {
            in_block = false;
        } else if in_block {
            if !line.trim().is_empty() {
                lines.push(line.to_string());
            }
        } else if line == "```sh" {
            in_block = true;
        }
    }
    lines
}

/// Where the stand-ins live: `meshseal` (the built binary) and `kubectl`.
fn stand_ins(bin: &Path) {
    fs::create_dir_all(bin).expect("bin dir");
    symlink(env!("CARGO_BIN_EXE_meshseal"), bin.join("meshseal")).expect("link meshseal");
    let kubectl = bin.join("kubectl");
    // `kubectl apply -f -` must be fed Kubernetes Secrets of Kuma's types.
    fs::write(
        &kubectl,
        "#!/bin/sh\n\
         [ \"$1 $2 $3\" = 'apply -f -' ] || { echo \"stand-in kubectl: unexpected $*\" >&2; exit 3; }\n\
         input=$(cat)\n\
         printf '%s' \"$input\" | grep -q '^kind: Secret$' || { echo 'stand-in kubectl: no Secret' >&2; exit 4; }\n\
         printf '%s' \"$input\" | grep -q '^type: system.kuma.io/secret$' || { echo 'stand-in kubectl: not a Kuma secret' >&2; exit 5; }\n\
         echo 'secret/stand-in configured'\n",
    )
    .expect("write kubectl");
    chmod(&kubectl, 0o755);
}

#[test]
fn readme_your_own_store_runs_as_written() {
    let commands = section_commands("## Your own store");
    assert!(
        commands.len() >= 10,
        "the README's \"Your own store\" block is missing: {commands:?}"
    );
    let Some(git) = external_tool("git") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let (bin, home, config, repo) = (
        tmp.path().join("bin"),
        tmp.path().join("home"),
        tmp.path().join("config"),
        tmp.path().join("repo"),
    );
    for dir in [&home, &config, &repo] {
        fs::create_dir_all(dir).expect("create test dirs");
    }
    stand_ins(&bin);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = |line: &str| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(line)
            .current_dir(&repo)
            .env("PATH", &path)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &config)
            .env_remove("MESHSEAL_IDENTITY")
            .env_remove("RUST_LOG")
            .env_remove("GIT_DIR")
            .env("EDITOR", "true")
            .env("VISUAL", "true")
            .env("GIT_AUTHOR_NAME", "readme")
            .env("GIT_AUTHOR_EMAIL", "readme@example.invalid")
            .env("GIT_COMMITTER_NAME", "readme")
            .env("GIT_COMMITTER_EMAIL", "readme@example.invalid");
        cmd
    };
    // "in a git repository of yours".
    run(Command::new(&git).args(["init", "-q"]).current_dir(&repo)).success();
    // The teammate of `recipients add -m payments age1…`.
    let teammate = tmp.path().join("teammate.txt");
    let made = run(&mut shell(&format!(
        "meshseal keygen -o {}",
        teammate.display()
    )))
    .success();
    let teammate_key = made.stdout().trim().to_string();
    assert!(teammate_key.starts_with("age1"), "{teammate_key}");
    fs::write(
        repo.join("secrets.yaml"),
        "type: Secret\nname: api-key\nmesh: payments\ndata: c3RhbmQtaW4=\n",
    )
    .expect("write secrets.yaml");

    let mut ran = 0;
    for line in &commands {
        if line.starts_with("cargo install") {
            // The binary under test stands in for the installed one.
            assert!(line.contains("--path ."), "{line}");
            continue;
        }
        let line = line.replace("age1…", &teammate_key);
        let r = run(&mut shell(&line));
        assert_eq!(
            r.code,
            Some(0),
            "README line failed: {line}\n--- stdout:\n{}\n--- stderr:\n{}",
            r.stdout(),
            r.stderr
        );
        ran += 1;
        if line.contains("-o raw") {
            assert_eq!(r.stdout(), "correct-horse", "{line}");
        }
        if line.starts_with("meshseal get secrets -A") {
            let out = r.stdout();
            assert!(out.starts_with("MESH"), "{out}");
            assert!(out.contains("payments  db-password  13"), "{out}");
        }
    }
    assert!(ran >= 10, "only {ran} README lines ran");
    // The commit went through the hook, and holds ciphertext only.
    let log = run(Command::new(&git)
        .args(["log", "--name-only", "--format=%s"])
        .current_dir(&repo))
    .success();
    let log = log.stdout();
    assert!(
        log.contains("meshes/payments/secrets/db-password.age"),
        "{log}"
    );
    assert!(log.contains("meshes/payments/secrets/api-key.age"), "{log}");
    assert!(
        !log.contains("pw.txt") && !log.contains("secrets.yaml"),
        "{log}"
    );
}
