//! What one zone pays as the repository changes (SPEC 5 and 11): a warm
//! restart with `--state` next to the floor, git-sync swaps of the whole
//! tree with 10, 100 and 1,000 changed files (real git checkouts, git-sync's
//! own steps), and a Kubernetes volume swap of a tree that is no git
//! checkout, from the swap to the new values served, with the decryptions
//! the watcher logged.

use std::fs;
use std::net::SocketAddr;
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

    /// git-sync swaps on store `n`, made with real git as git-sync v4
    /// makes them: for each count of changed files, a commit, a new
    /// worktree, the link renamed over, the old worktree removed and
    /// pruned (in the background, as git-sync's own process does it), and
    /// the time from the rename to the first and last changed file served,
    /// minus the debounce. Then the same swap of a tree that is no git
    /// checkout (a Kubernetes volume's `..data`), which is rescanned whole.
    pub fn swaps(&mut self, n: usize) {
        let base = self.work.join(format!("sync-{n}"));
        let _ = fs::remove_dir_all(&base);
        let sync = GitSync::new(&base, &self.store_dir(n), &self.work.join("home"));
        let mut current = sync.check_out();
        symlink(&current, &sync.link).expect("link");
        let label = format!("sync-{n}");
        let (mut watcher, addr, token) = self.start_watcher(&sync.link, &label);
        let log = self.watch_log(&label);
        drop(wait_ready(addr, &token, &mut watcher.0));
        let mut version = 1_000;
        let git = &sync;
        for changed in [10usize, 100, 1_000] {
            let k = changed.min(n);
            let mut swap = |run: usize| {
                version += 1;
                let ids = changed_ids(n, k, run);
                for &i in &ids {
                    let path = git.upstream.join(gen::secret_id(i).path());
                    gen::overwrite(&path, &gen::ciphertext(&self.key, i, version));
                }
                git.commit(&format!("version {version}"));
                let next = git.check_out();
                let old = std::mem::replace(&mut current, next.clone());
                Swap {
                    link: git.link.clone(),
                    next,
                    ids,
                    version,
                    clean_up: Box::new(move || git.clean_up(&old)),
                }
            };
            let (d, exact, shown) = self.time_swaps(addr, &token, &log, k, &mut swap);
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
                reference: format!("decrypted {shown}"),
                ratio: "-".into(),
                target: target.into(),
                result: verdict(met, n == self.options.reference_size() && changed == 10),
            });
        }
        drop(watcher);
        self.volume_swaps(n);
        let _ = fs::remove_dir_all(&base);
    }

    /// A Kubernetes-volume-style swap (`..data` renamed over, the old
    /// folder deleted) of store `n` with 10 changed files: no git to say
    /// what changed, so the new tree is rescanned whole.
    fn volume_swaps(&mut self, n: usize) {
        let base = self.work.join(format!("volume-{n}"));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).expect("volume folder");
        let first = base.join("..0");
        copy_tree(&self.store_dir(n), &first);
        let _ = fs::remove_dir_all(first.join(".git"));
        let link = base.join("..data");
        symlink(&first, &link).expect("link");
        let label = format!("volume-{n}");
        let (mut watcher, addr, token) = self.start_watcher(&link, &label);
        let log = self.watch_log(&label);
        drop(wait_ready(addr, &token, &mut watcher.0));
        let k = n.min(10);
        let mut current = first;
        let mut version = 5_000;
        let mut swap = |run: usize| {
            version += 1;
            let next = base.join(format!("..{}", run + 1));
            copy_tree(&current, &next);
            let ids = changed_ids(n, k, run);
            for &i in &ids {
                let path = next.join(gen::secret_id(i).path());
                gen::overwrite(&path, &gen::ciphertext(&self.key, i, version));
            }
            let old = std::mem::replace(&mut current, next.clone());
            Swap {
                link: link.clone(),
                next,
                ids,
                version,
                clean_up: Box::new(move || {
                    let _ = fs::remove_dir_all(&old);
                }),
            }
        };
        let (d, exact, shown) = self.time_swaps(addr, &token, &log, k, &mut swap);
        self.rows.push(Row {
            measurement: format!(
                "volume swap (`..data`, no git checkout: rescanned whole), {} changed files, minus debounce",
                count(k)
            ),
            secrets: count(n),
            meshseal: ms(d),
            reference: format!("decrypted {shown}"),
            ratio: "-".into(),
            target: "info (exactly the changed files decrypted)".into(),
            result: verdict(exact, false),
        });
        drop(watcher);
        let _ = fs::remove_dir_all(&base);
    }

    /// Runs `prepare`d swaps against the watcher at `addr`: the median time
    /// from the link swap to the changed files served, minus the debounce;
    /// whether every swap decrypted exactly `k` files; the decryptions.
    fn time_swaps<'a>(
        &self,
        addr: SocketAddr,
        token: &str,
        log: &Path,
        k: usize,
        prepare: &mut dyn FnMut(usize) -> Swap<'a>,
    ) -> (Duration, bool, String) {
        let mut samples = Vec::new();
        let mut decrypted = Vec::new();
        for run in 0..self.options.runs {
            let swap = prepare(run);
            // A fresh connection: preparing the tree can outlast the
            // server's idle timeout on a kept-alive one.
            let mut client = Client::connect(addr, token).expect("connect");
            let swapped = swap_link(&swap.link, &swap.next);
            // The old tree goes while the watcher works, as git-sync's
            // own process removes it.
            let served = std::thread::scope(|scope| {
                let cleaner = scope.spawn(swap.clean_up);
                wait_value(&mut client, swap.ids[swap.ids.len() - 1], swap.version);
                wait_value(&mut client, swap.ids[0], swap.version);
                let served = swapped.elapsed();
                let _ = cleaner.join();
                served
            });
            samples.push(served.saturating_sub(self.options.debounce));
            std::thread::sleep(self.options.debounce * 2);
            decrypted.push(last_decrypted(log));
        }
        let exact = decrypted.iter().all(|&x| x == Some(k));
        let shown: Vec<String> = decrypted
            .iter()
            .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
            .collect();
        (median(&mut samples), exact, shown.join("/"))
    }
}

