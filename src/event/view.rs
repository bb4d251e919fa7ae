//! The borrowed view of one audit event.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_json::Value;
use smallvec::SmallVec;

use super::json::{JsonError, Scanner};

/// `user` and `impersonatedUser` of an audit event.
#[derive(Debug, Default)]
pub struct UserInfo<'a> {
    pub username: Option<Cow<'a, str>>,
    pub uid: Option<Cow<'a, str>>,
    pub groups: SmallVec<[Cow<'a, str>; 4]>,
    /// `extra` (a map of string lists) as raw JSON; parsed only when a rule asks for it.
    pub extra: Option<&'a str>,
    /// A string member was written `null` (decoded as absent).
    pub(crate) had_null: bool,
}

/// `objectRef` of an audit event.
#[derive(Debug, Default)]
pub struct ObjectRef<'a> {
    pub resource: Option<Cow<'a, str>>,
    pub subresource: Option<Cow<'a, str>>,
    pub namespace: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub api_group: Option<Cow<'a, str>>,
    pub api_version: Option<Cow<'a, str>>,
    pub uid: Option<Cow<'a, str>>,
    pub resource_version: Option<Cow<'a, str>>,
    /// A member was written `null` (decoded as absent).
    pub(crate) had_null: bool,
}

/// `responseStatus` of an audit event (a `metav1.Status`).
#[derive(Debug, Default)]
pub struct ResponseStatus<'a> {
    pub code: Option<i64>,
    pub status: Option<Cow<'a, str>>,
    pub reason: Option<Cow<'a, str>>,
    pub message: Option<Cow<'a, str>>,
    /// A member was written `null` (decoded as absent).
    pub(crate) had_null: bool,
}

/// One member of a JSON object: its name and its value's text.
pub type RawMember<'a> = (Cow<'a, str>, &'a str);

/// The members of the object whose text is `text`, in written order (`None` if it is not an
/// object). The text was validated when the event was decoded; tripline's scanner reads it.
pub fn members_of(text: &str) -> Option<Vec<RawMember<'_>>> {
    let mut out = Vec::new();
    let mut s = Scanner::new(text);
    s.object("", |s, key| {
        let k = borrow_from(text, key);
        out.push((k, s.skip_value()?));
        Ok(())
    })
    .ok()?;
    s.end().ok()?;
    Some(out)
}

/// `key` as a slice of `text` when it lies in it (a name without escapes), else a copy.
fn borrow_from<'a>(text: &'a str, key: &str) -> Cow<'a, str> {
    let start = (key.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    match text.get(start..start.wrapping_add(key.len())) {
        Some(k) if k.as_ptr() == key.as_ptr() => Cow::Borrowed(k),
        _ => Cow::Owned(key.to_string()),
    }
}

/// One kube-apiserver audit event (`audit.k8s.io/v1` or `v1beta1`), borrowing its strings from the
/// text it was decoded from wherever they contain no JSON escapes.
///
/// `requestObject`, `responseObject`, `annotations` and `user.extra` stay raw JSON text until a
/// rule asks for a path inside them; they are then parsed once and cached in the view. Decoding
/// an event allocates only for strings with escapes, for more than four groups or two source IPs,
/// and for an `impersonatedUser`.
#[derive(Debug, Default)]
pub struct Event<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub api_version: Option<Cow<'a, str>>,
    pub level: Option<Cow<'a, str>>,
    pub audit_id: Option<Cow<'a, str>>,
    pub stage: Option<Cow<'a, str>>,
    pub request_uri: Option<Cow<'a, str>>,
    pub verb: Option<Cow<'a, str>>,
    pub user: Option<UserInfo<'a>>,
    pub impersonated_user: Option<Box<UserInfo<'a>>>,
    pub source_ips: SmallVec<[Cow<'a, str>; 2]>,
    pub user_agent: Option<Cow<'a, str>>,
    pub object_ref: Option<ObjectRef<'a>>,
    pub response_status: Option<ResponseStatus<'a>>,
    /// Raw JSON text of `requestObject`.
    pub request_object: Option<&'a str>,
    /// Raw JSON text of `responseObject`.
    pub response_object: Option<&'a str>,
    pub request_received_timestamp: Option<Cow<'a, str>>,
    pub stage_timestamp: Option<Cow<'a, str>>,
    /// `timestamp` of `v1beta1` and older events.
    pub timestamp: Option<Cow<'a, str>>,
    /// Raw JSON text of `annotations`.
    pub annotations: Option<&'a str>,
    /// Raw JSON text of `items`, present only on an `EventList`; the decoder unwraps it.
    pub(crate) items: Option<&'a str>,

    /// The exact text of this event (one JSON object).
    pub(crate) raw: &'a str,
    /// Boxed so that an event stays small to move; allocated on the first lazy access only.
    lazy: OnceCell<Box<Lazy>>,
    /// The members of the event's object (name, value text), listed on first use: Falco rules
    /// read the fields tripline does not type from them, once per event for all rules.
    text_members: OnceCell<Option<Vec<RawMember<'a>>>>,
    /// Whether `stageTimestamp` is an RFC 3339 time, and the time in nanoseconds since the
    /// epoch when it is in that range; worked out on first use.
    stage_nanos: OnceCell<(bool, Option<i64>)>,
    /// [`Event::time`], worked out once.
    time: OnceCell<Option<chrono::DateTime<chrono::Utc>>>,
    /// [`crate::event::content_hash`] of [`Event::raw`], worked out on first use: the events
    /// flow's document id, the redelivery window and the correlations all need it.
    content_hash: OnceCell<[u8; 16]>,
    /// A top-level string member was written `null` (decoded as absent).
    top_null: bool,
    /// The cluster the event comes from, when its input says so: `orchestrator.cluster.name`
    /// of a tripline events-flow document it was taken out of. `None` for an event read as the
    /// API server wrote it (its cluster is the instance's `cluster_name`). Part of every
    /// stateful key (correlation groups, first-seen baselines, throttling) when present, so
    /// that two clusters' events never share state; absent, the keys are those of a single
    /// cluster.
    pub cluster: Option<Cow<'a, str>>,
}

