//! Falco's condition language: a recursive-descent parser over the condition text, following
//! libsinsp's grammar (`userspace/libsinsp/filter/parser.h` and `parser.cpp` in
//! falcosecurity/libs).
//!
//! The grammar is context dependent (a bare string after `=` may hold `.` and `/`, an
//! identifier may not), so, as in libsinsp, the lexer is a set of small functions that each
//! recognise one token at the cursor, called by the parser where that token may appear:
//!
//! ```text
//! Expr        ::= OrExpr
//! OrExpr      ::= AndExpr ('or' (' ' AndExpr | '(' Expr ')'))*
//! AndExpr     ::= NotExpr ('and' (' ' NotExpr | '(' Expr ')'))*
//! NotExpr     ::= ('not' blank+)* ('not(' Expr ')' | Check)
//! Check       ::= '(' Expr ')' | Field Condition | Identifier
//! Condition   ::= 'exists' | NumOp NumValue | StrOp StrValue | ListOp ListValue
//! ListValue   ::= '(' (StrValue (',' StrValue)*)? ')' | Identifier
//! Field       ::= FieldName ('[' (QuotedStr | ArgBareStr) ']')?
//! FieldName   ::= [a-zA-Z][a-zA-Z0-9_]* ('.' [a-zA-Z][a-zA-Z0-9_]*)+
//! Identifier  ::= [a-zA-Z][a-zA-Z0-9_]*
//! ArgBareStr  ::= [^ \b\t\n\r\[\]"']+
//! NumValue    ::= 0[xX][0-9a-zA-Z]+ | [+-]?[0-9]+\.?[0-9]*([eE][+-][0-9]+)?
//! StrValue    ::= QuotedStr | [^ \b\t\n\r(),="']+
//! NumOp       ::= '<=' | '<' | '>=' | '>'
//! StrOp       ::= '==' | '=' | '!=' | 'glob ' | 'iglob ' | 'contains ' | 'icontains '
//!               | 'bcontains ' | 'startswith ' | 'bstartswith ' | 'endswith '
//! ListOp      ::= 'intersects' | 'in' | 'pmatch'
//! ```
//!
//! `not` binds tighter than `and`, and `and` tighter than `or`. Operators are tried in the
//! order above, so `intersects` wins over `in`, and the word operators need a blank after them.
//! `iglob` comes from later libsinsp versions (`flt_compare_string`, `CO_IGLOB`); their other
//! additions (`regex`, field transformers such as `tolower(...)`, right-hand fields `val(...)`)
//! are not supported.
//! Quoted strings take `"` or `'` and the escapes `\b \f \n \r \t \\ \/ \ ` and the escaped
//! delimiter (libsinsp `escaping.cpp`, `unescape_str`).
//!
//! Every field is checked against the k8saudit and json catalogue ([`super::fields`]) while
//! parsing: an unknown field, a missing or forbidden argument, or an operator the field does
//! not support is a [`ParseError`] at the field's offset.

use std::fmt;

use super::fields::{self, Field};

/// The deepest nesting of sub-expressions accepted (the Falco rule loader sets libsinsp's
/// parser to 1000).
const MAX_DEPTH: usize = 1000;

/// A parse error: the byte offset in the condition where it was found, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the condition text.
    pub offset: usize,
    /// What was expected or wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `exists` (unary).
    Exists,
    /// `=` or `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `contains`.
    Contains,
    /// `icontains`.
    IContains,
    /// `bcontains` (byte buffers only).
    BContains,
    /// `startswith`.
    StartsWith,
    /// `bstartswith` (byte buffers only).
    BStartsWith,
    /// `endswith`.
    EndsWith,
    /// `glob`.
    Glob,
    /// `iglob` (`glob` ignoring ASCII case).
    IGlob,
    /// `in`.
    In,
    /// `intersects`.
    Intersects,
    /// `pmatch`.
    PMatch,
}

impl Op {
    /// The operator as written in a condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Exists => "exists",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
        }
    }

    /// True for the operators that take a list (`in`, `intersects`, `pmatch`).
    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }
}

/// Numeric operators, in the order libsinsp tries them.
const NUM_OPS: [(&str, Op); 4] = [("<=", Op::Le), ("<", Op::Lt), (">=", Op::Ge), (">", Op::Gt)];

/// String operators, in the order libsinsp tries them (word operators with their blank).
const STR_OPS: [(&str, Op); 11] = [
    ("==", Op::Eq),
    ("=", Op::Eq),
    ("!=", Op::Ne),
    ("glob ", Op::Glob),
    ("iglob ", Op::IGlob),
    ("contains ", Op::Contains),
    ("icontains ", Op::IContains),
    ("bcontains ", Op::BContains),
    ("startswith ", Op::StartsWith),
    ("bstartswith ", Op::BStartsWith),
    ("endswith ", Op::EndsWith),
];

