//! The store on a temporary folder: opening, reading, writing.
use super::*;
use crate::document::SecretData;
use crate::problem::Diagnostic;

/// A store with one mesh `m` encrypted to a fresh identity (for other
/// modules' tests too).
pub(crate) fn scratch() -> (tempfile::TempDir, Store, Identities) {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = crate::identity::generate();
    let ids = Identities::from_age_text(&secret).unwrap();
    for scope in ["meshes/m", "global"] {
        fs::create_dir_all(dir.path().join(scope)).unwrap();
        fs::write(
            dir.path().join(scope).join("recipients.txt"),
            format!("{public}\n"),
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    (dir, store, ids)
}

fn doc(name: &str, data: &[u8]) -> Document {
    let id = SecretId::new(Scope::mesh("m").unwrap(), name).unwrap();
    Document::new(id, SecretData::new(data.to_vec()))
}

#[test]
fn open_tells_a_missing_folder_from_a_folder_that_is_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Store::open(dir.path().join("nope")).unwrap_err();
    assert!(
        matches!(missing, OpenError::NoSuchFolder { .. }),
        "{missing:?}"
    );
    let empty = Store::open(dir.path()).unwrap_err();
    assert!(matches!(empty, OpenError::NotAStore { .. }), "{empty:?}");
    assert_eq!(crate::problem::Problem::from(empty).code, "not-a-store");
}

#[test]
fn a_config_file_that_is_a_link_is_refused_not_followed() {
    let (dir, _, _) = scratch();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join(CONFIG_FILE)).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::ReadConfig {
                source: StoreError::Symlink,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn text_files_must_be_utf8() {
    let (dir, store, _) = scratch();
    fs::write(dir.path().join("meshes/m/mesh.toml"), [0xff, 0xfe]).unwrap();
    let err = store
        .read_text(Path::new("meshes/m/mesh.toml"))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotUtf8));
}

#[test]
fn a_missing_recipients_file_names_its_scope() {
    let (dir, store, _) = scratch();
    fs::remove_file(dir.path().join("global/recipients.txt")).unwrap();
    let err = store.recipients(&Scope::Global).unwrap_err();
    let p = crate::problem::Problem::from(err);
    assert_eq!(p.file.as_deref(), Some(Path::new("global/recipients.txt")));
    assert!(p.hint.unwrap().contains("--global"));
}

#[test]
fn put_many_writes_all_and_leaves_unchanged_files_alone() {
    let (dir, store, ids) = scratch();
    let docs = vec![doc("a", b"1"), doc("b", b"2")];
    let outcomes = store.put_many(&docs, Some(&ids)).unwrap();
    assert_eq!(outcomes, vec![WriteOutcome::Created, WriteOutcome::Created]);
    let before = fs::read(dir.path().join("meshes/m/secrets/a.age")).unwrap();
    let again = store
        .put_many(&[doc("a", b"1"), doc("b", b"3")], Some(&ids))
        .unwrap();
    assert_eq!(again, vec![WriteOutcome::Unchanged, WriteOutcome::Updated]);
    assert_eq!(
        fs::read(dir.path().join("meshes/m/secrets/a.age")).unwrap(),
        before
    );
    assert_eq!(
        store.load(&docs[1].id, &ids).unwrap().doc.data.expose(),
        b"3"
    );
}

#[test]
fn put_many_with_one_refused_path_writes_nothing() {
    let (dir, store, _) = scratch();
    fs::create_dir_all(dir.path().join("meshes/m/secrets")).unwrap();
    std::os::unix::fs::symlink("/tmp", dir.path().join("meshes/m/secrets/b.age")).unwrap();
    let err = store
        .put_many(&[doc("a", b"1"), doc("b", b"2")], None)
        .unwrap_err();
    assert!(matches!(err, WriteError::Refused { .. }), "{err:?}");
    assert!(!dir.path().join("meshes/m/secrets/a.age").exists());
}

#[test]
fn a_header_that_disagrees_with_the_path_is_moved() {
    let (dir, store, ids) = scratch();
    store.put(&doc("a", b"1"), None).unwrap();
    fs::copy(
        dir.path().join("meshes/m/secrets/a.age"),
        dir.path().join("meshes/m/secrets/b.age"),
    )
    .unwrap();
    let b = SecretId::new(Scope::mesh("m").unwrap(), "b").unwrap();
    let err = store.load(&b, &ids).unwrap_err();
    assert!(err.is_moved(), "{err:?}");
}