fn string_list<'a, A: smallvec::Array<Item = Cow<'a, str>>>(
    s: &mut Scanner<'a>,
    what: &str,
    out: &mut SmallVec<A>,
) -> Result<(), JsonError> {
    if s.null()? {
        return Ok(());
    }
    s.array(what, |s: &mut Scanner<'a>| {
        match s.opt_string(what)? {
            Some(v) => out.push(v),
            None => return Err(JsonError::Type(format!("{what} must hold strings"))),
        }
        Ok(())
    })
}

/// Sets a field once: a repeated member is a type error (as with serde), so that what a rule
/// sees and what a SIEM indexes cannot differ.
#[inline]
fn once<T>(slot: &mut Option<T>, v: Option<T>, key: &str) -> Result<(), JsonError> {
    if slot.is_some() {
        return Err(JsonError::Type(format!("duplicate field `{key}`")));
    }
    *slot = v;
    Ok(())
}

/// Reads a member into `slot` in place (these structs are large to move): `null` leaves it
/// empty, a second occurrence is a type error.
fn nested<'a, T: Default>(
    s: &mut Scanner<'a>,
    slot: &mut Option<T>,
    key: &str,
    read: impl FnOnce(&mut Scanner<'a>, &mut T) -> Result<(), JsonError>,
) -> Result<(), JsonError> {
    let duplicate = || JsonError::Type(format!("duplicate field `{key}`"));
    if s.null()? {
        return if slot.is_some() {
            Err(duplicate())
        } else {
            Ok(())
        };
    }
    // A repeated member is read like the first (its own errors first), then refused. One call
    // of `read`, so that it is inlined once.
    let repeated = slot.is_some();
    let mut scratch = None;
    let target = if repeated {
        scratch.insert(T::default())
    } else {
        slot.insert(T::default())
    };
    read(s, target)?;
    if repeated {
        return Err(duplicate());
    }
    Ok(())
}

fn user<'a>(s: &mut Scanner<'a>, what: &str, u: &mut UserInfo<'a>) -> Result<(), JsonError> {
    let mut seen_groups = false;
    s.object(what, |s: &mut Scanner<'a>, key: &str| match key {
        "username" => {
            let v = s.opt_string("user.username")?;
            u.had_null |= v.is_none();
            once(&mut u.username, v, key)
        }
        "uid" => {
            let v = s.opt_string("user.uid")?;
            u.had_null |= v.is_none();
            once(&mut u.uid, v, key)
        }
        "groups" => {
            if std::mem::replace(&mut seen_groups, true) {
                return Err(JsonError::Type("duplicate field `groups`".into()));
            }
            string_list(s, "user.groups", &mut u.groups)
        }
        "extra" => {
            let v = s.skip_value()?;
            once(&mut u.extra, (v != "null").then_some(v), key)
        }
        _ => s.skip_value().map(|_| ()),
    })
}

fn object_ref<'a>(s: &mut Scanner<'a>, o: &mut ObjectRef<'a>) -> Result<(), JsonError> {
    s.object("objectRef", |s: &mut Scanner<'a>, key: &str| {
        let slot = match key {
            "resource" => &mut o.resource,
            "subresource" => &mut o.subresource,
            "namespace" => &mut o.namespace,
            "name" => &mut o.name,
            "apiGroup" => &mut o.api_group,
            "apiVersion" => &mut o.api_version,
            "uid" => &mut o.uid,
            "resourceVersion" => &mut o.resource_version,
            _ => return s.skip_value().map(|_| ()),
        };
        let v = s.opt_string("objectRef field")?;
        o.had_null |= v.is_none();
        once(slot, v, key)
    })
}

