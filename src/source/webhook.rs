//! The API server's audit webhook backend as a source: an HTTPS endpoint that accepts
//! `POST`ed `EventList`s (`--audit-webhook-config-file`), authenticates the API server by client
//! certificate and/or bearer token, and answers 200 only once the batch is durable in the
//! [`Spool`](super::spool::Spool). A file source then reads the spool with the usual checkpoints.
//!
//! The API server considers a batch delivered on 200 and retries otherwise, so retried batches
//! arrive twice: events are deduplicated within a window by a hash of their bytes (not by
//! `auditID`, which the client controls).
//!
//! Memory is bounded by configuration, not by input: a body is streamed to a staging file in the
//! spool directory (never held whole), within `max_body_bytes` (413, from `Content-Length`
//! before any of it is read) and a global in-flight byte budget (429 with `Retry-After`), then
//! split from the file by a streaming JSON parse that holds one event at a time, hashed for
//! deduplication as it is written, and copied to the spool. Clients that send headers or
//! bodies too slowly are cut off (`header_read_timeout`, `body_read_timeout`,
//! `body_min_bytes_per_second`) so they cannot hold the request slots.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
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
    /// Largest request body; larger ones get 413 (by `Content-Length` before the body is read,
    /// or when a chunked body reaches it).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Request body bytes in flight (being received and split) across all connections; beyond
    /// it requests get 429 with `Retry-After`. Bodies stream to a staging file in the spool
    /// directory, so memory per request is one event and fixed buffers; the budget bounds the
    /// worst case (a body that is one large event).
    #[serde(default = "default_in_flight")]
    pub max_in_flight_bytes: u64,
    /// How long a client may take to send the request headers.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout: HumanDuration,
    /// How long the body may make no progress; also the grace period before
    /// `body_min_bytes_per_second` applies.
    #[serde(default = "default_body_timeout")]
    pub body_read_timeout: HumanDuration,
    /// The slowest body accepted (on average, after `body_read_timeout`); slower ones get 408.
    #[serde(default = "default_body_rate")]
    pub body_min_bytes_per_second: u64,
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
fn default_in_flight() -> u64 {
    // Two bodies of the largest default size: with the daemon's other bounded buffers, this
    // fits the webhook Deployment's 512Mi limit.
    128 << 20
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_body_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_body_rate() -> u64 {
    64 << 10
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
        if self.max_in_flight_bytes < self.max_body_bytes as u64 {
            p.push(format!(
                "max_in_flight_bytes: {} is less than max_body_bytes ({}); the largest body could never be accepted",
                self.max_in_flight_bytes, self.max_body_bytes
            ));
        }
        if self.body_min_bytes_per_second == 0 {
            p.push("body_min_bytes_per_second: must be at least 1".to_string());
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
    max_body: u64,
    /// Body bytes reserved by requests being received (at most `in_flight_max`).
    in_flight: AtomicU64,
    in_flight_max: u64,
    body_timeout: Duration,
    body_rate: u64,
    /// Numbers the staging files.
    staged: AtomicU64,
    m: Metricset,
}

impl Shared {
    fn count(&self, code: StatusCode) {
        self.m.requests.inc(code.as_u16());
    }
}

/// Why a body could not be split into events.
#[derive(Debug)]
enum SplitError {
    /// The body is not an `EventList` or an `Event` (400).
    Invalid(String),
    /// Reading the staging file or writing the lines failed (500).
    Io(std::io::Error),
}

/// One event line in the staged lines file: its key (a hash of its bytes) and length with the
/// newline.
type StagedLine = ([u8; 16], u64);

/// The first 16 bytes of the line's BLAKE3 hash.
fn key_from(hasher: &blake3::Hasher) -> [u8; 16] {
    let k = *hasher.finalize().as_bytes();
    let mut key = [0u8; 16];
    key.copy_from_slice(&k[..16]);
    key
}

#[cfg(test)]
fn key_of(line: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(line);
    key_from(&h)
}

/// Writes event lines to the lines file and remembers their keys.
struct LineWriter<W> {
    out: W,
    lines: Vec<StagedLine>,
    io_error: Option<std::io::Error>,
}

impl<W: std::io::Write> LineWriter<W> {
    /// One event as one line: a pretty-printed event's newlines become spaces, which keeps it
    /// the same JSON (a raw newline can only be whitespace between tokens). Written and hashed
    /// piece by piece: no copy of the event is made.
    fn push(&mut self, event: &str) -> std::io::Result<()> {
        let mut hasher = blake3::Hasher::new();
        let mut pieces = event.as_bytes().split(|&b| b == b'\n');
        if let Some(first) = pieces.next() {
            self.out.write_all(first)?;
            hasher.update(first);
        }
        for piece in pieces {
            self.out.write_all(b" ")?;
            self.out.write_all(piece)?;
            hasher.update(b" ");
            hasher.update(piece);
        }
        self.out.write_all(b"\n")?;
        self.lines.push((key_from(&hasher), event.len() as u64 + 1));
        Ok(())
    }
}

/// `items` of an `EventList`: each element is taken as raw JSON (only it is in memory) and
/// written out as a line.
struct ItemsSeed<'a, W>(&'a mut LineWriter<W>);

impl<'de, W: std::io::Write> serde::de::DeserializeSeed<'de> for ItemsSeed<'_, W> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, W: std::io::Write> serde::de::Visitor<'de> for ItemsSeed<'_, W> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            if let Err(e) = self.0.push(raw.get()) {
                let message = e.to_string();
                self.0.io_error = Some(e);
                return Err(A::Error::custom(message));
            }
        }
        Ok(())
    }
}

