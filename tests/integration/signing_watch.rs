//! A running watcher under a trust root (SPEC 9, issue 13): what someone
//! who can only push cannot make it serve. Forged values (through stock
//! `age -R recipients.txt -a` and through `meshseal apply` without a sign
//! key) and an older signed version restored from git history are refused
//! while the last good value stays served, also after a restart with the
//! same `--state`; a writer's signed write is served.
//!
//! The keys are real OpenSSH keys from `ssh-keygen`; the scope files are
//! signed by the admin through the library (the CLI's `writers add` and
//! `sign` have their own tests), the writer writes through the CLI with
//! `-S`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use meshseal::scope::{Scope, ScopeFile};
use meshseal::signing::{Signer, TrustRoot};
use meshseal::store::{Signing, Store};
use serde_json::Value;

use crate::env::{b64, chmod, document, TestEnv};
use crate::tools::{external_tool, ssh_ed25519_key, stock_age};
use crate::watcher::{json, served, Watcher};

const DB: &str = "meshes/payments/secrets/db.age";
const DB_SIG: &str = "meshes/payments/secrets/db.age.sig";

/// A git repository whose mesh `payments` has admin-signed recipients and
/// writers files, and one writer.
struct Signed {
    env: TestEnv,
    admin_token: String,
    trust: PathBuf,
    writer_key: PathBuf,
}

impl Signed {
    /// `None` when an outside tool is missing outside CI (SKIPPED shown).
    fn new() -> Option<Signed> {
        external_tool("git")?;
        let env = TestEnv::git_repo();
        env.add_mesh("payments");
        let admin_token = env.token(&["--admin"]);
        let keys = env.tmp().join("ssh");
        fs::create_dir(&keys).unwrap();
        let (admin, admin_public) = ssh_ed25519_key(&keys, "admin")?;
        let (writer_key, writer_public) = ssh_ed25519_key(&keys, "writer")?;
        // The trust root lives outside the repository, writable only by us.
        let trust_dir = env.tmp().join("trust");
        fs::create_dir(&trust_dir).unwrap();
        chmod(&trust_dir, 0o700);
        let trust = trust_dir.join("trust.txt");
        fs::write(&trust, format!("admin@test {admin_public}\n")).unwrap();
        chmod(&trust, 0o600);
        let as_admin = Store::open(&env.root)
            .unwrap()
            .with_signing(Signing {
                signer: Some(Signer::load(&admin).unwrap()),
                trust: Some(TrustRoot::load(&trust).unwrap()),
            })
            .unwrap();
        let payments = Scope::Mesh("payments".into());
        let recipients = as_admin.recipients_text(&payments).unwrap();
        as_admin.write_recipients(&payments, &recipients).unwrap();
        as_admin
            .write_scope_file(
                &payments,
                ScopeFile::Writers,
                &format!("writer@test {writer_public}\n"),
            )
            .unwrap();
        let signed = Signed {
            env,
            admin_token,
            trust,
            writer_key,
        };
        signed.write_signed("v1");
        assert!(signed.env.commit("v1").0);
        signed.write_signed("v2");
        assert!(signed.env.commit("v2").0);
        Some(signed)
    }

    /// The writer sets `db` through the CLI, signing with `-S`.
    fn write_signed(&self, value: &str) {
        let yaml = format!(
            "type: Secret\nmesh: payments\nname: db\ndata: {}\n",
            b64(value)
        );
        self.env.ok(self
            .env
            .kcmd()
            .arg("-S")
            .arg(&self.writer_key)
            .arg("--trust")
            .arg(&self.trust)
            .args(["apply", "-f", "-"])
            .write_stdin(yaml));
    }

    fn trust_arg(&self) -> &str {
        self.trust.to_str().unwrap()
    }

    /// A watcher with the trust root and `extra` flags.
    fn watch(&self, extra: &[&str]) -> Watcher {
        let mut args = vec!["--trust", self.trust_arg()];
        args.extend_from_slice(extra);
        self.env.watch(&args)
    }

