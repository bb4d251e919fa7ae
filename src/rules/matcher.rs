//! Value matchers: one Sigma value (with its modifiers) compiled to the cheapest strategy that can
//! match it: exact, prefix, suffix, substring (aho-corasick), wildcard or user regex, CIDR,
//! numeric comparison, null and exists.

use std::net::IpAddr;

use aho_corasick::AhoCorasick;
use regex::Regex;

use crate::event::{Event, FieldRef, FieldValue};

/// A compiled string comparison.
#[derive(Debug, Clone)]
pub enum StrMatcher {
    /// `*`: any value at all.
    Any,
    /// Equality; the needle is lowercased unless `cased`.
    Exact {
        needle: String,
        cased: bool,
    },
    Prefix {
        needle: String,
        cased: bool,
    },
    Suffix {
        needle: String,
        cased: bool,
    },
    Contains {
        finder: Box<Finder>,
        needle: String,
        cased: bool,
    },
    /// Wildcards that fit no simpler shape, and user regexes (`re`).
    Regex(LazyRegex),
}

/// A regular expression compiled the first time it is matched. Compiling the pack's wildcard
/// and `re` patterns took a third of `tripline scan`'s start-up, and a stream seldom reaches
/// every rule that has one. Its syntax is checked when it is made, so a malformed pattern is
/// still a load error with its place. Clones share the compiled expression.
#[derive(Clone)]
pub struct LazyRegex {
    src: std::sync::Arc<str>,
    compiled: std::sync::Arc<std::sync::OnceLock<Option<Regex>>>,
    /// For a union ([`union_of_regexes`]): its members, matched one by one if the union
    /// turns out too large to compile.
    parts: std::sync::Arc<[LazyRegex]>,
}

impl std::fmt::Debug for LazyRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LazyRegex({:?})", self.src)
    }
}

impl LazyRegex {
    /// `src` checked as the regex crate's parser checks it (syntax, nesting, invalid UTF-8);
    /// compiled on first use.
    pub fn new(src: &str) -> Result<LazyRegex, regex::Error> {
        regex_syntax::ParserBuilder::new()
            .build()
            .parse(src)
            .map_err(|e| regex::Error::Syntax(e.to_string()))?;
        Ok(LazyRegex::from_valid(src.to_string()))
    }

    /// A regex this module wrote from parts already known to be valid (escaped literals and
    /// `.`, or a union of checked expressions): not parsed again. Should it still not compile
    /// (a union nested one level past the limit), a union falls back to its members.
    fn from_valid(src: String) -> LazyRegex {
        LazyRegex {
            src: src.into(),
            compiled: std::sync::Arc::default(),
            parts: std::sync::Arc::new([]),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// The compiled expression; `None` only for one that exceeds the regex crate's size limit
    /// (a union then matches through its members; a single expression is logged once and
    /// matches nothing).
    fn regex(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| match Regex::new(&self.src) {
                Ok(r) => Some(r),
                Err(e) => {
                    if self.parts.is_empty() {
                        tracing::error!(regex = %self.src, "a rule's regular expression cannot be compiled and matches nothing: {e}");
                    }
                    None
                }
            })
            .as_ref()
    }

    /// Compiles it now if it is not yet (the daemon does so for every rule in the background
    /// after loading, so no event waits for a compilation).
    pub fn compile(&self) {
        let _ = self.regex();
    }

    /// True once compiled (or found too large to compile).
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    pub fn is_match(&self, hay: &str) -> bool {
        match self.regex() {
            Some(r) => r.is_match(hay),
            None => self.parts.iter().any(|p| p.is_match(hay)),
        }
    }
}

impl StrMatcher {
    /// A text that identifies what this matcher accepts (equal keys, equal behaviour).
    pub fn key(&self) -> String {
        match self {
            StrMatcher::Any => "any".into(),
            StrMatcher::Exact { needle, cased } => format!("eq:{cased}:{needle}"),
            StrMatcher::Prefix { needle, cased } => format!("prefix:{cased}:{needle}"),
            StrMatcher::Suffix { needle, cased } => format!("suffix:{cased}:{needle}"),
            StrMatcher::Contains { needle, cased, .. } => format!("contains:{cased}:{needle}"),
            StrMatcher::Regex(r) => format!("re:{}", r.as_str()),
        }
    }

