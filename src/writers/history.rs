//! Generations: what a path has had, and what is a rollback (SPEC 9).
//!
//! Every signed write numbers its file: one more than the highest
//! generation that path has had. A file is a rollback when its generation
//! is lower than the highest seen, or equal to it with other bytes (a
//! re-signed file keeps its `.age` bytes, so it is not one). The highest is
//! learned from the file on disk, `HEAD` and the path's git history (for
//! writes and `check`), and from the watcher's own record (`--state`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use imbl::OrdMap;
use sha2::{Digest, Sha256};

use super::header::generation_of;
use super::Refusal;
use crate::envelope;
use crate::git::{self, GitError};
use crate::scope::StorePath;

/// The highest generation seen of one path, and the bytes (by sha256) seen
/// at that generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The highest generation.
    pub generation: u64,
    /// sha256 of every version seen at that generation.
    pub versions: BTreeSet<[u8; 32]>,
}

impl Seen {
    /// Records one version.
    pub fn record(&mut self, generation: u64, sha256: [u8; 32]) {
        if self.versions.is_empty() || generation > self.generation {
            self.generation = generation;
            self.versions = BTreeSet::from([sha256]);
        } else if generation == self.generation {
            self.versions.insert(sha256);
        }
    }

    /// Whether a version with `generation` and `sha256` goes back on what
    /// was seen.
    pub fn judge(&self, generation: u64, sha256: &[u8; 32]) -> Result<(), Refusal> {
        if self.versions.is_empty() || generation > self.generation {
            return Ok(());
        }
        if generation == self.generation && self.versions.contains(sha256) {
            return Ok(());
        }
        Err(Refusal::Rollback {
            generation,
            highest: self.generation,
        })
    }
}

/// What was seen of every path: [`Seen`] by store path, kept in a map
/// ordered by the path's bytes. (`Path`'s own order parses components at
/// every comparison, and a load looks every signed file up twice.) Cloned in
/// O(1), as the index's other maps are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record(OrdMap<Box<[u8]>, Seen>);

impl Record {
    /// What was seen at `rel`.
    pub fn get(&self, rel: &Path) -> Option<&Seen> {
        self.0.get(rel.as_os_str().as_bytes())
    }

    /// Records a version of `rel`; whether that changed the record.
    pub fn record(&mut self, rel: &Path, generation: u64, sha256: [u8; 32]) -> bool {
        let before = self.get(rel);
        let mut seen = before.cloned().unwrap_or_default();
        seen.record(generation, sha256);
        if before == Some(&seen) {
            return false;
        }
        self.0.insert(rel.as_os_str().as_bytes().into(), seen);
        true
    }

    /// Whether nothing was seen yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every path's, in the order of the paths' bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Seen)> {
        self.0
            .iter()
            .map(|(k, v)| (Path::new(OsStr::from_bytes(k)), v))
    }
}

impl FromIterator<(PathBuf, Seen)> for Record {
    fn from_iter<I: IntoIterator<Item = (PathBuf, Seen)>>(iter: I) -> Record {
        Record(
            iter.into_iter()
                .map(|(p, s)| (p.into_os_string().into_vec().into_boxed_slice(), s))
                .collect(),
        )
    }
}

/// Whether a file says a generation, so that a rollback of it is judged
/// against what the history held: a secret and a scope's signed files.
pub fn has_generation(what: &StorePath) -> bool {
    matches!(
        what,
        StorePath::Secret(_) | StorePath::Recipients(_) | StorePath::Writers(_)
    )
}

/// The generation a version of the file at `rel` says: a secret's header,
/// a scope file's first line; 0 for v1 files and anything unreadable.
pub fn generation_of_file(rel: &Path, bytes: &[u8]) -> u64 {
    match StorePath::classify(rel) {
        StorePath::Secret(_) => envelope::read_header(bytes)
            .ok()
            .and_then(|h| h.metadata)
            .map_or(0, |m| m.generation),
        StorePath::Recipients(_) | StorePath::Writers(_) => {
            std::str::from_utf8(bytes).map_or(0, generation_of)
        }
        _ => 0,
    }
}

/// What the git history of `HEAD` holds of the files below `pathspecs`
/// (relative to the store root): every version of each, merges included.
/// Empty outside a repository or before the first commit.
pub fn from_git(root: &Path, pathspecs: &[PathBuf]) -> Result<BTreeMap<PathBuf, Seen>, GitError> {
    Ok(seen_in(git::history_blobs(root, pathspecs)?))
}

/// What the versions of [`git::history_blobs`] say was seen of each file.
pub fn seen_in(versions: Vec<(PathBuf, Vec<u8>)>) -> BTreeMap<PathBuf, Seen> {
    let mut seen: BTreeMap<PathBuf, Seen> = BTreeMap::new();
    for (rel, bytes) in versions {
        let generation = generation_of_file(&rel, &bytes);
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        seen.entry(rel).or_default().record(generation, sha);
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_or_equal_with_other_bytes_is_a_rollback() {
        let mut seen = Seen::default();
        assert!(seen.judge(0, &[0; 32]).is_ok(), "nothing seen yet");
        seen.record(2, [2; 32]);
        seen.record(5, [5; 32]);
        seen.record(3, [3; 32]);
        assert_eq!(seen.generation, 5);
        assert!(seen.judge(6, &[6; 32]).is_ok());
        assert!(seen.judge(5, &[5; 32]).is_ok(), "the same file again");
        assert!(matches!(
            seen.judge(5, &[9; 32]),
            Err(Refusal::Rollback {
                generation: 5,
                highest: 5
            })
        ));
        assert!(matches!(
            seen.judge(2, &[2; 32]),
            Err(Refusal::Rollback { highest: 5, .. })
        ));
        // Two branches that both wrote N+1: both versions are known.
        seen.record(5, [7; 32]);
        assert!(seen.judge(5, &[7; 32]).is_ok());
    }

    #[test]
    fn the_record_finds_each_path_and_says_when_it_changed() {
        let mut record = Record::default();
        let a = Path::new("meshes/a/secrets/x.age");
        let b = Path::new("meshes/a-b/secrets/x.age");
        assert!(record.record(a, 2, [2; 32]));
        assert!(!record.record(a, 2, [2; 32]), "the same version again");
        assert!(!record.record(a, 1, [1; 32]), "a lower one is not kept");
        assert!(record.record(b, 1, [1; 32]));
        assert!(record.record(a, 2, [3; 32]), "a second version at 2");
        assert_eq!(record.get(a).map(|s| s.versions.len()), Some(2));
        assert_eq!(record.get(b).map(|s| s.generation), Some(1));
        assert_eq!(record.get(Path::new("meshes/a/secrets/y.age")), None);
        let again: Record = record
            .iter()
            .map(|(p, s)| (p.to_path_buf(), s.clone()))
            .collect();
        assert_eq!(again, record);
        assert_eq!(again.iter().count(), 2);
    }
}
