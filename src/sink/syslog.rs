//! The syslog sink: RFC 5424 messages over TCP or TLS (octet-counted framing, RFC 6587 / RFC
//! 5425) or UDP (one message per datagram, RFC 5426). The message body is the JSON document or
//! an ArcSight CEF line.
//!
//! Syslog has no acknowledgements: a request counts as delivered once all its bytes were handed
//! to the kernel (TCP) or the TLS session was flushed. Before each request an existing connection
//! is checked for an orderly close by the receiver, so a receiver that restarted between requests
//! costs nothing; a receiver that drops the connection while bytes are in flight can still lose
//! them (a limit of the protocol). A failed write drops the connection and fails the request; the
//! driver retries it on a new connection, so a message can arrive twice but is not lost.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use serde::Deserialize;

use super::summary::Summary;
use super::{machine_hostname, Deliver, Limits, Outcome, Record, RequestError, SinkError};
use crate::config::types::{Flow, HumanDuration};
use crate::rules::Level;
use crate::tls::TlsConfig;

/// Up to 1000 messages or 1 MiB of documents per write, sent at most 200 ms after the first
/// record arrived: a write is cheap, and a SIEM wants alerts promptly.
pub const LIMITS: Limits = Limits {
    max_records: 1000,
    max_bytes: 1 << 20,
    flush_interval: Duration::from_millis(200),
};

/// The largest UDP payload over IPv4 (65535 - 20 bytes IP header - 8 bytes UDP header): the
/// default and the upper bound of `max_message_bytes` with `protocol: udp`.
pub const UDP_MAX_MESSAGE_BYTES: usize = 65_507;

/// The smallest message every RFC 5424 receiver must accept; `max_message_bytes` may not be lower.
const MIN_MESSAGE_BYTES: usize = 480;

/// `sinks: - type: syslog`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The receiver as `host:port` (`[v6-address]:port` for an IPv6 literal), e.g.
    /// `siem.example:6514`. The name is resolved again at each connection.
    pub address: String,
    /// `tcp` (default), `tls` or `udp`.
    #[serde(default)]
    pub protocol: SyslogProtocol,
    /// The message body: `json` (default; the whole ECS document) or `cef` (ArcSight Common
    /// Event Format, for SIEMs that parse CEF).
    #[serde(default)]
    pub format: SyslogFormat,
    /// Syslog facility of every message, by name: `kern`, `user`, `mail`, `daemon`, `auth`,
    /// `syslog`, `lpr`, `news`, `uucp`, `cron`, `authpriv`, `ftp`, `ntp`, `audit`, `alert`,
    /// `clock`, `local0` to `local7`. Default `local0`, the usual facility for an application's
    /// own feed into a SIEM. The severity comes from the alert's level: critical 2 (crit), high
    /// 3 (err), medium 4 (warning), low 5 (notice), informational 6 (info); events are 6 (info).
    #[serde(default = "default_facility")]
    pub facility: Facility,
    /// APP-NAME of the header (at most 48 printable ASCII characters). Default `tripline`.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME of the header (at most 255 printable ASCII characters). Default: this machine's
    /// host name (the pod name in Kubernetes).
    #[serde(default)]
    pub hostname: Option<String>,
    /// TLS settings (`protocol: tls` only; the defaults verify the receiver against the bundled
    /// Mozilla roots). The receiver's certificate must be valid for the host of `address`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Timeout of connecting, the TLS handshake and each write. Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Longest message (header and body) sent, in bytes; longer ones are cut at a UTF-8
    /// character boundary (a cut JSON document no longer parses: prefer `tcp` or `tls` for
    /// large documents). Default and maximum with `udp`: 65507; default with `tcp`/`tls`: no
    /// limit. At least 480.
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
}

/// `protocol:` of a syslog sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    #[default]
    Tcp,
    Tls,
    Udp,
}

/// `format:` of a syslog sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Json,
    Cef,
}

/// A syslog facility (RFC 5424 section 6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    Audit,
    Alert,
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The facility's number (0 to 23).
    pub fn code(self) -> u8 {
        self as u8
    }
}

