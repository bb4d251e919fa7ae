//! The API server's audit webhook backend as a source: an HTTPS endpoint that accepts
//! `POST`ed `EventList`s (`--audit-webhook-config-file`), authenticates the API server by client
//! certificate and/or bearer token, and answers 200 only once the batch is durable in the
//! [`Spool`](super::spool::Spool). A file source then reads the spool with the usual checkpoints.
//!
//! The API server considers a batch delivered on 200 and retries otherwise, so retried batches
//! arrive twice: events are deduplicated within a window by a hash of their bytes (not by
//! `auditID`, which the client controls).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use super::spool::{Spool, SpoolError};
use crate::config::types::{HumanDuration, Secret};
use crate::telemetry::{
    Counter, Gauge, HealthHandle, Histogram, Metrics, SourceLabels, WebhookRequests,
};

/// `sources: - type: webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Address to listen on, e.g. `0.0.0.0:9443`.
    pub listen: String,
    /// The path the API server posts to.
    #[serde(default = "default_path")]
    pub path: String,
    /// Server certificate and key, and the CA that signs the API server's client certificate.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// A bearer token the API server must send (`Authorization: Bearer ...`), inline
    /// (`${ENV}`) or from a file.
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Allow plain HTTP, or HTTPS without client authentication (warned at start-up).
    #[serde(default)]
    pub allow_insecure: bool,
    /// Largest request body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long one request may take, body included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Requests processed at once; more wait.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: usize,
    /// Disk the spool may use; beyond it requests get 429.
    #[serde(default = "default_spool_max")]
    pub spool_max_bytes: u64,
    /// Events seen within this window are dropped as duplicates.
    #[serde(default = "default_dedupe_window")]
    pub dedupe_window: HumanDuration,
    /// Upper bound of remembered event hashes (the oldest are forgotten first).
    #[serde(default = "default_dedupe_keys")]
    pub dedupe_max_keys: usize,
    /// Raise "Audit Events Stopped" after this long without events.
    #[serde(default = "default_silence")]
    pub silence_alert_after: HumanDuration,
}

/// `tls:` of the webhook source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA of the API server's client certificate; clients without a certificate it signed are
    /// refused during the handshake.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn default_path() -> String {
    "/audit".to_string()
}
fn default_max_body() -> usize {
    // 400 events of 100 KB (the API server's default batch) with room to spare.
    64 << 20
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_concurrency() -> usize {
    16
}
fn default_spool_max() -> u64 {
    1 << 30
}
fn default_dedupe_window() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_dedupe_keys() -> usize {
    1_000_000
}
fn default_silence() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl WebhookSourceConfig {
    /// Problems found without I/O.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            p.push(format!("listen: `{}` is not an address:port", self.listen));
        }
        if !self.path.starts_with('/') {
            p.push(format!("path: `{}` must start with `/`", self.path));
        }
        p.extend(Secret::check_pair("token", &self.token, &self.token_file));
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            p.push(
                "token: empty (an unset variable?); an empty token would let anyone in".to_string(),
            );
        }
        let client_auth = self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
            || self.token.is_some()
            || self.token_file.is_some();
        if !self.allow_insecure {
            if self.tls.is_none() {
                p.push("tls: required (plain HTTP only with `allow_insecure: true`)".to_string());
            }
            if !client_auth {
                p.push("authentication required: set `tls.client_ca` and/or `token` (or `allow_insecure: true`)".to_string());
            }
        }
        if self.max_concurrent_requests == 0 {
            p.push("max_concurrent_requests: must be at least 1".to_string());
        }
        if self.max_body_bytes < 1024 {
            p.push("max_body_bytes: must be at least 1024".to_string());
        }
        p
    }

    /// What is allowed but unsafe, for the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.tls.is_none() {
            w.push(format!(
                "webhook on {}: plain HTTP (audit events travel unencrypted)",
                self.listen
            ));
        }
        let client_auth = self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
            || self.token.is_some()
            || self.token_file.is_some();
        if !client_auth {
            w.push(format!(
                "webhook on {}: no client authentication (anyone who reaches it can inject events)",
                self.listen
            ));
        }
        w
    }
}

/// Event hashes seen recently.
struct Dedupe {
    seen: HashSet<[u8; 16]>,
    order: VecDeque<([u8; 16], Instant)>,
    window: Duration,
    max: usize,
}

impl Dedupe {
    fn expire(&mut self, now: Instant) {
        while let Some((k, t)) = self.order.front() {
            if now.duration_since(*t) < self.window && self.order.len() <= self.max {
                break;
            }
            self.seen.remove(k);
            self.order.pop_front();
        }
    }

    fn insert(&mut self, k: [u8; 16], now: Instant) {
        if self.seen.insert(k) {
            self.order.push_back((k, now));
        }
    }
}

