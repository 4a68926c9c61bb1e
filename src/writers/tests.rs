use std::fs;

use ssh_key::{Algorithm, PrivateKey};

use super::*;
use crate::document::{Document, SecretData};
use crate::scope::SecretId;
use crate::signing::Signer;
use crate::store::{Signing, Store};

struct Fixture {
    _dir: tempfile::TempDir,
    trust_path: PathBuf,
    admin: PrivateKey,
    writer: PrivateKey,
    root: PathBuf,
}

fn key() -> PrivateKey {
    PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap()
}

fn signer(key: &PrivateKey) -> Signer {
    Signer::from_private_key(key.clone()).unwrap()
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let (_, public) = crate::identity::generate();
        fs::create_dir_all(root.join("meshes/m")).unwrap();
        fs::write(
            root.join("meshseal.toml"),
            "store_id = \"0123456789abcdef\"\n",
        )
        .unwrap();
        fs::write(root.join("meshes/m/recipients.txt"), format!("{public}\n")).unwrap();
        let admin = key();
        let trust_dir = dir.path().join("trust");
        fs::create_dir(&trust_dir).unwrap();
        let trust_path = trust_dir.join("trust.txt");
        fs::write(
            &trust_path,
            format!("admin@x {}\n", admin.public_key().to_openssh().unwrap()),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&trust_dir, fs::Permissions::from_mode(0o700)).unwrap();
            fs::set_permissions(&trust_path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let fx = Fixture {
            _dir: dir,
            trust_path,
            admin,
            writer: key(),
            root,
        };
        let scope = Scope::mesh("m").unwrap();
        let admin_store = fx.store(Some(&fx.admin));
        admin::add(&admin_store, &scope, "alice@x", fx.writer.public_key()).unwrap();
        let report = admin::sign(&admin_store, &[scope]).unwrap();
        assert!(report.refused.is_empty(), "{report:?}");
        fx
    }

    fn trust(&self) -> TrustRoot {
        TrustRoot::load(&self.trust_path).unwrap()
    }

    fn store(&self, key: Option<&PrivateKey>) -> Store {
        Store::open(&self.root)
            .unwrap()
            .with_signing(Signing {
                signer: key.map(signer),
                trust: Some(self.trust()),
            })
            .unwrap()
    }

    fn verdict(&self, name: &str) -> Result<Verdict, Refusal> {
        let store = self.store(None);
        let mut verifier = store.verifier().unwrap();
        let read = |rel: &Path| match store.read_file(rel, 1 << 20) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        };
        let scope = Scope::mesh("m").unwrap();
        verifier.load_scope(&scope, &read);
        let id = SecretId::new(scope, name).unwrap();
        let bytes = fs::read(self.root.join(id.path())).unwrap();
        let sig = fs::read(self.root.join(id.sig_path())).ok();
        verifier.secret(&id, &bytes, sig.as_deref())
    }

    fn put(&self, key: Option<&PrivateKey>, name: &str, value: &[u8]) {
        let id = SecretId::new(Scope::mesh("m").unwrap(), name).unwrap();
        self.store(key)
            .put(&Document::new(id, SecretData::new(value.to_vec())), None)
            .unwrap();
    }
}

