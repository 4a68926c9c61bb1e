//! The sign key (`-S/--sign-key FILE`, else `MESHSEAL_SIGN_KEY`): an
//! unencrypted OpenSSH private key, or a public key whose private half the
//! ssh-agent at `SSH_AUTH_SOCK` holds (so hardware-backed keys work).
//!
//! Like ssh, a private key file that group or others can read or write is
//! refused. meshseal runs unattended and never asks for a passphrase: an
//! encrypted key belongs in the agent. Every signature is checked before it
//! is handed out, so a misbehaving agent cannot make meshseal write a `.sig`
//! that no verifier accepts.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ssh_agent_client_rs::Client;
use ssh_key::{Fingerprint, HashAlg, PrivateKey, PublicKey, SshSig};
use zeroize::Zeroizing;

use super::keys::{self, KeyProblem};
use super::sshsig::{Signature, VerifyError};
use super::Namespace;
use crate::problem::Diagnostic;

/// Environment variable naming the sign key file when `-S` is not given.
pub const SIGN_KEY_ENV: &str = "MESHSEAL_SIGN_KEY";

/// The ssh-agent socket variable.
pub const AGENT_ENV: &str = "SSH_AUTH_SOCK";

/// Largest key file read (a 16k-bit RSA private key is about 13 KiB).
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// The sign key file: `-S FILE` when given, else `MESHSEAL_SIGN_KEY` (when
/// set and not empty), else none (commands then write unsigned).
pub fn sign_key_path(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(SIGN_KEY_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Why the ssh-agent could not sign.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `SSH_AUTH_SOCK` is not set.
    #[error(
        "the sign key is a public key, but no ssh-agent is running (SSH_AUTH_SOCK is not set)"
    )]
    NotRunning,
    /// The socket is missing or refuses connections.
    #[error("cannot reach the ssh-agent at {}: {source}", .socket.display())]
    Unreachable {
        /// The socket path.
        socket: PathBuf,
        /// The connection error.
        #[source]
        source: io::Error,
    },
    /// The agent does not hold the private half of the sign key.
    #[error("the ssh-agent does not hold the key {fingerprint}")]
    KeyNotHeld {
        /// The sign key's fingerprint.
        fingerprint: Fingerprint,
    },
    /// The agent refused to sign (a confirmation declined, a security key
    /// not touched, a locked agent).
    #[error("the ssh-agent refused to sign with {fingerprint}")]
    Refused {
        /// The sign key's fingerprint.
        fingerprint: Fingerprint,
    },
    /// The agent's answer was not understood.
    #[error("unexpected answer from the ssh-agent: {source}")]
    Protocol {
        /// The client's error.
        #[source]
        source: ssh_agent_client_rs::Error,
    },
    /// The agent returned a signature that does not verify.
    #[error("the ssh-agent returned a signature that does not verify: {source}")]
    BadSignature {
        /// Why it does not verify.
        #[source]
        source: VerifyError,
    },
}

impl Diagnostic for AgentError {
    fn code(&self) -> &'static str {
        match self {
            AgentError::NotRunning | AgentError::Unreachable { .. } => "agent-unavailable",
            AgentError::KeyNotHeld { .. } => "agent-key-missing",
            AgentError::Refused { .. } => "agent-refused",
            AgentError::Protocol { .. } | AgentError::BadSignature { .. } => "agent-failed",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            AgentError::NotRunning => "start one (`eval $(ssh-agent)`) and add the key with `ssh-add`, or pass -S with the private key file".to_string(),
            AgentError::Unreachable { .. } => "the agent has exited or SSH_AUTH_SOCK is stale: start an agent and `ssh-add` the key".to_string(),
            AgentError::KeyNotHeld { .. } => "add the private key with `ssh-add FILE` (`ssh-add -l` lists what the agent holds)".to_string(),
            AgentError::Refused { .. } => "confirm the request (keys added with `ssh-add -c` ask each time), touch the security key, or unlock the agent (`ssh-add -X`)".to_string(),
            AgentError::Protocol { .. } | AgentError::BadSignature { .. } => return None,
        })
    }
}

