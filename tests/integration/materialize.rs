//! `watch --materialize DIR` against a second local user (SPEC 11): the
//! built binary, run as root as in CI, with `setpriv` acting as `nobody`.
//!
//! Each attack of issue 12 is replayed on the file system: a DIR that
//! someone else pre-created (with `global -> victim` inside), a DIR others
//! can write, a DIR that is a symlink, a DIR on a disk, and a file swapped
//! for a symlink between two syncs. Each test asserts the exact error lines
//! or the state of the victim's files and of DIR.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::env::{chmod, mode_of, run, Run, TestEnv};

/// `/dev/shm`, where the docs suggest DIR lives and any local user may
/// create entries; `None` (a printed SKIPPED line) outside CI when it is
/// missing or not tmpfs.
fn shm() -> Option<&'static Path> {
    let shm = Path::new("/dev/shm");
    let ok = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(shm)
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "tmpfs");
    if ok {
        return Some(shm);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "/dev/shm is not a tmpfs and CI is set"
    );
    eprintln!("SKIPPED: /dev/shm is not a tmpfs here");
    None
}

/// Whether a second user can be played: root and `setpriv` (the CI runs
/// as root); elsewhere a SKIPPED line.
fn can_act_as_nobody(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    let setpriv = crate::tools::external_tool("setpriv").is_some();
    if root && setpriv {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs root and setpriv under CI"
    );
    eprintln!("SKIPPED {test}: needs root and setpriv to act as another user");
    false
}

/// Runs `script` with `sh` as `nobody`, with `args` as `$1`, `$2`, ….
fn as_nobody(script: &str, args: &[&Path]) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-ec",
            script,
            "sh",
        ])
        .args(args)
        .output()
        .expect("run setpriv");
    assert!(out.status.success(), "as nobody: {script}: {out:?}");
}

/// A fresh path directly in `/dev/shm` (where anyone may create), removed
/// with whatever is there when dropped. Nothing is created.
struct ShmPath(PathBuf);

impl ShmPath {
    fn new(shm: &Path, what: &str) -> ShmPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        ShmPath(shm.join(format!("meshseal-{what}-{}-{n}", std::process::id())))
    }
}

impl Drop for ShmPath {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.0) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir_all(&self.0);
            }
            Ok(_) => {
                let _ = fs::remove_file(&self.0);
            }
            Err(_) => {}
        }
    }
}

/// A folder of root's with files that no secret may touch.
fn victim(env: &TestEnv) -> PathBuf {
    let victim = env.tmp().join("victim");
    fs::create_dir(&victim).unwrap();
    chmod(&victim, 0o755);
    fs::write(victim.join("precious"), "keep me").unwrap();
    fs::write(victim.join("other"), "me too").unwrap();
    victim
}

fn assert_victim_untouched(victim: &Path) {
    let mut names: Vec<String> = fs::read_dir(victim)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["other", "precious"], "files of the victim changed");
    assert_eq!(fs::read(victim.join("precious")).unwrap(), b"keep me");
    assert_eq!(fs::read(victim.join("other")).unwrap(), b"me too");
    assert_eq!(mode_of(victim), 0o755, "the victim folder was chmod-ed");
}

/// A store with a global and a mesh secret, and its tokens.
fn store() -> TestEnv {
    let (env, _) = TestEnv::serving();
    env.set("payments", "db", "mesh-secret");
    env.set_global("g", "global-secret");
    env
}