    /// True if and only if `hay` matches. Allocates only for case-insensitive comparisons of
    /// non-ASCII text.
    pub fn is_match(&self, hay: &str) -> bool {
        match self {
            StrMatcher::Any => true,
            StrMatcher::Exact { needle, cased } => eq(hay, needle, *cased),
            StrMatcher::Prefix { needle, cased } => {
                hay.len() >= needle.len()
                    && hay.is_char_boundary(needle.len())
                    && eq(&hay[..needle.len()], needle, *cased)
                    || (!cased
                        && !hay.is_ascii()
                        && hay.to_lowercase().starts_with(needle.as_str()))
            }
            StrMatcher::Suffix { needle, cased } => {
                let start = hay.len().wrapping_sub(needle.len());
                hay.len() >= needle.len()
                    && hay.is_char_boundary(start)
                    && eq(&hay[start..], needle, *cased)
                    || (!cased && !hay.is_ascii() && hay.to_lowercase().ends_with(needle.as_str()))
            }
            StrMatcher::Contains { finder, .. } => finder.is_match(hay),
            StrMatcher::Regex(re) => re.is_match(hay),
        }
    }

    /// The exact value this matcher requires, if it is a plain equality (for the rule index).
    pub fn exact_value(&self) -> Option<&str> {
        match self {
            StrMatcher::Exact { needle, .. } => Some(needle),
            _ => None,
        }
    }
}

/// Values up to this long are searched case-insensitively through a lowercased copy on the
/// stack.
const SHORT_VALUE: usize = 512;

/// A search for a literal (`contains`): cased, or case-insensitive for an ASCII literal (ASCII
/// letters fold; other bytes compare as they are, and UTF-8 puts no ASCII byte inside a
/// multi-byte character).
#[derive(Debug, Clone)]
pub struct Finder {
    /// The literal, lowercased when not `cased`; linear time (two-way) in the worst case.
    memmem: memchr::memmem::Finder<'static>,
    /// Case-insensitive only: values longer than [`SHORT_VALUE`] go through Aho-Corasick's
    /// case-folding automaton instead of a copy.
    folding: Option<AhoCorasick>,
}

impl Finder {
    fn new(literal: &str, cased: bool) -> Result<Finder, regex::Error> {
        if cased {
            return Ok(Finder {
                memmem: memchr::memmem::Finder::new(literal.as_bytes()).into_owned(),
                folding: None,
            });
        }
        let lower = literal.to_ascii_lowercase();
        Ok(Finder {
            memmem: memchr::memmem::Finder::new(lower.as_bytes()).into_owned(),
            folding: Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build([literal])
                    .map_err(|e| regex::Error::Syntax(e.to_string()))?,
            ),
        })
    }

    /// True if and only if the literal occurs in `hay`.
    #[inline]
    pub fn is_match(&self, hay: &str) -> bool {
        let h = hay.as_bytes();
        let Some(folding) = &self.folding else {
            return self.memmem.find(h).is_some();
        };
        if h.len() > SHORT_VALUE {
            return folding.is_match(hay);
        }
        // One case-folding automaton step per byte cost several times this copy and search.
        let mut buf = [0u8; SHORT_VALUE];
        let lower = &mut buf[..h.len()];
        for (d, s) in lower.iter_mut().zip(h) {
            *d = s.to_ascii_lowercase();
        }
        self.memmem.find(lower).is_some()
    }
}

