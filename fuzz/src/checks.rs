//! What each fuzz target checks, for one input. Shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/`) and by `tests/fuzz_corpus.rs`, which runs the same checks over the
//! seed corpus and over generated inputs as ordinary tests.
//!
//! Beyond "never panics":
//! - every decoded event's redacted JSON parses again (serde_json), and so does its raw text;
//! - redaction never lets a planted secret through: [`redact`] builds an audit event around
//!   Secret objects, tokens and patches whose secret values are known (they start with
//!   `PLANTED-`, which nothing else in the event can contain), and checks that none of them is
//!   left in either redaction path's output.

use std::io::Write as _;

use serde_json::Value;
use tripline::event::redact::{redact_event, redacted_event_json};
use tripline::event::{decode_value_into, DecodeStats, Event, Input, InputReader};
use tripline::rules::{builtin_field_mappings, load_str, CompileOptions};

/// Every event decoded from `data` (any bytes), checked.
pub fn decode_value(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    decode_value_into(text, &mut |d| {
        if let Ok(ev) = d {
            check_event(ev, &[], true);
        }
    });
}

/// `data` as a whole input file (lines, gzip, envelopes), read by [`InputReader`] with a
/// small line limit, every event checked.
pub fn input_file(data: &[u8], path: &std::path::Path) {
    let Ok(mut file) = std::fs::File::create(path) else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    drop(file);
    let reader = InputReader {
        max_line_bytes: 64 * 1024,
        ..InputReader::default()
    };
    let mut stats = DecodeStats::default();
    reader.read(
        &Input::File(path.to_path_buf()),
        &mut stats,
        &mut |ev| check_event(ev, &[], true),
        &mut |_| {},
    );
}

/// The envelopes of `envelope.rs` and `gke.rs` around `data`: the first byte picks a shape,
/// the rest is what it wraps (an event's text, or anything).
pub fn envelope(data: &[u8]) {
    let (&shape, rest) = data.split_first().unwrap_or((&0, &[]));
    let inner = String::from_utf8_lossy(rest);
    let text = wrap(shape, &inner);
    decode_value(text.as_bytes());
}

fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn wrap(shape: u8, inner: &str) -> String {
    let s = json_str(inner);
    let payload = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/aws/eks/c/cluster","logStream":"kube-apiserver-audit-1","subscriptionFilters":["f"],"logEvents":[{{"id":"1","timestamp":1,"message":{s}}},{{"id":"2","timestamp":2,"message":{s}}}]}}"#
    );
    match shape % 12 {
        0 => inner.to_string(),
        1 => format!(r#"{{"logStreamName":"kube-apiserver-audit-1","timestamp":1,"message":{s}}}"#),
        2 => {
            format!(r#"{{"events":[{{"logStreamName":"kube-apiserver-audit-1","@message":{s}}}]}}"#)
        }
        3 => payload,
        4 => gzip_base64(payload.as_bytes()),
        5 => format!(
            r#"{{"awslogs":{{"data":{}}}}}"#,
            json_str(&gzip_base64(payload.as_bytes()))
        ),
        6 => format!("{payload}{payload}"),
        7 => format!(r#"{{"records":[{{"category":"kube-audit","properties":{{"log":{s}}}}}]}}"#),
        8 => format!(r#"{{"category":"kube-audit-admin","properties":{{"log":{inner}}}}}"#),
        9 => format!(
            r#"{{"insertId":"i","protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"k8s.io","methodName":"io.k8s.core.v1.secrets.create","resourceName":"core/v1/namespaces/ns/secrets/s","request":{inner}}}}}"#
        ),
        10 => format!(r#"{{"protoPayload":{inner}}}"#),
        _ => format!("[{inner},{s}]"),
    }
}

fn gzip_base64(data: &[u8]) -> String {
    use base64::Engine as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(data);
    let bytes = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The checks on one decoded event; `planted` secrets must not be in its redacted forms.
/// `value_path`: also check `redact_event`, the redaction of a parsed value (tests' reference;
/// the daemon and `scan` redact the text). A parsed value keeps only the last of a repeated
/// key, so it cannot see the repeats that make redaction fail closed: that check needs input
/// without them.
fn check_event(ev: &Event<'_>, planted: &[String], value_path: bool) {
    let (out, redacted) = redacted_event_json(ev);
    let text = std::str::from_utf8(&out).expect("redacted event is UTF-8");
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        // serde_json's own nesting limit (128) is lower than the decoder's.
        Err(e) if e.to_string().contains("recursion limit") => return,
        Err(e) => panic!("redacted event is not JSON ({e}): {text}"),
    };
    if redacted.complete {
        assert_ne!(value, Value::Null, "complete redaction wrote null");
    }
    assert_no_secret("write_redacted_event", &value, text, planted);
    if let Some(mut whole) = ev.whole().cloned().filter(|_| value_path) {
        redact_event(&mut whole);
        let text = whole.to_string();
        assert_no_secret("redact_event", &whole, &text, planted);
    }
}

fn assert_no_secret(path: &str, value: &Value, text: &str, planted: &[String]) {
    for secret in planted {
        let mut found = text.contains(secret.as_str());
        visit_strings(value, &mut |s| found |= s.contains(secret.as_str()));
        assert!(!found, "{path} left the secret {secret:?} in {text}");
    }
}

fn visit_strings(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| visit_strings(v, f)),
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            f(k);
            visit_strings(v, f);
        }),
        _ => {}
    }
}

