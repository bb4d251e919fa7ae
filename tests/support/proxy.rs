//! A fault-injecting HTTP proxy in front of an Elasticsearch-compatible server: it can play
//! dead, answer whole bulk requests with 429, or reject chosen items of a bulk request with
//! 429 (those items are not forwarded, so only a retry can store them). It records the
//! document ids of every bulk request it forwarded.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Faults {
    /// No backend: connections are closed without an answer.
    pub down: bool,
    /// The next this many bulk requests are answered 429 as a whole.
    pub reject_bulk: usize,
    /// In the next `item_fault_bulks` bulk requests, every `reject_every`-th item (0, k, 2k,
    /// ...) is answered 429 and not forwarded.
    pub reject_every: usize,
    pub item_fault_bulks: usize,
    /// Ids of the documents of each forwarded bulk request.
    pub forwarded: Vec<Vec<String>>,
    /// Ids answered 429 item by item.
    pub rejected_items: Vec<String>,
    /// Bulk requests answered 429 as a whole.
    pub rejected_bulks: usize,
    /// Whether request bodies arrived gzip-compressed.
    pub gzip_seen: bool,
    /// The last `Authorization` header seen.
    pub authorization: Option<String>,
}

pub struct Proxy {
    pub port: u16,
    pub faults: Arc<Mutex<Faults>>,
}

impl Proxy {
    /// Listens on a free port and forwards to `backend` (`http://127.0.0.1:<port>`).
    pub fn start(backend: &str) -> Proxy {
        Self::listen(backend, None)
    }

    /// Like [`Proxy::start`], serving HTTPS with `config` (which may require client
    /// certificates): a TLS front for servers that speak only plain HTTP.
    pub fn start_tls(backend: &str, config: Arc<rustls::ServerConfig>) -> Proxy {
        Self::listen(backend, Some(config))
    }

    fn listen(backend: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = faults.clone();
        let backend = backend.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let f = f.clone();
                let backend = backend.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let Some(config) = tls else {
                        let _ = serve(conn, &backend, &f);
                        return;
                    };
                    let Ok(session) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut stream = rustls::StreamOwned::new(session, conn);
                    let _ = serve(&mut stream, &backend, &f);
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                });
            }
        });
        Proxy { port, faults }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> R {
        f(&mut self.faults.lock().unwrap())
    }
}

fn serve(
    mut conn: impl Read + Write,
    backend: &str,
    faults: &Mutex<Faults>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut length = 0usize;
    let mut gzip = false;
    let mut content_type = "application/json".to_string();
    let mut authorization = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        match k.as_str() {
            "content-length" => length = v.parse().unwrap_or(0),
            "content-encoding" => gzip = v.eq_ignore_ascii_case("gzip"),
            "content-type" => content_type = v,
            "authorization" => authorization = Some(v),
            _ => {}
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if gzip {
        let mut d = flate2::read::GzDecoder::new(&body[..]);
        let mut out = Vec::new();
        d.read_to_end(&mut out)?;
        body = out;
    }
    let is_bulk = path.starts_with("/_bulk");
    {
        let mut f = faults.lock().unwrap();
        if is_bulk && gzip {
            f.gzip_seen = true;
        }
        if authorization.is_some() {
            f.authorization = authorization.clone();
        }
        if f.down {
            return Ok(()); // dropped without an answer
        }
        if is_bulk && f.reject_bulk > 0 {
            f.reject_bulk -= 1;
            f.rejected_bulks += 1;
            return respond(
                &mut conn,
                429,
                br#"{"error":{"type":"es_rejected_execution_exception","reason":"injected"},"status":429}"#,
            );
        }
    }
    let mut headers = vec![("Content-Type", content_type.as_str())];
    if let Some(a) = &authorization {
        headers.push(("Authorization", a.as_str()));
    }
    if !is_bulk {
        let r = super::servers::try_http(
            &method,
            &format!("{backend}{path}"),
            &headers,
            &body,
            Duration::from_secs(30),
        )?;
        return respond(&mut conn, r.status, &r.body);
    }
    // Bulk: split into (action, document) pairs, drop the faulted items, forward the rest.
    let text = String::from_utf8_lossy(&body).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let pairs: Vec<(&str, &str)> = lines
        .chunks(2)
        .map(|c| (c[0], c.get(1).copied().unwrap_or("")))
        .collect();
    let (every, active) = {
        let mut f = faults.lock().unwrap();
        let active = f.item_fault_bulks > 0 && f.reject_every > 0;
        if active {
            f.item_fault_bulks -= 1;
        }
        (f.reject_every, active)
    };
    let mut forward = String::new();
    let mut forwarded_ids = Vec::new();
    let mut slots = Vec::new(); // None: forwarded; Some(id): rejected
    for (i, (action, doc)) in pairs.iter().enumerate() {
        let a: serde_json::Value = serde_json::from_str(action).unwrap_or_default();
        let id = a["create"]["_id"].as_str().unwrap_or_default().to_string();
        if active && i % every == 0 {
            slots.push(Some((id, a["create"]["_index"].clone())));
        } else {
            forward.push_str(action);
            forward.push('\n');
            forward.push_str(doc);
            forward.push('\n');
            forwarded_ids.push(id);
            slots.push(None);
        }
    }
    let mut items: Vec<serde_json::Value> = Vec::new();
    let mut errors = false;
    if !forwarded_ids.is_empty() {
        let r = super::servers::try_http(
            &method,
            &format!("{backend}{path}"),
            &headers,
            forward.as_bytes(),
            Duration::from_secs(30),
        )?;
        if r.status != 200 {
            return respond(&mut conn, r.status, &r.body);
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        errors = v["errors"].as_bool().unwrap_or(false);
        items = v["items"].as_array().cloned().unwrap_or_default();
    }
    let mut f = faults.lock().unwrap();
    f.forwarded.push(forwarded_ids);
    let mut merged = Vec::new();
    let mut it = items.into_iter();
    for s in slots {
        match s {
            None => merged.push(it.next().unwrap_or_default()),
            Some((id, index)) => {
                errors = true;
                f.rejected_items.push(id.clone());
                merged.push(
                    serde_json::json!({"create": {"_index": index, "_id": id, "status": 429,
                    "error": {"type": "es_rejected_execution_exception", "reason": "injected"}}}),
                );
            }
        }
    }
    drop(f);
    let body = serde_json::json!({"took": 1, "errors": errors, "items": merged}).to_string();
    respond(&mut conn, 200, body.as_bytes())
}

fn respond(conn: &mut impl Write, status: u16, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}
