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

/// A store whose mesh `default` has admin-signed `recipients.txt` and
/// `writers.txt` (SPEC 9), written as each key says.
mod signed {
    use super::*;
    use crate::scope::ScopeFile;
    use crate::signing::{Namespace, Signer, TrustRoot};
    use crate::store::Signing;
    use crate::writers::history::Seen;
    use ssh_key::{Algorithm, PrivateKey};
    use std::os::unix::fs::PermissionsExt;

    pub(super) fn key() -> PrivateKey {
        PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap()
    }

    pub(super) struct SignedStore {
        _dir: tempfile::TempDir,
        _trust_dir: tempfile::TempDir,
        pub store: Store,
        pub ids: Identities,
        pub trust: TrustRoot,
        pub admin: PrivateKey,
    }

    fn line(principal: &str, key: &PrivateKey) -> String {
        format!("{principal} {}\n", key.public_key().to_openssh().unwrap())
    }

    impl SignedStore {
        /// `writers` are the scope's writers, by principal.
        pub fn new(writers: &[(&str, &PrivateKey)]) -> SignedStore {
            let (dir, store, ids) = store_with(0);
            let trust_dir = tempfile::tempdir().unwrap();
            let admin = key();
            let path = trust_dir.path().join("trust.txt");
            fs::write(&path, line("admin@test", &admin)).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let trust = TrustRoot::load(&path).unwrap();
            let mut s = SignedStore {
                _dir: dir,
                _trust_dir: trust_dir,
                store: store.clone(),
                ids,
                trust,
                admin,
            };
            s.store = s.as_key(None);
            let scope = Scope::Mesh("default".into());
            let text = s.store.recipients_text(&scope).unwrap();
            s.as_admin().write_recipients(&scope, &text).unwrap();
            s.set_writers(writers);
            s
        }

        /// The store, writing (and signing) with `key`; reading under the
        /// trust root.
        pub fn as_key(&self, key: Option<&PrivateKey>) -> Store {
            Store::open(self.store.root())
                .unwrap()
                .with_signing(Signing {
                    signer: key.map(|k| Signer::from_private_key(k.clone()).unwrap()),
                    trust: Some(self.trust.clone()),
                })
                .unwrap()
        }

        pub fn as_admin(&self) -> Store {
            self.as_key(Some(&self.admin))
        }

        /// Rewrites `writers.txt`, signed by the admin.
        pub fn set_writers(&self, writers: &[(&str, &PrivateKey)]) {
            let text: String = writers.iter().map(|(p, k)| line(p, k)).collect();
            self.as_admin()
                .write_scope_file(&Scope::Mesh("default".into()), ScopeFile::Writers, &text)
                .unwrap();
        }

        /// Writes a secret as `key` (unsigned without one).
        pub fn put(&self, key: Option<&PrivateKey>, name: &str, value: &str) {
            let doc = Document::new(id(name), SecretData::new(value.as_bytes().to_vec()));
            self.as_key(key).put(&doc, None).unwrap();
        }

        /// Signs the file of `name` as it is with `key` (a re-sign).
        pub fn resign(&self, key: &PrivateKey, name: &str) {
            let bytes = fs::read(self.store.root().join(id(name).path())).unwrap();
            let sig = Signer::from_private_key(key.clone())
                .unwrap()
                .sign(Namespace::Secret, &bytes)
                .unwrap();
            fs::write(self.store.root().join(id(name).sig_path()), sig).unwrap();
        }

        pub fn files(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
            let root = self.store.root();
            (
                fs::read(root.join(id(name).path())).unwrap(),
                fs::read(root.join(id(name).sig_path())).unwrap(),
            )
        }

        /// The bytes of a scope file's signature.
        pub fn files_of(&self, file: &str) -> Vec<u8> {
            fs::read(
                self.store
                    .root()
                    .join("meshes/default")
                    .join(format!("{file}.sig")),
            )
            .unwrap()
        }

        pub fn restore(&self, name: &str, files: &(Vec<u8>, Vec<u8>)) {
            let root = self.store.root();
            fs::write(root.join(id(name).path()), &files.0).unwrap();
            fs::write(root.join(id(name).sig_path()), &files.1).unwrap();
        }
    }

    pub(super) fn value(index: &Index, name: &str) -> Option<Vec<u8>> {
        index.get(&id(name)).map(|s| s.doc.data.expose().to_vec())
    }

    /// The changed paths of a secret and its signature.
    pub(super) fn both(name: &str) -> BTreeSet<PathBuf> {
        [id(name).path(), id(name).sig_path()].into()
    }

