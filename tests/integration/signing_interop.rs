//! meshseal's signatures and allowed signers against the stock OpenSSH tools
//! (`ssh-keygen`, `ssh-agent`, `ssh-add`; Debian package `openssh-client`).
//!
//! Each test needs the real tools: under CI (`CI` set) a missing tool fails
//! the test; elsewhere the test prints a SKIPPED line and passes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshseal::problem::Diagnostic;
use meshseal::signing::allowed_signers::AllowedSigners;
use meshseal::signing::sshsig::{self, VerifyError};
use meshseal::signing::{AgentError, Namespace, SignError, Signer, SignerError};
use ssh_key::{Certificate, PublicKey};

/// A tool on PATH (the integration tests' one lookup: under CI a missing
/// tool fails, elsewhere a SKIPPED line shows); `test` names the caller.
fn tool(name: &str, _test: &str) -> Option<PathBuf> {
    crate::tools::external_tool(name)
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A new unencrypted key made by ssh-keygen: `(private key path, public key)`.
fn keygen(keygen: &Path, dir: &Path, name: &str, kind: &[&str]) -> (PathBuf, PublicKey) {
    let path = dir.join(name);
    run(Command::new(keygen)
        .args(["-q", "-N", "", "-C", &format!("{name}@test"), "-f"])
        .arg(&path)
        .args(kind));
    let public = fs::read_to_string(format!("{}.pub", path.display())).unwrap();
    (path, PublicKey::from_openssh(public.trim()).unwrap())
}

/// `ssh-keygen -Y verify`'s verdict.
fn keygen_verifies(
    keygen: &Path,
    allowed: &Path,
    principal: &str,
    namespace: &str,
    sig: &Path,
    message: &[u8],
    verify_time: Option<&str>,
) -> bool {
    let mut cmd = Command::new(keygen);
    cmd.args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", principal, "-n", namespace, "-s"])
        .arg(sig)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(t) = verify_time {
        cmd.arg(format!("-Overify-time={t}"));
    }
    let mut child = cmd.spawn().expect("spawn ssh-keygen");
    child.stdin.take().unwrap().write_all(message).unwrap();
    child.wait().unwrap().success()
}

/// `ssh-keygen -Y sign` over `message`: the armored signature.
fn keygen_sign(keygen: &Path, key: &Path, namespace: &str, dir: &Path, message: &[u8]) -> Vec<u8> {
    let file = dir.join("to-sign");
    fs::write(&file, message).unwrap();
    let _ = fs::remove_file(dir.join("to-sign.sig"));
    run(Command::new(keygen)
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(&file)
        .env_remove("SSH_AUTH_SOCK"));
    fs::read(dir.join("to-sign.sig")).unwrap()
}

fn allowed_signers(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("allowed_signers");
    fs::write(&path, text).unwrap();
    path
}

/// A key made by ssh-keygen that meshseal can load from its file. ssh-key
/// 0.6 cannot decode an ECDSA private key with a short scalar (about half of
/// P-521 keys); meshseal says so and points to ssh-agent, and this makes
/// another key.
fn loadable_key(
    ssh_keygen: &Path,
    dir: &Path,
    name: &str,
    kind: &[&str],
) -> (PathBuf, PublicKey, Signer) {
    for attempt in 0..40 {
        let file = format!("{name}-{attempt}");
        let (key, public) = keygen(ssh_keygen, dir, &file, kind);
        match Signer::load_with_agent(&key, None) {
            Ok(signer) => return (key, public, signer),
            Err(SignerError::Undecodable { .. }) if name.starts_with("ecdsa") => {
                let err = Signer::load_with_agent(&key, None).unwrap_err();
                assert!(err.hint().unwrap().contains("ssh-add"), "{err}");
            }
            Err(e) => panic!("{name}: {e:?}"),
        }
    }
    panic!("{name}: no loadable key in 40 attempts")
}

const KINDS: &[(&str, &[&str])] = &[
    ("ed25519", &["-t", "ed25519"]),
    ("ecdsa256", &["-t", "ecdsa", "-b", "256"]),
    ("ecdsa384", &["-t", "ecdsa", "-b", "384"]),
    ("ecdsa521", &["-t", "ecdsa", "-b", "521"]),
    ("rsa", &["-t", "rsa", "-b", "3072"]),
];

/// Bytes a text tool could mangle: NUL, CR LF, no final newline.
const MESSAGE: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----\r\n\0\xff binary\n no final newline";

#[test]
fn ssh_keygen_verifies_meshseal_signatures() {
    let Some(ssh_keygen) = tool("ssh-keygen", "ssh_keygen_verifies_meshseal_signatures") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in KINDS {
        let (_key, public, signer) = loadable_key(&ssh_keygen, dir.path(), name, kind);
        let sig = signer
            .sign(Namespace::Secret, MESSAGE)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let sig_path = dir.path().join(format!("{name}.sig"));
        fs::write(&sig_path, &sig).unwrap();
        let allowed = allowed_signers(
            dir.path(),
            &format!("writer@example.com {}\n", public.to_openssh().unwrap()),
        );
        assert!(
            keygen_verifies(
                &ssh_keygen,
                &allowed,
                "writer@example.com",
                "meshseal",
                &sig_path,
                MESSAGE,
                None
            ),
            "{name}: ssh-keygen -Y verify refused meshseal's signature:\n{sig}"
        );
        // The namespace and the exact bytes are bound.
        assert!(!keygen_verifies(
            &ssh_keygen,
            &allowed,
            "writer@example.com",
            "meshseal-scope",
            &sig_path,
            MESSAGE,
            None
        ));
        assert!(!keygen_verifies(
            &ssh_keygen,
            &allowed,
            "writer@example.com",
            "meshseal",
            &sig_path,
            &MESSAGE[1..],
            None
        ));
        let scope = signer.sign(Namespace::Scope, b"recipients").unwrap();
        fs::write(&sig_path, &scope).unwrap();
        assert!(
            keygen_verifies(
                &ssh_keygen,
                &allowed,
                "writer@example.com",
                "meshseal-scope",
                &sig_path,
                b"recipients",
                None
            ),
            "{name}"
        );
        if *name == "rsa" {
            assert!(sig.contains("-----BEGIN SSH SIGNATURE-----\n"));
            let parsed = sshsig::Signature::parse(sig.as_bytes()).unwrap();
            assert_eq!(parsed.public_key().algorithm().as_str(), "ssh-rsa");
        }
    }
}

#[test]
fn meshseal_accepts_ssh_keygen_signatures_in_its_namespace_only() {
    let Some(ssh_keygen) = tool(
        "ssh-keygen",
        "meshseal_accepts_ssh_keygen_signatures_in_its_namespace_only",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in KINDS {
        let (key, public) = keygen(&ssh_keygen, dir.path(), name, kind);
        let sig = keygen_sign(&ssh_keygen, &key, "meshseal", dir.path(), MESSAGE);
        let ok = sshsig::verify(&sig, MESSAGE, Namespace::Secret)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ok.key.key_data(), public.key_data(), "{name}");
        // The fingerprint is ssh-keygen's own.
        let listed = run(Command::new(&ssh_keygen)
            .arg("-lf")
            .arg(format!("{}.pub", key.display())));
        let listed = String::from_utf8(listed.stdout).unwrap();
        assert!(
            listed.contains(&ok.fingerprint.to_string()),
            "{listed} vs {}",
            ok.fingerprint
        );

        assert!(matches!(
            sshsig::verify(&sig, &MESSAGE[..MESSAGE.len() - 1], Namespace::Secret),
            Err(VerifyError::BadSignature { .. })
        ));
        let other = keygen_sign(&ssh_keygen, &key, "other", dir.path(), MESSAGE);
        let err = sshsig::verify(&other, MESSAGE, Namespace::Secret).unwrap_err();
        assert!(
            matches!(err, VerifyError::WrongNamespace { ref found, .. } if found == "other"),
            "{name}: {err}"
        );
        // sha256 message hashing is valid sshsig too.
        let file = dir.path().join("h");
        fs::write(&file, MESSAGE).unwrap();
        run(Command::new(&ssh_keygen)
            .args(["-Y", "sign", "-n", "meshseal", "-O", "hashalg=sha256", "-f"])
            .arg(&key)
            .arg(&file));
        let sha256 = fs::read(dir.path().join("h.sig")).unwrap();
        sshsig::verify(&sha256, MESSAGE, Namespace::Secret).unwrap();
        fs::remove_file(dir.path().join("h.sig")).unwrap();
        // What meshseal re-armors reads back the same and ssh-keygen still accepts.
        let parsed = sshsig::Signature::parse(&sig).unwrap();
        assert_eq!(parsed.to_armored().as_bytes(), sig.as_slice(), "{name}");
    }
}

/// An `ssh-agent -D` of this test's own, killed when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(agent: &Path, dir: &Path, env: &[(&str, &str)]) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new(agent)
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh-agent");
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ssh-agent did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, socket }
    }

    fn add(&self, ssh_add: &Path, key: &Path, extra: &[&str]) {
        run(Command::new(ssh_add)
            .args(extra)
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null()));
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn signing_through_a_real_ssh_agent() {
    let test = "signing_through_a_real_ssh_agent";
    let (Some(ssh_keygen), Some(ssh_agent), Some(ssh_add)) = (
        tool("ssh-keygen", test),
        tool("ssh-agent", test),
        tool("ssh-add", test),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A confirmation the agent cannot ask for is a refusal.
    let mut agent = Agent::start(
        &ssh_agent,
        dir.path(),
        &[
            ("SSH_ASKPASS", "/bin/false"),
            ("SSH_ASKPASS_REQUIRE", "force"),
            ("DISPLAY", ":0"),
        ],
    );
    let mut allowed = String::new();
    for (name, kind) in [KINDS[0], KINDS[1], KINDS[4]] {
        let (key, public) = keygen(&ssh_keygen, dir.path(), name, kind);
        agent.add(&ssh_add, &key, &[]);
        // The private key is gone: only the agent can sign now.
        fs::remove_file(&key).unwrap();
        let pub_path = PathBuf::from(format!("{}.pub", key.display()));
        let signer = Signer::load_with_agent(&pub_path, Some(&agent.socket)).unwrap();
        assert!(signer.uses_agent());
        let sig = signer.sign(Namespace::Secret, MESSAGE).unwrap();
        let sig_path = dir.path().join(format!("{name}.sig"));
        fs::write(&sig_path, &sig).unwrap();
        allowed.push_str(&format!("{name} {}\n", public.to_openssh().unwrap()));
        let allowed = allowed_signers(dir.path(), &allowed);
        assert!(
            keygen_verifies(
                &ssh_keygen,
                &allowed,
                name,
                "meshseal",
                &sig_path,
                MESSAGE,
                None
            ),
            "{name}: ssh-keygen refused the agent's signature"
        );
        sshsig::verify(sig.as_bytes(), MESSAGE, Namespace::Secret).unwrap();
    }

    // A public key the agent does not hold.
    let (stranger, _) = keygen(&ssh_keygen, dir.path(), "stranger", &["-t", "ed25519"]);
    let err =
        Signer::load_with_agent(&stranger.with_extension("pub"), Some(&agent.socket)).unwrap_err();
    assert!(
        matches!(err, SignerError::Agent(AgentError::KeyNotHeld { .. })),
        "{err}"
    );

    // A key added with -c needs a confirmation; the agent's askpass says no.
    let (confirm, _) = keygen(&ssh_keygen, dir.path(), "confirm", &["-t", "ed25519"]);
    agent.add(&ssh_add, &confirm, &["-c"]);
    let signer =
        Signer::load_with_agent(&confirm.with_extension("pub"), Some(&agent.socket)).unwrap();
    let err = signer.sign(Namespace::Secret, b"x").unwrap_err();
    assert!(
        matches!(err, SignError::Agent(AgentError::Refused { .. })),
        "{err}"
    );

    // The agent goes away after the signer was made.
    let signer =
        Signer::load_with_agent(&dir.path().join("ed25519.pub"), Some(&agent.socket)).unwrap();
    agent.stop();
    let _ = fs::remove_file(&agent.socket);
    let err = signer.sign(Namespace::Secret, b"x").unwrap_err();
    assert!(
        matches!(err, SignError::Agent(AgentError::Unreachable { .. })),
        "{err}"
    );
}

const TIMES: &[&str] = &[
    "20231231235959Z",
    "20240101000000Z",
    "20240601120000Z",
    "20240601120001Z",
    "20250101000000Z",
];

fn seconds(t: &str) -> u64 {
    let d = |a: usize, b: usize| t[a..b].parse::<i64>().unwrap();
    let date = time::Date::from_calendar_date(
        d(0, 4) as i32,
        time::Month::try_from(d(4, 6) as u8).unwrap(),
        d(6, 8) as u8,
    )
    .unwrap();
    let clock = time::Time::from_hms(d(8, 10) as u8, d(10, 12) as u8, d(12, 14) as u8).unwrap();
    time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp() as u64
}

#[test]
fn allowed_signers_options_are_decided_as_ssh_keygen_decides() {
    let Some(ssh_keygen) = tool(
        "ssh-keygen",
        "allowed_signers_options_are_decided_as_ssh_keygen_decides",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&ssh_keygen, dir.path(), "k", &["-t", "ed25519"]);
    let (_, other) = keygen(&ssh_keygen, dir.path(), "o", &["-t", "ed25519"]);
    let k = public.to_openssh().unwrap();
    let o = other.to_openssh().unwrap();
    let files = [
        format!("alice {k}"),
        format!("bob {k}"),
        format!("alice {o}"),
        format!("*@example.com {k}"),
        format!("*@example.com,!mallory@example.com {k}"),
        format!("a?ice {k}"),
        format!("\"alice,bob\" {k}"),
        format!("alice namespaces=\"meshseal\" {k}"),
        format!("alice NAMESPACES=\"meshseal*\" {k}"),
        format!("alice namespaces=\"*,!meshseal-scope\" {k}"),
        format!("* valid-after=\"20240101Z\" {k}"),
        format!("* valid-before=\"20240601120000Z\" {k}"),
        format!("* valid-after=\"20240101Z\",valid-before=\"202406011200UTC\" {k}"),
        format!("* cert-authority {k}"),
        format!("alice namespaces=\"other\" {k}\nalice valid-before=\"20240601120000Z\" {k}"),
        format!("# admins\n\nalice namespaces=\"meshseal-scope\",valid-after=\"20240101Z\" {k}\n*@example.com namespaces=\"meshseal\" {k}"),
    ];
    let principals = [
        "alice",
        "bob",
        "Alice",
        "alice@example.com",
        "mallory@example.com",
    ];
    let namespaces = ["meshseal", "meshseal-scope", "other"];
    let mut sigs = Vec::new();
    for ns in namespaces {
        let sig = keygen_sign(&ssh_keygen, &key, ns, dir.path(), MESSAGE);
        let path = dir.path().join(format!("{ns}.sig"));
        fs::write(&path, &sig).unwrap();
        sigs.push(path);
    }
    let (mut compared, mut allowed_count) = (0, 0);
    for text in &files {
        let allowed = allowed_signers(dir.path(), &format!("{text}\n"));
        let signers = AllowedSigners::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        for principal in principals {
            for (ns, sig) in namespaces.iter().zip(&sigs) {
                for t in TIMES {
                    let theirs = keygen_verifies(
                        &ssh_keygen,
                        &allowed,
                        principal,
                        ns,
                        sig,
                        MESSAGE,
                        Some(t),
                    );
                    let ours = signers
                        .authorize(public.key_data(), Some(principal), ns, seconds(t))
                        .is_ok();
                    assert_eq!(
                        ours, theirs,
                        "allowed_signers {text:?}, principal {principal}, namespace {ns}, time {t}: meshseal {ours}, ssh-keygen {theirs}"
                    );
                    compared += 1;
                    allowed_count += usize::from(ours);
                }
            }
        }
    }
    // Both verdicts occur, so the comparison means something.
    assert!(
        allowed_count > 0 && allowed_count < compared,
        "{allowed_count}/{compared}"
    );
    eprintln!("compared {compared} verdicts with ssh-keygen ({allowed_count} allowed)");

    // What ssh-keygen reads in the local time zone, meshseal refuses outright.
    let local = format!("alice valid-after=\"20240101\" {k}\n");
    assert!(AllowedSigners::parse(&local).is_err());
    // An unknown option: ssh-keygen refuses the line too.
    let unknown = format!("alice verify-required {k}\n");
    assert!(AllowedSigners::parse(&unknown).is_err());
    let allowed = allowed_signers(dir.path(), &unknown);
    assert!(!keygen_verifies(
        &ssh_keygen,
        &allowed,
        "alice",
        "meshseal",
        &sigs[0],
        MESSAGE,
        None
    ));
}

#[test]
fn certificates_under_cert_authority_lines() {
    let Some(ssh_keygen) = tool("ssh-keygen", "certificates_under_cert_authority_lines") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_public) = keygen(&ssh_keygen, dir.path(), "ca", &["-t", "ed25519"]);
    let (user, _) = keygen(&ssh_keygen, dir.path(), "user", &["-t", "ed25519"]);
    run(Command::new(&ssh_keygen)
        .args(["-q", "-s"])
        .arg(&ca)
        .args([
            "-I",
            "user-id",
            "-n",
            "alice,bob@example.com",
            "-V",
            "20240101:20250101",
        ])
        .arg(format!("{}.pub", user.display())));
    let cert_path = PathBuf::from(format!("{}-cert.pub", user.display()));
    let cert = Certificate::from_openssh(fs::read_to_string(&cert_path).unwrap().trim()).unwrap();
    let sig = keygen_sign(&ssh_keygen, &cert_path, "meshseal", dir.path(), MESSAGE);
    let sig_path = dir.path().join("cert.sig");
    fs::write(&sig_path, &sig).unwrap();

    // ssh-key cannot carry a certificate inside an sshsig: meshseal refuses
    // such a signature rather than misreading it.
    let err = sshsig::verify(&sig, MESSAGE, Namespace::Secret).unwrap_err();
    assert!(
        matches!(err, VerifyError::UnsupportedAlgorithm { .. }),
        "a certificate signature must be refused as unsupported: {err}"
    );

    let ca_line = ca_public.to_openssh().unwrap();
    let files = [
        format!("* cert-authority {ca_line}"),
        format!("alice cert-authority {ca_line}"),
        format!("*@example.com cert-authority,namespaces=\"meshseal\" {ca_line}"),
        format!("* {ca_line}"),
    ];
    let (mut compared, mut allowed_count) = (0, 0);
    for text in &files {
        let allowed = allowed_signers(dir.path(), &format!("{text}\n"));
        let signers = AllowedSigners::parse(text).unwrap();
        for principal in ["alice", "bob@example.com", "carol", "user-id"] {
            for t in ["20231231Z", "20240601Z", "20250102Z"] {
                let theirs = keygen_verifies(
                    &ssh_keygen,
                    &allowed,
                    principal,
                    "meshseal",
                    &sig_path,
                    MESSAGE,
                    Some(t),
                );
                let at = seconds(&format!("{}000000Z", &t[..8]));
                let ours = signers
                    .authorize_certificate(&cert, Some(principal), "meshseal", at)
                    .is_ok();
                assert_eq!(ours, theirs, "{text:?} {principal} {t}");
                compared += 1;
                allowed_count += usize::from(ours);
            }
        }
    }
    assert!(
        allowed_count > 0 && allowed_count < compared,
        "{allowed_count}/{compared}"
    );
}