/// List operators, in the order libsinsp tries them.
const LIST_OPS: [(&str, Op); 3] = [
    ("intersects", Op::Intersects),
    ("in", Op::In),
    ("pmatch", Op::PMatch),
];

/// One item of a list literal `(a, "b")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    /// The item's text (unescaped if it was quoted).
    pub text: String,
    /// True if the item was a bare word, which may name a `list:` to expand.
    pub bare: bool,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// None (`exists`).
    None,
    /// One value (string and numeric operators).
    Value(String),
    /// A list literal (list operators).
    List(Vec<ListItem>),
    /// A bare identifier after a list operator (`field in my_list`): the name of a `list:`.
    ListName(String),
}

/// One comparison `field op operand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The field with its argument.
    pub field: Field,
    /// The operator.
    pub op: Op,
    /// The right-hand side.
    pub operand: Operand,
    /// Byte offset of the field in the condition.
    pub offset: usize,
}

/// A condition's syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// All of the children.
    And(Vec<Expr>),
    /// Any of the children.
    Or(Vec<Expr>),
    /// The negation of the child.
    Not(Box<Expr>),
    /// A reference to a `macro:` by name.
    Macro {
        /// The macro's name.
        name: String,
        /// Byte offset of the name in the condition.
        offset: usize,
    },
    /// A comparison.
    Check(Check),
}

/// Parses a condition into its syntax tree, checking every field against the catalogue.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        src: input.as_bytes(),
        text: input,
        pos: 0,
        depth: 0,
        last: String::new(),
    };
    if input.is_empty() {
        return Err(p.error("the condition is empty"));
    }
    let expr = p.parse_or()?;
    if p.pos != p.src.len() {
        let msg = format!("unexpected token after '{}', expecting 'or', 'and'", p.last);
        return Err(p.error(&msg));
    }
    Ok(expr)
}

/// The parser's state: the input and the cursor.
struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
    /// The last token read (for error messages).
    last: String,
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x08 | b'\r' | b'\n')
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