/// The top-level object: `kind` is kept, `items` streamed out, the rest skipped.
struct TopVisitor<'a, W>(&'a mut LineWriter<W>);

impl<'de, W: std::io::Write> serde::de::Visitor<'de> for TopVisitor<'_, W> {
    /// (kind, whether `items` was present)
    type Value = (Option<String>, bool);
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut kind, mut items) = (None, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => kind = Some(map.next_value::<String>()?),
                "items" => {
                    map.next_value_seed(ItemsSeed(&mut *self.0))?;
                    items = true;
                }
                // Taken raw, not skipped: that checks that its strings are UTF-8 (which
                // skipping does not); it holds at most one event's field in memory.
                _ => {
                    map.next_value::<Box<RawValue>>()?;
                }
            }
        }
        Ok((kind, items))
    }
}

/// Takes the events of a request body (in the staging file `body`) apart into `lines`, one
/// event per line: an `EventList` (what the API server sends) or a single `Event`.
///
/// Memory: the largest single event plus fixed buffers, whatever the body's size (the body is
/// parsed from the file; only one element of `items` is held at a time).
fn split_events(body: &Path, lines: &Path) -> Result<Vec<StagedLine>, SplitError> {
    use std::io::{BufReader, BufWriter, Write};
    let out = std::fs::File::create(lines).map_err(SplitError::Io)?;
    let mut w = LineWriter {
        out: BufWriter::with_capacity(256 << 10, out),
        lines: Vec::new(),
        io_error: None,
    };
    let input = BufReader::with_capacity(
        256 << 10,
        std::fs::File::open(body).map_err(SplitError::Io)?,
    );
    let mut de = serde_json::Deserializer::from_reader(input);
    let parsed = serde::Deserializer::deserialize_map(&mut de, TopVisitor(&mut w))
        .and_then(|head| de.end().map(|()| head));
    if let Some(e) = w.io_error.take() {
        return Err(SplitError::Io(e));
    }
    let (kind, items) = parsed.map_err(|e| {
        if e.is_io() {
            SplitError::Io(std::io::Error::other(e))
        } else {
            SplitError::Invalid(format!("body is not a JSON object: {e}"))
        }
    })?;
    match (kind.as_deref(), items) {
        (Some("EventList"), true) => {}
        (Some("EventList"), false) => {
            return Err(SplitError::Invalid("EventList without `items`".into()))
        }
        (Some("Event") | None, false) => {
            w.lines.clear();
            copy_single_event(body, &mut w).map_err(SplitError::Io)?;
        }
        (Some(other), _) => {
            return Err(SplitError::Invalid(format!(
                "kind is `{other}`, expected `EventList` or `Event`"
            )))
        }
        (None, true) => {
            return Err(SplitError::Invalid(
                "`items` without `kind: EventList`".into(),
            ))
        }
    }
    w.out.flush().map_err(SplitError::Io)?;
    Ok(w.lines)
}

