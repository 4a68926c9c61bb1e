//! Certificates for the SDS rows: a CA, `localhost` leaves it signs (what
//! meshseal serves as `tls_certificate`), and a TLS client that asks a
//! listener which leaf it presents.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};

/// A CA and the client configuration that trusts only it.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    client: Arc<rustls::ClientConfig>,
}

/// A leaf certificate: Kuma's gateway format (chain, then key) and the DER a
/// TLS client sees.
pub struct Leaf {
    pub pem: String,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "meshseal bench CA");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).expect("CA certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).expect("CA as a root");
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Pki {
            issuer: Issuer::new(params, key),
            client: Arc::new(client),
        }
    }

    /// A new ECDSA P-256 leaf for `localhost` (a new key, so new bytes).
    pub fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Leaf {
            pem: format!("{}{}", cert.pem(), key.serialize_pem()),
            der: cert.der().to_vec(),
        }
    }

    /// The leaf certificate the TLS listener at `addr` presents to a client
    /// that trusts only this CA and checks the name `localhost`.
    pub fn served(&self, addr: SocketAddr) -> Result<Vec<u8>, String> {
        let mut sock =
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
        let _ = sock.set_nodelay(true);
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = sock.set_write_timeout(Some(Duration::from_secs(2)));
        let name = ServerName::try_from("localhost").expect("server name");
        let mut conn =
            rustls::ClientConnection::new(self.client.clone(), name).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
        }
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c: &CertificateDer<'_>| c.to_vec())
            .ok_or("no certificate")?;
        conn.send_close_notify();
        let _ = conn.complete_io(&mut sock);
        let _ = sock.flush();
        Ok(leaf)
    }
}
