//! The network sinks (syslog, Splunk HEC, HTTP webhook) against real receivers on 127.0.0.1:
//! std TCP/UDP sockets, a rustls server and small axum HTTP servers, each parsing what arrived
//! on the wire. The sinks are driven through `Deliver`, the way the sink driver calls them.

#[path = "support/falco_payload.rs"]
mod falco_payload;
#[path = "support/scan.rs"]
mod scan;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tripline::config::types::Flow;
use tripline::rules::Level;
use tripline::sink::http::{HttpSink, HttpSinkConfig};
use tripline::sink::local::{LineFormat, Local};
use tripline::sink::splunk::{Splunk, SplunkConfig};
use tripline::sink::syslog::{Syslog, SyslogConfig};
use tripline::sink::{Deliver, Outcome, Record};

// ---------------------------------------------------------------------------------------------
// Records

fn alert_doc(n: usize, message: &str) -> Value {
    json!({
        "@timestamp": "2024-05-01T10:00:00.250Z",
        "message": message,
        "event": {"kind": "alert", "action": "create", "outcome": "success"},
        "rule": {"id": format!("rule-{n}"), "name": "Exec into a pod"},
        "user": {"name": "alice@example.com"},
        "source": {"ip": "192.0.2.10"},
        "user_agent": {"original": "kubectl/v1.30.0"},
        "orchestrator": {"namespace": "payments", "resource": {"type": "pods/exec", "name": "api-1"}},
        "kubernetes": {"audit": {"verb": "create", "n": n}},
    })
}

fn alert(n: usize, level: Level, title: &str, doc: Value) -> Arc<Record> {
    Arc::new(Record {
        flow: Flow::Alerts,
        id: format!("id-{n}"),
        time: Some("2024-05-01T10:00:00.250Z".parse().unwrap()),
        level: Some(level),
        rule: Some((format!("rule-{n}"), title.to_string())),
        user: Some("alice@example.com".into()),
        doc: serde_json::to_vec(&doc).unwrap(),
    })
}

fn simple_alert(n: usize) -> Arc<Record> {
    alert(
        n,
        Level::High,
        "Exec into a pod",
        alert_doc(n, &format!("alice ran sh #{n}")),
    )
}

fn event(n: usize) -> Arc<Record> {
    let doc = json!({
        "event": {"kind": "event", "action": "delete"},
        "orchestrator": {"resource": {"type": "secrets"}},
        "kubernetes": {"audit": {"verb": "delete", "n": n}},
    });
    Arc::new(Record {
        flow: Flow::Events,
        id: format!("ev-{n}"),
        time: Some("2024-05-01T10:00:01Z".parse().unwrap()),
        level: None,
        rule: None,
        user: None,
        doc: serde_json::to_vec(&doc).unwrap(),
    })
}

fn all_delivered(outcomes: &[Outcome]) -> bool {
    outcomes.iter().all(|o| *o == Outcome::Delivered)
}

// ---------------------------------------------------------------------------------------------
// Syslog receivers

fn syslog(yaml: &str) -> Syslog {
    let cfg: SyslogConfig = serde_yaml::from_str(yaml).unwrap();
    Syslog::new("syslog-test", &cfg).unwrap()
}

/// Splits an RFC 6587 octet-counted stream into its messages; panics on a malformed frame.
fn parse_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let sp = bytes
            .iter()
            .position(|b| *b == b' ')
            .expect("MSG-LEN then a space");
        let len: usize = std::str::from_utf8(&bytes[..sp])
            .unwrap()
            .parse()
            .expect("MSG-LEN is a number");
        assert_ne!(bytes[0], b'0', "MSG-LEN has no leading zero");
        let msg = &bytes[sp + 1..sp + 1 + len];
        out.push(msg.to_vec());
        bytes = &bytes[sp + 1 + len..];
    }
    out
}

/// Parses as many complete frames as `buf` holds, removing them from it.
fn take_frames(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(sp) = buf.iter().position(|b| *b == b' ') else {
            return out;
        };
        let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
        if buf.len() < sp + 1 + len {
            return out;
        }
        out.push(buf[sp + 1..sp + 1 + len].to_vec());
        buf.drain(..sp + 1 + len);
    }
}

