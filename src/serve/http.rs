//! The watcher's HTTP server: hyper's HTTP/1 with every limit set here
//! rather than left to defaults, so that a client that sends its request
//! slowly, never finishes it, sends huge headers, or opens connections by
//! the thousand costs a bounded amount of memory and time and cannot keep
//! others from being served. One thread serves every connection; no request
//! waits on another. The routes are [`super::api`]'s.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::{AbortHandle, JoinSet};
use tracing::warn;

/// How long a client may take to send a request's headers, counted from the
/// moment the server starts waiting for them — on a new connection and
/// between requests on a kept-alive one. A client that is slower, or sends
/// nothing, is disconnected: it holds no connection slot for longer. Local
/// clients send their headers in microseconds; ten seconds also covers a
/// paused or heavily loaded caller.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once. When a new connection would exceed the cap,
/// the oldest open connection is closed rather than the new one refused: a
/// flood of idle connections then cannot lock a legitimate caller out (its
/// new connection is served within the next [`MAX_CONNECTIONS`] arrivals),
/// and memory and file descriptors stay bounded (well under the usual limit
/// of 1024 descriptors). A kept-alive client whose idle connection is closed
/// simply reconnects.
pub const MAX_CONNECTIONS: usize = 512;

/// Largest request head (request line and headers) read, in bytes: a bearer
/// token is under 100. Larger heads are answered 431 and the connection is
/// closed.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Most header fields in one request; more are answered 431.
pub const MAX_HEADERS: usize = 64;

/// Per-connection read buffer cap (hyper's minimum is 8 KiB); bodies are
/// never buffered.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How long a stop waits for requests in flight before closing their
/// connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often at most the connection cap, or failing accepts, are logged
/// while they last.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Serves `app` on `listener`, within the limits above, until `shutdown`
/// completes; then lets requests in flight finish for a few seconds.
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    app: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: App,
{
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(READ_BUFFER_BYTES);
    let (closing, _) = tokio::sync::watch::channel(());
    let mut connections = JoinSet::new();
    // Open connections, oldest first, for closing the oldest at the cap.
    let mut open: VecDeque<AbortHandle> = VecDeque::new();
    let mut cap_warned = RateLimited::default();
    let mut accept_warned = RateLimited::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or memory: let the kernel's backlog
                // hold new connections for a moment instead of spinning.
                if !is_connection_error(&e) {
                    if accept_warned.due() {
                        warn!(error = %e, "cannot accept API connections: retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        if open.len() >= MAX_CONNECTIONS {
            open.retain(|c| !c.is_finished());
        }
        if open.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = open.pop_front() {
                oldest.abort();
            }
            if cap_warned.due() {
                warn!(
                    limit = MAX_CONNECTIONS,
                    "too many open API connections: closing the oldest for each new one"
                );
            }
        }
        let (http, app, closing) = (http.clone(), app.clone(), closing.subscribe());
        let tls = tls.clone();
        open.push_back(connections.spawn(async move {
            match tls {
                None => serve_connection(&http, stream, app, closing).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request head.
                    let handshake =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await;
                    if let Ok(Ok(stream)) = handshake {
                        serve_connection(&http, stream, app, closing).await;
                    }
                }
            }
        }));
    }
    drop(listener);
    drop(closing);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves one connection until it ends or the server stops. Errors here
/// are the client's (bad request, timeout, reset) and hyper has already
/// answered or closed: nothing to log.
async fn serve_connection<S, A>(
    http: &hyper::server::conn::http1::Builder,
    stream: S,
    app: A,
    mut closing: tokio::sync::watch::Receiver<()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    A: App,
{
    let connection = http.serve_connection(TokioIo::new(stream), app);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = closing.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// What [`serve`] serves: a hyper service answering every request (the
/// API's [`super::api::Api`]).
pub trait App:
    hyper::service::Service<
        Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<T> App for T where
    T: hyper::service::Service<
            Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A warning logged at most once per [`WARNING_INTERVAL`]: an attack must
/// not flood the log.
#[derive(Default)]
struct RateLimited(Option<Instant>);

impl RateLimited {
    /// Whether to log now (and if so, the clock restarts).
    fn due(&mut self) -> bool {
        let due = self.0.is_none_or(|t| t.elapsed() >= WARNING_INTERVAL);
        if due {
            self.0 = Some(Instant::now());
        }
        due
    }
}

/// Accept errors that concern one connection only (it went away before it
/// was accepted), as opposed to the process running out of resources.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