#[test]
fn write_targets_refuse_links_files_in_the_way_and_non_files() {
    let (dir, store, _) = scratch();
    let root = dir.path();
    let outside = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.join("meshes/m/secrets")).unwrap();
    fs::write(root.join("meshes/m/secrets/old.age"), b"x").unwrap();
    fs::create_dir(root.join("meshes/m/secrets/dir.age")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("meshes/linked")).unwrap();
    fs::write(root.join("meshes/file"), b"").unwrap();
    let mut targets = store.targets();
    let check = |targets: &mut Targets, rel: &str| targets.check(Path::new(rel));
    let refusal = |r: Result<Target, WriteError>| match r {
        Err(WriteError::Refused { source, .. }) => source.code(),
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        check(&mut targets, "meshes/m/secrets/old.age").unwrap(),
        Target::File
    );
    assert_eq!(
        check(&mut targets, "meshes/m/secrets/new.age").unwrap(),
        Target::Absent
    );
    assert_eq!(
        check(&mut targets, "meshes/new/secrets/a.age").unwrap(),
        Target::Absent,
        "a missing folder is created by the write"
    );
    assert_eq!(
        refusal(check(&mut targets, "meshes/m/secrets/dir.age")),
        "not-regular-file"
    );
    // Every file below a link is refused, the link looked at once.
    for name in ["a", "b"] {
        let r = check(&mut targets, &format!("meshes/linked/secrets/{name}.age"));
        assert_eq!(refusal(r), "symlink");
    }
    assert_eq!(
        refusal(check(&mut targets, "meshes/file/secrets/a.age")),
        "not-a-folder"
    );
    std::os::unix::fs::symlink("/etc/passwd", root.join("meshes/m/secrets/l.age")).unwrap();
    assert_eq!(
        refusal(check(&mut targets, "meshes/m/secrets/l.age")),
        "symlink"
    );
    // The one-file check says the same.
    assert_eq!(
        refusal(store.ensure_no_symlinks(Path::new("meshes/linked/x"))),
        "symlink"
    );
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
}

#[test]
fn put_many_through_a_linked_folder_writes_nothing_anywhere() {
    let (dir, store, _) = scratch();
    let outside = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("meshes/m")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("meshes/m/secrets")).unwrap();
    let err = store
        .put_many(&[doc("a", b"1"), doc("b", b"2")], None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            WriteError::Refused {
                source: StoreError::Symlink,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
}

/// A folder that many files of a batch go into is listed once and the
/// listing answers: it must say what a look at each file says.
#[test]
fn a_listed_folder_tells_the_same_as_a_look_at_each_file() {
    let (dir, store, _) = scratch();
    let secrets = dir.path().join("meshes/m/secrets");
    fs::create_dir_all(&secrets).unwrap();
    fs::write(secrets.join("old.age"), b"x").unwrap();
    fs::create_dir(secrets.join("dir.age")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", secrets.join("l.age")).unwrap();
    let names = ["old", "dir", "l", "new"];
    let judge = |r: Result<Target, WriteError>| match r {
        Ok(t) => format!("{t:?}"),
        Err(WriteError::Refused { source, .. }) => source.code().to_string(),
        Err(e) => panic!("{e:?}"),
    };
    let alone: Vec<String> = names
        .iter()
        .map(|n| judge(store.ensure_no_symlinks(&secrets_path(n))))
        .collect();
    assert_eq!(alone, ["File", "not-regular-file", "symlink", "Absent"]);
    let mut targets = store.targets();
    for i in 0..2 * super::target::LIST_AFTER {
        let _ = targets.check(&secrets_path(&format!("x{i}")));
    }
    let listed: Vec<String> = names
        .iter()
        .map(|n| judge(targets.check(&secrets_path(n))))
        .collect();
    assert_eq!(listed, alone);
}

fn secrets_path(name: &str) -> PathBuf {
    PathBuf::from(format!("meshes/m/secrets/{name}.age"))
}

/// An unsigned rewrite removes the signature that no longer covers the
/// file; a file without one gets none.
#[test]
fn put_many_unsigned_drops_a_stale_signature() {
    let (dir, store, _) = scratch();
    let secrets = dir.path().join("meshes/m/secrets");
    store.put(&doc("a", b"1"), None).unwrap();
    fs::write(secrets.join("a.age.sig"), b"old signature").unwrap();
    store
        .put_many(&[doc("a", b"2"), doc("b", b"3")], None)
        .unwrap();
    assert!(!secrets.join("a.age.sig").exists(), "a stale .sig stayed");
    assert!(!secrets.join("b.age.sig").exists());
    assert!(secrets.join("b.age").exists());
}
