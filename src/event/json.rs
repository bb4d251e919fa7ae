//! A small JSON scanner specialised for audit events: it validates the whole text (RFC 8259,
//! nesting up to 257 levels), borrows strings that contain no escapes, and hands back the raw
//! text of values it does not need to look at. Parsing an event touches each byte about once and
//! allocates only for strings with escapes.
//!
//! It is a little more lenient than `serde_json`, as Go's `encoding/json` (which writes audit
//! logs) is: a lone surrogate escape becomes U+FFFD and a number beyond `f64` is kept as text.
//! Bodies parsed later ([`parse_value`]) go through the same scanner, so an event that decoded
//! never has a body that fails to parse, whatever a client put in its PATCH.
//!
//! Strings are found sixteen bytes at a time (SSE2 on x86_64, eight with SWAR elsewhere): a block
//! is tested for `"`, `\` and control bytes at once instead of one comparison per byte.

use std::borrow::Cow;

/// Why a text is not an acceptable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (with the byte offset).
    Syntax(String, usize),
    /// The text ended inside a value.
    Eof,
    /// Valid JSON of the wrong shape for an audit event.
    Type(String),
}

pub type Result<T> = std::result::Result<T, JsonError>;

/// Deep enough for any event (and an alert document that embeds one), shallow enough for the
/// stack.
const MAX_DEPTH: usize = 256;

