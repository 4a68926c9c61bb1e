//! A secret's data read as PEM, and the checks a TLS certificate must pass
//! before it is served: rustls' own PEM reader and key loading
//! (`CertifiedKey::keys_match` compares the key's public half with the leaf
//! certificate's), x509-parser for validity, pem-rfc7468 to write the blocks
//! back. Nothing here is hand-rolled, and no error carries the data.

use pem_rfc7468::LineEnding;
use rustls::pki_types::pem::{self, PemObject as _, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use zeroize::Zeroizing;

use super::resources::ResourceError;

/// The PEM blocks of one secret that SDS cares about.
#[derive(Default)]
pub(super) struct Blocks {
    pub(super) certs: Vec<CertificateDer<'static>>,
    pub(super) keys: Vec<Zeroizing<PrivateKeyDer<'static>>>,
    /// A `-----BEGIN ... PRIVATE KEY-----` of a kind not read here
    /// (`ENCRYPTED PRIVATE KEY`, `DSA PRIVATE KEY`...).
    pub(super) unreadable_key: bool,
}

/// Whether the data is meant as PEM.
fn looks_like_pem(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Reads the PEM blocks, or `None` when the data holds no PEM.
pub(super) fn read_blocks(data: &[u8]) -> Result<Option<Blocks>, ResourceError> {
    if !looks_like_pem(data) {
        return Ok(None);
    }
    let mut blocks = Blocks::default();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(data) {
        let (kind, der) = section.map_err(pem_reason)?;
        match kind {
            SectionKind::Certificate => blocks.certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => blocks.keys.push(Zeroizing::new(PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(der),
            ))),
            SectionKind::RsaPrivateKey => blocks.keys.push(Zeroizing::new(PrivateKeyDer::Pkcs1(
                PrivatePkcs1KeyDer::from(der),
            ))),
            SectionKind::EcPrivateKey => blocks.keys.push(Zeroizing::new(PrivateKeyDer::Sec1(
                PrivateSec1KeyDer::from(der),
            ))),
            _ => {}
        }
    }
    // rustls' reader skips blocks it has no type for; a key among them would
    // silently turn a certificate and key into a CA bundle.
    blocks.unreadable_key = data.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.starts_with(b"-----BEGIN ")
            && line.ends_with(b"PRIVATE KEY-----")
            && !matches!(
                &line[11..line.len() - 5],
                b"PRIVATE KEY" | b"RSA PRIVATE KEY" | b"EC PRIVATE KEY" | b"OPENSSH PRIVATE KEY"
            )
    });
    Ok(Some(blocks))
}

fn pem_reason(err: pem::Error) -> ResourceError {
    ResourceError::BadPem(match err {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a block is not valid base64",
        _ => "the PEM reader refused it",
    })
}

/// Checks that every certificate is X.509 and not expired at `now` (Unix
/// seconds).
pub(super) fn check_certs(certs: &[CertificateDer<'_>], now: i64) -> Result<(), ResourceError> {
    for (i, der) in certs.iter().enumerate() {
        let index = i + 1;
        let cert = match x509_parser::parse_x509_certificate(der) {
            Ok(([], cert)) => cert,
            _ => return Err(ResourceError::BadCertificate { index }),
        };
        let not_after = cert.validity().not_after;
        if not_after.timestamp() < now {
            return Err(ResourceError::Expired {
                index,
                not_after: not_after.to_string(),
            });
        }
    }
    Ok(())
}

/// Checks that `key` is usable and belongs to the first certificate.
pub(super) fn check_key(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'_>,
) -> Result<(), ResourceError> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|_| ResourceError::UnsupportedKey)?;
    let certified = rustls::sign::CertifiedKey::new(certs.to_vec(), signing);
    match certified.keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(ResourceError::KeyMismatch)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(ResourceError::UnsupportedKey),
        Err(_) => Err(ResourceError::BadCertificate { index: 1 }),
    }
}

/// PEM text of one block, in a buffer wiped on drop.
fn pem_block(label: &str, der: &[u8]) -> Zeroizing<Vec<u8>> {
    let len = pem_rfc7468::encoded_len(label, LineEnding::LF, der).expect("small input");
    let mut buf = Zeroizing::new(vec![0u8; len]);
    let written = pem_rfc7468::encode(label, LineEnding::LF, der, &mut buf)
        .expect("buffer of encoded_len")
        .len();
    buf.truncate(written);
    buf
}

pub(super) fn chain_pem(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in certs {
        out.extend_from_slice(&pem_block("CERTIFICATE", c));
        out.push(b'\n');
    }
    out
}

pub(super) fn key_pem(key: &PrivateKeyDer<'_>) -> Zeroizing<Vec<u8>> {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem_block(label, key.secret_der())
}