/// An RFC 5424 message split into PRI, VERSION, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID,
/// STRUCTURED-DATA and MSG.
struct Message {
    pri: u8,
    version: String,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    sd: String,
    msg: Vec<u8>,
}

fn parse_5424(m: &[u8]) -> Message {
    assert_eq!(m[0], b'<');
    let close = m.iter().position(|b| *b == b'>').unwrap();
    let pri: u8 = std::str::from_utf8(&m[1..close]).unwrap().parse().unwrap();
    let rest = &m[close + 1..];
    let mut parts = rest.splitn(8, |b| *b == b' ');
    let mut next = || String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
    let (version, timestamp, hostname, app_name, procid, msgid, sd) =
        (next(), next(), next(), next(), next(), next(), next());
    let msg = parts.next().unwrap().to_vec();
    Message {
        pri,
        version,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        msg,
    }
}

/// Accepts a connection, failing the test (instead of hanging it) when none comes in time.
fn accept(listener: &TcpListener) -> std::net::TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "no connection came");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Accepts one connection and returns everything read from it until the peer closed it.
fn tcp_receiver() -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut s = accept(&listener);
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    (port, handle)
}

#[test]
fn syslog_tcp_octet_counted_frames_parse_back_to_rfc5424_messages() {
    let (port, receiver) = tcp_receiver();
    let mut sink = syslog(&format!(
        "address: 127.0.0.1:{port}\nhostname: node-1\napp_name: trip\n"
    ));
    // A multi-byte message: MSG-LEN must count bytes, not characters.
    let records = vec![
        alert(1, Level::Critical, "Exec", alert_doc(1, "café ☕ ran")),
        alert(2, Level::Low, "Exec", alert_doc(2, "plain")),
        event(3),
    ];
    let outcomes = sink.deliver(&records).unwrap();
    assert!(all_delivered(&outcomes), "{outcomes:?}");
    drop(sink);
    let frames = parse_frames(&receiver.join().unwrap());
    assert_eq!(frames.len(), 3);
    let pid = std::process::id().to_string();
    // local0 (16) * 8 + severity: crit 2, notice 5, info 6.
    for ((frame, rec), (pri, msgid)) in
        frames
            .iter()
            .zip(&records)
            .zip([(130, "alert"), (133, "alert"), (134, "event")])
    {
        let m = parse_5424(frame);
        assert_eq!(m.pri, pri);
        assert_eq!(m.version, "1");
        let want_time = if rec.flow == Flow::Events {
            "2024-05-01T10:00:01.000Z"
        } else {
            "2024-05-01T10:00:00.250Z"
        };
        assert_eq!(m.timestamp, want_time);
        assert_eq!(m.hostname, "node-1");
        assert_eq!(m.app_name, "trip");
        assert_eq!(m.procid, pid);
        assert_eq!(m.msgid, msgid);
        assert_eq!(m.sd, "-");
        assert_eq!(m.msg, rec.doc, "MSG is the JSON document unchanged");
    }
}