fn default_facility() -> Facility {
    Facility::Local0
}
fn default_app_name() -> String {
    "tripline".to_string()
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// A running syslog sink: the connection (opened lazily, dropped on any error) and the fixed
/// parts of the header.
pub struct Syslog {
    address: String,
    protocol: SyslogProtocol,
    format: SyslogFormat,
    facility: u8,
    /// ` HOSTNAME APP-NAME PROCID `, between the timestamp and the MSGID.
    header_middle: String,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    timeout: Duration,
    max_message_bytes: usize,
    conn: Option<Conn>,
    /// Reused buffers: the framed request, one message.
    body: Vec<u8>,
    message: Vec<u8>,
    truncated: u64,
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Udp(UdpSocket),
}

impl SyslogConfig {
    /// Problems found without I/O, each `key: message` relative to the sink: everything
    /// [`Syslog::new`] rejects short of reading TLS files.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        match split_address(&self.address) {
            Ok((host, _)) if self.protocol == SyslogProtocol::Tls => {
                if let Err(e) = rustls_pki_types::ServerName::try_from(host.to_string()) {
                    p.push(format!("address: `{host}` is not a TLS server name: {e}"));
                }
            }
            Ok(_) => {}
            Err(e) => p.push(e),
        }
        match (&self.tls, self.protocol) {
            (Some(tls), SyslogProtocol::Tls) => {
                p.extend(tls.validate().into_iter().map(|e| format!("tls: {e}")));
            }
            (Some(_), _) => p.push("tls: `tls` is set but `protocol` is not `tls`".to_string()),
            (None, _) => {}
        }
        match (self.protocol, self.max_message_bytes) {
            (_, Some(n)) if n < MIN_MESSAGE_BYTES => {
                p.push(format!("max_message_bytes: at least {MIN_MESSAGE_BYTES}"));
            }
            (SyslogProtocol::Udp, Some(n)) if n > UDP_MAX_MESSAGE_BYTES => p.push(format!(
                "max_message_bytes: at most {UDP_MAX_MESSAGE_BYTES} with `protocol: udp`"
            )),
            _ => {}
        }
        if self.app_name.is_empty() {
            p.push("app_name: must not be empty".to_string());
        }
        p
    }
}

