//! `rekey` writes as one durable batch (issue 17): every file re-encrypted
//! and staged before the first rename, so a full disk changes nothing; one
//! flush of the file system instead of two `fsync`s a file; and what it
//! writes is still plain age (stock `age -d` reads it). `sign --all`
//! writes each scope's signatures as a batch too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use crate::env::{b64, run, spawnable, wrapped, SmallDisk, TestEnv};
use crate::snapshot::{all_file_bytes, assert_same, snapshot, temp_files};
use crate::tools::{external_tool, stock_age};

/// `count` secrets of mesh `default` with `size`-byte values, applied.
fn apply_secrets(env: &TestEnv, root: &Path, count: usize, size: usize) {
    let yaml: Vec<String> = (0..count)
        .map(|i| {
            let value = vec![b'a' + (i % 26) as u8; size];
            format!(
                "type: Secret\nmesh: default\nname: s{i}\ndata: {}\n",
                b64(value)
            )
        })
        .collect();
    env.ok(env
        .kcmd_at(root)
        .args(["apply", "-f", "-"])
        .write_stdin(yaml.join("---\n")));
}

/// Every secret file's bytes below `root`, by relative path.
fn secret_files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    all_file_bytes(root)
        .into_iter()
        .filter(|(rel, _)| rel.extension().is_some_and(|e| e == "age"))
        .collect()
}

#[test]
fn a_rekey_that_fills_the_disk_while_staging_changes_nothing() {
    let outer = TestEnv::without_store();
    let Some((_disk, root)) = SmallDisk::with_store(&outer, "400k") else {
        return;
    };
    // 60 files of one page each (a 1 KiB value is a ~2.5 KB armored file)
    // fit on the 100 pages; a second copy of all of them, staged before
    // any is renamed, does not.
    apply_secrets(&outer, &root, 60, 1024);
    let before = snapshot(&root);
    let r = run(outer.kcmd_at(&root).args(["rekey", "--all", "--force"])).failure(1);
    r.assert_stderr_has("No space left on device");
    r.assert_stderr_has("nothing was rewritten");
    assert_same(&before, &snapshot(&root), "a rekey that filled the disk");
    assert!(
        temp_files(&root).is_empty(),
        "temporary files stayed: {:?}",
        temp_files(&root)
    );
    // Every file still decrypts and is as fresh as before.
    outer.ok(outer.kcmd_at(&root).arg("check"));
}

/// How many times `cmd`'s process tree flushed a file (`fsync`,
/// `fdatasync`) and the file system (`syncfs`), from `strace -c` (None
/// where strace is missing outside CI).
fn flushes(cmd: &assert_cmd::Command, out: &Path) -> Option<Flushes> {
    const CALLS: [&str; 3] = ["fsync", "fdatasync", "syncfs"];
    let strace = external_tool("strace")?;
    let trace = format!("trace={}", CALLS.join(","));
    let prefix = [
        strace.as_os_str(),
        "-f".as_ref(),
        "-c".as_ref(),
        "-e".as_ref(),
        trace.as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    let status = wrapped(&prefix, &spawnable(cmd))
        .status()
        .expect("run strace");
    assert!(status.success(), "the traced command failed: {status}");
    let summary = std::fs::read_to_string(out).expect("strace summary");
    // `% time  seconds  usecs/call  calls  [errors]  syscall` rows.
    let mut counts = BTreeMap::new();
    for line in summary.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = fields.last() else { continue };
        if CALLS.contains(name) {
            counts.insert(name.to_string(), fields[3].parse().expect("calls column"));
        }
    }
    let count = |call: &str| counts.get(call).copied().unwrap_or(0);
    Some(Flushes {
        files: count("fsync") + count("fdatasync"),
        syncfs: count("syncfs"),
        counts,
    })
}

/// What [`flushes`] counted.
struct Flushes {
    /// `fsync` and `fdatasync` calls.
    files: u64,
    /// `syncfs` calls.
    syncfs: u64,
    /// Each call's count, for messages.
    counts: BTreeMap<String, u64>,
}

#[test]
fn a_rekey_of_many_secrets_flushes_once_instead_of_twice_a_file() {
    const N: usize = 80;
    let env = TestEnv::new();
    apply_secrets(&env, &env.root, N, 16);
    let old = secret_files(&env.root);
    assert_eq!(old.len(), N);
    let mut cmd = env.kcmd();
    cmd.args(["rekey", "-m", "default", "--force"]);
    let Some(Flushes {
        files: per_file,
        syncfs,
        counts,
    }) = flushes(&cmd, &env.tmp().join("strace.txt"))
    else {
        return;
    };
    // File by file this was 2 * N fsyncs; batched, the file system is
    // flushed once (twice: the early flush of a large batch) and the one
    // folder once.
    assert!(
        per_file <= 4,
        "{per_file} fsync/fdatasync for {N} files (batched: the folders only): {counts:?}"
    );
    assert!(syncfs >= 1, "no syncfs: {counts:?}");
    // `--force` rewrote every file, fresh as they were.
    let new = secret_files(&env.root);
    assert_eq!(new.len(), N);
    for (rel, bytes) in &old {
        assert_ne!(&new[rel], bytes, "{} was not rewritten", rel.display());
    }
    env.ok_key(&["check"]);
}