/// Why the sign key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The file could not be read.
    #[error("cannot read sign key file: {source}")]
    Unreadable {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Not a regular file, or too large to be a key.
    #[error("sign key file is not a key file: {reason}")]
    NotAKeyFile {
        /// What it is instead.
        reason: &'static str,
    },
    /// A private key file group or others can read or write.
    #[error("permissions {mode:04o} for sign key file are too open: it must not be accessible by group or others")]
    LoosePermissions {
        /// The file's mode bits.
        mode: u32,
        /// The file (for a symlink, its target).
        path: PathBuf,
    },
    /// A passphrase-protected private key.
    #[error("sign key file is a passphrase-protected private key")]
    Encrypted,
    /// An OpenSSH private key ssh-key 0.6 cannot decode: an ECDSA key whose
    /// secret scalar is shorter than its curve's size (about half of P-521
    /// keys, one P-256 key in 256).
    #[error("cannot decode this private key file: {source}")]
    Undecodable {
        /// ssh-key's reason (never key material).
        #[source]
        source: ssh_key::Error,
    },
    /// A key in the old PEM format (`BEGIN RSA PRIVATE KEY` and the like).
    #[error("sign key file is in the old PEM format")]
    LegacyFormat,
    /// The file holds neither an OpenSSH private key nor a public key.
    #[error("invalid sign key file: {source}")]
    Invalid {
        /// ssh-key's reason (never key material).
        #[source]
        source: ssh_key::Error,
    },
    /// A key meshseal cannot sign with (type, size; a security key's
    /// private file, which only the agent can use).
    #[error("cannot sign with this key: {problem}")]
    Unsupported {
        /// Why.
        #[source]
        problem: KeyProblem,
    },
    /// The key is a public key and the agent cannot be used.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl Diagnostic for SignerError {
    fn code(&self) -> &'static str {
        match self {
            SignerError::Unreadable { .. } => "sign-key-unreadable",
            SignerError::LoosePermissions { .. } => "sign-key-permissions",
            SignerError::Encrypted => "encrypted-sign-key",
            SignerError::NotAKeyFile { .. }
            | SignerError::LegacyFormat
            | SignerError::Undecodable { .. }
            | SignerError::Invalid { .. }
            | SignerError::Unsupported { .. } => "invalid-sign-key",
            SignerError::Agent(e) => e.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            SignerError::LoosePermissions { path, .. } => format!("run `chmod 600 {}`", path.display()),
            SignerError::Encrypted => "meshseal cannot ask for a passphrase: add the key to ssh-agent (`ssh-add FILE`) and pass its public key file (-S FILE.pub)".to_string(),
            SignerError::Undecodable { .. } => "sign through ssh-agent: `ssh-add FILE`, then pass FILE.pub as the sign key".to_string(),
            SignerError::LegacyFormat => "convert it to the OpenSSH format with `ssh-keygen -p -f FILE`".to_string(),
            SignerError::NotAKeyFile { .. } | SignerError::Invalid { .. } => "pass an OpenSSH private key, or the .pub file of a key the ssh-agent holds".to_string(),
            SignerError::Unsupported { .. } => "sign with an ssh-ed25519, ECDSA or RSA (2048 to 4096 bits) key; a security key (sk-...) signs through ssh-agent: `ssh-add` it and pass its .pub file".to_string(),
            SignerError::Agent(e) => return e.hint(),
            SignerError::Unreadable { .. } => return None,
        })
    }
}

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The ssh-agent failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Signing with the private key failed.
    #[error("signing failed: {source}")]
    Key {
        /// ssh-key's reason.
        #[source]
        source: ssh_key::Error,
    },
}

impl Diagnostic for SignError {
    fn code(&self) -> &'static str {
        match self {
            SignError::Agent(e) => e.code(),
            SignError::Key { .. } => "sign-failed",
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SignError::Agent(e) => e.hint(),
            SignError::Key { .. } => None,
        }
    }
}

enum Holder {
    /// The private key, in memory (ssh-key wipes it on drop).
    File(Box<PrivateKey>),
    /// The agent at this socket holds it.
    Agent { socket: PathBuf },
}

/// A key that makes `sshsig` signatures.
pub struct Signer {
    public: PublicKey,
    holder: Holder,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = match &self.holder {
            Holder::File(_) => "file",
            Holder::Agent { .. } => "ssh-agent",
        };
        write!(f, "Signer({} via {via})", self.fingerprint())
    }
}