/// A body that is one (validated) event: copied to one line in bounded chunks, its newlines
/// made spaces and the whitespace around it dropped, hashed on the way.
fn copy_single_event<W: std::io::Write>(body: &Path, w: &mut LineWriter<W>) -> std::io::Result<()> {
    use std::io::Read;
    let out = &mut w.out;
    let mut input = std::fs::File::open(body)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut hasher = blake3::Hasher::new();
    let (mut started, mut pending_ws, mut len) = (false, 0u64, 0u64);
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                if started {
                    pending_ws += 1;
                }
                continue;
            }
            started = true;
            while pending_ws > 0 {
                // Whitespace inside the event: kept, as spaces.
                out.write_all(b" ")?;
                hasher.update(b" ");
                pending_ws -= 1;
                len += 1;
            }
            out.write_all(&[b])?;
            hasher.update(&[b]);
            len += 1;
        }
    }
    out.write_all(b"\n")?;
    w.lines.push((key_from(&hasher), len + 1));
    Ok(())
}

/// Bytes of the in-flight budget held by one request; released when dropped.
struct Reservation<'a> {
    st: &'a Shared,
    held: u64,
}

impl Reservation<'_> {
    /// Takes `n` more bytes of the budget, or returns false (and takes nothing).
    fn grow(&mut self, n: u64) -> bool {
        let taken = self
            .st
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.st.in_flight_max).then_some(used + n)
            })
            .is_ok();
        if taken {
            self.held += n;
        }
        taken
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.st.in_flight.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Staging files of one request in the spool directory; deleted when dropped.
struct Staging {
    body: PathBuf,
    lines: PathBuf,
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.body);
        let _ = std::fs::remove_file(&self.lines);
    }
}

async fn receive(State(st): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    handle(&st, request).await
}

/// Answers that the API server retries: its webhook client retries 429, 500, 504 and any
/// answer with `Retry-After`, and drops the batch on anything else.
fn retry_later(code: StatusCode, message: &str) -> Response {
    (code, [(header::RETRY_AFTER, "1")], message.to_string()).into_response()
}

/// An answer after which the rest of the body is not read: the connection is closed.
fn refuse_body(code: StatusCode, message: String) -> Response {
    (code, [(header::CONNECTION, "close")], message).into_response()
}

