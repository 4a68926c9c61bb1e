//! Verifying a load's Ed25519 signatures in batches.

use std::sync::Arc;

use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::{Algorithm, Fingerprint, HashAlg, PublicKey, SshSig};

use super::{Namespace, Signature, Verified, VerifyError};

/// A listed Ed25519 key, prepared once for every signature it made: a
/// scope's few writers sign a cold load's 10,000 files, and each file's
/// verdict then shares its key's decompressed point, fingerprint and
/// public key instead of computing them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedKey {
    /// The key, decompressed.
    pub verifying: ed25519_dalek::VerifyingKey,
    /// Its SHA256 fingerprint.
    pub fingerprint: Fingerprint,
    /// The key itself (no comment).
    pub key: PublicKey,
}

impl PreparedKey {
    /// `None` when the bytes are not a curve point.
    pub fn new(key: &Ed25519PublicKey) -> Option<PreparedKey> {
        let verifying = ed25519_dalek::VerifyingKey::try_from(key).ok()?;
        let key = PublicKey::from(KeyData::Ed25519(*key));
        Some(PreparedKey {
            verifying,
            fingerprint: key.fingerprint(HashAlg::Sha256),
            key,
        })
    }
}

impl Signature {
    /// The verification deferred to a batch ([`verify_deferred`]), when
    /// this is an Ed25519 signature in `namespace` by a key `known` has
    /// prepared; otherwise the signature back, to verify alone.
    pub fn defer(
        self,
        message: &[u8],
        namespace: Namespace,
        known: impl FnOnce(&[u8; 32]) -> Option<Arc<PreparedKey>>,
    ) -> Deferral {
        let KeyData::Ed25519(key) = self.inner.public_key() else {
            return Deferral::Alone(self);
        };
        if self.inner.algorithm() != Algorithm::Ed25519
            || self.inner.namespace() != namespace.as_str()
        {
            return Deferral::Alone(self);
        }
        let Some(prepared) = known(&key.0) else {
            return Deferral::Alone(self);
        };
        let parts = SshSig::signed_data(namespace.as_str(), self.inner.hash_alg(), message)
            .ok()
            .zip(ed25519_dalek::Signature::try_from(self.inner.signature()).ok());
        // The parsed signature is dropped here: a batch waits on thousands
        // of these, and each keeps only what its verification needs.
        match parts {
            Some((data, signature)) => Deferral::Batch(Deferred {
                data,
                ed25519: signature,
                key: prepared,
            }),
            None => Deferral::Alone(self),
        }
    }
}

/// Where a signature's verification goes.
/// (One a signature, moved into its batch at once: not worth a box.)
#[allow(clippy::large_enum_variant)]
pub enum Deferral {
    /// Into a batch.
    Batch(Deferred),
    /// Alone ([`Signature::verify`]): not an Ed25519 signature by a known
    /// key in the namespace asked for.
    Alone(Signature),
}

/// An Ed25519 signature whose verification waits for a batch: a cold load
/// verifies thousands, and a batch of them costs a fraction of verifying
/// each alone ([`verify_deferred`]).
pub struct Deferred {
    /// The sshsig signed-data blob (namespace, hash algorithm, the
    /// message's hash), as ssh-key builds it.
    data: Vec<u8>,
    ed25519: ed25519_dalek::Signature,
    /// The signer's key (the one the signature names).
    key: Arc<PreparedKey>,
}

impl Deferred {
    /// The signer's fingerprint, and the signature verified (`ok`, from
    /// [`verify_deferred`]) or not.
    pub fn conclude(self, ok: bool) -> (Fingerprint, Result<Verified, VerifyError>) {
        let fingerprint = self.key.fingerprint;
        let verified = if ok {
            Ok(Verified {
                key: self.key.key.clone(),
                fingerprint,
            })
        } else {
            Err(VerifyError::BadSignature { fingerprint })
        };
        (fingerprint, verified)
    }
}