impl Signer {
    /// Loads the sign key file; a public key is used through the agent at
    /// `SSH_AUTH_SOCK`.
    pub fn load(path: &Path) -> Result<Signer, SignerError> {
        let socket = std::env::var_os(AGENT_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Signer::load_with_agent(path, socket.as_deref())
    }

    /// [`load`](Self::load) with the agent socket given (`None`: no agent).
    /// For a public key, the agent is asked at once whether it holds the key.
    pub fn load_with_agent(path: &Path, agent: Option<&Path>) -> Result<Signer, SignerError> {
        let text = read_key_file(path)?;
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
            check_permissions(path)?;
            let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|source| match source {
                ssh_key::Error::Encoding(ssh_encoding::Error::Length) => {
                    SignerError::Undecodable { source }
                }
                source => SignerError::Invalid { source },
            })?;
            return Signer::from_private_key(key);
        }
        if text.contains("PRIVATE KEY-----") {
            return Err(SignerError::LegacyFormat);
        }
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or_default();
        let public =
            PublicKey::from_openssh(line).map_err(|source| SignerError::Invalid { source })?;
        keys::check(public.key_data()).map_err(|problem| SignerError::Unsupported { problem })?;
        let socket = agent.ok_or(AgentError::NotRunning)?.to_path_buf();
        let held = connect(&socket)?
            .list_all_identities()
            .map_err(|source| AgentError::Protocol { source })?;
        let wanted = public.key_data();
        let holds = held.iter().any(|identity| {
            let data: &ssh_key::public::KeyData = identity.into();
            data == wanted
        });
        if !holds {
            return Err(AgentError::KeyNotHeld {
                fingerprint: public.fingerprint(HashAlg::Sha256),
            }
            .into());
        }
        Ok(Signer {
            public,
            holder: Holder::Agent { socket },
        })
    }

    /// A signer from a private key in memory.
    pub fn from_private_key(key: PrivateKey) -> Result<Signer, SignerError> {
        if key.is_encrypted() {
            return Err(SignerError::Encrypted);
        }
        let public = key.public_key().clone();
        keys::check(public.key_data()).map_err(|problem| SignerError::Unsupported { problem })?;
        if matches!(
            public.key_data(),
            ssh_key::public::KeyData::SkEd25519(_)
                | ssh_key::public::KeyData::SkEcdsaSha2NistP256(_)
        ) {
            return Err(SignerError::Unsupported {
                problem: KeyProblem::UnsupportedType {
                    algorithm: format!("{} key file", public.algorithm().as_str()),
                },
            });
        }
        Ok(Signer {
            public,
            holder: Holder::File(Box::new(key)),
        })
    }

    /// The public key (with the file's comment).
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Its SHA256 fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint(HashAlg::Sha256)
    }

    /// Whether the ssh-agent makes the signatures.
    pub fn uses_agent(&self) -> bool {
        matches!(self.holder, Holder::Agent { .. })
    }

    /// An armored `sshsig` signature over `message` in `namespace` (hash
    /// [`MESSAGE_HASH`]; RSA as rsa-sha2-512), as `ssh-keygen -Y sign`
    /// makes it and `ssh-keygen -Y verify` checks it.
    pub fn sign(&self, namespace: Namespace, message: &[u8]) -> Result<String, SignError> {
        let ns = namespace.as_str();
        let sig = match &self.holder {
            Holder::File(key) => match key.key_data() {
                ssh_key::private::KeypairData::Rsa(rsa) => sign_rsa(rsa, ns, message)?,
                _ => key
                    .sign(ns, MESSAGE_HASH, message)
                    .map_err(|source| SignError::Key { source })?,
            },
            Holder::Agent { socket } => {
                let data = SshSig::signed_data(ns, MESSAGE_HASH, message)
                    .map_err(|source| SignError::Key { source })?;
                let raw = connect(socket)?
                    .sign(&self.public, &data)
                    .map_err(|e| match e {
                        ssh_agent_client_rs::Error::RemoteFailure => AgentError::Refused {
                            fingerprint: self.fingerprint(),
                        },
                        ssh_agent_client_rs::Error::AgentCommunicationError(source) => {
                            AgentError::Unreachable {
                                socket: socket.clone(),
                                source,
                            }
                        }
                        source => AgentError::Protocol { source },
                    })?;
                SshSig::new(self.public.key_data().clone(), ns, MESSAGE_HASH, raw)
                    .map_err(|source| SignError::Key { source })?
            }
        };
        let signature = Signature::from_inner(sig);
        if let Err(source) = signature.verify(message, namespace) {
            return Err(match self.holder {
                Holder::Agent { .. } => AgentError::BadSignature { source }.into(),
                Holder::File(_) => SignError::Key {
                    source: ssh_key::Error::Crypto,
                },
            });
        }
        Ok(signature.to_armored())
    }
}

/// The hash of the signed bytes inside the sshsig blob. sshsig allows
/// sha256 and sha512 and `ssh-keygen -Y verify` checks both (it signs with
/// sha512 by default); meshseal signs with sha256, which runs on the CPU's
/// SHA extensions where it has them: a cold load hashes every secret file
/// for its signature (SHA-512, the files' and Ed25519's own, was 2% of a
/// signed load).
pub const MESSAGE_HASH: HashAlg = HashAlg::Sha256;

