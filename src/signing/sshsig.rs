//! OpenSSH `sshsig` signatures (`-----BEGIN SSH SIGNATURE-----`), as made
//! and checked by `ssh-keygen -Y sign|verify`, over exact bytes.
//!
//! The format is ssh-key's ([`ssh_key::SshSig`]); this module adds what a
//! verifier needs on top: a size bound, the armor ssh-keygen requires, the
//! namespace check reported as such, the key types meshseal verifies with,
//! and ssh-keygen's refusals (SHA-1 RSA signatures, a non-empty reserved
//! field ssh-keygen would not sign over). Errors never carry the signed
//! bytes.

use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Fingerprint, HashAlg, LineEnding, PublicKey, SshSig};

use super::keys::{self, KeyProblem};
use super::Namespace;
use crate::problem::Diagnostic;

mod armor;
mod batch;
pub use batch::{verify_deferred, Deferral, Deferred, PreparedKey};

/// Largest armored signature accepted. An RSA-4096 signature with its key is
/// about 1.5 KiB armored; anything much larger is not a signature.
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;

/// The first line of an armored signature.
const BEGIN: &[u8] = b"-----BEGIN SSH SIGNATURE-----";

/// Why a signature is refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// More than [`MAX_SIGNATURE_BYTES`].
    #[error("signature is too large ({len} bytes; the limit is {max})")]
    TooLarge {
        /// The input's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input does not start with `-----BEGIN SSH SIGNATURE-----` and a
    /// line end.
    #[error("not an armored SSH signature")]
    NotArmored,
    /// The armor or the signature inside is malformed or truncated.
    #[error("malformed SSH signature: {source}")]
    Malformed {
        /// ssh-key's reason.
        #[source]
        source: ssh_key::Error,
    },
    /// The signature's reserved field is not empty (ssh-keygen verifies as
    /// if it were, so such a signature means different things to different
    /// verifiers).
    #[error("malformed SSH signature: reserved field is not empty")]
    Reserved,
    /// The signature was made for another namespace (another purpose).
    #[error("signature namespace is {found:?}, expected {expected:?}")]
    WrongNamespace {
        /// The namespace required.
        expected: &'static str,
        /// The namespace in the signature (shortened, escaped).
        found: String,
    },
    /// A key or signature algorithm meshseal does not verify.
    #[error("unsupported signature: {problem}")]
    UnsupportedAlgorithm {
        /// What is unsupported.
        #[source]
        problem: KeyProblem,
    },
    /// The signature does not verify for the key it names over these bytes.
    #[error("signature by {fingerprint} does not verify")]
    BadSignature {
        /// The SHA256 fingerprint of the key the signature names.
        fingerprint: Fingerprint,
    },
}

impl Diagnostic for VerifyError {
    fn code(&self) -> &'static str {
        "bad-signature"
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            VerifyError::WrongNamespace { expected, .. } => format!(
                "this signature was made for another purpose; sign with `ssh-keygen -Y sign -n {expected}` or `meshseal sign`"
            ),
            VerifyError::UnsupportedAlgorithm { .. } => {
                "sign with an ssh-ed25519, sk-ssh-ed25519@openssh.com, ECDSA or RSA (2048 to 4096 bits, rsa-sha2-512) key".to_string()
            }
            VerifyError::BadSignature { .. } => {
                "the file changed after it was signed, or the signature belongs to another file: review the change (`git log -p -- FILE`), then restore the signed version or have a writer write a new value".to_string()
            }
            VerifyError::TooLarge { .. }
            | VerifyError::NotArmored
            | VerifyError::Malformed { .. }
            | VerifyError::Reserved => {
                "a .sig file holds one `ssh-keygen -Y sign` signature; re-sign the file (`meshseal sign`)".to_string()
            }
        })
    }
}

/// A parsed (not yet verified) signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    inner: SshSig,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signer's public key (no comment).
    pub key: PublicKey,
    /// Its SHA256 fingerprint.
    pub fingerprint: Fingerprint,
}

impl Signature {
    /// Parses an armored signature, as ssh-keygen reads one.
    pub fn parse(armored: &[u8]) -> Result<Signature, VerifyError> {
        if armored.len() > MAX_SIGNATURE_BYTES {
            return Err(VerifyError::TooLarge {
                len: armored.len(),
                max: MAX_SIGNATURE_BYTES,
            });
        }
        let after = armored.strip_prefix(BEGIN).ok_or(VerifyError::NotArmored)?;
        if !(after.starts_with(b"\n") || after.starts_with(b"\r\n")) {
            return Err(VerifyError::NotArmored);
        }
        let parsed = match armor::decode_canonical(armored) {
            Some(sig) => Ok(sig),
            None => SshSig::from_pem(armored),
        };
        let inner = parsed.map_err(|source| {
            if names_certificate(armored) {
                VerifyError::UnsupportedAlgorithm {
                    problem: KeyProblem::UnsupportedType {
                        algorithm: "OpenSSH certificate".to_string(),
                    },
                }
            } else {
                VerifyError::Malformed { source }
            }
        })?;
        if !inner.reserved().is_empty() {
            return Err(VerifyError::Reserved);
        }
        Ok(Signature { inner })
    }

