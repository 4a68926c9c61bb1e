//! A folder another user planted inside the watcher's own `--materialize`
//! DIR, and `check --staged` of stores in a monorepo's subfolders (SPEC 11).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::env::{chmod, mode_of, run, TestEnv};

#[test]
fn a_folder_another_user_owns_inside_dir_is_never_written_into() {
    let root = rustix::process::geteuid().is_root();
    let shm = Path::new("/dev/shm");
    if !(root && shm.is_dir()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "needs root and /dev/shm under CI"
        );
        eprintln!("SKIPPED a_folder_another_user_owns_inside_dir_is_never_written_into: needs root and /dev/shm");
        return;
    }
    let (env, _) = TestEnv::serving();
    env.set("payments", "db", "mesh-secret");
    env.set_global("g", "global-secret");
    let parent = tempfile::Builder::new()
        .prefix("meshseal-test-")
        .tempdir_in(shm)
        .unwrap();
    // DIR is the watcher's and private; `global/` inside it is another
    // user's, made while they could (they may still hold it open, and a
    // held handle is not stopped by DIR's mode).
    let dir = parent.path().join("out");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o700);
    let planted = dir.join("global");
    fs::create_dir(&planted).unwrap();
    chmod(&planted, 0o700);
    let chown = Command::new("chown")
        .arg("nobody")
        .arg(&planted)
        .status()
        .unwrap();
    assert!(chown.success());
    let w = env.watch(&["--materialize", dir.to_str().unwrap()]);
    w.eventually("the mesh secret materialized", |_| {
        dir.join("meshes/payments/db").is_file()
    });
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
    assert_eq!(
        fs::read(dir.join("meshes/payments/db")).unwrap(),
        b"mesh-secret"
    );
    assert_eq!(
        fs::read_dir(&planted).unwrap().count(),
        0,
        "a secret was written into another user's folder:\n{log}"
    );
    assert_eq!(fs::metadata(&planted).unwrap().uid(), 65534);
    assert_eq!(
        mode_of(&planted),
        0o700,
        "another user's folder was chmod-ed"
    );
    let file = format!("file={}", planted.display());
    assert!(
        log.lines().any(|l| l.contains(" WARN ")
            && l.contains("owned by uid 65534, not by the watcher's user (uid 0)")
            && l.contains("materialized file not updated")
            && l.contains(&file)),
        "no line naming the planted folder:\n{log}"
    );
}

#[test]
fn check_staged_in_a_monorepo_judges_each_store_by_its_own_paths() {
    if crate::tools::external_tool("git").is_none() {
        return;
    }
    let r = TestEnv::without_store();
    let repo = r.root.clone();
    r.git_ok(&["init", "-q", "-b", "main"]);
    r.git_ok(&["config", "user.email", "test@example.com"]);
    r.git_ok(&["config", "user.name", "test"]);
    let stores = [repo.join("infra/mesh-a"), repo.join("infra/mesh-b")];
    // `check --staged` of one store, run from the repository's root.
    let staged_check = |dir: &Path| run(r.cmd().arg("-C").arg(dir).args(["check", "--staged"]));
    for dir in &stores {
        fs::create_dir_all(dir).unwrap();
        r.ok(r
            .kcmd_at(dir)
            .args(["init", "--recipient", r.public.as_str()]));
        r.ok(r
            .kcmd_at(dir)
            .args(["create", "secret", "db", "--from-literal", "v1"]));
    }
    // Nothing committed yet: the staged check of each store passes.
    r.git_ok(&["add", "-A"]);
    for dir in &stores {
        let out = staged_check(dir);
        assert_eq!(out.code, Some(0), "{}: {}", dir.display(), out.stderr);
    }
    let (ok, err) = r.commit("two stores, the repository's first commit");
    assert!(ok, "{err}");

    // Plaintext staged in store b: b's check names it by b's own path,
    // a's check is not concerned.
    let leak = "meshes/default/secrets/leak.txt";
    fs::write(stores[1].join(leak), "hunter2").unwrap();
    r.git_ok(&["add", "-A"]);
    let a = staged_check(&stores[0]);
    assert_eq!(a.code, Some(0), "store a judged b's file: {}", a.stderr);
    let b = staged_check(&stores[1]);
    assert_eq!(b.code, Some(1), "{}", b.stderr);
    assert!(b.stderr.contains(leak), "{}", b.stderr);
    assert!(!b.stderr.contains("hunter2"));
    // Only in the index counts: removed from the work tree, still staged.
    fs::remove_file(stores[1].join(leak)).unwrap();
    let b = staged_check(&stores[1]);
    assert_eq!(b.code, Some(1), "the staged leak was missed: {}", b.stderr);
    r.git_ok(&["rm", "-q", "--cached", &format!("infra/mesh-b/{leak}")]);
    let b = staged_check(&stores[1]);
    assert_eq!(b.code, Some(0), "{}", b.stderr);

    // A store's file staged under the other store's name: a's ciphertext
    // copied into b as another secret is refused there (its header names
    // `db`), by b's check and the hook.
    let moved = "meshes/default/secrets/other.age";
    fs::copy(
        stores[0].join("meshes/default/secrets/db.age"),
        stores[1].join(moved),
    )
    .unwrap();
    r.git_ok(&["add", "-A"]);
    let b = staged_check(&stores[1]);
    assert_eq!(b.code, Some(1), "{}", b.stderr);
    assert!(b.stderr.contains(moved), "{}", b.stderr);
    let (ok, err) = r.commit("a moved ciphertext");
    assert!(!ok, "the hook passed a moved ciphertext");
    assert!(err.contains(moved), "{err}");
    fs::remove_file(stores[1].join(moved)).unwrap();

    // A commit touching neither store passes.
    fs::write(repo.join("README.md"), "docs\n").unwrap();
    let (ok, err) = r.commit("docs only");
    assert!(ok, "{err}");
}
