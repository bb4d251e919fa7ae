//! A slow HTTP endpoint for an `http` sink: it answers each POSTed JSON array of event
//! documents after a delay the test can change, and records the auditIDs it answered 200 (just
//! before answering), with the path they came to and when.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Accepts POSTed JSON arrays of event documents, each after `delay`, and records the auditIDs
/// of those it answered 200 (just before answering).
pub struct SlowEndpoint {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    got: Arc<Mutex<Vec<(String, String, Instant)>>>,
    stop: Arc<AtomicBool>,
}

impl SlowEndpoint {
    pub fn start(delay: Duration) -> SlowEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(delay.as_millis() as u64));
        let (d, g, s) = (delay_ms.clone(), got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (d, g, s) = (d.clone(), g.clone(), s.clone());
                        std::thread::spawn(move || serve(conn, &d, &g, &s));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => break,
                }
            }
        });
        SlowEndpoint {
            port,
            delay_ms,
            got,
            stop,
        }
    }

    /// Changes the delay of the answers to come.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The URL for the instance called `name` (the path tells instances apart).
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// auditID -> deliveries, for one instance or (with `None`) all of them.
    pub fn delivered(&self, name: Option<&str>) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (path, id, _) in self.got.lock().unwrap().iter() {
            if name.is_none_or(|n| path == &format!("/{n}")) {
                *m.entry(id.clone()).or_default() += 1;
            }
        }
        m
    }

    /// The auditIDs answered at or after `since`.
    pub fn delivered_since(&self, since: Instant) -> BTreeSet<String> {
        let g = self.got.lock().unwrap();
        g.iter()
            .filter(|(_, _, t)| *t >= since)
            .map(|(_, id, _)| id.clone())
            .collect()
    }
}

impl Drop for SlowEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves one keep-alive connection.
fn serve(
    mut conn: TcpStream,
    delay_ms: &AtomicU64,
    got: &Mutex<Vec<(String, String, Instant)>>,
    stop: &AtomicBool,
) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    // Reads until `want(buf)` is found; false when the connection ends or the endpoint stops.
    let mut fill =
        |conn: &mut TcpStream, buf: &mut Vec<u8>, want: &dyn Fn(&[u8]) -> Option<usize>| loop {
            if want(buf).is_some() {
                return true;
            }
            match conn.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        };
    loop {
        let find_head = |b: &[u8]| b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        if !fill(&mut conn, &mut buf, &find_head) {
            return;
        }
        let head_end = find_head(&buf).expect("filled up to the head's end");
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "chunked request: {head}"
        );
        let len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        if !fill(&mut conn, &mut buf, &|b: &[u8]| {
            (b.len() >= head_end + len).then_some(0)
        }) {
            return;
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::Relaxed)));
        let docs: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        {
            let mut g = got.lock().unwrap();
            for d in docs.as_array().into_iter().flatten() {
                if let Some(id) = d["kubernetes"]["audit"]["auditID"].as_str() {
                    g.push((path.clone(), id.to_string(), Instant::now()));
                }
            }
        }
        let answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
