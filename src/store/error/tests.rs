use super::*;
use crate::signing::sshsig::MAX_SIGNATURE_BYTES;
use crate::store::MAX_TEXT_FILE_BYTES;

#[test]
fn too_large_says_what_the_limit_is_for() {
    let too_large = |rel: &str, limit: usize| StoreError::TooLarge {
        size: limit as u64 + 1,
        limit,
        kind: ReadKind::of(Path::new(rel)),
    };
    // The kind comes from the path, whatever the limit: a secret whose
    // limit happens to equal the text files' is still a secret.
    let text = format!("more than the {MAX_TEXT_FILE_BYTES} bytes any valid secret needs");
    let secret = too_large("meshes/default/secrets/a.age", MAX_TEXT_FILE_BYTES);
    assert!(secret.to_string().ends_with(&text));
    let sig = "file is 16385 bytes, more than the 16384 bytes any valid signature needs";
    let signature = too_large("meshes/default/secrets/a.age.sig", MAX_SIGNATURE_BYTES);
    assert_eq!(signature.to_string(), sig);
    assert_eq!(
        ReadKind::of(Path::new("global/writers.txt.sig")),
        ReadKind::Signature
    );
    assert_eq!(
        ReadKind::of(Path::new("meshes/default/recipients.txt")),
        ReadKind::Text
    );
    let config = OpenError::ReadConfig {
        file: PathBuf::from("meshseal.toml"),
        source: too_large("meshseal.toml", MAX_TEXT_FILE_BYTES),
    };
    assert_eq!(
        crate::problem::Problem::from(config).to_string(),
        "meshseal.toml: file is 1048577 bytes, more than the 1048576 bytes any valid text file of the store needs"
    );
}
