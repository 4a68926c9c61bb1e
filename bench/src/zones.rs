//! What one zone pays as the repository changes (SPEC 5 and 11): a warm
//! restart with `--state` next to the floor, and git-sync swaps of the
//! whole tree with 10, 100 and 1,000 changed files, from the swap to the
//! new values served, with the decryptions the watcher logged.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::report::{count, median, ms, ratio, verdict, Row};
use crate::timing::timed_cpu;
use crate::watcher::wait_ready;
use crate::{gen, Bench};

impl Bench {
    /// `watch --once --state DIR` on store `n` whose files are all in the
    /// state's cache, next to the floor process, interleaved.
    pub fn warm_restart(&mut self, n: usize) {
        let state = self.work.join(format!("state-{n}"));
        let _ = fs::remove_dir_all(&state);
        let warm = || {
            let mut cmd = self.meshseal_cmd();
            cmd.arg("-C")
                .arg(self.store_dir(n))
                .arg("-i")
                .arg(&self.key.identity_file)
                .args(["watch", "--once", "--state"])
                .arg(&state);
            timed_cpu(cmd)
        };
        warm(); // fills the cache
        let mut ours = Vec::new();
        let mut floor = Vec::new();
        for run in 0..self.options.runs {
            if run % 2 == 0 {
                ours.push(warm().0);
                floor.push(self.floor_process(n).0);
            } else {
                floor.push(self.floor_process(n).0);
                ours.push(warm().0);
            }
        }
        let (ours, floor) = (median(&mut ours), median(&mut floor));
        let r = ratio(ours, floor);
        self.rows.push(Row {
            measurement:
                "warm restart: `watch --once --state` of unchanged files vs floor process (cold)"
                    .into(),
            secrets: count(n),
            meshseal: ms(ours),
            reference: ms(floor),
            ratio: format!("{r:.2}x"),
            target: "< 1x (faster than the floor)".into(),
            result: verdict(r < 1.0, n == self.options.reference_size()),
        });
    }

    /// A watcher on a git-sync-style link to a copy of store `n`; then, for
    /// each count of changed files, a new tree with that many new versions,
    /// the link renamed over, the old tree deleted, and the time from the
    /// rename to the first and last changed file served, minus the debounce.
    pub fn swaps(&mut self, n: usize) {
        let base = self.work.join(format!("sync-{n}"));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join(".worktrees")).expect("sync folder");
        let first = base.join(".worktrees").join("0");
        copy_tree(&self.store_dir(n), &first);
        let link = base.join("current");
        symlink(&first, &link).expect("link");
        let label = format!("sync-{n}");
        let (mut watcher, addr, token) = self.start_watcher(&link, &label);
        let log_path = self.watch_log(&label);
        drop(wait_ready(addr, &token, &mut watcher.0));
        let mut current = first;
        let mut tree = 0;
        for changed in [10usize, 100, 1_000] {
            let k = changed.min(n);
            let mut samples = Vec::new();
            let mut decrypted = Vec::new();
            for run in 0..self.options.runs {
                tree += 1;
                let version = 1_000 + tree as u64;
                let next = base.join(".worktrees").join(tree.to_string());
                copy_tree(&current, &next);
                let start = (run * 997) % n;
                let ids: Vec<usize> = (0..k).map(|j| (start + j * (n / k).max(1)) % n).collect();
                for &i in &ids {
                    let path = next.join(gen::secret_id(i).path());
                    gen::overwrite(&path, &gen::ciphertext(&self.key, i, version));
                }
                // A fresh connection: preparing the tree can outlast the
                // server's idle timeout on a kept-alive one.
                let mut client = Client::connect(addr, &token).expect("connect");
                let swapped = swap_link(&link, &next);
                let _ = fs::remove_dir_all(&current);
                current = next;
                wait_value(&mut client, ids[ids.len() - 1], version);
                wait_value(&mut client, ids[0], version);
                samples.push(swapped.elapsed().saturating_sub(self.options.debounce));
                std::thread::sleep(self.options.debounce * 2);
                decrypted.push(last_decrypted(&log_path));
            }
            let d = median(&mut samples);
            let exact = decrypted.iter().all(|&x| x == Some(k));
            let shown: Vec<String> = decrypted
                .iter()
                .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                .collect();
            let (target, met) = if changed == 10 {
                (
                    "≤ 50 ms, exactly 10 decryptions",
                    d <= Duration::from_millis(50) && exact,
                )
            } else {
                ("info (exactly the changed files decrypted)", exact)
            };
            self.rows.push(Row {
                measurement: format!(
                    "git-sync swap of the whole tree, {} changed files: from the link swap to served, minus debounce",
                    count(k)
                ),
                secrets: count(n),
                meshseal: ms(d),
                reference: format!("decrypted {}", shown.join("/")),
                ratio: "-".into(),
                target: target.into(),
                result: verdict(met, n == self.options.reference_size() && changed == 10),
            });
        }
        drop(watcher);
        let _ = fs::remove_dir_all(&base);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// Points `link` at `target` the way git-sync does (a new link renamed over
/// the old one); returns the moment of the rename.
fn swap_link(link: &Path, target: &Path) -> Instant {
    let tmp: PathBuf = link.with_file_name(".current.tmp");
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).expect("new link");
    fs::rename(&tmp, link).expect("swap link");
    Instant::now()
}

/// The `decrypted=N` of the watcher log's last `index updated` line.
fn last_decrypted(log: &Path) -> Option<usize> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| l.contains("index updated"))
        .and_then(|l| l.split("decrypted=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn wait_value(client: &mut Client, i: usize, version: u64) {
    crate::reload::wait_value(client, i, version);
}
