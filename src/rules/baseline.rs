//! First-seen ("new terms") baselines: the state behind a rule's `first_seen` extension.
//!
//! A rule with `first_seen: {fields, normalize, history, learning}` alerts only when its
//! detection matches an event whose *key* is new to the rule's baseline:
//!
//! - The key is the values of the 1 to 3 `fields` in the event (several values of one field
//!   joined with `,`), each value normalised as `normalize` says for its field:
//!   `product_major` (a user agent's product and major version, lowercased:
//!   `kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819` -> `kubectl/1`, `Go-http-client/2.0` ->
//!   `go-http-client/2`; a product without a version stays its lowercased product), `network`
//!   (an IPv4 address's /24, an IPv6 address's /64; a value that is not an address stays as it
//!   is) or `lowercase`. An event that lacks one of the fields, or has no time
//!   ([`Event::time`]), neither alerts nor is learned.
//! - The baseline stores a 128-bit hash of the key (BLAKE3, stable across runs so that it can
//!   be persisted; not the text) and the event time it was last seen. A key seen within
//!   `history` before the event time is known: its last-seen time moves forward, no alert.
//!   Otherwise the key is recorded, and the event alerts only if its time is at least
//!   `learning` after the baseline's start (the earliest event time the baseline saw, kept
//!   with it). Everything runs on event time, so `tripline scan` over days of logs passes the
//!   learning period as the daemon would.
//! - The check runs before the rule's throttling: a first-seen alert that throttling then
//!   suppresses is still learned. Rules without `first_seen` never reach this module.
//! - A baseline holds at most `max_entries` keys (default [`DEFAULT_MAX_ENTRIES`]); when full,
//!   keys not seen within `history` are dropped first, then the least recently seen sixteenth
//!   (counted in [`Baselines::evictions`]). An entry costs [`ENTRY_BYTES`] bytes in the table,
//!   about 33 bytes per key with the table's spare room at 100,000 keys.
//!
//! [`Baselines`] holds the baselines of a rule set, each keyed by rule id and
//! [`FirstSeenSpec::digest`]: the daemon's workers share one store, it survives reloads for
//! rules whose id and `first_seen` are unchanged (others start empty), and the daemon keeps it in
//! `state_dir/baselines.json` ([`Baselines::store`], [`Baselines::load_or_set_aside`]).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::model::{FirstSeenSpec, Normalize};
use super::Rule;
use crate::event::{Event, FieldValue};

/// The default bound on the keys of one rule's baseline.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// The format of `baselines.json` this release writes and reads.
pub const BASELINES_VERSION: u32 = 1;

/// The file name of the daemon's baselines in its state directory.
pub const BASELINES_FILE: &str = "baselines.json";

/// A key's hash, as two words (a `u128` would make entries 16-byte aligned, 32 bytes each).
type Key = (u64, u64);

/// Bytes of one entry in a baseline's table (key hash and last-seen time), before the table's
/// control byte and spare room.
pub const ENTRY_BYTES: usize = std::mem::size_of::<(Key, i64)>();

type Table = HashMap<Key, i64, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>;

/// One rule's baseline, as the rule set and the store share it.
pub type SharedBaseline = Arc<Mutex<Baseline>>;

/// The baseline of one rule.
#[derive(Debug, Default)]
pub struct Baseline {
    /// The earliest event time seen (unix seconds).
    start: Option<i64>,
    /// Key hash -> last-seen event time (unix seconds).
    seen: Table,
    evictions: u64,
    max_entries: usize,
    /// A key was added or removed, or the start moved, since the last [`Baselines::encode`]:
    /// the next snapshot must write the store (a checkpoint must not pass an event whose key
    /// the file does not have).
    dirty: bool,
    /// Only last-seen times moved since the last [`Baselines::encode`]: written at most every
    /// [`TIMES_WRITE_INTERVAL`], since they only move the `history` boundary.
    times_moved: bool,
}

