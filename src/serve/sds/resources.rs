//! From a secret's bytes to the Envoy `Secret` served for a resource name.
//!
//! What a secret becomes is decided by its data (SPEC 10):
//!
//! - a PEM certificate chain plus one private key (Kuma's gateway
//!   certificate format) → `tls_certificate`;
//! - PEM certificates only → `validation_context.trusted_ca`;
//! - anything else (no PEM, or PEM of other kinds such as an OpenSSH key)
//!   → `generic_secret`;
//! - `<mesh>/<cert>+<key>`: the chain from one secret, the key from the
//!   other → `tls_certificate`.
//!
//! A version Envoy could not use is refused here rather than pushed: PEM that
//! does not parse, a certificate that is not X.509, an expired certificate, a
//! key that does not match the leaf certificate, a key no TLS library here
//! can use, two keys (the checks are in `super::pem`).
//!
//! The served chain and key are re-encoded from the parsed DER, so Envoy gets
//! exactly what was checked: the key never rides along in the certificate
//! chain (which Envoy's admin `config_dump` shows), and text around the PEM
//! blocks is dropped. Copies of key bytes made here are wiped.

use std::fmt;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, GenericSecret, Secret, TlsCertificate,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::names::ResourceName;
use super::pem::{chain_pem, check_certs, check_key, key_pem, read_blocks};
use crate::problem::{Consequence, Diagnostic};

/// The type URL of every resource served.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// What a resource was served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A certificate chain and its private key.
    TlsCertificate,
    /// CA certificates, as `validation_context.trusted_ca`.
    ValidationContext,
    /// Opaque bytes.
    GenericSecret,
}

impl ResourceKind {
    /// The Envoy field name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::TlsCertificate => "tls_certificate",
            ResourceKind::ValidationContext => "validation_context",
            ResourceKind::GenericSecret => "generic_secret",
        }
    }
}

/// One resource ready to serve: an encoded Envoy `Secret`.
pub struct Resource {
    name: String,
    kind: ResourceKind,
    encoded: Zeroizing<Vec<u8>>,
    digest: [u8; 32],
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Resource({} as {}, [REDACTED {} bytes])",
            self.name,
            self.kind.as_str(),
            self.encoded.len()
        )
    }
}

impl Resource {
    /// The resource name, as requested.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it was served as.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// sha256 of the encoded `Secret`: two resources with the same digest
    /// serve the same bytes.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The per-resource version (DeltaSecrets), from the digest.
    pub fn version(&self) -> String {
        crate::recipients::hex(&self.digest[..8])
    }

    /// The resource as a protobuf `Any`. (The gRPC layer's copy of these
    /// bytes is not wiped: prost's `Any` owns a plain `Vec`.)
    pub fn to_any(&self) -> Any {
        Any {
            type_url: SECRET_TYPE_URL.to_string(),
            value: self.encoded.to_vec(),
        }
    }

    /// The encoded `Secret`.
    pub fn decode(&self) -> Secret {
        Secret::decode(self.encoded.as_slice()).expect("encoded here")
    }

    /// What this resource serves, as one secret's data would hold it: the
    /// chain then the key, the CA bundle, or the opaque bytes. Building a
    /// resource of the same name from it gives this resource again.
    pub fn served_data(&self) -> Zeroizing<Vec<u8>> {
        let mut secret = self.decode();
        let mut out = Zeroizing::new(Vec::new());
        let mut take = |d: &Option<DataSource>| {
            if let Some(DataSource {
                specifier: Some(Specifier::InlineBytes(b)),
                ..
            }) = d
            {
                out.extend_from_slice(b);
            }
        };
        match &secret.r#type {
            Some(secret::Type::TlsCertificate(t)) => {
                take(&t.certificate_chain);
                take(&t.private_key);
            }
            Some(secret::Type::ValidationContext(v)) => take(&v.trusted_ca),
            Some(secret::Type::GenericSecret(g)) => take(&g.secret),
            _ => {}
        }
        wipe(&mut secret);
        out
    }
}

