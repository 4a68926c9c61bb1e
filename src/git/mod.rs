//! The git side: what the index holds (for `check --staged`), the pre-commit
//! hook, and the diff driver that routes `git diff` through `meshseal textconv`.
//!
//! meshseal runs the `git` executable rather than linking a git library: the
//! hook runs inside git anyway, and git's own view of the index (with its
//! config, worktrees and hooks path) is the one that matters.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::atomic;
use crate::problem::Diagnostic;

mod staged;
pub use staged::Staged;

/// The line that marks a hook as meshseal's.
pub const HOOK_MARKER: &str = "# meshseal pre-commit hook";

/// Why a git operation failed.
#[derive(Debug, Error)]
pub enum GitError {
    /// git could not be run.
    #[error("cannot run git: {0}")]
    Spawn(#[source] io::Error),
    /// git said no.
    #[error("git {command} failed: {stderr}")]
    Failed {
        /// The subcommand.
        command: String,
        /// What git printed.
        stderr: String,
    },
    /// git's output was not what we expect.
    #[error("unexpected output from git {0}")]
    Protocol(&'static str),
}

impl Diagnostic for GitError {
    fn code(&self) -> &'static str {
        "git"
    }
    fn hint(&self) -> Option<String> {
        match self {
            GitError::Spawn(_) => {
                Some("install git, or run meshseal inside a git work tree".to_string())
            }
            _ => None,
        }
    }
}

/// Why `hook install` wrote no hook.
#[derive(Debug, Error)]
pub enum HookError {
    /// git could not say where hooks go.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The existing hook could not be read, or the new one written.
    #[error("{source}")]
    Io {
        /// The hook file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A pre-commit hook that meshseal did not write is in the way.
    #[error("a pre-commit hook that meshseal did not write already exists")]
    Foreign {
        /// The hook file.
        file: PathBuf,
    },
}

impl Diagnostic for HookError {
    fn code(&self) -> &'static str {
        match self {
            HookError::Git(e) => e.code(),
            HookError::Io { .. } => "io",
            HookError::Foreign { .. } => "foreign-hook",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            HookError::Git(e) => e.hint(),
            HookError::Io { .. } => None,
            HookError::Foreign { .. } => Some(
                "add `meshseal check --staged` to it by hand, or replace it with `meshseal hook install --force`"
                    .to_string(),
            ),
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            HookError::Git(_) => None,
            HookError::Io { file, .. } | HookError::Foreign { file } => Some(file),
        }
    }
}

pub(crate) fn git(root: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(GitError::Spawn)?;
    if !out.status.success() {
        return Err(GitError::Failed {
            command: args.first().copied().unwrap_or("").to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

pub(crate) fn split_z(bytes: &[u8]) -> impl Iterator<Item = &str> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| std::str::from_utf8(s).ok())
}

pub(crate) fn path_string(p: &Path) -> String {
    // Git paths always use '/'.
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every version that the history of `HEAD` (merges included) holds of the
/// files below `pathspecs` (relative to `root`), as (path, blob id) pairs:
/// what a rollback is judged against (SPEC 9). Empty when `root` is not in
/// a work tree or has no commit yet.
pub fn history_versions(
    root: &Path,
    pathspecs: &[PathBuf],
) -> Result<Vec<(PathBuf, String)>, GitError> {
    if pathspecs.is_empty() {
        return Ok(Vec::new());
    }
    let mut args: Vec<String> = [
        "log",
        "-m",
        "--format=",
        "--raw",
        "-z",
        "--no-abbrev",
        "--no-renames",
        "--relative",
        "HEAD",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(pathspecs.iter().map(|p| path_string(p)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // git log is asked first (the hook runs it on every commit); only when
    // it fails is git asked whether there is any history to read.
    let out = match git(root, &args) {
        Ok(out) => out,
        Err(_) if !is_work_tree(root) => return Ok(Vec::new()),
        Err(_) if !has_head(root) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // -z --raw: ":old-mode new-mode old-sha new-sha status" NUL path NUL
    let mut seen = BTreeSet::new();
    let mut fields = out.split(|&b| b == 0).filter(|f| !f.is_empty());
    while let Some(meta) = fields.next() {
        let meta = std::str::from_utf8(meta).map_err(|_| GitError::Protocol("log"))?;
        let meta = meta.trim_start_matches('\n');
        let path = fields.next().ok_or(GitError::Protocol("log"))?;
        let path = std::str::from_utf8(path).map_err(|_| GitError::Protocol("log"))?;
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        let [_, mode, _, new, _] = parts.as_slice() else {
            return Err(GitError::Protocol("log"));
        };
        if new.bytes().all(|b| b == b'0') || !mode.starts_with("100") {
            continue;
        }
        seen.insert((PathBuf::from(path), new.to_string()));
    }
    Ok(seen.into_iter().collect())
}

/// Every version that the history of `HEAD` holds of the files below
/// `pathspecs`, with its bytes: [`history_versions`], then
/// [`read_versions`].
pub fn history_blobs(
    root: &Path,
    pathspecs: &[PathBuf],
) -> Result<Vec<(PathBuf, Vec<u8>)>, GitError> {
    read_versions(root, &history_versions(root, pathspecs)?)
}

/// Reads the blobs of [`history_versions`], one `git cat-file` for all.
pub fn read_versions(
    root: &Path,
    versions: &[(PathBuf, String)],
) -> Result<Vec<(PathBuf, Vec<u8>)>, GitError> {
    let blobs = cat_blobs_in_order(root, versions)?;
    Ok(versions.iter().map(|(p, _)| p.clone()).zip(blobs).collect())
}

/// Reads blobs with one `git cat-file --batch` process.
pub(crate) fn cat_blobs(
    root: &Path,
    wanted: &[(PathBuf, String)],
) -> Result<HashMap<PathBuf, Vec<u8>>, GitError> {
    let blobs = cat_blobs_in_order(root, wanted)?;
    Ok(wanted.iter().map(|(p, _)| p.clone()).zip(blobs).collect())
}

/// The blobs of `wanted`, in its order, from one `git cat-file --batch`.
fn cat_blobs_in_order(root: &Path, wanted: &[(PathBuf, String)]) -> Result<Vec<Vec<u8>>, GitError> {
    let mut blobs = Vec::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(blobs);
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(GitError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped");
    let request: String = wanted.iter().map(|(_, sha)| format!("{sha}\n")).collect();
    // Write from a thread so a large answer cannot deadlock against the request.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(request.as_bytes());
    });
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let protocol = || GitError::Protocol("cat-file");
    for _ in wanted {
        let mut header = String::new();
        out.read_line(&mut header).map_err(|_| protocol())?;
        let size: usize = header
            .trim_end()
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(protocol)?;
        let mut body = vec![0; size + 1];
        out.read_exact(&mut body).map_err(|_| protocol())?;
        body.pop(); // the newline after each object
        blobs.push(body);
    }
    let _ = writer.join();
    let _ = child.wait();
    Ok(blobs)
}

/// What `hook install` did.
#[derive(Debug, PartialEq, Eq)]
pub enum HookOutcome {
    /// A new hook.
    Installed(PathBuf),
    /// meshseal's hook was there and was refreshed.
    Updated(PathBuf),
    /// A foreign hook was replaced (with --force).
    Replaced(PathBuf),
}

/// Writes a pre-commit hook running `meshseal check --staged`; `exe` is the
/// fallback when `meshseal` is not on PATH at commit time.
pub fn install_hook(root: &Path, exe: &Path, force: bool) -> Result<HookOutcome, HookError> {
    let hooks = git(root, &["rev-parse", "--git-path", "hooks"])?;
    let hooks = PathBuf::from(String::from_utf8_lossy(&hooks).trim());
    let hooks = if hooks.is_absolute() {
        hooks
    } else {
        root.join(hooks)
    };
    let path = hooks.join("pre-commit");
    let existing = match fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(HookError::Io { file: path, source }),
    };
    let outcome = match &existing {
        None => HookOutcome::Installed(path.clone()),
        Some(t) if t.contains(HOOK_MARKER) => HookOutcome::Updated(path.clone()),
        Some(_) if force => HookOutcome::Replaced(path.clone()),
        Some(_) => return Err(HookError::Foreign { file: path }),
    };
    let exe = exe.display().to_string().replace('\'', r"'\''");
    // One hook per repository, for every store registered with it (see
    // `register_store`); it runs from the top of the work tree.
    let script = format!(
        "#!/bin/sh\n{HOOK_MARKER} (installed by `meshseal hook install`).\n\
         # Runs `meshseal check --staged` for each meshseal store of this repository\n\
         # that the commit touches (`git config --get-all meshseal.store`):\n\
         # refuses plaintext, moved, stale or broken secrets; needs no key.\n\
         if command -v meshseal >/dev/null 2>&1; then\n  exec meshseal hook run\nfi\n\
         exec '{exe}' hook run\n"
    );
    register_store(root)?;
    atomic::write(&path, script.as_bytes(), 0o755)
        .map_err(|source| HookError::Io { file: path, source })?;
    Ok(outcome)
}

/// The git config key listing a repository's stores (one value each, a
/// path relative to the top of the work tree; `.` for the top itself).
pub const STORES_KEY: &str = "meshseal.store";

/// The top of the work tree `dir` is in.
pub fn work_tree_top(dir: &Path) -> Result<PathBuf, GitError> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    Ok(PathBuf::from(String::from_utf8_lossy(&top).trim()))
}

/// Registers the store at `root` with its repository, so that the one
/// pre-commit hook checks it (a monorepo may hold several stores).
pub fn register_store(root: &Path) -> Result<(), GitError> {
    let top = work_tree_top(root)?;
    let store = std::fs::canonicalize(root).map_err(GitError::Spawn)?;
    let rel = store
        .strip_prefix(&top)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let rel = if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        path_string(&rel)
    };
    if !registered_stores(&top)?
        .iter()
        .any(|s| path_string(s) == rel)
    {
        git(&top, &["config", "--add", STORES_KEY, &rel])?;
    }
    Ok(())
}

/// The stores registered with the repository whose work tree top is `top`,
/// relative to it.
pub fn registered_stores(top: &Path) -> Result<Vec<PathBuf>, GitError> {
    match git(top, &["config", "--get-all", STORES_KEY]) {
        Ok(out) => Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| PathBuf::from(l.trim()))
            .collect()),
        // Exit 1: the key is not set.
        Err(GitError::Failed { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The stores the staged changes touch, as absolute paths: every store
/// registered with the repository of `dir` that has a staged path below it
/// (a repository with none registered counts its top as one, the layout
/// of older hooks). A commit that touches no store gives none.
pub fn stores_to_check(dir: &Path) -> Result<Vec<PathBuf>, GitError> {
    let top = work_tree_top(dir)?;
    let mut stores = registered_stores(&top)?;
    if stores.is_empty() {
        stores.push(PathBuf::from("."));
    }
    let staged: Vec<PathBuf> = split_z(&git(
        &top,
        &["diff", "--cached", "--name-only", "-z", "--no-renames"],
    )?)
    .map(PathBuf::from)
    .collect();
    Ok(stores
        .into_iter()
        .filter(|store| {
            let base = if store == Path::new(".") {
                PathBuf::new()
            } else {
                store.clone()
            };
            staged.iter().any(|p| {
                p.strip_prefix(&base).is_ok_and(|rest| {
                    let top_folder = rest.components().next().map(|c| c.as_os_str().to_owned());
                    top_folder.is_some_and(|t| t == "meshes" || t == "global")
                        || rest == Path::new(crate::config::CONFIG_FILE)
                })
            })
        })
        .map(|store| top.join(store))
        .collect())
}

/// Configures the `meshseal` diff driver in the repository's config, so that
/// `git diff` shows redacted documents (see `.gitattributes`).
pub fn set_diff_driver(root: &Path, exe: &Path) -> Result<(), GitError> {
    let command = format!(
        "'{}' textconv",
        exe.display().to_string().replace('\'', r"'\''")
    );
    git(root, &["config", "diff.meshseal.textconv", &command])?;
    Ok(())
}

/// Whether the repository holding `root` has a commit (`HEAD` resolves).
pub(crate) fn has_head(root: &Path) -> bool {
    git(root, &["rev-parse", "--verify", "-q", "HEAD"]).is_ok()
}

/// Whether `root` is inside a git work tree.
pub fn is_work_tree(root: &Path) -> bool {
    git(root, &["rev-parse", "--is-inside-work-tree"]).is_ok_and(|o| o.starts_with(b"true"))
}
