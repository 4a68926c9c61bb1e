//! The index over a temporary store: updates, rescans, removals.
use std::str::FromStr;

use super::*;
use crate::document::SecretData;
use crate::recipients::Recipient;
use std::fs;

fn store_with(n: usize) -> (tempfile::TempDir, Store, Identities) {
    let dir = tempfile::tempdir().unwrap();
    let (text, public) = crate::identity::generate();
    let identities = Identities::from_age_text(&text).unwrap();
    let recipient = Recipient::from_str(&public).unwrap();
    let (store, _) = crate::init::init(dir.path(), &[recipient]).unwrap();
    for i in 0..n {
        let id = SecretId::new(Scope::Mesh("default".into()), &format!("s{i}")).unwrap();
        let doc = Document::new(id, SecretData::new(format!("v{i}").into_bytes()));
        store.put(&doc, None).unwrap();
    }
    (dir, store, identities)
}

fn id(name: &str) -> SecretId {
    SecretId::new(Scope::Mesh("default".into()), name).unwrap()
}

#[test]
fn removing_a_folder_removes_exactly_the_secrets_below_it() {
    let (dir, store, ids) = store_with(2);
    for (scope, name) in [
        (Scope::Mesh("default-b".into()), "s0"),
        (Scope::Mesh("b".into()), "s0"),
        (Scope::Global, "g"),
    ] {
        let sid = SecretId::new(scope.clone(), name).unwrap();
        if store.recipients(&scope).is_err() {
            let text = store.recipients_text(&Scope::Mesh("default".into()));
            store.write_recipients(&scope, &text.unwrap()).unwrap();
        }
        store
            .put(&Document::new(sid, SecretData::new(b"x".to_vec())), None)
            .unwrap();
    }
    let index = Index::load(&store, &ids).unwrap();
    let all = index.len();
    let names = |rel: &str| -> Vec<String> {
        let mut v: Vec<String> = index
            .ids_under(Path::new(rel))
            .iter()
            .map(|id| id.path().display().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names("meshes/default"),
        [
            "meshes/default/secrets/s0.age",
            "meshes/default/secrets/s1.age"
        ]
    );
    assert_eq!(
        names("meshes/default/secrets/s1.age"),
        ["meshes/default/secrets/s1.age"]
    );
    assert_eq!(names("meshes/b/secrets"), ["meshes/b/secrets/s0.age"]);
    assert_eq!(names("global"), ["global/secrets/g.age"]);
    assert_eq!(names("meshes").len(), all - 1);
    assert_eq!(names("").len(), all);
    assert!(names("meshes/defaul").is_empty());
    drop(dir);
}

#[test]
fn keys_under_a_folder_are_a_range() {
    let map: OrdMap<PathBuf, ()> = [
        "meshes/a",
        "meshes/a-b/secrets/y.age",
        "meshes/a.b/secrets/y.age",
        "meshes/a/secrets/x.age",
        "meshes/a/z",
        "meshes/aa/secrets/x.age",
        "meshes/0/secrets/x.age",
    ]
    .into_iter()
    .map(|p| (PathBuf::from(p), ()))
    .collect();
    let got = keys_under(&map, Path::new("meshes/a"));
    let want: Vec<PathBuf> = ["meshes/a", "meshes/a/secrets/x.age", "meshes/a/z"]
        .into_iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn rescan_decrypts_only_changed_files() {
    let (_dir, store, ids) = store_with(5);
    let first = Index::load(&store, &ids).unwrap();
    assert_eq!((first.generation(), first.len()), (1, 5));
    assert_eq!(first.counters().decrypted, 5);
    let (same, stats) = first.rescan(&store, &ids, false).unwrap();
    assert_eq!((stats.hashed, stats.decrypted), (5, 0));
    assert!(same.same_content(&first));
    let doc = Document::new(id("s1"), SecretData::new(b"new".to_vec()));
    store.put(&doc, None).unwrap();
    let (next, stats) = same.rescan(&store, &ids, false).unwrap();
    assert_eq!(stats.decrypted, 1);
    assert_eq!(stats.changed, vec![id("s1")]);
    assert_eq!(next.get(&id("s1")).unwrap().doc.data.expose(), b"new");
    assert_eq!(next.generation(), 3);
    // A file gone between two walks leaves with its secret.
    fs::remove_file(store.root().join(id("s2").path())).unwrap();
    let (after, stats) = next.rescan(&store, &ids, false).unwrap();
    assert_eq!((stats.removed, stats.decrypted), (vec![id("s2")], 0));
    assert!(after.get(&id("s2")).is_none() && after.len() == 4);
}

#[test]
fn bad_new_version_keeps_the_last_good_and_deletes_leave() {
    let (dir, store, ids) = store_with(3);
    let index = Index::load(&store, &ids).unwrap();
    let path = id("s0").path();
    fs::write(dir.path().join(&path), b"garbage").unwrap();
    let changed: BTreeSet<PathBuf> = [path.clone()].into();
    let (next, stats) = index.update(&store, &ids, &changed);
    assert_eq!(stats.new_problems.len(), 1);
    assert_eq!(next.get(&id("s0")).unwrap().doc.data.expose(), b"v0");
    assert_eq!(next.problem_count(), 1);
    // The same bad bytes again: nothing new is reported or decrypted.
    let (again, stats) = next.update(&store, &ids, &changed);
    assert!(stats.new_problems.is_empty() && stats.decrypted == 0);
    // A whole folder gone: every entry under it leaves with it.
    fs::remove_dir_all(dir.path().join("meshes/default")).unwrap();
    let gone: BTreeSet<PathBuf> = [PathBuf::from("meshes/default")].into();
    let (empty, stats) = again.update(&store, &ids, &gone);
    assert_eq!(stats.removed.len(), 3);
    assert!(empty.is_empty());
    assert_eq!(empty.problem_count(), 0);
}
