//! Who may change a secret (SPEC 9), through the built binary, real git and
//! the stock OpenSSH tools: an admin (the trust root, outside the
//! repository) signs the scope files, a writer signs secrets, and `check`,
//! `check --staged` and the pre-commit hook refuse every change that is not
//! theirs, each with its reason code (`check -o json`).
//!
//! Every test needs `git` and `ssh-keygen` (some `age`, `ssh-agent`,
//! `ssh-add`): under CI a missing tool fails the test, elsewhere it prints
//! a SKIPPED line. The attacks live in `signing_cli/attacks.rs`.

mod attacks;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

use crate::env::{chmod, run, Run, TestEnv};
use crate::tools::{external_tool, ssh_ed25519_key};

/// The admin's principal in the trust root.
const ADMIN: &str = "admin@x";
/// The writer of the default mesh (and of global).
const WRITER: &str = "alice@x";
const DB: &str = "meshes/default/secrets/db.age";
const DB_SIG: &str = "meshes/default/secrets/db.age.sig";
const API: &str = "meshes/default/secrets/api.age";
const API_SIG: &str = "meshes/default/secrets/api.age.sig";
const RECIPIENTS: &str = "meshes/default/recipients.txt";
const WRITERS: &str = "meshes/default/writers.txt";

/// A git repository, SSH keys for an admin and a writer, and the admin in
/// the trust root at its default place (`<config dir>/meshseal/trust.txt`),
/// where the pre-commit hook finds it too.
struct Signed {
    env: TestEnv,
    ssh_keygen: PathBuf,
    /// The admin's private key.
    admin: PathBuf,
    /// The writer's private key (`alice@x`).
    writer: PathBuf,
    trust: PathBuf,
}

