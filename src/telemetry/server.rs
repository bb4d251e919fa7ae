//! The HTTP endpoint for Prometheus and the kubelet (`/metrics`, `/healthz`, `/readyz`), behind
//! a listener that bounds how many connections are served at once and for how long.

use std::future::{Future, IntoFuture as _};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::{Health, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The listener could not be bound or set up (address in use, permission denied, ...).
    #[error("binding the telemetry listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The runtime or the thread that serves the endpoint could not be created.
    #[error("starting the telemetry server on {addr}: {source}")]
    Start {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How many connections are served at once, for how long, and how long shutdown waits for them.
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    /// Further clients wait in the kernel's accept backlog.
    max_connections: usize,
    /// How long a connection may stay open, whatever it does: bounds slow or idle clients
    /// (hyper's header timeout needs a timer that `axum::serve` does not configure). Prometheus
    /// and the kubelet reconnect when a kept-alive connection is closed.
    lifetime: Duration,
    /// How long `shutdown` lets requests in flight finish before closing their connections.
    shutdown_grace: Duration,
}

const SERVER_LIMITS: ServerLimits = ServerLimits {
    max_connections: 32,
    lifetime: Duration::from_secs(30),
    shutdown_grace: Duration::from_secs(5),
};

/// OpenMetrics text, which Prometheus asks for first and parses since 2.5.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The HTTP endpoint for Prometheus and the kubelet, served by a current-thread Tokio runtime on
/// its own thread, so that a busy pipeline cannot starve probes:
///
/// - `GET /metrics`: 200, `application/openmetrics-text; version=1.0.0; charset=utf-8`,
///   [`Metrics::render`];
/// - `GET /healthz`: 200 `ok` while [`Health::is_live`], else 503;
/// - `GET /readyz`: 200 `ready` if [`Health::is_ready`], else 503 naming the components that
///   are not ready;
/// - other paths: 404; other methods on these paths: 405; a request with a body: 413.
///
/// At most 32 connections are served at once, each for at most 30 seconds. Dropping the server
/// without calling [`TelemetryServer::shutdown`] also stops it, without waiting.
#[derive(Debug)]
pub struct TelemetryServer {
    local_addr: SocketAddr,
    /// Dropping it is the shutdown signal.
    stop: watch::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl TelemetryServer {
    /// Binds `addr` (port 0 picks a free port) before returning, so that an address in use or
    /// a permission problem is returned here as [`TelemetryError::Bind`] naming the address,
    /// then serves on a background thread until [`TelemetryServer::shutdown`].
    pub fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<TelemetryServer, TelemetryError> {
        TelemetryServer::start_with(addr, metrics, health, SERVER_LIMITS)
    }

    fn start_with(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        limits: ServerLimits,
    ) -> Result<TelemetryServer, TelemetryError> {
        let bind_error = |source| TelemetryError::Bind { addr, source };
        let start_error = |source| TelemetryError::Start { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = std_listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(start_error)?;
        let listener = {
            // Registering with the reactor needs the runtime's context.
            let _context = runtime.enter();
            TcpListener::from_std(std_listener).map_err(bind_error)?
        };
        let router = router(AppState { metrics, health });
        let (stop, stopped) = watch::channel(());
        let thread = std::thread::Builder::new()
            .name("telemetry-http".to_owned())
            .spawn(move || serve(runtime, listener, limits, router, stopped))
            .map_err(start_error)?;
        tracing::info!(address = %local_addr, "telemetry endpoint listening");
        Ok(TelemetryServer {
            local_addr,
            stop,
            thread,
        })
    }

    /// The bound address (with the actual port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in flight finish for up to 5 seconds, closes
    /// the remaining connections and waits for the thread. When it returns, the port is closed.
    pub fn shutdown(self) {
        let TelemetryServer {
            local_addr,
            stop,
            thread,
        } = self;
        drop(stop);
        if thread.join().is_err() {
            tracing::error!(address = %local_addr, "the telemetry server thread panicked");
        }
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(healthz_endpoint))
        .route("/readyz", get(readyz_endpoint))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(reject_bodies))
        .with_state(state)
}

/// The body of the server thread: serves until the stop sender is dropped, then drains.
fn serve(
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    limits: ServerLimits,
    router: Router,
    stopped: watch::Receiver<()>,
) {
    runtime.block_on(async move {
        let mut stop_accepting = stopped.clone();
        let mut stop_waiting = stopped;
        let listener = BoundedListener {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            lifetime: limits.lifetime,
        };
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Only ever an error: nothing is sent, the sender is dropped.
                let _sender_dropped = stop_accepting.changed().await;
            })
            .into_future();
        let grace = async move {
            let _sender_dropped = stop_waiting.changed().await;
            tokio::time::sleep(limits.shutdown_grace).await;
        };
        tokio::select! {
            served = server => {
                if let Err(error) = served {
                    tracing::error!(%error, "the telemetry server failed");
                }
            }
            () = grace => {
                tracing::warn!(
                    grace = ?limits.shutdown_grace,
                    "telemetry connections still open after the shutdown grace; closing them"
                );
            }
        }
    });
    // Dropping the runtime cancels the connection tasks that outlived the grace period.
    drop(runtime);
}

