//! A minimal HTTP/1.1 client over one keep-alive loopback connection: enough
//! to time the watcher's API without measuring a client library's overhead.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    token: String,
    addr: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr, token: &str) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            token: token.to_string(),
            addr,
        })
    }

    /// One untimed GET of `path` on a connection that is open: a server
    /// closes a kept-alive connection left idle longer than its header
    /// timeout (meshseal's: 10 s), as one waiting for the others' runs can
    /// be on a slow machine; then the client connects again.
    pub fn ready(&mut self, path: &str) -> io::Result<()> {
        if self.get(path).is_ok() {
            return Ok(());
        }
        *self = Client::connect(self.addr, &self.token)?;
        self.get(path).map(|_| ())
    }

    /// GETs `path`; returns the status code and the body.
    pub fn get(&mut self, path: &str) -> io::Result<(u16, Vec<u8>)> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
            self.token
        );
        self.writer.write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// The `data` field of a Kuma secret JSON body.
pub fn data_field(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("data")?.as_str().map(str::to_string)
}

/// The floor for API reads: a thread that answers every request on one
/// keep-alive loopback connection with the same bytes, doing nothing else. The
/// same client times it, so what is left over is meshseal's own work.
pub fn echo_server(body: Vec<u8>, cpu: Option<usize>) -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        crate::pin::Pinned::this_thread_for_good(cpu);
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(read_half);
        let mut writer = stream;
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        let mut line = String::new();
        loop {
            // Read one request head: lines up to the empty one.
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            if writer.write_all(&response).is_err() {
                return;
            }
        }
    });
    Ok(addr)
}

/// The API's second reference: meshseal's own HTTP server
/// ([`meshseal::serve::http::serve`]: hyper, its limits and timers, one
/// thread) answering every request with `body` and the API's headers, but
/// without routing, the token check or the index lookup. The gap between it
/// and [`echo_server`] is the HTTP stack's; between meshseal and it, the
/// API's own work.
pub fn http_server(body: Vec<u8>, cpu: Option<usize>) -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        crate::pin::Pinned::this_thread_for_good(cpu);
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let body = axum::body::Bytes::from(body);
            let app = hyper::service::service_fn(move |_request| {
                let response = axum::http::Response::builder()
                    .header("content-type", "application/json")
                    .header("cache-control", "no-store")
                    .body(axum::body::Body::from(body.clone()))
                    .expect("a fixed response");
                std::future::ready(Ok::<_, std::convert::Infallible>(response))
            });
            let _ = meshseal::serve::http::serve(listener, None, app, std::future::pending()).await;
        });
    });
    Ok(addr)
}