/// A cursor over JSON text.
pub struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    pub pos: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bytes of `v` equal to `c` (high bit set in each matching byte; exact for the lowest match).
#[inline]
fn eq_mask(v: u64, c: u8) -> u64 {
    let x = v ^ (ONES * c as u64);
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Bytes of `v` below 0x20 (exact for the lowest match).
#[inline]
fn ctrl_mask(v: u64) -> u64 {
    v.wrapping_sub(ONES * 0x20) & !v & HIGH
}

/// The position of the first `"`, `\` or control byte of `b` at or after `from`; `b.len()` if
/// none. Sixteen bytes a step with SSE2 on x86_64, then eight, then one.
#[inline]
fn first_special(b: &[u8], mut at: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // SSE2 is part of x86_64.
        use std::arch::x86_64::*;
        while at + 16 <= b.len() {
            // SAFETY: `at + 16 <= len`, so the unaligned 16-byte load stays inside `b`; SSE2
            // is always available on x86_64.
            #[allow(unsafe_code, reason = "SSE2 scan; bounds checked above")]
            let m = unsafe {
                let v = _mm_loadu_si128(b.as_ptr().add(at) as *const __m128i);
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                let limit = _mm_set1_epi8(0x1f);
                let ctrl = _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit);
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), ctrl)) as u32
            };
            if m != 0 {
                return at + m.trailing_zeros() as usize;
            }
            at += 16;
        }
    }
    while at + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        let v = u64::from_le_bytes(w);
        let m = eq_mask(v, b'"') | eq_mask(v, b'\\') | ctrl_mask(v);
        if m != 0 {
            return at + (m.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&c) = b.get(at) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Self {
        Scanner {
            text,
            b: text.as_bytes(),
            pos: 0,
        }
    }

    fn syntax<T>(&self, what: &str) -> Result<T> {
        if self.pos >= self.b.len() {
            return Err(JsonError::Eof);
        }
        Err(JsonError::Syntax(what.to_string(), self.pos))
    }

    #[inline]
    pub fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.pos).copied()
    }

    #[inline(always)]
    fn expect(&mut self, c: u8) -> Result<()> {
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            return Ok(());
        }
        self.expect_after_ws(c)
    }

    /// [`Self::expect`] past whitespace (pretty-printed input), or the error.
    #[cold]
    #[inline(never)]
    fn expect_after_ws(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.syntax(&format!("expected `{}`", c as char))
        }
    }

    /// Moves to the first `"`, `\` or control byte at or after `pos` ([`first_special`]).
    #[inline]
    fn find_special(&mut self) {
        self.pos = first_special(self.b, self.pos);
    }

    /// Parses a string (the cursor on its opening quote). Borrows unless it has escapes.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'a, str>> {
        if self.b.get(self.pos) != Some(&b'"') && self.peek() != Some(b'"') {
            return self.syntax("expected a string");
        }
        self.pos += 1;
        let start = self.pos;
        self.find_special();
        match self.b.get(self.pos) {
            Some(b'"') => {
                let s = &self.text[start..self.pos];
                self.pos += 1;
                Ok(Cow::Borrowed(s))
            }
            Some(b'\\') => {
                // Room for more than the text before the first escape, so that the decoded
                // rest is not copied again as it grows.
                let mut out = String::with_capacity(2 * (self.pos - start) + 64);
                out.push_str(&self.text[start..self.pos]);
                self.unescape_into(&mut out)?;
                Ok(Cow::Owned(out))
            }
            Some(_) => self.syntax("control character in a string"),
            None => Err(JsonError::Eof),
        }
    }

    /// Copies the string at the cursor (on its opening quote) to `out` as [`write_json_str`]
    /// writes its value. A string whose escapes are all spelt as `write_json_str` spells them
    /// (`\"`, `\\`, `\n`, `\u001f`, ...) is copied as it is, without being decoded; any other
    /// is decoded and written again.
    pub fn copy_string(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let (literal, canonical) = self.string_literal()?;
        if canonical {
            out.extend_from_slice(literal.as_bytes());
        } else {
            write_json_str(out, &Scanner::new(literal).string()?);
        }
        Ok(())
    }

    /// Skips the string at the cursor and returns its literal (quotes included), and whether
    /// [`write_json_str`] would write its value exactly so (see [`Self::copy_string`]).
    pub fn string_literal(&mut self) -> Result<(&'a str, bool)> {
        if self.peek() != Some(b'"') {
            return self.syntax("expected a string");
        }
        let start = self.pos;
        let canonical = self.skip_string_canonical()?;
        Ok((&self.text[start..self.pos], canonical))
    }

    /// With the cursor on an opening quote: a string without escapes, read in place (the common
    /// case, inlined). Otherwise `None`, with the cursor left on the quote for [`Self::string`].
    #[inline]
    pub(crate) fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.pos + 1;
        self.pos = start;
        self.find_special();
        if self.b.get(self.pos) == Some(&b'"') {
            let v = &self.text[start..self.pos];
            self.pos += 1;
            return Some(v);
        }
        self.pos = start - 1;
        None
    }

    /// Skips a string without building it (still validating escapes).
    fn skip_string(&mut self) -> Result<()> {
        if self.plain_string_skipped() {
            return Ok(());
        }
        self.rest_of_string(|_| {})
    }

    /// From a string's opening quote (checked by the caller) to its first special byte: true,
    /// and past the string, when that byte is its closing quote (no escapes, the common case).
    #[inline]
    fn plain_string_skipped(&mut self) -> bool {
        self.pos += 1;
        self.find_special();
        if self.b.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            return true;
        }
        false
    }

    /// [`Self::skip_string`], true if the string has escapes. A string without any (most keys
    /// and values) costs one search and no call.
    #[inline]
    fn skip_string_noting_escapes(&mut self) -> Result<bool> {
        if self.plain_string_skipped() {
            return Ok(false);
        }
        self.rest_of_string(|_| {}).map(|()| true)
    }

    /// [`Self::skip_string`], true if the string has no escape that [`write_json_str`] would
    /// spell otherwise ([`canonical_escape`]): the literal is its value written again.
    #[inline]
    fn skip_string_canonical(&mut self) -> Result<bool> {
        if self.plain_string_skipped() {
            return Ok(true);
        }
        let mut canonical = true;
        self.rest_of_string(|escape| canonical &= canonical_escape(escape))?;
        Ok(canonical)
    }

    /// The rest of a string from a special byte (found by [`Self::find_special`]) to past its
    /// closing quote, validating escapes; each escape's text goes to `escape`.
    #[inline(never)]
    fn rest_of_string(&mut self, mut escape: impl FnMut(&[u8])) -> Result<()> {
        loop {
            match self.b.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let at = self.pos;
                    self.escape(&mut None)?;
                    escape(&self.b[at..self.pos]);
                }
                Some(_) => return self.syntax("control character in a string"),
                None => return Err(JsonError::Eof),
            }
            self.find_special();
        }
    }

    /// Continues an escaped string into `out` from the cursor (on a `\`) to the closing quote.
    fn unescape_into(&mut self, out: &mut String) -> Result<()> {
        loop {
            match self.b.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let mut o = Some(&mut *out);
                    self.escape(&mut o)?;
                }
                Some(_) => return self.syntax("control character in a string"),
                None => return Err(JsonError::Eof),
            }
            let start = self.pos;
            self.find_special();
            out.push_str(&self.text[start..self.pos]);
        }
    }

    /// Decodes one escape sequence at the cursor (on a `\`), pushing it to `out` if given.
    fn escape(&mut self, out: &mut Option<&mut String>) -> Result<()> {
        self.pos += 1;
        let c = match self.b.get(self.pos) {
            Some(c) => *c,
            None => return Err(JsonError::Eof),
        };
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                // Lone surrogates become U+FFFD, as Go's encoding/json (which writes audit
                // logs) does when it reads them.
                let hi = self.hex4()?;
                if (0xD800..0xDC00).contains(&hi)
                    && self.b.get(self.pos) == Some(&b'\\')
                    && self.b.get(self.pos + 1) == Some(&b'u')
                {
                    let save = self.pos;
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if (0xDC00..0xE000).contains(&lo) {
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        char::from_u32(cp).unwrap_or('\u{FFFD}')
                    } else {
                        self.pos = save;
                        '\u{FFFD}'
                    }
                } else {
                    char::from_u32(hi).unwrap_or('\u{FFFD}')
                }
            }
            _ => {
                self.pos -= 1;
                return self.syntax("invalid escape");
            }
        };
        if let Some(o) = out {
            o.push(ch);
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = match self.b.get(self.pos) {
                Some(c) => *c,
                None => return Err(JsonError::Eof),
            };
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return self.syntax("invalid \\u escape"),
            };
            v = v * 16 + d as u32;
            self.pos += 1;
        }
        Ok(v)
    }

    /// Validates a number at the cursor and returns its text.
    pub fn number(&mut self) -> Result<&'a str> {
        self.skip_ws();
        let start = self.pos;
        let b = self.b;
        let digits = |p: &mut usize| {
            let s = *p;
            while b.get(*p).is_some_and(u8::is_ascii_digit) {
                *p += 1;
            }
            *p - s
        };
        let mut p = self.pos;
        if b.get(p) == Some(&b'-') {
            p += 1;
        }
        match b.get(p) {
            Some(b'0') => p += 1,
            Some(b'1'..=b'9') => {
                digits(&mut p);
            }
            None => return Err(JsonError::Eof),
            _ => {
                self.pos = p;
                return self.syntax("invalid number");
            }
        }
        if b.get(p) == Some(&b'.') {
            p += 1;
            if digits(&mut p) == 0 {
                self.pos = p;
                return self.syntax("invalid number");
            }
        }
        if matches!(b.get(p), Some(b'e' | b'E')) {
            p += 1;
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            if digits(&mut p) == 0 {
                self.pos = p;
                return self.syntax("invalid number");
            }
        }
        self.pos = p;
        Ok(&self.text[start..p])
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        let end = self.pos + word.len();
        if end > self.b.len() {
            return if word.starts_with(&self.b[self.pos..]) {
                Err(JsonError::Eof)
            } else {
                self.syntax("invalid literal")
            };
        }
        if &self.b[self.pos..end] == word {
            self.pos = end;
            Ok(())
        } else {
            self.syntax("invalid literal")
        }
    }

    /// Validates and skips one value; returns its raw text.
    pub fn skip_value(&mut self) -> Result<&'a str> {
        self.skip_ws();
        let start = self.pos;
        self.skip_inner(0)?;
        Ok(&self.text[start..self.pos])
    }

    fn skip_inner(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return self.syntax("nesting too deep");
        }
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{') => {
                if self.open(b'{', b'}', "", "")? {
                    return Ok(());
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return self.syntax("expected a key");
                    }
                    self.skip_string()?;
                    self.expect(b':')?;
                    self.skip_inner(depth + 1)?;
                    if self.next_or_close(b'}')? {
                        return Ok(());
                    }
                }
            }
            Some(b'[') => {
                if self.open(b'[', b']', "", "")? {
                    return Ok(());
                }
                loop {
                    self.skip_inner(depth + 1)?;
                    if self.next_or_close(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            Some(_) => self.syntax("expected a value"),
            None => Err(JsonError::Eof),
        }
    }

    /// True (and consumes it) if the next value is `null`.
    pub fn null(&mut self) -> Result<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Consumes the opening `open` of a container. Valid JSON of another type is a type error
    /// (reported after checking that it is JSON). Returns true if the container is empty (and
    /// consumes its closing byte too).
    #[inline]
    fn open(&mut self, open: u8, close: u8, what: &str, kind: &str) -> Result<bool> {
        match self.peek() {
            Some(c) if c == open => self.pos += 1,
            Some(b'"' | b'{' | b'[' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                return self.type_error(what, kind);
            }
            _ => return self.syntax("expected a value"),
        }
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    #[cold]
    fn type_error<T>(&mut self, what: &str, kind: &str) -> Result<T> {
        self.skip_value()?;
        Err(JsonError::Type(format!("{what} must be {kind}")))
    }

    /// After a member or element: true at the end of the container.
    #[inline]
    fn next_or_close(&mut self, close: u8) -> Result<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => self.syntax(if close == b'}' {
                "expected `,` or `}`"
            } else {
                "expected `,` or `]`"
            }),
        }
    }

    /// Iterates an object's members: `f(scanner, key)` must consume the value.
    pub fn object<F: FnMut(&mut Self, &str) -> Result<()>>(
        &mut self,
        what: &str,
        mut f: F,
    ) -> Result<()> {
        if self.open(b'{', b'}', what, "an object")? {
            return Ok(());
        }
        loop {
            // Keys without escapes (all of them, in practice) are read in place.
            if self.b.get(self.pos) != Some(&b'"') && self.peek() != Some(b'"') {
                return self.syntax("expected a key");
            }
            if let Some(key) = self.plain_string() {
                self.expect(b':')?;
                f(self, key)?;
            } else {
                let key = self.string()?;
                self.expect(b':')?;
                f(self, &key)?;
            }
            if self.next_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    /// Like [`Self::object`], for objects whose keys usually come in one order (`expected`):
    /// a key is first compared with the next two or three expected names, which spares scanning
    /// it. `f(scanner, key, expected index)` gets `None` for a key that was not predicted.
    #[inline]
    pub fn object_in_order<F: FnMut(&mut Self, &str, Option<usize>) -> Result<()>>(
        &mut self,
        what: &str,
        expected: &[&str],
        mut f: F,
    ) -> Result<()> {
        if self.open(b'{', b'}', what, "an object")? {
            return Ok(());
        }
        let mut next = 0;
        loop {
            if self.b.get(self.pos) != Some(&b'"') && self.peek() != Some(b'"') {
                return self.syntax("expected a key");
            }
            // `"name"` exactly: the name's bytes, then the closing quote. Names have no quote
            // or backslash, so this is that string and no other.
            let rest = &self.b[self.pos + 1..];
            let predicted = (next..expected.len().min(next + 3)).find(|&j| {
                let name = expected[j].as_bytes();
                rest.len() > name.len() && rest[name.len()] == b'"' && &rest[..name.len()] == name
            });
            match predicted {
                Some(j) => {
                    let key = expected[j];
                    self.pos += key.len() + 2;
                    self.expect(b':')?;
                    next = j + 1;
                    f(self, key, Some(j))?;
                }
                None => {
                    if let Some(key) = self.plain_string() {
                        self.expect(b':')?;
                        f(self, key, None)?;
                    } else {
                        let key = self.string()?;
                        self.expect(b':')?;
                        f(self, &key, None)?;
                    }
                }
            }
            if self.next_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    /// Iterates an array's elements: `f(scanner)` must consume each.
    pub fn array<F: FnMut(&mut Self) -> Result<()>>(&mut self, what: &str, mut f: F) -> Result<()> {
        if self.open(b'[', b']', what, "an array")? {
            return Ok(());
        }
        loop {
            f(self)?;
            if self.next_or_close(b']')? {
                return Ok(());
            }
        }
    }

    /// A string or `null`; any other valid value is a type error.
    #[inline]
    pub fn opt_string(&mut self, what: &str) -> Result<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'"') => match self.plain_string() {
                Some(v) => Ok(Some(Cow::Borrowed(v))),
                None => self.string().map(Some),
            },
            Some(b'n') => self.literal(b"null").map(|()| None),
            _ => {
                self.skip_value()?;
                Err(JsonError::Type(format!("{what} must be a string")))
            }
        }
    }

    /// Builds a `serde_json::Value` (the same acceptance as the rest of the scanner, so a body
    /// that decoded as part of an event always parses). Duplicate keys: the last wins.
    /// Numbers outside the range of `f64` are kept as their text, in a string.
    pub fn value(&mut self, depth: usize) -> Result<serde_json::Value> {
        self.value_noting_repeats(depth, &mut Vec::new())
    }

    /// [`Self::value`], pushing to `replaced` every value that a repeated key replaced (so a
    /// caller can see that the text was ambiguous, and what the last-wins value hides).
    /// Allocates nothing more when no key repeats.
    pub fn value_noting_repeats(
        &mut self,
        depth: usize,
        replaced: &mut Vec<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        use serde_json::Value;
        if depth > MAX_DEPTH {
            return self.syntax("nesting too deep");
        }
        match self.peek() {
            Some(b'"') => Ok(Value::String(self.string()?.into_owned())),
            Some(b'{') => {
                let mut map = serde_json::Map::new();
                self.object("", |s: &mut Self, k: &str| {
                    let v = s.value_noting_repeats(depth + 1, replaced)?;
                    if let Some(old) = map.insert(k.to_string(), v) {
                        replaced.push(old);
                    }
                    Ok(())
                })?;
                Ok(Value::Object(map))
            }
            Some(b'[') => {
                let mut items = Vec::new();
                self.array("", |s: &mut Self| {
                    items.push(s.value_noting_repeats(depth + 1, replaced)?);
                    Ok(())
                })?;
                Ok(Value::Array(items))
            }
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                Ok(number_value(n))
            }
            Some(_) => self.syntax("expected a value"),
            None => Err(JsonError::Eof),
        }
    }

    /// Copies one value to `out` as compact JSON, without building it: what serializing
    /// [`Self::value`] writes, up to the order of keys and the spelling of numbers. Strings
    /// without escapes are copied as they are; strings with escapes are decoded and written
    /// again (so a lone surrogate is written as U+FFFD, as [`Self::value`] reads it), and a
    /// number beyond `f64` becomes a string. `None` for an object with a repeated key, which
    /// the caller must build instead (the last one wins).
    pub fn copy_value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<Option<()>> {
        // Most values are written as they would be written again: one copy of their text.
        if let Some(text) = self.verbatim_text(depth) {
            out.extend_from_slice(text.as_bytes());
            return Ok(Some(()));
        }
        self.copy_value_again(out, depth)
    }

    /// Writes the value at the cursor exactly as serializing [`Self::value`] writes it (the keys
    /// of each object in order, numbers as `serde_json` prints them, strings as
    /// [`write_json_str`] spells them), the same bytes, without building the value: the text
    /// is read once into borrowed pieces, and each object's members are sorted. `None` (with
    /// `out` partly written) for an object with a repeated key, which the caller must build
    /// instead (the last one wins there).
    pub fn copy_value_sorted(&mut self, out: &mut Vec<u8>) -> Result<Option<()>> {
        let mut tree = SortedTree::default();
        let root = self.read_sorted(&mut tree, 0)?;
        if tree.repeated {
            return Ok(None);
        }
        tree.write(&root, out);
        Ok(Some(()))
    }

    /// The value at the cursor into `tree`, read whole (a repeated key is noted in `tree`).
    fn read_sorted(&mut self, tree: &mut SortedTree<'a>, depth: usize) -> Result<SortedValue<'a>> {
        if depth > MAX_DEPTH {
            return self.syntax("nesting too deep");
        }
        match self.peek() {
            Some(b'"') => {
                let (literal, canonical) = self.string_literal()?;
                Ok(SortedValue::Str(literal, canonical))
            }
            Some(b'{') => {
                let mut members: smallvec::SmallVec<[(Cow<'a, str>, SortedValue<'a>); 8]> =
                    smallvec::SmallVec::new();
                if !self.open(b'{', b'}', "", "")? {
                    loop {
                        if self.b.get(self.pos) != Some(&b'"') && self.peek() != Some(b'"') {
                            return self.syntax("expected a key");
                        }
                        let key = self.string()?;
                        self.expect(b':')?;
                        let value = self.read_sorted(tree, depth + 1)?;
                        members.push((key, value));
                        if self.next_or_close(b'}')? {
                            break;
                        }
                    }
                }
                // `serde_json::Map` is ordered by key, byte by byte, as `str` is.
                members.sort_by(|a, b| a.0.cmp(&b.0));
                tree.repeated |= members.windows(2).any(|w| w[0].0 == w[1].0);
                let start = tree.members.len();
                let len = members.len();
                tree.members.extend(members);
                Ok(SortedValue::Object(start, len))
            }
            Some(b'[') => {
                let mut items: smallvec::SmallVec<[SortedValue<'a>; 8]> = smallvec::SmallVec::new();
                self.array("", |s: &mut Self| {
                    items.push(s.read_sorted(tree, depth + 1)?);
                    Ok(())
                })?;
                let start = tree.items.len();
                let len = items.len();
                tree.items.extend(items);
                Ok(SortedValue::Array(start, len))
            }
            Some(b't') => self.literal(b"true").map(|()| SortedValue::Word("true")),
            Some(b'f') => self.literal(b"false").map(|()| SortedValue::Word("false")),
            Some(b'n') => self.literal(b"null").map(|()| SortedValue::Word("null")),
            Some(b'-' | b'0'..=b'9') => Ok(SortedValue::Number(self.number()?)),
            Some(_) => self.syntax("expected a value"),
            None => Err(JsonError::Eof),
        }
    }

    /// The text of the value at the cursor, when [`Self::copy_value`] would write it exactly so
    /// (the cursor then after it); `None`, with the cursor where it was, otherwise.
    pub fn verbatim_text(&mut self, depth: usize) -> Option<&'a str> {
        self.skip_ws();
        let start = self.pos;
        match self.verbatim(depth) {
            Ok(true) => Some(&self.text[start..self.pos]),
            _ => {
                self.pos = start;
                None
            }
        }
    }

    /// [`Self::copy_value`] token by token, writing each again.
    fn copy_value_again(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<Option<()>> {
        if depth > MAX_DEPTH {
            return self.syntax("nesting too deep");
        }
        match self.peek() {
            Some(b'"') => {
                self.copy_string(out)?;
                Ok(Some(()))
            }
            Some(b'{') => {
                out.push(b'{');
                let mut keys = KeySet::default();
                let mut unique = true;
                if !self.open(b'{', b'}', "", "")? {
                    loop {
                        if self.b.get(self.pos) != Some(&b'"') && self.peek() != Some(b'"') {
                            return self.syntax("expected a key");
                        }
                        if !keys.is_empty() {
                            out.push(b',');
                        }
                        // A repeated key (or a hash collision): the caller decides.
                        match self.plain_string() {
                            Some(k) => {
                                unique &= keys.insert(k);
                                out.push(b'"');
                                out.extend_from_slice(k.as_bytes());
                                out.push(b'"');
                            }
                            None => {
                                let k = self.string()?;
                                unique &= keys.insert(&k);
                                write_json_str(out, &k);
                            }
                        }
                        out.push(b':');
                        self.expect(b':')?;
                        unique &= self.copy_value_again(out, depth + 1)?.is_some();
                        if self.next_or_close(b'}')? {
                            break;
                        }
                    }
                }
                out.push(b'}');
                Ok(unique.then_some(()))
            }
            Some(b'[') => {
                out.push(b'[');
                let mut first = true;
                let mut unique = true;
                self.array("", |s: &mut Self| {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    if s.copy_value_again(out, depth + 1)?.is_none() {
                        unique = false;
                    }
                    Ok(())
                })?;
                out.push(b']');
                Ok(unique.then_some(()))
            }
            Some(b't') => self.literal(b"true").map(|()| {
                out.extend_from_slice(b"true");
                Some(())
            }),
            Some(b'f') => self.literal(b"false").map(|()| {
                out.extend_from_slice(b"false");
                Some(())
            }),
            Some(b'n') => self.literal(b"null").map(|()| {
                out.extend_from_slice(b"null");
                Some(())
            }),
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                if n.parse::<f64>().is_ok_and(f64::is_finite) {
                    out.extend_from_slice(n.as_bytes());
                } else {
                    write_json_str(out, n);
                }
                Ok(Some(()))
            }
            Some(_) => self.syntax("expected a value"),
            None => Err(JsonError::Eof),
        }
    }

    /// Reads the value at the cursor, true if it is written exactly as [`Self::copy_value`]
    /// would write it: no whitespace between tokens, strings spelt as [`write_json_str`]
    /// spells them, keys without escapes and none repeated in an object, numbers that are
    /// finite `f64`s. False (at any point) or an error: the value is to be copied the slow way.
    fn verbatim(&mut self, depth: usize) -> Result<bool> {
        if depth > MAX_DEPTH {
            return Ok(false);
        }
        match self.b.get(self.pos) {
            Some(b'"') => self.skip_string_canonical(),
            Some(b'{') => {
                self.pos += 1;
                if self.b.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(true);
                }
                let mut keys = KeySet::default();
                loop {
                    if self.b.get(self.pos) != Some(&b'"') {
                        return Ok(false);
                    }
                    let start = self.pos;
                    if self.skip_string_noting_escapes()? {
                        return Ok(false);
                    }
                    let key = &self.text[start + 1..self.pos - 1];
                    if !keys.insert(key) || self.b.get(self.pos) != Some(&b':') {
                        return Ok(false);
                    }
                    self.pos += 1;
                    // A string value (most) without a call.
                    let value = if self.b.get(self.pos) == Some(&b'"') {
                        self.skip_string_canonical()?
                    } else {
                        self.verbatim(depth + 1)?
                    };
                    if !value {
                        return Ok(false);
                    }
                    if let Some(whole) = self.verbatim_next(b'}') {
                        return Ok(whole);
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                if self.b.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(true);
                }
                loop {
                    if !self.verbatim(depth + 1)? {
                        return Ok(false);
                    }
                    if let Some(whole) = self.verbatim_next(b']') {
                        return Ok(whole);
                    }
                }
            }
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| true),
            Some(b'n') => self.literal(b"null").map(|()| true),
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                Ok(n.parse::<f64>().is_ok_and(f64::is_finite))
            }
            _ => Ok(false),
        }
    }

    /// After a member or element in [`Self::verbatim`]: `None` on a comma (another follows),
    /// `Some(true)` on `close` (the container ends), `Some(false)` on anything else.
    fn verbatim_next(&mut self, close: u8) -> Option<bool> {
        match self.b.get(self.pos) {
            Some(b',') => {
                self.pos += 1;
                None
            }
            Some(&c) if c == close => {
                self.pos += 1;
                Some(true)
            }
            _ => Some(false),
        }
    }

    /// Checks that only whitespace follows.
    pub fn end(&mut self) -> Result<()> {
        if self.peek().is_some() {
            return self.syntax("trailing characters");
        }
        Ok(())
    }
}

