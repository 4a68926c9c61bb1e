//! Certificate authorities for mesh mTLS: generating the builtin CA's
//! secrets, and checking that a provided CA's cert and key are usable.
//!
//! Kuma names a builtin backend's secrets `<mesh>.ca-builtin-cert-<backend>`
//! and `<mesh>.ca-builtin-key-<backend>`; `meshseal mtls init` creates them
//! (PEM, CA:true, keyCertSign, CN=<mesh>, valid for 10 years) so that the
//! control plane finds them instead of generating its own.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use thiserror::Error;
use x509_parser::prelude::*;
use zeroize::Zeroizing;

use crate::document::{Document, SecretData};
use crate::identity::Identities;
use crate::policy::{load_mesh, DataSource, PolicyFileError};
use crate::problem::{Diagnostic, Problem};
use crate::scope::{NameError, Scope, SecretId};
use crate::store::{Store, WriteError};

/// Validity of a builtin CA, as Kuma's.
pub const BUILTIN_CA_DAYS: i64 = 3650;

/// Why a CA cannot be used (or made).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CaError {
    /// The cert is not a PEM certificate.
    #[error("cert: not a PEM-encoded X.509 certificate")]
    CertNotPem,
    /// The key is not a PEM private key.
    #[error("key: not a PEM-encoded PKCS#8 private key")]
    KeyNotPem,
    /// basicConstraints CA:true is missing.
    #[error("cert: not a CA certificate (basicConstraints CA:true is missing)")]
    NotCa,
    /// keyCertSign is missing.
    #[error("cert: key usage does not include keyCertSign")]
    NoKeyCertSign,
    /// The key does not belong to the cert.
    #[error("key does not match the certificate's public key")]
    Mismatch,
    /// Generation failed.
    #[error("cannot generate the CA: {0}")]
    Generate(#[source] rcgen::Error),
}

impl Diagnostic for CaError {
    fn code(&self) -> &'static str {
        match self {
            CaError::Generate(_) => "ca-generate",
            _ => "invalid-ca",
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            CaError::Generate(_) => None,
            _ => Some("a provided CA needs a PEM CA certificate (CA:true, keyCertSign) and its own PEM private key; or use a builtin backend and `meshseal mtls init`".to_string()),
        }
    }
}

/// A freshly generated CA.
pub struct GeneratedCa {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (zeroed on drop).
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for GeneratedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GeneratedCa([REDACTED key])")
    }
}

/// Generates a self-signed CA for a mesh: CN=<mesh>, CA:true, keyCertSign,
/// 10 years from now (rcgen's default validity is not what a CA wants).
pub fn generate_builtin(mesh: &str) -> Result<GeneratedCa, CaError> {
    let key = KeyPair::generate().map_err(CaError::Generate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, mesh);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = ::time::OffsetDateTime::now_utc();
    params.not_before = now - ::time::Duration::minutes(5);
    params.not_after = now + ::time::Duration::days(BUILTIN_CA_DAYS);
    let cert = params.self_signed(&key).map_err(CaError::Generate)?;
    Ok(GeneratedCa {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// Checks a provided CA: PEM cert that is a CA with keyCertSign, and a PEM
/// key that belongs to it.
pub fn verify_provided(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), CaError> {
    let (_, pem) = parse_x509_pem(cert_pem).map_err(|_| CaError::CertNotPem)?;
    if pem.label != "CERTIFICATE" {
        return Err(CaError::CertNotPem);
    }
    let cert = pem.parse_x509().map_err(|_| CaError::CertNotPem)?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(CaError::NotCa);
    }
    let cert_sign = cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.key_cert_sign());
    if !cert_sign {
        return Err(CaError::NoKeyCertSign);
    }
    let key_text = std::str::from_utf8(key_pem).map_err(|_| CaError::KeyNotPem)?;
    let key = KeyPair::from_pem(key_text).map_err(|_| CaError::KeyNotPem)?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(CaError::Mismatch);
    }
    Ok(())
}

/// Bytes of a data source, decrypting secrets through `secret`.
pub fn source_bytes(
    source: &DataSource,
    secret: &dyn Fn(&str) -> Option<SecretData>,
) -> Option<SecretData> {
    match source {
        DataSource::Secret(name) => secret(name),
        DataSource::Inline(b) => Some(SecretData::new(b.clone())),
        DataSource::InlineString(s) => Some(SecretData::new(s.as_bytes().to_vec())),
        DataSource::File(_) => None, // a path on the data plane's host
    }
}

/// Why `mtls init` created nothing (or stopped part way: the secrets made
/// before the failure stay, and a second run makes only what is missing).
#[derive(Debug, Error)]
pub enum MtlsInitError {
    /// The mesh name is invalid.
    #[error(transparent)]
    Mesh(NameError),
    /// The mesh's `mesh.toml` cannot be read or is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyFileError),
    /// The mesh has no `mesh.yaml` / `mesh.toml`, so no backends.
    #[error("no mesh.yaml or mesh.toml: the mesh has no mTLS backends")]
    NoMesh {
        /// Where the Mesh resource belongs.
        file: PathBuf,
    },
    /// A backend's CA secret names are not valid secret names.
    #[error(transparent)]
    SecretName(NameError),
    /// The CA could not be generated.
    #[error(transparent)]
    Generate(#[from] CaError),
    /// A CA secret could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl MtlsInitError {
    fn source_diagnostic(&self) -> Option<&dyn Diagnostic> {
        match self {
            MtlsInitError::Mesh(e) | MtlsInitError::SecretName(e) => Some(e),
            MtlsInitError::Policy(e) => Some(e),
            MtlsInitError::Generate(e) => Some(e),
            MtlsInitError::Write(e) => Some(e),
            MtlsInitError::NoMesh { .. } => None,
        }
    }
}

impl Diagnostic for MtlsInitError {
    fn code(&self) -> &'static str {
        self.source_diagnostic().map_or("no-mesh", |e| e.code())
    }