/// Why a secret's current version is not served. No variant carries bytes
/// of the secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResourceError {
    /// PEM framing is broken (no END line, bad base64, a malformed BEGIN).
    #[error("PEM data does not parse: {0}")]
    BadPem(&'static str),
    /// A CERTIFICATE block is not an X.509 certificate.
    #[error("certificate {index} (counting from 1) is not a valid X.509 certificate")]
    BadCertificate {
        /// 1-based position in the data.
        index: usize,
    },
    /// A certificate's validity ended.
    #[error("certificate {index} (counting from 1) expired on {not_after}")]
    Expired {
        /// 1-based position in the data.
        index: usize,
        /// The certificate's notAfter.
        not_after: String,
    },
    /// The private key is not the one of the leaf certificate.
    #[error("the private key does not match the first certificate of the chain")]
    KeyMismatch,
    /// A private key in a form the TLS stack cannot use (encrypted,
    /// an unsupported algorithm or curve, a malformed key).
    #[error("the private key is encrypted, malformed or of an unsupported type")]
    UnsupportedKey,
    /// More than one private key.
    #[error("the data holds {count} private keys: at most one is allowed")]
    MultipleKeys {
        /// How many.
        count: usize,
    },
    /// `<cert>+<key>`: the certificate secret holds no certificate.
    #[error("secret \"{0}\" holds no PEM certificate")]
    NoCertificate(String),
    /// `<cert>+<key>`: the key secret holds no private key.
    #[error("secret \"{0}\" holds no PEM private key")]
    NoKey(String),
}

impl ResourceError {
    /// One resource's new version is affected: it is logged and the last
    /// good version stays served.
    pub fn consequence(&self) -> Consequence {
        Consequence::Recoverable
    }
}

impl Diagnostic for ResourceError {
    fn code(&self) -> &'static str {
        match self {
            ResourceError::BadPem(_) => "sds-bad-pem",
            ResourceError::BadCertificate { .. } => "sds-bad-certificate",
            ResourceError::Expired { .. } => "sds-certificate-expired",
            ResourceError::KeyMismatch => "sds-key-mismatch",
            ResourceError::UnsupportedKey => "sds-unsupported-key",
            ResourceError::MultipleKeys { .. } => "sds-multiple-keys",
            ResourceError::NoCertificate(_) => "sds-no-certificate",
            ResourceError::NoKey(_) => "sds-no-private-key",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(
            match self {
                ResourceError::BadPem(_) | ResourceError::BadCertificate { .. } => {
                    "check the data with `openssl x509 -noout -text`; data that is not meant as PEM must not contain `-----BEGIN `"
                }
                ResourceError::Expired { .. } => "issue a new certificate and apply it; Envoy keeps the last good one meanwhile",
                ResourceError::KeyMismatch => "the key and the certificate come from different issuances: apply them together (the leaf certificate first)",
                ResourceError::UnsupportedKey => "use an unencrypted PKCS#8, PKCS#1 (RSA) or SEC1 (P-256, P-384) key",
                ResourceError::MultipleKeys { .. } => "keep one private key per secret, or name two secrets as `<mesh>/<cert>+<key>`",
                ResourceError::NoCertificate(_) | ResourceError::NoKey(_) => {
                    "`<mesh>/<cert>+<key>` names the certificate chain secret first, then the key secret"
                }
            }
            .to_string(),
        )
    }
}

fn inline(bytes: Vec<u8>) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineBytes(bytes)),
        ..DataSource::default()
    })
}

/// Wipes the inline bytes of a `Secret` that has been encoded.
fn wipe(secret: &mut Secret) {
    let wipe_source = |d: &mut Option<DataSource>| {
        if let Some(DataSource {
            specifier: Some(Specifier::InlineBytes(b)),
            ..
        }) = d
        {
            b.zeroize();
        }
    };
    match &mut secret.r#type {
        Some(secret::Type::TlsCertificate(t)) => {
            wipe_source(&mut t.private_key);
            wipe_source(&mut t.certificate_chain);
        }
        Some(secret::Type::GenericSecret(g)) => wipe_source(&mut g.secret),
        Some(secret::Type::ValidationContext(v)) => wipe_source(&mut v.trusted_ca),
        _ => {}
    }
}

fn finish(name: &ResourceName, kind: ResourceKind, body: secret::Type) -> Resource {
    let mut secret = Secret {
        name: name.to_string(),
        r#type: Some(body),
    };
    let encoded = Zeroizing::new(secret.encode_to_vec());
    wipe(&mut secret);
    let digest = Sha256::digest(encoded.as_slice()).into();
    Resource {
        name: name.to_string(),
        kind,
        encoded,
        digest,
    }
}

fn tls_certificate(
    name: &ResourceName,
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'_>,
    now: i64,
) -> Result<Resource, ResourceError> {
    check_certs(certs, now)?;
    check_key(certs, key)?;
    let key = key_pem(key);
    let body = secret::Type::TlsCertificate(TlsCertificate {
        certificate_chain: inline(chain_pem(certs)),
        private_key: inline(key.to_vec()),
        ..TlsCertificate::default()
    });
    Ok(finish(name, ResourceKind::TlsCertificate, body))
}

