//! Outside tools (stock `age`, `rage`, `ssh-keygen`): under CI a missing tool
//! fails the test; elsewhere the test prints a `SKIPPED` line that shows in
//! cargo's own output and returns.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How to get each outside tool, for the messages below.
fn install_hint(name: &str) -> &'static str {
    match name {
        "age" | "age-keygen" => "apt-get install age",
        "rage" | "rage-keygen" => "cargo install rage",
        "ssh-keygen" | "ssh-agent" | "ssh-add" => "apt-get install openssh-client",
        "openssl" => "apt-get install openssl",
        "git" => "apt-get install git",
        _ => "install it",
    }
}

/// Tests skipped so far in this run, for the running count on each line.
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Whether `name` is an executable file in a folder of PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| {
                fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}

/// The outside tools the interop tests drive.
const INTEROP_TOOLS: &[&str] = &["age", "age-keygen", "rage", "ssh-keygen", "openssl", "git"];

/// One line that counts what this run cannot check, whatever order the
/// tests ran in: each missing tool's tests print their own SKIPPED line.
#[test]
fn interop_tools_summary() {
    let missing: Vec<&str> = INTEROP_TOOLS
        .iter()
        .copied()
        .filter(|t| on_path(t).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but outside tools are missing: {missing:?}"
    );
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED interop: {} of {} outside tools missing ({}): the tests that need them are skipped, not passed",
        missing.len(),
        INTEROP_TOOLS.len(),
        missing.join(", ")
    );
}

/// Finds an external tool on PATH for interop tests. When it is missing: under
/// CI (`CI` set) the test fails, because interop must never silently skip
/// there; elsewhere a `SKIPPED` line names the test and the tool, and the
/// caller returns early.
///
/// The line is written to the process's stderr itself, not through
/// `eprintln!`, which the test harness captures: a skipped test must show in
/// a plain `cargo test`, not only with `--nocapture`, or it reads as passed.
pub fn external_tool(name: &str) -> Option<PathBuf> {
    let found = on_path(name);
    if found.is_none() {
        let install = install_hint(name);
        if std::env::var_os("CI").is_some() {
            panic!(
                "`{name}` is not on PATH and CI is set: interop tests must run in CI \
                 (install it: `{install}`)"
            );
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("an interop test")
            .to_string();
        let n = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: `{name}` is not on PATH (`{install}`); {n} skipped so far"
        );
    }
    found
}

/// The stock `age` CLI (Debian package `age`), or None outside CI.
pub fn stock_age() -> Option<PathBuf> {
    external_tool("age")
}

/// An unencrypted OpenSSH ed25519 key made by `ssh-keygen`: (private key
/// path, public key line). None when ssh-keygen is missing outside CI.
pub fn ssh_ed25519_key(dir: &Path, name: &str) -> Option<(PathBuf, String)> {
    let ssh_keygen = external_tool("ssh-keygen")?;
    let path = dir.join(name);
    let out = std::process::Command::new(ssh_keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@meshseal", "-f"])
        .arg(&path)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen failed: {out:?}");
    let public = fs::read_to_string(format!("{}.pub", path.display())).expect("public key");
    Some((path, public.trim().to_string()))
}