struct Metricset {
    requests: WebhookRequests,
    events: Counter,
    duplicates: Counter,
    spool_full: Counter,
    duration: Histogram,
    spool_bytes: Gauge,
}

struct Shared {
    name: String,
    spool: Arc<Spool>,
    dedupe: Mutex<Dedupe>,
    token: Option<Secret>,
    permits: Semaphore,
    stopping: AtomicBool,
    /// Ready while the spool has room for this much (one large request).
    ready_room: u64,
    m: Metricset,
}

impl Shared {
    fn count(&self, code: StatusCode) {
        self.m.requests.inc(code.as_u16());
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

/// Takes the events of a request body apart: an `EventList` (what the API server sends) or a
/// single `Event`. Each event becomes one line.
fn split_events(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = crate::event::utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let head: Incoming<'_> =
        serde_json::from_str(text).map_err(|e| format!("body is not a JSON object: {e}"))?;
    let items: Vec<&str> = match (head.kind, head.items) {
        (Some("EventList"), Some(items)) => items.iter().map(|r| r.get()).collect(),
        (Some("EventList"), None) => return Err("EventList without `items`".into()),
        (Some("Event") | None, None) => vec![text],
        (Some(other), _) => {
            return Err(format!(
                "kind is `{other}`, expected `EventList` or `Event`"
            ))
        }
        (None, Some(_)) => return Err("`items` without `kind: EventList`".into()),
    };
    Ok(items
        .into_iter()
        .map(|item| {
            let mut line = if item.contains('\n') {
                // Pretty-printed: one line per event in the spool.
                serde_json::from_str::<serde_json::Value>(item)
                    .and_then(|v| serde_json::to_vec(&v))
                    .unwrap_or_else(|_| item.replace('\n', " ").into_bytes())
            } else {
                item.as_bytes().to_vec()
            };
            line.push(b'\n');
            line
        })
        .collect())
}

async fn receive(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    handle(&st, body).await.into_response()
}

/// Answers that the API server retries: its webhook client retries 429, 500, 504 and any
/// answer with `Retry-After`, and drops the batch on anything else.
fn retry_later(code: StatusCode, message: &str) -> Response {
    (code, [(header::RETRY_AFTER, "1")], message.to_string()).into_response()
}

/// Runs before the body is read: refuses when stopping or unauthenticated, and holds one of
/// the `max_concurrent_requests` permits while the request is served (so at most that many
/// bodies are in memory); bounds the whole request by `request_timeout`; counts every answer.
async fn gate(
    State((st, limit)): State<(Arc<Shared>, Duration)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let response = gate_inner(&st, limit, request, next).await;
    st.count(response.status());
    st.m.duration.observe(started.elapsed().as_secs_f64());
    response
}

async fn gate_inner(
    st: &Arc<Shared>,
    limit: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if st.stopping.load(Ordering::Relaxed) {
        return retry_later(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    if let Some(token) = &st.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
        }
    }
    let served = tokio::time::timeout(limit, async {
        let Ok(_permit) = st.permits.acquire().await else {
            return retry_later(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        };
        next.run(request).await
    })
    .await;
    match served {
        Ok(r) => r,
        // 504 is retried; a batch that was spooled after all is absorbed by deduplication.
        Err(_) => (StatusCode::GATEWAY_TIMEOUT, "request timed out").into_response(),
    }
}

async fn handle(st: &Arc<Shared>, body: Bytes) -> Response {
    let lines = match split_events(&body) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(source = %st.name, error = %e, "webhook request refused");
            return (StatusCode::BAD_REQUEST, e).into_response();
        }
    };
    if !st.spool.accepts(body.len() as u64) {
        st.m.spool_full.inc();
        return (StatusCode::TOO_MANY_REQUESTS, "spool full").into_response();
    }
    let shared = st.clone();
    let appended = tokio::task::spawn_blocking(move || {
        // Deduplicate and append under one lock: two copies of a batch arriving at once are
        // spooled once, and an event counts as seen only once it is durable.
        let now = Instant::now();
        let mut d = match shared.dedupe.lock() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        };
        d.expire(now);
        let mut data = Vec::with_capacity(lines.iter().map(Vec::len).sum());
        let mut keys = Vec::with_capacity(lines.len());
        let mut batch_keys = HashSet::new();
        let mut dups = 0u64;
        for line in &lines {
            let k = *blake3::hash(&line[..line.len() - 1]).as_bytes();
            let mut key = [0u8; 16];
            key.copy_from_slice(&k[..16]);
            if d.seen.contains(&key) || !batch_keys.insert(key) {
                dups += 1;
                continue;
            }
            keys.push(key);
            data.extend_from_slice(line);
        }
        if !data.is_empty() {
            shared.spool.append(&data)?;
        }
        for k in keys.iter() {
            d.insert(*k, now);
        }
        d.expire(now);
        Ok::<_, SpoolError>((keys.len() as u64, dups))
    })
    .await;
    match appended {
        Ok(Ok((events, dups))) => {
            st.m.events.inc_by(events);
            st.m.duplicates.inc_by(dups);
            st.m.spool_bytes.set(st.spool.used() as i64);
            (
                StatusCode::OK,
                format!("accepted {events} events ({dups} duplicates)"),
            )
                .into_response()
        }
        Ok(Err(SpoolError::Full { .. })) => {
            st.m.spool_full.inc();
            (StatusCode::TOO_MANY_REQUESTS, "spool full").into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(source = %st.name, error = %e, "spool write failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "spool write failed").into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
#[error("webhook source `{source_name}`: {message}")]
pub struct WebhookError {
    pub source_name: String,
    pub message: String,
}

/// A started webhook server; dropping it does not stop it: call [`Webhook::stop`].
pub struct Webhook {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop_tx: Option<tokio::sync::watch::Sender<()>>,
    pub local_addr: SocketAddr,
}

impl Webhook {
    /// Binds, loads TLS material and starts serving on its own thread; the spool's janitor
    /// (deleting confirmed segments, readiness) runs there too.
    pub fn start(
        name: &str,
        cfg: &WebhookSourceConfig,
        spool: Arc<Spool>,
        checkpoint_path: PathBuf,
        metrics: Arc<Metrics>,
        health: HealthHandle,
    ) -> Result<Webhook, WebhookError> {
        let err = |message: String| WebhookError {
            source_name: name.to_string(),
            message,
        };
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(err(problems.join("; ")));
        }
        for w in cfg.warnings() {
            tracing::warn!(source = name, "{w}");
        }
        let token = Secret::resolve("token", &cfg.token, &cfg.token_file)
            .map_err(|e| err(e.to_string()))?;
        if token.as_ref().is_some_and(|t| t.expose().trim().is_empty()) {
            return Err(err(
                "the token is empty; an empty token would let anyone in".to_string(),
            ));
        }
        let tls = match &cfg.tls {
            Some(t) => Some(server_tls(t).map_err(err)?),
            None => None,
        };
        let l = SourceLabels::new(name);
        let shared = Arc::new(Shared {
            name: name.to_string(),
            spool,
            dedupe: Mutex::new(Dedupe {
                seen: HashSet::new(),
                order: VecDeque::new(),
                window: cfg.dedupe_window.0,
                max: cfg.dedupe_max_keys.max(1),
            }),
            token,
            permits: Semaphore::new(cfg.max_concurrent_requests),
            stopping: AtomicBool::new(false),
            ready_room: (cfg.max_body_bytes as u64).min(cfg.spool_max_bytes / 4),
            m: Metricset {
                requests: WebhookRequests::new(&metrics, name),
                events: metrics.webhook_events.get_or_create_owned(&l),
                duplicates: metrics.webhook_duplicates.get_or_create_owned(&l),
                spool_full: metrics.webhook_spool_full.get_or_create_owned(&l),
                duration: metrics.webhook_request_duration.get_or_create_owned(&l),
                spool_bytes: metrics.spool_bytes.get_or_create_owned(&l),
            },
        });
        let router = Router::new()
            .route(&cfg.path, post(receive))
            .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                (shared.clone(), cfg.request_timeout.0),
                gate,
            ))
            .with_state(shared.clone());
        let std_listener = std::net::TcpListener::bind(&cfg.listen)
            .map_err(|e| err(format!("listening on {}: {e}", cfg.listen)))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| err(e.to_string()))?;
        let local_addr = std_listener.local_addr().map_err(|e| err(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("webhook-{name}"))
            .enable_all()
            .build()
            .map_err(|e| err(format!("starting the runtime: {e}")))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
        let janitor_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("webhook-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "webhook listener");
                            return;
                        }
                    };
                    let janitor = tokio::spawn(janitor(
                        janitor_shared,
                        checkpoint_path,
                        health.clone(),
                        stop_rx.clone(),
                    ));
                    let mut stop = stop_rx.clone();
                    let shutdown = async move {
                        let _ = stop.changed().await;
                    };
                    let served = match tls {
                        Some(tls) => {
                            let l = TlsListener::new(listener, tls);
                            axum::serve(l, router)
                                .with_graceful_shutdown(shutdown)
                                .await
                        }
                        None => {
                            axum::serve(listener, router)
                                .with_graceful_shutdown(shutdown)
                                .await
                        }
                    };
                    if let Err(e) = served {
                        tracing::error!(error = %e, "webhook server failed");
                    }
                    health.set_ready(false);
                    janitor.abort();
                });
            })
            .map_err(|e| err(format!("spawning a thread: {e}")))?;
        tracing::info!(source = name, listen = %local_addr, tls = cfg.tls.is_some(), "webhook listening");
        Ok(Webhook {
            shared,
            thread: Some(thread),
            stop_tx: Some(stop_tx),
            local_addr,
        })
    }

    /// Refuses new batches (503, so the API server keeps them) and stops the server.
    pub fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.permits.close();
        drop(self.stop_tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every second: deletes confirmed spool segments and reports readiness (ready while the
/// spool accepts).
async fn janitor(
    st: Arc<Shared>,
    checkpoint_path: PathBuf,
    health: HealthHandle,
    mut stop: tokio::sync::watch::Receiver<()>,
) {
    loop {
        let s = st.clone();
        let cp = checkpoint_path.clone();
        let cleaned = tokio::task::spawn_blocking(move || s.spool.clean(&cp)).await;
        if let Ok(Err(e)) = cleaned {
            tracing::warn!(source = %st.name, error = %e, "cleaning the spool");
        }
        st.m.spool_bytes.set(st.spool.used() as i64);
        health.set_ready(!st.stopping.load(Ordering::Relaxed) && st.spool.accepts(st.ready_room));
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn server_tls(t: &ServerTlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    crate::tls::install_crypto_provider();
    let certs = CertificateDer::pem_file_iter(&t.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls.cert {}: {e}", t.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert {}: no certificate in it",
            t.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key)
        .map_err(|e| format!("tls.key {}: {e}", t.key.display()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?
            {
                roots
                    .add(c)
                    .map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls.cert/tls.key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and completes TLS handshakes concurrently (each with a deadline),
/// handing axum only the connections that passed, client certificate included.
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
}

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(peer = %peer, error = %e, "webhook TLS handshake refused");
                        }
                        Err(_) => tracing::warn!(peer = %peer, "webhook TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task never ends while the runtime runs.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The spool directory of a source.
pub fn spool_dir(state_dir: &Path, source: &str) -> PathBuf {
    state_dir
        .join("spool")
        .join(super::checkpoint::file_safe(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_and_single_events_split_into_lines() {
        let body = br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a","verb":"get"},
        {
          "auditID": "b",
          "verb": "list"
        }]}"#;
        let lines = split_events(body).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], b"{\"auditID\":\"a\",\"verb\":\"get\"}\n");
        assert!(!lines[1][..lines[1].len() - 1].contains(&b'\n'));
        assert_eq!(
            split_events(br#"{"kind":"Event","verb":"get"}"#)
                .unwrap()
                .len(),
            1
        );
        assert!(split_events(b"[1,2]").unwrap_err().contains("JSON object"));
        assert!(split_events(br#"{"kind":"Pod"}"#)
            .unwrap_err()
            .contains("`Pod`"));
        assert!(split_events(br#"{"kind":"EventList"}"#).is_err());
        assert!(split_events(b"\xff").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn insecure_setups_need_saying_so() {
        let cfg: WebhookSourceConfig = serde_yaml::from_str("listen: 127.0.0.1:9443\n").unwrap();
        let p = cfg.validate().join("\n");
        assert!(p.contains("tls: required"), "{p}");
        assert!(p.contains("authentication required"), "{p}");
        let cfg: WebhookSourceConfig =
            serde_yaml::from_str("listen: 127.0.0.1:9443\nallow_insecure: true\n").unwrap();
        assert!(cfg.validate().is_empty());
        assert_eq!(cfg.warnings().len(), 2);
        let cfg: WebhookSourceConfig = serde_yaml::from_str(
            "listen: nowhere\npath: audit\ntls: {cert: c, key: k, client_ca: ca}\ntoken: x\n",
        )
        .unwrap();
        let p = cfg.validate().join("\n");
        assert!(p.contains("listen:") && p.contains("path:"), "{p}");
        let cfg: WebhookSourceConfig =
            serde_yaml::from_str("listen: 127.0.0.1:9443\ntls: {cert: c, key: k}\ntoken: \"\"\n")
                .unwrap();
        assert!(cfg.validate().join("\n").contains("token: empty"));
        assert!(!format!("{cfg:?}").contains("token: Some(\"x\")"));
    }

    #[test]
    fn dedupe_forgets_after_the_window_and_the_bound() {
        let mut d = Dedupe {
            seen: HashSet::new(),
            order: VecDeque::new(),
            window: Duration::from_secs(10),
            max: 2,
        };
        let t0 = Instant::now();
        d.insert([1; 16], t0);
        d.insert([2; 16], t0);
        d.insert([3; 16], t0);
        d.expire(t0);
        assert!(!d.seen.contains(&[1; 16]) && d.seen.contains(&[3; 16]));
        d.expire(t0 + Duration::from_secs(11));
        assert!(d.seen.is_empty());
    }
}
