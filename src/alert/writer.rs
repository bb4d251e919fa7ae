//! Writes ECS documents as JSON directly: the template's pre-written members, the ECS fields of
//! one event and the redacted event under `kubernetes.audit`, in one pass into one buffer.

use std::net::IpAddr;

use crate::event::parse_timestamp;
use crate::event::redact::{verbatim_event, write_redacted_members, Redacted};
use crate::event::{needs_escape, write_json_str, Event};

use super::fields::{category, event_type, outcome};
use super::{AlertTemplate, AuditFields};

/// What an alert (or events-flow document) takes from one event.
pub struct EventPart<'p, 'f> {
    pub fields: &'p AuditFields<'f>,
    /// The rendered, scrubbed rule output (empty: none).
    pub message: &'p str,
    pub cluster_name: Option<&'p str>,
    /// Matches suppressed by throttling since the previous alert.
    pub suppressed: u64,
    /// The redacted event, as JSON, for `kubernetes.audit`.
    pub audit: &'p [u8],
}

/// The `events` flow's document for one event: `template`'s fields, the ECS fields from the
/// event and the redacted event under `kubernetes.audit`, as JSON.
pub fn write_event_document(
    template: &AlertTemplate,
    ev: &Event<'_>,
    cluster_name: Option<&str>,
) -> Vec<u8> {
    let document = |audit: &[u8], redacted: &Redacted| {
        let fields = AuditFields::of_redacted(ev, redacted);
        EventPart {
            fields: &fields,
            message: "",
            cluster_name,
            suppressed: 0,
            audit,
        }
        .document(template)
    };
    // Most events are their own redacted form: embedded from their text, with no buffer in
    // between.
    if let Some(text) = verbatim_event(ev) {
        return document(text.as_bytes(), &Redacted::unchanged());
    }
    let write = |audit: &mut Vec<u8>| {
        audit.clear();
        let redacted = write_redacted_members(ev, audit);
        document(audit, &redacted)
    };
    // The redacted event is written to a buffer of the thread's, kept from event to event (it is
    // copied into the document): one allocation per event fewer on the events flow.
    SCRATCH
        .try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut audit) => {
                let doc = write(&mut audit);
                if audit.capacity() > SCRATCH_BYTES {
                    *audit = Vec::new();
                }
                doc
            }
            Err(_) => write(&mut Vec::new()),
        })
        .unwrap_or_else(|_| write(&mut Vec::new()))
}

thread_local! {
    /// [`write_event_document`]'s buffer for the redacted event.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest redacted event whose buffer a thread keeps.
const SCRATCH_BYTES: usize = 256 << 10;

/// What replaces a body (`requestObject`, `responseObject`) in the reduced form of an event
/// larger than `pipeline.max_event_bytes`: `{"tripline":"omitted-too-big","bytes":N}`, with N the
/// size of the body as logged, in bytes.
pub const OMITTED_BODY: &str = "omitted-too-big";

/// The `events` flow's document for an event too big to forward whole: as
/// [`write_event_document`] writes it, with `requestObject` and `responseObject` each replaced by
/// the marker [`OMITTED_BODY`] and its size. The bodies are skipped, never built as values, so
/// this costs a copy of the event without its bodies (and a decode of that copy), whatever the
/// size of the bodies.
pub fn write_reduced_event_document(
    template: &AlertTemplate,
    ev: &Event<'_>,
    cluster_name: Option<&str>,
) -> Vec<u8> {
    let doc = with_reduced_event(ev, |small| {
        write_event_document(template, small, cluster_name)
    });
    // An event that decoded always reduces and decodes again; should it not, nothing of it is
    // written that redaction has not seen.
    doc.unwrap_or_else(|| {
        let fields = AuditFields::default();
        EventPart {
            fields: &fields,
            message: "",
            cluster_name,
            suppressed: 0,
            audit: b"null",
        }
        .document(template)
    })
}

/// Calls `f` with the reduced form of `ev`: the event decoded again from its text with
/// `requestObject` and `responseObject` replaced by [`OMITTED_BODY`] markers. `None` (and `f` not
/// called) if that text does not decode, which an event that decoded never does. Costs a copy of
/// the event without its bodies; the bodies are skipped, never built.
pub fn with_reduced_event<R>(ev: &Event<'_>, f: impl FnOnce(&Event<'_>) -> R) -> Option<R> {
    let text = reduced_event_text(ev.raw())?;
    let mut f = Some(f);
    let mut out = None;
    crate::event::decode_value_into(&text, &mut |d| {
        if let (Ok(small), Some(f)) = (d, f.take()) {
            out = Some(f(small));
        }
    });
    out
}