#[test]
fn stock_age_decrypts_a_batch_rekeyed_file() {
    let Some(age) = stock_age() else { return };
    let env = TestEnv::new();
    env.create("default", "db", "batch-rekeyed");
    env.create("default", "api", "second");
    env.create_global("ca", "global-rekeyed");
    let before = secret_files(&env.root);
    env.ok_key(&["rekey", "--all", "--force"])
        .assert_stdout_has("rekeyed 3 secret(s)");
    for (rel, want, old) in [
        ("meshes/default/secrets/db.age", "batch-rekeyed", &before),
        ("global/secrets/ca.age", "global-rekeyed", &before),
    ] {
        assert_ne!(
            env.read(rel),
            old[Path::new(rel)],
            "{rel} was not rewritten"
        );
        let out = StdCommand::new(&age)
            .arg("-d")
            .arg("-i")
            .arg(&env.identity)
            .arg(env.path(rel))
            .output()
            .expect("run age");
        assert!(
            out.status.success(),
            "age -d {rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: toml::Table =
            toml::from_str(std::str::from_utf8(&out.stdout).unwrap()).expect("TOML document");
        assert_eq!(doc["data"].as_str(), Some(b64(want).as_str()), "{rel}");
    }
    assert!(temp_files(&env.root).is_empty());
}

#[test]
fn sign_all_writes_each_scopes_signatures_as_a_batch() {
    const MESHES: [&str; 3] = ["default", "a", "b"];
    const PER_MESH: usize = 20;
    let Some(_) = external_tool("ssh-keygen") else {
        return;
    };
    let env = TestEnv::new();
    // Unsigned secrets first, while no trust root asks for signatures.
    for mesh in MESHES {
        if mesh != "default" {
            env.add_mesh(mesh);
        }
        let yaml: Vec<String> = (0..PER_MESH)
            .map(|i| {
                format!(
                    "type: Secret\nmesh: {mesh}\nname: s{i}\ndata: {}\n",
                    b64("v")
                )
            })
            .collect();
        env.ok(env
            .kcmd()
            .args(["apply", "-f", "-"])
            .write_stdin(yaml.join("---\n")));
    }
    // An admin in the trust root (where commands find it), and a writer of
    // every mesh.
    let Some((admin, admin_pub)) = crate::tools::ssh_ed25519_key(&env.keys, "admin") else {
        return;
    };
    let dir = env.config_dir().join("meshseal");
    std::fs::create_dir_all(&dir).unwrap();
    crate::env::chmod(&dir, 0o700);
    let trust = dir.join("trust.txt");
    std::fs::write(&trust, format!("admin@x {admin_pub}\n")).unwrap();
    crate::env::chmod(&trust, 0o600);
    for mesh in MESHES {
        let mut add = env.kcmd();
        add.arg("-S").arg(&admin).args([
            "writers",
            "add",
            "-m",
            mesh,
            "admin@x",
            admin_pub.as_str(),
        ]);
        env.ok(&mut add);
    }
    let mut sign = env.kcmd();
    sign.arg("-S").arg(&admin).args(["sign", "--all"]);
    let Some(Flushes {
        files: per_file,
        syncfs,
        counts,
    }) = flushes(&sign, &env.tmp().join("strace.txt"))
    else {
        return;
    };
    // One by one, each signature would cost two fsyncs (120 here); as a
    // batch per scope, one flush of the file system per scope with
    // secrets, plus the scope files rewritten with their header (a few
    // each) and the folders.
    assert!(
        per_file < (MESHES.len() * PER_MESH) as u64,
        "{per_file} fsyncs for {} signatures: {counts:?}",
        MESHES.len() * PER_MESH
    );
    assert!(
        (1..=MESHES.len() as u64).contains(&syncfs),
        "{syncfs} syncfs for {} scopes: {counts:?}",
        MESHES.len()
    );
    for mesh in MESHES {
        for i in 0..PER_MESH {
            let sig = env.path(&format!("meshes/{mesh}/secrets/s{i}.age.sig"));
            assert!(sig.is_file(), "{} was not written", sig.display());
        }
    }
    // Everything verifies under the trust root.
    env.ok(env.kcmd().arg("check"));
    assert!(temp_files(&env.root).is_empty());
}
