//! The borrowed view of one audit event.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use smallvec::SmallVec;

/// Deserializers that borrow strings from the input when they contain no escapes. serde's own
/// `Cow` impl borrows only for a bare `Cow` field; these work inside `Option` and lists too.
mod cow {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Deserialize;

    pub struct CowStr<'a>(pub Cow<'a, str>);

    impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = CowStr<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                    Ok(CowStr(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(CowStr(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                    Ok(CowStr(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V)
        }
    }

    pub fn opt<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
        Ok(Option::<CowStr<'a>>::deserialize(d)?.map(|c| c.0))
    }

    /// A list of strings (`null` is an empty list).
    pub fn list<'de: 'a, 'a, D, A>(d: D) -> Result<smallvec::SmallVec<A>, D::Error>
    where
        D: Deserializer<'de>,
        A: smallvec::Array<Item = Cow<'a, str>>,
    {
        struct V<A>(std::marker::PhantomData<A>);
        impl<'de: 'a, 'a, A: smallvec::Array<Item = Cow<'a, str>>> Visitor<'de> for V<A> {
            type Value = smallvec::SmallVec<A>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(smallvec::SmallVec::new())
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(smallvec::SmallVec::new())
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut out = smallvec::SmallVec::new();
                while let Some(CowStr(s)) = seq.next_element::<CowStr<'a>>()? {
                    out.push(s);
                }
                Ok(out)
            }
        }
        d.deserialize_option(V(std::marker::PhantomData))
    }
}

/// `user` and `impersonatedUser` of an audit event.
#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub username: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::list")]
    pub groups: SmallVec<[Cow<'a, str>; 4]>,
    /// `extra` is a map of string lists; parsed only when a rule asks for it.
    #[serde(default, borrow)]
    pub extra: Option<&'a RawValue>,
}

/// `objectRef` of an audit event.
#[derive(Debug, Default, Deserialize)]
pub struct ObjectRef<'a> {
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub resource: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub subresource: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "apiGroup", deserialize_with = "cow::opt")]
    pub api_group: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "apiVersion", deserialize_with = "cow::opt")]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(
        default,
        borrow,
        rename = "resourceVersion",
        deserialize_with = "cow::opt"
    )]
    pub resource_version: Option<Cow<'a, str>>,
}

/// `responseStatus` of an audit event (a `metav1.Status`).
#[derive(Debug, Default, Deserialize)]
pub struct ResponseStatus<'a> {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub status: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub message: Option<Cow<'a, str>>,
}

/// One kube-apiserver audit event (`audit.k8s.io/v1` or `v1beta1`), borrowing its strings from the
/// bytes it was decoded from wherever they contain no JSON escapes.
///
/// `requestObject`, `responseObject`, `annotations` and `user.extra` stay raw JSON until a rule
/// asks for a path inside them; they are then parsed once and cached in the view. Decoding an
/// event allocates only for strings with escapes and for more than four groups or two source IPs.
#[derive(Debug, Default, Deserialize)]
pub struct Event<'a> {
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "apiVersion", deserialize_with = "cow::opt")]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub level: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "auditID", deserialize_with = "cow::opt")]
    pub audit_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub stage: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "requestURI", deserialize_with = "cow::opt")]
    pub request_uri: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub verb: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub user: Option<UserInfo<'a>>,
    #[serde(default, borrow, rename = "impersonatedUser")]
    pub impersonated_user: Option<Box<UserInfo<'a>>>,
    #[serde(default, borrow, rename = "sourceIPs", deserialize_with = "cow::list")]
    pub source_ips: SmallVec<[Cow<'a, str>; 2]>,
    #[serde(default, borrow, rename = "userAgent", deserialize_with = "cow::opt")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "objectRef")]
    pub object_ref: Option<ObjectRef<'a>>,
    #[serde(default, borrow, rename = "responseStatus")]
    pub response_status: Option<ResponseStatus<'a>>,
    #[serde(default, borrow, rename = "requestObject")]
    pub request_object: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "responseObject")]
    pub response_object: Option<&'a RawValue>,
    #[serde(
        default,
        borrow,
        rename = "requestReceivedTimestamp",
        deserialize_with = "cow::opt"
    )]
    pub request_received_timestamp: Option<Cow<'a, str>>,
    #[serde(
        default,
        borrow,
        rename = "stageTimestamp",
        deserialize_with = "cow::opt"
    )]
    pub stage_timestamp: Option<Cow<'a, str>>,
    /// `timestamp` of `v1beta1` and older events.
    #[serde(default, borrow, deserialize_with = "cow::opt")]
    pub timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub annotations: Option<&'a RawValue>,
    /// Present only on an `EventList`; the decoder unwraps it.
    #[serde(default, borrow)]
    pub(crate) items: Option<&'a RawValue>,

    /// The exact bytes of this event (one JSON object).
    #[serde(skip)]
    pub(crate) raw: &'a str,
    /// Boxed so that an event stays small to move; allocated on the first lazy access only.
    #[serde(skip)]
    lazy: OnceCell<Box<Lazy>>,
}

/// Parsed-on-demand parts of an event. Each is parsed at most once per event.
#[derive(Debug, Default)]
pub(crate) struct Lazy {
    pub request_object: OnceCell<Option<Value>>,
    pub response_object: OnceCell<Option<Value>>,
    pub annotations: OnceCell<Vec<(String, String)>>,
    pub user_extra: OnceCell<Option<Value>>,
    pub impersonated_extra: OnceCell<Option<Value>>,
    pub whole: OnceCell<Option<Value>>,
}

fn parse_raw(raw: Option<&RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

impl<'a> Event<'a> {
    fn lazy(&self) -> &Lazy {
        self.lazy.get_or_init(Box::default)
    }

    /// The exact JSON text of this event.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The event's time: `stageTimestamp`, else `requestReceivedTimestamp`, else `timestamp`.
    pub fn time_str(&self) -> Option<&str> {
        self.stage_timestamp
            .as_deref()
            .or(self.request_received_timestamp.as_deref())
            .or(self.timestamp.as_deref())
    }

    /// The event time as a UTC timestamp, if present and RFC 3339.
    pub fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let s = self.time_str()?;
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
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
            match serde_json::from_str::<std::collections::BTreeMap<String, Value>>(raw.get()) {
                Ok(map) => map
                    .into_iter()
                    .filter_map(|(k, v)| match v {
                        Value::String(s) => Some((k, s)),
                        _ => None,
                    })
                    .collect(),
                Err(_) => Vec::new(),
            }
        })
    }

    /// One annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
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
            .get_or_init(|| serde_json::from_str(self.raw).ok())
            .as_ref()
    }
}
