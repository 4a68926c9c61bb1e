//! The one test environment of the integration tests.
//!
//! Like fd's `TestEnv`, every test gets its own throwaway directory with a
//! store, an identity and an isolated HOME / config dir, and drives the built
//! `meshseal` binary. Snapshots of the store (`snapshot.rs`) prove that a
//! refused command wrote nothing. The watcher's tests add tokens and a
//! running watcher (`watcher.rs`); the git workflow's make the store a git
//! repository (`git.rs`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tempfile::TempDir;

use crate::age_files::encrypt_with_metadata;
use crate::snapshot::{assert_same, snapshot, Snapshot};

/// One throwaway store with its own identity.
pub struct TestEnv {
    tmp: TempDir,
    /// The store root (also the working directory of every command).
    pub root: PathBuf,
    /// Where identities live: outside the store, so snapshots ignore them.
    pub keys: PathBuf,
    /// The identity the store's `global` and `default` scopes are encrypted to.
    pub identity: PathBuf,
    /// Its public key.
    pub public: String,
}

impl TestEnv {
    /// A store made by `meshseal init` whose global and default scopes are
    /// encrypted to a fresh `meshseal keygen` identity.
    pub fn new() -> TestEnv {
        let env = TestEnv::without_store();
        env.ok(env.cmd().args(["init", "--recipient", env.public.as_str()]));
        env
    }

    /// An identity and an empty directory where a store may be created.
    pub fn without_store() -> TestEnv {
        let tmp = tempfile::Builder::new()
            .prefix("meshseal-test-")
            .tempdir()
            .expect("temp dir");
        let root = tmp.path().join("store");
        let keys = tmp.path().join("keys");
        for dir in [
            &root,
            &keys,
            &tmp.path().join("home"),
            &tmp.path().join("config"),
        ] {
            fs::create_dir_all(dir).expect("create test dirs");
        }
        let identity = keys.join("id.txt");
        let mut env = TestEnv {
            tmp,
            root,
            keys,
            identity: identity.clone(),
            public: String::new(),
        };
        env.public = env.keygen_at(&identity);
        env
    }

    /// The test's private temp directory (parent of the store).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// The config dir the binary sees (`XDG_CONFIG_HOME`).
    pub fn config_dir(&self) -> PathBuf {
        self.tmp.path().join("config")
    }

    /// Where `meshseal keygen` writes without `-o`.
    pub fn default_identity_path(&self) -> PathBuf {
        self.config_dir().join("meshseal").join("identity.txt")
    }

