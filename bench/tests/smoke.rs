//! The benchmark harness in smoke mode (20 secrets, one run, no peers): it must
//! build, drive the built `meshseal`, and print its table. The benchmark
//! numbers themselves are never pass/fail (see BENCHMARKS.md).

use std::path::PathBuf;
use std::process::Command;

/// The `meshseal` binary of this build: `CARGO_BIN_EXE_*` names only this
/// package's binaries, so it is found in the profile folder that holds this
/// test (`target/debug/deps/smoke-…` → `target/debug/meshseal`).
///
/// This assumes cargo built it in the same run: `cargo test` at the workspace
/// root does, because the root package (which owns the binary) is a default
/// member. `cargo test -p meshseal-bench` alone does not build it.
fn built_meshseal() -> PathBuf {
    let test_exe = std::env::current_exe().expect("own path");
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable inside <target>/<profile>/deps");
    let meshseal = profile_dir.join(format!("meshseal{}", std::env::consts::EXE_SUFFIX));
    assert!(
        meshseal.is_file(),
        "no meshseal binary at {}: run `cargo test` at the workspace root \
         (it builds the `meshseal` binary too), or `cargo build -p meshseal` \
         with the same profile first",
        meshseal.display()
    );
    meshseal
}

#[test]
fn bench_smoke_run_prints_the_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshseal-bench"))
        .arg("--smoke")
        .arg("--meshseal")
        .arg(built_meshseal())
        .output()
        .expect("run meshseal-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "meshseal-bench --smoke failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("| measurement"),
        "no table header:\n{stdout}"
    );
    for row in [
        "cold load: `watch --once` vs floor process",
        "cold load: in-process `Index::load` vs floor",
        "API read of one secret",
        "reload: one changed file",
        "reload: checkout rewriting",
        "reload: checkout renaming",
        "peak RSS of the watcher",
        "`check --staged`",
        "bulk `apply -f`",
        "warm restart: `watch --once --state`",
        "git-sync swap of the whole tree",
    ] {
        assert!(stdout.contains(row), "row {row:?} missing:\n{stdout}");
    }
}