#[test]
fn syslog_cef_escapes_header_and_extension_values() {
    let (port, receiver) = tcp_receiver();
    let mut sink = syslog(&format!("address: 127.0.0.1:{port}\nformat: cef\n"));
    let mut doc = alert_doc(7, "a=b\\c|d\nline2\r");
    doc["user"]["name"] = json!("eve|x=y");
    let rec = alert(7, Level::Medium, r"Pipe | and \ slash", doc);
    assert!(all_delivered(&sink.deliver(&[rec]).unwrap()));
    drop(sink);
    let frames = parse_frames(&receiver.join().unwrap());
    let m = parse_5424(&frames[0]);
    assert_eq!(m.pri, 16 * 8 + 4);
    let cef = String::from_utf8(m.msg).unwrap();
    let want = format!(
        "CEF:0|tripline|tripline|{}|rule-7|Pipe \\| and \\\\ slash|5|rt=1714557600250 externalId=id-7 cs1Label=ruleId cs1=rule-7 suser=eve|x\\=y src=192.0.2.10 act=create outcome=success requestClientApplication=kubectl/v1.30.0 cs2Label=namespace cs2=payments cs3Label=resource cs3=pods/exec/api-1 msg=a\\=b\\\\c|d\\nline2\\r",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(cef, want);
    assert!(!cef.contains('\n'), "no raw line break in a CEF line");
}

#[test]
fn syslog_reconnects_after_the_receiver_closed_and_loses_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        // First connection: take the first request's two messages, then close (a restart).
        let mut s = accept(&listener);
        let mut buf = Vec::new();
        while got.len() < 2 {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "sink closed early");
            buf.extend_from_slice(&chunk[..n]);
            got.extend(take_frames(&mut buf));
        }
        drop(s);
        closed_tx.send(()).unwrap();
        // Second connection: everything else.
        let mut s = accept(&listener);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        got.extend(parse_frames(&rest));
        got
    });
    let mut sink = syslog(&format!("address: 127.0.0.1:{port}\n"));
    let first = [simple_alert(1), simple_alert(2)];
    assert!(all_delivered(&sink.deliver(&first).unwrap()));
    closed_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // Let the FIN arrive; a write into the closed connection would "succeed" and be lost.
    std::thread::sleep(Duration::from_millis(100));
    let second = [simple_alert(3), simple_alert(4)];
    assert!(all_delivered(&sink.deliver(&second).unwrap()));
    drop(sink);
    let got = receiver.join().unwrap();
    let docs: Vec<Vec<u8>> = got.iter().map(|f| parse_5424(f).msg).collect();
    let want: Vec<Vec<u8>> = first.iter().chain(&second).map(|r| r.doc.clone()).collect();
    assert_eq!(docs, want);
}

#[test]
fn syslog_fails_while_the_receiver_is_down_and_delivers_once_it_is_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut sink = syslog(&format!("address: 127.0.0.1:{port}\ntimeout: 2s\n"));
    let e = sink.deliver(&[simple_alert(1)]).unwrap_err();
    assert!(e.0.contains(&format!("127.0.0.1:{port}")), "{}", e.0);
    assert!(sink.probe().is_err());
    // The receiver comes back on the same port: the next call connects again.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let receiver = std::thread::spawn(move || {
        let mut s = accept(&listener);
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    assert!(all_delivered(&sink.deliver(&[simple_alert(1)]).unwrap()));
    drop(sink);
    let frames = parse_frames(&receiver.join().unwrap());
    assert_eq!(frames.len(), 1);
    assert_eq!(parse_5424(&frames[0]).msg, simple_alert(1).doc);
}

/// A self-signed certificate for 127.0.0.1 and localhost: (PEM file of the certificate, server
/// config).
fn tls_server_config(dir: &std::path::Path) -> (std::path::PathBuf, Arc<rustls::ServerConfig>) {
    tripline::tls::install_crypto_provider();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    (ca, Arc::new(config))
}

#[test]
fn syslog_over_tls_reaches_a_rustls_server_and_verifies_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, config) = tls_server_config(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let mut plaintext = Vec::new();
        // The first connection comes from the sink that does not trust the certificate.
        for _ in 0..2 {
            let sock = accept(&listener);
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut buf = [0u8; 4096];
            loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => plaintext.extend_from_slice(&buf[..n]),
                }
            }
        }
        plaintext
    });
    // Without the CA the sink must refuse the server.
    let mut untrusting = syslog(&format!(
        "address: 127.0.0.1:{port}\nprotocol: tls\ntimeout: 5s\n"
    ));
    let e = untrusting.deliver(&[simple_alert(0)]).unwrap_err();
    assert!(e.0.to_lowercase().contains("certificate"), "{}", e.0);
    drop(untrusting);

    let mut sink = syslog(&format!(
        "address: 127.0.0.1:{port}\nprotocol: tls\ntls:\n  ca: {}\n",
        ca.display()
    ));
    let records = [simple_alert(1), event(2)];
    assert!(all_delivered(&sink.deliver(&records).unwrap()));
    drop(sink);
    let frames = parse_frames(&receiver.join().unwrap());
    assert_eq!(frames.len(), 2);
    for (f, r) in frames.iter().zip(&records) {
        assert_eq!(parse_5424(f).msg, r.doc);
    }
}