    fn hint(&self) -> Option<String> {
        match self.source_diagnostic() {
            Some(e) => e.hint(),
            None => Some(
                "add a [[mtls.backends]] of type = \"builtin\" to meshes/<mesh>/mesh.toml"
                    .to_string(),
            ),
        }
    }

    fn line(&self) -> Option<usize> {
        self.source_diagnostic().and_then(|e| e.line())
    }

    fn file(&self) -> Option<&Path> {
        match self {
            MtlsInitError::NoMesh { file } => Some(file),
            other => other.source_diagnostic().and_then(|e| e.file()),
        }
    }
}

/// `meshseal mtls init -m MESH`: creates the missing builtin CA secrets of
/// every builtin backend of the mesh. Returns the secrets created.
pub fn mtls_init(store: &Store, mesh: &str) -> Result<Vec<SecretId>, MtlsInitError> {
    let scope = Scope::mesh(mesh).map_err(MtlsInitError::Mesh)?;
    let Some(mesh_policy) = load_mesh(store, mesh)? else {
        return Err(MtlsInitError::NoMesh {
            file: scope.dir().join("mesh.yaml"),
        });
    };
    let mut created = Vec::new();
    for ca in mesh_policy.builtin_cas() {
        let cert_id = SecretId::new(scope.clone(), &ca.cert).map_err(MtlsInitError::SecretName)?;
        let key_id = SecretId::new(scope.clone(), &ca.key).map_err(MtlsInitError::SecretName)?;
        if store.exists(&cert_id) && store.exists(&key_id) {
            continue;
        }
        let generated = generate_builtin(mesh)?;
        // The key first: a cert without its key is useless, a key without
        // its cert is re-made on the next run.
        store.put(
            &Document::new(
                key_id.clone(),
                SecretData::new(generated.key_pem.as_bytes().to_vec()),
            ),
            None,
        )?;
        store.put(
            &Document::new(
                cert_id.clone(),
                SecretData::new(generated.cert_pem.into_bytes()),
            ),
            None,
        )?;
        created.push(cert_id);
        created.push(key_id);
    }
    Ok(created)
}

/// A provided backend's CA is unusable: the backend, and why.
#[derive(Debug, Error)]
#[error("{field}: {source}")]
pub struct ProvidedCaError {
    /// The Mesh resource's file.
    pub file: PathBuf,
    /// The backend's field path (`mtls.backends[0]`).
    pub field: String,
    /// The backend.
    pub backend: String,
    /// What is wrong with its cert or key.
    #[source]
    pub source: CaError,
}

impl Diagnostic for ProvidedCaError {
    fn code(&self) -> &'static str {
        self.source.code()
    }

    fn hint(&self) -> Option<String> {
        self.source.hint()
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.file)
    }
}

/// With a key: checks each provided backend of a mesh's `mesh.toml`. Returns
/// problems about the mesh file.
pub fn check_provided(
    store: &Store,
    mesh: &crate::policy::Policy,
    identities: &Identities,
    read_secret: &dyn Fn(&SecretId) -> Option<Vec<u8>>,
) -> Vec<Problem> {
    let scope = Scope::Mesh(mesh.mesh.clone());
    let secret = |name: &str| -> Option<SecretData> {
        let id = SecretId::new(scope.clone(), name).ok()?;
        let bytes = read_secret(&id)?;
        store
            .open_bytes(&id, &bytes, identities)
            .ok()
            .map(|l| l.doc.data)
    };
    let mut problems = Vec::new();
    for b in mesh.backends.iter().filter(|b| !b.builtin) {
        let (Some(cert), Some(key)) = (&b.cert, &b.key) else {
            continue;
        };
        let (Some(cert), Some(key)) = (source_bytes(cert, &secret), source_bytes(key, &secret))
        else {
            continue; // unresolvable references are reported by resolve()
        };
        if let Err(source) = verify_provided(cert.expose(), key.expose()) {
            problems.push(Problem::from(ProvidedCaError {
                file: mesh.path(),
                field: b.field.clone(),
                backend: b.name.clone(),
                source,
            }));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_ca_is_a_ten_year_ca() {
        let ca = generate_builtin("payments").unwrap();
        verify_provided(ca.cert_pem.as_bytes(), ca.key_pem.as_bytes()).unwrap();
        let (_, pem) = parse_x509_pem(ca.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert!(cert.is_ca());
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86400;
        assert!((3649..=3651).contains(&days), "{days}");
        assert!(cert.subject().to_string().contains("CN=payments"));
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn mismatched_key_and_garbage_are_refused() {
        let a = generate_builtin("a").unwrap();
        let b = generate_builtin("b").unwrap();
        assert_eq!(
            verify_provided(a.cert_pem.as_bytes(), b.key_pem.as_bytes()),
            Err(CaError::Mismatch)
        );
        assert_eq!(
            verify_provided(b"nope", a.key_pem.as_bytes()),
            Err(CaError::CertNotPem)
        );
        assert_eq!(
            verify_provided(a.cert_pem.as_bytes(), b"nope"),
            Err(CaError::KeyNotPem)
        );
    }
}
