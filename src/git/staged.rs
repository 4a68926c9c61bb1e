//! What the git index holds of a store, for `check --staged` (the hook).
//!
//! Why the index is not listed whole: the hook runs on every commit, and a
//! store of 10,000 secrets holds 20,000 index entries (each `.age` with its
//! `.sig`). Listing them all and classifying every path cost more than the
//! rest of the check together. The staged changes name what is judged;
//! only those paths, the files they are judged against (signatures, scope
//! files, the mesh's resources) and, for a mesh whose resources reference
//! secrets, that mesh's secret folder are listed. A question about any
//! other path goes to git, once per path.
//!
//! The index is read once, by the `git diff` that says what is staged.
//! Everything else is `HEAD`'s (from its trees, which git reads only along
//! the paths asked for) with those changes laid over it: where the index
//! differs from `HEAD`, the diff says how. (Reading the 20 MB index of a
//! 100,000-secret store costs git ~27 ms a time.)

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{cat_blobs, git, path_string, split_z, GitError};
use crate::check::Source;
use crate::scope::{Scope, ScopeFile, SecretId, StorePath};
use crate::store::{Entry, FileKind, ReadKind, StoreError};
use crate::writers::history::{self, Seen};

/// Above this many pathspecs the whole store is listed instead (a large
/// commit pays for the whole listing anyway, and the command line stays
/// short).
const MAX_PATHSPECS: usize = 512;

/// The files of a store as the git index holds them: the staged changes plus
/// what they are judged against (their signatures and scope files; every
/// secret of a scope whose recipients or writers changed; the resources of
/// a mesh whose secrets were added or deleted).
pub struct Staged {
    root: PathBuf,
    entries: Vec<Entry>,
    blobs: HashMap<PathBuf, Vec<u8>>,
    /// Index paths below the pathspecs listed.
    indexed: HashSet<String>,
    /// What `indexed` covers: exact paths, and folders (ending in `/`).
    listed: Listed,
    /// Paths outside `listed`, asked of git: whether the index holds them.
    asked: Mutex<HashMap<String, bool>>,
    /// The staged changes: what the index holds where it differs from `HEAD`.
    changes: Changes,
    /// What the history of `HEAD` holds of the files below these
    /// pathspecs, read with the blobs (taken once).
    history: Mutex<Option<(Vec<PathBuf>, HistoryBlobs)>>,
}

/// Every version the history of `HEAD` holds of some files, with its bytes.
type HistoryBlobs = Result<Vec<(PathBuf, Vec<u8>)>, GitError>;

/// The part of the index that was listed.
enum Listed {
    /// All of `meshes/` and `global/`.
    Store,
    /// These paths, and everything below the folders among them.
    Paths(BTreeSet<String>),
}

impl Listed {
    fn covers(&self, path: &str) -> bool {
        match self {
            Listed::Store => true,
            Listed::Paths(paths) => paths.iter().any(|spec| below(path, spec)),
        }
    }
}

/// One index record: mode and blob id.
type Record = (String, String);