#[test]
fn syslog_udp_sends_one_message_per_datagram_cut_to_the_maximum() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut sink = syslog(&format!(
        "address: 127.0.0.1:{port}\nprotocol: udp\nmax_message_bytes: 600\nfacility: auth\n"
    ));
    let long = alert(2, Level::High, "Exec", alert_doc(2, &"é".repeat(400)));
    let records = [simple_alert(1), long.clone()];
    assert!(all_delivered(&sink.deliver(&records).unwrap()));
    let mut buf = vec![0u8; 65536];
    let n = sock.recv(&mut buf).unwrap();
    let first = parse_5424(&buf[..n]);
    assert_eq!(first.pri, 4 * 8 + 3);
    assert_eq!(first.msg, records[0].doc);
    let n = sock.recv(&mut buf).unwrap();
    assert!(
        (599..=600).contains(&n),
        "cut to at most 600 bytes on a character boundary: {n}"
    );
    let text = std::str::from_utf8(&buf[..n]).expect("still valid UTF-8");
    let m = parse_5424(text.as_bytes());
    assert!(long.doc.starts_with(&m.msg));
    assert!(m.msg.len() < long.doc.len());
}

// ---------------------------------------------------------------------------------------------
// HTTP receivers

/// What an HTTP receiver got: method, path, headers (lowercase names) and the body (gunzipped
/// when `Content-Encoding: gzip`).
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler shares: the requests so far and how to answer.
type ReceiverState = (Arc<Mutex<Vec<Received>>>, Arc<Respond>);

type Respond = dyn Fn(&Received, usize) -> (u16, String) + Send + Sync;