impl Syslog {
    /// Checks the settings and reads the TLS files; connects only on first use.
    pub fn new(name: &str, cfg: &SyslogConfig) -> Result<Syslog, SinkError> {
        let setup = |message: String| SinkError::Setup {
            sink: name.to_string(),
            message,
        };
        SinkError::check(name, cfg.validate())?;
        let (host, _port) = split_address(&cfg.address).map_err(setup)?;
        let tls = match (cfg.protocol, &cfg.tls) {
            (SyslogProtocol::Tls, tls) => {
                let config = tls
                    .clone()
                    .unwrap_or_default()
                    .client_config()
                    .map_err(|e| setup(e.to_string()))?;
                let server_name = rustls_pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| {
                        setup(format!("address: `{host}` is not a TLS server name: {e}"))
                    })?;
                Some((Arc::new(config), server_name))
            }
            (_, Some(_)) => {
                return Err(setup(
                    "`tls` is set but `protocol` is not `tls`".to_string(),
                ))
            }
            (_, None) => None,
        };
        let max_message_bytes = match (cfg.protocol, cfg.max_message_bytes) {
            (_, Some(n)) if n < MIN_MESSAGE_BYTES => {
                return Err(setup(format!(
                    "max_message_bytes: at least {MIN_MESSAGE_BYTES}"
                )))
            }
            (SyslogProtocol::Udp, Some(n)) if n > UDP_MAX_MESSAGE_BYTES => {
                return Err(setup(format!(
                    "max_message_bytes: at most {UDP_MAX_MESSAGE_BYTES} with `protocol: udp`"
                )))
            }
            (_, Some(n)) => n,
            (SyslogProtocol::Udp, None) => UDP_MAX_MESSAGE_BYTES,
            (_, None) => usize::MAX,
        };
        if cfg.app_name.is_empty() {
            return Err(setup("app_name: must not be empty".to_string()));
        }
        let hostname = cfg.hostname.clone().or_else(machine_hostname);
        let header_middle = format!(
            " {} {} {} ",
            header_field(hostname.as_deref().unwrap_or(""), 255),
            header_field(&cfg.app_name, 48),
            std::process::id(),
        );
        Ok(Syslog {
            address: cfg.address.clone(),
            protocol: cfg.protocol,
            format: cfg.format,
            facility: cfg.facility.code(),
            header_middle,
            tls,
            timeout: cfg.timeout.0,
            max_message_bytes,
            conn: None,
            body: Vec::new(),
            message: Vec::new(),
            truncated: 0,
        })
    }

    /// Writes one RFC 5424 message for `rec` into `self.message`, cut to `max_message_bytes`.
    fn render(&mut self, rec: &Record) {
        let out = &mut self.message;
        out.clear();
        let pri = self.facility * 8 + severity(rec);
        let time = rec
            .time_or_now()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let msgid = match rec.flow {
            Flow::Alerts => "alert",
            Flow::Events => "event",
        };
        // STRUCTURED-DATA is NILVALUE: custom SD-IDs need an IANA enterprise number.
        let _ = write!(out, "<{pri}>1 {time}{}{msgid} - ", self.header_middle);
        match self.format {
            SyslogFormat::Json => out.extend_from_slice(&rec.doc),
            SyslogFormat::Cef => cef_into(rec, out),
        }
        if out.len() > self.max_message_bytes {
            let keep = utf8_prefix_len(out, self.max_message_bytes);
            out.truncate(keep);
            self.truncated += 1;
            if self.truncated.is_power_of_two() {
                tracing::warn!(id = %rec.id, max_message_bytes = self.max_message_bytes, truncated = self.truncated, "syslog message cut to max_message_bytes");
            }
        }
    }

    fn connect(&self) -> io::Result<Conn> {
        let addrs: Vec<SocketAddr> = self.address.to_socket_addrs()?.collect();
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("`{}` resolved to no address", self.address),
        );
        for addr in addrs {
            let conn = match self.protocol {
                SyslogProtocol::Udp => connect_udp(addr).map(Conn::Udp),
                SyslogProtocol::Tcp => self.connect_tcp(addr).map(Conn::Tcp),
                SyslogProtocol::Tls => self.connect_tcp(addr).and_then(|sock| {
                    let (config, server_name) = self.tls.as_ref().expect("set in new for tls");
                    let conn = rustls::ClientConnection::new(config.clone(), server_name.clone())
                        .map_err(io::Error::other)?;
                    let mut stream = rustls::StreamOwned::new(conn, sock);
                    // Handshake now, so a certificate problem fails the connection, not a
                    // write half-way through a request.
                    while stream.conn.is_handshaking() {
                        stream.conn.complete_io(&mut stream.sock)?;
                    }
                    Ok(Conn::Tls(Box::new(stream)))
                }),
            };
            match conn {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn connect_tcp(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let sock = TcpStream::connect_timeout(&addr, self.timeout)?;
        sock.set_nodelay(true)?;
        sock.set_write_timeout(Some(self.timeout))?;
        sock.set_read_timeout(Some(self.timeout))?;
        Ok(sock)
    }

    /// The open connection, after checking the receiver has not closed it; a new one otherwise.
    fn conn(&mut self) -> io::Result<&mut Conn> {
        if self.conn.as_mut().is_some_and(|c| !c.is_open()) {
            tracing::debug!(address = %self.address, "syslog receiver closed the connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    fn deliver_stream(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        for rec in records {
            self.render(rec);
            // RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`, the length in bytes.
            let _ = write!(body, "{} ", self.message.len());
            body.extend_from_slice(&self.message);
        }
        let res = self.conn().and_then(|conn| conn.write_request(&body));
        self.body = body;
        match res {
            Ok(()) => Ok(vec![Outcome::Delivered; records.len()]),
            Err(e) => {
                self.conn = None;
                Err(RequestError(format!("syslog {}: {e}", self.address)))
            }
        }
    }

    fn deliver_datagrams(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        let mut outcomes = Vec::with_capacity(records.len());
        for rec in records {
            self.render(rec);
            let message = std::mem::take(&mut self.message);
            let res = self.conn().and_then(|c| c.write_request(&message));
            self.message = message;
            if let Err(e) = res {
                self.conn = None;
                let why = format!("syslog {}: {e}", self.address);
                if outcomes.is_empty() {
                    return Err(RequestError(why));
                }
                // The datagrams sent are gone either way: retry only the rest.
                outcomes.resize(records.len(), Outcome::Retry(why));
                return Ok(outcomes);
            }
            outcomes.push(Outcome::Delivered);
        }
        Ok(outcomes)
    }
}

impl Deliver for Syslog {
    fn deliver(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        match self.protocol {
            SyslogProtocol::Udp => self.deliver_datagrams(records),
            SyslogProtocol::Tcp | SyslogProtocol::Tls => self.deliver_stream(records),
        }
    }

    fn probe(&mut self) -> Result<(), RequestError> {
        match self.conn() {
            Ok(_) => Ok(()),
            Err(e) => {
                self.conn = None;
                Err(RequestError(format!("syslog {}: {e}", self.address)))
            }
        }
    }
}

impl Conn {
    /// Writes a whole request (framed messages, or one datagram) and flushes it.
    fn write_request(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(bytes),
            Conn::Tls(s) => {
                s.write_all(bytes)?;
                s.flush()
            }
            Conn::Udp(s) => {
                let n = s.send(bytes)?;
                if n != bytes.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("sent {n} of {} bytes", bytes.len()),
                    ));
                }
                Ok(())
            }
        }
    }

    /// False when the receiver has closed the connection (or it failed). A syslog receiver
    /// sends nothing, so whatever is readable is drained and ignored (TLS session tickets).
    fn is_open(&mut self) -> bool {
        match self {
            Conn::Udp(_) => true,
            Conn::Tcp(s) => {
                if s.set_nonblocking(true).is_err() {
                    return false;
                }
                let mut buf = [0u8; 1024];
                let mut open = false;
                for _ in 0..64 {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            open = e.kind() == io::ErrorKind::WouldBlock;
                            break;
                        }
                    }
                }
                open && s.set_nonblocking(false).is_ok()
            }
            Conn::Tls(s) => {
                if s.sock.set_nonblocking(true).is_err() {
                    return false;
                }
                let mut open = false;
                for _ in 0..64 {
                    match s.conn.read_tls(&mut s.sock) {
                        Ok(0) => break,
                        Ok(_) => match s.conn.process_new_packets() {
                            Ok(state) if state.peer_has_closed() => break,
                            Ok(state) => {
                                let mut discard = vec![0u8; state.plaintext_bytes_to_read()];
                                let _ = s.conn.reader().read(&mut discard);
                            }
                            Err(_) => break,
                        },
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            open = e.kind() == io::ErrorKind::WouldBlock;
                            break;
                        }
                    }
                }
                open && s.sock.set_nonblocking(false).is_ok()
            }
        }
    }
}

fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(addr)?;
    Ok(sock)
}

/// Splits `host:port` (or `[v6]:port`) and checks the port.
fn split_address(address: &str) -> Result<(&str, u16), String> {
    let bad = || format!("address: `{address}` is not `host:port`");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host, port))
}

/// An RFC 5424 header field: printable US-ASCII only (others become `_`), at most `max`
/// characters, `-` (NILVALUE) when empty.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if out.is_empty() {
        "-".to_string()
    } else {
        out
    }
}

/// Syslog severity of a record (RFC 5424 section 6.2.1).
fn severity(rec: &Record) -> u8 {
    match (rec.flow, rec.level) {
        (Flow::Events, _) => 6,
        (Flow::Alerts, Some(Level::Critical)) => 2,
        (Flow::Alerts, Some(Level::High)) => 3,
        (Flow::Alerts, Some(Level::Medium)) => 4,
        (Flow::Alerts, Some(Level::Low)) => 5,
        (Flow::Alerts, Some(Level::Informational) | None) => 6,
    }
}

/// CEF severity (0 to 10) of a record; events are 0.
fn cef_severity(rec: &Record) -> u8 {
    match (rec.flow, rec.level) {
        (Flow::Events, _) => 0,
        (Flow::Alerts, Some(Level::Critical)) => 10,
        (Flow::Alerts, Some(Level::High)) => 8,
        (Flow::Alerts, Some(Level::Medium)) => 5,
        (Flow::Alerts, Some(Level::Low)) => 3,
        (Flow::Alerts, Some(Level::Informational) | None) => 1,
    }
}

/// The length of the longest prefix of `bytes` of at most `max` bytes that ends on a UTF-8
/// character boundary.
fn utf8_prefix_len(bytes: &[u8], max: usize) -> usize {
    let mut n = max.min(bytes.len());
    // Step back over continuation bytes (0b10xx_xxxx) to the start of the cut character.
    while n > 0 && n < bytes.len() && bytes[n] & 0xC0 == 0x80 {
        n -= 1;
    }
    n
}