/// `meshseal watch --materialize DIR EXTRA…` expected to stop at start.
fn watch_refused(env: &TestEnv, dir: &Path, extra: &[&str]) -> Run {
    let tokens = env.tokens_file();
    let mut cmd = env.kcmd_at(&env.root);
    cmd.args(["watch", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&tokens)
        .arg("--materialize")
        .arg(dir)
        .args(extra)
        .timeout(Duration::from_secs(60));
    let r = run(&mut cmd).failure(1);
    assert!(
        !r.stderr.contains("listening on"),
        "a refused folder must stop the watcher before it serves:\n{}",
        r.stderr
    );
    r
}

#[track_caller]
fn assert_line(r: &Run, expected: &str) {
    assert!(
        r.stderr.lines().any(|l| l == expected),
        "no line {expected:?} in:\n{}",
        r.stderr
    );
}

#[test]
fn a_dir_pre_created_by_another_user_is_refused() {
    let Some(shm) = shm() else { return };
    if !can_act_as_nobody("a_dir_pre_created_by_another_user_is_refused") {
        return;
    }
    let env = store();
    let victim = victim(&env);
    let dir = ShmPath::new(shm, "planted");
    as_nobody(
        r#"mkdir -m 0700 "$1"; ln -s "$2" "$1/global"; mkdir -m 0700 "$1/meshes"; ln -s "$2" "$1/meshes/payments""#,
        &[&dir.0, &victim],
    );
    let d = dir.0.display();
    let r = watch_refused(&env, &dir.0, &[]);
    assert_line(
        &r,
        &format!("error: {d}: owned by uid 65534, not by the watcher's user (uid 0): its owner could swap the files programs read"),
    );
    assert_line(
        &r,
        &format!("hint: remove {d}, or give --materialize a path that does not exist yet: the watcher creates it (0700)"),
    );
    assert_victim_untouched(&victim);
    // The other user's folder is left as it was: not chmod-ed, links kept.
    assert_eq!(fs::symlink_metadata(&dir.0).unwrap().uid(), 65534);
    assert_eq!(mode_of(&dir.0), 0o700);
    assert_eq!(fs::read_link(dir.0.join("global")).unwrap(), victim);
}

#[test]
fn a_symlink_planted_inside_an_own_dir_is_replaced_never_followed() {
    let Some(shm) = shm() else { return };
    let env = store();
    let victim = victim(&env);
    let parent = tempfile::Builder::new()
        .prefix("meshseal-test-")
        .tempdir_in(shm)
        .unwrap();
    let dir = parent.path().join("out");
    fs::create_dir_all(dir.join("meshes")).unwrap();
    chmod(&dir, 0o700);
    symlink(&victim, dir.join("global")).unwrap();
    symlink(&victim, dir.join("meshes/payments")).unwrap();
    let w = env.watch(&["--materialize", dir.to_str().unwrap()]);
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
    assert_victim_untouched(&victim);
    for (folder, file, value) in [
        ("global", "g", "global-secret"),
        ("meshes/payments", "db", "mesh-secret"),
    ] {
        let folder = dir.join(folder);
        let meta = fs::symlink_metadata(&folder).unwrap();
        assert!(meta.is_dir(), "{}: a real folder", folder.display());
        assert_eq!(mode_of(&folder), 0o700);
        assert_eq!(fs::read(folder.join(file)).unwrap(), value.as_bytes());
        assert_eq!(mode_of(&folder.join(file)), 0o400);
    }
    assert!(
        log.contains(
            "removed a symlink or file where a materialized folder belongs (not followed)"
        ) && log.contains(&format!("file={}", dir.join("global").display())),
        "{log}"
    );
}

#[test]
fn a_dir_others_can_write_is_refused_and_left_as_it_is() {
    let Some(shm) = shm() else { return };
    if !can_act_as_nobody("a_dir_others_can_write_is_refused_and_left_as_it_is") {
        return;
    }
    let env = store();
    let victim = victim(&env);
    // Root's folder, but world-writable: the other user plants `global`.
    let dir = ShmPath::new(shm, "open");
    fs::create_dir(&dir.0).unwrap();
    chmod(&dir.0, 0o777);
    as_nobody(r#"ln -s "$2" "$1/global""#, &[&dir.0, &victim]);
    let d = dir.0.display();
    let r = watch_refused(&env, &dir.0, &[]);
    assert_line(
        &r,
        &format!("error: {d}: writable by group or others (mode 0777): they could plant links or swap files"),
    );
    assert_line(
        &r,
        &format!("hint: check what is in {d}, then `chmod 700 {d}`; or give --materialize a path that does not exist yet: the watcher creates it (0700)"),
    );
    assert_victim_untouched(&victim);
    assert_eq!(mode_of(&dir.0), 0o777, "a refused folder is not chmod-ed");
    assert_eq!(fs::read_link(dir.0.join("global")).unwrap(), victim);

    // Group-writable is refused the same way.
    let group = ShmPath::new(shm, "group");
    fs::create_dir(&group.0).unwrap();
    chmod(&group.0, 0o770);
    let r = watch_refused(&env, &group.0, &[]);
    assert_line(
        &r,
        &format!(
            "error: {}: writable by group or others (mode 0770): they could plant links or swap files",
            group.0.display()
        ),
    );
}

#[test]
fn a_dir_that_is_a_symlink_is_refused() {
    let Some(shm) = shm() else { return };
    if !can_act_as_nobody("a_dir_that_is_a_symlink_is_refused") {
        return;
    }
    let env = store();
    // The link points at a private folder of root's: what it names would
    // pass every check, the link itself is what is refused.
    let parent = tempfile::Builder::new()
        .prefix("meshseal-test-")
        .tempdir_in(shm)
        .unwrap();
    let real = parent.path().join("real");
    fs::create_dir(&real).unwrap();
    chmod(&real, 0o700);
    let link = ShmPath::new(shm, "link");
    as_nobody(r#"ln -s "$2" "$1""#, &[&link.0, &real]);
    let l = link.0.display();
    let r = watch_refused(&env, &link.0, &[]);
    assert_line(
        &r,
        &format!("error: {l}: is a symbolic link: the watcher writes only into a real folder"),
    );
    assert_line(
        &r,
        &format!("hint: remove the link {l} and let the watcher create the folder, or give the folder's own path"),
    );
    assert_eq!(
        fs::read_dir(&real).unwrap().count(),
        0,
        "nothing written through the link"
    );
    // With a trailing slash too (which would make the kernel follow it).
    let r = watch_refused(&env, Path::new(&format!("{l}/")), &[]);
    assert_line(
        &r,
        &format!("error: {l}: is a symbolic link: the watcher writes only into a real folder"),
    );
    assert_eq!(fs::read_dir(&real).unwrap().count(), 0);
}

/// A folder on a disk-backed file system, if there is one.
fn disk_folder(env: &TestEnv) -> Option<PathBuf> {
    let on_disk = |p: &Path| {
        Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(p)
            .output()
            .is_ok_and(|o| {
                let t = String::from_utf8_lossy(&o.stdout).trim().to_string();
                o.status.success() && t != "tmpfs" && t != "ramfs"
            })
    };
    let found = [
        env.tmp().to_path_buf(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    ]
    .into_iter()
    .find(|p| on_disk(p));
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no disk-backed folder under CI"
        );
        eprintln!("SKIPPED: no disk-backed folder to materialize into");
    }
    found
}

#[test]
fn a_persistent_file_system_is_refused_unless_accepted() {
    let env = store();
    let Some(disk) = disk_folder(&env) else {
        return;
    };
    let scratch = tempfile::Builder::new()
        .prefix("meshseal-test-")
        .tempdir_in(disk)
        .unwrap();
    let dir = scratch.path().join("materialized");
    let r = watch_refused(&env, &dir, &[]);
    let prefix = format!("error: {}: is on a persistent file system (", dir.display());
    let suffix = "): materialized secrets are plaintext and would stay on disk";
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with(&prefix) && l.ends_with(suffix)),
        "{}",
        r.stderr
    );
    assert_line(
        &r,
        "hint: use a folder on tmpfs (below /dev/shm or $XDG_RUNTIME_DIR), or pass --materialize-persistent to keep plaintext secrets at rest on purpose",
    );
    assert!(!dir.exists(), "a refused start leaves no folder behind");

    let w = env.watch(&[
        "--materialize",
        dir.to_str().unwrap(),
        "--materialize-persistent",
    ]);
    assert_eq!(
        fs::read(dir.join("meshes/payments/db")).unwrap(),
        b"mesh-secret"
    );
    let log = w.log();
    assert!(
        log.lines().any(|l| l.contains(" WARN ")
            && l.contains("--materialize-persistent: the materialized secrets are plaintext on a persistent file system; they stay at rest on disk")),
        "{log}"
    );
}