/// Builds the resource `name` from the data of its secrets (one for
/// `<mesh>/<name>`, the certificate's then the key's for a pair), checked
/// at `now` (Unix seconds).
pub fn build(
    name: &ResourceName,
    data: &[&[u8]],
    now: i64,
) -> Result<Arc<Resource>, ResourceError> {
    let built = match (name, data) {
        (ResourceName::Single(_), [data]) => single(name, data, now)?,
        (ResourceName::Pair { cert, key }, [cert_data, key_data]) => {
            let certs = match read_blocks(cert_data)? {
                Some(b) if !b.certs.is_empty() => b.certs,
                _ => return Err(ResourceError::NoCertificate(cert.name.clone())),
            };
            let blocks = read_blocks(key_data)?.unwrap_or_default();
            if blocks.unreadable_key {
                return Err(ResourceError::UnsupportedKey);
            }
            match blocks.keys.as_slice() {
                [] => return Err(ResourceError::NoKey(key.name.clone())),
                [one] => tls_certificate(name, &certs, one, now)?,
                more => return Err(ResourceError::MultipleKeys { count: more.len() }),
            }
        }
        _ => unreachable!("one data per source secret"),
    };
    Ok(Arc::new(built))
}

fn single(name: &ResourceName, data: &[u8], now: i64) -> Result<Resource, ResourceError> {
    let generic = || {
        let body = secret::Type::GenericSecret(GenericSecret {
            secret: inline(data.to_vec()),
            ..GenericSecret::default()
        });
        finish(name, ResourceKind::GenericSecret, body)
    };
    let Some(blocks) = read_blocks(data)? else {
        return Ok(generic());
    };
    if blocks.unreadable_key {
        return Err(ResourceError::UnsupportedKey);
    }
    match (blocks.certs.is_empty(), blocks.keys.as_slice()) {
        (_, [_, _, ..]) => Err(ResourceError::MultipleKeys {
            count: blocks.keys.len(),
        }),
        // PEM of other kinds, or a key alone: opaque to SDS.
        (true, _) => Ok(generic()),
        (false, []) => {
            check_certs(&blocks.certs, now)?;
            let body = secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline(chain_pem(&blocks.certs)),
                ..CertificateValidationContext::default()
            });
            Ok(finish(name, ResourceKind::ValidationContext, body))
        }
        (false, [key]) => tls_certificate(name, &blocks.certs, key, now),
    }
}

