//! Age files made by hand with the `age` crate, never with meshseal's own
//! code, so the tests judge the on-disk format rather than re-use the
//! implementation under test: stock-age files, files with hand-made
//! metadata, tampered and truncated ciphertexts.

use std::collections::HashSet;
use std::io::Write;
use std::str::FromStr;

use age_core::format::{FileKey, Stanza};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Armor lines as age writes them.
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
const ARMOR_COLUMNS: usize = 64;

fn x25519(public: &str) -> age::x25519::Recipient {
    age::x25519::Recipient::from_str(public).expect("an age1 public key")
}

/// meshseal's header stanza, written by hand from SPEC section 2:
/// `-> meshseal v1 <scope> <name> <recipients fingerprint>`.
struct MetadataStanza {
    args: Vec<String>,
}

impl age::Recipient for MetadataStanza {
    fn wrap_file_key(
        &self,
        _file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        Ok((
            vec![Stanza {
                tag: "meshseal".to_string(),
                args: self.args.clone(),
                body: Vec::new(),
            }],
            HashSet::new(),
        ))
    }
}

fn encrypt_armored(plaintext: &[u8], recipients: Vec<Box<dyn age::Recipient>>) -> Vec<u8> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref())).expect("recipients");
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .expect("armor");
    let mut w = encryptor.wrap_output(armor).expect("encrypt");
    w.write_all(plaintext).expect("encrypt");
    w.finish().and_then(|a| a.finish()).expect("encrypt");
    out
}

/// What `age -R recipients.txt -a` makes: no meshseal metadata.
pub fn stock_encrypt(plaintext: &[u8], publics: &[&str]) -> Vec<u8> {
    let recipients = publics
        .iter()
        .map(|p| Box::new(x25519(p)) as Box<dyn age::Recipient>)
        .collect();
    encrypt_armored(plaintext, recipients)
}

/// A file with meshseal's header stanza saying `scope_tag` (`global` or
/// `mesh:<m>`), `name` and `fingerprint`, but any plaintext at all: what a
/// buggy or hostile tool could write.
pub fn encrypt_with_metadata(
    plaintext: &[u8],
    publics: &[&str],
    scope_tag: &str,
    name: &str,
    fingerprint: &str,
) -> Vec<u8> {
    let mut recipients: Vec<Box<dyn age::Recipient>> = vec![Box::new(MetadataStanza {
        args: vec![
            "v1".to_string(),
            scope_tag.to_string(),
            name.to_string(),
            fingerprint.to_string(),
        ],
    })];
    recipients.extend(
        publics
            .iter()
            .map(|p| Box::new(x25519(p)) as Box<dyn age::Recipient>),
    );
    encrypt_armored(plaintext, recipients)
}

/// The binary age file inside an armored one.
pub fn dearmor(armored: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(armored).expect("armored text");
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != ARMOR_BEGIN && *l != ARMOR_END)
        .collect();
    BASE64.decode(body).expect("armor body is base64")
}

/// Armors a binary age file the way age does (64 columns).
pub fn armor(binary: &[u8]) -> Vec<u8> {
    let body = BASE64.encode(binary);
    let mut out = format!("{ARMOR_BEGIN}\n");
    for chunk in body.as_bytes().chunks(ARMOR_COLUMNS) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push('\n');
    }
    out.push_str(ARMOR_END);
    out.push('\n');
    out.into_bytes()
}

/// Offset of the payload (after the header's `--- <mac>` line) in a binary
/// age file.
pub fn payload_offset(binary: &[u8]) -> usize {
    let mac = binary
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("age header ends with ---")
        + 1;
    mac + binary[mac..]
        .iter()
        .position(|&b| b == b'\n')
        .expect("mac line ends")
        + 1
}

/// One character of the armored body changed, inside the encrypted payload
/// (past the header and the 16-byte nonce): the armor stays valid, only
/// decryption can notice.
pub fn flip_payload_char(armored: &[u8]) -> Vec<u8> {
    let binary = dearmor(armored);
    let target = payload_offset(&binary) + 16 + 5;
    assert!(
        target + 8 < binary.len(),
        "payload too short to tamper with"
    );
    // The base64 character that encodes the first bits of byte `target`.
    let index = target / 3 * 4 + 1;
    let mut out = armored.to_vec();
    let body_start = ARMOR_BEGIN.len() + 1;
    // The random base64 text may have '+' or '/' there: take the next
    // letter or digit (a few bytes further, still inside the payload).
    let mut pos = body_start + index + index / ARMOR_COLUMNS;
    while !out[pos].is_ascii_alphanumeric() {
        pos += 1;
    }
    let c = out[pos];
    out[pos] = if c == b'A' { b'B' } else { b'A' };
    assert_ne!(dearmor(&out), binary, "the flip changed nothing");
    out
}

/// A re-armored file whose payload lost its last `n` bytes: valid armor, a
/// complete header, a truncated ciphertext.
pub fn truncate_payload(armored: &[u8], n: usize) -> Vec<u8> {
    let binary = dearmor(armored);
    assert!(binary.len() - n > payload_offset(&binary) + 16);
    armor(&binary[..binary.len() - n])
}