    pub(super) fn code_of(index: &Index, name: &str) -> Option<&'static str> {
        index
            .refused()
            .find(|r| r.id == id(name))
            .map(|r| r.problem.code)
    }

    pub(super) fn refusals(index: &Index, code: &str) -> u64 {
        let slot = REFUSAL_CODES.iter().position(|c| *c == code).unwrap();
        index.counters().refusals[slot]
    }

    pub(super) fn seen_of(index: &Index) -> BTreeMap<PathBuf, Seen> {
        index
            .seen()
            .map(|(p, s)| (p.to_path_buf(), s.clone()))
            .collect()
    }
}

use signed::{both, code_of, key, refusals, seen_of, value, SignedStore};
use ssh_key::PrivateKey;

#[test]
fn a_forged_new_version_keeps_the_signed_one() {
    let writer = key();
    let s = SignedStore::new(&[("writer@test", &writer)]);
    s.put(Some(&writer), "db", "good");
    let index = Index::load(&s.store, &s.ids).unwrap();
    assert!(index.verifies());
    assert_eq!(value(&index, "db").as_deref(), Some(&b"good"[..]));
    assert_eq!(index.problem_count(), 0);

    // Written without a sign key, as `meshseal apply` by anyone can.
    s.put(None, "db", "forged-unsigned");
    let (next, stats) = index.update(&s.store, &s.ids, &both("db"));
    assert_eq!(value(&next, "db").as_deref(), Some(&b"good"[..]));
    assert_eq!(code_of(&next, "db"), Some("unsigned"));
    assert!(next.refused().all(|r| r.served));
    assert_eq!(stats.decrypted, 0, "a refused file is not decrypted");
    assert_eq!(stats.new_problems.len(), 1);
    assert_eq!(refusals(&next, "unsigned"), 1);

    // Signed, but by a key that is no writer of the scope.
    let stranger = key();
    s.put(Some(&stranger), "db", "forged-signed");
    let (next, _) = next.update(&s.store, &s.ids, &both("db"));
    assert_eq!(value(&next, "db").as_deref(), Some(&b"good"[..]));
    assert_eq!(code_of(&next, "db"), Some("unknown-writer"));
    let refused = next.refused().next().unwrap();
    assert!(refused.served);
    assert!(
        refused.problem.message.contains(
            &stranger
                .public_key()
                .fingerprint(Default::default())
                .to_string()
        ),
        "{}",
        refused.problem.message
    );

    // The writer writes again: served, and the problem is gone.
    s.put(Some(&writer), "db", "new");
    let (next, stats) = next.update(&s.store, &s.ids, &both("db"));
    assert_eq!(value(&next, "db").as_deref(), Some(&b"new"[..]));
    assert_eq!(stats.changed, vec![id("db")]);
    assert_eq!((next.problem_count(), next.refused().count()), (0, 0));
}

#[test]
fn an_older_signed_version_restored_is_a_rollback_also_after_a_restart() {
    let writer = key();
    let s = SignedStore::new(&[("writer@test", &writer)]);
    s.put(Some(&writer), "db", "old");
    let old = s.files("db");
    let index = Index::load(&s.store, &s.ids).unwrap();
    s.put(Some(&writer), "db", "new");
    let (index, _) = index.update(&s.store, &s.ids, &both("db"));
    assert_eq!(value(&index, "db").as_deref(), Some(&b"new"[..]));
    let changes = index.seen_changes();

    // `git show HEAD~1:…/db.age > …/db.age`, signature and all.
    s.restore("db", &old);
    let (next, stats) = index.update(&s.store, &s.ids, &both("db"));
    assert_eq!(value(&next, "db").as_deref(), Some(&b"new"[..]));
    assert_eq!(code_of(&next, "db"), Some("rollback"));
    assert_eq!((stats.decrypted, next.seen_changes()), (0, changes));

    // A restart that remembers what was seen refuses it too, and has
    // nothing older to serve meanwhile.
    let warm = Warm {
        secrets: Vec::new(),
        seen: seen_of(&next),
    };
    let restarted = Index::load_warm(&s.store, &s.ids, warm).unwrap();
    assert_eq!(value(&restarted, "db"), None);
    assert_eq!(code_of(&restarted, "db"), Some("rollback"));
    assert!(restarted.refused().all(|r| !r.served));
    // One that does not remember accepts it: that is what --state is for.
    let forgetful = Index::load(&s.store, &s.ids).unwrap();
    assert_eq!(value(&forgetful, "db").as_deref(), Some(&b"old"[..]));

    // Deleting the file keeps what was seen of its path.
    fs::remove_file(s.store.root().join(id("db").path())).unwrap();
    let (gone, _) = next.update(&s.store, &s.ids, &both("db"));
    assert_eq!(value(&gone, "db"), None);
    s.restore("db", &old);
    let (back, _) = gone.update(&s.store, &s.ids, &both("db"));
    assert_eq!(value(&back, "db"), None);
    assert_eq!(code_of(&back, "db"), Some("rollback"));
}

