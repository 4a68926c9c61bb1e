//! Host hardening (SPEC 11) not shown elsewhere: a hostile `meshseal.toml`
//! through `check`, the pre-commit hook and the watcher; no core file on
//! SIGQUIT; the warning of a watcher that may not lock its memory.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::{nobodys_copy, run, spawnable, wrapped, TestEnv};
use crate::hardening::locked_kb;
use crate::watcher::Watcher;

/// What a committed `meshseal.toml` may be made into.
pub(super) const PLANTS: [&str; 3] = ["zero", "fifo", "huge"];

/// Replaces the store's `meshseal.toml` by `plant`: a link to `/dev/zero`,
/// a FIFO, or 8 MiB of comments.
pub(super) fn plant_config(root: &Path, plant: &str) {
    let config = root.join("meshseal.toml");
    let _ = fs::remove_file(&config);
    match plant {
        "zero" => symlink("/dev/zero", &config).unwrap(),
        "fifo" => {
            let made = Command::new("mkfifo").arg(&config).status().unwrap();
            assert!(made.success());
        }
        _ => fs::write(&config, vec![b'#'; 8 << 20]).unwrap(),
    }
}

/// What each plant is refused with.
pub(super) fn refusal(plant: &str) -> &'static str {
    match plant {
        "zero" => "meshseal.toml: is a symlink: store files must be regular files inside the store",
        "fifo" => "meshseal.toml: is not a regular file",
        _ => "meshseal.toml: file is 8388608 bytes, more than the 1048576 bytes any valid text file of the store needs",
    }
}

#[test]
fn a_hostile_meshseal_toml_is_refused_at_once_by_check_the_hook_and_the_watcher() {
    if crate::tools::external_tool("git").is_none() {
        return;
    }
    let r = TestEnv::git_repo();
    r.ok_key(&["create", "secret", "db", "--from-literal", "v1"]);
    let (ok, err) = r.commit("first");
    assert!(ok, "{err}");
    let good = fs::read(r.root.join("meshseal.toml")).unwrap();
    for plant in PLANTS {
        plant_config(&r.root, plant);
        let limit = Duration::from_secs(20);
        for args in [&["check"][..], &["watch", "--once"][..]] {
            let start = Instant::now();
            let out = run(r.kcmd().args(args).timeout(limit));
            assert_eq!(out.code, Some(1), "{plant} {args:?}: {}", out.stderr);
            assert!(
                out.stderr.contains(refusal(plant)),
                "{plant} {args:?}: {}",
                out.stderr
            );
            assert!(start.elapsed() < Duration::from_secs(10), "{plant}: slow");
        }
        // Committed: git keeps a link as a link (a FIFO it cannot stage).
        if plant != "fifo" {
            let (ok, err) = r.commit(plant);
            assert!(!ok, "the hook let the link through");
            assert!(err.contains(refusal(plant)), "{err}");
        }
    }
    fs::write(r.root.join("meshseal.toml"), good).unwrap();
    r.ok_key(&["check"]);
}

/// Sends SIGQUIT to `pid` and waits for `child` to die of it.
fn quit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-QUIT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn sigquit_leaves_no_core_file_of_the_watcher() {
    let Some(_) = crate::tools::external_tool("prlimit") else {
        return;
    };
    let (env, _) = TestEnv::serving();
    env.set("payments", "db", "planted-core-value");
    let core = ["prlimit", "--core=unlimited", "--"];
    // The control: an ordinary process, under the same limit and in the
    // same kind of folder, leaves a core.
    let control_dir = env.tmp().join("control");
    fs::create_dir(&control_dir).unwrap();
    let mut control = Command::new(core[0]);
    control.args(&core[1..]).args(["sleep", "60"]);
    let mut child = control
        .current_dir(&control_dir)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let status = quit(&mut child);
    if !status.core_dumped() {
        // core_pattern empty, or cores off for everyone: nothing to tell.
        eprintln!("SKIPPED sigquit_leaves_no_core_file_of_the_watcher: this host writes no core file even for `sleep` ({status})");
        return;
    }
    let dir = env.tmp().join("cwd");
    fs::create_dir(&dir).unwrap();
    let tokens = env.tokens_file();
    let mut cmd = spawnable(env.kcmd_at(&env.root).args([
        "watch",
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        tokens.to_str().unwrap(),
    ]));
    cmd.current_dir(&dir);
    let mut w = Watcher::start(wrapped(&core, &cmd));
    assert!(w.log().contains("not_dumpable=true"), "{}", w.log());
    let status = quit(&mut w.child);
    assert_eq!(status.signal(), Some(3), "{status}: {}", w.log());
    assert!(
        !status.core_dumped(),
        "the kernel dumped the watcher's memory"
    );
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
}

#[test]
fn a_watcher_that_may_not_lock_its_memory_says_so_and_serves() {
    let root = rustix::process::geteuid().is_root();
    let tools = crate::tools::external_tool("setpriv").is_some()
        && crate::tools::external_tool("prlimit").is_some();
    if !(root && tools) {
        assert!(
            std::env::var_os("CI").is_none(),
            "needs root, setpriv and prlimit under CI"
        );
        eprintln!("SKIPPED a_watcher_that_may_not_lock_its_memory_says_so_and_serves: needs root, setpriv and prlimit");
        return;
    }
    let (env, _) = TestEnv::serving();
    env.set("payments", "db", "v");
    let (store, identity, home) = nobodys_copy(&env);
    let exe = env!("CARGO_BIN_EXE_meshseal");
    let mut cmd = Command::new("prlimit");
    // 64 KiB may be locked, as on a stock distribution for a plain user.
    cmd.args(["--memlock=65536:65536", "--", "setpriv"])
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(exe)
        .arg("-C")
        .arg(&store)
        .arg("-i")
        .arg(&identity)
        .args(["watch", "--listen", "127.0.0.1:0"])
        .env("HOME", &home)
        .env_remove("RUST_LOG");
    let w = Watcher::start(cmd);
    let log = w.log();
    assert!(
        log.lines().any(|l| l.contains(" WARN ")
            && l.contains(
                "memory not locked: the memlock limit is too small, so secrets may reach swap"
            )
            && l.contains("LimitMEMLOCK=infinity")
            && l.contains("limit_bytes=65536")),
        "no warning:\n{log}"
    );
    assert!(
        log.contains("memory_locked=false not_dumpable=true")
            || (log.contains("memory_locked=false") && log.contains("not_dumpable=true")),
        "{log}"
    );
    assert_eq!(locked_kb(w.child.id()), 0);
    assert_eq!(w.get("/ready", None).0, 200, "{log}");
    // Not dumpable: its /proc files are root's, though nobody runs it.
    let owner = fs::metadata(format!("/proc/{}/status", w.child.id()))
        .unwrap()
        .uid();
    assert_eq!(owner, 0);
}
