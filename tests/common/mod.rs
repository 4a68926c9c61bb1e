//! Shared helpers for the integration tests.
//!
//! Like fd's `TestEnv`, every test gets its own throwaway directory with a
//! store, an identity and an isolated HOME / config dir, and drives the built
//! `meshseal` binary. Snapshots of the store prove that a refused command
//! wrote nothing. Hostile files (stock-age files, files with hand-made
//! metadata, tampered and truncated ciphertexts) are crafted with the `age`
//! crate directly, never with meshseal's own code, so the tests judge the
//! on-disk format rather than re-use the implementation under test.
#![allow(dead_code)]

pub mod watcher;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age_core::format::{FileKey, Stanza};
use assert_cmd::Command;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tempfile::TempDir;

/// Armor lines as age writes them.
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
const ARMOR_COLUMNS: usize = 64;

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
        cmd.current_dir(&self.root)
            .env_remove("MESHSEAL_IDENTITY")
            .env("HOME", self.tmp.path().join("home"))
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LOG");
        cmd
    }

    /// `meshseal -i <the store identity>`.
    pub fn kcmd(&self) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("-i").arg(&self.identity);
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

/// One node of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file.
    File {
        /// Content.
        bytes: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Modification time, nanoseconds.
        mtime_ns: i128,
        /// Inode (a rename-over changes it even when bytes match).
        ino: u64,
    },
    /// A folder.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A symlink and its target.
    Link(PathBuf),
    /// A FIFO, socket or device (never read).
    Special {
        /// Permission bits.
        mode: u32,
    },
}

/// Everything below a directory, by relative path.
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Records every file, folder and link below `root` (links are not followed).
pub fn snapshot(root: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).expect("below root").to_path_buf();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.insert(rel, Node::Link(fs::read_link(&path).expect("readlink")));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir { mode });
                walk(root, &path, out);
            } else if !meta.is_file() {
                // A FIFO or socket: reading it would block the test.
                out.insert(rel, Node::Special { mode });
            } else {
                out.insert(
                    rel,
                    Node::File {
                        bytes: fs::read(&path).expect("read"),
                        mode,
                        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                            + i128::from(meta.mtime_nsec()),
                        ino: meta.ino(),
                    },
                );
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

/// Fails with the paths that differ.
#[track_caller]
pub fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for (path, node) in before {
        match after.get(path) {
            None => diffs.push(format!("removed: {}", path.display())),
            Some(n) if n != node => diffs.push(format!("changed: {}", path.display())),
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("added: {}", path.display()));
    }
    panic!("the store changed after {what}:\n  {}", diffs.join("\n  "));
}

/// Every regular file's bytes under `root`, for leak searches.
pub fn all_file_bytes(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    snapshot(root)
        .into_iter()
        .filter_map(|(p, n)| match n {
            Node::File { bytes, .. } => Some((p, bytes)),
            _ => None,
        })
        .collect()
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Standard padded base64.
pub fn b64(bytes: &[u8]) -> String {
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

fn x25519(public: &str) -> age::x25519::Recipient {
    age::x25519::Recipient::from_str(public).expect("an age1 public key")
}

/// meshseal's header stanza, written by hand from SPEC section 2:
/// `-> meshseal v1 <scope> <name> <recipients fingerprint>`.
struct MetadataStanza {
    args: Vec<String>,
}

impl age::Recipient for MetadataStanza {
    fn wrap_file_key(
        &self,
        _file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        Ok((
            vec![Stanza {
                tag: "meshseal".to_string(),
                args: self.args.clone(),
                body: Vec::new(),
            }],
            HashSet::new(),
        ))
    }
}

fn encrypt_armored(plaintext: &[u8], recipients: Vec<Box<dyn age::Recipient>>) -> Vec<u8> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref())).expect("recipients");
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .expect("armor");
    let mut w = encryptor.wrap_output(armor).expect("encrypt");
    w.write_all(plaintext).expect("encrypt");
    w.finish().and_then(|a| a.finish()).expect("encrypt");
    out
}

