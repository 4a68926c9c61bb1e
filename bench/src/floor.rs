//! The floor: the age crate alone decrypting every secret file of a store in
//! parallel (rayon, `Decryptor::new_buffered` over the armor), with no
//! parsing, no validation and no index — what no secret loader can beat.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::armor::ArmoredReader;
use rayon::prelude::*;

/// The X25519 key of an age identity file.
pub fn identity(file: &Path) -> age::x25519::Identity {
    let text = fs::read_to_string(file).expect("read identity");
    let line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("an AGE-SECRET-KEY line");
    age::x25519::Identity::from_str(line).expect("identity parses")
}

/// Every `*.age` file below `root/meshes` and `root/global`.
pub fn secret_files(root: &Path) -> Vec<PathBuf> {
    ["meshes", "global"]
        .iter()
        .flat_map(|top| walkdir::WalkDir::new(root.join(top)))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "age"))
        .map(|e| e.into_path())
        .collect()
}

/// Walks, reads and decrypts every secret file; returns the plaintext bytes.
pub fn load(root: &Path, key: &age::x25519::Identity) -> usize {
    secret_files(root)
        .par_iter()
        .map(|path| {
            let bytes = fs::read(path).expect("read secret");
            let decryptor =
                age::Decryptor::new_buffered(ArmoredReader::new(&bytes[..])).expect("age header");
            let mut reader = decryptor
                .decrypt(std::iter::once(key as &dyn age::Identity))
                .expect("decrypt");
            let mut plaintext = Vec::with_capacity(bytes.len());
            reader.read_to_end(&mut plaintext).expect("payload");
            plaintext.len()
        })
        .sum()
}
