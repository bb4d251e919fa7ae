//! The benchmarks' corpus recipe, shared by `engine` and `daemon`: real events repeated up to a
//! size, each with a distinct `auditID` and, for non-system users, one of 97 user-name
//! variants, so that throttling and the first-seen rules see the variety of a cluster rather
//! than one event folded into one alert (about 2% of Metadata events alert). Each event keeps
//! its members in the order the API server wrote them (Go's encoder writes a struct's fields
//! in order), as every real audit log has them.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// Repeats the seed events (JSON lines; lines that are not objects are skipped) up to `size`
/// bytes of JSON lines. `metadata_only`: without their bodies, at `level: Metadata` (about
/// 1.1 KB each); otherwise as they are (RequestResponse events with their bodies, about 6 KB
/// each).
pub fn build_corpus(seed: &[String], metadata_only: bool, size: usize) -> Vec<u8> {
    let seed: Vec<Ordered> = seed
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!seed.is_empty(), "no seed events");
    let json = |v: &str| serde_json::to_string(v).expect("a string is JSON");
    let mut out = Vec::with_capacity(size + (1 << 20));
    let mut n = 0u64;
    while out.len() < size {
        for ev in &seed {
            let mut ev = ev.clone();
            ev.set("auditID", json(&format!("bench-{n:016x}")));
            if metadata_only {
                ev.remove("requestObject");
                ev.remove("responseObject");
                ev.set("level", json("Metadata"));
            }
            let user = ev
                .get("user")
                .and_then(|u| serde_json::from_str::<Ordered>(u.get()).ok());
            if let Some(mut user) = user {
                let name = user
                    .get("username")
                    .and_then(|u| serde_json::from_str::<String>(u.get()).ok());
                if let Some(name) = name.filter(|n| !n.starts_with("system:")) {
                    user.set("username", json(&format!("{name}-{}", n % 97)));
                    ev.set("user", serde_json::to_string(&user).expect("JSON"));
                }
            }
            serde_json::to_writer(&mut out, &ev).expect("writing to a Vec");
            out.push(b'\n');
            n += 1;
        }
    }
    out
}

/// A JSON object with its members in the order written (`serde_json::Map` sorts them).
#[derive(Clone)]
struct Ordered(Vec<(String, Box<RawValue>)>);

impl Ordered {
    fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Replaces the member's value in its place (or adds it at the end) with `json`.
    fn set(&mut self, key: &str, json: String) {
        let value = RawValue::from_string(json).expect("valid JSON");
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Ordered(members))
            }
        }
        d.deserialize_map(Members)
    }
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The floor a scan is compared with: `serde_json::from_slice::<IgnoredAny>` over each line of
/// the file at `path`, read in 1 MiB blocks as `tripline scan` reads; returns the number of
/// valid lines. The benchmark runs it as a process of its own (the benchmark binary started
/// again with `TRIPLINE_BENCH_VALIDATE=<path>`), so that both sides are whole processes.
pub fn validate_lines(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut filled, mut valid) = (0usize, 0u64);
    loop {
        if filled == buf.len() {
            // A line longer than the buffer: grow it.
            buf.resize(buf.len() * 2, 0);
        }
        let read = file.read(&mut buf[filled..])?;
        let end = filled + read;
        // Whole lines only, unless the file ended.
        let upto = if read == 0 {
            end
        } else {
            match memchr::memrchr(b'\n', &buf[..end]) {
                Some(nl) => nl + 1,
                None => {
                    filled = end;
                    continue;
                }
            }
        };
        for line in buf[..upto].split(|&b| b == b'\n') {
            if !line.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
                valid += 1;
            }
        }
        if read == 0 {
            return Ok(valid);
        }
        buf.copy_within(upto..end, 0);
        filled = end - upto;
    }
}