/// One swap, prepared: the link, the new tree, the secrets changed in it
/// (to `version`), and what removes the old tree.
struct Swap<'a> {
    link: PathBuf,
    next: PathBuf,
    ids: Vec<usize>,
    version: u64,
    clean_up: Box<dyn FnOnce() + Send + 'a>,
}

/// `k` secrets of `n`, spread over the store, different for each run.
fn changed_ids(n: usize, k: usize, run: usize) -> Vec<usize> {
    let start = (run * 997) % n;
    (0..k).map(|j| (start + j * (n / k).max(1)) % n).collect()
}

/// git-sync v4's layout, made with real git as git-sync makes it: the
/// store's repository (`upstream`), a shallow clone of it (`root`, with
/// git-sync's `gc.pruneExpire=now`) whose commits are checked out into
/// `root/.worktrees/<hash>` (`worktree add --no-checkout`, then `reset
/// --hard`), and the link `root/current` the watcher follows.
struct GitSync {
    upstream: PathBuf,
    root: PathBuf,
    link: PathBuf,
    home: PathBuf,
}

impl GitSync {
    /// A repository holding a copy of `store`, one commit, and an empty
    /// clone to check it out.
    fn new(base: &Path, store: &Path, home: &Path) -> GitSync {
        let sync = GitSync {
            upstream: base.join("upstream"),
            root: base.join("git"),
            link: base.join("git").join("current"),
            home: home.to_path_buf(),
        };
        fs::create_dir_all(sync.root.join(".worktrees")).expect("sync folder");
        copy_tree(store, &sync.upstream);
        let _ = fs::remove_dir_all(sync.upstream.join(".git"));
        sync.git(&sync.upstream, &["init", "-q", "-b", "main"]);
        sync.git(&sync.upstream, &["add", "-A"]);
        sync.commit("store");
        sync.git(&sync.root, &["init", "-q"]);
        sync.git(&sync.root, &["config", "gc.pruneExpire", "now"]);
        sync
    }

    /// `git -C dir args`, which must succeed: its stdout.
    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
            .args(["-c", "core.hooksPath=/dev/null"])
            .args(args)
            .env("HOME", &self.home)
            .output()
            .expect("run git (the swap rows need it)");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Commits every change in the store's repository.
    fn commit(&self, message: &str) {
        self.git(&self.upstream, &["commit", "-q", "-a", "-m", message]);
    }

    /// git-sync's fetch: the latest commit, checked out into a worktree of
    /// its own.
    fn check_out(&self) -> PathBuf {
        let upstream = format!("file://{}", self.upstream.display());
        self.git(
            &self.root,
            &["fetch", "-q", "--depth", "1", &upstream, "main"],
        );
        let hash = self.git(&self.root, &["rev-parse", "FETCH_HEAD"]);
        let hash = hash.trim();
        let tree = self.root.join(".worktrees").join(hash);
        let path = tree.to_str().expect("UTF-8 work path");
        let add = [
            "worktree",
            "add",
            "-q",
            "--force",
            "--detach",
            path,
            hash,
            "--no-checkout",
        ];
        self.git(&self.root, &add);
        self.git(&tree, &["reset", "-q", "--hard", hash, "--"]);
        tree
    }

    /// git-sync's clean-up after a swap (its default: at once): the old
    /// worktree removed, pruned, and its objects collected.
    fn clean_up(&self, old: &Path) {
        let _ = fs::remove_dir_all(old);
        self.git(&self.root, &["worktree", "prune"]);
        let expire = ["reflog", "expire", "--expire-unreachable=all", "--all"];
        self.git(&self.root, &expire);
        self.git(&self.root, &["gc", "-q"]);
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