struct HttpReceiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpReceiver {
    /// Serves every request with `respond(request, index of the request)`.
    fn start(respond: impl Fn(&Received, usize) -> (u16, String) + Send + Sync + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let state: ReceiverState = (got.clone(), Arc::new(respond));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        HttpReceiver {
            url,
            got,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    axum::extract::State((got, respond)): axum::extract::State<ReceiverState>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let req = Received {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body,
    };
    let n = {
        let mut g = got.lock().unwrap();
        g.push(req.clone());
        g.len() - 1
    };
    let (status, body) = respond(&req, n);
    if status == 0 {
        // Stall: the client's timeout must fire.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    (
        axum::http::StatusCode::from_u16(status.max(200)).unwrap(),
        body,
    )
}

/// Parses a stream of concatenated JSON values.
fn json_stream(body: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Splunk HEC

fn splunk(yaml: &str) -> Splunk {
    let cfg: SplunkConfig = serde_yaml::from_str(yaml).unwrap();
    Splunk::new("splunk-test", &cfg).unwrap()
}

const HEC_OK: &str = r#"{"text":"Success","code":0}"#;

#[test]
fn splunk_hec_envelopes_carry_time_host_source_sourcetype_index_and_the_document() {
    for compression in ["none", "gzip"] {
        let server = HttpReceiver::start(|_, _| (200, HEC_OK.to_string()));
        let mut sink = splunk(&format!(
            "endpoint: {}\ntoken: hec-token-123\nindex: k8s\nhost: node-1\ncompression: {compression}\n",
            server.url
        ));
        let records = [simple_alert(1), event(2), simple_alert(3)];
        assert!(all_delivered(&sink.deliver(&records).unwrap()));
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(r.path, "/services/collector/event");
        assert_eq!(r.header("authorization"), Some("Splunk hec-token-123"));
        assert_eq!(
            r.header("content-encoding"),
            (compression == "gzip").then_some("gzip")
        );
        let channel = r.header("x-splunk-request-channel").unwrap();
        assert_eq!(channel.len(), 36, "{channel}");
        let envelopes = json_stream(&r.body);
        assert_eq!(envelopes.len(), 3);
        for (env, rec) in envelopes.iter().zip(&records) {
            let want_time = if rec.flow == Flow::Events {
                1714557601.0
            } else {
                1714557600.25
            };
            assert_eq!(env["time"].as_f64(), Some(want_time));
            assert_eq!(env["host"], "node-1");
            assert_eq!(env["source"], "tripline");
            assert_eq!(env["index"], "k8s");
            let sourcetype = if rec.flow == Flow::Events {
                "kube:apiserver:audit"
            } else {
                "tripline:alert"
            };
            assert_eq!(env["sourcetype"], sourcetype);
            assert_eq!(
                env["event"],
                serde_json::from_slice::<Value>(&rec.doc).unwrap()
            );
        }
    }
}

#[test]
fn splunk_hec_ack_polls_until_the_indexer_confirms() {
    let server = HttpReceiver::start(|req, _| match req.path.as_str() {
        "/services/collector/event" => (200, r#"{"text":"Success","code":0,"ackId":7}"#.into()),
        "/services/collector/ack" => {
            // Acknowledged on the third poll.
            static POLLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = POLLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let done = n >= 2;
            (200, format!(r#"{{"acks":{{"7":{done}}}}}"#))
        }
        _ => (404, String::new()),
    });
    let mut sink = splunk(&format!(
        "endpoint: {}\ntoken: t\nack: true\nack_timeout: 20s\n",
        server.url
    ));
    assert!(all_delivered(
        &sink.deliver(&[simple_alert(1), simple_alert(2)]).unwrap()
    ));
    let reqs = server.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/services/collector/event",
            "/services/collector/ack",
            "/services/collector/ack",
            "/services/collector/ack"
        ]
    );
    let channel = reqs[0].header("x-splunk-request-channel").unwrap();
    for poll in &reqs[1..] {
        assert_eq!(poll.header("x-splunk-request-channel"), Some(channel));
        assert_eq!(poll.header("authorization"), Some("Splunk t"));
        let body: Value = serde_json::from_slice(&poll.body).unwrap();
        assert_eq!(body, json!({"acks": [7]}));
    }
}

#[test]
fn splunk_hec_missing_ack_fails_the_request_so_it_is_sent_again() {
    let server = HttpReceiver::start(|req, _| match req.path.as_str() {
        "/services/collector/event" => (200, r#"{"text":"Success","code":0,"ackId":3}"#.into()),
        _ => (200, r#"{"acks":{"3":false}}"#.into()),
    });
    let mut sink = splunk(&format!(
        "endpoint: {}\ntoken: t\nack: true\nack_timeout: 400ms\n",
        server.url
    ));
    let e = sink.deliver(&[simple_alert(1)]).unwrap_err();
    assert!(e.0.contains("acknowledgement"), "{}", e.0);
    assert!(server.requests().len() >= 3, "polled more than once");
}

#[test]
fn splunk_hec_503_is_retried_and_then_delivered() {
    let server = HttpReceiver::start(|_, n| match n {
        0 => (503, r#"{"text":"Server is busy","code":9}"#.into()),
        _ => (200, HEC_OK.into()),
    });
    let mut sink = splunk(&format!("endpoint: {}\ntoken: t\n", server.url));
    let records = [simple_alert(1), simple_alert(2)];
    let e = sink.deliver(&records).unwrap_err();
    assert!(
        e.0.contains("503") && e.0.contains("Server is busy"),
        "{}",
        e.0
    );
    assert!(all_delivered(&sink.deliver(&records).unwrap()));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body, reqs[1].body, "the same request is sent again");
}

#[test]
fn splunk_hec_refused_batch_is_split_and_only_the_bad_record_rejected() {
    let server = HttpReceiver::start(|req, _| {
        let bad = String::from_utf8_lossy(&req.body).contains("POISON");
        if bad {
            (
                400,
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":1}"#.into(),
            )
        } else {
            (200, HEC_OK.into())
        }
    });
    let mut sink = splunk(&format!("endpoint: {}\ntoken: t\n", server.url));
    let records = [
        simple_alert(1),
        alert(2, Level::High, "x", alert_doc(2, "POISON")),
        simple_alert(3),
    ];
    let outcomes = sink.deliver(&records).unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    match &outcomes[1] {
        Outcome::Reject(why) => assert!(why.contains("code 6"), "{why}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(outcomes[2], Outcome::Delivered);
    let reqs = server.requests();
    let counts: Vec<usize> = reqs.iter().map(|r| json_stream(&r.body).len()).collect();
    assert_eq!(counts, [3, 1, 1, 1]);
}

#[test]
fn splunk_hec_too_large_request_is_split_and_an_oversized_record_rejected() {
    let server = HttpReceiver::start(|req, _| {
        if req.body.len() > 2000 {
            (413, "Content-Length of 9999 too large".into())
        } else {
            (200, HEC_OK.into())
        }
    });
    let mut sink = splunk(&format!("endpoint: {}\ntoken: t\n", server.url));
    let huge = alert(9, Level::Low, "x", alert_doc(9, &"y".repeat(3000)));
    let outcomes = sink
        .deliver(&[simple_alert(1), huge, simple_alert(2)])
        .unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(
        matches!(&outcomes[1], Outcome::Reject(w) if w.contains("413")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], Outcome::Delivered);
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn splunk_hec_refused_token_fails_the_request_without_showing_it() {
    let server = HttpReceiver::start(|_, _| (403, r#"{"text":"Invalid token","code":4}"#.into()));
    let mut sink = splunk(&format!("endpoint: {}\ntoken: sekrit-tok\n", server.url));
    let e = sink.deliver(&[simple_alert(1)]).unwrap_err();
    assert!(
        e.0.contains("token was refused") && e.0.contains("Invalid token"),
        "{}",
        e.0
    );
    assert!(!e.0.contains("sekrit-tok"));
}

// ---------------------------------------------------------------------------------------------
// HTTP webhook

fn http(yaml: &str) -> HttpSink {
    let cfg: HttpSinkConfig = serde_yaml::from_str(yaml).unwrap();
    HttpSink::new("http-test", &cfg).unwrap()
}

#[test]
fn http_batch_posts_one_json_array_with_the_configured_headers() {
    let server = HttpReceiver::start(|_, _| (202, String::new()));
    let mut sink = http(&format!(
        "url: {}/hook\ntoken: bearer-1\nheaders:\n  X-Api-Key: k-123\n",
        server.url
    ));
    let records = [simple_alert(1), simple_alert(2), event(3)];
    assert!(all_delivered(&sink.deliver(&records).unwrap()));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/hook");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Bearer bearer-1"));
    assert_eq!(r.header("x-api-key"), Some("k-123"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    let want: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.doc).unwrap())
        .collect();
    assert_eq!(body, Value::Array(want));
}

#[test]
fn http_basic_auth_is_sent() {
    let server = HttpReceiver::start(|_, _| (200, String::new()));
    let mut sink = http(&format!(
        "url: {}/\nusername: Aladdin\npassword: open sesame\n",
        server.url
    ));
    assert!(all_delivered(&sink.deliver(&[simple_alert(1)]).unwrap()));
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );
}

#[test]
fn http_single_mode_posts_each_record_and_reports_each_outcome() {
    let server = HttpReceiver::start(|_, n| match n {
        1 => (400, "bad payload\nfor this one".into()),
        _ => (200, String::new()),
    });
    let mut sink = http(&format!("url: {}/\nmode: single\n", server.url));
    let records = [simple_alert(1), simple_alert(2), simple_alert(3)];
    let outcomes = sink.deliver(&records).unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Delivered,
            Outcome::Reject("HTTP 400 (body: bad payload for this one)".into()),
            Outcome::Delivered
        ]
    );
    let bodies: Vec<Vec<u8>> = server.requests().into_iter().map(|r| r.body).collect();
    let docs: Vec<Vec<u8>> = records.iter().map(|r| r.doc.clone()).collect();
    assert_eq!(bodies, docs);
}

#[test]
fn http_single_mode_stops_at_a_failing_endpoint_and_leaves_the_rest_for_retry() {
    let server = HttpReceiver::start(|_, n| match n {
        0 => (200, String::new()),
        _ => (503, String::new()),
    });
    let mut sink = http(&format!("url: {}/\nmode: single\n", server.url));
    let outcomes = sink
        .deliver(&[simple_alert(1), simple_alert(2), simple_alert(3)])
        .unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(
        matches!(&outcomes[1], Outcome::Retry(w) if w.contains("503")),
        "{outcomes:?}"
    );
    assert!(matches!(&outcomes[2], Outcome::Retry(_)), "{outcomes:?}");
    assert_eq!(server.requests().len(), 2, "the third record was not tried");
}

#[test]
fn http_slack_template_posts_an_escaped_message_per_alert() {
    let server = HttpReceiver::start(|_, _| (200, "ok".into()));
    let mut sink = http(&format!(
        "url: {}/services/T0/B0/X\ntemplate: slack\n",
        server.url
    ));
    let mut doc = alert_doc(1, "<!channel> look & see <http://evil.example|click>");
    doc["orchestrator"]["cluster"] = json!({"name": "prod-eu"});
    let records = [
        alert(1, Level::Critical, "Exec into a pod", doc),
        simple_alert(2),
    ];
    assert!(all_delivered(&sink.deliver(&records).unwrap()));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "one message per alert");
    let m: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let text = m["text"].as_str().unwrap();
    assert!(text.starts_with("[CRITICAL] Exec into a pod: "), "{text}");
    assert!(
        text.contains("&lt;!channel&gt; look &amp; see &lt;http://evil.example|click&gt;"),
        "{text}"
    );
    let raw = String::from_utf8(reqs[0].body.clone()).unwrap();
    assert!(
        !raw.contains("<!channel>") && !raw.contains("<http"),
        "{raw}"
    );
    let blocks = m["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    let headline = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(
        headline.contains("*CRITICAL* Exec into a pod"),
        "{headline}"
    );
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "*User*\nalice@example.com",
            "*Source IP*\n192.0.2.10",
            "*Namespace*\npayments",
            "*Resource*\npods/exec/api-1"
        ]
    );
    assert_eq!(blocks[2]["type"], "context");
    let context = blocks[2]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context.contains("rule rule-1") && context.contains("cluster prod-eu"),
        "{context}"
    );
    let second: Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert!(second["text"].as_str().unwrap().starts_with("[HIGH] "));
}

/// The alerts `tripline scan` raises on the sample log, as the sinks get them.
fn sample_alert_records() -> Vec<Arc<Record>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/audit.log");
    scan::scan_json(&[], &path)
        .0
        .into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let level = match doc["tripline"]["rule"]["level"].as_str().unwrap() {
                "critical" => Level::Critical,
                "high" => Level::High,
                "medium" => Level::Medium,
                "low" => Level::Low,
                _ => Level::Informational,
            };
            Arc::new(Record {
                flow: Flow::Alerts,
                id: format!("{i:032x}"),
                time: doc["@timestamp"].as_str().and_then(|t| t.parse().ok()),
                level: Some(level),
                rule: Some((
                    doc["rule"]["id"].as_str().unwrap().to_string(),
                    doc["rule"]["name"].as_str().unwrap().to_string(),
                )),
                user: None,
                doc: serde_json::to_vec(&doc).unwrap(),
            })
        })
        .collect()
}

