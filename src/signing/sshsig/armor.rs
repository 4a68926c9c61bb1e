//! The armor of a signature in the exact shape `ssh-keygen -Y sign` and
//! meshseal write it, decoded with a fast base64.
//!
//! ssh-key decodes PEM with base64ct, which is constant-time: right for
//! private keys, slow for a signature's public bytes, and a cold load reads
//! thousands of them. A `.sig` in the canonical shape (the BEGIN line, full
//! 70-character lines of padded base64 then one shorter or equal, the END
//! line, each ending in LF) is decoded here with the `base64` crate's strict
//! decoder and handed to ssh-key's own [`SshSig`] decoder; anything else, and
//! anything this decoder refuses, goes to [`SshSig::from_pem`], which keeps
//! its errors. The fuzz target `signature` checks that every input accepted
//! here is accepted by `from_pem` as the same signature.

use base64::Engine;
use ssh_encoding::{Decode, Reader};
use ssh_key::SshSig;

/// The armor's last line, LF included (the first is [`super::BEGIN`]).
const END: &[u8] = b"-----END SSH SIGNATURE-----\n";
/// ssh-keygen's (and ssh-key's) line width for a signature.
const WIDTH: usize = 70;

/// The signature in `armored`, when the armor has the canonical shape and
/// its content decodes; `None` sends the caller to [`SshSig::from_pem`].
pub(super) fn decode_canonical(armored: &[u8]) -> Option<SshSig> {
    let body = armored
        .strip_prefix(super::BEGIN)?
        .strip_prefix(b"\n")?
        .strip_suffix(END)?;
    let mut base64 = Vec::with_capacity(body.len());
    let mut lines = body.split_inclusive(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let text = line.strip_suffix(b"\n")?;
        let last = lines.peek().is_none();
        // Full lines, then one that is not longer; never an empty one.
        if text.is_empty() || text.len() > WIDTH || (!last && text.len() != WIDTH) {
            return None;
        }
        base64.extend_from_slice(text);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&base64)
        .ok()?;
    let mut reader = bytes.as_slice();
    let sig = SshSig::decode(&mut reader).ok()?;
    reader.finish(sig).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

    fn armored() -> String {
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        key.sign("meshseal", HashAlg::Sha256, b"x")
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    #[test]
    fn the_canonical_shape_decodes_as_ssh_key_decodes_it() {
        let text = armored();
        let fast = decode_canonical(text.as_bytes()).expect("canonical");
        assert_eq!(fast, SshSig::from_pem(&text).unwrap());
    }

    #[test]
    fn any_other_shape_is_left_to_ssh_key() {
        let text = armored();
        let crlf = text.replace('\n', "\r\n");
        let no_final_lf = text.trim_end().to_string();
        let mut lines: Vec<&str> = text.lines().collect();
        let joined = format!(
            "{}\n{}{}\n{}\n",
            lines[0],
            lines[1],
            lines[2],
            lines[3..].join("\n")
        );
        lines.insert(2, "");
        let blank = lines.join("\n") + "\n";
        let trailing = format!("{text}\n");
        let garbage = text.replacen("AAAA", "AA*A", 1);
        for other in [crlf, no_final_lf, joined, blank, trailing, garbage] {
            assert!(decode_canonical(other.as_bytes()).is_none(), "{other}");
        }
        // Trailing bytes after the signature inside valid base64.
        let sig = SshSig::from_pem(&text).unwrap();
        let mut bytes = Vec::new();
        ssh_encoding::Encode::encode(&sig, &mut bytes).unwrap();
        bytes.extend_from_slice(b"xyz");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(WIDTH)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let extra = format!(
            "-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n",
            lines.join("\n")
        );
        assert!(decode_canonical(extra.as_bytes()).is_none());
    }
}
