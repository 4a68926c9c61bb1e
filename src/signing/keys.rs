//! Which SSH keys meshseal signs and verifies with.
//!
//! ssh-key parses many key types it cannot verify with (DSA, certificates as
//! opaque keys) and RSA moduli its RSA backend refuses (under 2048 or over
//! 4096 bits). A key meshseal would never verify a signature for must be
//! refused where it is named (an `allowed_signers` line, a signature, a sign
//! key), not discovered later as a signature that "does not verify".

use ssh_key::public::{EcdsaPublicKey, KeyData};
use ssh_key::{Algorithm, EcdsaCurve};

/// Why a key cannot be used for meshseal signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// A key type meshseal does not verify with (DSA, certificates, unknown).
    #[error("unsupported key type {algorithm}")]
    UnsupportedType {
        /// The key's algorithm name.
        algorithm: String,
    },
    /// An RSA key outside 2048..=4096 bits, or with an unusable exponent.
    #[error("unsupported RSA key ({bits} bits): meshseal verifies RSA keys of 2048 to 4096 bits")]
    UnsupportedRsa {
        /// The modulus size in bits.
        bits: usize,
    },
    /// The key's bytes do not make a public key of its type (an ECDSA point
    /// off its curve, an Ed25519 key that is not a curve point).
    #[error("invalid {algorithm} public key")]
    InvalidPoint {
        /// The key's algorithm name.
        algorithm: String,
    },
}

/// Accepts the keys meshseal verifies with: ssh-ed25519,
/// sk-ssh-ed25519@openssh.com, ECDSA on P-256, P-384 and P-521,
/// sk-ecdsa-sha2-nistp256@openssh.com, and RSA of 2048 to 4096 bits.
pub fn check(key: &KeyData) -> Result<(), KeyProblem> {
    let invalid = || KeyProblem::InvalidPoint {
        algorithm: key.algorithm().as_str().to_string(),
    };
    match key {
        KeyData::Ed25519(k) => ed25519_dalek::VerifyingKey::try_from(k)
            .map(drop)
            .map_err(|_| invalid()),
        KeyData::SkEd25519(k) => ed25519_dalek::VerifyingKey::try_from(k.public_key())
            .map(drop)
            .map_err(|_| invalid()),
        KeyData::Ecdsa(k) => check_ecdsa(k).ok_or_else(invalid),
        KeyData::SkEcdsaSha2NistP256(k) => {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(k.ec_point().as_bytes())
                .map(drop)
                .map_err(|_| invalid())
        }
        KeyData::Rsa(k) => {
            let bits = rsa_bits(k.n.as_positive_bytes().unwrap_or_default());
            match rsa::RsaPublicKey::try_from(k) {
                Ok(_) if (2048..=4096).contains(&bits) => Ok(()),
                _ => Err(KeyProblem::UnsupportedRsa { bits }),
            }
        }
        _ => Err(KeyProblem::UnsupportedType {
            algorithm: key.algorithm().as_str().to_string(),
        }),
    }
}

fn check_ecdsa(key: &EcdsaPublicKey) -> Option<()> {
    let ok = match key.curve() {
        EcdsaCurve::NistP256 => p256::ecdsa::VerifyingKey::try_from(key).is_ok(),
        EcdsaCurve::NistP384 => p384::ecdsa::VerifyingKey::try_from(key).is_ok(),
        EcdsaCurve::NistP521 => p521::ecdsa::VerifyingKey::try_from(key).is_ok(),
    };
    ok.then_some(())
}

/// Bits of a big-endian unsigned integer.
fn rsa_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => (bytes.len() - i - 1) * 8 + (8 - bytes[i].leading_zeros() as usize),
        None => 0,
    }
}

/// Whether `algorithm` is an RSA signature algorithm ssh-keygen accepts in
/// sshsig (`rsa-sha2-512`, `rsa-sha2-256`; never SHA-1 `ssh-rsa`).
pub fn is_accepted_rsa_signature(algorithm: &Algorithm) -> bool {
    matches!(algorithm, Algorithm::Rsa { hash: Some(_) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ssh_key::PublicKey;

    #[test]
    fn bit_length_of_a_modulus() {
        assert_eq!(rsa_bits(&[]), 0);
        assert_eq!(rsa_bits(&[0, 0x01]), 1);
        assert_eq!(rsa_bits(&[0x80, 0]), 16);
        assert_eq!(rsa_bits(&[0, 0x7f, 0]), 15);
    }

    /// Public keys made by `ssh-keygen -t dsa` and `ssh-keygen -t rsa -b 1024`.
    pub(crate) const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAKeIj4yLmQrQCyKuj0T5ffIGhc6hK2oWRZTqBLBM3K5+7JF0aBBGps5lPgdcFeqPEGKAOMZDkAxPBuPQ8QBdc+QPhnLixUnvn/Jsv6J2FwufaC3JJ83DP8pEwtDrVMYFllXOURzy9yCeDRiUA8U++j7x+5VM1ANmyR1ZLtl2JF25AAAAFQCiqPaXPvdJdMW5w4fEowsUIrMn7QAAAIBFbhc7TaNbnnE/rEz0JacbPnDjQggYfE6GGUyYZLpJoS0NYUnj56tfvT76sAIqBa53SRA3ouN9ZH4u7YdAUglPnGqY7IQsrw56cLxBit5TvWI9ziEkMUu2l9s3YXnuCyYtz3wWWgoNCSdsR7smRlGte4/Kw6ddhbFJ8BQVJPafdgAAAIBl0i/y7Qd8ykxwv/C8dP0S9az9z0TLvWJ7GIZ2Ljuer1RJBfIyNWVBBwGQ9lIXh3HzeLcI4bqXAWCyh8dm7y5+JxzOR4DteDSdxunMUfWjL6fFx7VVMsuSRa5vT/CqOCY8fKOef+iAxu/AcetBEEpuW9sxb3Yc+/cZqr1sVZ/biw== dsa@test";
    pub(crate) const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCyo/CxLYck6dFUpMt+olzz6F5OfAc7Qyyr8a78TErAZefM4vKitH8KEdx1JWPRvH25ZVekVZQfmRIO5qvB5isv/I/R5nOBc/5Osr9nGJbtuE7WFBqgrDZYdlAvUPCeij25MfmvkN6KKOnIXbPDjE+a7gVvs98ZMyS8+M77TubV0w== rsa1024@test";

    #[test]
    fn dsa_and_small_rsa_are_refused_and_named() {
        let dsa = PublicKey::from_openssh(DSA).unwrap();
        let err = check(dsa.key_data()).unwrap_err();
        assert_eq!(err.to_string(), "unsupported key type ssh-dss");
        let rsa = PublicKey::from_openssh(RSA_1024).unwrap();
        assert_eq!(
            check(rsa.key_data()),
            Err(KeyProblem::UnsupportedRsa { bits: 1024 })
        );
    }

    #[test]
    fn an_ed25519_key_that_is_no_curve_point_is_invalid() {
        // y = 2 does not decompress to an Edwards point.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let key = KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(bytes));
        assert!(matches!(check(&key), Err(KeyProblem::InvalidPoint { .. })));
    }
}