#[test]
fn http_falco_template_posts_one_falcosidekick_payload_per_alert() {
    let server = HttpReceiver::start(|_, _| (200, String::new()));
    let mut sink = http(&format!("url: {}/\ntemplate: falco\n", server.url));
    let records = sample_alert_records();
    assert!(records.len() > 20, "{}", records.len());
    assert!(all_delivered(&sink.deliver(&records).unwrap()));
    let reqs = server.requests();
    assert_eq!(reqs.len(), records.len(), "one POST per alert");
    for (req, rec) in reqs.iter().zip(&records) {
        assert_eq!(req.path, "/");
        assert_eq!(req.header("content-type"), Some("application/json"));
        let p = falco_payload::FalcoPayload::parse(&req.body);
        let (_, title) = rec.rule.as_ref().unwrap();
        assert_eq!(&p.rule, title);
        assert_eq!(p.uuid.as_deref(), Some(rec.id.as_str()));
        assert_eq!(p.source, "k8s_audit");
        assert!(p.output_fields.contains_key("evt.time"));
        assert_eq!(p.time, rec.time.unwrap());
    }
    // An event has no Falco shape: refused, the alerts beside it sent.
    let outcomes = sink.deliver(&[event(1), records[0].clone()]).unwrap();
    assert!(
        matches!(&outcomes[0], Outcome::Reject(w) if w.contains("alerts only")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Outcome::Delivered);
    assert_eq!(server.requests().len(), records.len() + 1);
}

#[test]
fn file_sink_in_falco_format_writes_one_falco_alert_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("falco.jsonl");
    let mut sink = Local::file("file-test", &path)
        .unwrap()
        .with_format(LineFormat::Falco);
    let records = sample_alert_records();
    assert!(all_delivered(&sink.deliver(&records).unwrap()));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), records.len());
    for (line, rec) in lines.iter().zip(&records) {
        let p = falco_payload::FalcoPayload::parse(line.as_bytes());
        assert_eq!(&p.rule, &rec.rule.as_ref().unwrap().1);
    }
    // The ECS format (the default) writes the documents unchanged.
    let ecs = dir.path().join("ecs.jsonl");
    let mut sink = Local::file("file-test", &ecs).unwrap();
    assert!(all_delivered(&sink.deliver(&records[..2]).unwrap()));
    let want: Vec<u8> = records[..2]
        .iter()
        .flat_map(|r| r.doc.iter().copied().chain([b'\n']))
        .collect();
    assert_eq!(std::fs::read(&ecs).unwrap(), want);
}

