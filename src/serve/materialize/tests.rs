//! The materializer on a scratch folder, in-process: what the end-to-end
//! tests (tests/integration/materialize.rs) cannot reach cheaply.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::str::FromStr;

use rustix::fs::{Mode, OFlags};

use super::handles::{fs_name, RAMFS_MAGIC, TMPFS_MAGIC};
use super::*;
use crate::document::{Document, SecretData};
use crate::identity::Identities;
use crate::recipients::Recipient;
use crate::store::Store;

/// A store whose index the tests change one secret at a time.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    identities: Identities,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (text, public) = crate::identity::generate();
        let identities = Identities::from_age_text(&text).unwrap();
        let recipient = Recipient::from_str(&public).unwrap();
        let (store, _) = crate::init::init(dir.path(), &[recipient]).unwrap();
        Fixture {
            _dir: dir,
            store,
            identities,
        }
    }

    fn put(&self, id: &SecretId, value: &str) {
        let doc = Document::new(id.clone(), SecretData::new(value.as_bytes().to_vec()));
        self.store.put(&doc, None).unwrap();
    }

    fn delete(&self, id: &SecretId) {
        self.store.delete(id).unwrap();
    }

    fn index(&self) -> Index {
        Index::load(&self.store, &self.identities).unwrap()
    }
}

fn mesh(name: &str) -> SecretId {
    SecretId::new(Scope::Mesh("default".into()), name).unwrap()
}

fn global(name: &str) -> SecretId {
    SecretId::new(Scope::Global, name).unwrap()
}

/// A private scratch folder; the tests that are not about the file
/// system pass `allow_persistent` so that they run anywhere.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("meshseal-materialize-")
        .tempdir()
        .unwrap()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Whether this process may make files of another user (the CI runs as
/// root); elsewhere the test says it is skipped.
fn can_chown(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs root under CI"
    );
    eprintln!("SKIPPED {test}: needs root to make a folder of another user");
    false
}

const NOBODY: u32 = 65534;

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

fn file_system_magic(path: &Path) -> u32 {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    #[allow(clippy::unnecessary_cast)]
    let magic = rustix::fs::fstatfs(&fd).unwrap().f_type as u32;
    magic
}

fn is_memory_backed(path: &Path) -> bool {
    matches!(file_system_magic(path), TMPFS_MAGIC | RAMFS_MAGIC)
}

#[test]
fn writes_files_0400_in_folders_0700_and_a_restart_rewrites_nothing() {
    let fx = Fixture::new();
    fx.put(&mesh("db"), "m-one");
    fx.put(&global("g"), "global-one");
    let tmp = scratch();
    let dir = tmp.path().join("out");
    let m = Materializer::new(&dir, true).unwrap();
    let index = fx.index();
    let (report, problems) = m.sync(None, &index);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        report,
        SyncReport {
            written: 2,
            removed: 0
        }
    );
    let db = dir.join("meshes/default/db");
    assert_eq!(m.path_of(&mesh("db")), db);
    assert_eq!(fs::read(&db).unwrap(), b"m-one");
    assert_eq!(fs::read(dir.join("global/g")).unwrap(), b"global-one");
    assert_eq!(mode_of(&db), FILE_MODE);
    assert_eq!(mode_of(&dir.join("global/g")), FILE_MODE);
    for d in ["", "meshes", "meshes/default", "global"] {
        assert_eq!(mode_of(&dir.join(d)), DIR_MODE, "{d}");
    }
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(dir.join("meshes/default")).unwrap().collect();
    assert_eq!(names.len(), 1);

    // A restart whose files are current rewrites nothing (same inode).
    let inode = fs::metadata(&db).unwrap().ino();
    let again = Materializer::new(&dir, true).unwrap();
    let (report, problems) = again.sync(None, &index);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(report, SyncReport::default());
    assert_eq!(fs::metadata(&db).unwrap().ino(), inode);

    // A file whose bytes or mode are off is rewritten at the next start.
    chmod(&db, 0o600);
    fs::write(&db, "tampered").unwrap();
    chmod(&db, 0o400);
    let (report, _) = again.sync(None, &index);
    assert_eq!(report.written, 1);
    assert_eq!(fs::read(&db).unwrap(), b"m-one");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn updates_and_deletes_follow_the_index() {
    let fx = Fixture::new();
    fx.put(&mesh("db"), "one");
    fx.put(&mesh("other"), "same");
    let tmp = scratch();
    let m = Materializer::new(tmp.path().join("out"), true).unwrap();
    let first = fx.index();
    m.sync(None, &first);
    fx.put(&mesh("db"), "two");
    let second = fx.index();
    let (report, problems) = m.sync(Some(&first), &second);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        report,
        SyncReport {
            written: 1,
            removed: 0
        }
    );
    assert_eq!(fs::read(m.path_of(&mesh("db"))).unwrap(), b"two");
    fx.delete(&mesh("db"));
    let third = fx.index();
    let (report, problems) = m.sync(Some(&second), &third);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        report,
        SyncReport {
            written: 0,
            removed: 1
        }
    );
    assert!(!m.path_of(&mesh("db")).exists());
    assert_eq!(fs::read(m.path_of(&mesh("other"))).unwrap(), b"same");
}

