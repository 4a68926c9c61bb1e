//! `--state DIR`: a restart reuses what the watcher decrypted before, for
//! files whose bytes are unchanged, without any secret in clear on disk
//! (SPEC 5's warm restart, issue 17).

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::env::{b64, chmod, contains, run, spawnable, TestEnv};
use crate::watcher::served;

/// The `N decrypted` of a `watch --once` summary.
fn decrypted(stdout: &str) -> usize {
    stdout
        .split(" decrypted")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no decrypted count in: {stdout}"))
}

/// One `apply -f -` of many mesh `payments` secrets.
fn apply_many(env: &TestEnv, secrets: impl Iterator<Item = (String, String)>) {
    let yaml: Vec<String> = secrets
        .map(|(name, value)| {
            format!(
                "type: Secret\nmesh: payments\nname: {name}\ndata: {}\n",
                b64(value)
            )
        })
        .collect();
    env.apply_in(&env.root, &yaml.join("---\n"));
}

fn once_with_state(env: &TestEnv, state: &std::path::Path) -> String {
    env.watch_once(&["--state", state.to_str().unwrap()])
        .success()
        .stdout()
}

#[test]
fn a_restart_decrypts_only_what_changed() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    for i in 0..12 {
        env.create(
            "payments",
            &format!("s{i}"),
            &format!("planted-state-value-{i}"),
        );
    }
    let state = env.tmp().join("state");
    let first = once_with_state(&env, &state);
    assert_eq!(decrypted(&first), 12, "{first}");
    assert_eq!(crate::env::mode_of(&state), 0o700);
    let second = once_with_state(&env, &state);
    assert_eq!(
        decrypted(&second),
        0,
        "a warm restart decrypted again: {second}"
    );
    assert!(second.contains("loaded 12 secret(s)"), "{second}");

    // One file changes, one goes: one decryption, and the gone one is gone.
    env.set("payments", "s3", "changed");
    fs::remove_file(env.secret_file("payments", "s4")).unwrap();
    let third = once_with_state(&env, &state);
    assert_eq!(decrypted(&third), 1, "{third}");
    assert!(third.contains("loaded 11 secret(s)"), "{third}");

    // Without --state nothing is kept: every file is decrypted.
    let cold = env.watch_once(&[]).success().stdout();
    assert_eq!(decrypted(&cold), 11, "{cold}");

    // No value in clear in the state folder.
    for entry in fs::read_dir(&state).unwrap().flatten() {
        let bytes = fs::read(entry.path()).unwrap();
        for i in 0..12 {
            let value = format!("planted-state-value-{i}");
            assert!(
                !contains(&bytes, value.as_bytes()),
                "{} holds a value",
                entry.path().display()
            );
            assert!(!contains(&bytes, b64(&value).as_bytes()));
        }
        assert_eq!(crate::env::mode_of(&entry.path()), 0o600);
    }
}

#[test]
fn a_warm_watcher_serves_the_current_files_not_the_cache() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "before");
    env.set("payments", "unchanged", "same");
    let state = env.tmp().join("state");
    once_with_state(&env, &state);
    // Changed while no watcher ran: the cache's value is stale.
    env.set("payments", "db", "after");
    let w = env.watch(&["--state", state.to_str().unwrap()]);
    assert_eq!(
        served(&w, &tokens.admin, "payments", "db"),
        Some(b64("after"))
    );
    // Only the changed file was decrypted; the unchanged one came from the
    // cache.
    let (_, metrics) = w.get("/metrics", Some(&tokens.admin));
    assert!(
        metrics.contains("\nmeshseal_decrypted_total 1\n"),
        "{metrics}"
    );
}

#[test]
fn a_cache_that_cannot_be_used_means_a_cold_load() {
    let env = TestEnv::new();
    env.create("default", "a", "one");
    env.create("default", "b", "two");
    let state = env.tmp().join("state");
    once_with_state(&env, &state);
    let cache = state.join("cache.age");
    // Truncated.
    let bytes = fs::read(&cache).unwrap();
    fs::write(&cache, &bytes[..bytes.len() / 2]).unwrap();
    let r = env
        .watch_once(&["--state", state.to_str().unwrap()])
        .success();
    assert_eq!(decrypted(&r.stdout()), 2);
    // Encrypted to someone else: another reader of the store made it.
    let (other, other_public) = env.new_identity("other");
    env.ok_key(&["recipients", "add", "-m", "default", &other_public]);
    env.ok_key(&["rekey", "-m", "default"]);
    let by_other = run(env.cmd().arg("-i").arg(&other).args([
        "watch",
        "--once",
        "--state",
        state.to_str().unwrap(),
    ]))
    .success();
    assert_eq!(decrypted(&by_other.stdout()), 2);
    let r = env
        .watch_once(&["--state", state.to_str().unwrap()])
        .success();
    assert_eq!(
        decrypted(&r.stdout()),
        2,
        "a cache it cannot open is not used"
    );
    fs::write(&cache, b"garbage").unwrap();
    let r = env
        .watch_once(&["--state", state.to_str().unwrap()])
        .success();
    assert_eq!(decrypted(&r.stdout()), 2);
}

#[test]
fn an_unsafe_state_folder_is_refused() {
    let env = TestEnv::new();
    env.create("default", "a", "one");
    let state = env.tmp().join("state");
    fs::create_dir(&state).unwrap();
    chmod(&state, 0o777);
    env.watch_once(&["--state", state.to_str().unwrap()])
        .failure(1)
        .assert_stderr_has("the state folder can be written by group or others");
    let link = env.tmp().join("state-link");
    chmod(&state, 0o700);
    symlink(&state, &link).unwrap();
    env.watch_once(&["--state", link.to_str().unwrap()])
        .failure(1)
        .assert_stderr_has("the state folder is a symlink");
}

#[test]
fn a_warm_restart_killed_mid_load_leaves_only_verified_values() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    apply_many(&env, (0..300).map(|i| (format!("k{i}"), format!("v{i}"))));
    let state = env.tmp().join("state");
    once_with_state(&env, &state);
    // Change a third of the files, then kill warm starts at varied moments.
    apply_many(
        &env,
        (0..300)
            .step_by(3)
            .map(|i| (format!("k{i}"), format!("w{i}"))),
    );
    for delay_ms in [5u64, 20, 60, 150] {
        let mut child = spawnable(env.kcmd_at(&env.root).args([
            "watch",
            "--once",
            "--state",
            state.to_str().unwrap(),
        ]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Whatever the kills left, a watcher serves what the files say.
    let admin = env.token(&["--admin"]);
    let w = env.watch(&["--state", state.to_str().unwrap()]);
    let start = Instant::now();
    for i in 0..300 {
        let want = if i % 3 == 0 {
            format!("w{i}")
        } else {
            format!("v{i}")
        };
        assert_eq!(
            served(&w, &admin, "payments", &format!("k{i}")),
            Some(b64(&want)),
            "k{i} after {:?}",
            start.elapsed()
        );
    }
}
