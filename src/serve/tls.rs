//! TLS for the API (`--tls-cert`, `--tls-key`): rustls, TLS 1.2 and 1.3,
//! HTTP/1.1. Required to listen beyond loopback unless the operator passes
//! `--insecure-listen`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::problem::Diagnostic;

/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The API's TLS certificate or key cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No PEM certificate in the file.
    #[error("no PEM certificate found")]
    NoCertificate {
        /// The file.
        file: PathBuf,
    },
    /// No PEM private key in the file.
    #[error("no PEM private key found")]
    NoKey {
        /// The file.
        file: PathBuf,
    },
    /// rustls refused the pair (a key that does not match, an unsupported
    /// algorithm).
    #[error("the certificate and key cannot be used: {source}")]
    Config {
        /// The key file.
        file: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

impl Diagnostic for TlsError {
    fn code(&self) -> &'static str {
        "tls"
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            TlsError::Read { .. } => "check the --tls-cert and --tls-key paths".to_string(),
            TlsError::NoCertificate { .. } => {
                "--tls-cert takes a PEM file: the certificate, then its chain".to_string()
            }
            TlsError::NoKey { .. } => {
                "--tls-key takes a PEM private key (PKCS#8, PKCS#1 or SEC1)".to_string()
            }
            TlsError::Config { .. } => {
                "the key must be the private key of the first certificate in --tls-cert".to_string()
            }
        })
    }

    fn file(&self) -> Option<&Path> {
        match self {
            TlsError::Read { file, .. }
            | TlsError::NoCertificate { file }
            | TlsError::NoKey { file }
            | TlsError::Config { file, .. } => Some(file),
        }
    }
}

fn read(file: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, TlsError> {
    use std::io::Read;
    let fail = |source| TlsError::Read {
        file: file.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(file).map_err(fail)?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    f.take(MAX_PEM_BYTES)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    Ok(bytes)
}

/// The server configuration for a certificate chain and its key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: cert.to_path_buf(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsError::NoKey {
        file: key.to_path_buf(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|source| TlsError::Config {
            file: key.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
