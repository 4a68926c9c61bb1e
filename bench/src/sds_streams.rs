//! 1,000 SDS streams held open on one watcher (SPEC 5: within the memory
//! limit), and one change pushed to all of them.
//!
//! The client is the harness's own: tonic with the `envoy-types` API, the
//! streams spread over a number of Unix-socket connections (one each, as
//! 1,000 Envoys would connect; or all on one, as one Envoy multiplexes its
//! subscriptions), each `StreamSecrets` asking for the same certificate and
//! ACKing every response as Envoy does. Each request carries the node a real
//! Envoy 1.40 sends (`envoy::node`, ~61 KB with its list of extensions): in
//! every request, Envoy's default, or in the first one only, as Envoy does
//! with `set_node_on_first_message_only: true`. The watcher's `VmRSS` is read once every stream
//! has its first response and has ACKed it; then `meshseal apply` rotates
//! the certificate and each stream records when its push arrives, from the
//! file's rename into the store (an inotify watch, as for the Envoy row).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use hyper_util::rt::TokioIo;
use meshseal::serve::sds::resources::SECRET_TYPE_URL;
use prost::Message as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::pki::Pki;
use crate::report::{count, median, ms, verdict, Row};
use crate::sds::{secret_file, Landing, FANOUT_SECRET};
use crate::watcher::Watcher;
use crate::{gen, Bench};

/// Connections being opened at once (the rest wait their turn).
const OPENING: usize = 64;
/// How long opening every stream, or one push to all, may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// A push as one stream saw it.
type Push = (Instant, DiscoveryResponse);

/// Which of a stream's requests carry Envoy's node.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeIn {
    /// Every request (Envoy's default).
    Every,
    /// The first request only (`set_node_on_first_message_only: true`).
    First,
}

impl NodeIn {
    fn describe(self) -> String {
        let kb = crate::envoy::node_bytes() as f64 / 1000.0;
        match self {
            NodeIn::Every => format!("Envoy 1.40's {kb:.0} KB node in every request"),
            NodeIn::First => format!("Envoy 1.40's {kb:.0} KB node in the first request only"),
        }
    }
}

/// What a stream's requests carry besides its name.
#[derive(Clone)]
struct Client {
    token: Arc<str>,
    resource: Arc<str>,
    node: Arc<Node>,
    node_in: NodeIn,
}

impl Bench {
    /// `--sds-streams` streams over `connections` connections to the
    /// watcher's `socket`, Envoy's node in their requests as `node_in` says:
    /// the watcher's RSS with them held, and pushes of one change to all of
    /// them.
    #[allow(clippy::too_many_arguments)]
    pub fn sds_streams(
        &mut self,
        root: &Path,
        socket: &Path,
        token: &str,
        pki: &Pki,
        watcher: &mut Watcher,
        n: usize,
        (connections, node_in): (usize, NodeIn),
    ) {
        let streams = self.options.sds_streams;
        let (mesh, name) = FANOUT_SECRET;
        let client = Client {
            token: token.into(),
            resource: format!("{mesh}/{name}").into(),
            node: Arc::new(crate::envoy::node()),
            node_in,
        };
        let pid = watcher.0.id();
        let before = proc_status_bytes(pid, "VmRSS:");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("client runtime");
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let (push_tx, mut pushes) = mpsc::unbounded_channel::<Push>();
        let gate = Arc::new(Semaphore::new(OPENING));
        let opening = Instant::now();
        let channels: Vec<Channel> = rt.block_on(async {
            let mut channels = Vec::with_capacity(connections);
            for _ in 0..connections {
                channels.push(connect(socket.to_path_buf()).await.expect("connect"));
            }
            channels
        });
        for k in 0..streams {
            let stream = hold_stream(
                channels[k % connections].clone(),
                client.clone(),
                gate.clone(),
                ready_tx.clone(),
                push_tx.clone(),
            );
            rt.spawn(stream);
        }
        drop(channels);
        rt.block_on(async {
            for k in 0..streams {
                match tokio::time::timeout(PATIENCE, ready.recv()).await {
                    Ok(Some(Ok(()))) => {}
                    Ok(Some(Err(e))) => panic!("SDS stream {k}: {e}"),
                    _ => panic!("only {k} of {streams} SDS streams opened in {PATIENCE:?}"),
                }
            }
        });
        eprintln!(
            "{streams} SDS streams on {connections} connection(s) open and ACKed in {} ms",
            opening.elapsed().as_millis()
        );
        // Let the server take the last ACKs before reading its memory.
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(status)) = watcher.0.try_wait() {
            panic!("the watcher exited with {streams} SDS streams open: {status}");
        }
        let held = proc_status_bytes(pid, "VmRSS:");
        let peak = proc_status_bytes(pid, "VmHWM:");