    /// The value served for `db`, if any.
    fn db(&self, w: &Watcher) -> Option<String> {
        served(w, &self.admin_token, "payments", "db")
    }

    /// `/status`'s refused entry for `db`, if any.
    fn refused(&self, w: &Watcher) -> Option<Value> {
        let (status, body) = w.get("/status", Some(&self.admin_token));
        assert_eq!(status, 200, "{body}");
        json(&body)["refused"]
            .as_array()
            .expect("a refused list")
            .iter()
            .find(|r| r["file"] == DB)
            .cloned()
    }

    /// Waits until `db` is refused with `code`, the value served meanwhile
    /// being `serving` (None: nothing).
    fn wait_refused(&self, w: &Watcher, code: &str, serving: Option<&str>) -> Value {
        let mut last = None;
        w.eventually(&format!("{DB} refused as {code}"), |w| {
            last = self.refused(w);
            last.as_ref().is_some_and(|r| r["code"] == code)
        });
        let refused = last.unwrap();
        assert_eq!(
            self.db(w),
            serving.map(b64),
            "while refused as {code}: {refused}"
        );
        let expected = if serving.is_some() {
            "last-good"
        } else {
            "none"
        };
        assert_eq!(refused["serving"], expected, "{refused}");
        assert!(refused["since"].as_str().is_some_and(|s| !s.is_empty()));
        refused
    }

    /// Puts `db` back as `HEAD` has it, and waits until it is served clean.
    fn restore_head(&self, w: &Watcher) {
        self.env.git_ok(&["checkout", "HEAD", "--", DB, DB_SIG]);
        w.eventually("db served clean again", |w| {
            self.refused(w).is_none() && self.db(w) == Some(b64("v2"))
        });
    }