#[test]
fn a_file_swapped_for_a_symlink_is_replaced_never_followed() {
    let Some(shm) = shm() else { return };
    let env = store();
    env.set("payments", "gone", "bye");
    let victim = victim(&env);
    let parent = tempfile::Builder::new()
        .prefix("meshseal-test-")
        .tempdir_in(shm)
        .unwrap();
    let dir = parent.path().join("out");
    let w = env.watch(&["--materialize", dir.to_str().unwrap()]);
    let db = dir.join("meshes/payments/db");
    let gone = dir.join("meshes/payments/gone");
    assert_eq!(fs::read(&db).unwrap(), b"mesh-secret");
    for (file, target) in [(&db, "precious"), (&gone, "other")] {
        fs::remove_file(file).unwrap();
        symlink(victim.join(target), file).unwrap();
    }
    env.set("payments", "db", "mesh-two");
    env.ok_key(&["delete", "secret", "gone", "-m", "payments"]);
    w.eventually("the link is replaced by the new file", |_| {
        fs::symlink_metadata(&db).is_ok_and(|m| m.is_file())
    });
    w.eventually("the link of a deleted secret is removed", |_| {
        fs::symlink_metadata(&gone).is_err()
    });
    assert_eq!(fs::read(&db).unwrap(), b"mesh-two");
    assert_eq!(mode_of(&db), 0o400);
    assert_victim_untouched(&victim);
}

#[test]
fn a_restart_whose_files_are_current_rewrites_nothing() {
    let Some(shm) = shm() else { return };
    let env = store();
    let parent = tempfile::Builder::new()
        .prefix("meshseal-test-")
        .tempdir_in(shm)
        .unwrap();
    let dir = parent.path().join("out");
    let args = ["--materialize", dir.to_str().unwrap()];
    let (status, log) = env.watch(&args).stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("written=2 removed=0"), "{log}");
    let db = dir.join("meshes/payments/db");
    let inode = fs::metadata(&db).unwrap().ino();
    // A leftover of a killed run is swept at the next start.
    fs::write(dir.join("meshes/payments/.meshseal-1-0.tmp"), "half").unwrap();
    let (status, log) = env.watch(&args).stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("written=0 removed=1"), "{log}");
    assert_eq!(fs::metadata(&db).unwrap().ino(), inode, "db was rewritten");
    assert_eq!(
        fs::read_dir(dir.join("meshes/payments")).unwrap().count(),
        1
    );
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}
