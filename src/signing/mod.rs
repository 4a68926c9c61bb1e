//! Writers (SPEC 9): who may change a secret, proven with SSH signatures.
//!
//! age does not say who wrote a file, so meshseal signs: writers sign
//! secrets (namespace [`SECRET_NAMESPACE`]), admins sign each scope's
//! `recipients.txt` and `writers.txt` ([`SCOPE_NAMESPACE`]), and verifiers
//! check them against a trust root kept outside the repository. Everything
//! here is stock OpenSSH, so `ssh-keygen -Y verify` reaches the same
//! verdicts without meshseal:
//!
//! - [`sshsig`]: armored `sshsig` signatures, parsed, verified and made;
//! - [`allowed_signers`]: the principals files (`writers.txt`, the trust
//!   root), ssh-keygen's matching rules, and the edits of `writers add|remove`;
//! - [`signer`]: the sign key, a private key file or a key in ssh-agent;
//! - [`trust`]: finding and vetting the trust root;
//! - [`accept`]: the verdict on one signed file, with the reason codes
//!   `unsigned`, `bad-signature` and `unknown-writer`.
//!
//! These are primitives: the store, `check` and the watcher decide which
//! file is verified under which `allowed_signers`.

pub mod allowed_signers;
pub mod keys;
pub mod signer;
pub mod sshsig;
pub mod trust;

use ssh_key::Fingerprint;

pub use allowed_signers::{AllowedSigners, AllowedSignersError, Entry, Unauthorized};
pub use signer::{AgentError, SignError, Signer, SignerError};
pub use sshsig::{
    verify_deferred, Deferral, Deferred, PreparedKey, Signature, Verified, VerifyError,
};
pub use trust::{TrustError, TrustRoot};

use crate::problem::Diagnostic;

/// The `sshsig` namespace of a secret's signature (`<name>.age.sig`).
pub const SECRET_NAMESPACE: &str = "meshseal";

/// The `sshsig` namespace of a scope file's signature
/// (`recipients.txt.sig`, `writers.txt.sig`).
pub const SCOPE_NAMESPACE: &str = "meshseal-scope";

/// What a signature is for; a signature made for one never verifies as the
/// other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// A secret file, signed by a writer ([`SECRET_NAMESPACE`]).
    Secret,
    /// A scope file, signed by an admin ([`SCOPE_NAMESPACE`]).
    Scope,
}

impl Namespace {
    /// The namespace string inside the signature.
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Secret => SECRET_NAMESPACE,
            Namespace::Scope => SCOPE_NAMESPACE,
        }
    }
}

/// Now, in seconds since the Unix epoch (the verification time, as
/// ssh-keygen uses by default).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a signed file is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// There is no signature.
    #[error("no signature")]
    Unsigned,
    /// The signature is malformed, for another namespace, of an unsupported
    /// kind, or does not verify over the file's bytes.
    #[error("{source}")]
    BadSignature {
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// The signature verifies, but its key may not sign this file.
    #[error("signed by {fingerprint}, which may not sign it: {reason}")]
    UnknownWriter {
        /// The signer's SHA256 fingerprint.
        fingerprint: Fingerprint,
        /// Why the `allowed_signers` file does not allow it.
        #[source]
        reason: Unauthorized,
    },
}

impl Diagnostic for AcceptError {
    fn code(&self) -> &'static str {
        match self {
            AcceptError::Unsigned => "unsigned",
            AcceptError::BadSignature { .. } => "bad-signature",
            AcceptError::UnknownWriter { .. } => "unknown-writer",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            AcceptError::Unsigned => {
                Some("sign it with a listed key: `meshseal -S KEY sign`".to_string())
            }
            AcceptError::BadSignature { source } => source.hint(),
            AcceptError::UnknownWriter { reason, .. } => reason.hint(),
        }
    }
}

/// A signed file that is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The signer's key and fingerprint.
    pub signer: Verified,
    /// The `allowed_signers` line that allows it.
    pub line: usize,
    /// The principals it signed as (see [`allowed_signers::Authorized`]).
    pub principals: Vec<String>,
}

/// The verdict on `message` and its detached armored `signature` (`None`
/// when there is no `.sig`): it must verify in `namespace` and its key be
/// allowed by `signers` at `at` (seconds since the epoch) for any principal.
pub fn accept(
    signature: Option<&[u8]>,
    message: &[u8],
    namespace: Namespace,
    signers: &AllowedSigners,
    at: u64,
) -> Result<Accepted, AcceptError> {
    let armored = signature.ok_or(AcceptError::Unsigned)?;
    let verified = Signature::parse(armored).and_then(|s| {
        s.verify_known(message, namespace, |key| {
            signers.verifying_key(key).copied()
        })
    });
    authorize(verified, namespace, signers, at)
}

/// The verdict on a signature already verified (`verified`, by
/// [`Signature::verify`] or a batch): its key must be allowed by `signers`
/// at `at` for any principal.
pub fn authorize(
    verified: Result<Verified, VerifyError>,
    namespace: Namespace,
    signers: &AllowedSigners,
    at: u64,
) -> Result<Accepted, AcceptError> {
    let signer = verified.map_err(|source| AcceptError::BadSignature { source })?;
    let found = signers
        .authorize(signer.key.key_data(), None, namespace.as_str(), at)
        .map_err(|reason| AcceptError::UnknownWriter {
            fingerprint: signer.fingerprint,
            reason,
        })?;
    Ok(Accepted {
        line: found.entry.line(),
        principals: found.principals,
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::{Algorithm, PrivateKey};

    #[test]
    fn unsigned_bad_and_unknown_are_told_apart() {
        let writer = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let stranger = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let writers = AllowedSigners::parse(&format!(
            "# meshseal writers\nalice@example.com {}\n",
            writer.public_key().to_openssh().unwrap()
        ))
        .unwrap();
        let sign = |key: &PrivateKey, ns: Namespace| {
            Signer::from_private_key(key.clone())
                .unwrap()
                .sign(ns, b"file")
                .unwrap()
        };
        let good = sign(&writer, Namespace::Secret);
        let ok = accept(
            Some(good.as_bytes()),
            b"file",
            Namespace::Secret,
            &writers,
            now(),
        )
        .unwrap();
        assert_eq!(
            (ok.line, ok.principals.as_slice()),
            (2, ["alice@example.com".to_string()].as_slice())
        );

        let code = |r: Result<Accepted, AcceptError>| r.unwrap_err().code();
        assert_eq!(
            code(accept(None, b"file", Namespace::Secret, &writers, now())),
            "unsigned"
        );
        assert_eq!(
            code(accept(
                Some(good.as_bytes()),
                b"other",
                Namespace::Secret,
                &writers,
                now()
            )),
            "bad-signature"
        );
        let scope = sign(&writer, Namespace::Scope);
        assert_eq!(
            code(accept(
                Some(scope.as_bytes()),
                b"file",
                Namespace::Secret,
                &writers,
                now()
            )),
            "bad-signature"
        );
        let theirs = sign(&stranger, Namespace::Secret);
        let err = accept(
            Some(theirs.as_bytes()),
            b"file",
            Namespace::Secret,
            &writers,
            now(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "unknown-writer");
        assert!(err.to_string().contains(
            &stranger
                .public_key()
                .fingerprint(ssh_key::HashAlg::Sha256)
                .to_string()
        ));
    }
}