/// The event `raw` (a JSON object) with its bodies replaced by [`OMITTED_BODY`] markers; the
/// other members are copied as they are. `None` if `raw` is not a JSON object.
fn reduced_event_text(raw: &str) -> Option<String> {
    use crate::event::json::Scanner;
    let mut out = Vec::with_capacity(1024);
    let mut s = Scanner::new(raw);
    out.push(b'{');
    let mut first = true;
    s.object("", |s, key| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(&mut out, key);
        out.push(b':');
        let value = s.skip_value()?;
        if matches!(key, "requestObject" | "responseObject") && value != "null" {
            out.extend_from_slice(b"{\"tripline\":");
            write_json_str(&mut out, OMITTED_BODY);
            out.extend_from_slice(format!(",\"bytes\":{}}}", value.len()).as_bytes());
        } else {
            out.extend_from_slice(value.as_bytes());
        }
        Ok(())
    })
    .ok()?;
    s.end().ok()?;
    out.push(b'}');
    String::from_utf8(out).ok()
}

impl EventPart<'_, '_> {
    /// The whole document with `template`'s fields ([`write_document`]), in a buffer of its
    /// size (one a sink handed back, [`super::buffers`], when one waits).
    pub fn document(&self, template: &AlertTemplate) -> Vec<u8> {
        let mut doc = super::buffers::take(template.document_capacity(self.audit.len()));
        write_document(&mut doc, template, self);
        doc
    }
}