    /// `meshseal` in the store, without any identity: no `-i`, no
    /// `MESHSEAL_IDENTITY`, an empty config dir.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("meshseal").expect("the meshseal binary is built");
        self.isolate(&mut cmd);
        cmd
    }

    /// Runs `cmd` in the store with the test's own HOME and config dir, and
    /// no identity, backtrace or log settings from the caller's environment.
    pub fn isolate(&self, cmd: &mut Command) {
        cmd.current_dir(&self.root)
            .env_remove("MESHSEAL_IDENTITY")
            .env_remove("MESHSEAL_TRUST")
            .env_remove("MESHSEAL_SIGN_KEY")
            .env_remove("SSH_AUTH_SOCK")
            .env("HOME", self.tmp.path().join("home"))
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LOG");
    }

    /// `meshseal -i <the store identity>`.
    pub fn kcmd(&self) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("-i").arg(&self.identity);
        cmd
    }

    /// `meshseal -C <root> -i <the store identity>`: a store named by path,
    /// as the watcher is started (`root` may be another store, e.g. a zone's).
    pub fn kcmd_at(&self, root: &Path) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("-C").arg(root).arg("-i").arg(&self.identity);
        cmd
    }

    /// Runs a command that must succeed.
    #[track_caller]
    pub fn ok(&self, cmd: &mut Command) -> Run {
        run(cmd).success()
    }

    /// Runs a keyless command from plain arguments; it must succeed.
    #[track_caller]
    pub fn ok_args(&self, args: &[&str]) -> Run {
        run(self.cmd().args(args)).success()
    }

    /// Runs a command with the store identity; it must succeed.
    #[track_caller]
    pub fn ok_key(&self, args: &[&str]) -> Run {
        run(self.kcmd().args(args)).success()
    }

    /// Runs a command that must be refused: exit `code`, no panic, every one of
    /// `mentions` on stderr, and not one byte, mode or timestamp changed under
    /// the store root.
    #[track_caller]
    pub fn refuses(&self, cmd: &mut Command, code: i32, mentions: &[&str]) -> Run {
        let before = self.snapshot();
        let r = run(cmd).failure(code);
        for m in mentions {
            r.assert_stderr_has(m);
        }
        assert_same(&before, &self.snapshot(), &r.cmdline);
        r
    }

    /// A new identity made by `meshseal keygen -o keys/<name>`; returns its
    /// path and public key.
    pub fn new_identity(&self, name: &str) -> (PathBuf, String) {
        let path = self.keys.join(name);
        let public = self.keygen_at(&path);
        (path, public)
    }

    fn keygen_at(&self, path: &Path) -> String {
        let r = run(self.cmd().arg("keygen").arg("-o").arg(path)).success();
        let public = r.stdout().trim().to_string();
        assert!(public.starts_with("age1"), "keygen printed {public:?}");
        public
    }

    /// Adds the store identity as recipient of a mesh (creating the scope).
    pub fn add_mesh(&self, mesh: &str) {
        self.ok(self
            .cmd()
            .args(["recipients", "add", "-m", mesh, self.public.as_str()]));
    }

    /// `create secret NAME -m MESH --from-literal VALUE`.
    pub fn create(&self, mesh: &str, name: &str, value: &str) {
        self.ok(self.cmd().args([
            "create",
            "secret",
            name,
            "-m",
            mesh,
            "--from-literal",
            value,
        ]));
    }

    /// `create global-secret NAME --from-literal VALUE`.
    pub fn create_global(&self, name: &str, value: &str) {
        self.ok(self
            .cmd()
            .args(["create", "global-secret", name, "--from-literal", value]));
    }

    /// The decoded data of a mesh secret, read back with the store identity.
    pub fn raw(&self, mesh: &str, name: &str) -> Vec<u8> {
        self.ok_key(&["get", "secret", name, "-m", mesh, "-o", "raw"])
            .stdout
    }

    /// The recipient-set fingerprint a scope has now (`-m M` or `--global`).
    pub fn fingerprint(&self, scope: &[&str]) -> String {
        let mut args = vec!["recipients", "list"];
        args.extend_from_slice(scope);
        let r = self.ok_args(&args);
        r.stderr
            .split_whitespace()
            .skip_while(|w| *w != "fingerprint")
            .nth(1)
            .unwrap_or_else(|| panic!("no fingerprint in {:?}", r.stderr))
            .to_string()
    }

    /// Writes `rel` as a file encrypted to the store key whose meshseal
    /// header says `scope_tag` (`global` or `mesh:<m>`) and `name`, with that
    /// scope's current fingerprint: what a well-behaved writer would produce
    /// for that path, around any plaintext at all.
    pub fn craft(&self, rel: &str, plaintext: &str, scope_tag: &str, name: &str) {
        let scope: Vec<&str> = match scope_tag.strip_prefix("mesh:") {
            Some(m) => vec!["-m", m],
            None => vec!["--global"],
        };
        let fp = self.fingerprint(&scope);
        let bytes = encrypt_with_metadata(
            plaintext.as_bytes(),
            &[self.public.as_str()],
            scope_tag,
            name,
            &fp,
        );
        self.write(rel, bytes);
    }

    /// A path below the store root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The file of a mesh secret.
    pub fn secret_file(&self, mesh: &str, name: &str) -> PathBuf {
        self.path(&format!("meshes/{mesh}/secrets/{name}.age"))
    }

    /// Reads a file below the store root.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Writes a file below the store root (creating folders).
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    }

    /// Writes a file next to the store (not part of it), returning its path.
    pub fn outside(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
        p
    }

    /// Every file, folder and link under the store root.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(&self.root)
    }

    /// Writes the store config with a data limit.
    pub fn set_max_data_bytes(&self, limit: usize) {
        self.write(
            "meshseal.toml",
            format!("version = 1\n\n[limits]\nmax_data_bytes = {limit}\n"),
        );
    }
}

/// What one command did.
pub struct Run {
    /// The command line, for failure messages.
    pub cmdline: String,
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Raw standard output.
    pub stdout: Vec<u8>,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

/// Runs a command and captures everything.
pub fn run(cmd: &mut Command) -> Run {
    let cmdline = format!("{:?}", cmd);
    let out = cmd.output().expect("spawn meshseal");
    Run {
        cmdline,
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "{}\n--- exit: {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.cmdline,
            self.code,
            self.stdout(),
            self.stderr
        )
    }

    fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "the binary panicked: {}",
            self.describe()
        );
    }

    /// Exit 0.
    #[track_caller]
    pub fn success(self) -> Run {
        self.assert_no_panic();
        assert_eq!(self.code, Some(0), "expected success: {}", self.describe());
        self
    }

    /// Exit `code`, no panic, and a reason given.
    #[track_caller]
    pub fn failure(self, code: i32) -> Run {
        self.assert_no_panic();
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}: {}",
            self.describe()
        );
        assert!(
            !self.stderr.trim().is_empty() || !self.stdout().trim().is_empty(),
            "a failure must say why (stderr, or stdout for -o json): {}",
            self.describe()
        );
        self
    }

    /// stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.describe()
        );
        self
    }

    /// stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}: {}",
            self.describe()
        );
        self
    }

    /// Neither stream contains `needle`.
    #[track_caller]
    pub fn assert_never_shows(&self, needle: &str) -> &Run {
        assert!(
            !self.stdout().contains(needle) && !self.stderr.contains(needle),
            "output reveals {needle:?}: {}",
            self.describe()
        );
        self
    }

    /// The `-o json` output of `check`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Standard padded base64.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    BASE64.encode(bytes)
}