/// rsa-sha2-512 with the `rsa` crate: ssh-key 0.6.7 builds the RSA private
/// key from the wrong primes (p twice) and cannot sign. The signature format
/// stays ssh-key's ([`SshSig::signed_data`], [`SshSig::new`]); the RSA
/// operation is blinded.
fn sign_rsa(
    key: &ssh_key::private::RsaKeypair,
    namespace: &str,
    message: &[u8],
) -> Result<SshSig, SignError> {
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let crypto = |_| SignError::Key {
        source: ssh_key::Error::Crypto,
    };
    let uint =
        |m: &ssh_key::Mpint| rsa::BigUint::try_from(m).map_err(|source| SignError::Key { source });
    let private = rsa::RsaPrivateKey::from_components(
        uint(&key.public.n)?,
        uint(&key.public.e)?,
        uint(&key.private.d)?,
        vec![uint(&key.private.p)?, uint(&key.private.q)?],
    )
    .map_err(crypto)?;
    let data = SshSig::signed_data(namespace, MESSAGE_HASH, message)
        .map_err(|source| SignError::Key { source })?;
    let raw = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private)
        .try_sign_with_rng(&mut rand::rngs::OsRng, &data)
        .map_err(|_| SignError::Key {
            source: ssh_key::Error::Crypto,
        })?;
    let algorithm = ssh_key::Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    };
    let signature = ssh_key::Signature::new(algorithm, raw.to_vec())
        .map_err(|source| SignError::Key { source })?;
    SshSig::new(
        ssh_key::public::KeyData::Rsa(key.public.clone()),
        namespace,
        MESSAGE_HASH,
        signature,
    )
    .map_err(|source| SignError::Key { source })
}

fn connect(socket: &Path) -> Result<Client, AgentError> {
    Client::connect(socket).map_err(|e| match e {
        ssh_agent_client_rs::Error::AgentCommunicationError(source) => AgentError::Unreachable {
            socket: socket.to_path_buf(),
            source,
        },
        source => AgentError::Protocol { source },
    })
}

/// The file's text, read through one handle judged by its kind and size.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>, SignerError> {
    let file = open(path).map_err(|source| SignerError::Unreadable { source })?;
    let meta = file
        .metadata()
        .map_err(|source| SignerError::Unreadable { source })?;
    if !meta.is_file() {
        return Err(SignerError::NotAKeyFile {
            reason: "not a regular file",
        });
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(SignerError::NotAKeyFile {
            reason: "too large",
        });
    }
    // Sized up front: a growing buffer would leave copies of the key behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| SignerError::Unreadable { source })?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(SignerError::NotAKeyFile {
            reason: "too large",
        });
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_string())),
        Err(_) => Err(SignerError::NotAKeyFile {
            reason: "not a text file",
        }),
    }
}

#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), SignerError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| SignerError::Unreadable { source })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SignerError::LoosePermissions {
            mode,
            path: fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), SignerError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::sshsig;
    use ssh_key::{Algorithm, LineEnding};

    fn write_key(dir: &Path, key: &PrivateKey, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("id");
        fs::write(&path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_private_key_file_signs_what_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let path = write_key(dir.path(), &key, 0o600);
        let signer = Signer::load_with_agent(&path, None).unwrap();
        assert!(!signer.uses_agent());
        let sig = signer.sign(Namespace::Secret, b"bytes").unwrap();
        assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----\n"));
        let ok = sshsig::verify(sig.as_bytes(), b"bytes", Namespace::Secret).unwrap();
        assert_eq!(ok.fingerprint, signer.fingerprint());
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_readable_private_key_file_is_refused_with_chmod_hint() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let path = write_key(dir.path(), &key, 0o640);
        let err = Signer::load_with_agent(&path, None).unwrap_err();
        assert!(
            matches!(err, SignerError::LoosePermissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.hint().unwrap().starts_with("run `chmod 600 "));
    }

    #[test]
    fn a_public_key_without_an_agent_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let path = dir.path().join("id.pub");
        fs::write(&path, key.public_key().to_openssh().unwrap()).unwrap();
        let err = Signer::load_with_agent(&path, None).unwrap_err();
        assert!(
            matches!(err, SignerError::Agent(AgentError::NotRunning)),
            "{err}"
        );
        let gone = dir.path().join("no-such-socket");
        let err = Signer::load_with_agent(&path, Some(&gone)).unwrap_err();
        assert!(
            matches!(err, SignerError::Agent(AgentError::Unreachable { .. })),
            "{err}"
        );
        assert_eq!(err.code(), "agent-unavailable");
    }

    #[test]
    fn garbage_and_legacy_pem_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(
            &path,
            "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            Signer::load_with_agent(&path, None),
            Err(SignerError::LegacyFormat)
        ));
        fs::write(&path, "not a key 8675309\n").unwrap();
        let err = Signer::load_with_agent(&path, None).unwrap_err();
        assert!(matches!(err, SignerError::Invalid { .. }), "{err}");
        assert!(!err.to_string().contains("8675309"));
        assert!(matches!(
            Signer::load_with_agent(dir.path(), None),
            Err(SignerError::NotAKeyFile { .. }) | Err(SignerError::Unreadable { .. })
        ));
    }
}