    /// The namespace the signature was made for.
    pub fn namespace(&self) -> &str {
        self.inner.namespace()
    }

    /// The key the signature says made it.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from(self.inner.public_key().clone())
    }

    /// That key's SHA256 fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.public_key().fingerprint(HashAlg::Sha256)
    }

    /// The armored form (LF line ends), as `ssh-keygen -Y sign` writes it.
    pub fn to_armored(&self) -> String {
        // Encoding a parsed signature cannot fail.
        self.inner.to_pem(LineEnding::LF).unwrap_or_default()
    }

    /// Checks that this signature was made in `namespace` over `message` by
    /// the key it names.
    pub fn verify(&self, message: &[u8], namespace: Namespace) -> Result<Verified, VerifyError> {
        let expected = self.namespace_is(namespace)?;
        let key_data = self.inner.public_key();
        keys::check(key_data).map_err(|problem| VerifyError::UnsupportedAlgorithm { problem })?;
        let algorithm = self.inner.algorithm();
        if matches!(key_data, ssh_key::public::KeyData::Rsa(_))
            && !keys::is_accepted_rsa_signature(&algorithm)
        {
            return Err(VerifyError::UnsupportedAlgorithm {
                problem: KeyProblem::UnsupportedType {
                    algorithm: signature_name(&algorithm),
                },
            });
        }
        let key = PublicKey::from(key_data.clone());
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        key.verify(expected, message, &self.inner)
            .map_err(|_| VerifyError::BadSignature { fingerprint })?;
        Ok(Verified { key, fingerprint })
    }

    /// [`Signature::verify`], with `known` the signature's own Ed25519 key
    /// already decompressed (see [`AllowedSigners::verifying_key`]); any
    /// other signature takes the general path.
    pub fn verify_known(
        &self,
        message: &[u8],
        namespace: Namespace,
        known: impl FnOnce(&[u8; 32]) -> Option<ed25519_dalek::VerifyingKey>,
    ) -> Result<Verified, VerifyError> {
        let KeyData::Ed25519(key) = self.inner.public_key() else {
            return self.verify(message, namespace);
        };
        let Some(verifying) = known(&key.0) else {
            return self.verify(message, namespace);
        };
        if self.inner.algorithm() != Algorithm::Ed25519 {
            return self.verify(message, namespace);
        }
        let expected = self.namespace_is(namespace)?;
        let key = PublicKey::from(self.inner.public_key().clone());
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        // What ssh-key's own verification does (its signed-data blob, the
        // dalek verification it calls), with the key decompressed once.
        let verified = SshSig::signed_data(expected, self.inner.hash_alg(), message)
            .ok()
            .zip(ed25519_dalek::Signature::try_from(self.inner.signature()).ok())
            .is_some_and(|(data, sig)| {
                ed25519_dalek::Verifier::verify(&verifying, &data, &sig).is_ok()
            });
        if !verified {
            return Err(VerifyError::BadSignature { fingerprint });
        }
        Ok(Verified { key, fingerprint })
    }

    /// The namespace's name when the signature was made in it.
    fn namespace_is(&self, namespace: Namespace) -> Result<&'static str, VerifyError> {
        let expected = namespace.as_str();
        if self.inner.namespace() != expected {
            return Err(VerifyError::WrongNamespace {
                expected,
                found: escape(self.inner.namespace()),
            });
        }
        Ok(expected)
    }

    pub(crate) fn from_inner(inner: SshSig) -> Signature {
        Signature { inner }
    }
}

/// Parses and verifies an armored signature over `message` in `namespace`.
pub fn verify(
    armored: &[u8],
    message: &[u8],
    namespace: Namespace,
) -> Result<Verified, VerifyError> {
    Signature::parse(armored)?.verify(message, namespace)
}

/// Whether an armored signature ssh-key could not decode was made with an
/// OpenSSH certificate (ssh-key 0.6 cannot carry one in an `sshsig`): only
/// to say so instead of "malformed".
fn names_certificate(armored: &[u8]) -> bool {
    use base64::Engine;
    let Ok(text) = std::str::from_utf8(armored) else {
        return false;
    };
    let body: String = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .is_ok_and(|blob| blob.windows(CERT_SUFFIX.len()).any(|w| w == CERT_SUFFIX))
}

const CERT_SUFFIX: &[u8] = b"-cert-v01@openssh.com";

fn signature_name(algorithm: &Algorithm) -> String {
    match algorithm {
        Algorithm::Rsa { hash: None } => "ssh-rsa (SHA-1)".to_string(),
        other => other.as_str().to_string(),
    }
}