/// Seconds since the Unix epoch, for [`build`].
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use rustls::pki_types::pem::PemObject as _;

    /// A leaf certificate for `localhost` and its key, valid from a day ago
    /// for `days` days (negative: expired).
    pub(crate) fn cert(days: i64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(2);
        params.not_after = now + time::Duration::days(days);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn name(text: &str) -> ResourceName {
        ResourceName::parse(text).unwrap()
    }

    fn tls_parts(r: &Resource) -> (Vec<u8>, Vec<u8>) {
        let bytes = |d: Option<DataSource>| match d.and_then(|d| d.specifier) {
            Some(Specifier::InlineBytes(b)) => b,
            other => panic!("{other:?}"),
        };
        match r.decode().r#type {
            Some(secret::Type::TlsCertificate(t)) => {
                (bytes(t.certificate_chain), bytes(t.private_key))
            }
            other => panic!("not a tls_certificate: {:?}", other.is_some()),
        }
    }

    #[test]
    fn chain_and_key_become_a_tls_certificate_with_the_key_kept_apart() {
        let (c, k) = cert(30);
        let data = format!("{c}{k}");
        let r = build(&name("m/gw"), &[data.as_bytes()], now()).unwrap();
        assert_eq!(r.kind(), ResourceKind::TlsCertificate);
        assert_eq!(r.decode().name, "m/gw");
        let (chain, key) = tls_parts(&r);
        let chain = String::from_utf8(chain).unwrap();
        let key = String::from_utf8(key).unwrap();
        assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"), "{chain}");
        assert!(!chain.contains("PRIVATE KEY"));
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!key.contains("CERTIFICATE"));
        // The re-encoded blocks carry the same DER.
        assert_eq!(
            CertificateDer::from_pem_slice(chain.as_bytes()).unwrap(),
            CertificateDer::from_pem_slice(c.as_bytes()).unwrap()
        );
        // The key first, with text around the blocks, is the same resource.
        let again = format!("subject=CN = x\n{k}\n{c}\n");
        let r2 = build(&name("m/gw"), &[again.as_bytes()], now()).unwrap();
        assert_eq!(r2.digest(), r.digest());
        assert_eq!(r2.version().len(), 16);
        // What is served builds the same resource again.
        let r3 = build(&name("m/gw"), &[&r.served_data()], now()).unwrap();
        assert_eq!(r3.digest(), r.digest());
    }

    #[test]
    fn certificates_alone_become_trusted_ca_and_other_data_generic() {
        let (c1, _) = cert(30);
        let (c2, _) = cert(30);
        let bundle = format!("{c1}{c2}");
        let r = build(&name("m/ca"), &[bundle.as_bytes()], now()).unwrap();
        assert_eq!(r.kind(), ResourceKind::ValidationContext);
        let Some(secret::Type::ValidationContext(v)) = r.decode().r#type else {
            panic!("not a validation context");
        };
        let Some(Specifier::InlineBytes(ca)) = v.trusted_ca.unwrap().specifier else {
            panic!("not inline");
        };
        assert_eq!(
            CertificateDer::pem_slice_iter(&ca).count(),
            2,
            "both CAs are served"
        );
        for data in [
            b"hunter2".as_slice(),
            b"\x00\xff binary",
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        ] {
            let r = build(&name("m/pw"), &[data], now()).unwrap();
            assert_eq!(r.kind(), ResourceKind::GenericSecret);
            let Some(secret::Type::GenericSecret(g)) = r.decode().r#type else {
                panic!("not generic");
            };
            assert_eq!(
                g.secret.unwrap().specifier,
                Some(Specifier::InlineBytes(data.to_vec()))
            );
        }
    }

    #[test]
    fn a_pair_joins_two_secrets() {
        let (c, k) = cert(30);
        let r = build(&name("m/c+k"), &[c.as_bytes(), k.as_bytes()], now()).unwrap();
        assert_eq!(r.kind(), ResourceKind::TlsCertificate);
        assert_eq!(r.decode().name, "m/c+k");
        let e = build(&name("m/c+k"), &[k.as_bytes(), c.as_bytes()], now()).unwrap_err();
        assert_eq!(e, ResourceError::NoCertificate("c".into()));
        let e = build(&name("m/c+k"), &[c.as_bytes(), c.as_bytes()], now()).unwrap_err();
        assert_eq!(e, ResourceError::NoKey("k".into()));
    }

    #[test]
    fn bad_versions_are_refused_with_a_typed_error() {
        let (c, k) = cert(30);
        let (other_c, other_k) = cert(30);
        let (old_c, old_k) = cert(-1);
        let refuse = |data: String| build(&name("m/x"), &[data.as_bytes()], now()).unwrap_err();
        assert_eq!(refuse(format!("{c}{other_k}")), ResourceError::KeyMismatch);
        assert!(matches!(
            refuse(format!("{old_c}{old_k}")),
            ResourceError::Expired { index: 1, .. }
        ));
        // An expired CA in a bundle is refused too.
        assert!(matches!(
            refuse(format!("{other_c}{old_c}")),
            ResourceError::Expired { index: 2, .. }
        ));
        let truncated = &c[..c.len() - 30];
        assert_eq!(
            refuse(truncated.to_string()),
            ResourceError::BadPem("a block has no END line")
        );
        let not_x509 = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            refuse(not_x509.to_string()),
            ResourceError::BadCertificate { index: 1 }
        );
        let bad_b64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            refuse(bad_b64.to_string()),
            ResourceError::BadPem(_)
        ));
        assert_eq!(
            refuse(format!("{c}{k}{k}")),
            ResourceError::MultipleKeys { count: 2 }
        );
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            refuse(format!("{c}{encrypted}")),
            ResourceError::UnsupportedKey
        );
        let garbage_key = "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            refuse(format!("{c}{garbage_key}")),
            ResourceError::UnsupportedKey
        );
        // No message or debug text carries the key.
        for e in [
            refuse(format!("{c}{other_k}")),
            refuse(format!("{old_c}{old_k}")),
        ] {
            let body: String = other_k.lines().nth(1).unwrap().to_string();
            assert!(!e.to_string().contains(&body) && !format!("{e:?}").contains(&body));
            assert!(e.hint().is_some() && e.code().starts_with("sds-"));
        }
    }

    #[test]
    fn debug_output_hides_the_bytes() {
        let (c, k) = cert(30);
        let r = build(&name("m/gw"), &[format!("{c}{k}").as_bytes()], now()).unwrap();
        let shown = format!("{r:?}");
        assert!(
            shown.contains("m/gw") && shown.contains("REDACTED"),
            "{shown}"
        );
        assert!(!shown.contains("BEGIN"));
    }
}