/// Which of `deferred` verify: one batch verification for all of them,
/// and only when it fails, each alone (so a bad signature is found, and
/// the others accepted, exactly as alone).
///
/// The batch is ed25519-zebra's: its equation is cofactored (ZIP 215), its
/// coefficients drawn from the thread's CSPRNG, and the terms of signatures
/// by the same key are coalesced into one, so that a batch by a scope's few
/// writers costs about one point a signature instead of two. It holds
/// whenever each signature verifies alone; a signature it accepts that
/// would fail alone can only be made with the signer's private key (a
/// small-order part added to R, or R's non-canonical encoding): no one
/// without a writer's key gets anything accepted that would otherwise be
/// refused.
pub fn verify_deferred(deferred: &[&Deferred]) -> Vec<bool> {
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for d in deferred {
        let key = ed25519_zebra::VerificationKeyBytes::from(d.key.verifying.to_bytes());
        batch.queue((key, d.ed25519, d.data.as_slice()));
    }
    if batch.verify(rand::thread_rng()).is_ok() {
        return vec![true; deferred.len()];
    }
    deferred
        .iter()
        .map(|d| ed25519_dalek::Verifier::verify(&d.key.verifying, &d.data, &d.ed25519).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ed25519, sign};
    use super::*;
    use ssh_key::PrivateKey;

    #[test]
    fn a_batch_finds_its_one_bad_signature_and_accepts_the_rest() {
        let keys: Vec<PrivateKey> = (0..3).map(|_| ed25519()).collect();
        let known = |k: &[u8; 32]| {
            keys.iter()
                .find_map(|key| match key.public_key().key_data() {
                    KeyData::Ed25519(p) if p.0 == *k => PreparedKey::new(p).map(Arc::new),
                    _ => None,
                })
        };
        let messages: Vec<Vec<u8>> = (0..10).map(|i| format!("file {i}").into_bytes()).collect();
        let deferred = |tampered: Option<usize>| -> Vec<Deferred> {
            messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let sig = sign(&keys[i % 3], "meshseal", m);
                    let over: &[u8] = if tampered == Some(i) {
                        b"another file"
                    } else {
                        m
                    };
                    match Signature::parse(sig.as_bytes()).unwrap().defer(
                        over,
                        Namespace::Secret,
                        known,
                    ) {
                        Deferral::Batch(d) => d,
                        Deferral::Alone(_) => panic!("a known Ed25519 key is batched"),
                    }
                })
                .collect()
        };
        let good = deferred(None);
        assert_eq!(
            verify_deferred(&good.iter().collect::<Vec<_>>()),
            vec![true; 10]
        );
        let one_bad = deferred(Some(7));
        let oks = verify_deferred(&one_bad.iter().collect::<Vec<_>>());
        assert_eq!(oks.iter().filter(|ok| !**ok).count(), 1);
        assert!(!oks[7]);
        let verdicts: Vec<_> = one_bad
            .into_iter()
            .zip(oks)
            .map(|(d, ok)| d.conclude(ok).1)
            .collect();
        assert!(matches!(verdicts[7], Err(VerifyError::BadSignature { .. })));
        // Each verdict names its own signer, from the key prepared once.
        for (i, verdict) in verdicts.iter().enumerate() {
            if i == 7 {
                continue;
            }
            let verified = verdict.as_ref().unwrap();
            let signer = keys[i % 3].public_key();
            assert_eq!(verified.key.key_data(), signer.key_data());
            assert_eq!(verified.fingerprint, signer.fingerprint(HashAlg::Sha256));
        }
        // Another namespace, an unknown key: verified alone, not batched.
        let sig = Signature::parse(sign(&keys[0], "meshseal-scope", b"x").as_bytes()).unwrap();
        assert!(matches!(
            sig.defer(b"x", Namespace::Secret, known),
            Deferral::Alone(_)
        ));
        let sig = Signature::parse(sign(&ed25519(), "meshseal", b"x").as_bytes()).unwrap();
        assert!(matches!(
            sig.defer(b"x", Namespace::Secret, known),
            Deferral::Alone(_)
        ));
    }
}