/// `needle` is already lowercased unless `cased`.
#[inline]
fn eq(hay: &str, needle: &str, cased: bool) -> bool {
    if cased {
        return hay == needle;
    }
    if hay.len() == needle.len() && hay.eq_ignore_ascii_case(needle) {
        return true;
    }
    // Only text with non-ASCII letters can still match after Unicode lowercasing (which may
    // change its length); the common mismatch returns before scanning for them.
    !hay.is_ascii() && hay.to_lowercase() == needle
}

/// One piece of a Sigma string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Lit(String),
    Star,
    Question,
}

/// Splits a Sigma string into literals and wildcards. `\` escapes only `*`, `?` and `\`; before any
/// other character it is a literal backslash.
pub fn tokenize(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                let t = if c == '*' { Tok::Star } else { Tok::Question };
                if !(t == Tok::Star && out.last() == Some(&Tok::Star)) {
                    out.push(t);
                }
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Tok::Lit(lit));
    }
    out
}

/// Compiles wildcard tokens to the cheapest matcher.
pub fn compile_tokens(toks: &[Tok], cased: bool) -> Result<StrMatcher, regex::Error> {
    let norm = |s: &str| {
        if cased {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let ascii = toks.iter().all(|t| match t {
        Tok::Lit(s) => s.is_ascii(),
        _ => true,
    });
    Ok(match toks {
        [] => StrMatcher::Exact {
            needle: String::new(),
            cased,
        },
        [Tok::Star] => StrMatcher::Any,
        [Tok::Lit(s)] => StrMatcher::Exact {
            needle: norm(s),
            cased,
        },
        [Tok::Lit(s), Tok::Star] => StrMatcher::Prefix {
            needle: norm(s),
            cased,
        },
        [Tok::Star, Tok::Lit(s)] => StrMatcher::Suffix {
            needle: norm(s),
            cased,
        },
        [Tok::Star, Tok::Lit(s), Tok::Star] if cased || ascii => StrMatcher::Contains {
            finder: Box::new(Finder::new(s, cased)?),
            needle: s.clone(),
            cased,
        },
        _ => {
            let mut re = String::from(if cased { "(?s)^" } else { "(?si)^" });
            for t in toks {
                match t {
                    Tok::Lit(s) => re.push_str(&regex::escape(s)),
                    Tok::Star => re.push_str(".*"),
                    Tok::Question => re.push('.'),
                }
            }
            re.push('$');
            StrMatcher::Regex(LazyRegex::from_valid(re))
        }
    })
}

/// `patterns` (any of which may match) with their regular expressions replaced by one, their
/// union `(?:a)|(?:b)|...`, in the place of the first: the regex engine then searches a value
/// once for all of them instead of once per expression (the exec rules' lists of command-line
/// patterns took 80 searches of each exec request's URI). Each keeps its own inline flags and
/// anchors, which a group scopes, so the union matches exactly when one of them does. Unchanged
/// when fewer than two are regular expressions; a union too large to compile (found when first
/// matched) matches through its members.
pub fn union_of_regexes(patterns: Vec<Pattern>) -> Vec<Pattern> {
    let parts: Vec<LazyRegex> = patterns
        .iter()
        .filter_map(|p| match p {
            Pattern::Str(StrMatcher::Regex(r)) => Some(r.clone()),
            _ => None,
        })
        .collect();
    if parts.len() < 2 {
        return patterns;
    }
    let src: Vec<String> = parts
        .iter()
        .map(|r| format!("(?:{})", r.as_str()))
        .collect();
    let mut out = Vec::with_capacity(patterns.len() + 1 - parts.len());
    let mut union = Some(LazyRegex {
        parts: parts.into(),
        ..LazyRegex::from_valid(src.join("|"))
    });
    for p in patterns {
        match p {
            Pattern::Str(StrMatcher::Regex(_)) => {
                if let Some(u) = union.take() {
                    out.push(Pattern::Str(StrMatcher::Regex(u)));
                }
            }
            p => out.push(p),
        }
    }
    out
}

/// Numeric comparison operators (`gt`, `gte`, `lt`, `lte`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    /// `x` compared with `n` by this operator.
    #[inline]
    pub fn holds(self, x: f64, n: f64) -> bool {
        match self {
            Cmp::Gt => x > n,
            Cmp::Gte => x >= n,
            Cmp::Lt => x < n,
            Cmp::Lte => x <= n,
        }
    }
}

/// One compiled value of a field condition.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A string (with wildcards) or regex. Numbers and booleans in the event are compared by
    /// their JSON text (`"403"` matches `403`, `'true'` matches `true`).
    Str(StrMatcher),
    /// A YAML number: equal to a number in the event, or to a string holding that number.
    Num(f64),
    /// A YAML boolean: equal to a boolean in the event, or to the string `true`/`false`.
    Bool(bool),
    /// `gt`/`gte`/`lt`/`lte`: numeric events, or strings that parse as numbers.
    Compare(Cmp, f64),
    /// `cidr`: an IP address inside the network.
    Cidr(ipnet::IpNet),
    /// YAML `null`: the field is absent or null.
    Null,
    /// `exists: true|false`.
    Exists(bool),
}