/// Every Sigma rule file `data` could be: loading never panics.
pub fn sigma(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = CompileOptions {
        field_mappings: builtin_field_mappings(),
        ruleset: "fuzz".into(),
        ..CompileOptions::default()
    };
    let _ = load_str("fuzz.yml", text, &opts);
}

/// Reads choices from fuzz input bytes; zeros once they run out.
struct Gen<'a> {
    data: &'a [u8],
    n: usize,
}

impl Gen<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.n).copied().unwrap_or(0);
        self.n += 1;
        b
    }
    fn pick(&mut self, n: u8) -> u8 {
        self.byte() % n
    }
    /// A name or filler value: lowercase letters, digits and a few others, never `PLANTED`.
    fn word(&mut self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._/:";
        let len = 1 + self.pick(12) as usize;
        (0..len)
            .map(|_| CHARS[self.byte() as usize % CHARS.len()] as char)
            .collect()
    }
}

/// The options redaction can see, and where the secrets go.
struct Planter<'g, 'a> {
    g: &'g mut Gen<'a>,
    planted: Vec<String>,
    duplicate_keys: bool,
}

impl Planter<'_, '_> {
    /// A new secret value, as it is: letters, digits and `+/=`.
    fn token(&mut self) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
        let len = 4 + self.g.pick(24) as usize;
        let tail: String = (0..len)
            .map(|_| CHARS[self.g.byte() as usize % CHARS.len()] as char)
            .collect();
        let s = format!("PLANTED-{}-{tail}", self.planted.len());
        self.planted.push(s.clone());
        s
    }

    /// A new secret value as JSON string text, sometimes with `\u` escapes.
    fn secret(&mut self) -> String {
        let s = self.token();
        let escape = self.g.pick(4) == 0;
        let mut out = String::from('"');
        for c in s.chars() {
            if escape && c.is_ascii_alphabetic() {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push(c);
            }
        }
        out.push('"');
        out
    }

    fn map_of_secrets(&mut self) -> String {
        let n = 1 + self.g.pick(4);
        let mut members = Vec::new();
        for _ in 0..n {
            let key = json_str(&self.g.word());
            let secret = self.secret();
            members.push(format!("{key}:{secret}"));
            if self.duplicate_keys && self.g.pick(3) == 0 {
                let secret = self.secret();
                members.push(format!("{key}:{secret}"));
            }
        }
        format!("{{{}}}", members.join(","))
    }

    fn filler(&mut self) -> String {
        match self.g.pick(4) {
            0 => "null".into(),
            1 => format!("{}", self.g.byte()),
            2 => format!(r#"{{"{}":"{}"}}"#, self.g.word(), self.g.word()),
            _ => json_str(&self.g.word()),
        }
    }

    /// A Secret object (`kind` given or not), with `data` and/or `stringData`.
    fn secret_object(&mut self, kind: bool) -> String {
        let mut members = Vec::new();
        if kind {
            if self.duplicate_keys && self.g.pick(2) == 0 {
                // The same member twice: whichever a reader keeps, the data is a Secret's.
                let other = json_str(&self.g.word());
                if self.g.pick(2) == 0 {
                    members.push(format!(r#""kind":"Secret","kind":{other}"#));
                } else {
                    members.push(format!(r#""kind":{other},"kind":"Secret""#));
                }
            } else {
                members.push(r#""kind":"Secret""#.to_string());
            }
            members.push(r#""apiVersion":"v1""#.to_string());
        }
        members.push(format!(
            r#""metadata":{{"name":{},"namespace":"ns"}}"#,
            json_str(&self.g.word())
        ));
        match self.g.pick(3) {
            0 => members.push(format!(r#""data":{}"#, self.map_of_secrets())),
            1 => members.push(format!(r#""stringData":{}"#, self.map_of_secrets())),
            _ => {
                members.push(format!(r#""data":{}"#, self.map_of_secrets()));
                members.push(format!(r#""stringData":{}"#, self.map_of_secrets()));
            }
        }
        if self.g.pick(2) == 0 {
            let f = self.filler();
            members.push(format!(r#""type":{f}"#));
        }
        // Shuffle a little: rotate by a chosen amount.
        let len = members.len();
        let k = self.g.pick(len as u8) as usize;
        members.rotate_left(k);
        format!("{{{}}}", members.join(","))
    }
}

/// An audit event with known secrets planted where redaction must find them, built from
/// `data`; checks that no planted secret survives. With `duplicate_keys`, members of a Secret
/// may repeat (`"kind":"Secret","kind":"ConfigMap"`, a `data` key twice).
pub fn redact(data: &[u8], duplicate_keys: bool) {
    let mut g = Gen { data, n: 0 };
    let mut p = Planter {
        g: &mut g,
        planted: Vec::new(),
        duplicate_keys,
    };
    let mut verb =
        ["get", "create", "update", "list", "watch", "delete"][p.g.pick(6) as usize].to_string();
    let mut resource = ["secrets", "configmaps", "pods", ""][p.g.pick(4) as usize].to_string();
    let mut subresource = String::new();
    let mut members = Vec::new();
    let mut annotations = vec![(json_str("authorization.k8s.io/decision"), json_str("allow"))];
    let mut uri = format!("/api/v1/namespaces/ns/{resource}");
    let shapes = 1 + p.g.pick(3);
    // The resource (and subresource) a shape needs, once one needed it: a later shape that
    // needs another is left out.
    let mut bound: Option<&str> = None;
    let mut bind = |resource: &mut String, want: &'static str| {
        if bound.is_some_and(|b| b != want) {
            return false;
        }
        bound = Some(want);
        *resource = want.to_string();
        true
    };
    let body_key = |p: &mut Planter<'_, '_>| {
        if p.g.pick(2) == 0 {
            "requestObject"
        } else {
            "responseObject"
        }
    };
    for _ in 0..shapes {
        let mut shape = p.g.pick(11);
        let want = match shape {
            1 | 2 | 4 => Some("secrets"),
            5 => Some("tokenreviews"),
            6 => Some("serviceaccounts"),
            _ => None,
        };
        if want.is_some_and(|w| !bind(&mut resource, w)) {
            shape = 10;
        }
        match shape {
            0 => {
                let key = body_key(&mut p);
                members.push(format!(r#""{key}":{}"#, p.secret_object(true)));
            }
            1 => {
                let key = body_key(&mut p);
                members.push(format!(r#""{key}":{}"#, p.secret_object(false)));
            }
            2 => {
                let n = 1 + p.g.pick(3);
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        let kind = p.g.pick(2) == 0;
                        p.secret_object(kind)
                    })
                    .collect();
                let list = if p.g.pick(2) == 0 {
                    "SecretList"
                } else {
                    "List"
                };
                members.push(format!(
                    r#""responseObject":{{"kind":"{list}","apiVersion":"v1","items":[{}]}}"#,
                    items.join(",")
                ));
            }
            3 => {
                let inner = p.secret_object(true);
                let config = json_str(&inner);
                members.push(format!(
                    r#""requestObject":{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"s","annotations":{{"kubectl.kubernetes.io/last-applied-configuration":{config}}}}}}}"#
                ));
            }
            4 => {
                verb = "patch".into();
                let a = p.secret();
                let b = p.secret();
                let w = json_str(&p.g.word());
                members.push(match p.g.pick(3) {
                    0 => format!(r#""requestObject":{{"data":{{{w}:{a}}},"stringData":{{"x":{b}}}}}"#),
                    1 => format!(
                        r#""requestObject":[{{"op":"replace","path":"/data/x","value":{a}}},{{"op":"add","path":"/data/y","value":{{"z":{b}}}}}]"#
                    ),
                    _ => format!(r#""requestObject":{{"metadata":{{"labels":{{{w}:{a}}}}},"x":[{b}]}}"#),
                });
            }
            5 => {
                let k = if p.g.pick(2) == 0 { "spec" } else { "status" };
                let t = p.secret();
                let key = body_key(&mut p);
                members.push(format!(
                    r#""{key}":{{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","{k}":{{"token":{t}}}}}"#
                ));
            }
            6 => {
                subresource = "token".into();
                let t = p.secret();
                members.push(format!(
                    r#""responseObject":{{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","status":{{"token":{t}}}}}"#
                ));
            }
            7 => {
                let t = p.token();
                let key = json_str(&p.g.word());
                let scheme = ["Bearer", "bearer", "BEARER"][p.g.pick(3) as usize];
                let before = p.g.word();
                annotations.push((key, json_str(&format!("{before} {scheme} {t}"))));
            }
            8 => {
                let t = p.token();
                let param =
                    ["access_token", "token", "id_token", "refresh_token"][p.g.pick(4) as usize];
                let w = p.g.word();
                uri = format!("{uri}?{w}=1&{param}={t}&watch=true");
            }
            9 => {
                // A generic List whose items include a Secret.
                let s = p.secret_object(true);
                members.push(format!(
                    r#""responseObject":{{"kind":"List","items":[{{"kind":"ConfigMap","data":{{"a":"b"}}}},{s}]}}"#
                ));
            }
            _ => {
                let f = p.filler();
                let w = p.g.word();
                members.push(format!(r#""x-{w}":{f}"#));
            }
        }
    }
    let mut object_ref = format!(r#""resource":{},"namespace":"ns""#, json_str(&resource));
    if !subresource.is_empty() {
        object_ref.push_str(&format!(r#","subresource":{}"#, json_str(&subresource)));
    }
    let annotations: Vec<String> = annotations
        .into_iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let mut event = vec![
        r#""kind":"Event""#.to_string(),
        r#""apiVersion":"audit.k8s.io/v1""#.to_string(),
        r#""level":"RequestResponse""#.to_string(),
        format!(r#""auditID":"{}""#, p.g.word()),
        r#""stage":"ResponseComplete""#.to_string(),
        format!(r#""requestURI":{}"#, json_str(&uri)),
        format!(r#""verb":{}"#, json_str(&verb)),
        r#""user":{"username":"u","groups":["system:authenticated"]}"#.to_string(),
        format!("\"objectRef\":{{{object_ref}}}"),
        format!("\"annotations\":{{{}}}", annotations.join(",")),
    ];
    // The decoder refuses an event with a repeated member: the first of each is kept.
    for m in members {
        let key = m.split("\":").next().unwrap_or_default().to_string();
        if !event.iter().any(|e| e.starts_with(&format!("{key}\":"))) {
            event.push(m);
        }
    }
    let k = p.g.pick(event.len() as u8) as usize;
    event.rotate_left(k);
    let text = format!("{{{}}}", event.join(","));
    let planted = p.planted;
    let mut n = 0;
    decode_value_into(&text, &mut |d| match d {
        Ok(ev) => {
            n += 1;
            check_event(ev, &planted, !duplicate_keys);
        }
        Err(e) => panic!("generated event did not decode: {e:?}: {text}"),
    });
    assert_eq!(n, 1, "generated event decoded to {n} events: {text}");
}
