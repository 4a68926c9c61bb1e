//! Signed writers (SPEC 9): the reference store signed by a writer, loaded
//! with the signatures verified next to the same store unsigned, and the
//! pre-commit hook's `check --staged` verifying a signed 10-file commit.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::report::{count, median, ms, paired_ratio, ratio, verdict, Row};
use crate::timing::timed;
use crate::{gen, Bench};

/// The signed copy of a store and what verifies it.
struct Signed {
    root: PathBuf,
    trust: PathBuf,
    writer: PathBuf,
}

impl Bench {
    fn ssh_key(&self, name: &str) -> PathBuf {
        let path = self.work.join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .expect("run ssh-keygen (openssh-client)");
        assert!(status.success(), "ssh-keygen failed");
        path
    }

    /// A copy of the `n`-secret store with a store id, writers.txt and
    /// scope files signed by an admin, every secret signed by a writer
    /// (the time of that `sign --all` is a row too).
    fn signed_store(&mut self, n: usize) -> Signed {
        let root = self.work.join(format!("signed-{n}"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(self.store_dir(n))
            .arg(&root)
            .status()
            .expect("cp");
        assert!(status.success());
        fs::write(
            root.join("meshseal.toml"),
            "version = 1\nstore_id = \"0123456789abcdef\"\n\n[limits]\nmax_data_bytes = 1048576\n",
        )
        .expect("config");
        let admin = self.ssh_key("admin");
        let writer = self.ssh_key("writer");
        let trust_dir = self.work.join("trust");
        fs::create_dir_all(&trust_dir).expect("trust dir");
        fs::set_permissions(&trust_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        let trust = trust_dir.join("trust.txt");
        let admin_pub = fs::read_to_string(admin.with_extension("pub")).expect("admin.pub");
        fs::write(&trust, format!("admin@bench {admin_pub}")).expect("trust.txt");
        fs::set_permissions(&trust, fs::Permissions::from_mode(0o600)).expect("chmod");
        let writer_pub = writer.with_extension("pub");
        let scopes = (0..gen::MESHES)
            .map(|m| vec!["-m".to_string(), format!("m{m:03}")])
            .chain(std::iter::once(vec!["--global".to_string()]));
        for scope in scopes {
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C")
                .arg(&root)
                .arg("-S")
                .arg(&admin)
                .arg("--trust")
                .arg(&trust)
                .args(["writers", "add"])
                .args(&scope)
                .arg("writer@bench")
                .arg(&writer_pub);
            timed(cmd);
        }
        // The admin signs the recipients files (and is no writer: the
        // secrets are left to the writer, so this exits 1).
        let out = self
            .meshseal_cmd()
            .arg("-C")
            .arg(&root)
            .arg("-S")
            .arg(&admin)
            .arg("--trust")
            .arg(&trust)
            .args(["sign", "--all"])
            .output()
            .expect("admin sign");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("{n} left alone")),
            "admin sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cmd = self.meshseal_cmd();
        cmd.arg("-C")
            .arg(&root)
            .arg("-S")
            .arg(&writer)
            .arg("--trust")
            .arg(&trust)
            .args(["sign", "--all"]);
        let took = timed(cmd);
        self.rows.push(Row {
            measurement: "`sign --all` by a writer (ed25519 key file)".into(),
            secrets: count(n),
            meshseal: ms(took),
            reference: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            result: "info".into(),
        });
        Signed {
            root,
            trust,
            writer,
        }
    }

    fn watch_once_at(&self, root: &Path, trust: Option<&Path>) -> Duration {
        self.warm(root);
        let mut cmd = self.meshseal_cmd();
        cmd.arg("-C")
            .arg(root)
            .arg("-i")
            .arg(&self.key.identity_file);
        if let Some(trust) = trust {
            cmd.arg("--trust").arg(trust);
        }
        cmd.args(["watch", "--once"]);
        timed(cmd)
    }

    /// The signed rows: cold load verified against the floor and against
    /// unsigned, interleaved run by run; and the hook on a signed commit.
    pub fn signed(&mut self, n: usize) {
        let t = Instant::now();
        let signed = self.signed_store(n);
        eprintln!(
            "signed the {n}-secret store in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // The setup just wrote 20,000 files (the copy, then the .sig
        // files): they are written back before the loads are timed, so
        // neither side is timed against the kernel's writeback of the other.
        let synced = Command::new("sync").status().is_ok_and(|s| s.success());
        assert!(synced, "sync failed");
        // SPEC 5: the verified load within 1.4x of the unsigned floor (the
        // age crate alone, as a process, over the same secret files); the
        // unsigned `watch --once` beside it says what verifying adds to
        // meshseal's own load. The three rotate run by run.
        let (mut floor, mut plain, mut verified) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..self.options.runs {
            for slot in 0..3 {
                match (run + slot) % 3 {
                    0 => floor.push(self.floor_process(n).0),
                    1 => plain.push(self.watch_once_at(&self.store_dir(n), None)),
                    _ => verified.push(self.watch_once_at(&signed.root, Some(&signed.trust))),
                }
            }
        }
        let paired = paired_ratio(&verified, &floor);
        let (floor, plain, verified) = (
            median(&mut floor),
            median(&mut plain),
            median(&mut verified),
        );
        let r = ratio(verified, floor);
        self.rows.push(Row {
            measurement: "cold load, signatures verified (`watch --once --trust`) vs floor process"
                .into(),
            secrets: count(n),
            meshseal: ms(verified),
            reference: ms(floor),
            ratio: format!("{r:.2}x (paired {paired:.2}x)"),
            target: "<= 1.4x (paired)".into(),
            result: verdict(paired <= 1.4, true),
        });
        self.rows.push(Row {
            measurement: "cold load, signatures verified vs unsigned `watch --once`".into(),
            secrets: count(n),
            meshseal: ms(verified),
            reference: ms(plain),
            ratio: format!("{:.2}x", ratio(verified, plain)),
            target: "-".into(),
            result: "info".into(),
        });
        self.signed_check_staged(n, &signed);
    }

    /// `check --staged --trust` on a commit of 10 secrets a writer wrote.
    fn signed_check_staged(&mut self, n: usize, signed: &Signed) {
        let root = &signed.root;
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(root)
                .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
                .args(["-c", "core.hooksPath=/dev/null", "-c", "gc.auto=0"])
                .args(["-c", "maintenance.auto=false"])
                .args(args)
                .env("HOME", self.work.join("home"))
                .output()
                .expect("run git");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "signed store"]);
        let changed = n.min(10);
        let mut yaml = String::new();
        for j in 0..changed {
            use base64::Engine;
            let id = gen::secret_id(j * n / changed);
            let data =
                base64::engine::general_purpose::STANDARD.encode(gen::secret_data(j, 20_000));
            let mesh = id.scope.mesh_name().expect("bench secrets are mesh-scoped");
            yaml.push_str(&format!(
                "---\ntype: Secret\nmesh: {mesh}\nname: {}\ndata: {data}\n",
                id.name
            ));
        }
        let file = self.work.join("signed-commit.yaml");
        fs::write(&file, yaml).expect("yaml");
        let mut cmd = self.meshseal_cmd();
        cmd.arg("-C")
            .arg(root)
            .arg("-i")
            .arg(&self.key.identity_file)
            .arg("-S")
            .arg(&signed.writer)
            .arg("--trust")
            .arg(&signed.trust)
            .arg("apply")
            .arg("-f")
            .arg(&file);
        timed(cmd);
        git(&["add", "-A"]);
        let mut samples = Vec::new();
        for _ in 0..self.options.runs {
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C")
                .arg(root)
                .arg("--trust")
                .arg(&signed.trust)
                .args(["check", "--staged"]);
            samples.push(timed(cmd));
        }
        let d = median(&mut samples);
        self.rows.push(Row {
            measurement: format!(
                "`check --staged --trust`, signed {changed}-file commit, no key (the hook)"
            ),
            secrets: count(n),
            meshseal: ms(d),
            reference: "-".into(),
            ratio: "-".into(),
            target: "< 50 ms".into(),
            result: verdict(d < Duration::from_millis(50), true),
        });
    }
}