impl Signed {
    /// Keys and a trust root in a fresh git repository without a store;
    /// None when a tool is missing outside CI.
    fn bare() -> Option<Signed> {
        let ssh_keygen = external_tool("ssh-keygen")?;
        external_tool("git")?;
        let env = TestEnv::without_store();
        let (admin, admin_pub) = ssh_ed25519_key(&env.keys, "admin")?;
        let (writer, _) = ssh_ed25519_key(&env.keys, "writer")?;
        let dir = env.config_dir().join("meshseal");
        fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o700);
        let trust = dir.join("trust.txt");
        fs::write(&trust, format!("{ADMIN} {admin_pub}\n")).unwrap();
        chmod(&trust, 0o600);
        let s = Signed {
            env,
            ssh_keygen,
            admin,
            writer,
            trust,
        };
        s.git_ok(&["init", "-q", "-b", "main"]);
        s.git_ok(&["config", "user.email", "test@example.com"]);
        s.git_ok(&["config", "user.name", "test"]);
        Some(s)
    }

    /// A store at the repository root, signed and committed: the admin made
    /// alice a writer of the default mesh and signed the scope files, alice
    /// created `db` and `api`.
    fn new() -> Option<Signed> {
        let s = Signed::bare()?;
        s.ok(s.ms().args(["init", "--recipient", s.env.public.as_str()]));
        s.populate(&[]);
        s.commit_ok("a signed store");
        Some(s)
    }

    /// Makes alice a writer of the store `at` (`-C DIR`, or nothing for the
    /// root), signs its scope files and writes `db` and `api` as alice.
    fn populate(&self, at: &[&str]) {
        let writer_pub = pub_of(&self.writer);
        let mut add = self.as_key(&self.admin);
        add.args(at)
            .args(["writers", "add", "-m", "default", WRITER])
            .arg(&writer_pub);
        self.ok(&mut add);
        self.ok(self.as_key(&self.admin).args(at).args(["sign", "--all"]));
        for (name, value) in [("db", "db-v1"), ("api", "api-v1")] {
            self.ok(self.as_key(&self.writer).args(at).args([
                "create",
                "secret",
                name,
                "--from-literal",
                value,
            ]));
        }
    }

    /// `meshseal` in the repository with nothing from the caller's signing
    /// environment: no sign key, trust root or agent but the test's own.
    fn ms(&self) -> Command {
        let mut cmd = self.env.cmd();
        scrub(&mut cmd);
        cmd
    }

    /// `meshseal -S KEY -i <store identity>`.
    fn as_key(&self, key: &Path) -> Command {
        let mut cmd = self.ms();
        cmd.arg("-S").arg(key).arg("-i").arg(&self.env.identity);
        cmd
    }

    #[track_caller]
    fn ok(&self, cmd: &mut Command) -> Run {
        run(cmd).success()
    }

    /// `apply -f` of a Kuma Secret of the default mesh, as `key` (unsigned
    /// without one).
    #[track_caller]
    fn apply(&self, key: Option<&Path>, name: &str, value: &str) -> Run {
        let yaml = format!(
            "type: Secret\nmesh: default\nname: {name}\ndata: {}\n",
            crate::env::b64(value)
        );
        let file = self.env.outside(&format!("{name}.yaml"), yaml);
        let mut cmd = match key {
            Some(k) => self.as_key(k),
            None => self.ms(),
        };
        cmd.arg("apply").arg("-f").arg(file);
        run(&mut cmd)
    }

    /// git in the repository, scrubbed like `ms` (the hook runs keyless
    /// under the default trust root).
    fn git(&self, args: &[&str]) -> Run {
        let mut cmd = self.env.git_cmd();
        scrub(&mut cmd);
        run(cmd.args(args))
    }

    #[track_caller]
    fn git_ok(&self, args: &[&str]) -> String {
        self.git(args).success().stdout()
    }

    fn head(&self) -> String {
        self.git_ok(&["rev-parse", "HEAD"])
    }

    /// Stages everything and commits: the hook must let it through.
    #[track_caller]
    fn commit_ok(&self, message: &str) {
        self.git_ok(&["add", "-A"]);
        self.git_ok(&["commit", "-q", "-m", message]);
    }

    /// Back to `HEAD`, in the test's own repository.
    fn restore(&self) {
        self.git_ok(&["reset", "-q", "--hard", "HEAD"]);
        self.git_ok(&["clean", "-q", "-f", "-d", "--", "meshes", "global"]);
    }

    /// `check -o json` (with `extra`, e.g. `--staged`): the run, and the
    /// file and code of each problem.
    fn check(&self, extra: &[&str]) -> (Run, Vec<(String, String)>) {
        let r = run(self.ms().args(["check", "-o", "json"]).args(extra));
        let found = r
            .json()
            .as_array()
            .unwrap_or_else(|| panic!("check -o json prints an array: {}", r.stdout()))
            .iter()
            .map(|p| {
                (
                    p["file"].as_str().unwrap_or_default().to_string(),
                    p["code"]
                        .as_str()
                        .expect("every problem has a code")
                        .to_string(),
                )
            })
            .collect();
        (r, found)
    }

    /// `check` (and `check -o json`) find nothing, with the signatures
    /// verified.
    #[track_caller]
    fn assert_clean(&self) {
        let (r, found) = self.check(&[]);
        assert_eq!(r.code, Some(0), "check: {found:?}\n{}", r.stderr);
        assert!(found.is_empty(), "{found:?}");
        let r = self.ok(self.ms().arg("check"));
        assert!(
            !r.stderr.contains("not verified") && !r.stderr.contains("unsigned"),
            "with a trust root the signatures are verified: {}",
            r.stderr
        );
    }

    /// `check -o json [extra]` exits 1 with every `(file, code)` of
    /// `expected`, and finds nothing on any other file.
    #[track_caller]
    fn assert_finds(&self, extra: &[&str], expected: &[(&str, &str)]) {
        let (r, found) = self.check(extra);
        assert_eq!(r.code, Some(1), "check {extra:?}: {found:?}\n{}", r.stderr);
        for (file, code) in expected {
            assert!(
                found.iter().any(|(f, c)| f == file && c == code),
                "check {extra:?}: expected {code} on {file}, found {found:?}"
            );
        }
        let files: BTreeSet<&str> = expected.iter().map(|(f, _)| *f).collect();
        for (file, code) in &found {
            assert!(
                files.contains(file.as_str()),
                "check {extra:?}: unexpected {code} on {file}: {found:?}"
            );
        }
    }

    /// The change in the working tree is refused by `check`, and once
    /// staged by `check --staged` and by the pre-commit hook.
    #[track_caller]
    fn assert_refused_everywhere(&self, expected: &[(&str, &str)]) {
        self.assert_finds(&[], expected);
        self.git_ok(&["add", "-A"]);
        self.assert_finds(&["--staged"], expected);
        let head = self.head();
        let r = self.git(&["commit", "-q", "-m", "an attack"]).failure(1);
        for (file, _) in expected {
            r.assert_stderr_has(file);
        }
        assert_eq!(self.head(), head, "the hook let the commit through");
    }

    /// `ssh-keygen -Y sign -n NAMESPACE -f KEY` over a store file: its
    /// `.sig` beside it, replacing any.
    #[track_caller]
    fn ssh_sign(&self, key: &Path, namespace: &str, rel: &str) {
        let _ = fs::remove_file(self.env.path(&format!("{rel}.sig")));
        let out = std::process::Command::new(&self.ssh_keygen)
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(key)
            .arg(self.env.path(rel))
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-keygen");
        assert!(out.status.success(), "ssh-keygen -Y sign: {out:?}");
    }

    /// Whether `ssh-keygen -Y verify -f ALLOWED -I PRINCIPAL -n NAMESPACE
    /// -s SIG < FILE` accepts.
    fn ssh_verifies(&self, allowed: &Path, principal: &str, namespace: &str, rel: &str) -> bool {
        let file = fs::File::open(self.env.path(rel)).expect("open the signed file");
        std::process::Command::new(&self.ssh_keygen)
            .args(["-Y", "verify", "-f"])
            .arg(allowed)
            .args(["-I", principal, "-n", namespace, "-s"])
            .arg(self.env.path(&format!("{rel}.sig")))
            .stdin(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run ssh-keygen")
            .success()
    }
}

