//! A store root that is a link swapped to a new tree (git-sync's `--link`,
//! a Kubernetes volume's `..data`), or that vanishes for a while: the watcher
//! follows the new tree, decrypts only what changed, and never serves an
//! index that lost secrets because the old tree went away (SPEC 11).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::{b64, spawnable, TestEnv};
use crate::watcher::{json, served, Watcher};

/// A copy of the test store at `dir` (same files, same bytes).
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

/// Points `link` at `target` atomically, as git-sync does: a new link
/// renamed over the old one.
pub(crate) fn swap_link(link: &Path, target: &Path) {
    // Kubernetes' atomic writer names it `..data_tmp`.
    let mut tmp = link.as_os_str().to_owned();
    tmp.push("_tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).unwrap();
    fs::rename(&tmp, link).unwrap();
}

pub(crate) struct Swapped {
    pub(crate) env: TestEnv,
    pub(crate) admin: String,
    pub(crate) base: PathBuf,
    pub(crate) link: PathBuf,
    pub(crate) watcher: Watcher,
}

/// A watcher on `base/<link_name>` -> `base/<first>`, a copy of a store with
/// secrets `a`, `b` and `c` in mesh `payments` (`one`, `two`, `three`).
fn watcher_on_link(link_name: &str, first: &str) -> Swapped {
    watcher_on_link_with(link_name, first, 50)
}

/// [`watcher_on_link`] with a debounce window of `debounce_ms`.
pub(crate) fn watcher_on_link_with(link_name: &str, first: &str, debounce_ms: u32) -> Swapped {
    let (env, tokens) = TestEnv::serving();
    for (name, value) in [("a", "one"), ("b", "two"), ("c", "three")] {
        env.set("payments", name, value);
    }
    let base = env.tmp().join("sync");
    fs::create_dir_all(&base).unwrap();
    copy_tree(&env.root, &base.join(first));
    let link = base.join(link_name);
    symlink(base.join(first), &link).unwrap();
    let tokens_file = env.tokens_file();
    let watcher = Watcher::start(spawnable(env.kcmd_at(&link).args([
        "watch",
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        tokens_file.to_str().unwrap(),
        "--debounce",
        &debounce_ms.to_string(),
    ])));
    assert_eq!(
        served(&watcher, &tokens.admin, "payments", "a").as_deref(),
        Some(b64("one").as_str())
    );
    Swapped {
        env,
        admin: tokens.admin,
        base,
        link,
        watcher,
    }
}

impl Swapped {
    /// A new tree `name`: a copy of `from` with secret `a` set to `value`.
    pub(crate) fn new_tree(&self, from: &str, name: &str, value: &str) -> PathBuf {
        let tree = self.base.join(name);
        copy_tree(&self.base.join(from), &tree);
        self.env.set_in(&tree, "payments", "a", value);
        tree
    }

    pub(crate) fn serves(&self, name: &str, value: &str) -> bool {
        served(&self.watcher, &self.admin, "payments", name).as_deref() == Some(b64(value).as_str())
    }

    /// `b` and `c` of the first tree, which the swaps leave alone.
    pub(crate) fn serves_the_unchanged(&self) -> bool {
        self.serves("b", "two") && self.serves("c", "three")
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        let (code, body) = self.watcher.get("/status", Some(&self.admin));
        assert_eq!(code, 200, "{body}");
        json(&body)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.status()["generation"].as_u64().expect("a generation")
    }

    /// How many `index updated` lines (published generations) the log has.
    pub(crate) fn updates(&self) -> usize {
        self.watcher.log().matches("index updated").count()
    }
}

/// The `decrypted=N` of the last `index updated` line of the log.
pub(crate) fn last_decrypted(log: &str) -> Option<usize> {
    last_update(log, "decrypted")
}

/// Field `field` (a count) of the last `index updated` line of the log.
fn last_update(log: &str, field: &str) -> Option<usize> {
    log.lines()
        .rev()
        .find(|l| l.contains("index updated"))
        .and_then(|l| l.split(&format!(" {field}=")).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn a_git_sync_swap_is_followed_with_only_changed_files_decrypted() {
    let s = watcher_on_link("current", "wt-1");
    let wt2 = s.new_tree("wt-1", "wt-2", "uno");
    swap_link(&s.link, &wt2);
    // git-sync removes the old worktree right after the swap.
    fs::remove_dir_all(s.base.join("wt-1")).unwrap();
    s.watcher
        .eventually("the new tree's value", |_| s.serves("a", "uno"));
    assert!(
        s.serves("b", "two") && s.serves("c", "three"),
        "{}",
        s.watcher.log()
    );
    let log = s.watcher.log();
    assert!(log.contains("store root swapped"), "{log}");
    assert_eq!(last_decrypted(&log), Some(1), "only `a` changed:\n{log}");
    assert!(
        !log.contains("secret removed"),
        "nothing was removed:\n{log}"
    );

    // A second swap is followed too.
    let wt3 = s.new_tree("wt-2", "wt-3", "eins");
    swap_link(&s.link, &wt3);
    fs::remove_dir_all(&wt2).unwrap();
    s.watcher
        .eventually("the third tree's value", |_| s.serves("a", "eins"));
    assert!(s.serves("b", "two"));
    assert_eq!(last_decrypted(&s.watcher.log()), Some(1));
    assert_eq!(s.status()["roots"][0]["state"], "present");
}

#[test]
fn a_kubernetes_data_swap_is_followed() {
    let s = watcher_on_link("..data", "..2026_12_01_00_00_00.1");
    let next = s.new_tree("..2026_12_01_00_00_00.1", "..2026_12_01_00_05_00.2", "uno");
    swap_link(&s.link, &next);
    fs::remove_dir_all(s.base.join("..2026_12_01_00_00_00.1")).unwrap();
    s.watcher
        .eventually("the new volume's value", |_| s.serves("a", "uno"));
    assert!(s.serves("b", "two") && s.serves("c", "three"));
}

#[test]
fn a_vanished_root_keeps_the_last_good_index_until_it_returns() {
    let s = watcher_on_link("current", "wt-1");
    // The tree goes away and the link dangles.
    fs::remove_dir_all(s.base.join("wt-1")).unwrap();
    s.watcher.eventually("the root reported missing", |_| {
        s.status()["roots"][0]["state"] == "missing"
    });
    let status = s.status();
    assert!(status["roots"][0]["since"].is_string(), "{status}");
    assert!(
        s.serves("a", "one") && s.serves("b", "two"),
        "{}",
        s.watcher.log()
    );
    assert!(
        s.watcher.log().contains("store root is gone"),
        "{}",
        s.watcher.log()
    );
    assert!(!s.watcher.log().contains("secret removed"));

    // It comes back, elsewhere: followed again.
    let back = s.base.join("wt-2");
    copy_tree(&s.env.root, &back);
    s.env.set_in(&back, "payments", "a", "again");
    swap_link(&s.link, &back);
    s.watcher
        .eventually("the returned tree's value", |_| s.serves("a", "again"));
    assert_eq!(s.status()["roots"][0]["state"], "present");
    assert!(s.watcher.log().contains("store root is back"));
}

#[test]
fn a_link_swapped_out_of_its_folder_is_not_followed() {
    let s = watcher_on_link("current", "wt-1");
    let elsewhere = s.env.tmp().join("elsewhere");
    copy_tree(&s.base.join("wt-1"), &elsewhere);
    s.env.set_in(&elsewhere, "payments", "a", "planted");
    swap_link(&s.link, &elsewhere);
    s.watcher.eventually("a refusal in the log", |w| {
        w.log().contains("points outside the folder")
    });
    assert!(s.serves("a", "one"), "{}", s.watcher.log());
}

/// How many inotify watches a process holds (every `inotify wd:` line of
/// its descriptors' fdinfo).
fn inotify_watches(pid: u32) -> usize {
    let mut count = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        if let Ok(info) = fs::read_to_string(entry.path()) {
            count += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    count
}

#[test]
fn a_symlinked_folder_in_the_store_is_never_watched_into() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "a", "one");
    let w = env.watch(&[]);
    let before = inotify_watches(w.child.id());
    drop(w);
    // A committed `meshes/x -> /usr`: 60 folders behind the link.
    let outside = env.tmp().join("outside");
    for i in 0..60 {
        fs::create_dir_all(outside.join(format!("d{i}")).join("sub")).unwrap();
    }
    symlink(&outside, env.root.join("meshes").join("planted")).unwrap();
    let w = env.watch(&[]);
    assert!(served(&w, &tokens.admin, "payments", "a").is_some());
    let after = inotify_watches(w.child.id());
    assert!(
        after <= before + 1,
        "watches grew from {before} to {after}: the link's target was watched into\n{}",
        w.log()
    );
}

#[test]
fn a_store_in_a_subfolder_of_a_swapped_link_is_followed_without_the_old_tree_going() {
    // `-C /git/current/store`: the link is above the store, and git-sync
    // may keep the old worktree for a while: the link's own folder is what
    // shows the swap.
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "a", "one");
    let base = env.tmp().join("git");
    fs::create_dir_all(base.join(".worktrees").join("one")).unwrap();
    copy_tree(
        &env.root,
        &base.join(".worktrees").join("one").join("store"),
    );
    let link = base.join("current");
    symlink(base.join(".worktrees").join("one"), &link).unwrap();
    let tokens_file = env.tokens_file();
    let w = Watcher::start(spawnable(env.kcmd_at(&link.join("store")).args([
        "watch",
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        tokens_file.to_str().unwrap(),
        "--debounce",
        "50",
    ])));
    assert_eq!(served(&w, &tokens.admin, "payments", "a"), Some(b64("one")));
    let two = base.join(".worktrees").join("two");
    fs::create_dir_all(&two).unwrap();
    copy_tree(
        &base.join(".worktrees").join("one").join("store"),
        &two.join("store"),
    );
    env.set_in(&two.join("store"), "payments", "a", "two");
    swap_link(&link, &two);
    w.eventually("the new worktree's value", |w| {
        served(w, &tokens.admin, "payments", "a") == Some(b64("two"))
    });
    assert!(w.log().contains("store root swapped"), "{}", w.log());
}

#[test]
fn two_swaps_within_one_debounce_window_serve_the_last_tree() {
    let s = watcher_on_link("current", "wt-1");
    let wt2 = s.new_tree("wt-1", "wt-2", "two");
    let wt3 = s.new_tree("wt-1", "wt-3", "three");
    swap_link(&s.link, &wt2);
    swap_link(&s.link, &wt3);
    s.watcher
        .eventually("the last tree's value", |_| s.serves("a", "three"));
    assert!(s.serves("b", "two") && s.serves("c", "three"));
}

#[test]
fn a_root_swapped_to_a_file_or_a_dangling_link_keeps_the_last_good_index() {
    let s = watcher_on_link("current", "wt-1");
    let file = s.base.join("not-a-tree");
    fs::write(&file, "x").unwrap();
    swap_link(&s.link, &file);
    s.watcher.eventually("the root reported missing", |_| {
        s.status()["roots"][0]["state"] == "missing"
    });
    assert!(s.serves("a", "one"), "{}", s.watcher.log());
    swap_link(&s.link, &s.base.join("nowhere"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(s.serves("a", "one") && s.serves("c", "three"));
    // Back to a real tree: followed again.
    let back = s.new_tree("wt-1", "wt-4", "four");
    swap_link(&s.link, &back);
    s.watcher
        .eventually("the new tree's value", |_| s.serves("a", "four"));
}

/// git-sync's layout, made with real git the way git-sync v4 makes it: a
/// repository at `sync/` fetching the store's repository shallowly
/// (`--depth 1`), each commit checked out into `sync/.worktrees/<hash>`
/// (`worktree add --no-checkout`, then `reset --hard`), the `sync/current`
/// link swapped to it, then the old worktree removed and its objects
/// pruned (`gc.pruneExpire=now`): the old commit is gone when the watcher
/// looks.
struct Checkouts {
    env: TestEnv,
    git: PathBuf,
    sync: PathBuf,
    link: PathBuf,
    /// The worktree `current` points at.
    current: PathBuf,
}

impl Checkouts {
    /// The store's repository (secrets `a`, `b`, `c` in mesh `payments`,
    /// global `g`) with one commit, checked out at `sync/current`.
    fn new(git: PathBuf, env: TestEnv) -> Checkouts {
        for (name, value) in [("a", "one"), ("b", "two"), ("c", "three")] {
            env.set("payments", name, value);
        }
        env.set_global("g", "gee");
        let sync = env.tmp().join("sync");
        fs::create_dir_all(sync.join(".worktrees")).unwrap();
        let mut c = Checkouts {
            git,
            link: sync.join("current"),
            sync,
            current: PathBuf::new(),
            env,
        };
        c.run(&c.env.root, &["init", "-q", "-b", "main"]);
        c.commit("first");
        c.run(&c.sync, &["init", "-q"]);
        c.run(&c.sync, &["config", "gc.pruneExpire", "now"]);
        c.current = c.fetch_and_check_out();
        symlink(&c.current, &c.link).unwrap();
        c
    }

    /// `git -C dir args`: its outcome.
    fn git(&self, dir: &Path, args: &[&str]) -> std::process::Output {
        Command::new(&self.git)
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args)
            .env("HOME", self.env.tmp().join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap()
    }

    /// `git -C dir args`, which must succeed: its stdout.
    fn run(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git(dir, args);
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Commits everything in the store's repository.
    fn commit(&self, message: &str) {
        self.run(&self.env.root, &["add", "-A"]);
        self.run(&self.env.root, &["commit", "-q", "-m", message]);
    }

    /// git-sync's fetch: the new commit checked out into a worktree of its
    /// own.
    fn fetch_and_check_out(&self) -> PathBuf {
        let upstream = format!("file://{}", self.env.root.display());
        self.run(
            &self.sync,
            &["fetch", "-q", "--depth", "1", &upstream, "main"],
        );
        let hash = self.run(&self.sync, &["rev-parse", "FETCH_HEAD"]);
        let hash = hash.trim();
        let tree = self.sync.join(".worktrees").join(hash);
        let add = [
            "worktree",
            "add",
            "-q",
            "--force",
            "--detach",
            tree.to_str().unwrap(),
            hash,
            "--no-checkout",
        ];
        self.run(&self.sync, &add);
        self.run(&tree, &["reset", "-q", "--hard", hash, "--"]);
        tree
    }

    /// Commits the store's repository and syncs it as git-sync does: the
    /// link swapped to the new worktree, the old one removed and pruned.
    fn sync(&mut self, message: &str) {
        self.commit(message);
        let old = self.run(&self.current, &["rev-parse", "HEAD"]);
        let next = self.fetch_and_check_out();
        swap_link(&self.link, &next);
        fs::remove_dir_all(&self.current).unwrap();
        self.current = next;
        self.run(&self.sync, &["worktree", "prune"]);
        let expire = ["reflog", "expire", "--expire-unreachable=all", "--all"];
        self.run(&self.sync, &expire);
        self.run(&self.sync, &["gc", "-q"]);
        let kept = self.git(&self.sync, &["cat-file", "-e", old.trim()]);
        assert!(!kept.status.success(), "git-sync would have pruned it");
    }
}

/// A watcher on a git-sync layout's link.
struct GitSync {
    c: Checkouts,
    admin: String,
    watcher: Watcher,
}

impl GitSync {
    /// `None` when git is missing outside CI.
    fn start() -> Option<GitSync> {
        let git = crate::tools::external_tool("git")?;
        let (env, tokens) = TestEnv::serving();
        let c = Checkouts::new(git, env);
        let tokens_file = c.env.tokens_file();
        let watcher = Watcher::start(spawnable(c.env.kcmd_at(&c.link).args([
            "watch",
            "--listen",
            "127.0.0.1:0",
            "--tokens",
            tokens_file.to_str().unwrap(),
            "--debounce",
            "50",
        ])));
        let s = GitSync {
            c,
            admin: tokens.admin,
            watcher,
        };
        assert!(s.serves("a", "one"), "{}", s.watcher.log());
        Some(s)
    }

    fn serves(&self, name: &str, value: &str) -> bool {
        served(&self.watcher, &self.admin, "payments", name).as_deref() == Some(b64(value).as_str())
    }

    /// `meshseal_decrypted_total` from `/metrics`.
    fn decrypted_total(&self) -> u64 {
        let (code, body) = self.watcher.get("/metrics", Some(&self.admin));
        assert_eq!(code, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix("meshseal_decrypted_total "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no decrypted counter in:\n{body}"))
    }
}

#[test]
fn a_git_sync_swap_of_a_checkout_decrypts_only_the_changed_files_and_drops_deleted_ones() {
    let Some(mut s) = GitSync::start() else {
        return;
    };
    let before = s.decrypted_total();
    s.c.env.set("payments", "a", "uno");
    fs::remove_file(s.c.env.root.join("meshes/payments/secrets/c.age")).unwrap();
    s.c.sync("a changed, c deleted");
    s.watcher
        .eventually("the new commit's value", |_| s.serves("a", "uno"));
    s.watcher.eventually("the deleted secret gone", |w| {
        served(w, &s.admin, "payments", "c").is_none()
    });
    let log = s.watcher.log();
    assert!(s.serves("b", "two"), "{log}");
    let (code, _) = s.watcher.get("/global-secrets/g", Some(&s.admin));
    assert_eq!(code, 200, "{log}");
    assert_eq!(
        s.decrypted_total() - before,
        1,
        "only `a` is decrypted again:\n{log}"
    );
    assert!(
        log.contains("git names the files the new tree changed") && log.contains("files=2"),
        "git's listing named a and c:\n{log}"
    );
    assert!(!log.contains("rescanning the new tree whole"), "{log}");
    // Not a walk of the new tree: only `a` was read (`c` is gone).
    assert_eq!(last_update(&log, "hashed"), Some(1), "{log}");
    let removed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("secret removed"))
        .collect();
    assert!(
        removed.len() == 1 && removed[0].contains("name=c"),
        "only c was removed:\n{log}"
    );

    // The next swap is judged against the listing of the tree swapped in.
    s.c.env.set("payments", "b", "dos");
    s.c.sync("b changed");
    s.watcher
        .eventually("the third commit's value", |_| s.serves("b", "dos"));
    assert!(s.serves("a", "uno"), "{}", s.watcher.log());
    assert_eq!(s.decrypted_total() - before, 2, "{}", s.watcher.log());
    assert_eq!(last_decrypted(&s.watcher.log()), Some(1));
}

#[test]
fn a_file_changed_in_place_in_the_served_worktree_is_read_again_at_the_next_swap() {
    let Some(mut s) = GitSync::start() else {
        return;
    };
    // Not through git: the served worktree's b no longer holds what git's
    // index says.
    s.c.env.set_in(&s.c.current, "payments", "b", "local");
    s.watcher
        .eventually("the local change", |_| s.serves("b", "local"));
    s.c.env.set("payments", "a", "uno");
    s.c.sync("a changed");
    s.watcher
        .eventually("the new commit's value", |_| s.serves("a", "uno"));
    // git says b is the same in both commits; the tree swapped out held
    // another b, which must not outlive it.
    assert!(s.serves("b", "two"), "{}", s.watcher.log());
    assert_eq!(last_decrypted(&s.watcher.log()), Some(2));
}
