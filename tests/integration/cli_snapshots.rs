//! The CLI's user-facing errors pinned as snapshot cases, as rage does with
//! trycmd: every `tests/cmd/<command>/<case>.toml` gives the arguments (and
//! standard input), the exit status and the exact stdout and stderr of one
//! run of the built `meshseal`, in a sandbox copy of `tests/cmd/_fixtures/`
//! (stores and TEST-ONLY identities; `make.sh` there regenerates them).
//!
//! After a deliberate change of a text, re-bless the cases and review the diff:
//! `TRYCMD=overwrite cargo test --test integration cli_snapshots`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::env::chmod;

/// Fewer cases than this means the folder went missing, not that the CLI
/// got better.
const MIN_CASES: usize = 45;

fn cmd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("cmd")
}

/// git keeps no permission bits: every fixture identity must be 0600 (or
/// meshseal rightly refuses it), except the one that pins that refusal.
fn set_identity_modes(keys: &Path) {
    for entry in fs::read_dir(keys).expect("tests/cmd/_fixtures/keys") {
        let path = entry.expect("keys entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        chmod(
            &path,
            if name.contains("world-readable") {
                0o644
            } else {
                0o600
            },
        );
    }
}

fn count_cases(dir: &Path) -> usize {
    fs::read_dir(dir)
        .expect("tests/cmd")
        .map(|e| e.expect("tests/cmd entry").path())
        .filter(|group| group.is_dir())
        .flat_map(|group| fs::read_dir(group).expect("case group"))
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
        })
        .count()
}

#[test]
fn cli_snapshots() {
    let cmd = cmd_dir();
    let cases = count_cases(&cmd);
    assert!(
        cases >= MIN_CASES,
        "tests/cmd holds {cases} cases; the snapshot cases are missing"
    );
    set_identity_modes(&cmd.join("_fixtures").join("keys"));
    // A HOME and config dir of the test's own, so that no default identity of
    // the developer's is found; `[CONFIG]` in a case stands for it.
    let isolated = tempfile::tempdir().expect("temp dir");
    let home = isolated.path().join("home");
    let config = isolated.path().join("config");
    for dir in [&home, &config] {
        fs::create_dir_all(dir).expect("create test dirs");
    }
    let config_text = config.to_str().expect("UTF-8 temp path").to_string();
    trycmd::TestCases::new()
        .register_bin("meshseal", PathBuf::from(env!("CARGO_BIN_EXE_meshseal")))
        .env("HOME", home.to_str().expect("UTF-8 temp path"))
        .env("XDG_CONFIG_HOME", config_text.as_str())
        // Empty is unset for meshseal; the caller's own key must not leak in.
        .env("MESHSEAL_IDENTITY", "")
        .env("VISUAL", "false")
        .env("EDITOR", "false")
        .env("RUST_BACKTRACE", "0")
        .insert_var("[CONFIG]", config_text)
        .expect("a valid variable")
        // One level of groups: fixture stores below hold meshseal.toml files.
        .case("tests/cmd/*/*.toml")
        .run();
}