/// How long last-seen times alone may wait to be written: after a crash a key's history may
/// end up to this much earlier than without the crash.
pub const TIMES_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl Baseline {
    /// Records `key` seen at `time` (unix seconds); true if and only if the event alerts: the
    /// key was not seen within `history` and the learning period is over.
    pub fn observe(&mut self, key: (u64, u64), time: i64, spec: &FirstSeenSpec) -> bool {
        let history = i64::try_from(spec.history.as_secs()).unwrap_or(i64::MAX);
        let learning = i64::try_from(spec.learning.as_secs()).unwrap_or(i64::MAX);
        let start = self.start.map_or(time, |s| s.min(time));
        if self.start != Some(start) {
            self.start = Some(start);
            self.dirty = true;
        }
        if let Some(last) = self.seen.get_mut(&key) {
            // Known: seen within `history`, or later than this event (out of order).
            if time.saturating_sub(*last) <= history {
                if time > *last {
                    *last = time;
                    self.times_moved = true;
                }
                return false;
            }
            *last = time;
            self.times_moved = true;
        } else {
            self.dirty = true;
            if self.seen.len() >= self.max_entries.max(1) {
                self.make_room(time, history);
            }
            self.seen.insert(key, time);
        }
        time.saturating_sub(start) >= learning
    }

    /// Drops keys not seen within `history` of `now`; if that frees nothing, the least recently
    /// seen sixteenth (at least one), counted as evictions.
    fn make_room(&mut self, now: i64, history: i64) {
        let before = self.seen.len();
        self.seen
            .retain(|_, last| now.saturating_sub(*last) <= history);
        if self.seen.len() < before {
            return;
        }
        let n = (self.seen.len() / 16).max(1);
        let mut by_age: Vec<(i64, Key)> = self.seen.iter().map(|(k, t)| (*t, *k)).collect();
        by_age.select_nth_unstable(n - 1);
        for (_, k) in &by_age[..n] {
            self.seen.remove(k);
        }
        self.evictions += n as u64;
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The most keys one thread's memo of [`key_of`] holds; a full memo starts over empty.
pub const KEY_MEMO_ENTRIES: usize = 1024;

/// The longest raw text of a key the memo keeps (bytes): a thread's memo stays under about
/// half a megabyte whatever the events hold; longer keys are hashed each time.
pub const KEY_MEMO_TEXT_BYTES: usize = 512;

/// One thread's memo of [`key_of`]: the raw text of a key's values ([`raw_key_text`]) -> the
/// key's hash. Looked up by the exact text, so a hit is always the hash [`key_of_direct`] gives.
#[derive(Debug, Default)]
struct KeyMemo {
    keys: HashMap<Box<[u8]>, Key, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>,
    /// The raw text of the event at hand (kept to reuse its allocation).
    text: Vec<u8>,
}

thread_local! {
    static KEY_MEMO: std::cell::RefCell<KeyMemo> = std::cell::RefCell::default();
}

/// The hash of `spec`'s key in `ev`; `None` when a field is missing. The same as
/// [`key_of_direct`], memoised per thread: an identity and client seen again (most requests)
/// skip the normalisation and the hash.
pub fn key_of(spec: &FirstSeenSpec, ev: &Event<'_>) -> Option<(u64, u64)> {
    let memoised = KEY_MEMO.try_with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return key_of_direct(spec, ev);
        };
        let KeyMemo { keys, text } = &mut *memo;
        text.clear();
        if !raw_key_text(spec, ev, text) {
            return None;
        }
        if text.len() > KEY_MEMO_TEXT_BYTES {
            if text.capacity() > 4 * KEY_MEMO_TEXT_BYTES {
                *text = Vec::new();
            }
            return key_of_direct(spec, ev);
        }
        if let Some(key) = keys.get(text.as_slice()) {
            return Some(*key);
        }
        let key = key_of_direct(spec, ev)?;
        if keys.len() >= KEY_MEMO_ENTRIES {
            keys.clear();
        }
        keys.insert(text.as_slice().into(), key);
        Some(key)
    });
    // The thread is exiting (its memo is gone): hash directly.
    memoised.unwrap_or_else(|_| key_of_direct(spec, ev))
}