/// No sign key, trust root or agent from the caller's environment.
fn scrub(cmd: &mut Command) {
    cmd.env_remove("MESHSEAL_SIGN_KEY")
        .env_remove("MESHSEAL_TRUST")
        .env_remove("SSH_AUTH_SOCK");
}

/// The `.pub` ssh-keygen wrote beside a private key.
fn pub_of(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

#[test]
fn a_writer_and_an_admin_keep_a_signed_store_clean() {
    let Some(s) = Signed::new() else { return };
    s.assert_clean();

    // Global has its own writers; an update through apply is signed too.
    let mut add = s.as_key(&s.admin);
    add.args(["writers", "add", "--global", WRITER])
        .arg(pub_of(&s.writer));
    s.ok(&mut add);
    s.ok(s.as_key(&s.writer).args([
        "create",
        "global-secret",
        "token",
        "--from-literal",
        "t0k3n",
    ]));
    s.apply(Some(&s.writer), "db", "db-v2").success();
    s.assert_clean();
    s.commit_ok("a new db value and a global token");
    let raw = s.ok(s
        .as_key(&s.writer)
        .args(["get", "secret", "db", "-o", "raw"]));
    assert_eq!(raw.stdout, b"db-v2");

    // An admin adds a reader: the files are stale, nothing else.
    let (reader, reader_pub) = s.env.new_identity("reader.txt");
    s.ok(s
        .as_key(&s.admin)
        .args(["recipients", "add", "-m", "default", reader_pub.as_str()]));
    let (r, found) = s.check(&[]);
    assert_eq!(r.code, Some(1));
    let codes: BTreeSet<&str> = found.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(codes, BTreeSet::from(["stale"]), "{found:?}");

    // The writer rekeys: clean again, and the new reader reads.
    s.ok(s.as_key(&s.writer).args(["rekey", "-m", "default"]));
    s.assert_clean();
    s.commit_ok("a new reader");
    let raw = s.ok(s
        .ms()
        .arg("-i")
        .arg(&reader)
        .args(["get", "secret", "db", "-o", "raw"]));
    assert_eq!(raw.stdout, b"db-v2");
}

#[test]
fn a_removed_writers_secrets_fail_until_a_remaining_writer_signs_them() {
    let Some(s) = Signed::new() else { return };
    let r = s.ok(s
        .as_key(&s.admin)
        .args(["writers", "remove", "-m", "default", WRITER]));
    r.assert_stderr_has("2 secret(s) were signed by a removed key");
    r.assert_stderr_has(DB);
    r.assert_stderr_has(API);
    s.assert_finds(&[], &[(DB, "unknown-writer"), (API, "unknown-writer")]);
    // writers.txt is there, listing nobody: the message must not say it is
    // missing.
    let r = run(s.ms().arg("check")).failure(1);
    assert!(s.env.path(WRITERS).exists());
    assert!(
        !r.stderr.contains("writers.txt is missing)"),
        "{}",
        r.stderr
    );
    s.git_ok(&["add", "-A"]);
    s.assert_finds(
        &["--staged"],
        &[(DB, "unknown-writer"), (API, "unknown-writer")],
    );
    s.git(&["commit", "-q", "-m", "remove alice"]).failure(1);

    // bob joins; alice's signatures still do not count.
    let (bob, _) = ssh_ed25519_key(&s.env.keys, "bob").expect("ssh-keygen was found");
    let mut add = s.as_key(&s.admin);
    add.args(["writers", "add", "-m", "default", "bob@x"])
        .arg(pub_of(&bob));
    s.ok(&mut add);
    s.assert_finds(&[], &[(DB, "unknown-writer"), (API, "unknown-writer")]);
    // alice may not sign any more.
    let r = run(s.as_key(&s.writer).args(["sign", "-m", "default"])).failure(1);
    r.assert_stderr_has("is not a writer");

    // bob re-signs the secrets (the scope files are the admin's to sign).
    let r = run(s.as_key(&bob).args(["sign", "-m", "default"]));
    r.assert_stdout_has(&format!("signed {DB}"));
    r.assert_stdout_has(&format!("signed {API}"));
    assert!(
        !r.stderr.contains(&format!("{DB}: not signed")),
        "{}",
        r.stderr
    );
    // Its exit code follows what it left alone.
    let left_alone = left_alone(&r.stderr);
    assert_eq!(r.code, Some(i32::from(left_alone > 0)), "{}", r.stderr);
    s.assert_clean();
    s.commit_ok("bob re-signed alice's secrets");
}

/// `sign`'s count of files it left alone (`N left alone`).
fn left_alone(stderr: &str) -> usize {
    let before = stderr
        .split(" left alone")
        .next()
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of files left alone: {stderr}"))
}

#[test]
fn ssh_keygen_verifies_meshseal_signatures_and_meshseal_accepts_ssh_keygen_ones() {
    let Some(s) = Signed::new() else { return };
    let writers = s.env.path(WRITERS);
    assert!(s.ssh_verifies(&writers, WRITER, "meshseal", DB));
    assert!(s.ssh_verifies(&writers, WRITER, "meshseal", API));
    for scope_file in [RECIPIENTS, WRITERS, "global/recipients.txt"] {
        assert!(
            s.ssh_verifies(&s.trust, ADMIN, "meshseal-scope", scope_file),
            "{scope_file}"
        );
        // The two namespaces are distinct: an admin signature is no
        // writer signature.
        assert!(!s.ssh_verifies(&s.trust, ADMIN, "meshseal", scope_file));
    }
    assert!(!s.ssh_verifies(&writers, WRITER, "meshseal-scope", DB));

    // A signature made by stock ssh-keygen is a writer's signature: here
    // over a new value meshseal wrote unsigned.
    s.apply(None, "db", "db-v2").success();
    s.assert_finds(&[], &[(DB, "unsigned")]);
    s.ssh_sign(&s.writer, "meshseal", DB);
    s.assert_clean();
    let r = run(s.as_key(&s.writer).args(["sign", "-m", "default"]));
    // The secrets are the writer's; the scope files an admin's, and good.
    r.assert_stderr_has("0 signed, 4 already signed, 0 left alone");
    assert_eq!(
        r.code,
        Some(i32::from(left_alone(&r.stderr) > 0)),
        "{}",
        r.stderr
    );
    s.commit_ok("db v2, signed with ssh-keygen");
}

/// An `ssh-agent -D -a SOCKET` of the test's own, killed (by its pid) when
/// dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(ssh_agent: &Path, dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = std::process::Command::new(ssh_agent)
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh-agent");
        let mut agent = Agent { child, socket };
        let start = Instant::now();
        while !agent.socket.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                agent.stop();
                panic!("ssh-agent did not make its socket in 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn signing_through_a_real_ssh_agent_and_an_agent_that_is_gone() {
    let Some(s) = Signed::new() else { return };
    let (Some(ssh_agent), Some(ssh_add)) = (external_tool("ssh-agent"), external_tool("ssh-add"))
    else {
        return;
    };
    let mut agent = Agent::start(&ssh_agent, s.env.tmp());
    // The agent holds the writer's key; its private file is gone.
    let held = s.env.keys.join("held");
    fs::copy(&s.writer, &held).unwrap();
    chmod(&held, 0o600);
    fs::copy(pub_of(&s.writer), pub_of(&held)).unwrap();
    let out = std::process::Command::new(&ssh_add)
        .arg(&held)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-add");
    assert!(out.status.success(), "ssh-add: {out:?}");
    fs::remove_file(&held).unwrap();

    let through_agent = |socket: Option<&Path>, name: &str| {
        let mut cmd = s.as_key(&pub_of(&held));
        if let Some(socket) = socket {
            cmd.env("SSH_AUTH_SOCK", socket);
        }
        cmd.args(["create", "secret", name, "--from-literal", "via-agent"]);
        cmd
    };
    s.ok(&mut through_agent(Some(&agent.socket), "agent"));
    let file = "meshes/default/secrets/agent.age";
    assert!(s.ssh_verifies(&s.env.path(WRITERS), WRITER, "meshseal", file));
    s.assert_clean();
    s.commit_ok("signed through the agent");

    // The agent goes away: a clear error, nothing written.
    let socket = agent.socket.clone();
    agent.stop();
    let r = s.env.refuses(
        &mut through_agent(Some(&socket), "gone"),
        1,
        &["cannot reach the ssh-agent", "hint:"],
    );
    r.assert_stderr_has(&socket.display().to_string());
    s.env.refuses(
        &mut through_agent(None, "gone"),
        1,
        &["no ssh-agent is running", "hint:"],
    );
}

#[test]
fn without_a_trust_root_the_store_works_and_check_says_signatures_are_not_verified() {
    let Some(s) = Signed::new() else { return };
    let elsewhere = s.env.tmp().join("admins");
    fs::create_dir(&elsewhere).unwrap();
    chmod(&elsewhere, 0o700);
    let moved = elsewhere.join("trust.txt");
    fs::rename(&s.trust, &moved).unwrap();

    let r = s.ok(s.ms().arg("check"));
    r.assert_stderr_has("signatures are not verified");
    r.assert_stderr_has("--trust FILE");
    let (r, found) = s.check(&[]);
    assert_eq!((r.code, found.len()), (Some(0), 0), "{found:?}");
    s.ok(s
        .as_key(&s.writer)
        .args(["create", "secret", "new", "--from-literal", "v"]));
    // Nothing is verified: an unsigned value passes too, with the note.
    s.apply(None, "db", "forged").success();
    let r = s.ok(s.ms().arg("check"));
    r.assert_stderr_has("signatures are not verified");
    s.commit_ok("the hook without a trust root");

    // The same store under a trust root named by --trust or MESHSEAL_TRUST.
    let mut cmd = s.ms();
    cmd.arg("--trust").arg(&moved).args(["check", "-o", "json"]);
    let r = run(&mut cmd).failure(1);
    assert_eq!(r.json()[0]["code"], "unsigned", "{}", r.stdout());
    assert_eq!(r.json()[0]["file"], DB);
    let mut cmd = s.ms();
    cmd.env("MESHSEAL_TRUST", &moved)
        .args(["check", "-o", "json"]);
    let r = run(&mut cmd).failure(1);
    assert_eq!(r.json()[0]["code"], "unsigned", "{}", r.stdout());

    // A store that was never signed says so.
    let plain = TestEnv::new();
    let mut cmd = plain.cmd();
    scrub(&mut cmd);
    let r = run(cmd.arg("check")).success();
    r.assert_stderr_has("this store is unsigned");
}