/// Answers `response` (closing the connection) without waiting for the body, and discards
/// what the client keeps sending for a little while (at most `limit`) in the background: a
/// client still writing its body when the connection closes under it sees a broken pipe
/// instead of the answer (and a 413 or 429 must be seen to be acted on).
fn answer_then_discard(
    body: axum::body::Body,
    mut response: Response,
    limit: Duration,
) -> Response {
    use http_body_util::BodyExt;
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    tokio::spawn(async move {
        let mut body = body;
        let _ = tokio::time::timeout(limit, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    });
    response
}

/// Runs before the body is read: refuses when stopping or unauthenticated, and holds one of
/// the `max_concurrent_requests` permits while the request is served; bounds the whole
/// request by `request_timeout`; counts every answer.
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
    let mut request = request;
    request
        .extensions_mut()
        .insert(Arrived(tokio::time::Instant::now()));
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

/// When the request's headers were read: the body's progress rules run from then, so time
/// spent waiting for a request slot counts too.
#[derive(Clone, Copy)]
struct Arrived(tokio::time::Instant);

/// Receives the body into a staging file in the spool directory, in the chunks the
/// connection delivers (never the whole body in memory), within the size limit, the in-flight
/// budget and the progress rules (`body_read_timeout`, `body_min_bytes_per_second`).
async fn receive_body(
    st: &Shared,
    body: &mut axum::body::Body,
    declared: Option<u64>,
    started: tokio::time::Instant,
    reservation: &mut Reservation<'_>,
    path: &Path,
) -> Result<(), Response> {
    use http_body_util::BodyExt;
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| {
        tracing::error!(source = %st.name, error = %e, "creating a staging file");
        (StatusCode::INTERNAL_SERVER_ERROR, "spool write failed").into_response()
    })?;
    // Writes land in the page cache; the staging file is never fsynced (the spool append is).
    let mut file = std::io::BufWriter::with_capacity(256 << 10, file);
    let mut received = 0u64;
    loop {
        // No progress for `body_read_timeout`, or on average slower than the minimum rate
        // once the grace period is over: a slow client must not hold a request slot.
        let rate_deadline = started
            + st.body_timeout
            + Duration::from_secs_f64(received as f64 / st.body_rate as f64);
        let deadline = rate_deadline.min(tokio::time::Instant::now() + st.body_timeout);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(refuse_body(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request body too slow ({received} bytes received)"),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(refuse_body(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        received += data.len() as u64;
        if received > st.max_body {
            let r = refuse_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes", st.max_body),
            );
            return Err(answer_then_discard(
                std::mem::take(body),
                r,
                st.body_timeout,
            ));
        }
        if declared.is_none() && !reservation.grow(data.len() as u64) {
            let r = retry_later(StatusCode::TOO_MANY_REQUESTS, "too many bytes in flight");
            return Err(answer_then_discard(
                std::mem::take(body),
                r,
                st.body_timeout,
            ));
        }
        file.write_all(&data).map_err(|e| {
            tracing::error!(source = %st.name, error = %e, "writing a staging file");
            (StatusCode::INTERNAL_SERVER_ERROR, "spool write failed").into_response()
        })?;
    }
    file.flush().map_err(|e| {
        tracing::error!(source = %st.name, error = %e, "writing a staging file");
        (StatusCode::INTERNAL_SERVER_ERROR, "spool write failed").into_response()
    })?;
    Ok(())
}

async fn handle(st: &Arc<Shared>, request: axum::extract::Request) -> Response {
    let (parts, mut body) = request.into_parts();
    let arrived = parts
        .extensions
        .get::<Arrived>()
        .map_or_else(tokio::time::Instant::now, |a| a.0);
    let declared = match parts.headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(n) => Some(n),
            None => return refuse_body(StatusCode::BAD_REQUEST, "bad Content-Length".into()),
        },
    };
    // Answered from the header, before any of the body is read. The API server drops a batch
    // answered 413 (its truncation flags keep batches below the limit).
    if declared.is_some_and(|n| n > st.max_body) {
        let r = refuse_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes", st.max_body),
        );
        return answer_then_discard(body, r, st.body_timeout);
    }
    if !st.spool.accepts(declared.unwrap_or(0)) {
        st.m.spool_full.inc();
        let r = (StatusCode::TOO_MANY_REQUESTS, "spool full").into_response();
        return answer_then_discard(body, r, st.body_timeout);
    }
    let mut reservation = Reservation {
        st: st.as_ref(),
        held: 0,
    };
    if let Some(n) = declared {
        if !reservation.grow(n) {
            let r = retry_later(StatusCode::TOO_MANY_REQUESTS, "too many bytes in flight");
            return answer_then_discard(body, r, st.body_timeout);
        }
    }
    let n = st.staged.fetch_add(1, Ordering::Relaxed);
    let staging = Staging {
        body: st.spool.staging_path(&format!("{n}.body")),
        lines: st.spool.staging_path(&format!("{n}.lines")),
    };
    if let Err(r) = receive_body(
        st,
        &mut body,
        declared,
        arrived,
        &mut reservation,
        &staging.body,
    )
    .await
    {
        return r;
    }
    let shared = st.clone();
    let appended = tokio::task::spawn_blocking(move || {
        let lines = split_events(&staging.body, &staging.lines)?;
        append_new(&shared, &staging.lines, &lines).map_err(SplitError::Io)
    })
    .await;
    drop(reservation);
    match appended {
        Ok(Ok(Ok((events, dups)))) => {
            st.m.events.inc_by(events);
            st.m.duplicates.inc_by(dups);
            st.m.spool_bytes.set(st.spool.used() as i64);
            (
                StatusCode::OK,
                format!("accepted {events} events ({dups} duplicates)"),
            )
                .into_response()
        }
        Ok(Err(SplitError::Invalid(e))) => {
            tracing::warn!(source = %st.name, error = %e, "webhook request refused");
            (StatusCode::BAD_REQUEST, e).into_response()
        }
        Ok(Ok(Err(SpoolError::Full { .. }))) => {
            st.m.spool_full.inc();
            (StatusCode::TOO_MANY_REQUESTS, "spool full").into_response()
        }
        Ok(Ok(Err(e))) => {
            tracing::error!(source = %st.name, error = %e, "spool write failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "spool write failed").into_response()
        }
        Ok(Err(SplitError::Io(e))) => {
            tracing::error!(source = %st.name, error = %e, "reading a staged body failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "spool write failed").into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Appends the staged lines not seen before to the spool: (events appended, duplicates).
/// Deduplicates and appends under one lock: two copies of a batch arriving at once are
/// spooled once, and an event counts as seen only once it is durable.
fn append_new(
    st: &Shared,
    staged: &Path,
    lines: &[StagedLine],
) -> std::io::Result<Result<(u64, u64), SpoolError>> {
    use std::io::{BufReader, Read};
    let now = Instant::now();
    let mut d = match st.dedupe.lock() {
        Ok(d) => d,
        Err(p) => p.into_inner(),
    };
    d.expire(now);
    let mut batch_keys = HashSet::new();
    let keep: Vec<bool> = lines
        .iter()
        .map(|(k, _)| !d.seen.contains(k) && batch_keys.insert(*k))
        .collect();
    let total: u64 = lines
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|((_, len), _)| len)
        .sum();
    let events = keep.iter().filter(|&&k| k).count() as u64;
    let dups = lines.len() as u64 - events;
    if total > 0 {
        let mut input = BufReader::with_capacity(256 << 10, std::fs::File::open(staged)?);
        let appended = st.spool.append_with(total, |out| {
            for ((_, len), &k) in lines.iter().zip(&keep) {
                let mut line = (&mut input).take(*len);
                let copied = if k {
                    std::io::copy(&mut line, out)?
                } else {
                    std::io::copy(&mut line, &mut std::io::sink())?
                };
                if copied != *len {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            Ok(())
        });
        if let Err(e) = appended {
            return Ok(Err(e));
        }
    }
    for ((k, _), &kept) in lines.iter().zip(&keep) {
        if kept {
            d.insert(*k, now);
        }
    }
    d.expire(now);
    Ok(Ok((events, dups)))
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
            max_body: cfg.max_body_bytes as u64,
            in_flight: AtomicU64::new(0),
            in_flight_max: cfg.max_in_flight_bytes,
            body_timeout: cfg.body_read_timeout.0,
            body_rate: cfg.body_min_bytes_per_second.max(1),
            staged: AtomicU64::new(0),
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
        let header_timeout = cfg.header_read_timeout.0;
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
                    let stop = stop_rx.clone();
                    match tls {
                        Some(tls) => {
                            let l = TlsListener::new(listener, tls);
                            serve(l, router, header_timeout, stop).await;
                        }
                        None => serve(listener, router, header_timeout, stop).await,
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

/// Serves HTTP/1.1 on the connections `listener` accepts until `stop` changes, then lets the
/// requests in progress finish. Unlike `axum::serve`, a client must send its request headers
/// within `header_timeout` (hyper closes the connection otherwise), so connections that
/// trickle headers are not kept.
async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    L: axum::serve::Listener,
{
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(());
    // Every connection task holds a sender; `recv` answers None once all have ended.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (io, _peer) = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut drain = drain_rx.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "webhook connection ended");
                    }
                }
                _ = drain.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_tx);
    drop(drain_tx);
    let _ = open_rx.recv().await;
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

    /// Splits `body` through staging files: the lines, or the error.
    fn split(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let dir = tempfile::tempdir().unwrap();
        let (b, l) = (dir.path().join("body"), dir.path().join("lines"));
        std::fs::write(&b, body).unwrap();
        let staged = match split_events(&b, &l) {
            Ok(s) => s,
            Err(SplitError::Invalid(e)) => return Err(e),
            Err(SplitError::Io(e)) => panic!("{e}"),
        };
        let text = std::fs::read(&l).unwrap();
        let lines: Vec<Vec<u8>> = text
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(lines.len(), staged.len());
        for (line, (key, len)) in lines.iter().zip(&staged) {
            assert_eq!(line.len() as u64, *len);
            assert_eq!(
                *key,
                key_of(&line[..line.len() - 1]),
                "the key hashes the line"
            );
        }
        Ok(lines)
    }

    #[test]
    fn event_lists_and_single_events_split_into_lines() {
        let body = br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a","verb":"get"},
        {
          "auditID": "b",
          "verb": "list"
        }]}"#;
        let lines = split(body).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], b"{\"auditID\":\"a\",\"verb\":\"get\"}\n");
        assert!(!lines[1][..lines[1].len() - 1].contains(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&lines[1]).unwrap();
        assert_eq!(v["verb"], "list");
        // `kind` after `items` (any key order is JSON).
        let lines = split(br#"{"items":[{"a":1}],"metadata":{},"kind":"EventList"}"#).unwrap();
        assert_eq!(lines, vec![b"{\"a\":1}\n".to_vec()]);
        assert_eq!(
            split(b" {\"kind\":\"Event\",\n \"verb\":\"get\"}\n\n").unwrap(),
            vec![b"{\"kind\":\"Event\",  \"verb\":\"get\"}\n".to_vec()]
        );
        assert!(split(b"[1,2]").unwrap_err().contains("JSON object"));
        assert!(split(br#"{"kind":"Pod"}"#).unwrap_err().contains("`Pod`"));
        assert!(split(br#"{"kind":"EventList"}"#).is_err());
        assert!(split(br#"{"items":[]}"#)
            .unwrap_err()
            .contains("without `kind"));
        assert!(split(br#"{"kind":"EventList","items":[{"a":1}]} trailing"#).is_err());
        assert!(split(br#"{"kind":"EventList","items":[{"a":1},"#).is_err());
        assert!(split(b"\xff").unwrap_err().contains("JSON object"));
        assert!(split(b"{\"kind\":\"Event\",\"user\":\"\xff\"}").is_err());
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
        let cfg: WebhookSourceConfig = serde_yaml::from_str(
            "listen: 127.0.0.1:9443\nallow_insecure: true\nmax_body_bytes: 2000\nmax_in_flight_bytes: 1000\nbody_min_bytes_per_second: 0\n",
        )
        .unwrap();
        let p = cfg.validate().join("\n");
        assert!(
            p.contains("max_in_flight_bytes: 1000 is less than max_body_bytes (2000)"),
            "{p}"
        );
        assert!(
            p.contains("body_min_bytes_per_second: must be at least 1"),
            "{p}"
        );
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