/// Writes what [`key_of_direct`] hashes before normalising to `out`: per field, its
/// normalisation's tag byte, its values' text separated by `0xfe`, then `0xff` (bytes UTF-8
/// never contains, so two events have the same text only if they have the same values, and
/// then the same key). False when a field is missing.
fn raw_key_text(spec: &FirstSeenSpec, ev: &Event<'_>, out: &mut Vec<u8>) -> bool {
    use std::io::Write as _;
    // A field's text starts with its tag byte (0 to 3): the cluster's, with 0xfd.
    if let Some(cluster) = ev.cluster() {
        out.push(0xfd);
        out.extend_from_slice(cluster.as_bytes());
        out.push(0xfd);
    }
    for f in &spec.fields {
        out.push(match f.normalize {
            None => 0,
            Some(Normalize::Lowercase) => 1,
            Some(Normalize::ProductMajor) => 2,
            Some(Normalize::Network) => 3,
        });
        let mut n = 0usize;
        ev.any_value(&f.field, &mut |v| {
            if matches!(v, FieldValue::Null | FieldValue::Object) {
                return false;
            }
            if n > 0 {
                out.push(0xfe);
            }
            n += 1;
            // Writing to a Vec cannot fail.
            let _ = match v {
                FieldValue::Str(s) => out.write_all(s.as_bytes()),
                FieldValue::Int(i) => write!(out, "{i}"),
                FieldValue::Float(x) => write!(out, "{x}"),
                FieldValue::Bool(b) => write!(out, "{b}"),
                FieldValue::Null | FieldValue::Object => Ok(()),
            };
            false
        });
        if n == 0 {
            return false;
        }
        out.push(0xff);
    }
    true
}

/// The hash of `spec`'s key in `ev`, computed from the event; `None` when a field is missing.
/// The hash is persisted (`baselines.json`): it must not change between releases. An event
/// with a [`Event::cluster`] hashes it first, closed by a byte UTF-8 never contains: one
/// cluster's key is never another's, and an event without one keeps the key it always had.
pub fn key_of_direct(spec: &FirstSeenSpec, ev: &Event<'_>) -> Option<(u64, u64)> {
    let mut h = blake3::Hasher::new();
    if let Some(cluster) = ev.cluster() {
        h.update(&[0xfd]);
        h.update(cluster.as_bytes());
        h.update(&[0xfd]);
    }
    for f in &spec.fields {
        let mut n = 0usize;
        ev.any_value(&f.field, &mut |v| {
            let text = match v {
                FieldValue::Str(s) => std::borrow::Cow::Borrowed(s),
                FieldValue::Int(i) => i.to_string().into(),
                FieldValue::Float(x) => x.to_string().into(),
                FieldValue::Bool(b) => b.to_string().into(),
                FieldValue::Null | FieldValue::Object => return false,
            };
            if n > 0 {
                h.update(b",");
            }
            n += 1;
            match f.normalize {
                None => h.update(text.as_bytes()),
                Some(how) => h.update(normalize(Some(how), &text).as_bytes()),
            };
            false
        });
        if n == 0 {
            return None;
        }
        // A byte UTF-8 never contains closes each field.
        h.update(&[0xff]);
    }
    let b = h.finalize();
    let b = b.as_bytes();
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    Some((word(0), word(8)))
}

/// `value` normalised as `how` says.
pub fn normalize(how: Option<Normalize>, value: &str) -> String {
    match how {
        None => value.to_string(),
        Some(Normalize::Lowercase) => value.to_lowercase(),
        Some(Normalize::ProductMajor) => product_major(value),
        Some(Normalize::Network) => network(value),
    }
}

/// `kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819` -> `kubectl/1`.
fn product_major(ua: &str) -> String {
    let first = ua.split_whitespace().next().unwrap_or("");
    let (product, version) = first.split_once('/').unwrap_or((first, ""));
    let version = version.trim_start_matches(['v', 'V']);
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    if major.is_empty() {
        product.to_lowercase()
    } else {
        format!("{}/{major}", product.to_lowercase())
    }
}

/// An IPv4 address's /24 or an IPv6 address's /64; anything else as it is.
fn network(value: &str) -> String {
    match value.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => ipnet::Ipv4Net::new(a, 24)
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| value.to_string()),
        Ok(std::net::IpAddr::V6(a)) => ipnet::Ipv6Net::new(a, 64)
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| value.to_string()),
        Err(_) => value.to_string(),
    }
}