impl Staged {
    /// Reads the staged state of the store at `root` (a git work tree or a
    /// folder inside one). With `history` (a check under a trust root),
    /// what the history of `HEAD` holds of the staged secrets and scope
    /// files is read beside the blobs (see [`Source::history`]).
    pub fn read(root: &Path, history: bool) -> Result<Staged, GitError> {
        let changes = staged_changes(root)?;
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut deleted = Vec::new();
        for (path, record) in &changes {
            if record.is_some() {
                changed.insert(path.clone());
            } else {
                deleted.push(path.clone());
            }
        }
        // A deleted signature (or scope file) leaves what it covered to be
        // judged again: an unchanged `.age` whose `.sig` is gone is unsigned.
        for path in deleted {
            match StorePath::classify(Path::new(&path)) {
                StorePath::SecretSig(id) => {
                    changed.insert(path_string(&id.path()));
                }
                // A deleted secret leaves its .sig (if staged still) and
                // the references of its mesh's policies to judge.
                StorePath::Secret(_) | StorePath::Writers(_) | StorePath::ScopeSig(..) => {
                    changed.insert(path);
                }
                _ => {}
            }
        }

        let mut selected: BTreeSet<String> = changed.clone();
        // Folders whose every file is judged: the secrets of a scope whose
        // recipients or writers changed, a mesh's resources.
        let mut folders: BTreeSet<String> = BTreeSet::new();
        let mut rekeyed_scopes = BTreeSet::new();
        let mut policy_meshes = BTreeSet::new();
        // A secret is judged with its signature and its scope's signed
        // files (SPEC 9); a change to any of those re-judges what it covers.
        let scope_files = |scope: &Scope, selected: &mut BTreeSet<String>| {
            for kind in [ScopeFile::Recipients, ScopeFile::Writers] {
                selected.insert(path_string(&scope.file_path(kind)));
                selected.insert(path_string(&scope.sig_path(kind)));
            }
        };
        for path in &changed {
            match StorePath::classify(Path::new(path)) {
                StorePath::Secret(id) | StorePath::SecretSig(id) => {
                    selected.insert(path_string(&id.path()));
                    selected.insert(path_string(&id.sig_path()));
                    scope_files(&id.scope, &mut selected);
                    // Added or deleted secrets can make or break references.
                    if let Some(m) = id.scope.mesh_name() {
                        policy_meshes.insert(m.to_string());
                    }
                }
                StorePath::Recipients(scope)
                | StorePath::Writers(scope)
                | StorePath::ScopeSig(scope, _) => {
                    scope_files(&scope, &mut selected);
                    folders.insert(format!("{}/", path_string(&scope.dir().join("secrets"))));
                    rekeyed_scopes.insert(scope);
                }
                _ => {}
            }
        }
        for mesh in &policy_meshes {
            selected.insert(format!("meshes/{mesh}/mesh.yaml"));
            selected.insert(format!("meshes/{mesh}/mesh.toml"));
            folders.insert(format!("meshes/{mesh}/policies/"));
        }

        let mut pathspecs: BTreeSet<String> = selected.clone();
        pathspecs.extend(folders.iter().cloned());
        let (mut index, mut listed) = if pathspecs.len() > MAX_PATHSPECS {
            (list(root, ["meshes/", "global/"])?, Listed::Store)
        } else {
            (
                list_staged(root, &pathspecs, &changes)?,
                Listed::Paths(pathspecs),
            )
        };

        for path in index.keys() {
            match StorePath::classify(Path::new(path)) {
                StorePath::Secret(id) | StorePath::SecretSig(id)
                    if rekeyed_scopes.contains(&id.scope) =>
                {
                    selected.insert(path.clone());
                }
                StorePath::Mesh(m) | StorePath::Policy { mesh: m, .. }
                    if policy_meshes.contains(&m) =>
                {
                    selected.insert(path.clone());
                }
                _ => {}
            }
        }
        // References resolve against the mesh's secrets: list them for the
        // meshes that hold resources.
        let referencing: Vec<String> = policy_meshes
            .iter()
            .filter(|m| {
                let prefix = format!("meshes/{m}/");
                index.keys().any(|p| {
                    p.starts_with(&prefix)
                        && matches!(
                            StorePath::classify(Path::new(p)),
                            StorePath::Mesh(_) | StorePath::Policy { .. }
                        )
                })
            })
            .map(|m| format!("meshes/{m}/secrets/"))
            .collect();
        if let Listed::Paths(paths) = &mut listed {
            if !referencing.is_empty() {
                index.extend(list_staged(root, &referencing, &changes)?);
                paths.extend(referencing);
            }
        }
        selected.retain(|p| index.contains_key(p));

        let mut entries = Vec::new();
        let mut wanted = Vec::new();
        for path in &selected {
            let (mode, sha) = &index[path];
            let kind = match mode.as_str() {
                "100644" | "100755" => FileKind::Regular,
                "120000" => FileKind::Symlink,
                _ => FileKind::Special,
            };
            let rel = PathBuf::from(path);
            if kind == FileKind::Regular {
                wanted.push((rel.clone(), sha.clone()));
            }
            entries.push(Entry {
                what: StorePath::classify(&rel),
                rel,
                kind,
            });
        }
        // The history's `git log` and `cat-file` need none of the blobs:
        // they run beside their read, not after it (6 of a signed hook's
        // 23 ms at 10,000 secrets were theirs).
        let asked: Option<Vec<PathBuf>> = history.then(|| {
            entries
                .iter()
                .filter(|e| history::has_generation(&e.what))
                .map(|e| e.rel.clone())
                .collect()
        });
        let (blobs, history) = std::thread::scope(|scope| {
            let reading = asked
                .as_deref()
                .map(|asked| scope.spawn(move || super::history_blobs(root, asked)));
            let blobs = cat_blobs(root, &wanted);
            let history =
                reading.map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            (blobs, history)
        });
        let blobs = blobs?;
        let history = asked.zip(history);
        Ok(Staged {
            root: root.to_path_buf(),
            entries,
            blobs,
            indexed: index.into_keys().collect(),
            listed,
            asked: Mutex::new(HashMap::new()),
            changes,
            history: Mutex::new(history),
        })
    }