/// Writes the whole ECS document: the template's members and the event's, as one JSON object.
/// The two never set the same field; where both have members of one object (`event`,
/// `tripline`) they are written together.
pub fn write_document(out: &mut Vec<u8>, template: &AlertTemplate, part: &EventPart<'_, '_>) {
    let f = part.fields;
    let mut w = Obj::new(out);
    if let Some((ts, _)) = f.time() {
        w.str("@timestamp", ts);
    }
    w.raw_members(&template.other_members);

    w.begin("event");
    w.raw_members(&template.event_members);
    w.key("category");
    w.out.extend_from_slice(b"[");
    write_json_str(w.out, category(f));
    w.out.extend_from_slice(b"]");
    w.key("type");
    w.out.extend_from_slice(b"[");
    write_json_str(w.out, event_type(f.verb));
    w.out.extend_from_slice(b"]");
    w.opt_str("action", f.verb);
    w.str("outcome", outcome(f.code));
    w.opt_str(
        "start",
        f.request_received_timestamp
            .filter(|ts| parse_timestamp(ts).is_some()),
    );
    w.end();

    w.begin("tripline");
    w.raw_members(&template.tripline_members);
    if part.suppressed > 0 {
        w.num("suppressed_count", part.suppressed);
    }
    w.end();

    // User: `user.{name,id,group.name}`, and the same under `user.effective` for the
    // impersonated user.
    let user = |w: &mut Obj<'_>, name, id, groups: &[&str]| {
        w.opt_str("name", name);
        w.opt_str("id", id);
        w.begin("group");
        w.list("name", groups);
        w.end();
    };
    w.begin("user");
    user(&mut w, f.username, f.uid, &f.groups);
    w.begin("effective");
    user(
        &mut w,
        f.impersonated_username,
        f.impersonated_uid,
        &f.impersonated_groups,
    );
    w.end();
    w.end();

    // Network. Only the last entry of `sourceIPs` is the connecting peer; see `render_alert`.
    // Each address is parsed once: the last one is valid exactly when it is among the valid
    // ones listed (an equal text is equally valid).
    let is_ip = |ip: &&str| ip.parse::<IpAddr>().is_ok();
    let mut related_ips: smallvec::SmallVec<[&str; 4]> = smallvec::SmallVec::new();
    for ip in f.source_ips.iter().copied().filter(is_ip) {
        if !related_ips.contains(&ip) {
            related_ips.push(ip);
        }
    }
    let mut related_users: smallvec::SmallVec<[&str; 2]> = smallvec::SmallVec::new();
    for user in [f.username, f.impersonated_username].into_iter().flatten() {
        if !related_users.contains(&user) {
            related_users.push(user);
        }
    }
    w.begin("related");
    w.list("user", &related_users);
    w.list("ip", &related_ips);
    w.end();
    w.begin("source");
    w.opt_str(
        "ip",
        f.source_ips
            .last()
            .copied()
            .filter(|ip| related_ips.contains(ip)),
    );
    w.end();
    w.begin("user_agent");
    w.opt_str("original", f.user_agent);
    w.end();
    w.begin("url");
    w.opt_str("original", f.request_uri);
    w.end();
    if let Some(code) = f.code {
        w.begin("http");
        w.begin("response");
        w.num("status_code", code);
        w.end();
        w.end();
    }

    // Orchestrator.
    w.begin("orchestrator");
    w.str("type", "kubernetes");
    w.begin("cluster");
    w.opt_str("name", part.cluster_name.filter(|c| !c.is_empty()));
    w.end();
    w.opt_str("namespace", f.namespace);
    w.begin("resource");
    match (f.resource, f.subresource) {
        (Some(resource), Some(sub)) => w.joined("type", resource, sub),
        (Some(resource), None) => w.str("type", resource),
        (None, _) => {}
    }
    w.opt_str("name", f.name);
    w.end();
    match (f.api_group, f.api_version) {
        (Some(group), Some(version)) => w.joined("api_version", group, version),
        (None, Some(version)) => w.str("api_version", version),
        _ => {}
    }
    w.end();

    if !part.message.is_empty() {
        w.str("message", part.message);
    }
    // A `null` event (one that did not parse again) is left out rather than embedded.
    if !part.audit.is_empty() && part.audit != b"null" {
        w.begin("kubernetes");
        w.key("audit");
        w.out.extend_from_slice(part.audit);
        w.end();
    }
    w.finish();
}

/// Writes a JSON object member by member; an object begun with [`Obj::begin`] that gets no
/// member is taken back out, so a document never holds an empty object.
struct Obj<'o> {
    out: &'o mut Vec<u8>,
    /// The open objects, the outermost first: `frames[..depth]`. A fixed array, not a
    /// growable list: the document's nesting is this file's code (4 deep at most), and each
    /// member asks for the innermost object.
    frames: [Frame; MAX_DEPTH],
    depth: usize,
}

/// Objects open at once, at most (the root included).
const MAX_DEPTH: usize = 8;

#[derive(Clone, Copy, Default)]
struct Frame {
    /// Where the object's member began in the output (to take it back out).
    start: usize,
    /// Whether the parent had members before this one.
    parent_had: bool,
    /// Whether this object has members.
    has: bool,
}