#[test]
fn a_writer_removed_from_writers_txt_has_their_secrets_dropped_until_re_signed() {
    let (leaver, stayer) = (key(), key());
    let s = SignedStore::new(&[("leaver@test", &leaver), ("stayer@test", &stayer)]);
    s.put(Some(&leaver), "a", "by-leaver-a");
    s.put(Some(&leaver), "b", "by-leaver-b");
    s.put(Some(&stayer), "c", "by-stayer");
    let index = Index::load(&s.store, &s.ids).unwrap();
    assert_eq!(index.len(), 3);
    let decrypted = index.counters().decrypted;

    // Someone edits writers.txt without an admin: it removes nobody, and
    // the last good versions stay served.
    let writers = s.store.root().join("meshes/default/writers.txt");
    let signed_writers = (fs::read(&writers).unwrap(), s.files_of("writers.txt"));
    fs::write(&writers, "nobody ssh-ed25519 AAAA\n").unwrap();
    let changed: BTreeSet<PathBuf> = [PathBuf::from("meshes/default/writers.txt")].into();
    let (edited, stats) = index.update(&s.store, &s.ids, &changed);
    assert_eq!(edited.len(), 3);
    assert_eq!(code_of(&edited, "a"), Some("untrusted-writers-file"));
    assert_eq!(stats.decrypted, 0);
    fs::write(&writers, &signed_writers.0).unwrap();
    let (index, _) = edited.update(&s.store, &s.ids, &changed);
    assert_eq!((index.len(), index.refused().count()), (3, 0));

    // An admin removes the leaver.
    s.set_writers(&[("stayer@test", &stayer)]);
    let changed: BTreeSet<PathBuf> = [
        PathBuf::from("meshes/default/writers.txt"),
        PathBuf::from("meshes/default/writers.txt.sig"),
    ]
    .into();
    let (next, stats) = index.update(&s.store, &s.ids, &changed);
    assert_eq!(value(&next, "a"), None);
    assert_eq!(value(&next, "b"), None);
    assert_eq!(value(&next, "c").as_deref(), Some(&b"by-stayer"[..]));
    assert_eq!(stats.removed, vec![id("a"), id("b")]);
    assert_eq!(stats.decrypted, 0);
    assert_eq!(code_of(&next, "a"), Some("unknown-writer"));
    let a = next.refused().find(|r| r.id == id("a")).unwrap();
    assert!(!a.served);
    assert!(
        a.problem.message.contains("no longer a writer"),
        "{}",
        a.problem.message
    );
    assert_eq!(stats.consequence(&a.problem), "not served");

    // A remaining writer re-signs: served again, without decrypting.
    s.resign(&stayer, "a");
    let sig: BTreeSet<PathBuf> = [id("a").sig_path()].into();
    let (resigned, stats) = next.update(&s.store, &s.ids, &sig);
    assert_eq!(value(&resigned, "a").as_deref(), Some(&b"by-leaver-a"[..]));
    assert_eq!(value(&resigned, "b"), None);
    assert_eq!(stats.changed, vec![id("a")]);
    assert_eq!(resigned.counters().decrypted, decrypted);
}

