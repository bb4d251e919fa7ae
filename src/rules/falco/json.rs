//! Navigation over the text of a JSON value, the way the k8saudit plugin reads an event: object
//! members in their written order, array elements by index, and non-string values rendered as
//! compact JSON text.

use serde_json::value::RawValue;

/// One JSON value, borrowed from the event's text.
#[derive(Clone, Copy)]
pub(crate) struct Json<'a>(&'a str, Option<&'a [Member<'a>]>);

use crate::event::json::{JsonError, Scanner};
pub(crate) use crate::event::RawMember as Member;

/// The type of a JSON value, from its first character.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Other,
}

impl<'a> Json<'a> {
    /// The value whose text is `text`, or `None` if it is not one JSON value.
    pub(crate) fn parse(text: &'a str) -> Option<Json<'a>> {
        serde_json::from_str::<&RawValue>(text)
            .ok()
            .map(|v| Json(v.get(), None))
    }

    /// The object whose text is `text` (already validated), with the index of its members
    /// ([`members`]): looking one up then reads nothing.
    pub(crate) fn with_members(text: &'a str, members: &'a [Member<'a>]) -> Json<'a> {
        Json(text, Some(members))
    }

    /// The value's type.
    pub(crate) fn kind(self) -> Kind {
        match self.0.as_bytes().first() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            _ => Kind::Other,
        }
    }

    /// The member `key` of an object (the first one if repeated), or the element at index `key`
    /// of an array; `None` otherwise.
    pub(crate) fn get(self, key: &str) -> Option<Json<'a>> {
        match self.kind() {
            Kind::Object => match self.1 {
                Some(members) => members
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| Json(v, None)),
                None => find_member(self.0, key).map(|v| Json(v, None)),
            },
            Kind::Array => {
                let i: usize = key.parse().ok()?;
                self.items()?.get(i).copied()
            }
            _ => None,
        }
    }

    /// The value at the end of a chain of keys ([`Json::get`] at each step).
    pub(crate) fn path(self, keys: &[&str]) -> Option<Json<'a>> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    /// The elements of an array, `None` for anything else.
    pub(crate) fn items(self) -> Option<Vec<Json<'a>>> {
        if self.kind() != Kind::Array {
            return None;
        }
        let mut out = Vec::new();
        let mut s = Scanner::new(self.0);
        s.array("", |s| {
            out.push(Json(s.skip_value()?, None));
            Ok(())
        })
        .ok()?;
        Some(out)
    }

    /// The members of an object in written order, `None` for anything else.
    pub(crate) fn entries(self) -> Option<Vec<(String, Json<'a>)>> {
        if self.kind() != Kind::Object {
            return None;
        }
        let members = crate::event::members_of(self.0)?;
        Some(
            members
                .into_iter()
                .map(|(k, v)| (k.into_owned(), Json(v, None)))
                .collect(),
        )
    }

    /// The value as the plugin renders it: a string's content, or the compact JSON text of
    /// anything else.
    pub(crate) fn text(self) -> String {
        if self.kind() == Kind::String {
            if let Ok(s) = serde_json::from_str::<String>(self.0) {
                return s;
            }
        }
        compact(self.0)
    }

    /// True for the JSON literal `true`.
    pub(crate) fn is_true(self) -> bool {
        self.0 == "true"
    }
}

/// The value of the first member `key` of the object whose text is `text`, reading the members
/// up to it and no further.
fn find_member<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    let mut s = Scanner::new(text);
    let _ = s.object("", |s, k| {
        let v = s.skip_value()?;
        if k == key {
            found = Some(v);
            // Stop reading: the error ends the walk, and is not one.
            return Err(JsonError::Eof);
        }
        Ok(())
    });
    found
}

/// `text` without the blanks between tokens (blanks inside strings are kept).
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigates_objects_and_arrays_in_order() {
        let j = Json::parse(r#"{"b": [1, {"x": "y z"}], "a": true, "b": 2}"#).unwrap();
        assert_eq!(
            j.get("b").unwrap().get("1").unwrap().text(),
            r#"{"x":"y z"}"#
        );
        assert!(j.get("a").unwrap().is_true());
        let keys: Vec<String> = j.entries().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(j.path(&["b", "1", "x"]).unwrap().text(), "y z");
        assert!(j.path(&["b", "7"]).is_none());
    }
}