fn response_status<'a>(s: &mut Scanner<'a>, r: &mut ResponseStatus<'a>) -> Result<(), JsonError> {
    s.object("responseStatus", |s: &mut Scanner<'a>, key: &str| {
        let slot = match key {
            "code" => {
                if s.null()? {
                    r.had_null = true;
                    return Ok(());
                }
                if !matches!(s.peek(), Some(b'-' | b'0'..=b'9')) {
                    s.skip_value()?;
                    return Err(JsonError::Type(
                        "responseStatus.code must be an integer".into(),
                    ));
                }
                let n = s.number()?;
                let code = n.parse::<i64>().map_err(|_| {
                    JsonError::Type(format!("responseStatus.code `{n}` is not an integer"))
                })?;
                return once(&mut r.code, Some(code), key);
            }
            "status" => &mut r.status,
            "reason" => &mut r.reason,
            "message" => &mut r.message,
            _ => return s.skip_value().map(|_| ()),
        };
        let v = s.opt_string("responseStatus field")?;
        r.had_null |= v.is_none();
        once(slot, v, key)
    })
}

/// A raw JSON member kept for later; `null` counts as absent.
fn raw<'a>(s: &mut Scanner<'a>) -> Result<Option<&'a str>, JsonError> {
    let v = s.skip_value()?;
    Ok((v != "null").then_some(v))
}

/// The members of an audit event in the order the API server writes them (Go's encoder follows
/// the struct's field order), and what each is: the decoder compares a key with the next few
/// names before scanning it.
const ORDER: [&str; 18] = [
    "kind",
    "apiVersion",
    "level",
    "auditID",
    "stage",
    "requestURI",
    "verb",
    "user",
    "impersonatedUser",
    "sourceIPs",
    "userAgent",
    "objectRef",
    "responseStatus",
    "requestObject",
    "responseObject",
    "requestReceivedTimestamp",
    "stageTimestamp",
    "annotations",
];

const ORDER_MEMBERS: [Member; 18] = [
    Member::Kind,
    Member::ApiVersion,
    Member::Level,
    Member::AuditId,
    Member::Stage,
    Member::RequestUri,
    Member::Verb,
    Member::User,
    Member::ImpersonatedUser,
    Member::SourceIps,
    Member::UserAgent,
    Member::ObjectRef,
    Member::ResponseStatus,
    Member::RequestObject,
    Member::ResponseObject,
    Member::RequestReceivedTimestamp,
    Member::StageTimestamp,
    Member::Annotations,
];

/// The members of an audit event the decoder reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Kind,
    ApiVersion,
    Level,
    AuditId,
    Stage,
    RequestUri,
    Verb,
    UserAgent,
    RequestReceivedTimestamp,
    StageTimestamp,
    Timestamp,
    User,
    ImpersonatedUser,
    SourceIps,
    ObjectRef,
    ResponseStatus,
    RequestObject,
    ResponseObject,
    Annotations,
    Items,
    Other,
}

impl Member {
    /// Dispatches on the length first, so that a key is compared with at most four names.
    #[inline]
    fn of(key: &str) -> Member {
        use Member::*;
        match key.len() {
            4 => match key {
                "kind" => Kind,
                "verb" => Verb,
                "user" => User,
                _ => Other,
            },
            5 => match key {
                "level" => Level,
                "stage" => Stage,
                "items" => Items,
                _ => Other,
            },
            7 if key == "auditID" => AuditId,
            9 => match key {
                "userAgent" => UserAgent,
                "sourceIPs" => SourceIps,
                "objectRef" => ObjectRef,
                "timestamp" => Timestamp,
                _ => Other,
            },
            10 => match key {
                "apiVersion" => ApiVersion,
                "requestURI" => RequestUri,
                _ => Other,
            },
            11 if key == "annotations" => Annotations,
            13 if key == "requestObject" => RequestObject,
            14 => match key {
                "responseStatus" => ResponseStatus,
                "stageTimestamp" => StageTimestamp,
                "responseObject" => ResponseObject,
                _ => Other,
            },
            16 if key == "impersonatedUser" => ImpersonatedUser,
            24 if key == "requestReceivedTimestamp" => RequestReceivedTimestamp,
            _ => Other,
        }
    }
}

/// An RFC 3339 timestamp as UTC (the API server's own form without the general parser).
pub fn parse_timestamp(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    parse_utc(s).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    })
}