/// A secret document in the TOML shape of SPEC section 2.
pub fn document(kind: &str, mesh: Option<&str>, name: &str, data: &[u8]) -> String {
    let mesh = mesh
        .map(|m| format!("mesh = \"{m}\"\n"))
        .unwrap_or_default();
    format!(
        "type = \"{kind}\"\n{mesh}name = \"{name}\"\ndata = \"{}\"\n",
        b64(data)
    )
}

/// Sets Unix permission bits.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The Unix permission bits of a file.
pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// A `TestEnv::cmd` (or `kcmd`) as a std command, so that it can be spawned,
/// killed or given other stdio: same binary, arguments, environment and
/// directory.
pub fn spawnable(cmd: &Command) -> std::process::Command {
    let mut out = std::process::Command::new(cmd.get_program());
    out.args(cmd.get_args());
    with_context_of(&mut out, cmd.get_envs(), cmd.get_current_dir());
    out
}

/// `prefix…` then `cmd`'s program and arguments, with `cmd`'s environment
/// and folder: `cmd` run through a wrapper (`prlimit`, `setpriv`, `strace`).
pub fn wrapped<S: AsRef<std::ffi::OsStr>>(
    prefix: &[S],
    cmd: &std::process::Command,
) -> std::process::Command {
    let mut out = std::process::Command::new(&prefix[0]);
    out.args(&prefix[1..])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    with_context_of(&mut out, cmd.get_envs(), cmd.get_current_dir());
    out
}

/// Gives `out` the environment changes and folder of another command.
fn with_context_of<'a>(
    out: &mut std::process::Command,
    envs: impl Iterator<Item = (&'a std::ffi::OsStr, Option<&'a std::ffi::OsStr>)>,
    dir: Option<&Path>,
) {
    for (key, val) in envs {
        match val {
            Some(v) => out.env(key, v),
            None => out.env_remove(key),
        };
    }
    if let Some(dir) = dir {
        out.current_dir(dir);
    }
}

/// A tmpfs of `size` mounted at `dir` for the test's lifetime (root
/// only): `None`, with a SKIPPED line, where it cannot be mounted outside
/// CI; under CI that fails the test.
pub struct SmallDisk(pub PathBuf);

impl SmallDisk {
    pub fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot mount a small tmpfs (root is needed): the full-disk tests must run in CI"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(SmallDisk(dir.to_path_buf()))
    }

    /// A small tmpfs in `env`'s folder with a new store on it (encrypted to
    /// `env`'s identity): the disk and the store's root.
    pub fn with_store(env: &TestEnv, size: &str) -> Option<(SmallDisk, PathBuf)> {
        let disk = SmallDisk::mount(&env.tmp().join("disk"), size)?;
        let root = disk.0.join("store");
        fs::create_dir_all(&root).unwrap();
        env.ok(env
            .cmd()
            .arg("-C")
            .arg(&root)
            .args(["init", "--recipient", env.public.as_str()]));
        Some((disk, root))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A copy of the store and its identity that `nobody` owns, in
/// `<tmp>/nobody`, below folders it can traverse: (store, identity, that
/// folder).
pub fn nobodys_copy(env: &TestEnv) -> (PathBuf, PathBuf, PathBuf) {
    let base = env.tmp().join("nobody");
    fs::create_dir_all(&base).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&env.root)
        .arg(&env.identity)
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());
    let status = std::process::Command::new("chown")
        .args(["-R", "nobody"])
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());
    // Every folder above must be traversable by nobody.
    let mut dir = base.clone();
    while let Some(parent) = dir.parent() {
        if parent == Path::new("/") {
            break;
        }
        let mode = mode_of(parent);
        if mode & 0o001 == 0 {
            chmod(parent, mode | 0o711);
        }
        dir = parent.to_path_buf();
    }
    let store = base.join(env.root.file_name().unwrap());
    let identity = base.join(env.identity.file_name().unwrap());
    (store, identity, base)
}

/// The write end of a pipe whose reader is gone: every write fails (EPIPE).
pub fn closed_pipe() -> std::process::Stdio {
    let mut reader = std::process::Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run true");
    let write_end = reader.stdin.take().expect("piped stdin");
    reader.wait().expect("reap true");
    std::process::Stdio::from(write_end)
}
