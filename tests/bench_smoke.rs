//! The benchmark harness in smoke mode (20 secrets, one run, no peers): it must
//! build, drive the built `meshseal`, and print its table. The benchmark
//! numbers themselves are never pass/fail (see BENCHMARKS.md).

use std::process::Command;

#[test]
fn bench_smoke_run_prints_the_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshseal-bench"))
        .args(["--smoke", "--meshseal", env!("CARGO_BIN_EXE_meshseal")])
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
        "peak RSS of the watcher",
        "`check --staged`",
        "bulk `apply -f`",
    ] {
        assert!(stdout.contains(row), "row {row:?} missing:\n{stdout}");
    }
}