fn is_ident_rest(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl<'a> Parser<'a> {
    fn error(&self, message: &str) -> ParseError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, offset: usize, message: &str) -> ParseError {
        ParseError {
            offset,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(self.error(&format!("exceeded max depth limit of {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Takes `len` bytes as the last token.
    fn take(&mut self, len: usize) -> String {
        let end = (self.pos + len).min(self.src.len());
        let tok = self.text.get(self.pos..end).unwrap_or_default().to_string();
        self.pos = end;
        self.last.clone_from(&tok);
        tok
    }

    // ----- lexer -----

    fn lex_blank(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn lex_str(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s.as_bytes()) {
            self.take(s.len());
            true
        } else {
            false
        }
    }

    /// `not` followed by blanks.
    fn lex_not_blank(&mut self) -> bool {
        let r = self.rest();
        if r.starts_with(b"not") && r.get(3).copied().is_some_and(is_blank) {
            self.take(3);
            self.lex_blank();
            true
        } else {
            false
        }
    }

    /// Length of an identifier at `at`, 0 if none.
    fn ident_len(&self, at: usize) -> usize {
        let r = self.src.get(at..).unwrap_or_default();
        match r.first() {
            Some(&b) if is_ident_start(b) => {
                1 + r.iter().skip(1).take_while(|&&b| is_ident_rest(b)).count()
            }
            _ => 0,
        }
    }

    fn lex_identifier(&mut self) -> Option<String> {
        let n = self.ident_len(self.pos);
        (n > 0).then(|| self.take(n))
    }

    /// A field name: identifiers joined by dots, at least two of them.
    fn lex_field_name(&mut self) -> Option<String> {
        let mut end = self.pos + self.ident_len(self.pos);
        if end == self.pos {
            return None;
        }
        let mut parts = 1;
        while self.src.get(end) == Some(&b'.') {
            let n = self.ident_len(end + 1);
            if n == 0 {
                break;
            }
            end += 1 + n;
            parts += 1;
        }
        (parts > 1).then(|| self.take(end - self.pos))
    }

    fn lex_while(&mut self, ok: impl Fn(u8) -> bool) -> Option<String> {
        let n = self.rest().iter().take_while(|&&b| ok(b)).count();
        (n > 0).then(|| self.take(n))
    }

    fn lex_field_arg_bare(&mut self) -> Option<String> {
        self.lex_while(|b| !is_blank(b) && !matches!(b, b'[' | b']' | b'"' | b'\''))
    }

    fn lex_bare_str(&mut self) -> Option<String> {
        self.lex_while(|b| !is_blank(b) && !matches!(b, b'(' | b')' | b',' | b'=' | b'"' | b'\''))
    }

    fn lex_hex_num(&mut self) -> Option<String> {
        let r = self.rest();
        if r.len() > 2 && r[0] == b'0' && matches!(r[1], b'x' | b'X') {
            let n = r[2..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            if n > 0 {
                return Some(self.take(2 + n));
            }
        }
        None
    }

    fn lex_num(&mut self) -> Option<String> {
        let r = self.rest();
        let mut i = usize::from(matches!(r.first(), Some(b'+' | b'-')));
        let digits = |from: usize| {
            r.iter()
                .skip(from)
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let d = digits(i);
        if d == 0 {
            return None;
        }
        i += d;
        if r.get(i) == Some(&b'.') {
            i += 1;
        }
        i += digits(i);
        if matches!(r.get(i), Some(b'e' | b'E')) && matches!(r.get(i + 1), Some(b'+' | b'-')) {
            let e = digits(i + 2);
            if e > 0 {
                i += 2 + e;
            }
        }
        Some(self.take(i))
    }

    /// A quoted string, unescaped. `Ok(None)` if there is none at the cursor.
    fn lex_quoted(&mut self) -> Result<Option<String>, ParseError> {
        let Some(delim) = self.peek().filter(|b| matches!(b, b'"' | b'\'')) else {
            return Ok(None);
        };
        let start = self.pos;
        let mut prev = b'\\';
        let mut i = start;
        while let Some(&c) = self.src.get(i) {
            if c == delim && prev != b'\\' {
                let raw = self.take(i + 1 - start);
                return unescape(&raw)
                    .map(Some)
                    .map_err(|m| self.error_at(start, &m));
            }
            prev = c;
            i += 1;
        }
        Ok(None)
    }

    fn lex_op(&mut self, ops: &[(&str, Op)]) -> Option<Op> {
        ops.iter().find(|(s, _)| self.lex_str(s)).map(|&(_, op)| op)
    }

    // ----- parser -----

    fn parse_or(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        self.lex_blank();
        let mut children = vec![self.parse_and()?];
        self.lex_blank();
        while self.lex_str("or") {
            children.push(self.parse_tail("or", Self::parse_and)?);
            self.lex_blank();
        }
        self.leave();
        Ok(collapse(children, Expr::Or))
    }

    fn parse_and(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        self.lex_blank();
        let mut children = vec![self.parse_not()?];
        self.lex_blank();
        while self.lex_str("and") {
            children.push(self.parse_tail("and", Self::parse_not)?);
            self.lex_blank();
        }
        self.leave();
        Ok(collapse(children, Expr::And))
    }

    /// What follows `and`/`or`: a blank and an operand, or a parenthesised expression.
    fn parse_tail(
        &mut self,
        word: &str,
        operand: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        if self.lex_blank() {
            operand(self)
        } else if self.lex_str("(") {
            self.parse_embedded()
        } else {
            Err(self.error(&format!("expected blank or '(' after '{word}'")))
        }
    }

    fn parse_not(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        self.lex_blank();
        let mut negate = false;
        while self.lex_not_blank() {
            negate = !negate;
        }
        let child = if self.lex_str("not(") {
            negate = !negate;
            self.parse_embedded()?
        } else {
            self.parse_check()?
        };
        self.leave();
        Ok(if negate {
            Expr::Not(Box::new(child))
        } else {
            child
        })
    }

    /// The rest of a parenthesised expression, after its `(`.
    fn parse_embedded(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        self.lex_blank();
        let child = self.parse_or()?;
        self.lex_blank();
        if !self.lex_str(")") {
            return Err(self.error("expected a ')' token"));
        }
        self.leave();
        Ok(child)
    }

    fn parse_check(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        self.lex_blank();
        if self.lex_str("(") {
            let child = self.parse_embedded()?;
            self.leave();
            return Ok(child);
        }
        let offset = self.pos;
        if let Some(name) = self.lex_field_name() {
            let check = self.parse_field_check(name, offset)?;
            self.leave();
            return Ok(Expr::Check(check));
        }
        if let Some(name) = self.lex_identifier() {
            self.leave();
            return Ok(Expr::Macro { name, offset });
        }
        Err(self.error("expected a '(' token, a field check, or an identifier"))
    }

    fn parse_field_arg(&mut self) -> Result<Option<String>, ParseError> {
        if !self.lex_str("[") {
            return Ok(None);
        }
        let arg = match self.lex_quoted()? {
            Some(a) => a,
            None => self.lex_field_arg_bare().ok_or_else(|| {
                self.error("expected a valid field argument: a quoted string or a bare string")
            })?,
        };
        if !self.lex_str("]") {
            return Err(self.error("expected a ']' token"));
        }
        Ok(Some(arg))
    }

    fn parse_field_check(&mut self, name: String, offset: usize) -> Result<Check, ParseError> {
        let arg = self.parse_field_arg()?;
        let field =
            fields::resolve(&name, arg.as_deref()).map_err(|m| self.error_at(offset, &m))?;
        self.lex_blank();
        let (op, operand) = self.parse_condition()?;
        fields::check_op(&field, op).map_err(|m| self.error_at(offset, &m))?;
        Ok(Check {
            field,
            op,
            operand,
            offset,
        })
    }

    fn parse_condition(&mut self) -> Result<(Op, Operand), ParseError> {
        if self.lex_str("exists") {
            return Ok((Op::Exists, Operand::None));
        }
        self.lex_blank();
        if let Some(op) = self.lex_op(&NUM_OPS) {
            return Ok((op, Operand::Value(self.parse_num_value()?)));
        }
        if let Some(op) = self.lex_op(&STR_OPS) {
            return Ok((op, Operand::Value(self.parse_str_value()?)));
        }
        if let Some(op) = self.lex_op(&LIST_OPS) {
            return Ok((op, self.parse_list_value()?));
        }
        Err(self.error(
            "expected a valid check operator: one of 'exists', '<=', '<', '>=', '>', '==', '=', \
             '!=', 'glob', 'iglob', 'contains', 'icontains', 'bcontains', 'startswith', 'bstartswith', \
             'endswith', 'intersects', 'in', 'pmatch'",
        ))
    }

    fn parse_num_value(&mut self) -> Result<String, ParseError> {
        self.lex_blank();
        self.lex_hex_num()
            .or_else(|| self.lex_num())
            .ok_or_else(|| self.error("expected a number value"))
    }

    /// A string value, and whether it was bare.
    fn parse_str_item(&mut self) -> Result<Option<ListItem>, ParseError> {
        self.lex_blank();
        if let Some(text) = self.lex_quoted()? {
            return Ok(Some(ListItem { text, bare: false }));
        }
        Ok(self
            .lex_bare_str()
            .map(|text| ListItem { text, bare: true }))
    }

    fn parse_str_value(&mut self) -> Result<String, ParseError> {
        match self.parse_str_item()? {
            Some(item) => Ok(item.text),
            None => Err(self.error("expected a string value")),
        }
    }

    fn parse_list_value(&mut self) -> Result<Operand, ParseError> {
        self.lex_blank();
        if self.lex_str("(") {
            let items = self.parse_list_items()?;
            if !self.lex_str(")") {
                return Err(self.error("expected a ')' token"));
            }
            return Ok(Operand::List(items));
        }
        if let Some(name) = self.lex_identifier() {
            return Ok(Operand::ListName(name));
        }
        Err(self.error("expected a list or an identifier"))
    }

    fn parse_list_items(&mut self) -> Result<Vec<ListItem>, ParseError> {
        self.lex_blank();
        let Some(first) = self.parse_str_item()? else {
            return Ok(Vec::new());
        };
        let mut items = vec![first];
        self.lex_blank();
        while self.lex_str(",") {
            match self.parse_str_item()? {
                Some(item) => items.push(item),
                None => return Err(self.error("expected a string value")),
            }
            self.lex_blank();
        }
        Ok(items)
    }
}

/// One child as itself, several under `wrap`.
fn collapse(mut children: Vec<Expr>, wrap: fn(Vec<Expr>) -> Expr) -> Expr {
    if children.len() == 1 {
        if let Some(only) = children.pop() {
            return only;
        }
    }
    wrap(children)
}

/// The content of a quoted string (with its delimiters) with escapes replaced.
fn unescape(quoted: &str) -> Result<String, String> {
    let delim = quoted.chars().next().unwrap_or('"');
    let inner = quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default();
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            break;
        };
        out.push(match e {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            ' ' | '\\' => '\\',
            '/' => '/',
            '"' | '\'' if e == delim => e,
            '"' | '\'' => {
                return Err(format!("invalid \\{e} escape in {delim}-quoted string"));
            }
            _ => return Err(format!("unsupported string escape sequence: \\{e}")),
        });
    }
    Ok(out)
}
