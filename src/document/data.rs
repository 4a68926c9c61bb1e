//! Secret bytes ([`SecretData`]) and the rules for them: non-empty, within
//! the store's limit, and in a document standard padded base64.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use super::DocumentError;

/// Secret bytes. Zeroed on drop; `Debug` shows only the length.
pub struct SecretData(SecretBox<[u8]>);

impl SecretData {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretData(SecretBox::new(bytes.into_boxed_slice()))
    }

    /// The bytes, for the few places that must see them (encrypt, serve).
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data in standard padded base64, zeroed on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.expose()))
    }
}

impl Clone for SecretData {
    fn clone(&self) -> Self {
        SecretData::new(self.expose().to_vec())
    }
}

impl PartialEq for SecretData {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretData([REDACTED {} bytes])", self.len())
    }
}
/// Decodes base64 `data` with the checks Kuma applies: non-empty, valid, bounded.
pub fn decode_data(encoded: &str, max_data_bytes: usize) -> Result<SecretData, DocumentError> {
    if encoded.is_empty() {
        return Err(DocumentError::EmptyData { line: None });
    }
    // base64 expands 3 bytes to 4: refuse oversized input before allocating,
    // reporting the decoded size (exact for well-formed padded input).
    let padding = encoded
        .bytes()
        .rev()
        .take_while(|&b| b == b'=')
        .count()
        .min(2);
    let decoded = (encoded.len() / 4 * 3).saturating_sub(padding);
    if decoded > max_data_bytes {
        return Err(DocumentError::TooLarge {
            size: decoded,
            limit: max_data_bytes,
        });
    }
    let bytes = Zeroizing::new(
        BASE64
            .decode(encoded.as_bytes())
            .map_err(|_| DocumentError::InvalidBase64 { line: 0 })?,
    );
    check_data(&bytes, max_data_bytes)?;
    Ok(SecretData::new(bytes.to_vec()))
}

/// Checks raw data bytes: non-empty and within the limit.
pub fn check_data(bytes: &[u8], max_data_bytes: usize) -> Result<(), DocumentError> {
    if bytes.is_empty() {
        return Err(DocumentError::EmptyData { line: None });
    }
    if bytes.len() > max_data_bytes {
        return Err(DocumentError::TooLarge {
            size: bytes.len(),
            limit: max_data_bytes,
        });
    }
    Ok(())
}