    /// The staged paths examined.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.entries.iter().map(|e| e.rel.as_path())
    }

    /// Whether the index holds `path` (relative to the store).
    fn holds(&self, path: &str) -> bool {
        if self.listed.covers(path) {
            return self.indexed.contains(path);
        }
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&held) = asked.get(path) {
            return held;
        }
        // A git that cannot answer holds nothing: the caller reports the
        // file as missing, which the next listing would too.
        let held =
            list_staged(&self.root, [path], &self.changes).is_ok_and(|l| l.contains_key(path));
        asked.insert(path.to_string(), held);
        held
    }
}

/// The staged changes below `meshes/` and `global/`, by path: the index's
/// record of each path added or modified, `None` for each path deleted.
type Changes = HashMap<String, Option<Record>>;

/// The staged changes below `meshes/` and `global/` (one `git diff`, which
/// reads the index once). A path with unmerged stages (a merge in progress)
/// has its record read from the index, as before the diff could say it.
fn staged_changes(root: &Path) -> Result<Changes, GitError> {
    let out = git(
        root,
        &[
            "diff",
            "--cached",
            "--raw",
            "-z",
            "--no-abbrev",
            "--relative",
            "--no-renames",
            // A repository's config may hide submodules from diffs: a
            // gitlink staged into a store folder must still be seen.
            "--ignore-submodules=none",
            "--",
            "meshes",
            "global",
        ],
    )?;
    let protocol = || GitError::Protocol("diff");
    let mut changes = HashMap::new();
    let mut unmerged = Vec::new();
    // -z --raw: ":old-mode new-mode old-sha new-sha status" NUL path NUL
    let mut fields = split_z(&out);
    while let Some(meta) = fields.next() {
        let path = fields.next().ok_or_else(protocol)?;
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        let [_, mode, _, sha, status] = parts.as_slice() else {
            return Err(protocol());
        };
        let record = match status.chars().next() {
            Some('D') => None,
            Some('U') => {
                unmerged.push(path.to_string());
                continue;
            }
            Some(_) => Some((mode.to_string(), sha.to_string())),
            None => return Err(protocol()),
        };
        changes.insert(path.to_string(), record);
    }
    if !unmerged.is_empty() {
        let records = list(root, &unmerged)?;
        for path in unmerged {
            let record = records.get(&path).cloned();
            changes.insert(path, record);
        }
    }
    Ok(changes)
}

/// The index records below `pathspecs` (taken literally), by path, without
/// reading the index: `HEAD`'s records (one `git ls-tree`, which reads only
/// the trees on the way) with the staged changes laid over them. Where the
/// index does not differ from `HEAD` it holds `HEAD`'s records, and where it
/// does, the diff said what it holds. At 100,000 secrets the index is 20 MB
/// and `git ls-files` took 27 ms to read it for a hook's few paths;
/// `git ls-tree` took 2 ms.
fn list_staged(
    root: &Path,
    pathspecs: impl IntoIterator<Item = impl AsRef<str>>,
    changes: &Changes,
) -> Result<HashMap<String, Record>, GitError> {
    let pathspecs: Vec<String> = pathspecs
        .into_iter()
        .map(|p| p.as_ref().to_string())
        .collect();
    let mut index = head_records(root, &pathspecs)?;
    for (path, record) in changes {
        if !pathspecs.iter().any(|spec| below(path, spec)) {
            continue;
        }
        match record {
            Some(record) => index.insert(path.clone(), record.clone()),
            None => index.remove(path),
        };
    }
    Ok(index)
}