#[test]
fn http_500_fails_the_request_and_the_retry_delivers() {
    let server = HttpReceiver::start(|_, n| match n {
        0 => (500, "oops".into()),
        _ => (200, String::new()),
    });
    let mut sink = http(&format!("url: {}/secret-path-token\n", server.url));
    let records = [simple_alert(1), simple_alert(2)];
    let e = sink.deliver(&records).unwrap_err();
    assert!(e.0.contains("HTTP 500"), "{}", e.0);
    assert!(
        !e.0.contains("secret-path-token"),
        "the URL path stays out of errors: {}",
        e.0
    );
    assert!(all_delivered(&sink.deliver(&records).unwrap()));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn http_400_rejects_every_record_with_status_and_truncated_body() {
    let long = "x".repeat(5000);
    let server = HttpReceiver::start(move |_, _| (400, long.clone()));
    let mut sink = http(&format!("url: {}/\n", server.url));
    let outcomes = sink.deliver(&[simple_alert(1), simple_alert(2)]).unwrap();
    assert_eq!(outcomes.len(), 2);
    for o in outcomes {
        match o {
            Outcome::Reject(why) => {
                assert!(why.starts_with("HTTP 400 (body: xxx"), "{why}");
                assert!(why.chars().count() < 300, "{}", why.len());
            }
            o => panic!("{o:?}"),
        }
    }
}

#[test]
fn http_timeouts_and_refused_connections_are_request_errors() {
    let server = HttpReceiver::start(|_, _| (0, String::new()));
    let mut sink = http(&format!("url: {}/\ntimeout: 300ms\n", server.url));
    let e = sink.deliver(&[simple_alert(1)]).unwrap_err();
    assert!(e.0.contains("timed out"), "{}", e.0);

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = http(&format!("url: http://127.0.0.1:{port}/hooks/SECRET\n"));
    let e = sink.deliver(&[simple_alert(1)]).unwrap_err();
    assert!(e.0.contains(&format!("127.0.0.1:{port}")), "{}", e.0);
    assert!(!e.0.contains("SECRET"), "{}", e.0);
}

#[test]
fn syslog_probe_connects_and_detects_a_closed_receiver() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sink = syslog(&format!("address: 127.0.0.1:{port}\n"));
    assert!(sink.probe().is_ok());
    drop(accept(&listener));
    drop(listener);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        sink.probe().is_err(),
        "the receiver is gone and nothing listens"
    );
}