/// Appends the CEF line of `rec`:
/// `CEF:0|tripline|tripline|<version>|<rule id>|<rule name>|<severity>|<extension>`. Events have
/// signature id `event` and the name `<verb> <resource>`.
fn cef_into(rec: &Record, out: &mut Vec<u8>) {
    let s = Summary::of(&rec.doc);
    let (sig, name): (&str, Cow<str>) = match (&rec.flow, &rec.rule) {
        (Flow::Alerts, Some((id, title))) => (id, Cow::Borrowed(title)),
        (Flow::Alerts, None) => ("alert", Cow::Borrowed("tripline alert")),
        (Flow::Events, _) => ("event", Cow::Owned(s.event_name())),
    };
    let mut line = String::with_capacity(256);
    line.push_str("CEF:0|tripline|tripline|");
    cef_header_escape_into(env!("CARGO_PKG_VERSION"), &mut line);
    line.push('|');
    cef_header_escape_into(sig, &mut line);
    line.push('|');
    cef_header_escape_into(&name, &mut line);
    line.push('|');
    line.push_str(&cef_severity(rec).to_string());
    line.push('|');
    let rt = rec.time_or_now().timestamp_millis().to_string();
    let resource = s.resource();
    let mut ext: Vec<(&str, &str)> = vec![("rt", &rt), ("externalId", &rec.id)];
    if let (Flow::Alerts, Some((id, _))) = (&rec.flow, &rec.rule) {
        ext.push(("cs1Label", "ruleId"));
        ext.push(("cs1", id));
    }
    let fields = [
        ("suser", &s.user.name),
        ("src", &s.source.ip),
        ("act", &s.event.action),
        ("outcome", &s.event.outcome),
        ("requestClientApplication", &s.user_agent.original),
    ];
    ext.extend(fields.iter().filter_map(|(k, v)| Some((*k, v.as_deref()?))));
    if let Some(ns) = &s.orchestrator.namespace {
        ext.push(("cs2Label", "namespace"));
        ext.push(("cs2", ns));
    }
    if let Some(r) = &resource {
        ext.push(("cs3Label", "resource"));
        ext.push(("cs3", r));
    }
    if let Some(m) = &s.message {
        ext.push(("msg", m));
    }
    for (i, (k, v)) in ext.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(k);
        line.push('=');
        cef_extension_escape_into(v, &mut line);
    }
    out.extend_from_slice(line.as_bytes());
}