#[test]
fn a_changed_signature_is_judged_again_without_decrypting() {
    let (first, second) = (key(), key());
    let s = SignedStore::new(&[("first@test", &first), ("second@test", &second)]);
    s.put(Some(&first), "db", "value");
    s.put(Some(&first), "other", "x");
    let index = Index::load(&s.store, &s.ids).unwrap();
    let decrypted = index.counters().decrypted;
    assert_eq!(decrypted, 2);
    let fp = |k: &PrivateKey| k.public_key().fingerprint(Default::default());
    assert_eq!(
        index
            .get(&id("db"))
            .unwrap()
            .signed
            .as_ref()
            .unwrap()
            .verdict
            .signer,
        fp(&first)
    );

    // Re-signed by the other writer: the same bytes, a new verdict.
    s.resign(&second, "db");
    let sig: BTreeSet<PathBuf> = [id("db").sig_path()].into();
    let (next, stats) = index.update(&s.store, &s.ids, &sig);
    assert_eq!(stats.decrypted, 0);
    assert_eq!(next.counters().decrypted, decrypted);
    assert!(stats.changed.is_empty(), "the value did not change");
    let db = next.get(&id("db")).unwrap();
    assert_eq!(db.signed.as_ref().unwrap().verdict.signer, fp(&second));
    assert_eq!(db.doc.data.expose(), b"value");

    // A garbage signature: refused, the last good stays.
    fs::write(s.store.root().join(id("db").sig_path()), b"garbage").unwrap();
    let (bad, stats) = next.update(&s.store, &s.ids, &sig);
    assert_eq!(code_of(&bad, "db"), Some("bad-signature"));
    assert_eq!(value(&bad, "db").as_deref(), Some(&b"value"[..]));
    assert_eq!(stats.decrypted, 0);

    // recipients.txt edited without an admin (a reader added): every secret
    // of the scope is refused, none decrypted, the last good ones served.
    s.resign(&second, "db");
    let (fixed, _) = bad.update(&s.store, &s.ids, &sig);
    assert_eq!(fixed.refused().count(), 0);
    let recipients = s.store.root().join("meshes/default/recipients.txt");
    let text = fs::read_to_string(&recipients).unwrap();
    let (_, intruder) = crate::identity::generate();
    fs::write(&recipients, format!("{text}{intruder}\n")).unwrap();
    let changed: BTreeSet<PathBuf> = [PathBuf::from("meshes/default/recipients.txt")].into();
    let (untrusted, stats) = fixed.update(&s.store, &s.ids, &changed);
    assert_eq!(code_of(&untrusted, "db"), Some("untrusted-recipients-file"));
    assert_eq!(
        code_of(&untrusted, "other"),
        Some("untrusted-recipients-file")
    );
    assert_eq!(untrusted.len(), 2);
    assert_eq!(stats.decrypted, 0);
    // Restored: accepted again, still without decrypting.
    fs::write(&recipients, text).unwrap();
    let (restored, stats) = untrusted.update(&s.store, &s.ids, &changed);
    assert_eq!(
        (restored.refused().count(), restored.problem_count()),
        (0, 0)
    );
    assert_eq!(stats.decrypted, 0);
    assert_eq!(restored.counters().decrypted, decrypted);
    // A rescan finds nothing to do.
    let (_, stats) = restored.rescan(&s.store, &s.ids, false).unwrap();
    assert_eq!((stats.decrypted, stats.new_problems.len()), (0, 0));
}

#[test]
fn a_cold_load_in_many_slices_folds_every_file_once() {
    // 10 secrets, one of them corrupt, and a stray file: slices of 3 (in
    // unit tests), each folded while the next is examined.
    let (_dir, store, ids) = store_with(10);
    let bad = store.root().join(id("s4").path());
    fs::write(&bad, b"not age at all").unwrap();
    let stray = store.root().join("meshes/default/secrets/notes.txt");
    fs::write(&stray, b"stray").unwrap();
    let index = Index::load(&store, &ids).unwrap();
    assert_eq!(index.len(), 9);
    for i in (0..10).filter(|i| *i != 4) {
        let secret = index.get(&id(&format!("s{i}"))).unwrap();
        assert_eq!(secret.doc.data.expose(), format!("v{i}").as_bytes());
    }
    let problems: Vec<String> = index
        .problems()
        .map(|p| p.file.as_ref().unwrap().display().to_string())
        .collect();
    assert_eq!(
        problems,
        [
            "meshes/default/secrets/notes.txt",
            "meshes/default/secrets/s4.age"
        ]
    );
    assert_eq!(index.counters().decrypted, 10);
    // A rescan finds every file as the load left it.
    let (same, stats) = index.rescan(&store, &ids, false).unwrap();
    assert_eq!(stats.decrypted, 0);
    assert!(stats.new_problems.is_empty());
    assert!(same.same_content(&index));
}

/// Regression: every secret carried a 336-byte signature verdict inline,
/// signed or not (480 bytes a secret): at 100,000 secrets the watcher's
/// peak RSS was 112 MiB, over SPEC 5's 102 MiB.
#[test]
fn a_secret_entry_stays_small() {
    assert!(
        std::mem::size_of::<Secret>() <= 160,
        "Secret is {} bytes",
        std::mem::size_of::<Secret>()
    );
}