impl<'o> Obj<'o> {
    fn new(out: &'o mut Vec<u8>) -> Obj<'o> {
        let start = out.len();
        out.push(b'{');
        let mut frames = [Frame::default(); MAX_DEPTH];
        frames[0] = Frame {
            start,
            parent_had: false,
            has: false,
        };
        Obj {
            out,
            frames,
            depth: 1,
        }
    }

    /// Starts a member: a comma if needed.
    #[inline(always)]
    fn member(&mut self) {
        if let Some(top) = self.frames.get_mut(self.depth.wrapping_sub(1)) {
            if std::mem::replace(&mut top.has, true) {
                self.out.push(b',');
            }
        }
    }

    /// A member's key: one of the ECS names written here, which need no escaping. Inlined, so
    /// that each call site copies its key's known length without a call.
    #[inline(always)]
    fn key(&mut self, key: &'static str) {
        debug_assert!(key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        self.member();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// Members already written as JSON (without braces), if any.
    fn raw_members(&mut self, members: &[u8]) {
        if !members.is_empty() {
            self.member();
            self.out.extend_from_slice(members);
        }
    }

    #[inline(always)]
    fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        write_json_str(self.out, value);
    }

    #[inline(always)]
    fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// `a/b` as one string, written without building it first.
    fn joined(&mut self, key: &'static str, a: &str, b: &str) {
        self.key(key);
        if needs_escape(a.as_bytes()) || needs_escape(b.as_bytes()) {
            write_json_str(self.out, &format!("{a}/{b}"));
        } else {
            self.out.reserve(a.len() + b.len() + 3);
            self.out.push(b'"');
            self.out.extend_from_slice(a.as_bytes());
            self.out.push(b'/');
            self.out.extend_from_slice(b.as_bytes());
            self.out.push(b'"');
        }
    }

    fn num(&mut self, key: &'static str, value: u64) {
        self.key(key);
        // Without the formatting machinery (a status code per document).
        self.out
            .extend_from_slice(crate::event::IntBuf::unsigned(value).as_bytes());
    }

    /// A list of strings, unless it is empty.
    fn list(&mut self, key: &'static str, items: &[&str]) {
        if items.is_empty() {
            return;
        }
        self.key(key);
        self.out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_json_str(self.out, item);
        }
        self.out.push(b']');
    }

    #[inline(always)]
    fn begin(&mut self, key: &'static str) {
        let start = self.out.len();
        let parent_had = self
            .frames
            .get(self.depth.wrapping_sub(1))
            .is_some_and(|t| t.has);
        self.key(key);
        self.out.push(b'{');
        debug_assert!(
            self.depth < MAX_DEPTH,
            "objects nested deeper than MAX_DEPTH"
        );
        if let Some(f) = self.frames.get_mut(self.depth) {
            *f = Frame {
                start,
                parent_had,
                has: false,
            };
            self.depth += 1;
        }
    }

    #[inline(always)]
    fn end(&mut self) {
        let Some(&frame) = self.frames.get(self.depth.wrapping_sub(1)) else {
            return;
        };
        self.depth -= 1;
        if frame.has {
            self.out.push(b'}');
        } else {
            self.out.truncate(frame.start);
            if let Some(parent) = self.frames.get_mut(self.depth.wrapping_sub(1)) {
                parent.has = frame.parent_had;
            }
        }
    }

    fn finish(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::Obj;

    #[test]
    fn numbers_are_written_as_json_writes_them_and_empty_objects_are_taken_out() {
        for n in [0, 7, 10, 200, 403, 99_999, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            let mut w = Obj::new(&mut out);
            w.num("n", n);
            w.finish();
            assert_eq!(out, serde_json::json!({ "n": n }).to_string().as_bytes());
        }
        // Nested to the writer's depth, the inner objects empty but one: only its path stays.
        let mut out = Vec::new();
        let mut w = Obj::new(&mut out);
        w.str("a", "x");
        w.begin("b");
        w.begin("c");
        w.end();
        w.begin("d");
        w.begin("e");
        w.num("f", 1);
        w.end();
        w.begin("g");
        w.end();
        w.end();
        w.end();
        w.begin("h");
        w.end();
        w.finish();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x","b":{"d":{"e":{"f":1}}}}"#
        );
    }
}