/// What `age -R recipients.txt -a` makes: no meshseal metadata.
pub fn stock_encrypt(plaintext: &[u8], publics: &[&str]) -> Vec<u8> {
    let recipients = publics
        .iter()
        .map(|p| Box::new(x25519(p)) as Box<dyn age::Recipient>)
        .collect();
    encrypt_armored(plaintext, recipients)
}

/// A file with meshseal's header stanza saying `scope_tag` (`global` or
/// `mesh:<m>`), `name` and `fingerprint`, but any plaintext at all: what a
/// buggy or hostile tool could write.
pub fn encrypt_with_metadata(
    plaintext: &[u8],
    publics: &[&str],
    scope_tag: &str,
    name: &str,
    fingerprint: &str,
) -> Vec<u8> {
    let mut recipients: Vec<Box<dyn age::Recipient>> = vec![Box::new(MetadataStanza {
        args: vec![
            "v1".to_string(),
            scope_tag.to_string(),
            name.to_string(),
            fingerprint.to_string(),
        ],
    })];
    recipients.extend(
        publics
            .iter()
            .map(|p| Box::new(x25519(p)) as Box<dyn age::Recipient>),
    );
    encrypt_armored(plaintext, recipients)
}

/// The binary age file inside an armored one.
pub fn dearmor(armored: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(armored).expect("armored text");
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != ARMOR_BEGIN && *l != ARMOR_END)
        .collect();
    BASE64.decode(body).expect("armor body is base64")
}

/// Armors a binary age file the way age does (64 columns).
pub fn armor(binary: &[u8]) -> Vec<u8> {
    let body = BASE64.encode(binary);
    let mut out = format!("{ARMOR_BEGIN}\n");
    for chunk in body.as_bytes().chunks(ARMOR_COLUMNS) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push('\n');
    }
    out.push_str(ARMOR_END);
    out.push('\n');
    out.into_bytes()
}

/// Offset of the payload (after the header's `--- <mac>` line) in a binary
/// age file.
pub fn payload_offset(binary: &[u8]) -> usize {
    let mac = binary
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("age header ends with ---")
        + 1;
    mac + binary[mac..]
        .iter()
        .position(|&b| b == b'\n')
        .expect("mac line ends")
        + 1
}

/// One character of the armored body changed, inside the encrypted payload
/// (past the header and the 16-byte nonce): the armor stays valid, only
/// decryption can notice.
pub fn flip_payload_char(armored: &[u8]) -> Vec<u8> {
    let binary = dearmor(armored);
    let target = payload_offset(&binary) + 16 + 5;
    assert!(
        target + 8 < binary.len(),
        "payload too short to tamper with"
    );
    // The base64 character that encodes the first bits of byte `target`.
    let index = target / 3 * 4 + 1;
    let mut out = armored.to_vec();
    let body_start = ARMOR_BEGIN.len() + 1;
    let pos = body_start + index + index / ARMOR_COLUMNS;
    let c = out[pos];
    assert!(c.is_ascii_alphanumeric(), "position {pos} is {c:?}");
    out[pos] = if c == b'A' { b'B' } else { b'A' };
    assert_ne!(dearmor(&out), binary, "the flip changed nothing");
    out
}

/// A re-armored file whose payload lost its last `n` bytes: valid armor, a
/// complete header, a truncated ciphertext.
pub fn truncate_payload(armored: &[u8], n: usize) -> Vec<u8> {
    let binary = dearmor(armored);
    assert!(binary.len() - n > payload_offset(&binary) + 16);
    armor(&binary[..binary.len() - n])
}

/// Finds an external tool on PATH for interop tests. When it is missing: under
/// CI (`CI` set) the test fails, because interop must never silently skip
/// there; elsewhere a note is printed and the caller returns early.
pub fn external_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| {
                fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "`{name}` is not on PATH and CI is set: interop tests must run in CI \
                 (install it, e.g. `apt-get install age openssh-client`)"
            );
        }
        eprintln!("note: `{name}` is not on PATH; skipping this interop test");
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
    for (key, val) in cmd.get_envs() {
        match val {
            Some(v) => out.env(key, v),
            None => out.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    out
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