/// CEF header fields: `\` and `|` are escaped with a backslash; line breaks (which the format
/// cannot carry there) become spaces.
fn cef_header_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// CEF extension values: `\` and `=` are escaped with a backslash, line breaks written as `\n`
/// and `\r`.
fn cef_extension_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> SyslogConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn alert(level: Level, doc: serde_json::Value) -> Record {
        Record {
            flow: Flow::Alerts,
            id: "abc123".into(),
            time: Some("2024-05-01T10:00:00.250Z".parse().unwrap()),
            level: Some(level),
            rule: Some(("r-1".into(), "Exec into a pod".into())),
            user: None,
            doc: serde_json::to_vec(&doc).unwrap(),
        }
    }

    #[test]
    fn cef_escaping_follows_the_spec_per_position() {
        let mut h = String::new();
        cef_header_escape_into(r"a|b\c=d", &mut h);
        assert_eq!(h, r"a\|b\\c=d");
        let mut e = String::new();
        cef_extension_escape_into("a|b\\c=d\ne\rf", &mut e);
        assert_eq!(e, r"a|b\\c\=d\ne\rf");
    }

    #[test]
    fn severity_follows_the_level_and_events_are_info() {
        let mut r = alert(Level::Critical, serde_json::json!({}));
        let cases = [
            (Level::Critical, 2),
            (Level::High, 3),
            (Level::Medium, 4),
            (Level::Low, 5),
            (Level::Informational, 6),
        ];
        for (level, sev) in cases {
            r.level = Some(level);
            assert_eq!(severity(&r), sev, "{level}");
        }
        r.flow = Flow::Events;
        r.level = None;
        assert_eq!(severity(&r), 6);
    }

    #[test]
    fn messages_are_cut_on_character_boundaries() {
        let s = "aé€".as_bytes(); // 1 + 2 + 3 bytes
        assert_eq!(utf8_prefix_len(s, 6), 6);
        assert_eq!(utf8_prefix_len(s, 5), 3);
        assert_eq!(utf8_prefix_len(s, 4), 3);
        assert_eq!(utf8_prefix_len(s, 2), 1);
        assert_eq!(utf8_prefix_len(s, 100), 6);
    }

    #[test]
    fn header_has_pri_version_time_host_app_procid_msgid() {
        let mut s = Syslog::new(
            "s",
            &cfg("address: 127.0.0.1:1\nfacility: auth\nhostname: node a\napp_name: trip\n"),
        )
        .unwrap();
        s.render(&alert(Level::High, serde_json::json!({"a": 1})));
        let msg = String::from_utf8(s.message.clone()).unwrap();
        // auth (4) * 8 + err (3) = 35
        let want = format!(
            "<35>1 2024-05-01T10:00:00.250Z node_a trip {} alert - {{\"a\":1}}",
            std::process::id()
        );
        assert_eq!(msg, want);
    }

    #[test]
    fn cef_line_carries_the_ecs_fields() {
        let doc = serde_json::json!({
            "message": "ran sh | in=ns\nnow",
            "user": {"name": "alice\\bob"},
            "source": {"ip": "192.0.2.1"},
            "event": {"action": "create", "outcome": "success"},
            "user_agent": {"original": "kubectl/1.30"},
            "orchestrator": {"namespace": "payments", "resource": {"type": "pods/exec", "name": "api"}},
            "kubernetes": {"audit": {"big": [1, 2, 3]}}
        });
        let mut out = Vec::new();
        cef_into(&alert(Level::Critical, doc), &mut out);
        let line = String::from_utf8(out).unwrap();
        let want = format!(
            "CEF:0|tripline|tripline|{}|r-1|Exec into a pod|10|rt=1714557600250 externalId=abc123 cs1Label=ruleId cs1=r-1 suser=alice\\\\bob src=192.0.2.1 act=create outcome=success requestClientApplication=kubectl/1.30 cs2Label=namespace cs2=payments cs3Label=resource cs3=pods/exec/api msg=ran sh | in\\=ns\\nnow",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(line, want);
    }

    #[test]
    fn cef_events_are_named_by_verb_and_resource() {
        let mut r = alert(
            Level::Low,
            serde_json::json!({"event": {"action": "delete"}, "orchestrator": {"resource": {"type": "secrets"}}}),
        );
        r.flow = Flow::Events;
        r.level = None;
        r.rule = None;
        let mut out = Vec::new();
        cef_into(&r, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.starts_with(&format!(
                "CEF:0|tripline|tripline|{}|event|delete secrets|0|",
                env!("CARGO_PKG_VERSION")
            )),
            "{line}"
        );
        assert!(!line.contains("cs1"), "{line}");
    }

    #[test]
    fn bad_settings_are_reported_at_setup() {
        let err = |y: &str| match Syslog::new("s", &cfg(y)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {y}"),
        };
        assert!(err("address: nohost\n").contains("not `host:port`"));
        assert!(err("address: h:99999\n").contains("not `host:port`"));
        assert!(err("address: h:1\ntls: {}\n").contains("`tls` is set"));
        assert!(err("address: h:1\nprotocol: udp\nmax_message_bytes: 70000\n").contains("65507"));
        assert!(err("address: h:1\nmax_message_bytes: 100\n").contains("at least 480"));
        assert!(serde_yaml::from_str::<SyslogConfig>("address: h:1\nport: 2\n").is_err());
        assert!(serde_yaml::from_str::<SyslogConfig>("address: h:1\nfacility: local9\n").is_err());
        assert_eq!(split_address("[::1]:514").unwrap(), ("::1", 514));
    }

    #[test]
    fn keys_parse_inside_the_sinks_list() {
        let kind = crate::sink::tests::first_sink(
            "sinks:\n  - type: syslog\n    name: siem\n    flows: [alerts, events]\n    address: siem.example:6514\n    protocol: tls\n    format: cef\n    facility: local4\n    max_message_bytes: 8192\n    timeout: 5s\n",
            &|_| None,
        );
        let crate::sink::SinkKind::Syslog(s) = kind else {
            panic!("{kind:?}");
        };
        assert_eq!(s.protocol, SyslogProtocol::Tls);
        assert_eq!(s.format, SyslogFormat::Cef);
        assert_eq!(s.facility.code(), 20);
        assert_eq!(s.max_message_bytes, Some(8192));
        assert_eq!(s.timeout.0, Duration::from_secs(5));
        assert_eq!(s.app_name, "tripline");
    }
}