fn as_number(v: FieldValue<'_>) -> Option<f64> {
    match v {
        FieldValue::Int(i) => Some(i as f64),
        FieldValue::Float(f) => Some(f),
        FieldValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Pattern {
    /// A text that identifies what this pattern accepts (equal keys, equal behaviour).
    pub fn key(&self) -> String {
        match self {
            Pattern::Str(m) => m.key(),
            Pattern::Num(n) => format!("num:{n}"),
            Pattern::Bool(b) => format!("bool:{b}"),
            Pattern::Compare(op, n) => format!("cmp:{op:?}:{n}"),
            Pattern::Cidr(net) => format!("cidr:{net}"),
            Pattern::Null => "null".into(),
            Pattern::Exists(b) => format!("exists:{b}"),
        }
    }

    /// Field-level patterns look at presence, not at values.
    pub fn is_field_level(&self) -> bool {
        matches!(self, Pattern::Null | Pattern::Exists(_))
    }

    /// True if and only if this value-level pattern matches one value.
    pub fn matches_value(&self, v: FieldValue<'_>) -> bool {
        match (self, v) {
            (Pattern::Str(StrMatcher::Any), FieldValue::Null) => false,
            (Pattern::Str(StrMatcher::Any), _) => true,
            (Pattern::Str(m), FieldValue::Str(s)) => m.is_match(s),
            (Pattern::Str(m), FieldValue::Int(i)) => {
                m.is_match(crate::event::IntBuf::signed(i).as_str())
            }
            (Pattern::Str(m), FieldValue::Float(f)) => m.is_match(&f.to_string()),
            (Pattern::Str(m), FieldValue::Bool(b)) => m.is_match(if b { "true" } else { "false" }),
            (Pattern::Str(_), _) => false,
            (Pattern::Num(n), v) => as_number(v).is_some_and(|x| x == *n),
            (Pattern::Bool(b), FieldValue::Bool(x)) => *b == x,
            (Pattern::Bool(b), FieldValue::Str(s)) => {
                s.eq_ignore_ascii_case(if *b { "true" } else { "false" })
            }
            (Pattern::Bool(_), _) => false,
            (Pattern::Compare(op, n), v) => as_number(v).is_some_and(|x| op.holds(x, *n)),
            (Pattern::Cidr(net), FieldValue::Str(s)) => {
                s.trim().parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip))
            }
            (Pattern::Cidr(_), _) => false,
            (Pattern::Null | Pattern::Exists(_), _) => false,
        }
    }

    /// True if and only if this pattern matches `field` of `ev` (any value, for value patterns).
    pub fn matches_field(&self, ev: &Event<'_>, field: &FieldRef) -> bool {
        match self {
            Pattern::Null => !ev.has(field),
            Pattern::Exists(want) => ev.has(field) == *want,
            _ => ev.any_value(field, &mut |v| self.matches_value(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, cased: bool) -> StrMatcher {
        compile_tokens(&tokenize(pattern), cased).unwrap()
    }

    /// Expressions with their own flags and anchors, as rules write them (`|re|i` puts `(?i)`
    /// in front), and wildcard patterns compiled to regexes.
    const REGEXES: &[&str] = &[
        "(?i)[?&]command=(?:[^&]|&command=)*?(?:%2F|/)etc(?:%2F|/)shadow",
        "(?i)[?&]command=(?:(?:[^&]|&command=)*?(?:\\+|%20|%2F|/))?(?:apt|apk)(?:\\+|%20|&command=)+(?:add|install)",
        "^\\*$",
        "^/spec/template/spec/(containers|initContainers)(/(-|[0-9]+))?$",
        "(?s)^a.*b$",
        "(?si)^X.*y.$",
        "(?m)^line$",
        "tcp|udp",
        "",
    ];

    fn regex_patterns(picks: &[usize]) -> Vec<Pattern> {
        picks
            .iter()
            .map(|&i| Pattern::Str(StrMatcher::Regex(LazyRegex::new(REGEXES[i]).unwrap())))
            .collect()
    }

    #[test]
    fn a_regex_is_checked_when_made_and_compiled_when_first_matched() {
        let err = LazyRegex::new("a(b").unwrap_err();
        assert!(err.to_string().contains("unclosed group"), "{err}");
        assert!(
            LazyRegex::new("(?-u:\\xff)").is_err(),
            "invalid UTF-8 is refused as by Regex::new"
        );
        let r = LazyRegex::new("(?i)^kube").unwrap();
        assert!(r.compiled.get().is_none());
        assert!(r.is_match("KUBECTL") && !r.is_match("xkube"));
        assert!(r.compiled.get().is_some());
        // Too large to compile: a lone expression matches nothing; a union matches through
        // its members.
        let big = "(?:\\w{60}){60}";
        assert!(Regex::new(big).is_err());
        let alone = LazyRegex::new(big).unwrap();
        assert!(!alone.is_match(&"a".repeat(4000)));
        let members = vec![
            Pattern::Str(StrMatcher::Regex(LazyRegex::new("^a+b$").unwrap())),
            Pattern::Str(StrMatcher::Regex(LazyRegex::new("^\\w{200}$").unwrap())),
            Pattern::Str(StrMatcher::Regex(LazyRegex::new("^\\w{200}x").unwrap())),
            Pattern::Str(StrMatcher::Regex(LazyRegex::new("^\\w{200}y").unwrap())),
        ];
        let union = union_of_regexes(members);
        let [Pattern::Str(StrMatcher::Regex(u))] = union.as_slice() else {
            panic!("{union:?}")
        };
        assert!(Regex::new(u.as_str()).is_err(), "the union is too large");
        assert!(u.is_match("aab") && u.is_match(&"é".repeat(200)));
        assert!(!u.is_match("ab!") && !u.is_match(&"é".repeat(199)));
    }

    #[test]
    fn a_union_of_regexes_replaces_them_in_place_of_the_first() {
        let mut patterns = regex_patterns(&[0, 1]);
        patterns.insert(0, Pattern::Null);
        patterns.insert(2, Pattern::Num(1.0));
        let union = union_of_regexes(patterns);
        assert_eq!(union.len(), 3);
        assert!(matches!(union[0], Pattern::Null));
        assert!(matches!(union[2], Pattern::Num(_)));
        match &union[1] {
            Pattern::Str(StrMatcher::Regex(r)) => {
                assert_eq!(r.as_str(), format!("(?:{})|(?:{})", REGEXES[0], REGEXES[1]))
            }
            other => panic!("{other:?}"),
        }
        // One regex, or none: unchanged.
        assert_eq!(union_of_regexes(regex_patterns(&[2])).len(), 1);
        assert!(union_of_regexes(Vec::new()).is_empty());
    }

    proptest::proptest! {
        /// The union matches a value exactly when one of its expressions does, whatever their
        /// flags and anchors.
        #[test]
        fn a_union_of_regexes_matches_as_any_of_them(
            picks in proptest::collection::vec(0..REGEXES.len(), 2..6),
            hay in "(?s)(/etc/shadow|%2Fetc%2Fshadow|[?&]command=|apt|apk|\\+|%20|add|install|\\*|/spec/template/spec/|containers|/-|/7|a|b|X|Y|\n|line|tcp|[a-z/&?=]){0,12}",
        ) {
            let patterns = regex_patterns(&picks);
            let union = union_of_regexes(patterns.clone());
            proptest::prop_assert_eq!(union.len(), 1);
            let value = FieldValue::Str(&hay);
            proptest::prop_assert_eq!(
                union[0].matches_value(value),
                patterns.iter().any(|p| p.matches_value(value)),
                "{}", hay
            );
        }
    }

    #[test]
    fn sigma_string_matching_table() {
        // (pattern, cased, value, expected)
        let cases: &[(&str, bool, &str, bool)] = &[
            ("get", false, "get", true),
            ("get", false, "GET", true),
            ("GET", false, "get", true),
            ("get", true, "GET", false),
            ("get", false, "gets", false),
            ("", false, "", true),
            ("", false, "x", false),
            ("*", false, "", true),
            ("*", false, "anything", true),
            ("system:*", false, "system:node:n1", true),
            ("system:*", false, "System:Node", true),
            ("system:*", false, "user", false),
            ("*:latest", false, "nginx:latest", true),
            ("*:latest", false, "nginx:LATEST", true),
            ("*:latest", false, "nginx:1.25", false),
            ("*secret*", false, "my-SECRET-x", true),
            ("*secret*", true, "my-SECRET-x", false),
            ("a?c", false, "abc", true),
            ("a?c", false, "ac", false),
            ("a?c", false, "abbc", false),
            ("a*c", false, "abbc", true),
            ("a*c", false, "abbd", false),
            (r"\*", false, "*", true),
            (r"\*", false, "x", false),
            (r"a\?", false, "a?", true),
            (r"a\?", false, "ab", false),
            (r"c:\\x", false, r"c:\x", true),
            (r"c:\x", false, r"c:\x", true),
            (r"\\*", false, r"\anything", true),
            ("/healthz*", false, "/healthz?verbose", true),
            ("Ünïcode", false, "üNÏCODE", true),
            ("*ÄB*", false, "xxäbyy", true),
            ("ü*", false, "ÜBER", true),
            ("*ß", false, "STRASSß", true),
            ("a.b", false, "axb", false),
            ("(x)*", false, "(x)yz", true),
        ];
        for (pat, cased, val, want) in cases {
            assert_eq!(
                m(pat, *cased).is_match(val),
                *want,
                "{pat:?} cased={cased} on {val:?}"
            );
        }
    }

    /// The literal search agrees with lowercasing both sides (ASCII letters only) and searching,
    /// on values shorter and longer than the stack copy, with the literal at every place.
    #[test]
    fn contains_finds_a_literal_in_any_case_wherever_it_is() {
        let fill = ["x", "é", "\"", "Of ClusterRole "];
        for (literal, cased) in [
            ("of ClusterRole \"cluster-admin\"", false),
            ("of ClusterRole \"cluster-admin\"", true),
            ("a", false),
            ("aab", false),
        ] {
            let finder = Finder::new(literal, cased).unwrap();
            for len in [
                0,
                1,
                30,
                SHORT_VALUE - 40,
                SHORT_VALUE - 20,
                SHORT_VALUE,
                2000,
            ] {
                for f in fill {
                    let mut base = String::new();
                    while base.len() < len {
                        base.push_str(f);
                    }
                    let variants = [
                        literal.to_string(),
                        literal.to_uppercase(),
                        literal.to_lowercase(),
                    ];
                    let mut hays = vec![base.clone()];
                    for at in [0, len / 2, len] {
                        let at = (0..=at)
                            .rev()
                            .find(|i| base.is_char_boundary(*i))
                            .unwrap_or(0);
                        for v in &variants {
                            hays.push(format!("{}{v}{}", &base[..at], &base[at..]));
                        }
                    }
                    for hay in hays {
                        let want = if cased {
                            hay.contains(literal)
                        } else {
                            hay.to_ascii_lowercase()
                                .contains(&literal.to_ascii_lowercase())
                        };
                        assert_eq!(
                            finder.is_match(&hay),
                            want,
                            "{literal:?} cased={cased} in {} bytes",
                            hay.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn wildcards_compile_to_the_cheapest_strategy() {
        assert!(matches!(m("abc", false), StrMatcher::Exact { .. }));
        assert!(matches!(m("abc*", false), StrMatcher::Prefix { .. }));
        assert!(matches!(m("*abc", false), StrMatcher::Suffix { .. }));
        assert!(matches!(m("*abc*", false), StrMatcher::Contains { .. }));
        assert!(matches!(m("**", false), StrMatcher::Any));
        assert!(matches!(m("a*b", false), StrMatcher::Regex(_)));
    }

    #[test]
    fn typed_values_compare_as_defined() {
        use FieldValue::*;
        let s = |p: &str| Pattern::Str(m(p, false));
        let cases: Vec<(Pattern, FieldValue<'_>, bool)> = vec![
            (Pattern::Num(403.0), Int(403), true),
            (Pattern::Num(403.0), Str("403"), true),
            (Pattern::Num(403.0), Int(401), false),
            (Pattern::Num(403.0), Str("forbidden"), false),
            (s("403"), Int(403), true),
            (s("40*"), Int(403), true),
            (s("-5"), Int(-5), true),
            (Pattern::Bool(true), Bool(true), true),
            (Pattern::Bool(true), Bool(false), false),
            (Pattern::Bool(true), Str("True"), true),
            (Pattern::Bool(true), Int(1), false),
            (s("true"), Bool(true), true),
            (s("*"), Null, false),
            (s("*"), Object, true),
            (s("x"), Object, false),
            (Pattern::Compare(Cmp::Gt, 399.0), Int(403), true),
            (Pattern::Compare(Cmp::Gt, 403.0), Int(403), false),
            (Pattern::Compare(Cmp::Gte, 403.0), Int(403), true),
            (Pattern::Compare(Cmp::Lt, 1.0), Float(0.5), true),
            (Pattern::Compare(Cmp::Lte, 0.0), Str("0"), true),
            (Pattern::Compare(Cmp::Lte, 0.0), Str("zero"), false),
            (
                Pattern::Cidr("10.0.0.0/8".parse().unwrap()),
                Str("10.1.2.3"),
                true,
            ),
            (
                Pattern::Cidr("10.0.0.0/8".parse().unwrap()),
                Str("11.1.2.3"),
                false,
            ),
            (
                Pattern::Cidr("fd00::/8".parse().unwrap()),
                Str("fd00::1"),
                true,
            ),
            (
                Pattern::Cidr("10.0.0.0/8".parse().unwrap()),
                Str("not-an-ip"),
                false,
            ),
        ];
        for (p, v, want) in cases {
            assert_eq!(p.matches_value(v), want, "{p:?} on {v:?}");
        }
    }

    #[test]
    fn integers_format_without_allocation() {
        for i in [0i64, 7, -7, 403, i64::MIN, i64::MAX] {
            assert_eq!(crate::event::IntBuf::signed(i).as_str(), i.to_string());
        }
    }
}
