//! The benchmarks' corpus recipe, shared by `engine` and `daemon`: real events repeated up to a
//! size, each with a distinct `auditID` and, for non-system users, one of 97 user-name
//! variants, so that throttling and the first-seen rules see the variety of a cluster rather
//! than one event folded into one alert (about 2% of Metadata events alert).

use serde_json::Value;

/// Repeats the seed events up to `size` bytes of JSON lines. `metadata_only`: without their
/// bodies, at `level: Metadata` (about 1.1 KB each); otherwise as they are (RequestResponse
/// events with their bodies, about 6 KB each).
pub fn build_corpus(seed: &[Value], metadata_only: bool, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + (1 << 20));
    let mut n = 0u64;
    while out.len() < size {
        for ev in seed {
            let mut ev = ev.clone();
            if let Some(obj) = ev.as_object_mut() {
                obj.insert("auditID".into(), Value::String(format!("bench-{n:016x}")));
                if metadata_only {
                    obj.remove("requestObject");
                    obj.remove("responseObject");
                    obj.insert("level".into(), Value::String("Metadata".into()));
                }
                if let Some(Value::Object(user)) = obj.get_mut("user") {
                    if let Some(Value::String(name)) = user.get_mut("username") {
                        if !name.starts_with("system:") {
                            name.push_str(&format!("-{}", n % 97));
                        }
                    }
                }
            }
            serde_json::to_writer(&mut out, &ev).expect("writing to a Vec");
            out.push(b'\n');
            n += 1;
        }
    }
    out
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
        let end = if read == 0 { filled } else { filled + read };
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