/// A value of [`Scanner::copy_value_sorted`], borrowed from the text.
enum SortedValue<'a> {
    /// A string's literal (quotes included), and whether it is spelt as [`write_json_str`]
    /// spells its value.
    Str(&'a str, bool),
    Number(&'a str),
    /// `true`, `false` or `null`.
    Word(&'static str),
    /// `len` members of [`SortedTree::members`] from `start`, sorted by key.
    Object(usize, usize),
    /// `len` elements of [`SortedTree::items`] from `start`.
    Array(usize, usize),
}

/// The containers' contents of a value read by [`Scanner::copy_value_sorted`].
#[derive(Default)]
struct SortedTree<'a> {
    members: Vec<(Cow<'a, str>, SortedValue<'a>)>,
    items: Vec<SortedValue<'a>>,
    /// An object repeated a key.
    repeated: bool,
}

impl SortedTree<'_> {
    fn write(&self, v: &SortedValue<'_>, out: &mut Vec<u8>) {
        match v {
            SortedValue::Str(literal, true) => out.extend_from_slice(literal.as_bytes()),
            SortedValue::Str(literal, false) => {
                // Read once already: it decodes.
                let value = Scanner::new(literal).string().unwrap_or_default();
                write_json_str(out, &value);
            }
            SortedValue::Number(n) => {
                // Writing a number to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &number_value(n));
            }
            SortedValue::Word(w) => out.extend_from_slice(w.as_bytes()),
            SortedValue::Object(start, len) => {
                out.push(b'{');
                for (i, (key, value)) in self.members[*start..start + len].iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, key);
                    out.push(b':');
                    self.write(value, out);
                }
                out.push(b'}');
            }
            SortedValue::Array(start, len) => {
                out.push(b'[');
                for (i, value) in self.items[*start..start + len].iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write(value, out);
                }
                out.push(b']');
            }
        }
    }
}