/// A namespace from a signature, printable and short.
fn escape(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::PrivateKey;

    /// ssh-key's own test vector, made by `ssh-keygen -Y sign -n example`
    /// over `testing`.
    const KEYGEN_SIGNATURE: &str = "-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgsz6u836i33yqAQ3v3qNOJB9l8b
UppPQ+0UMn9cVKq2IAAAAHZXhhbXBsZQAAAAAAAAAGc2hhNTEyAAAAUwAAAAtzc2gtZWQy
NTUxOQAAAEBPEav+tMGNnox4MuzM7rlHyVBajCn8B0kAyiOWwPKprNsG3i6X+voz/WCSik
/FowYwqhgCABUJSvRX3AERVBUP
-----END SSH SIGNATURE-----
";

    pub(super) fn sign(key: &PrivateKey, namespace: &str, message: &[u8]) -> String {
        key.sign(namespace, HashAlg::Sha512, message)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    pub(super) fn ed25519() -> PrivateKey {
        PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap()
    }

    #[test]
    fn a_signature_verifies_over_its_exact_bytes_only() {
        let key = ed25519();
        let sig = sign(&key, "meshseal", b"ciphertext");
        let ok = verify(sig.as_bytes(), b"ciphertext", Namespace::Secret).unwrap();
        assert_eq!(ok.key.key_data(), key.public_key().key_data());
        assert_eq!(
            ok.fingerprint,
            key.public_key().fingerprint(HashAlg::Sha256)
        );
        let err = verify(sig.as_bytes(), b"ciphertexT", Namespace::Secret).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
        assert!(!err.to_string().contains("ciphertext"));
        assert_eq!(err.code(), "bad-signature");
    }

    #[test]
    fn a_known_key_verifies_as_the_general_path_does() {
        let key = ed25519();
        let KeyData::Ed25519(public) = key.public_key().key_data() else {
            unreachable!()
        };
        let decompressed = ed25519_dalek::VerifyingKey::try_from(public).unwrap();
        let known = |k: &[u8; 32]| (*k == public.0).then_some(decompressed);
        for hash in [HashAlg::Sha512, HashAlg::Sha256] {
            let sig = key.sign("meshseal", hash, b"ciphertext").unwrap();
            let sig = Signature::parse(sig.to_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
            let fast = sig
                .verify_known(b"ciphertext", Namespace::Secret, known)
                .unwrap();
            assert_eq!(fast, sig.verify(b"ciphertext", Namespace::Secret).unwrap());
            let err = sig
                .verify_known(b"ciphertexT", Namespace::Secret, known)
                .unwrap_err();
            assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
            let err = sig
                .verify_known(b"ciphertext", Namespace::Scope, known)
                .unwrap_err();
            assert!(matches!(err, VerifyError::WrongNamespace { .. }), "{err}");
        }
        // A decompressed key that is not the signature's never verifies it.
        let other = ed25519();
        let KeyData::Ed25519(other) = other.public_key().key_data() else {
            unreachable!()
        };
        let wrong = ed25519_dalek::VerifyingKey::try_from(other).unwrap();
        let sig = Signature::parse(sign(&key, "meshseal", b"x").as_bytes()).unwrap();
        let err = sig
            .verify_known(b"x", Namespace::Secret, |_| Some(wrong))
            .unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn the_namespace_is_checked_and_named() {
        let key = ed25519();
        let sig = sign(&key, "meshseal", b"x");
        assert!(matches!(
            verify(sig.as_bytes(), b"x", Namespace::Scope),
            Err(VerifyError::WrongNamespace { expected: "meshseal-scope", ref found }) if found == "meshseal"
        ));
        let err = verify(KEYGEN_SIGNATURE.as_bytes(), b"testing", Namespace::Secret).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signature namespace is \"example\", expected \"meshseal\""
        );
    }

    #[test]
    fn garbage_truncation_and_size_are_refused() {
        let key = ed25519();
        let sig = sign(&key, "meshseal", b"x");
        assert!(matches!(
            Signature::parse(b"hello"),
            Err(VerifyError::NotArmored)
        ));
        assert!(matches!(
            Signature::parse(format!(" {sig}").as_bytes()),
            Err(VerifyError::NotArmored)
        ));
        let cut = &sig.as_bytes()[..sig.len() / 2];
        assert!(matches!(
            Signature::parse(cut),
            Err(VerifyError::Malformed { .. })
        ));
        let big = vec![b'A'; MAX_SIGNATURE_BYTES + 1];
        assert!(matches!(
            Signature::parse(&big),
            Err(VerifyError::TooLarge { .. })
        ));
    }

    #[test]
    fn parse_and_armor_round_trip() {
        let parsed = Signature::parse(KEYGEN_SIGNATURE.as_bytes()).unwrap();
        assert_eq!(parsed.to_armored(), KEYGEN_SIGNATURE);
        assert_eq!(parsed.namespace(), "example");
    }

    #[test]
    fn every_supported_key_type_signs_and_verifies() {
        for alg in [
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: ssh_key::EcdsaCurve::NistP256,
            },
            Algorithm::Ecdsa {
                curve: ssh_key::EcdsaCurve::NistP384,
            },
            Algorithm::Ecdsa {
                curve: ssh_key::EcdsaCurve::NistP521,
            },
        ] {
            let key = PrivateKey::random(&mut rand::rngs::OsRng, alg.clone()).unwrap();
            let sig = sign(&key, "meshseal-scope", b"recipients");
            verify(sig.as_bytes(), b"recipients", Namespace::Scope)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
    }
}