fn code(r: Result<Verdict, Refusal>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn a_writer_signs_and_each_generation_is_one_more() {
    let fx = Fixture::new();
    fx.put(Some(&fx.writer), "a", b"1");
    assert_eq!(fx.verdict("a").unwrap().generation, 1);
    fx.put(Some(&fx.writer), "a", b"2");
    let v = fx.verdict("a").unwrap();
    assert_eq!(v.generation, 2);
    assert_eq!(v.principals, vec!["alice@x".to_string()]);
    assert_eq!(
        v.signer,
        fx.writer.public_key().fingerprint(ssh_key::HashAlg::Sha256)
    );
}

#[test]
fn unsigned_forged_and_stranger_writes_are_refused() {
    let fx = Fixture::new();
    fx.put(None, "a", b"forged");
    assert_eq!(code(fx.verdict("a")), "unsigned");
    fx.put(Some(&key()), "a", b"stranger");
    assert_eq!(code(fx.verdict("a")), "unknown-writer");
    fx.put(Some(&fx.writer), "a", b"good");
    fx.put(Some(&fx.writer), "b", b"other");
    // The signature of b over a's bytes: bad.
    fs::copy(
        fx.root.join("meshes/m/secrets/b.age.sig"),
        fx.root.join("meshes/m/secrets/a.age.sig"),
    )
    .unwrap();
    let err = fx.verdict("a").unwrap_err();
    assert_eq!(err.code(), "bad-signature");
    assert!(err.to_string().contains(
        &fx.writer
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    ));
}

#[test]
fn scope_files_must_be_signed_by_an_admin_and_bound() {
    let fx = Fixture::new();
    fx.put(Some(&fx.writer), "a", b"1");
    // A pusher appends a reader: the recipients file no longer verifies.
    let path = fx.root.join("meshes/m/recipients.txt");
    let mut text = fs::read_to_string(&path).unwrap();
    let (_, other) = crate::identity::generate();
    text.push_str(&format!("{other}\n"));
    fs::write(&path, &text).unwrap();
    assert_eq!(code(fx.verdict("a")), "untrusted-recipients-file");
    // And writing to it is refused.
    let id = SecretId::new(Scope::mesh("m").unwrap(), "b").unwrap();
    let err = fx
        .store(Some(&fx.writer))
        .put(&Document::new(id, SecretData::new(b"x".to_vec())), None)
        .unwrap_err();
    assert_eq!(err.code(), "untrusted-recipients-file");
    // An admin signs it; then writers.txt signed by a non-admin is refused.
    let admin_store = fx.store(Some(&fx.admin));
    admin_store
        .write_scope_file(&Scope::mesh("m").unwrap(), ScopeFile::Recipients, &text)
        .unwrap();
    assert!(fx.verdict("a").is_ok());
    let stranger = fx.store(Some(&key()));
    let err = admin::add(
        &stranger,
        &Scope::mesh("m").unwrap(),
        "eve@x",
        key().public_key(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "not-an-admin");
}

#[test]
fn a_removed_writer_no_longer_verifies_and_is_named() {
    let fx = Fixture::new();
    fx.put(Some(&fx.writer), "a", b"1");
    let scope = Scope::mesh("m").unwrap();
    let removed = admin::remove(&fx.store(Some(&fx.admin)), &scope, "alice@x").unwrap();
    assert_eq!(
        removed.to_resign,
        vec![PathBuf::from("meshes/m/secrets/a.age")]
    );
    assert_eq!(code(fx.verdict("a")), "unknown-writer");
}

#[test]
fn a_file_from_another_store_is_wrong_binding() {
    let fx = Fixture::new();
    fx.put(Some(&fx.writer), "a", b"1");
    fs::write(
        fx.root.join("meshseal.toml"),
        "store_id = \"fedcba9876543210\"\n",
    )
    .unwrap();
    // The scope files are bound to the old id too: they are refused first.
    assert_eq!(code(fx.verdict("a")), "untrusted-writers-file");
}

#[test]
fn required_signatures_refuse_unsigned_writes() {
    let fx = Fixture::new();
    fs::write(
        fx.root.join("meshseal.toml"),
        "store_id = \"0123456789abcdef\"\nsignatures = \"required\"\n",
    )
    .unwrap();
    let id = SecretId::new(Scope::mesh("m").unwrap(), "a").unwrap();
    let err = fx
        .store(None)
        .put(&Document::new(id, SecretData::new(b"x".to_vec())), None)
        .unwrap_err();
    assert_eq!(err.code(), "sign-key-required");
}

#[test]
fn adopting_a_store_id_keeps_the_rest_of_the_config() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("global")).unwrap();
    fs::write(
        dir.path().join("meshseal.toml"),
        "# mine\nversion = 1\n\n[limits]\nmax_data_bytes = 10\n",
    )
    .unwrap();
    let store = Store::open(dir.path())
        .unwrap()
        .with_signing(Signing {
            signer: Some(signer(&key())),
            trust: None,
        })
        .unwrap();
    let id = store.config().store_id.clone().unwrap();
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.config().store_id.as_deref(), Some(id.as_str()));
    assert_eq!(reopened.config().limits.max_data_bytes, 10);
}
