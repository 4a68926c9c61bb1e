//! `meshseal textconv`: what `git diff` shows of a secret file.
//!
//! git hands the driver a temporary copy of each side of the diff. With an
//! identity, the document is shown with `data` replaced by its length and a
//! short sha256 of the value (so a reviewer sees *that* it changed, never
//! what to); `--reveal` shows it whole. Without an identity, the readable
//! header metadata and the ciphertext digest are shown. textconv never fails
//! a diff: problems are printed as comments in the output.

use sha2::{Digest, Sha256};

use crate::document::Document;
use crate::envelope;
use crate::identity::Identities;
use crate::recipients::hex;

/// Renders a secret file for `git diff`.
pub fn render(
    bytes: &[u8],
    identities: Option<&Identities>,
    reveal: bool,
    max_data_bytes: usize,
) -> String {
    let mut out = String::new();
    match envelope::read_header(bytes) {
        Ok(header) => match &header.metadata {
            Some(m) => out.push_str(&format!(
                "# meshseal: {} {} (recipients {})\n",
                m.id.scope.to_tag(),
                m.id.name,
                m.recipients_fingerprint
            )),
            None => out.push_str("# age file without meshseal metadata\n"),
        },
        Err(e) => {
            out.push_str(&format!("# not a valid secret file: {e}\n"));
            return out;
        }
    }
    let Some(identities) = identities else {
        out.push_str(&format!(
            "# ciphertext sha256:{} (no identity: content not shown)\n",
            hex(&Sha256::digest(bytes)[..8])
        ));
        return out;
    };
    let max_plain = max_data_bytes.saturating_mul(4) / 3 + 64 * 1024;
    let plaintext = match envelope::decrypt(bytes, identities, max_plain) {
        Ok(p) => p,
        Err(e) => {
            out.push_str(&format!(
                "# cannot decrypt: {e}\n# ciphertext sha256:{}\n",
                hex(&Sha256::digest(bytes)[..8])
            ));
            return out;
        }
    };
    match Document::parse(&plaintext, max_data_bytes) {
        Ok(doc) if reveal => out.push_str(&doc.to_toml()),
        Ok(doc) => out.push_str(&doc.to_toml_redacted()),
        Err(e) => out.push_str(&format!("# invalid document: {e}\n")),
    }
    out
}
