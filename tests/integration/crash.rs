//! Crash safety: `apply` and `rekey` are killed with SIGKILL at random moments,
//! many times over, and after every kill each secret file must be either its
//! exact old bytes or a complete new version that decrypts. A kill between
//! creating a temporary file and renaming it cannot be cleaned up by the
//! process that dies, so the store's answer is: `check` names such a file as
//! a leftover (never as a secret or a stray), and the next write to its folder
//! removes it. After the kills, one ordinary run leaves no temporary file and
//! exactly the fully applied store.
//!
//! Kill delays come from a seeded xorshift; every failure message carries the
//! seed, and `MESHSEAL_CRASH_SEED=<seed>` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use crate::env::*;
use crate::snapshot::*;
use meshseal::identity::Identities;
use meshseal::scope::{Scope, SecretId, StorePath};
use meshseal::store::Store;

const APPLY_KILLS: usize = 40;
const REKEY_KILLS: usize = 12;
/// Existing secrets an apply changes, and new ones it creates.
const CHANGED: usize = 40;
const CREATED: usize = 10;
const MESHES: [&str; 3] = ["default", "payments", "orders"];

/// xorshift64*: enough randomness for kill delays, no extra dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("MESHSEAL_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_nanos() as u64
            });
        eprintln!("crash test seed: {seed} (replay with MESHSEAL_CRASH_SEED={seed})");
        (Rng(seed.max(1)), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..upper`.
    fn delay(&mut self, upper: Duration) -> Duration {
        let micros = upper.as_micros().max(1) as u64;
        Duration::from_micros(self.next() % micros)
    }
}

/// The scope of the `k`th secret: the three meshes and global in turn.
fn scope_of(k: usize) -> Scope {
    match k % 4 {
        3 => Scope::Global,
        m => Scope::Mesh(MESHES[m].to_string()),
    }
}

fn changed_id(k: usize) -> SecretId {
    SecretId::new(scope_of(k), &format!("base-{k}")).expect("valid name")
}

fn created_id(k: usize) -> SecretId {
    SecretId::new(scope_of(k), &format!("fresh-{k}")).expect("valid name")
}

/// The value a secret has in version `version`: distinct per secret and
/// version, a few hundred bytes.
fn value(id: &SecretId, version: usize) -> Vec<u8> {
    format!("v{version}/{id}/{}", "x".repeat(200 + version % 7)).into_bytes()
}

/// Version `version` of every secret: the changed ones and the created ones.
fn versioned(version: usize) -> BTreeMap<SecretId, Vec<u8>> {
    (0..CHANGED)
        .map(changed_id)
        .chain((0..CREATED).map(created_id))
        .map(|id| {
            let v = value(&id, version);
            (id, v)
        })
        .collect()
}

/// Universal YAML, one document per secret.
fn yaml(secrets: &BTreeMap<SecretId, Vec<u8>>) -> String {
    let docs: Vec<String> = secrets
        .iter()
        .map(|(id, v)| match &id.scope {
            Scope::Global => format!("type: GlobalSecret\nname: {}\ndata: {}\n", id.name, b64(v)),
            Scope::Mesh(m) => format!(
                "type: Secret\nmesh: {m}\nname: {}\ndata: {}\n",
                id.name,
                b64(v)
            ),
        })
        .collect();
    docs.join("---\n")
}

/// Runs `cmd` to completion and returns how long it took.
fn timed(cmd: &assert_cmd::Command) -> Duration {
    let start = Instant::now();
    let status = spawnable(cmd).status().expect("spawn meshseal");
    let took = start.elapsed();
    assert!(status.success(), "an unkilled run failed: {status}");
    took
}

/// The median of three timed runs.
fn median_duration(mut run: impl FnMut() -> Duration) -> Duration {
    let mut d = [run(), run(), run()];
    d.sort();
    d[1]
}

/// Starts `cmd`, sends SIGKILL after `delay`, and reaps it. True when the
/// kill landed (the process had not finished by itself).
fn kill_after(cmd: &assert_cmd::Command, delay: Duration) -> bool {
    let mut child = spawnable(cmd).spawn().expect("spawn meshseal");
    std::thread::sleep(delay);
    // Child::kill is SIGKILL on Unix; it may find the process already done.
    let _ = child.kill();
    let status = child.wait().expect("reap meshseal");
    match status.signal() {
        Some(9) => true,
        None => {
            assert!(status.success(), "meshseal failed by itself: {status}");
            false
        }
        Some(sig) => panic!("meshseal died of signal {sig}"),
    }
}

/// Every secret file's bytes, by id.
fn secret_files(root: &Path) -> BTreeMap<SecretId, Vec<u8>> {
    all_file_bytes(root)
        .into_iter()
        .filter_map(|(rel, bytes)| match StorePath::classify(&rel) {
            StorePath::Secret(id) => Some((id, bytes)),
            _ => None,
        })
        .collect()
}

/// Decrypts one secret's file content with the library and returns its data.
fn decrypt(
    store: &Store,
    ids: &Identities,
    id: &SecretId,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    store
        .open_bytes(id, bytes, ids)
        .map(|l| l.doc.data.expose().to_vec())
        .map_err(|p| p.to_string())
}

/// `check -o json` with the key: the problems as (code, file) pairs, after
/// asserting the exit code agrees with them.
fn check_problems(env: &TestEnv, ctx: &str) -> BTreeSet<(String, PathBuf)> {
    let r = run(env.kcmd().args(["check", "-o", "json"]));
    let problems: BTreeSet<(String, PathBuf)> = r
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("{ctx}: check -o json is not an array"))
        .iter()
        .map(|p| {
            (
                p["code"].as_str().expect("code").to_string(),
                PathBuf::from(p["file"].as_str().expect("every problem names a file")),
            )
        })
        .collect();
    let expected = if problems.is_empty() { 0 } else { 1 };
    assert_eq!(
        r.code,
        Some(expected),
        "{ctx}: check exit code for {problems:?}"
    );
    problems
}

/// The store the apply test starts from: every changed secret at version 0,
/// none of the created ones.
fn apply_store() -> TestEnv {
    let env = TestEnv::new();
    for mesh in &MESHES[1..] {
        env.add_mesh(mesh);
    }
    let initial: BTreeMap<_, _> = versioned(0)
        .into_iter()
        .filter(|(id, _)| id.name.starts_with("base-"))
        .collect();
    env.ok(env
        .cmd()
        .args(["apply", "-f", "-"])
        .write_stdin(yaml(&initial)));
    env
}

fn remove_created(env: &TestEnv) {
    for k in 0..CREATED {
        let p = env.root.join(created_id(k).path());
        if p.exists() {
            fs::remove_file(p).expect("remove a created secret");
        }
    }
}

#[test]
fn apply_killed_at_random_moments_leaves_old_or_new_files() {
    let env = apply_store();
    let (mut rng, seed) = Rng::seeded();
    let store = Store::open(&env.root).expect("store");
    let ids = Identities::load(std::slice::from_ref(&env.identity)).expect("identity");
    let yaml_file = env.tmp().join("apply.yaml");
    let apply = {
        let mut c = env.kcmd();
        c.arg("apply").arg("-f").arg(&yaml_file);
        c
    };

    // How long a whole apply takes here: kills are spread over that.
    let mut version = 0;
    let duration = median_duration(|| {
        version += 1;
        remove_created(&env);
        fs::write(&yaml_file, yaml(&versioned(version))).unwrap();
        timed(&apply)
    });

    let (mut partial, mut landed, mut leftovers) = (0, 0, 0);
    for i in 0..APPLY_KILLS {
        version += 1;
        let ctx = format!("seed {seed}, kill {i} (version {version})");
        remove_created(&env);
        let new = versioned(version);
        fs::write(&yaml_file, yaml(&new)).unwrap();
        let before = secret_files(&env.root);

        let delay = rng.delay(duration);
        let killed = kill_after(&apply, delay);
        landed += usize::from(killed);

        let after = secret_files(&env.root);
        let (mut old, mut updated) = (0, 0);
        for id in before.keys() {
            assert!(after.contains_key(id), "{ctx}: {id} disappeared");
        }
        for (id, bytes) in &after {
            if before.get(id) == Some(bytes) {
                old += usize::from(new.contains_key(id));
                continue;
            }
            let want = new
                .get(id)
                .unwrap_or_else(|| panic!("{ctx}: {id} is not in the apply but changed"));
            match decrypt(&store, &ids, id, bytes) {
                Ok(data) => assert!(data == *want, "{ctx}: {id} decrypts to another value"),
                Err(e) => panic!("{ctx}: {id} is neither old nor new: {e}"),
            }
            updated += 1;
        }
        if !killed {
            assert_eq!(updated, new.len(), "{ctx}: a finished apply missed files");
        }
        partial += usize::from(old > 0 && updated > 0);

        // A leftover is reported as exactly that, and nothing else is wrong.
        let temps = temp_files(&env.root);
        leftovers += temps.len();
        let expected: BTreeSet<_> = temps
            .iter()
            .map(|t| ("interrupted-write".to_string(), t.clone()))
            .collect();
        assert_eq!(check_problems(&env, &ctx), expected, "{ctx}");
        assert!(
            killed || temps.is_empty(),
            "{ctx}: a finished apply left {temps:?}"
        );
    }
    eprintln!(
        "apply: {landed} of {APPLY_KILLS} kills landed, {partial} left a partly applied store, \
         {leftovers} temporary file(s) left behind; a whole apply takes {duration:?}"
    );
    // apply writes one batch: a kill while it stages leaves the store as it
    // was plus locked temporary files; only a kill among the renames leaves
    // it partly applied, and that window is milliseconds. Either proves a
    // kill landed during the writes.
    assert!(
        partial > 0 || leftovers > 0,
        "seed {seed}: no kill landed during the writes (apply takes {duration:?}): the test proved nothing"
    );

    // One ordinary apply: the fully applied store, and no leftovers anywhere.
    version += 1;
    let last = versioned(version);
    fs::write(&yaml_file, yaml(&last)).unwrap();
    env.ok(env.kcmd().arg("apply").arg("-f").arg(&yaml_file));
    let temps = temp_files(&env.root);
    assert!(temps.is_empty(), "seed {seed}: left behind: {temps:?}");
    let files = secret_files(&env.root);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        last.keys().collect::<Vec<_>>(),
        "seed {seed}"
    );
    for (id, bytes) in &files {
        let data = decrypt(&store, &ids, id, bytes).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(
            data == last[id],
            "seed {seed}: {id} is not the last version"
        );
    }
    assert!(check_problems(&env, &format!("seed {seed}, final")).is_empty());
}

#[test]
fn rekey_killed_at_random_moments_leaves_old_or_new_files() {
    let env = apply_store();
    let (mut rng, seed) = Rng::seeded();
    let (_, second) = env.new_identity("second.txt");
    let store = Store::open(&env.root).expect("store");
    let ids = Identities::load(std::slice::from_ref(&env.identity)).expect("identity");
    let values: BTreeMap<SecretId, Vec<u8>> = versioned(0)
        .into_iter()
        .filter(|(id, _)| id.name.starts_with("base-"))
        .collect();
    let scopes: Vec<Vec<&str>> = vec![
        vec!["--global"],
        vec!["-m", MESHES[0]],
        vec!["-m", MESHES[1]],
        vec!["-m", MESHES[2]],
    ];
    // Every secret goes stale: the second key joins or leaves every scope.
    let mut with_second = false;
    let mut toggle = || {
        with_second = !with_second;
        let verb = if with_second { "add" } else { "remove" };
        for scope in &scopes {
            let mut args = vec!["recipients", verb];
            args.extend_from_slice(scope);
            args.push(second.as_str());
            env.ok_args(&args);
        }
    };
    let rekey = {
        let mut c = env.kcmd();
        c.args(["rekey", "--all"]);
        c
    };
    let duration = median_duration(|| {
        toggle();
        timed(&rekey)
    });

    let (mut partial, mut landed, mut leftovers) = (0, 0, 0);
    for i in 0..REKEY_KILLS {
        let ctx = format!("seed {seed}, rekey kill {i}");
        toggle();
        let fingerprints: BTreeMap<Scope, String> = MESHES
            .iter()
            .map(|m| Scope::Mesh(m.to_string()))
            .chain([Scope::Global])
            .map(|s| {
                let fp = store.recipients(&s).expect("recipients").fingerprint();
                (s, fp)
            })
            .collect();
        let before = secret_files(&env.root);
        assert_eq!(before.len(), values.len(), "{ctx}");

        let killed = kill_after(&rekey, rng.delay(duration));
        landed += usize::from(killed);

        let after = secret_files(&env.root);
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{ctx}: rekey added or removed files"
        );
        // An old file is the bytes that decrypted before (and `check` below
        // decrypts it again); a new one must be complete, for the new
        // recipients, with the same value.
        let mut stale = BTreeSet::new();
        for (id, bytes) in &after {
            if before[id] == *bytes {
                stale.insert(("stale".to_string(), id.path()));
                continue;
            }
            let loaded = store
                .open_bytes(id, bytes, &ids)
                .unwrap_or_else(|e| panic!("{ctx}: {id} is neither old nor new: {e}"));
            assert!(
                loaded.doc.data.expose() == values[id].as_slice(),
                "{ctx}: {id} changed value"
            );
            let meta = loaded.header.metadata.expect("rekeyed files have metadata");
            assert_eq!(
                meta.recipients_fingerprint, fingerprints[&id.scope],
                "{ctx}: {id} was rewritten for other recipients"
            );
        }
        if !killed {
            assert!(stale.is_empty(), "{ctx}: a finished rekey missed {stale:?}");
        }
        partial += usize::from(!stale.is_empty() && stale.len() < after.len());

        // Not yet rekeyed files are stale, leftovers are leftovers; nothing else.
        let temps = temp_files(&env.root);
        leftovers += temps.len();
        let mut expected = stale;
        expected.extend(
            temps
                .iter()
                .map(|t| ("interrupted-write".to_string(), t.clone())),
        );
        assert_eq!(check_problems(&env, &ctx), expected, "{ctx}");

        // Running it again finishes the job and cleans up.
        env.ok(env.kcmd().args(["rekey", "--all"]));
        let temps = temp_files(&env.root);
        assert!(temps.is_empty(), "{ctx}: rekey again left {temps:?}");
        assert!(
            check_problems(&env, &ctx).is_empty(),
            "{ctx}: not clean after a second rekey"
        );
    }
    eprintln!(
        "rekey: {landed} of {REKEY_KILLS} kills landed, {partial} left a partly rekeyed store, \
         {leftovers} staged files left behind; a whole rekey takes {duration:?}"
    );
    // One batch renames every file within milliseconds, so a kill more
    // often lands while files are staged (leftovers, the store unchanged)
    // than among the renames (a partly rekeyed store): either shows the
    // kills reached the writes.
    assert!(
        partial > 0 || leftovers > 0,
        "seed {seed}: no kill landed during the writes (rekey takes {duration:?}): the test proved nothing"
    );
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("run true");
    let pid = child.id();
    child.wait().expect("reap true");
    pid
}

/// Ciphertext-looking bytes, as an interrupted write of a secret leaves.
fn leftover(env: &TestEnv, rel: &str, age: Duration) {
    env.write(rel, env.read("meshes/default/secrets/db.age"));
    let f = fs::File::options()
        .write(true)
        .open(env.path(rel))
        .expect("open leftover");
    f.set_modified(SystemTime::now() - age).expect("set mtime");
}

#[test]
fn leftover_temporary_files_are_reported_then_swept_by_the_next_write() {
    let env = TestEnv::new();
    env.add_mesh("payments");
    env.create("default", "db", "v");
    let dead = dead_pid();
    let in_secrets = format!("meshes/default/secrets/.meshseal-{dead}-a1B2c3.tmp");
    let in_global = format!("global/.meshseal-{dead}-d4E5f6.tmp");
    // Named by an older meshseal (no pid), two hours old: abandoned too.
    let legacy = "meshes/payments/secrets/.meshseal-g7H8i9.tmp";
    // Its writer (this test process) is alive: a write in progress.
    let live = format!(
        "meshes/payments/secrets/.meshseal-{}-j1K2l3.tmp",
        std::process::id()
    );
    leftover(&env, &in_secrets, Duration::ZERO);
    leftover(&env, &in_global, Duration::ZERO);
    leftover(&env, legacy, Duration::from_secs(2 * 3600));
    leftover(&env, &live, Duration::ZERO);
    // A writer at work holds its file's lock until its rename.
    let _writer = std::fs::File::open(env.path(&live)).unwrap();
    _writer.lock().unwrap();

    let expected = |paths: &[&str], live: &[&str]| -> BTreeSet<(String, PathBuf)> {
        paths
            .iter()
            .map(|p| ("interrupted-write".to_string(), PathBuf::from(p)))
            .chain(
                live.iter()
                    .map(|p| ("write-in-progress".to_string(), PathBuf::from(p))),
            )
            .collect()
    };
    assert_eq!(
        check_problems(&env, "leftovers"),
        expected(&[&in_secrets, &in_global, legacy], &[&live])
    );
    // Keyless check says the same, names the cure, and counts no extra secret.
    let r = env.refuses(env.cmd().arg("check"), 1, &[&in_secrets, legacy]);
    r.assert_stderr_has("interrupted write")
        .assert_stderr_has("the next meshseal command that writes to this folder removes it")
        .assert_stderr_has(&format!(
            "write in progress (process {})",
            std::process::id()
        ))
        .assert_stderr_has("4 problem(s) in 1 secret(s)");
    assert!(!r.stderr.contains("not a .age secret"), "{}", r.stderr);
    let r = env.ok_key(&["get", "secrets", "-A"]);
    assert!(!r.stdout().contains(".tmp"), "{}", r.stdout());

    // A write to meshes/default/secrets sweeps that folder only.
    env.create("default", "other", "v");
    assert!(!env.path(&in_secrets).exists());
    assert!(env.path(&in_global).exists());
    assert_eq!(
        check_problems(&env, "after create"),
        expected(&[&in_global, legacy], &[&live])
    );
    // A write to global/ (its recipients file) and to payments' secrets.
    let (_, key) = env.new_identity("k2.txt");
    env.ok_args(&["recipients", "add", "--global", &key]);
    env.ok_key(&["rekey", "--global"]);
    env.create("payments", "x", "v");
    assert!(!env.path(&in_global).exists());
    assert!(!env.path(legacy).exists());
    // A write in progress is never removed under its writer.
    assert!(env.path(&live).exists());
    assert_eq!(
        check_problems(&env, "after sweeps"),
        expected(&[], &[&live])
    );
    fs::remove_file(env.path(&live)).unwrap();
    assert!(check_problems(&env, "clean").is_empty());
}

#[test]
fn apply_with_a_closed_stdout_still_applies_everything() {
    let env = apply_store();
    let new = versioned(1);
    let file = env.outside("apply.yaml", yaml(&new));
    let out = spawnable(env.kcmd().arg("apply").arg("-f").arg(&file))
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .expect("run apply");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let store = Store::open(&env.root).expect("store");
    let ids = Identities::load(std::slice::from_ref(&env.identity)).expect("identity");
    for (id, want) in &new {
        let data = store.load(id, &ids).map(|l| l.doc.data.expose().to_vec());
        assert!(data.as_ref().ok() == Some(want), "{id} was not applied");
    }
}

#[test]
fn a_bulk_apply_that_fills_the_disk_changes_nothing() {
    let outer = TestEnv::without_store();
    let Some((_disk, root)) = SmallDisk::with_store(&outer, "400k") else {
        return;
    };
    // A few secrets that fit, then a snapshot.
    let small: BTreeMap<SecretId, Vec<u8>> = (0..5)
        .map(|i| {
            (
                SecretId::new(Scope::mesh("default").unwrap(), &format!("s{i}")).unwrap(),
                b"v".to_vec(),
            )
        })
        .collect();
    outer.ok(outer
        .kcmd_at(&root)
        .args(["apply", "-f", "-"])
        .write_stdin(yaml(&small)));
    let before = crate::snapshot::snapshot(&root);
    // 400 secrets of 2 KiB each: ~1.2 MiB of ciphertext on a 400 KiB disk,
    // including new values for the five that exist.
    let big: BTreeMap<SecretId, Vec<u8>> = (0..400)
        .map(|i| {
            let id = SecretId::new(Scope::mesh("default").unwrap(), &format!("s{i}")).unwrap();
            (id, vec![b'x' + (i % 3) as u8; 2048])
        })
        .collect();
    let r = crate::env::run(
        outer
            .kcmd_at(&root)
            .args(["apply", "-f", "-"])
            .write_stdin(yaml(&big)),
    )
    .failure(1);
    r.assert_stderr_has("No space left on device");
    r.assert_stderr_has("nothing was written");
    crate::snapshot::assert_same(
        &before,
        &crate::snapshot::snapshot(&root),
        "a failed bulk apply",
    );
    assert!(
        temp_files(&root).is_empty(),
        "temporary files stayed: {:?}",
        temp_files(&root)
    );
}
