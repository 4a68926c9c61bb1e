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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{cat_blobs, git, path_string, split_z, GitError};
use crate::check::Source;
use crate::scope::{Scope, ScopeFile, SecretId, StorePath};
use crate::store::{Entry, FileKind, ReadKind, StoreError};

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
}

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
            Listed::Paths(paths) => {
                paths.contains(path)
                    || paths
                        .iter()
                        .any(|p| p.ends_with('/') && path.starts_with(p.as_str()))
            }
        }
    }
}

/// One index record: mode and blob id.
type Record = (String, String);

impl Staged {
    /// Reads the staged state of the store at `root` (a git work tree or a
    /// folder inside one).
    pub fn read(root: &Path) -> Result<Staged, GitError> {
        let (mut changed, deleted) = staged_changes(root)?;
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
            (list(root, &pathspecs)?, Listed::Paths(pathspecs))
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
                index.extend(list(root, &referencing)?);
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
        let blobs = cat_blobs(root, &wanted)?;
        Ok(Staged {
            root: root.to_path_buf(),
            entries,
            blobs,
            indexed: index.into_keys().collect(),
            listed,
            asked: Mutex::new(HashMap::new()),
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
        let held = list(&self.root, [path]).is_ok_and(|l| l.contains_key(path));
        asked.insert(path.to_string(), held);
        held
    }
}

/// The staged changes below `meshes/` and `global/`: the paths added or
/// modified, and the paths deleted (one `git diff`).
fn staged_changes(root: &Path) -> Result<(BTreeSet<String>, Vec<String>), GitError> {
    let out = git(
        root,
        &[
            "diff",
            "--cached",
            "--name-status",
            "-z",
            "--relative",
            "--no-renames",
            "--",
            "meshes",
            "global",
        ],
    )?;
    let (mut changed, mut deleted) = (BTreeSet::new(), Vec::new());
    let mut fields = split_z(&out);
    while let Some(status) = fields.next() {
        let path = fields.next().ok_or(GitError::Protocol("diff"))?;
        match status {
            "D" => deleted.push(path.to_string()),
            _ => {
                changed.insert(path.to_string());
            }
        }
    }
    Ok((changed, deleted))
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
    let listing = git(root, &args)?;
    let mut index = HashMap::new();
    for record in split_z(&listing) {
        let (meta, path) = record
            .split_once('\t')
            .ok_or(GitError::Protocol("ls-files"))?;
        let mut parts = meta.split(' ');
        let (Some(mode), Some(sha)) = (parts.next(), parts.next()) else {
            return Err(GitError::Protocol("ls-files"));
        };
        index.insert(path.to_string(), (mode.to_string(), sha.to_string()));
    }
    Ok(index)
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
}