/// Whether `path` is `spec` or below it, as git matches a literal pathspec
/// (a folder's may end in `/`).
fn below(path: &str, spec: &str) -> bool {
    let spec = spec.trim_end_matches('/');
    path.strip_prefix(spec)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `HEAD`'s records below `pathspecs`; none before the first commit.
fn head_records(root: &Path, pathspecs: &[String]) -> Result<HashMap<String, Record>, GitError> {
    let mut args = vec!["--literal-pathspecs", "ls-tree", "-r", "-z", "HEAD", "--"];
    args.extend(pathspecs.iter().map(String::as_str));
    // mode SP type SP sha TAB path
    let listing = match git(root, &args) {
        Ok(listing) => listing,
        Err(GitError::Failed { .. }) if !super::has_head(root) => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    records(&listing, 2, "ls-tree")
}

/// The index records below `pathspecs` (taken literally: a name is never a
/// glob), by path.
fn list(
    root: &Path,
    pathspecs: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<HashMap<String, Record>, GitError> {
    let mut args = vec![
        "--literal-pathspecs".to_string(),
        "ls-files".to_string(),
        "-s".to_string(),
        "-z".to_string(),
        "--".to_string(),
    ];
    args.extend(pathspecs.into_iter().map(|p| p.as_ref().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // mode SP sha SP stage TAB path
    records(&git(root, &args)?, 1, "ls-files")
}

/// The records of a `-z` listing whose lines are "mode SP .. TAB path", the
/// object id the `sha_field`th field (counted from 0) after the tab's left
/// side is split at spaces; `command` names the listing in an error.
fn records(
    listing: &[u8],
    sha_field: usize,
    command: &'static str,
) -> Result<HashMap<String, Record>, GitError> {
    let mut records = HashMap::new();
    for record in split_z(listing) {
        let (meta, path) = record.split_once('\t').ok_or(GitError::Protocol(command))?;
        let fields: Vec<&str> = meta.split(' ').collect();
        let (Some(mode), Some(sha)) = (fields.first(), fields.get(sha_field)) else {
            return Err(GitError::Protocol(command));
        };
        records.insert(path.to_string(), (mode.to_string(), sha.to_string()));
    }
    Ok(records)
}

impl Source for Staged {
    fn entries(&self) -> Result<Vec<Entry>, crate::problem::Problem> {
        Ok(self.entries.clone())
    }
    fn read(&self, entry: &Entry, limit: usize) -> Result<Vec<u8>, StoreError> {
        let blob = self.blobs.get(&entry.rel).ok_or(StoreError::NotRegular)?;
        if blob.len() > limit {
            return Err(StoreError::TooLarge {
                size: blob.len() as u64,
                limit,
                kind: ReadKind::of(&entry.rel),
            });
        }
        Ok(blob.clone())
    }
    fn has_secret(&self, id: &SecretId) -> bool {
        self.holds(&path_string(&id.path()))
    }
    fn read_optional(&self, rel: &Path, limit: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.blobs.get(rel) {
            Some(blob) if blob.len() > limit => Err(StoreError::TooLarge {
                size: blob.len() as u64,
                limit,
                kind: ReadKind::of(rel),
            }),
            Some(blob) => Ok(Some(blob.clone())),
            // Staged, but not a regular file (a link): never read.
            None if self.holds(&path_string(rel)) => Err(StoreError::NotRegular),
            None => Ok(None),
        }
    }
    fn is_staged(&self) -> bool {
        true
    }
    fn history(
        &self,
        root: &Path,
        pathspecs: &[PathBuf],
    ) -> Result<BTreeMap<PathBuf, Seen>, GitError> {
        let read = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match read {
            // What was read for the same question: its answer.
            Some((asked, versions)) if asked == pathspecs && root == self.root => {
                Ok(history::seen_in(versions?))
            }
            _ => history::from_git(root, pathspecs),
        }
    }
}