async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz_endpoint(State(state): State<AppState>) -> Response {
    if state.health.is_live() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not live").into_response()
    }
}

async fn readyz_endpoint(State(state): State<AppState>) -> Response {
    if state.health.is_ready() {
        return (StatusCode::OK, "ready").into_response();
    }
    let waiting = state.health.not_ready();
    let body = if waiting.is_empty() {
        "not ready: no components declared".to_owned()
    } else {
        format!("not ready: {}", waiting.join(", "))
    };
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// No endpoint takes a body, so none is read: a request that announces one is refused before
/// routing.
async fn reject_bodies(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if has_body {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted",
        )
            .into_response();
    }
    next.run(request).await
}

/// A listener that serves a bounded number of connections at once, each for a bounded time.
struct BoundedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    lifetime: Duration,
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedConnection, SocketAddr) {
        // Waiting for a slot before accepting leaves excess clients in the kernel's backlog
        // rather than holding their sockets open here.
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let connection = BoundedConnection {
                        stream,
                        deadline: Box::pin(tokio::time::sleep(self.lifetime)),
                        _slot: slot,
                    };
                    return (connection, peer);
                }
                // The client went away between SYN and accept: nothing to report.
                Err(error) if is_per_connection_error(&error) => {}
                Err(error) => {
                    // Out of file descriptors and the like: retrying at once would spin.
                    tracing::error!(%error, "accepting a telemetry connection; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// A TCP stream whose reads and writes fail with `TimedOut` once its deadline has passed, so
/// that hyper drops the connection. Holds a connection slot until dropped.
struct BoundedConnection {
    stream: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl BoundedConnection {
    /// Polling the deadline also registers the waker, so a connection idle in a read is woken
    /// (and failed) when the deadline passes.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "telemetry connection lifetime exceeded",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for BoundedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// No deadline here, so that an expired connection can still be closed cleanly.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::SourceLabels;
    use std::io::{Read, Write};

    /// Sends one raw HTTP/1.1 request and returns (status line, headers, body).
    fn request(addr: SocketAddr, head: &str, body: &str) -> (String, String, String) {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        stream
            .write_all(format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n{body}").as_bytes())
            .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("a complete response");
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (
            status.to_owned(),
            headers.to_ascii_lowercase(),
            body.to_owned(),
        )
    }

    fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
        request(addr, &format!("GET {path} HTTP/1.1"), "")
    }

    #[test]
    fn the_endpoint_serves_metrics_and_probes_then_shuts_down() {
        let metrics = Metrics::new();
        let health = Health::new();
        metrics
            .events_received
            .get_or_create_owned(&SourceLabels::new("file"))
            .inc_by(42);
        let pipeline = health.component("pipeline");
        let server = TelemetryServer::start(
            "127.0.0.1:0".parse().expect("literal address"),
            Arc::clone(&metrics),
            Arc::clone(&health),
        )
        .expect("start on a free port");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let (status, headers, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{headers}"
        );
        assert!(
            body.contains("\ntripline_events_received_total{source=\"file\"} 42\n"),
            "{body}"
        );
        assert!(body.ends_with("\n# EOF\n"), "{body}");

        let (status, _, body) = get(addr, "/readyz");
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body, "not ready: pipeline");
        pipeline.set_ready(true);
        let (status, _, body) = get(addr, "/readyz");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "ready");

        let (status, _, body) = get(addr, "/healthz");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "ok");
        health.set_live(false);
        assert_eq!(get(addr, "/healthz").0, "HTTP/1.1 503 Service Unavailable");

        assert_eq!(get(addr, "/nope").0, "HTTP/1.1 404 Not Found");
        assert_eq!(get(addr, "/metrics/").0, "HTTP/1.1 404 Not Found");
        assert_eq!(
            request(addr, "DELETE /metrics HTTP/1.1", "").0,
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            request(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 3", "abc").0,
            "HTTP/1.1 413 Payload Too Large"
        );

        // A client that connects and says nothing must not hold up shutdown.
        let _idle = std::net::TcpStream::connect(addr).expect("connect idle client");
        server.shutdown();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "the port still accepts after shutdown"
        );
    }

    #[test]
    fn slow_clients_are_disconnected_and_make_others_wait_at_most_the_lifetime() {
        let limits = ServerLimits {
            max_connections: 1,
            lifetime: Duration::from_millis(300),
            shutdown_grace: Duration::from_secs(5),
        };
        let health = Health::new();
        let server = TelemetryServer::start_with(
            "127.0.0.1:0".parse().expect("literal address"),
            Metrics::new(),
            Arc::clone(&health),
            limits,
        )
        .expect("start on a free port");
        let addr = server.local_addr();
        let started = std::time::Instant::now();

        // Half a request head, then silence: the slowloris pattern.
        let mut slow = std::net::TcpStream::connect(addr).expect("connect");
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .expect("send");
        // The only slot is taken, so this one is served only once the slow client is dropped.
        let (status, _, body) = get(addr, "/healthz");
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "served after {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "served after {waited:?}");

        slow.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        let mut rest = Vec::new();
        // Closed by the server: end of stream or a reset, never a timeout.
        match slow.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty() || rest.starts_with(b"HTTP/1.1 "),
                "{rest:?}"
            ),
            Err(error) => assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}"),
        }
        server.shutdown();
    }

    #[test]
    fn shutdown_closes_stalled_requests_after_the_grace_period() {
        let limits = ServerLimits {
            max_connections: 4,
            lifetime: Duration::from_secs(60),
            shutdown_grace: Duration::from_millis(200),
        };
        let server = TelemetryServer::start_with(
            "127.0.0.1:0".parse().expect("literal address"),
            Metrics::new(),
            Health::new(),
            limits,
        )
        .expect("start on a free port");
        let addr = server.local_addr();
        let mut stalled = std::net::TcpStream::connect(addr).expect("connect");
        stalled
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .expect("send");
        // Let the server accept and start reading the head.
        assert_eq!(get(addr, "/healthz").0, "HTTP/1.1 200 OK");

        let started = std::time::Instant::now();
        server.shutdown();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn binding_a_port_in_use_fails_with_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let addr = taken.local_addr().expect("local addr");
        let result = TelemetryServer::start(addr, Metrics::new(), Health::new());
        let Err(error) = result else {
            panic!("started on a port in use")
        };
        assert!(matches!(error, TelemetryError::Bind { addr: a, .. } if a == addr));
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("binding the telemetry listener {addr}: ")),
            "{message}"
        );
    }
}