        let landing = Landing::watch(&secret_file(root, mesh, name));
        let mut lasts = Vec::new();
        let mut firsts = Vec::new();
        for _ in 0..self.options.runs {
            let leaf = pki.leaf();
            landing.arm();
            self.apply_secret(root, mesh, name, &leaf.pem);
            let landed = landing.landed();
            let got: Vec<Push> = rt.block_on(async {
                let mut got = Vec::with_capacity(streams);
                while got.len() < streams {
                    match tokio::time::timeout(PATIENCE, pushes.recv()).await {
                        Ok(Some(push)) => got.push(push),
                        _ => panic!("{} of {streams} streams got the push", got.len()),
                    }
                }
                got
            });
            for (_, response) in &got {
                assert_eq!(
                    served_leaf(response).as_deref(),
                    Some(leaf.der.as_slice()),
                    "every stream is pushed the new certificate"
                );
            }
            let first = got.iter().map(|(t, _)| *t).min().expect("pushes");
            let last = got.iter().map(|(t, _)| *t).max().expect("pushes");
            let debounce = self.options.debounce;
            firsts.push((first - landed).saturating_sub(debounce));
            lasts.push((last - landed).saturating_sub(debounce));
            std::thread::sleep(debounce * 2);
        }
        drop(rt);

        let limit = 64 * 1024 * 1024 + 2 * (n * gen::SECRET_BYTES) as u64;
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        let shape = match connections {
            1 => "all on one connection".to_string(),
            c if c == streams => "a connection each".to_string(),
            c => format!("over {} connections", count(c)),
        };
        let node = node_in.describe();
        self.rows.push(Row {
            measurement: format!(
                "SDS: {} open streams, {shape}, {node}: watcher VmRSS (before them {}; VmHWM {})",
                count(streams),
                mib(before),
                mib(peak)
            ),
            secrets: count(n),
            meshseal: mib(held),
            reference: format!("limit {}", mib(limit)),
            ratio: format!("{:.0}% of limit", 100.0 * held as f64 / limit as f64),
            target: "< 64 MiB + 2x secret bytes".into(),
            result: verdict(
                held < limit,
                n == self.options.reference_size() && streams >= 1_000,
            ),
        });
        self.rows.push(Row {
            measurement: format!(
                "SDS: one change pushed to {} streams, {shape}, {node}: from the rename to the last response, minus debounce (first response {})",
                count(streams),
                ms(median(&mut firsts))
            ),
            secrets: count(n),
            meshseal: ms(median(&mut lasts)),
            reference: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            result: "info".into(),
        });
    }
}

/// One stream on its own connection: the first response ACKed, then every
/// push recorded and ACKed, until the runtime is dropped.
async fn hold_stream(
    channel: Channel,
    client: Client,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    pushes: mpsc::UnboundedSender<Push>,
) {
    let opened = async {
        let _turn = gate.acquire().await.map_err(|e| e.to_string())?;
        let mut sds = SecretDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(4);
        tx.send(client.request(None))
            .await
            .map_err(|e| e.to_string())?;
        let mut call = tonic::Request::new(ReceiverStream::new(rx));
        let bearer = format!("Bearer {}", client.token)
            .parse()
            .map_err(|_| "token")?;
        call.metadata_mut().insert("authorization", bearer);
        let mut responses = sds
            .stream_secrets(call)
            .await
            .map_err(|s| s.to_string())?
            .into_inner();
        let first = responses
            .message()
            .await
            .map_err(|s| s.to_string())?
            .ok_or("the server ended the stream")?;
        tx.send(client.request(Some(&first)))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((tx, responses))
    };
    let (tx, mut responses) = match opened.await {
        Ok(open) => {
            let _ = ready.send(Ok(()));
            open
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Ok(Some(response)) = responses.message().await {
        let at = Instant::now();
        if tx.send(client.request(Some(&response))).await.is_err() {
            return;
        }
        let _ = pushes.send((at, response));
    }
}

/// A channel over a new connection to the Unix socket.
async fn connect(socket: PathBuf) -> Result<Channel, String> {
    Endpoint::try_from("http://[::]:50051")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .map_err(|e| format!("connect: {e}"))
}

impl Client {
    /// The subscription request; with `acked`, the ACK of that response.
    fn request(&self, acked: Option<&DiscoveryResponse>) -> DiscoveryRequest {
        let node = acked.is_none() || self.node_in == NodeIn::Every;
        DiscoveryRequest {
            version_info: acked.map(|r| r.version_info.clone()).unwrap_or_default(),
            node: node.then(|| Node::clone(&self.node)),
            response_nonce: acked.map(|r| r.nonce.clone()).unwrap_or_default(),
            resource_names: vec![self.resource.to_string()],
            type_url: SECRET_TYPE_URL.into(),
            ..DiscoveryRequest::default()
        }
    }
}

/// The leaf certificate (DER) of the one `tls_certificate` in `response`.
fn served_leaf(response: &DiscoveryResponse) -> Option<Vec<u8>> {
    let [any] = response.resources.as_slice() else {
        return None;
    };
    let secret = Secret::decode(any.value.as_slice()).ok()?;
    let Some(secret::Type::TlsCertificate(tls)) = secret.r#type else {
        return None;
    };
    let Some(Specifier::InlineBytes(chain)) = tls.certificate_chain?.specifier else {
        return None;
    };
    CertificateDer::from_pem_slice(&chain)
        .ok()
        .map(|c| c.to_vec())
}

/// A `/proc/<pid>/status` field in kB, as bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
        * 1024
}

/// Raises this process's soft limit on open files to `want` (bounded by
/// the hard limit); a watcher started from here afterwards inherits it.
pub(crate) fn raise_file_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < want) {
        let current = limit.maximum.map_or(want, |m| m.min(want));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(current),
                maximum: limit.maximum,
            },
        );
    }
}