/// The baselines of a rule set, by rule id and `first_seen` digest. Shared by the daemon's
/// workers; each baseline has its own lock, taken only when its rule matches.
#[derive(Debug, Default)]
pub struct Baselines {
    by_rule: Mutex<HashMap<(String, u64), SharedBaseline>>,
    /// When [`Baselines::encode`] last ran (`None`: never).
    encoded: Mutex<Option<std::time::Instant>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("reading baselines {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("baselines {path} are corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("baselines {path} have format version {version}; this release reads version {BASELINES_VERSION}")]
    UnknownVersion { path: PathBuf, version: u32 },
    #[error("writing baselines {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// `baselines.json`.
#[derive(Debug, Serialize, Deserialize)]
struct BaselinesFile {
    version: u32,
    baselines: Vec<BaselineRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BaselineRecord {
    rule: String,
    /// [`FirstSeenSpec::digest`], in hex.
    spec: String,
    start: Option<i64>,
    evictions: u64,
    /// (key hash in hex, last seen in unix seconds).
    keys: Vec<(String, i64)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker that panicked holding a lock left the baseline consistent (each step keeps the
    // table valid): keep using it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Baselines {
    /// The baseline of each rule of `rules` that has `first_seen` (by index, `None` for the
    /// others), created empty where the store has none for its id and spec. Baselines of rules
    /// not in `rules` (removed, or their `first_seen` changed) are dropped.
    pub fn attach(&self, rules: &[Rule]) -> Vec<Option<SharedBaseline>> {
        let mut by_rule = lock(&self.by_rule);
        let mut kept = HashMap::new();
        let out = rules
            .iter()
            .map(|r| {
                let spec = r.first_seen.as_ref()?;
                let key = (r.meta.id.clone(), spec.digest());
                let b = by_rule
                    .remove(&key)
                    .or_else(|| kept.get(&key).cloned())
                    .unwrap_or_default();
                lock(&b).max_entries = spec.max_entries;
                kept.insert(key, b.clone());
                Some(b)
            })
            .collect();
        *by_rule = kept;
        out
    }

    /// Keys held, all baselines together.
    pub fn entries(&self) -> usize {
        lock(&self.by_rule).values().map(|b| lock(b).len()).sum()
    }

    /// Keys evicted to keep baselines within their bound, all baselines together.
    pub fn evictions(&self) -> u64 {
        lock(&self.by_rule)
            .values()
            .map(|b| lock(b).evictions)
            .sum()
    }

    /// True if and only if the store should be written: a key was added or removed since
    /// the last [`Baselines::encode`], or last-seen times moved and the last write is more than
    /// [`TIMES_WRITE_INTERVAL`] old.
    pub fn changed(&self) -> bool {
        let times_due = lock(&self.encoded).is_none_or(|t| t.elapsed() >= TIMES_WRITE_INTERVAL);
        lock(&self.by_rule).values().any(|b| {
            let b = lock(b);
            b.dirty || (times_due && b.times_moved)
        })
    }

    /// Reads `path`; an absent file is an empty store.
    pub fn load(path: &Path) -> Result<Baselines, BaselineError> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Baselines::default()),
            Err(source) => {
                return Err(BaselineError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Baselines::decode(&text, path)
    }

    /// The store [`Baselines::encode`] wrote as `text`; `path` names where it was read from,
    /// for the errors.
    pub fn decode(text: &[u8], path: &Path) -> Result<Baselines, BaselineError> {
        let corrupt = |message: String| BaselineError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        // The version first, so that a newer format is reported as such.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } =
            serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
        if version != BASELINES_VERSION {
            return Err(BaselineError::UnknownVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let file: BaselinesFile =
            serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
        let mut by_rule = HashMap::new();
        for r in file.baselines {
            let spec = u64::from_str_radix(&r.spec, 16)
                .map_err(|_| corrupt(format!("rule {}: bad spec `{}`", r.rule, r.spec)))?;
            let mut seen = Table::default();
            seen.reserve(r.keys.len());
            for (k, t) in r.keys {
                let parsed = (k.len() == 32)
                    .then(|| {
                        Some((
                            u64::from_str_radix(k.get(..16)?, 16).ok()?,
                            u64::from_str_radix(k.get(16..)?, 16).ok()?,
                        ))
                    })
                    .flatten();
                let key =
                    parsed.ok_or_else(|| corrupt(format!("rule {}: bad key `{k}`", r.rule)))?;
                seen.insert(key, t);
            }
            let b = Baseline {
                start: r.start,
                seen,
                evictions: r.evictions,
                max_entries: DEFAULT_MAX_ENTRIES,
                dirty: false,
                times_moved: false,
            };
            by_rule.insert((r.rule, spec), Arc::new(Mutex::new(b)));
        }
        Ok(Baselines {
            by_rule: Mutex::new(by_rule),
            encoded: Mutex::new(None),
        })
    }

    /// [`Baselines::load`] of `state_dir/baselines.json`; a file that cannot be used (corrupt,
    /// unknown version, unreadable) is moved aside to `baselines.json.unreadable-<unix time>`
    /// with a warning, and the store starts empty. Never fails.
    pub fn load_or_set_aside(state_dir: &Path) -> Baselines {
        let path = state_dir.join(BASELINES_FILE);
        match Baselines::load(&path) {
            Ok(b) => b,
            Err(error) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = state_dir.join(format!("{BASELINES_FILE}.unreadable-{now}"));
                match fs::rename(&path, &aside) {
                    Ok(()) => tracing::warn!(
                        %error,
                        moved_to = %aside.display(),
                        "first-seen baselines cannot be read: moved aside, starting with empty baselines"
                    ),
                    Err(e) => tracing::warn!(
                        %error,
                        move_error = %e,
                        "first-seen baselines cannot be read nor moved aside: starting with empty baselines"
                    ),
                }
                Baselines::default()
            }
        }
    }

    /// Writes the store to `path` atomically (temp file, fsync, rename, fsync of the directory):
    /// a crash leaves the old or the new file, never a torn one.
    pub fn store(&self, path: &Path) -> Result<(), BaselineError> {
        let err = |source| BaselineError::Write {
            path: path.to_path_buf(),
            source,
        };
        let body = self.encode().map_err(|e| err(e.into()))?;
        crate::fsutil::write_atomically(path, &body).map_err(err)
    }

    /// The store as the text of `baselines.json`; marks every baseline as written.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        *lock(&self.encoded) = Some(std::time::Instant::now());
        let baselines = {
            let by_rule = lock(&self.by_rule);
            by_rule
                .iter()
                .map(|((rule, spec), b)| {
                    let mut b = lock(b);
                    b.dirty = false;
                    b.times_moved = false;
                    BaselineRecord {
                        rule: rule.clone(),
                        spec: format!("{spec:016x}"),
                        start: b.start,
                        evictions: b.evictions,
                        keys: b
                            .seen
                            .iter()
                            .map(|((a, c), t)| (format!("{a:016x}{c:016x}"), *t))
                            .collect(),
                    }
                })
                .collect()
        };
        serde_json::to_vec(&BaselinesFile {
            version: BASELINES_VERSION,
            baselines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(history_days: u64, learning_days: u64, max: usize) -> FirstSeenSpec {
        FirstSeenSpec {
            fields: Vec::new(),
            history: Duration::from_secs(history_days * 86400),
            learning: Duration::from_secs(learning_days * 86400),
            max_entries: max,
        }
    }

    const DAY: i64 = 86400;

    #[test]
    fn a_new_key_must_be_written_at_the_next_snapshot_and_moved_times_only_every_interval() {
        let store = Baselines::default();
        let b: SharedBaseline = Arc::default();
        lock(&b).max_entries = 10;
        lock(&store.by_rule).insert(("r".into(), 1), b.clone());
        let sp = spec(14, 0, 10);
        lock(&b).observe((1, 1), DAY, &sp);
        assert!(store.changed(), "a new key");
        store.encode().unwrap();
        assert!(!store.changed());
        lock(&b).observe((1, 1), DAY + 30, &sp);
        assert!(
            !store.changed(),
            "only a last-seen time moved, just after a write"
        );
        lock(&b).observe((2, 2), DAY + 40, &sp);
        assert!(store.changed(), "another new key");
        store.encode().unwrap();
        *lock(&store.encoded) = Some(std::time::Instant::now() - TIMES_WRITE_INTERVAL);
        lock(&b).observe((1, 1), DAY + 50, &sp);
        assert!(
            store.changed(),
            "moved times are written once the interval has passed"
        );
    }

    #[test]
    fn user_agents_keep_their_product_and_major_version() {
        for (ua, want) in [
            (
                "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
                "kubectl/1",
            ),
            (
                "kubectl/v1.30.0 (darwin/arm64) kubernetes/7c48c2b",
                "kubectl/1",
            ),
            ("Go-http-client/2.0", "go-http-client/2"),
            ("Mozilla/5.0 (X11; Linux x86_64)", "mozilla/5"),
            ("curl/8.5.0", "curl/8"),
            ("kube-probe", "kube-probe"),
            ("Helm/3.14.0", "helm/3"),
            ("python-requests/", "python-requests"),
            ("", ""),
        ] {
            assert_eq!(normalize(Some(Normalize::ProductMajor), ua), want, "{ua}");
        }
    }

    #[test]
    fn addresses_become_their_networks_and_other_values_stay() {
        for (v, want) in [
            ("10.0.3.17", "10.0.3.0/24"),
            ("203.0.113.9", "203.0.113.0/24"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("not-an-ip", "not-an-ip"),
        ] {
            assert_eq!(normalize(Some(Normalize::Network), v), want, "{v}");
        }
        assert_eq!(normalize(Some(Normalize::Lowercase), "AbC"), "abc");
        assert_eq!(normalize(None, "AbC"), "AbC");
    }

    fn field(name: &str, normalize: Option<Normalize>) -> super::super::model::FirstSeenField {
        let path = crate::event::FieldPath::parse(name).unwrap();
        super::super::model::FirstSeenField {
            name: name.into(),
            field: crate::event::FieldRef::resolve(&path),
            normalize,
        }
    }

    fn event(user: &str, ua: &str, ip: &str) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","verb":"get","user":{{"username":"{user}","groups":["g1","g2"]}},"userAgent":"{ua}","sourceIPs":["{ip}"],"responseStatus":{{"code":200}},"stageTimestamp":"2026-12-05T09:12:44.131907Z"}}"#
        )
    }

    /// The memoised key is the direct key, on a miss and on a hit, for normalised and plain
    /// fields, several values of one field, and across specs that read the same values
    /// differently; a missing field is no key either way.
    #[test]
    fn the_memoised_key_is_the_direct_key() {
        let specs = [
            vec![
                field("user.username", None),
                field("userAgent", Some(Normalize::ProductMajor)),
            ],
            vec![field("user.username", None), field("userAgent", None)],
            vec![
                field("userAgent", Some(Normalize::Lowercase)),
                field("sourceIPs", Some(Normalize::Network)),
            ],
            vec![
                field("user.groups", None),
                field("responseStatus.code", None),
            ],
            vec![field("user.username", None), field("objectRef.name", None)],
        ];
        let events = [
            event(
                "system:serviceaccount:shop:cart",
                "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
                "10.0.3.17",
            ),
            event(
                "system:serviceaccount:shop:cart",
                "kubectl/v1.30.0 (darwin/arm64) kubernetes/7c48c2b",
                "10.0.3.99",
            ),
            event("alice", "Go-http-client/2.0", "2001:db8:1:2:3:4:5:6"),
            event("alice", "curl/8.5.0", "not-an-ip"),
        ];
        for fields in specs {
            let s = FirstSeenSpec {
                fields,
                ..spec(14, 7, 10)
            };
            for text in &events {
                let ev = Event::parse(text).unwrap();
                let direct = key_of_direct(&s, &ev);
                assert_eq!(key_of(&s, &ev), direct, "miss: {text}");
                assert_eq!(key_of(&s, &ev), direct, "hit: {text}");
            }
        }
        // A product-major key is shared by upgrades, a plain one is not.
        let s = FirstSeenSpec {
            fields: vec![field("userAgent", Some(Normalize::ProductMajor))],
            ..spec(14, 7, 10)
        };
        let plain = FirstSeenSpec {
            fields: vec![field("userAgent", None)],
            ..spec(14, 7, 10)
        };
        let (a, b) = (
            Event::parse(&events[0]).unwrap(),
            Event::parse(&events[1]).unwrap(),
        );
        assert_eq!(key_of(&s, &a), key_of(&s, &b));
        assert_ne!(key_of(&plain, &a), key_of(&plain, &b));
        assert_ne!(key_of(&s, &a), key_of(&plain, &a));
        // The key of the persisted format: kubectl/1 for a service account.
        let both = FirstSeenSpec {
            fields: vec![
                field("user.username", None),
                field("userAgent", Some(Normalize::ProductMajor)),
            ],
            ..spec(14, 7, 10)
        };
        let mut h = blake3::Hasher::new();
        h.update(b"system:serviceaccount:shop:cart\xffkubectl/1\xff");
        let want = h.finalize();
        let b = want.as_bytes();
        let want = (
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..16].try_into().unwrap()),
        );
        assert_eq!(key_of(&both, &a), Some(want));
    }

    /// An event's cluster is part of its key (memoised or not): two clusters never share a
    /// key, and an event without a cluster keeps the key of the persisted format.
    #[test]
    fn a_cluster_is_part_of_the_key_and_no_cluster_keeps_the_old_key() {
        let s = FirstSeenSpec {
            fields: vec![field("user.username", None)],
            ..spec(14, 7, 10)
        };
        let text = event("alice", "curl/8.5.0", "10.0.3.17");
        let mut keys = Vec::new();
        for cluster in [None, Some("prod-eu"), Some("prod-us"), None] {
            let mut ev = Event::parse(&text).unwrap();
            ev.cluster = cluster.map(std::borrow::Cow::Borrowed);
            let direct = key_of_direct(&s, &ev);
            assert_eq!(key_of(&s, &ev), direct, "miss: {cluster:?}");
            assert_eq!(key_of(&s, &ev), direct, "hit: {cluster:?}");
            keys.push(direct.unwrap());
        }
        assert_eq!(keys[0], keys[3]);
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1], keys[2]);
        let want = blake3::hash(b"alice\xff");
        let b = want.as_bytes();
        let want = (
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..16].try_into().unwrap()),
        );
        assert_eq!(keys[0], want);
    }

    #[test]
    fn the_key_memo_holds_at_most_its_bound() {
        let s = FirstSeenSpec {
            fields: vec![field("user.username", None)],
            ..spec(14, 7, 10)
        };
        let memo_len = || KEY_MEMO.with(|m| m.borrow().keys.len());
        for i in 0..KEY_MEMO_ENTRIES * 3 + 7 {
            let text = event(&format!("user-{i}"), "curl/8.5.0", "10.0.0.1");
            let ev = Event::parse(&text).unwrap();
            assert_eq!(key_of(&s, &ev), key_of_direct(&s, &ev));
            assert!(memo_len() <= KEY_MEMO_ENTRIES, "{}", memo_len());
        }
        assert!(memo_len() > 0);
        // A missing field is neither a key nor remembered.
        let before = memo_len();
        let text = r#"{"kind":"Event","verb":"get","stageTimestamp":"2026-12-05T09:12:44Z"}"#;
        let ev = Event::parse(text).unwrap();
        assert_eq!(key_of(&s, &ev), None);
        assert_eq!(memo_len(), before);
        // Nor is a key longer than the memo keeps; its hash is the direct one.
        let text = event(
            &"u".repeat(KEY_MEMO_TEXT_BYTES * 8),
            "curl/8.5.0",
            "10.0.0.1",
        );
        let ev = Event::parse(&text).unwrap();
        assert_eq!(key_of(&s, &ev), key_of_direct(&s, &ev));
        assert!(key_of(&s, &ev).is_some());
        assert_eq!(memo_len(), before);
        let text_capacity = KEY_MEMO.with(|m| m.borrow().text.capacity());
        assert!(text_capacity <= 4 * KEY_MEMO_TEXT_BYTES, "{text_capacity}");
    }

    #[test]
    fn keys_learned_during_learning_never_alert_and_new_ones_after_it_do() {
        let s = spec(14, 7, 100);
        let mut b = Baseline {
            max_entries: 100,
            ..Default::default()
        };
        let t0 = 1_700_000_000;
        assert!(!b.observe((1, 1), t0, &s), "learning");
        assert!(!b.observe((2, 2), t0 + 6 * DAY, &s), "still learning");
        assert!(b.observe((3, 3), t0 + 7 * DAY, &s), "new after learning");
        assert!(!b.observe((3, 3), t0 + 7 * DAY + 1, &s), "now known");
        assert!(!b.observe((1, 1), t0 + 10 * DAY, &s), "seen within history");
        // Unseen for longer than history: new again.
        assert!(b.observe((2, 2), t0 + 21 * DAY, &s));
        // Out of order: an older event of a known key is known.
        assert!(!b.observe((3, 3), t0 + 7 * DAY - 5, &s));
    }

    #[test]
    fn a_full_baseline_drops_expired_keys_then_the_least_recently_seen() {
        let s = spec(1, 0, 32);
        let mut b = Baseline {
            max_entries: 32,
            ..Default::default()
        };
        for i in 0..32u64 {
            b.observe((i, 0), i as i64, &s);
        }
        assert_eq!(b.len(), 32);
        b.observe((100, 0), 40, &s);
        assert_eq!(b.len(), 31, "the oldest two (a sixteenth) went");
        assert_eq!(b.evictions, 2);
        assert!(!b.seen.contains_key(&(0, 0)) && !b.seen.contains_key(&(1, 0)));
        // Two days later everything else expired: no eviction is counted.
        b.observe((101, 0), 40 + 2 * DAY, &s);
        assert_eq!(b.len(), 32);
        b.observe((102, 0), 40 + 4 * DAY, &s);
        assert_eq!(b.len(), 1);
        assert_eq!(b.evictions, 2);
    }

    /// The table's cost per key at the default bound: entry bytes plus a control byte per
    /// bucket, with the buckets of a table holding 100,000 keys.
    #[test]
    fn a_key_costs_about_33_bytes_at_the_default_bound() {
        assert_eq!(ENTRY_BYTES, 24);
        let mut t = Table::default();
        for i in 0..DEFAULT_MAX_ENTRIES as u64 {
            t.insert((i, i), 0);
        }
        // hashbrown keeps buckets a power of two with at most 7/8 of them full.
        let buckets = (t.capacity() * 8 / 7).next_power_of_two();
        let per_key = buckets * (ENTRY_BYTES + 1) / DEFAULT_MAX_ENTRIES;
        assert!((30..=40).contains(&per_key), "{per_key} bytes per key");
    }

    /// A reload keeps the baseline of a rule whose id and `first_seen` are unchanged; a changed
    /// spec starts empty, and the old baseline is dropped from the store.
    #[test]
    fn a_reload_keeps_a_baseline_while_the_rule_id_and_spec_are_unchanged() {
        let rule = |history: &str, max: &str| {
            format!("title: T\nid: 3f1c2a7e-0d5b-4e3a-9b1e-6c2f8a4d7e10\nlogsource: {{product: kubernetes, service: audit}}\ndetection:\n  s:\n    verb: get\n  condition: s\nlevel: high\nfirst_seen:\n  fields: [user.username]\n  history: {history}\n  learning: 1d\n  max_entries: {max}\n")
        };
        let load = |text: &str| {
            let (rules, errors) = super::super::sigma::load_str("r.yml", text, &Default::default());
            assert!(errors.is_empty(), "{errors:?}");
            rules
        };
        let store = Baselines::default();
        let first = store.attach(&load(&rule("14d", "10")));
        let first = first[0].clone().unwrap();
        lock(&first).observe((1, 1), 0, &spec(14, 1, 10));
        // The bound is not part of the spec: changing it keeps the baseline.
        let again = store.attach(&load(&rule("14d", "20")));
        assert!(Arc::ptr_eq(&first, again[0].as_ref().unwrap()));
        assert_eq!(lock(&first).max_entries, 20);
        assert_eq!(store.entries(), 1);
        let changed = store.attach(&load(&rule("7d", "20")));
        assert!(lock(changed[0].as_ref().unwrap()).is_empty());
        assert_eq!(store.entries(), 0);
    }

    #[test]
    fn baselines_survive_a_store_and_load_and_bad_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BASELINES_FILE);
        let store = Baselines::default();
        let b = Arc::new(Mutex::new(Baseline {
            max_entries: 10,
            ..Default::default()
        }));
        let s = spec(14, 0, 10);
        lock(&b).observe((7, 9), 1000, &s);
        lock(&store.by_rule).insert(("r1".into(), 42), b);
        assert!(store.changed());
        store.store(&path).unwrap();
        assert!(!store.changed());
        let back = Baselines::load(&path).unwrap();
        assert_eq!(back.entries(), 1);
        let got = lock(&back.by_rule)[&("r1".to_string(), 42)].clone();
        assert!(!lock(&got).observe((7, 9), 2000, &s), "known after reload");
        assert_eq!(lock(&got).start, Some(1000));

        for bad in [&b"{not json"[..], br#"{"version": 9, "baselines": []}"#] {
            fs::write(&path, bad).unwrap();
            let store = Baselines::load_or_set_aside(dir.path());
            assert_eq!(store.entries(), 0);
            assert!(!path.exists());
            let aside: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("baselines.json.unreadable-")
                })
                .collect();
            assert_eq!(aside.len(), 1);
            fs::remove_file(aside[0].path()).unwrap();
        }
        assert!(matches!(
            Baselines::load(&dir.path().join("absent.json")),
            Ok(b) if b.entries() == 0
        ));
    }
}
