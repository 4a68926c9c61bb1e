//! `check --staged` as the pre-commit hook runs it, and with a key.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::report::{count, median, ms, verdict, Row};
use crate::timing::timed;
use crate::{gen, Bench};

impl Bench {
    /// `check --staged` (no key, as the pre-commit hook runs it) for a
    /// 10-file commit in a git repository holding the reference store.
    pub fn check_staged(&mut self) {
        let n = self.options.reference_size();
        let root = self.store_dir(n);
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(&root)
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
        let t = Instant::now();
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "store"]);
        eprintln!(
            "committed the {n}-secret store in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let changed = n.min(10);
        let mut paths = Vec::new();
        for j in 0..changed {
            let i = j * n / changed;
            let rel = gen::secret_id(i).path();
            gen::overwrite(&root.join(&rel), &gen::ciphertext(&self.key, i, 10_000));
            paths.push(rel.to_string_lossy().into_owned());
        }
        let mut add = vec!["add", "--"];
        add.extend(paths.iter().map(String::as_str));
        git(&add);
        let mut without_key = Vec::new();
        let mut with_key = Vec::new();
        for _ in 0..self.options.runs {
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C").arg(&root).args(["check", "--staged"]);
            without_key.push(timed(cmd));
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C")
                .arg(&root)
                .arg("-i")
                .arg(&self.key.identity_file)
                .args(["check", "--staged"]);
            with_key.push(timed(cmd));
        }
        let d = median(&mut without_key);
        self.rows.push(Row {
            measurement: format!("`check --staged`, {changed}-file commit, no key (the hook)"),
            secrets: count(n),
            meshseal: ms(d),
            reference: "-".into(),
            ratio: "-".into(),
            target: "< 50 ms".into(),
            result: verdict(d < Duration::from_millis(50), true),
        });
        let d = median(&mut with_key);
        self.rows.push(Row {
            measurement: "`check --staged -i KEY` (decrypts every staged secret)".into(),
            secrets: count(n),
            meshseal: ms(d),
            reference: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            result: "info".into(),
        });
    }
}