#[test]
fn creates_missing_parents_and_ignores_a_trailing_slash() {
    let tmp = scratch();
    let dir = tmp.path().join("a/b/out");
    let m = Materializer::new(format!("{}/", dir.display()), true).unwrap();
    assert_eq!(m.path_of(&global("g")), dir.join("global/g"));
    assert_eq!(mode_of(&dir), DIR_MODE);
    assert_eq!(mode_of(&tmp.path().join("a")), DIR_MODE);
}

#[test]
fn refuses_a_symlinked_dir_even_with_a_trailing_slash() {
    let tmp = scratch();
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    chmod(&target, 0o700);
    let link = tmp.path().join("link");
    symlink(&target, &link).unwrap();
    for given in [link.clone(), PathBuf::from(format!("{}/", link.display()))] {
        let err = Materializer::new(&given, true).unwrap_err();
        assert!(matches!(err, MaterializeError::Symlink { .. }), "{err:?}");
        assert_eq!(err.path(), link);
        assert_eq!(err.code(), "materialize-symlink");
    }
    // A dangling link is refused too, and nothing is created through it.
    let dangling = tmp.path().join("dangling");
    symlink(tmp.path().join("nowhere"), &dangling).unwrap();
    let err = Materializer::new(&dangling, true).unwrap_err();
    assert!(matches!(err, MaterializeError::Symlink { .. }), "{err:?}");
    assert!(!tmp.path().join("nowhere").exists());
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn refuses_a_dir_others_can_write_and_a_file() {
    let tmp = scratch();
    let dir = tmp.path().join("out");
    fs::create_dir(&dir).unwrap();
    for bits in [0o770, 0o707, 0o1777] {
        chmod(&dir, bits);
        let err = Materializer::new(&dir, true).unwrap_err();
        match &err {
            MaterializeError::WritableByOthers { mode, .. } => assert_eq!(*mode, bits),
            other => panic!("{bits:o}: {other:?}"),
        }
        assert_eq!(mode_of(&dir), bits, "a refused folder is not chmod-ed");
    }
    // Readable by others but writable only by the watcher: accepted, and
    // made private.
    chmod(&dir, 0o755);
    Materializer::new(&dir, true).unwrap();
    assert_eq!(mode_of(&dir), DIR_MODE);

    let file = tmp.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = Materializer::new(&file, true).unwrap_err();
    assert!(
        matches!(err, MaterializeError::NotAFolder { .. }),
        "{err:?}"
    );
}

#[test]
fn a_dir_made_writable_after_start_gets_nothing_more() {
    let fx = Fixture::new();
    fx.put(&mesh("db"), "one");
    let tmp = scratch();
    let dir = tmp.path().join("out");
    let m = Materializer::new(&dir, true).unwrap();
    let first = fx.index();
    m.sync(None, &first);
    chmod(&dir, 0o777);
    fx.put(&mesh("db"), "two");
    let (report, problems) = m.sync(Some(&first), &fx.index());
    assert_eq!(report, SyncReport::default());
    assert!(
        matches!(
            problems.as_slice(),
            [MaterializeError::WritableByOthers { mode: 0o777, .. }]
        ),
        "{problems:?}"
    );
    assert_eq!(fs::read(m.path_of(&mesh("db"))).unwrap(), b"one");
}

#[test]
fn refuses_a_dir_of_another_user() {
    if !can_chown("refuses_a_dir_of_another_user") {
        return;
    }
    let tmp = scratch();
    let dir = tmp.path().join("out");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o700);
    chown(&dir, NOBODY);
    let err = Materializer::new(&dir, true).unwrap_err();
    match &err {
        MaterializeError::NotOwned { owner, euid, .. } => {
            assert_eq!((*owner, *euid), (NOBODY, 0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "owned by uid 65534, not by the watcher's user (uid 0): its owner could swap the files programs read"
    );
    assert_eq!(fs::metadata(&dir).unwrap().uid(), NOBODY);
}

#[test]
fn refuses_a_persistent_file_system_unless_allowed() {
    let disk = [
        std::env::temp_dir(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    ]
    .into_iter()
    .find(|p| !is_memory_backed(p));
    match disk {
        Some(disk) => {
            let tmp = tempfile::Builder::new()
                .prefix(".meshseal-materialize-")
                .tempdir_in(disk)
                .unwrap();
            let dir = tmp.path().join("out");
            let err = Materializer::new(&dir, false).unwrap_err();
            assert!(
                matches!(err, MaterializeError::Persistent { .. }),
                "{err:?}"
            );
            assert!(err
                .to_string()
                .starts_with("is on a persistent file system ("));
            let hint = err.hint().unwrap();
            assert!(hint.contains("--materialize-persistent"), "{hint}");
            assert!(hint.contains("/dev/shm") && hint.contains("$XDG_RUNTIME_DIR"));
            Materializer::new(&dir, true).unwrap();
        }
        None => eprintln!("SKIPPED persistent refusal: no disk-backed folder found"),
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && is_memory_backed(shm) {
        let tmp = tempfile::Builder::new()
            .prefix("meshseal-materialize-")
            .tempdir_in(shm)
            .unwrap();
        Materializer::new(tmp.path().join("out"), false).unwrap();
    } else {
        eprintln!("SKIPPED tmpfs acceptance: /dev/shm is not tmpfs");
    }
}

/// A victim folder with one file, and a check that it is untouched.
fn victim(tmp: &Path) -> PathBuf {
    let victim = tmp.join("victim");
    fs::create_dir(&victim).unwrap();
    chmod(&victim, 0o755);
    fs::write(victim.join("precious"), "keep me").unwrap();
    victim
}

fn assert_untouched(victim: &Path) {
    let names: Vec<String> = fs::read_dir(victim)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["precious"], "the victim folder changed");
    assert_eq!(fs::read(victim.join("precious")).unwrap(), b"keep me");
    assert_eq!(mode_of(victim), 0o755, "the victim folder was chmod-ed");
}

#[test]
fn a_symlink_planted_as_a_folder_is_replaced_not_followed() {
    let fx = Fixture::new();
    fx.put(&global("g"), "global-secret");
    fx.put(&mesh("db"), "mesh-secret");
    let tmp = scratch();
    let victim = victim(tmp.path());
    let dir = tmp.path().join("out");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o700);
    symlink(&victim, dir.join("global")).unwrap();
    fs::create_dir(dir.join("meshes")).unwrap();
    symlink(&victim, dir.join("meshes/default")).unwrap();
    let m = Materializer::new(&dir, true).unwrap();
    let (report, problems) = m.sync(None, &fx.index());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(report.written, 2);
    assert_untouched(&victim);
    for (folder, file, value) in [
        ("global", "g", "global-secret"),
        ("meshes/default", "db", "mesh-secret"),
    ] {
        let meta = fs::symlink_metadata(dir.join(folder)).unwrap();
        assert!(meta.is_dir(), "{folder} is a real folder again");
        assert_eq!(
            fs::read(dir.join(folder).join(file)).unwrap(),
            value.as_bytes()
        );
    }
}

#[test]
fn a_file_swapped_for_a_symlink_is_replaced_or_removed_never_followed() {
    let fx = Fixture::new();
    fx.put(&mesh("db"), "one");
    fx.put(&mesh("gone"), "bye");
    let tmp = scratch();
    let victim = victim(tmp.path());
    let m = Materializer::new(tmp.path().join("out"), true).unwrap();
    let first = fx.index();
    m.sync(None, &first);
    let db = m.path_of(&mesh("db"));
    let gone = m.path_of(&mesh("gone"));
    for file in [&db, &gone] {
        fs::remove_file(file).unwrap();
        symlink(victim.join("precious"), file).unwrap();
    }
    fx.put(&mesh("db"), "two");
    fx.delete(&mesh("gone"));
    let second = fx.index();
    let (report, problems) = m.sync(Some(&first), &second);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        report,
        SyncReport {
            written: 1,
            removed: 1
        }
    );
    assert_untouched(&victim);
    assert!(fs::symlink_metadata(&db).unwrap().is_file());
    assert_eq!(fs::read(&db).unwrap(), b"two");
    assert!(fs::symlink_metadata(&gone).is_err());

    // A folder planted where a file belongs is replaced by the file.
    fs::remove_file(&db).unwrap();
    fs::create_dir(&db).unwrap();
    symlink(&victim, db.join("inner")).unwrap();
    fx.put(&mesh("db"), "three");
    let third = fx.index();
    let (_, problems) = m.sync(Some(&second), &third);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(fs::read(&db).unwrap(), b"three");
    assert_untouched(&victim);
}

#[test]
fn unknown_entries_are_removed_without_following_links() {
    let fx = Fixture::new();
    fx.put(&mesh("db"), "keep");
    let tmp = scratch();
    let victim = victim(tmp.path());
    let dir = tmp.path().join("out");
    for d in ["meshes/default/junk/deeper", "meshes/old", "global"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("meshes/default/leftover"), "old").unwrap();
    fs::write(dir.join("meshes/default/.meshseal-1-00.tmp"), "half").unwrap();
    fs::write(dir.join("meshes/old/s"), "old").unwrap();
    fs::write(dir.join("global/g"), "old global").unwrap();
    symlink(&victim, dir.join("meshes/default/link")).unwrap();
    symlink(&victim, dir.join("meshes/default/junk/deeper/link")).unwrap();
    symlink(&victim, dir.join("meshes/evil")).unwrap();
    symlink(&victim, dir.join("meshes/Not-A-Mesh")).unwrap();
    // An entry outside meshes/ and global/ is not the watcher's business.
    fs::write(dir.join("README"), "mine").unwrap();
    let m = Materializer::new(&dir, true).unwrap();
    let (report, problems) = m.sync(None, &fx.index());
    assert!(problems.is_empty(), "{problems:?}");
    assert_untouched(&victim);
    assert_eq!(report.written, 1);
    // leftover, temp, junk, link, meshes/old/s, global/g, evil, Not-A-Mesh
    assert_eq!(report.removed, 8);
    let names = |rel: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("meshes/default"), ["db"]);
    assert_eq!(names("meshes"), ["default", "old"]);
    assert!(names("meshes/old").is_empty());
    assert!(names("global").is_empty());
    assert_eq!(fs::read(dir.join("README")).unwrap(), b"mine");
}

#[test]
fn a_folder_of_another_user_inside_is_reported_and_left_alone() {
    if !can_chown("a_folder_of_another_user_inside_is_reported_and_left_alone") {
        return;
    }
    let fx = Fixture::new();
    fx.put(&global("g"), "global-secret");
    fx.put(&mesh("db"), "mesh-secret");
    let tmp = scratch();
    let dir = tmp.path().join("out");
    fs::create_dir_all(dir.join("global")).unwrap();
    chmod(&dir, 0o700);
    chmod(&dir.join("global"), 0o755);
    fs::write(dir.join("global/g"), "theirs").unwrap();
    chown(&dir.join("global/g"), NOBODY);
    chown(&dir.join("global"), NOBODY);
    let m = Materializer::new(&dir, true).unwrap();
    let (report, problems) = m.sync(None, &fx.index());
    assert_eq!(report.written, 1, "the mesh secret is still written");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        matches!(&problems[0], MaterializeError::NotOwned { path, .. } if *path == dir.join("global")),
        "{problems:?}"
    );
    assert_eq!(fs::read(dir.join("global/g")).unwrap(), b"theirs");
    assert_eq!(mode_of(&dir.join("global")), 0o755, "not chmod-ed");
    assert_eq!(fs::read(m.path_of(&mesh("db"))).unwrap(), b"mesh-secret");
}

#[test]
fn every_refusal_has_a_code_and_a_hint_naming_the_path() {
    let path = PathBuf::from("/dev/shm/x");
    let errors = [
        MaterializeError::NotOwned {
            path: path.clone(),
            owner: 1,
            euid: 2,
        },
        MaterializeError::WritableByOthers {
            path: path.clone(),
            mode: 0o777,
        },
        MaterializeError::Symlink { path: path.clone() },
        MaterializeError::NotAFolder { path: path.clone() },
    ];
    let mut codes = BTreeSet::new();
    for e in &errors {
        assert_eq!(e.file(), Some(path.as_path()));
        assert!(e.hint().unwrap().contains("/dev/shm/x"), "{e:?}");
        codes.insert(e.code());
    }
    assert_eq!(codes.len(), errors.len());
    let writable = &errors[1];
    assert_eq!(
        writable.to_string(),
        "writable by group or others (mode 0777): they could plant links or swap files"
    );
    assert_eq!(fs_name(0xef53), "ext2/ext3/ext4");
    assert_eq!(fs_name(0x1234), "file system type 0x1234");
}
