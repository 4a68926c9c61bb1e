//! Store generation: 100 meshes, one X25519 recipient, secrets of a fixed
//! size, encrypted in parallel with the library's own `envelope::encrypt` (the
//! same bytes `meshseal create` would write, without its per-file fsync).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rayon::prelude::*;

use meshseal::document::{Document, SecretData};
use meshseal::envelope::{self, Metadata};
use meshseal::recipients::{Recipient, RecipientSet};
use meshseal::scope::{Scope, SecretId};

/// Meshes the secrets are spread over.
pub const MESHES: usize = 100;
/// Raw bytes of each secret's data.
pub const SECRET_BYTES: usize = 200;

/// One X25519 key pair, written as an age identity file (mode 0600).
pub struct Key {
    pub identity_file: PathBuf,
    pub public: String,
    pub recipients: RecipientSet,
}

impl Key {
    pub fn generate(dir: &Path) -> Key {
        let (secret_text, public) = meshseal::identity::generate();
        let identity_file = dir.join("identity.txt");
        fs::write(&identity_file, secret_text.as_bytes()).expect("write identity");
        fs::set_permissions(&identity_file, fs::Permissions::from_mode(0o600))
            .expect("chmod identity");
        let recipients = RecipientSet::from_recipients(vec![
            Recipient::from_str(&public).expect("own public key parses")
        ]);
        Key {
            identity_file,
            public,
            recipients,
        }
    }
}

/// The id of secret number `i`.
pub fn secret_id(i: usize) -> SecretId {
    let mesh = format!("m{:03}", i % MESHES);
    SecretId::new(Scope::Mesh(mesh), &format!("s{i:06}")).expect("valid generated name")
}

/// Deterministic data for secret `i`, version `version`.
pub fn secret_data(i: usize, version: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64((i as u64) << 16 ^ version);
    let mut bytes = vec![0u8; SECRET_BYTES];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// The armored age file of secret `i` at `version`.
pub fn ciphertext(key: &Key, i: usize, version: u64) -> Vec<u8> {
    let id = secret_id(i);
    let doc = Document::new(id.clone(), SecretData::new(secret_data(i, version)));
    let metadata = Metadata {
        id,
        recipients_fingerprint: key.recipients.fingerprint(),
        store_id: None,
        generation: 0,
    };
    envelope::encrypt(doc.to_toml().as_bytes(), &key.recipients, &metadata).expect("encrypt")
}

/// An empty store: config, recipients for every mesh and for global.
pub fn empty_store(root: &Path, key: &Key) {
    fs::create_dir_all(root).expect("store dir");
    fs::write(
        root.join("meshseal.toml"),
        "version = 1\n\n[limits]\nmax_data_bytes = 1048576\n",
    )
    .expect("config");
    let attributes = format!("{}\n", meshseal::init::GITATTRIBUTES_LINE);
    fs::write(root.join(".gitattributes"), attributes).expect("gitattributes");
    let recipients = format!("# benchmark key\n{}\n", key.public);
    let scopes = (0..MESHES)
        .map(|m| Scope::Mesh(format!("m{m:03}")))
        .chain(std::iter::once(Scope::Global));
    for scope in scopes {
        let dir = root.join(scope.secrets_dir());
        fs::create_dir_all(&dir).expect("secrets dir");
        fs::write(root.join(scope.recipients_path()), &recipients).expect("recipients");
    }
}

/// A store of `count` secrets (version 0 of each).
pub fn store(root: &Path, key: &Key, count: usize) {
    empty_store(root, key);
    (0..count).into_par_iter().for_each(|i| {
        let bytes = ciphertext(key, i, 0);
        fs::write(root.join(secret_id(i).path()), bytes).expect("write secret");
    });
}

/// The Kuma Universal YAML that `meshseal apply -f` takes for `count` secrets.
pub fn apply_yaml(count: usize) -> String {
    use base64::Engine;
    let mut out = String::with_capacity(count * 360);
    for i in 0..count {
        let id = secret_id(i);
        let data = base64::engine::general_purpose::STANDARD.encode(secret_data(i, 0));
        let mesh = id.scope.mesh_name().expect("mesh scope");
        out.push_str(&format!(
            "type: Secret\nmesh: {mesh}\nname: {}\ndata: {data}\n---\n",
            id.name
        ));
    }
    out
}

/// The same document as a plain YAML file for `sops -e`.
pub fn sops_plain_yaml(i: usize) -> String {
    use base64::Engine;
    let id = secret_id(i);
    let data = base64::engine::general_purpose::STANDARD.encode(secret_data(i, 0));
    format!(
        "type: Secret\nmesh: {}\nname: {}\ndata: {data}\n",
        id.scope.mesh_name().expect("mesh scope"),
        id.name
    )
}

/// Writes `bytes` over `path` the way `git checkout` does (no fsync).
pub fn overwrite(path: &Path, bytes: &[u8]) {
    let mut f = fs::File::create(path).expect("overwrite");
    f.write_all(bytes).expect("overwrite");
}