/// The form the API server writes, `2024-05-01T12:00:00.123456Z` (up to nine fraction
/// digits), without the general RFC 3339 parser; `None` for anything else (offsets, leap
/// seconds, out-of-range fields), which the caller hands to that parser.
fn parse_utc(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let mut n = 0u32;
            for &c in frac {
                let v = u32::from(c.wrapping_sub(b'0'));
                if v > 9 {
                    return None;
                }
                n = n * 10 + v;
            }
            n * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    // The fourteen digits of `YYYY-MM-DDTHH:MM:SS`, each a digit's value (more than 9 for
    // a byte that is not a digit), checked together.
    let head: &[u8; 19] = b[..19].try_into().ok()?;
    let mut v = [0u32; 14];
    for (slot, at) in v
        .iter_mut()
        .zip([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
    {
        *slot = u32::from(head[at].wrapping_sub(b'0'));
    }
    if v.iter().any(|&d| d > 9) {
        return None;
    }
    let year = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
    let (month, day) = (v[4] * 10 + v[5], v[6] * 10 + v[7]);
    let (h, m, sec) = (v[8] * 10 + v[9], v[10] * 10 + v[11], v[12] * 10 + v[13]);
    // From the calendar fields directly (no round trip through a day count); chrono refuses
    // a month, day, hour, minute or second out of range.
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    Some(date.and_hms_nano_opt(h, m, sec, nanos)?.and_utc())
}

impl<'a> Event<'a> {
    /// Decodes one JSON object into an event view. Validates the whole text; unknown members are
    /// skipped; a member of the wrong type is a [`JsonError::Type`].
    pub fn parse(text: &'a str) -> Result<Event<'a>, JsonError> {
        let mut ev = Event::default();
        Event::parse_into(text, &mut ev)?;
        Ok(ev)
    }

    /// Like [`Event::parse`], into a default-initialised `ev` (saves moving a large value).
    pub(crate) fn parse_into(text: &'a str, ev: &mut Event<'a>) -> Result<(), JsonError> {
        let mut s = Scanner::new(text);
        ev.raw = text;
        let mut seen_ips = false;
        s.object_in_order("an audit event", &ORDER, |s: &mut Scanner<'a>, key, at| {
            use Member as M;
            let member = match at {
                Some(j) => ORDER_MEMBERS[j],
                None => Member::of(key),
            };
            let slot = match member {
                M::Kind => &mut ev.kind,
                M::ApiVersion => &mut ev.api_version,
                M::Level => &mut ev.level,
                M::AuditId => &mut ev.audit_id,
                M::Stage => &mut ev.stage,
                M::RequestUri => &mut ev.request_uri,
                M::Verb => &mut ev.verb,
                M::UserAgent => &mut ev.user_agent,
                M::RequestReceivedTimestamp => &mut ev.request_received_timestamp,
                M::StageTimestamp => &mut ev.stage_timestamp,
                M::Timestamp => &mut ev.timestamp,
                M::User => return nested(s, &mut ev.user, key, |s, u| user(s, "user", u)),
                M::ImpersonatedUser => {
                    return nested(s, &mut ev.impersonated_user, key, |s, u| {
                        user(s, "impersonatedUser", u)
                    })
                }
                M::SourceIps => {
                    if std::mem::replace(&mut seen_ips, true) {
                        return Err(JsonError::Type("duplicate field `sourceIPs`".into()));
                    }
                    return string_list(s, "sourceIPs", &mut ev.source_ips);
                }
                M::ObjectRef => return nested(s, &mut ev.object_ref, key, object_ref),
                M::ResponseStatus => {
                    return nested(s, &mut ev.response_status, key, response_status)
                }
                M::RequestObject => {
                    let r = raw(s)?;
                    return once(&mut ev.request_object, r, key);
                }
                M::ResponseObject => {
                    let r = raw(s)?;
                    return once(&mut ev.response_object, r, key);
                }
                M::Annotations => {
                    let r = raw(s)?;
                    return once(&mut ev.annotations, r, key);
                }
                M::Items => {
                    let r = raw(s)?;
                    return once(&mut ev.items, r, key);
                }
                M::Other => return s.skip_value().map(|_| ()),
            };
            let v = s.opt_string(key)?;
            ev.top_null |= v.is_none();
            once(slot, v, key)
        })?;
        s.end()?;
        Ok(())
    }
}

/// Parsed-on-demand parts of an event. Each is parsed at most once per event.
#[derive(Debug, Default)]
pub(crate) struct Lazy {
    pub request_object: OnceCell<Option<Value>>,
    pub response_object: OnceCell<Option<Value>>,
    pub annotations: OnceCell<Vec<(String, String)>>,
    /// The annotations whose string value has JSON escapes, unescaped, in order (duplicates
    /// kept): RBAC's `authorization.k8s.io/reason` quotes names, so most events have one.
    pub escaped_annotations: OnceCell<Vec<(String, String)>>,
    pub user_extra: OnceCell<Option<Value>>,
    pub impersonated_extra: OnceCell<Option<Value>>,
    pub whole: OnceCell<Option<Value>>,
}

fn parse_raw(raw: Option<&str>) -> Option<Value> {
    raw.and_then(super::json::parse_value)
}

impl<'a> Event<'a> {
    fn lazy(&self) -> &Lazy {
        self.lazy.get_or_init(Box::default)
    }

    /// The exact JSON text of this event (for an event unwrapped from a cloud envelope, the inner
    /// event's text).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// [`Event::cluster`]: the cluster named by the event's input, if any.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// [`crate::event::content_hash`] of the event's text, computed once per event.
    pub fn content_hash(&self) -> [u8; 16] {
        *self
            .content_hash
            .get_or_init(|| crate::event::content_hash(&[self.raw.as_bytes()]))
    }

    /// Sets [`Event::content_hash`] to `hash`, computed beforehand (with other events', see
    /// [`crate::event::content_hashes`]) from exactly [`Event::raw`]; no change once computed.
    pub fn set_content_hash(&self, hash: [u8; 16]) {
        let _ = self.content_hash.set(hash);
    }

    /// [`crate::event::content_id`] of the event's text (its hash in hex).
    pub fn content_id(&self) -> String {
        crate::event::hex_id(&self.content_hash())
    }

    /// The members of [`Event::raw`]'s object, in written order (listed once, on first use);
    /// `None` if the text is not one JSON object.
    pub fn raw_members(&self) -> Option<&[RawMember<'a>]> {
        self.text_members
            .get_or_init(|| members_of(self.raw))
            .as_deref()
    }

    /// True if a string member of the part of the event that holds `field` (the event itself,
    /// `user`, `impersonatedUser`, `objectRef` or `responseStatus`) was written `null`, which
    /// the typed fields show as absent: only then can `field`'s JSON member be there while
    /// [`Event::scalar`] gives no value.
    pub fn null_near(&self, field: &crate::event::FieldRef) -> bool {
        use crate::event::FieldRef as F;
        match field {
            F::UserName | F::UserUid => self.user.as_ref().is_some_and(|u| u.had_null),
            F::ImpersonatedName | F::ImpersonatedUid => {
                self.impersonated_user.as_ref().is_some_and(|u| u.had_null)
            }
            F::ObjResource
            | F::ObjSubresource
            | F::ObjNamespace
            | F::ObjName
            | F::ObjApiGroup
            | F::ObjApiVersion
            | F::ObjUid
            | F::ObjResourceVersion => self.object_ref.as_ref().is_some_and(|o| o.had_null),
            F::StatusCode | F::StatusStatus | F::StatusReason | F::StatusMessage => {
                self.response_status.as_ref().is_some_and(|r| r.had_null)
            }
            _ => self.top_null,
        }
    }

    /// True if `stageTimestamp` is an RFC 3339 time (worked out once).
    pub fn has_rfc3339_stage_time(&self) -> bool {
        self.stage_time().0
    }

    /// `stageTimestamp` in nanoseconds since the epoch (worked out once); `None` if it is not
    /// an RFC 3339 time, or one outside the nanosecond range (before 1677 or after 2262).
    pub fn stage_time_nanos(&self) -> Option<i64> {
        self.stage_time().1
    }

    fn stage_time(&self) -> (bool, Option<i64>) {
        *self.stage_nanos.get_or_init(|| {
            match self.stage_timestamp.as_deref().and_then(parse_timestamp) {
                Some(t) => (true, t.timestamp_nanos_opt()),
                None => (false, None),
            }
        })
    }

    /// True if and only if AKS replaced the request or the response body by the string
    /// `skipped-too-big-size-object` (a body too big to log). Rules on fields inside that body
    /// cannot match. Two length comparisons; no parsing.
    pub fn body_omitted(&self) -> bool {
        const OMITTED: &str = "\"skipped-too-big-size-object\"";
        self.request_object == Some(OMITTED) || self.response_object == Some(OMITTED)
    }

    /// The event's time: `stageTimestamp`, else `requestReceivedTimestamp`, else `timestamp`.
    pub fn time_str(&self) -> Option<&str> {
        self.stage_timestamp
            .as_deref()
            .or(self.request_received_timestamp.as_deref())
            .or(self.timestamp.as_deref())
    }

    /// The event time as a UTC timestamp, if present and RFC 3339.
    /// Parsed once per event: detection (throttles, first-seen, correlations), the record and
    /// the document of the events flow all read it.
    pub fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self
            .time
            .get_or_init(|| self.time_str().and_then(parse_timestamp))
    }

    pub fn username(&self) -> Option<&str> {
        self.user.as_ref().and_then(|u| u.username.as_deref())
    }

    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    pub fn resource(&self) -> Option<&str> {
        self.object_ref.as_ref().and_then(|o| o.resource.as_deref())
    }

    /// `requestObject`, parsed on first use. `None` when absent or not valid JSON.
    pub fn request_object(&self) -> Option<&Value> {
        self.lazy()
            .request_object
            .get_or_init(|| parse_raw(self.request_object))
            .as_ref()
    }

    /// `responseObject`, parsed on first use.
    pub fn response_object(&self) -> Option<&Value> {
        self.lazy()
            .response_object
            .get_or_init(|| parse_raw(self.response_object))
            .as_ref()
    }

    /// The annotations as key/value pairs, parsed on first use. Non-string values are skipped.
    pub fn annotations(&self) -> &[(String, String)] {
        self.lazy().annotations.get_or_init(|| {
            let Some(raw) = self.annotations else {
                return Vec::new();
            };
            match super::json::parse_value(raw) {
                Some(Value::Object(map)) => map
                    .into_iter()
                    .filter_map(|(k, v)| match v {
                        Value::String(s) => Some((k, s)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        })
    }

    /// The annotations whose value has JSON escapes, unescaped, listed on first use (only
    /// those are copied).
    fn escaped_annotations(&self) -> &[(String, String)] {
        self.lazy().escaped_annotations.get_or_init(|| {
            let mut out = Vec::new();
            let Some(raw) = self.annotations else {
                return out;
            };
            let mut s = Scanner::new(raw);
            let scanned = s.object("annotations", |s: &mut Scanner<'a>, k: &str| {
                if s.peek() != Some(b'"') {
                    return s.skip_value().map(|_| ());
                }
                if let Cow::Owned(v) = s.string()? {
                    out.push((k.to_string(), v));
                }
                Ok(())
            });
            if scanned.is_err() {
                out.clear();
            }
            out
        })
    }

    /// One annotation's value. Scans the raw annotations without allocating; a value with
    /// JSON escapes is unescaped once per event ([`Event::escaped_annotations`]).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        let raw = self.annotations?;
        let mut s = Scanner::new(raw);
        let mut found: Option<Result<&'a str, ()>> = None;
        let scanned = s.object("annotations", |s: &mut Scanner<'a>, k: &str| {
            if k == key {
                // The last of duplicate keys wins, as in the parsed map and in redaction. An
                // escaped value is not decoded here: the event's list of them has it.
                found = match s.peek() {
                    Some(b'"') => match s.plain_string() {
                        Some(v) => Some(Ok(v)),
                        None => {
                            s.skip_value()?;
                            Some(Err(()))
                        }
                    },
                    // `null`, or an error for any other value (the parsed map decides).
                    _ => s.opt_string("annotation")?.and(None),
                };
                return Ok(());
            }
            s.skip_value().map(|_| ())
        });
        match (scanned, found) {
            (Ok(()), Some(Ok(v))) => Some(v),
            (Ok(()), None) => None,
            // The last member named `key` has an escaped value: it is the last of that name
            // among the escaped ones.
            (Ok(()), Some(Err(()))) => self
                .escaped_annotations()
                .iter()
                .rfind(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
            // A non-string member: use the parsed map.
            _ => self
                .annotations()
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
        }
    }

    pub(crate) fn user_extra(&self, impersonated: bool) -> Option<&Value> {
        if impersonated {
            self.lazy()
                .impersonated_extra
                .get_or_init(|| parse_raw(self.impersonated_user.as_ref().and_then(|u| u.extra)))
                .as_ref()
        } else {
            self.lazy()
                .user_extra
                .get_or_init(|| parse_raw(self.user.as_ref().and_then(|u| u.extra)))
                .as_ref()
        }
    }

    /// The whole event as a JSON value, parsed on first use (for fields without a typed accessor).
    pub fn whole(&self) -> Option<&Value> {
        self.lazy()
            .whole
            .get_or_init(|| super::json::parse_value(self.raw))
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_name_is_recognised_and_nothing_else() {
        use Member::*;
        let names = [
            ("kind", Kind),
            ("apiVersion", ApiVersion),
            ("level", Level),
            ("auditID", AuditId),
            ("stage", Stage),
            ("requestURI", RequestUri),
            ("verb", Verb),
            ("userAgent", UserAgent),
            ("requestReceivedTimestamp", RequestReceivedTimestamp),
            ("stageTimestamp", StageTimestamp),
            ("timestamp", Timestamp),
            ("user", User),
            ("impersonatedUser", ImpersonatedUser),
            ("sourceIPs", SourceIps),
            ("objectRef", ObjectRef),
            ("responseStatus", ResponseStatus),
            ("requestObject", RequestObject),
            ("responseObject", ResponseObject),
            ("annotations", Annotations),
            ("items", Items),
        ];
        for (name, member) in names {
            assert_eq!(Member::of(name), member, "{name}");
            // Same length, one byte off; other case: not members.
            let mut off = name.as_bytes().to_vec();
            off[name.len() / 2] ^= 0x01;
            assert_eq!(
                Member::of(std::str::from_utf8(&off).unwrap()),
                Other,
                "{name}"
            );
            assert_eq!(Member::of(&name.to_uppercase()), Other, "{name}");
        }
        for other in ["", "a", "kinds", "auditId", "sourceIps", "metadata"] {
            assert_eq!(Member::of(other), Other, "{other}");
        }
        // The expected order names each member as `Member::of` does.
        for (name, member) in ORDER.iter().zip(ORDER_MEMBERS) {
            assert_eq!(Member::of(name), member, "{name}");
        }
    }

    #[test]
    fn members_in_any_order_decode_alike() {
        // In the API server's order, reversed, with unknown members and an escaped name
        // between them, and pretty-printed: the same event.
        let members = [
            r#""kind":"Event""#,
            r#""level":"Metadata""#,
            r#""auditID":"a-1""#,
            r#""stage":"ResponseComplete""#,
            r#""requestURI":"/api/v1/pods""#,
            r#""verb":"list""#,
            r#""user":{"username":"u","groups":["g"]}"#,
            r#""sourceIPs":["10.0.0.1"]"#,
            r#""objectRef":{"resource":"pods"}"#,
            r#""responseStatus":{"code":200}"#,
            r#""stageTimestamp":"2026-01-01T00:00:00Z""#,
        ];
        let render = |ev: &Event<'_>| {
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                ev.kind,
                ev.level,
                ev.audit_id,
                ev.stage,
                ev.request_uri,
                ev.verb,
                ev.username(),
                ev.source_ips,
                ev.resource(),
                ev.stage_timestamp
            )
        };
        let base = format!("{{{}}}", members.join(","));
        let want = render(&Event::parse(&base).unwrap());
        let mut reversed = members.to_vec();
        reversed.reverse();
        let mut odd = members.to_vec();
        odd.insert(3, r#""stages":"x""#);
        odd.insert(1, r#""verbs":1"#);
        assert_eq!(odd[7], members[5]);
        odd[7] = r#""ver\u0062":"list""#;
        for text in [
            format!("{{{}}}", reversed.join(",")),
            format!("{{{}}}", odd.join(",")),
            format!("{{ {} }}", members.join(" ,\n ")),
        ] {
            assert_eq!(render(&Event::parse(&text).unwrap()), want, "{text}");
        }
        // A repeated member is still refused when predicted.
        let dup = format!("{{{},{}}}", members.join(","), members[5]);
        assert!(Event::parse(&dup).is_err());
    }

    /// Every day from year 0 to 9999 in steps, every month end, leap days and the days after
    /// them, with times at the edges: the fast parser gives what chrono's RFC 3339 parser
    /// gives, and refuses what chrono refuses.
    #[test]
    fn the_fast_time_parser_agrees_with_chrono_on_calendar_edges() {
        let mut checked = 0;
        for year in (0..=9999)
            .step_by(7)
            .chain([1600, 1900, 1970, 2000, 2024, 2100, 2400])
        {
            for month in 0..=13 {
                for day in [0, 1, 27, 28, 29, 30, 31, 32] {
                    for time in [
                        "00:00:00",
                        "23:59:59.999999999",
                        "12:34:56.5",
                        "24:00:00",
                        "23:60:00",
                    ] {
                        let t = format!("{year:04}-{month:02}-{day:02}T{time}Z");
                        let want = chrono::DateTime::parse_from_rfc3339(&t)
                            .ok()
                            .map(|d| d.with_timezone(&chrono::Utc));
                        assert_eq!(parse_utc(&t), want, "{t}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 500_000);
    }

    #[test]
    fn the_fast_time_parser_agrees_with_rfc3339() {
        for t in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.1Z",
            "2024-05-01T12:00:00.123456Z",
            "2024-05-01T12:00:00.123456789Z",
            "2024-02-29T23:59:59.999999Z",
            "1999-12-31t00:00:00Z",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(t).unwrap();
            assert_eq!(parse_utc(t), Some(want.with_timezone(&chrono::Utc)), "{t}");
        }
        // Left to the general parser (or refused by both).
        for t in [
            "2024-05-01T12:00:00+02:00",
            "2024-05-01T12:00:60Z",
            "2023-02-29T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00.1234567890Z",
            "2024-05-01 12:00:00Z",
            "2024-5-01T12:00:00Z",
            "+024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.12a4Z",
        ] {
            assert_eq!(parse_utc(t), None, "{t}");
        }
        let ev = Event::parse(r#"{"kind":"Event","stageTimestamp":"2024-05-01T12:00:00+02:00"}"#)
            .unwrap();
        assert_eq!(
            ev.time().map(|t| t.to_rfc3339()),
            Some("2024-05-01T10:00:00+00:00".to_string())
        );
    }

    #[test]
    fn annotations_are_read_without_parsing_and_escapes_fall_back_to_the_map() {
        let text = r#"{"verb":"get","annotations":{"a.io/x":"plain","b.io/y":"esc\u0026aped","c":5,"d":"last"}}"#;
        let ev = Event::parse(text).unwrap();
        assert_eq!(ev.annotation("a.io/x"), Some("plain"));
        assert_eq!(ev.annotation("b.io/y"), Some("esc&aped"));
        assert_eq!(
            ev.annotation("c"),
            None,
            "non-string annotations are skipped"
        );
        assert_eq!(ev.annotation("d"), Some("last"));
        assert_eq!(ev.annotation("missing"), None);
        let dup = Event::parse(r#"{"verb":"get","annotations":{"k":"first","k":"last"}}"#).unwrap();
        assert_eq!(dup.annotation("k"), Some("last"));
        assert_eq!(dup.annotations(), &[("k".to_string(), "last".to_string())]);
        let none = Event::parse(r#"{"verb":"get","annotations":null}"#).unwrap();
        assert_eq!(none.annotation("a"), None);
        // Escaped values among duplicates: the last member of the name wins, as in the map.
        for (annotations, want) in [
            (r#"{"k":"a\"1","k":"plain","k":"b\"2"}"#, Some("b\"2")),
            (r#"{"k":"a\"1","k":"plain"}"#, Some("plain")),
            (r#"{"k":"plain","k":"a\"1","j":"c\"3"}"#, Some("a\"1")),
            (r#"{"\u006b":"x\"y"}"#, Some("x\"y")),
            (r#"{"k":"a\"1","k":5}"#, None),
            (r#"{"k":"a\"1","k":null}"#, None),
        ] {
            let text = format!(r#"{{"verb":"get","annotations":{annotations}}}"#);
            let ev = Event::parse(&text).unwrap();
            assert_eq!(ev.annotation("k"), want, "{annotations}");
            let map = ev.annotations().iter().find(|(k, _)| k == "k");
            assert_eq!(map.map(|(_, v)| v.as_str()), want, "{annotations}");
        }
    }

    #[test]
    fn members_of_the_wrong_type_and_duplicates_are_not_events() {
        for bad in [
            r#"{"verb":1}"#,
            r#"{"user":"alice"}"#,
            r#"{"user":{"groups":[1]}}"#,
            r#"{"sourceIPs":"1.2.3.4"}"#,
            r#"{"responseStatus":{"code":"200"}}"#,
            r#"{"responseStatus":{"code":2.5}}"#,
            r#"{"verb":"get","verb":"delete"}"#,
            r#"{"objectRef":{"namespace":"a","namespace":"b"}}"#,
        ] {
            assert!(
                matches!(Event::parse(bad), Err(JsonError::Type(_))),
                "{bad}"
            );
        }
        // A repeated nested member is read like the first, its own errors first, then refused.
        for (bad, why) in [
            (
                r#"{"user":{"username":"a"},"user":null}"#,
                "duplicate field `user`",
            ),
            (
                r#"{"user":{"username":"a"},"user":{"username":"b"}}"#,
                "duplicate field `user`",
            ),
            (
                r#"{"user":{"username":"a"},"user":{"username":5}}"#,
                "user.username must be a string",
            ),
            (
                r#"{"objectRef":{},"objectRef":{}}"#,
                "duplicate field `objectRef`",
            ),
            (
                r#"{"responseStatus":{},"responseStatus":{"code":"x"}}"#,
                "responseStatus.code must be an integer",
            ),
            (
                r#"{"impersonatedUser":{},"impersonatedUser":{}}"#,
                "duplicate field `impersonatedUser`",
            ),
        ] {
            assert_eq!(
                Event::parse(bad).err(),
                Some(JsonError::Type(why.into())),
                "{bad}"
            );
        }
        let first_null = Event::parse(r#"{"user":null,"user":{"username":"a"}}"#).unwrap();
        assert_eq!(first_null.username(), Some("a"));
        let ok = Event::parse(r#"{"verb":null,"user":null,"sourceIPs":null,"objectRef":null,"x":{"y":[1,{"z":null}]}}"#).unwrap();
        assert!(ok.verb.is_none() && ok.user.is_none() && ok.source_ips.is_empty());
    }
}