fn number_value(text: &str) -> serde_json::Value {
    use serde_json::{Number, Value};
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Value::Number(u.into());
    }
    match text.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) => Value::Number(n),
        None => Value::String(text.to_string()),
    }
}

/// The fingerprints of an object's keys, to notice a repeated one: a list while the object is
/// small, a set beyond (so that a huge object costs linear time), and a bit per fingerprint's
/// top six bits in front of the list, so that most new keys are known new without a search.
pub struct KeySet {
    seen_bits: u64,
    len: usize,
    few: [u64; KEY_LIST],
    many: rustc_hash::FxHashSet<u64>,
}

/// The most keys [`KeySet`] keeps in its list.
const KEY_LIST: usize = 32;

impl Default for KeySet {
    fn default() -> Self {
        KeySet {
            seen_bits: 0,
            len: 0,
            few: [0; KEY_LIST],
            many: Default::default(),
        }
    }
}

/// A key's fingerprint: its length and its bytes, read as overlapping words (exact for keys of
/// up to 16 bytes but for the mixing's rare collisions). Two equal keys always have the same
/// fingerprint; two different keys with the same one are taken for a repeat, which only sends
/// the object the slow way.
#[inline]
fn fingerprint(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&key[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let n = key.len();
    let (first, last) = match n {
        0 => (0, 0),
        1..=3 => (
            u64::from(key[0]) | u64::from(key[n / 2]) << 8 | u64::from(key[n - 1]) << 16,
            0,
        ),
        4..=7 => {
            let half = |at: usize| {
                let mut w = [0u8; 4];
                w.copy_from_slice(&key[at..at + 4]);
                u64::from(u32::from_le_bytes(w))
            };
            (half(0) | half(n - 4) << 32, 0)
        }
        _ => (word(0), word(n - 8)),
    };
    let mut h = (first ^ (n as u64).rotate_left(56)).wrapping_mul(K);
    h = (h.rotate_left(29) ^ last).wrapping_mul(K);
    // The bytes between the first and last words, eight at a time (the last of these words
    // may overlap the last word).
    let mut at = 8;
    while at + 8 < n {
        h = (h.rotate_left(29) ^ word(at)).wrapping_mul(K);
        at += 8;
    }
    h ^ (h >> 32)
}

impl KeySet {
    /// False if the key (or another with the same fingerprint) was already there.
    #[inline]
    pub fn insert(&mut self, key: &str) -> bool {
        let h = fingerprint(key.as_bytes());
        if self.len < KEY_LIST {
            let bit = 1u64 << (h >> 58);
            if self.seen_bits & bit != 0 && self.few[..self.len].contains(&h) {
                return false;
            }
            self.seen_bits |= bit;
            self.few[self.len] = h;
            self.len += 1;
            return true;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.iter().copied());
        }
        self.many.insert(h)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `key` as the next member's key of an object being written (after a comma unless
    /// it is the first) and notes it; false if it repeats one.
    pub fn write_key(&mut self, out: &mut Vec<u8>, key: &str) -> bool {
        if !self.is_empty() {
            out.push(b',');
        }
        let new = self.insert(key);
        write_json_str(out, key);
        out.push(b':');
        new
    }
}

/// True if `b` holds a `"`, a `\\` or a control byte ([`first_special`]).
pub fn needs_escape(b: &[u8]) -> bool {
    first_special(b, 0) < b.len()
}

/// Writes `s` as a JSON string (quoted and escaped as `serde_json` escapes it).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // `serde_json` escapes exactly `"`, `\\` and control bytes; most strings have none.
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// True if `escape`, one escape sequence as [`Scanner::escape`] reads it (a surrogate pair is
/// one), is spelt as [`write_json_str`] (which is `serde_json`'s) spells its character: `\"`,
/// `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` in lowercase hex for the other control
/// characters. A literal whose escapes are all so is its value written again.
#[inline]
fn canonical_escape(escape: &[u8]) -> bool {
    match *escape {
        [b'\\', b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't'] => true,
        [b'\\', b'u', b'0', b'0', hi @ (b'0' | b'1'), lo] => {
            let low = match lo {
                b'0'..=b'9' => lo - b'0',
                b'a'..=b'f' => lo - b'a' + 10,
                _ => return false,
            };
            let code = if hi == b'1' { 16 + low } else { low };
            // These have short forms.
            !matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
        }
        _ => false,
    }
}

/// True if `text` is one JSON value in which no object repeats a key.
pub fn unique_keys(text: &str) -> bool {
    let mut s = Scanner::new(text);
    matches!(s.copy_value(&mut Vec::new(), 0), Ok(Some(()))) && s.end().is_ok()
}

/// Parses JSON text into a `Value` with the scanner's rules: every text an event was decoded
/// from parses, whatever its nesting or escapes. `None` if it is not one JSON value.
pub fn parse_value(text: &str) -> Option<serde_json::Value> {
    let mut s = Scanner::new(text);
    let v = s.value(0).ok()?;
    s.end().ok()?;
    Some(v)
}

/// An integer's decimal text, formatted without allocating or the formatting machinery (rule
/// values compared as text, numbers in documents).
pub struct IntBuf {
    buf: [u8; 24],
    start: usize,
}

impl IntBuf {
    pub fn unsigned(n: u64) -> IntBuf {
        let mut buf = [0u8; 24];
        let mut pos = buf.len();
        let mut n = n;
        loop {
            pos -= 1;
            buf[pos] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        IntBuf { buf, start: pos }
    }

    pub fn signed(i: i64) -> IntBuf {
        let mut b = IntBuf::unsigned(i.unsigned_abs());
        if i < 0 {
            b.start -= 1;
            b.buf[b.start] = b'-';
        }
        b
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position of strings of 0 to 40 bytes: a string needs escaping
    /// exactly when it holds a `"`, a `\\` or a control byte.
    #[test]
    fn needs_escape_finds_every_special_byte_wherever_it_is() {
        for len in 0..=40usize {
            assert!(!needs_escape(&vec![b'a'; len]));
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[at] = byte;
                    let want = byte < 0x20 || byte == b'"' || byte == b'\\';
                    assert_eq!(needs_escape(&b), want, "byte {byte} at {at} of {len}");
                }
            }
        }
    }

    /// Every key is new once and a repeat after, in small objects and past the list's bound,
    /// for keys that differ only in their length, their middle, or one byte.
    #[test]
    fn a_key_set_notices_every_repeat_and_no_new_key_is_a_repeat() {
        let mut keys: Vec<String> = (0..40).map(|n| "a".repeat(n)).collect();
        keys.extend((0..200).map(|i| format!("authentication.kubernetes.io/{i:03}/pod-name")));
        keys.extend((0..200).map(|i| format!("k{i}")));
        keys.extend((0..=255u8).map(|b| format!("annotation-{}-x", b as char)));
        keys.sort();
        keys.dedup();
        for n in [1, 5, 16, 31, 32, 33, keys.len()] {
            let mut set = KeySet::default();
            for k in &keys[..n] {
                assert!(set.insert(k), "{k:?} is new");
            }
            for k in &keys[..n] {
                assert!(!set.insert(k), "{k:?} repeats");
            }
        }
    }

    fn accepts(text: &str) -> bool {
        let mut s = Scanner::new(text);
        s.skip_value().and_then(|_| s.end()).is_ok()
    }

    #[test]
    fn a_string_is_copied_as_write_json_str_writes_its_value() {
        let literals = [
            r#""plain""#,
            r#""RBAC: allowed by ClusterRoleBinding \"x\" of ClusterRole \"y\"""#,
            r#""a\\b""#,
            r#""tab\tnew\nline\r\b\f""#,
            r#""\u001f\u0000\u0019""#,
            r#""upper \u001F""#,
            r#""short form \u000a \u0009 \u0008 \u000c \u000d""#,
            r#""slash \/""#,
            r#""letter \u0041 and \u00e9""#,
            r#""pair \ud83d\ude00""#,
            r#""lone \ud800 surrogate""#,
            "\"caf\u{e9} \\\" \u{1F600}\"",
            r#""trailing \\""#,
        ];
        for literal in literals {
            let read = Scanner::new(literal).string().unwrap().into_owned();
            let mut want = Vec::new();
            write_json_str(&mut want, &read);
            let mut got = Vec::new();
            let mut s = Scanner::new(literal);
            s.copy_string(&mut got).unwrap();
            assert!(s.end().is_ok(), "{literal}: the whole literal is read");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{literal}"
            );
            let mut s = Scanner::new(literal);
            let (copy, canonical) = s.string_literal().unwrap();
            assert!(s.end().is_ok());
            assert_eq!(copy, literal);
            assert_eq!(canonical, copy.as_bytes() == &want[..], "{literal}");
        }
        // Escapes spelt the canonical way are copied without decoding; others are not.
        for canonical in [r#"\""#, r#"\\"#, r#"\n"#, r#"\u001f"#, r#"\u0000"#] {
            assert!(canonical_escape(canonical.as_bytes()), "{canonical}");
        }
        for other in [
            r#"\/"#,
            r#"\u001F"#,
            r#"\u000a"#,
            r#"\u0041"#,
            r#"\ud800"#,
            r#"\ud83d\ude00"#,
        ] {
            assert!(!canonical_escape(other.as_bytes()), "{other}");
        }
    }

    /// The copy of a value's text (when it is written as it would be written again) and the
    /// token-by-token copy write the same bytes, whatever the spelling of the input.
    #[test]
    fn a_value_copied_whole_is_what_copying_it_token_by_token_writes() {
        let mut cases: Vec<String> = [
            r#"{"a":"b","c":[1,2.5,-3e2,true,false,null],"d":{}}"#,
            r#"{ "a" : "b" }"#,
            "{\"a\":\n\"b\"}",
            r#"{"a":"say \"hi\"","b":"x\\y","c":"\u001f"}"#,
            r#"{"a":"\/","b":"\u0041","c":"\u000a","d":"\ud83d\ude00"}"#,
            r#"{"k\u0061":"v"}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"[{"x":1},{"x":1}]"#,
            r#"{"n":1e999,"m":123456789012345678901234567890}"#,
            r#"{"n":-0,"m":0.000001}"#,
            r#"[]"#,
            r#"[[],[{}],"",0]"#,
            r#""plain""#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real");
        for f in ["openshift/audit_in.log", "audit2rbac/demo.log"] {
            match std::fs::read_to_string(data.join(f)) {
                Ok(text) => cases.extend(text.lines().map(String::from)),
                Err(_) => eprintln!("{} absent: the built-in cases only", data.display()),
            }
        }
        for case in &cases {
            let mut whole = Vec::new();
            let mut s = Scanner::new(case);
            let a = s.copy_value(&mut whole, 0).map(|r| r.is_some());
            let mut tokens = Vec::new();
            let mut t = Scanner::new(case);
            let b = t.copy_value_again(&mut tokens, 0).map(|r| r.is_some());
            assert_eq!(a.is_ok(), b.is_ok(), "{case}");
            if let (Ok(a), Ok(b)) = (a, b) {
                assert_eq!(a, b, "{case}: repeated keys noticed alike");
                assert_eq!(
                    String::from_utf8_lossy(&whole),
                    String::from_utf8_lossy(&tokens),
                    "{case}"
                );
                assert_eq!(s.pos, t.pos, "{case}");
            }
        }
    }

    /// The sorted copy writes the bytes that serializing the built value writes, whatever the
    /// spelling of the input; it gives up exactly where a key repeats.
    #[test]
    fn a_value_copied_sorted_is_what_serializing_it_writes() {
        let mut cases: Vec<String> = [
            r#"{"b":"x","a":[1,2.5,-3e2,1E+2,true,false,null],"c":{},"A":0,"ab":1,"a\u0062":2}"#,
            r#"{ "z" : { "y" : [ { "b" : 1 , "a" : 2 } ] } , "é" : "ü" , "e" : "\u00e9" }"#,
            r#"{"a":"say \"hi\"","b":"x\\y","c":"\u001f","d":"\/","e":"\u0041\ud800"}"#,
            r#"{"a":"\ud83d\ude00","b":"<\u003c>\u0026","k\u0061":"v"}"#,
            r#"{"n":1e999,"m":123456789012345678901234567890,"o":18446744073709551615}"#,
            r#"{"n":-0,"m":0.000001,"o":1.50,"p":-9223372036854775808,"q":100e-2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":{"b":1,"\u0062":2}}"#,
            r#"[{"x":1},{"x":1},[{"y":[{"z":1,"z":1}]}]]"#,
            r#"[]"#,
            r#"[[],[{}],"",0,{"":1}]"#,
            r#""plain""#,
            "17",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real");
        let mut bodies = 0;
        for f in ["openshift/audit_in.log", "audit2rbac/demo.log"] {
            match std::fs::read_to_string(data.join(f)) {
                Ok(text) => {
                    for line in text.lines() {
                        let Ok(serde_json::Value::Object(ev)) =
                            serde_json::from_str::<serde_json::Value>(line)
                        else {
                            continue;
                        };
                        for key in ["requestObject", "responseObject"] {
                            if let Some(body) = ev.get(key) {
                                bodies += 1;
                                cases.push(serde_json::to_string_pretty(body).unwrap());
                            }
                        }
                        cases.push(line.to_string());
                    }
                }
                Err(_) => eprintln!("{} absent: the built-in cases only", data.display()),
            }
        }
        eprintln!("{} cases, {bodies} bodies of real events", cases.len());
        for case in &cases {
            let mut sorted = Vec::new();
            let got = Scanner::new(case).copy_value_sorted(&mut sorted);
            let mut replaced = Vec::new();
            let built = Scanner::new(case).value_noting_repeats(0, &mut replaced);
            assert_eq!(got.is_ok(), built.is_ok(), "{case}");
            let (Ok(got), Ok(built)) = (got, built) else {
                continue;
            };
            assert_eq!(
                got.is_none(),
                !replaced.is_empty(),
                "{case}: a repeated key"
            );
            if got.is_some() {
                assert_eq!(
                    String::from_utf8_lossy(&sorted),
                    serde_json::to_string(&built).unwrap(),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn the_scanner_accepts_exactly_what_serde_json_accepts() {
        let cases = [
            r#"{}"#,
            r#"[]"#,
            r#"{"a":1}"#,
            r#"{"a":[1,2,{"b":null}]}"#,
            r#""x""#,
            "0",
            "-0",
            "1.5e10",
            "1E+2",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "true",
            "nul",
            "null",
            "falsey",
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a"}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#""\u00e9\n\"""#,
            r#""\x""#,
            r#""\u12""#,
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\ude00""#,
            "\"a\u{1}b\"",
            "\"tab\there\"",
            r#""unterminated"#,
            "[1 2]",
            " { \"a\" : [ ] } ",
            "{} {}",
            "",
            r#"{"k":"v","k2":{"n":[true,false,null,-1.25e-3]}}"#,
            "[[[[[]]]]]",
            "\"é ü 😀\"",
            r#""12345678\"9""#,
            r#""abcdefghijklmnopqrstuvwxyz\\""#,
        ];
        for c in cases {
            let serde_ok = serde_json::from_str::<serde::de::IgnoredAny>(c).is_ok();
            assert_eq!(accepts(c), serde_ok, "{c:?}");
        }
    }

    #[test]
    fn strings_borrow_without_escapes_and_unescape_with_them() {
        let cases = [
            (r#""plain""#, "plain", true),
            (r#""a\u0026b""#, "a&b", false),
            (
                r#""long text without any escapes at all""#,
                "long text without any escapes at all",
                true,
            ),
            (r#""x\"y\\z\/\n""#, "x\"y\\z/\n", false),
            (r#""\ud83d\ude00 ok""#, "😀 ok", false),
            (r#""\ud83d x""#, "\u{FFFD} x", false),
            (r#""\ud83d\u0041""#, "\u{FFFD}A", false),
        ];
        for (input, want, borrowed) in cases {
            let s = Scanner::new(input).string().unwrap();
            assert_eq!(s, want);
            assert_eq!(matches!(s, Cow::Borrowed(_)), borrowed, "{input}");
        }
    }

    #[test]
    fn copies_are_compact_and_notice_repeated_keys() {
        let copy = |text: &str| {
            let mut out = Vec::new();
            let r = Scanner::new(text).copy_value(&mut out, 0).unwrap();
            (String::from_utf8(out).unwrap(), r.is_some())
        };
        let cases = [
            (
                " { \"a\" : [ 1 , 2.5e3 , true , null ] ,\n \"b\":{}} ",
                r#"{"a":[1,2.5e3,true,null],"b":{}}"#,
                true,
            ),
            // Escapes are decoded and written again; a lone surrogate as U+FFFD.
            (
                r#"{"k\u0065y":"a\u0026b\ud800"}"#,
                "{\"key\":\"a&b\u{fffd}\"}",
                true,
            ),
            (r#"{"s":"tab\tquote\""}"#, r#"{"s":"tab\tquote\""}"#, true),
            // Beyond f64: kept as text, in a string (as `parse_value` reads it).
            (r#"[1e400,-0]"#, r#"["1e400",-0]"#, true),
            (r#"{"a":1,"b":2,"a":3}"#, r#"{"a":1,"b":2,"a":3}"#, false),
            (
                r#"[{"x":{"y":1,"y":1}}]"#,
                r#"[{"x":{"y":1,"y":1}}]"#,
                false,
            ),
        ];
        for (text, want, unique) in cases {
            assert_eq!(copy(text), (want.to_string(), unique), "{text}");
            assert_eq!(unique_keys(text), unique, "{text}");
        }
        // Many keys: past the small list, the set still sees a repeat.
        let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{}}}", many.join(","));
        assert!(unique_keys(&text));
        assert!(!unique_keys(&format!("{{{},\"k7\":0}}", many.join(","))));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = "[".repeat(300) + &"]".repeat(300);
        assert!(!accepts(&deep));
        let ok = "[".repeat(250) + &"]".repeat(250);
        assert!(accepts(&ok));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|i| serde_json::json!(i)),
            (-1e6f64..1e6).prop_map(|f| serde_json::json!(f)),
            any::<String>().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn skipping_any_serialized_value_consumes_it_exactly(v in json_value()) {
            let text = serde_json::to_string(&v).unwrap();
            let mut s = Scanner::new(&text);
            proptest::prop_assert_eq!(s.skip_value().unwrap(), text.as_str());
            proptest::prop_assert!(s.end().is_ok());
        }

        #[test]
        fn strings_decode_like_serde_json(st in proptest::prelude::any::<String>()) {
            let text = serde_json::to_string(&st).unwrap();
            proptest::prop_assert_eq!(Scanner::new(&text).string().unwrap(), st.as_str());
        }

        #[test]
        fn strings_are_written_like_serde_json(st in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}])*") {
            let mut out = Vec::new();
            write_json_str(&mut out, &st);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&st).unwrap());
        }

        #[test]
        fn copied_values_read_back_as_the_value(v in json_value()) {
            // Compact or pretty-printed, a copy is the compact text.
            for text in [serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap()] {
                let mut out = Vec::new();
                let copied = Scanner::new(&text).copy_value(&mut out, 0).unwrap();
                let out = String::from_utf8(out).unwrap();
                proptest::prop_assert_eq!(parse_value(&out), parse_value(&text));
                // What `serde_json` writes compactly, byte for byte.
                proptest::prop_assert_eq!(&out, &serde_json::to_string(&v).unwrap());
                // `serde_json` never writes a key twice.
                proptest::prop_assert_eq!(copied, Some(()));
            }
        }

        #[test]
        fn acceptance_matches_serde_json_on_mutated_text(v in json_value(), at in 0usize..64, byte in 0u8..128) {
            let mut bytes = serde_json::to_string(&v).unwrap().into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let serde_ok = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
                proptest::prop_assert_eq!(accepts(text), serde_ok, "{:?}", text);
            }
        }
    }

    #[test]
    fn values_parse_like_serde_json_and_beyond_its_limits() {
        for text in [
            r#"{"a":[1,-2,3.5,true,null,"x\u0026y"],"b":{}}"#,
            "[]",
            "18446744073709551615",
        ] {
            assert_eq!(parse_value(text), serde_json::from_str(text).ok(), "{text}");
        }
        // What serde_json rejects but audit logs can hold: still a value.
        assert_eq!(
            parse_value(r#""\ud800x""#),
            Some(serde_json::json!("\u{FFFD}x"))
        );
        assert_eq!(parse_value("1e400"), Some(serde_json::json!("1e400")));
        let deep = format!("{}1{}", "[".repeat(127), "]".repeat(127));
        assert!(parse_value(&deep).is_some());
        assert_eq!(
            parse_value(r#"{"k":1,"k":2}"#),
            Some(serde_json::json!({"k": 2}))
        );
        assert_eq!(parse_value("{} x"), None);
    }
}