    fn git_show(&self, rev: &str, rel: &str) -> Vec<u8> {
        let out = self
            .env
            .git_cmd()
            .args(["show", &format!("{rev}:{rel}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "git show {rev}:{rel}");
        out.stdout
    }
}

/// The count of `meshseal_signature_refusals_total{reason="…"}`.
fn refusals(w: &Watcher, token: &str, reason: &str) -> u64 {
    let (_, metrics) = w.get("/metrics", Some(token));
    let prefix = format!("meshseal_signature_refusals_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in:\n{metrics}"))
        .parse()
        .unwrap()
}

/// `age -R meshes/payments/recipients.txt -a -o <db>`, as anyone can.
fn stock_age_write(age: &Path, env: &TestEnv, value: &[u8]) {
    let mut child = Command::new(age)
        .current_dir(&env.root)
        .args(["-R", "meshes/payments/recipients.txt", "-a", "-o", DB])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn age");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(document("Secret", Some("payments"), "db", value).as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_watcher_under_a_trust_root_refuses_forgeries_and_rollbacks_also_after_a_restart() {
    let Some(age) = stock_age() else { return };
    let Some(s) = Signed::new() else { return };
    let state = s.env.tmp().join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let w = s.watch(&["--state", &state_arg]);
    assert_eq!(s.db(&w), Some(b64("v2")));
    assert!(s.refused(&w).is_none());

    // A forged value through meshseal itself, without a sign key.
    s.env.set("payments", "db", "forged-by-apply");
    let refused = s.wait_refused(&w, "unsigned", Some("v2"));
    assert!(
        refused["message"].as_str().unwrap().contains(DB_SIG),
        "{refused}"
    );
    assert!(refusals(&w, &s.admin_token, "unsigned") >= 1);
    s.restore_head(&w);

    // A forged value through stock age: the old signature does not cover it.
    stock_age_write(&age, &s.env, b"forged-by-age");
    s.wait_refused(&w, "bad-signature", Some("v2"));
    assert!(refusals(&w, &s.admin_token, "bad-signature") >= 1);
    s.restore_head(&w);

    // An older signed version from git history, signature and all.
    let (old, old_sig) = (s.git_show("HEAD~1", DB), s.git_show("HEAD~1", DB_SIG));
    fs::write(s.env.path(DB_SIG), &old_sig).unwrap();
    fs::write(s.env.path(DB), &old).unwrap();
    let refused = s.wait_refused(&w, "rollback", Some("v2"));
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("generation 1"),
        "{refused}"
    );
    assert!(refusals(&w, &s.admin_token, "rollback") >= 1);
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
    for line in log.lines().filter(|l| l.contains("WARN")) {
        assert!(
            !line.contains("forged-by"),
            "a log line shows a value: {line}"
        );
    }
    assert!(!log.contains("rollback protection lasts only"), "{log}");
    let record = fs::read_to_string(state.join("generations.json")).unwrap();
    assert!(record.contains(DB), "{record}");

    // The rolled-back file is still there at the restart: with the same
    // --state it is refused, and nothing older is served in its place.
    let w = s.watch(&["--state", &state_arg]);
    s.wait_refused(&w, "rollback", None);
    drop(w);

    // Without --state the watcher says what it cannot protect.
    let w = s.watch(&[]);
    w.eventually("the warning", |w| {
        w.log()
            .contains("rollback protection lasts only as long as this process")
    });
    drop(w);

    // The legitimate path: the writer writes with -S, it is served.
    let w = s.watch(&["--state", &state_arg]);
    s.restore_head(&w);
    s.write_signed("v3");
    w.eventually("v3 served", |w| s.db(w) == Some(b64("v3")));
    assert!(s.refused(&w).is_none());
    let (_, status) = w.get("/status", Some(&s.admin_token));
    assert_eq!(json(&status)["healthy"], true, "{status}");
}

#[test]
fn a_trust_root_others_can_write_stops_the_watcher_at_start() {
    let Some(s) = Signed::new() else { return };
    chmod(&s.trust, 0o666);
    s.env
        .watch_once(&["--trust", s.trust_arg()])
        .failure(1)
        .assert_stderr_has("too open");
    chmod(&s.trust, 0o600);
    let r = s.env.watch_once(&["--trust", s.trust_arg()]).success();
    assert!(r.stdout().contains("loaded 1 secret(s)"), "{}", r.stdout());
}

#[test]
fn sighup_reads_the_trust_root_again_and_keeps_it_when_it_no_longer_loads() {
    let Some(s) = Signed::new() else { return };
    let Some((_, other_admin)) = ssh_ed25519_key(s.env.tmp(), "other-admin") else {
        return;
    };
    let w = s.watch(&[]);
    assert_eq!(s.db(&w), Some(b64("v2")));
    let hup = |w: &Watcher| {
        let sent = Command::new("kill")
            .arg("-HUP")
            .arg(w.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let signed = fs::read(&s.trust).unwrap();

    // An admin rotated out: what only they signed is no longer trusted,
    // and the last good value stays served.
    fs::write(&s.trust, format!("other@test {other_admin}\n")).unwrap();
    hup(&w);
    let refused = s.wait_refused(&w, "untrusted-writers-file", Some("v2"));
    assert!(
        refused["message"].as_str().unwrap().contains("trust root"),
        "{refused}"
    );

    // A trust root that no longer loads is not "no trust root".
    fs::write(&s.trust, &signed).unwrap();
    chmod(&s.trust, 0o666);
    hup(&w);
    w.eventually("the reload refused", |w| {
        w.log().contains("kept the previous trust root")
    });
    assert!(
        s.refused(&w).is_some(),
        "still verified under the other admin"
    );

    chmod(&s.trust, 0o600);
    hup(&w);
    w.eventually("clean again", |w| {
        s.refused(w).is_none() && s.db(w) == Some(b64("v2"))
    });
}
