//! The Sigma condition language: `and`, `or`, `not`, parentheses, `1 of x*`, `all of x*`,
//! `N of x*`, `them`. Precedence, highest first: `not`, `and`, `or`.

/// A condition over named selections, with names resolved to indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Sel(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// At least `n` of these selections match.
    AtLeast(usize, Vec<usize>),
}

impl Expr {
    /// Evaluates with `sel(i)` telling whether selection `i` matches; short-circuits.
    pub fn eval(&self, sel: &mut dyn FnMut(usize) -> bool) -> bool {
        match self {
            Expr::Sel(i) => sel(*i),
            Expr::Not(e) => !e.eval(sel),
            Expr::And(es) => es.iter().all(|e| e.eval(sel)),
            Expr::Or(es) => es.iter().any(|e| e.eval(sel)),
            Expr::AtLeast(n, ids) => {
                let mut hits = 0;
                for i in ids {
                    if sel(*i) {
                        hits += 1;
                        if hits >= *n {
                            return true;
                        }
                    }
                }
                *n == 0
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition `{condition}`: {message}")]
pub struct ConditionError {
    pub condition: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Int(usize),
    And,
    Or,
    Not,
    Of,
    All,
    Them,
    Open,
    Close,
    Pipe,
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' {
            out.push(Token::Open);
            chars.next();
        } else if c == ')' {
            out.push(Token::Close);
            chars.next();
        } else if c == '|' {
            // An aggregation follows; the parser rejects it with a clear message.
            out.push(Token::Pipe);
            break;
        } else if c.is_alphanumeric() || c == '_' || c == '*' || c == '-' || c == '.' {
            let mut end = i;
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' || d == '*' || d == '-' || d == '.' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &s[i..end];
            out.push(match word {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                "of" => Token::Of,
                "all" => Token::All,
                "them" => Token::Them,
                w if w.chars().all(|c| c.is_ascii_digit()) => Token::Int(
                    w.parse()
                        .map_err(|_| format!("number `{w}` is too large"))?,
                ),
                w => Token::Ident(w.to_string()),
            });
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
    Ok(out)
}

struct Parser<'n> {
    toks: Vec<Token>,
    pos: usize,
    names: &'n [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.next();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Token::And) {
            self.next();
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Not) => Ok(Expr::Not(Box::new(self.unary()?))),
            Some(Token::Open) => {
                let e = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(e),
                    _ => Err("missing `)`".into()),
                }
            }
            Some(Token::Int(n)) => self.of(Some(n)),
            Some(Token::All) => self.of(None),
            Some(Token::Ident(name)) => {
                if name.contains('*') {
                    return Err(format!(
                        "`{name}`: a wildcard name needs `1 of` or `all of` before it"
                    ));
                }
                match self.names.iter().position(|n| *n == name) {
                    Some(i) => Ok(Expr::Sel(i)),
                    None => Err(format!("`{name}` is not a detection in this rule")),
                }
            }
            Some(Token::Pipe) => Err(
                "aggregations (`| count() ...`) are not supported; use `throttle` for deduplication"
                    .into(),
            ),
            Some(t) => Err(format!("unexpected `{}`", tok_str(&t))),
            None => Err("unexpected end of condition".into()),
        }
    }

    /// `N of target` or `all of target` (`count` is None for `all`).
    fn of(&mut self, count: Option<usize>) -> Result<Expr, String> {
        if self.next() != Some(Token::Of) {
            return Err("expected `of` after a count".into());
        }
        let ids: Vec<usize> = match self.next() {
            Some(Token::Them) => {
                let ids: Vec<usize> = (0..self.names.len())
                    .filter(|i| !self.names[*i].starts_with('_'))
                    .collect();
                if ids.is_empty() {
                    return Err(
                        "`them` matches no detection (names starting with `_` are excluded)".into(),
                    );
                }
                ids
            }
            Some(Token::Ident(pat)) => {
                let ids: Vec<usize> = (0..self.names.len())
                    .filter(|i| name_matches(&pat, &self.names[*i]))
                    .collect();
                if ids.is_empty() {
                    return Err(format!("`{pat}` matches no detection in this rule"));
                }
                ids
            }
            _ => return Err("expected `them` or a detection name after `of`".into()),
        };
        Ok(match count {
            None => Expr::And(ids.into_iter().map(Expr::Sel).collect()),
            Some(0) => return Err("`0 of` is not meaningful".into()),
            Some(1) => Expr::Or(ids.into_iter().map(Expr::Sel).collect()),
            Some(n) => Expr::AtLeast(n, ids),
        })
    }
}

fn tok_str(t: &Token) -> String {
    match t {
        Token::Ident(s) => s.clone(),
        Token::Int(n) => n.to_string(),
        Token::And => "and".into(),
        Token::Or => "or".into(),
        Token::Not => "not".into(),
        Token::Of => "of".into(),
        Token::All => "all".into(),
        Token::Them => "them".into(),
        Token::Open => "(".into(),
        Token::Close => ")".into(),
        Token::Pipe => "|".into(),
    }
}

/// Sigma name patterns: `*` matches any run of characters.
fn name_matches(pat: &str, name: &str) -> bool {
    match pat.split_once('*') {
        None => pat == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            if !tail.contains('*') {
                return rest.ends_with(tail);
            }
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| name_matches(tail, &rest[i..]))
        }
    }
}

/// Parses a condition over the rule's detection names (in their order in the rule).
pub fn parse(condition: &str, names: &[String]) -> Result<Expr, ConditionError> {
    let err = |message: String| ConditionError {
        condition: condition.to_string(),
        message,
    };
    let toks = lex(condition).map_err(err)?;
    let mut p = Parser {
        toks,
        pos: 0,
        names,
    };
    let e = p.or().map_err(err)?;
    if p.peek() == Some(&Token::Pipe) {
        return Err(err(
            "aggregations (`| count() ...`) are not supported; use `throttle` for deduplication"
                .into(),
        ));
    }
    if let Some(t) = p.peek() {
        let t = tok_str(t);
        return Err(err(format!("unexpected `{t}` after a complete condition")));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["selection", "filter_a", "filter_b", "sel_x", "_hidden"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Evaluates `cond` with the named selections that are true.
    fn eval(cond: &str, truthy: &[&str]) -> bool {
        let names = names();
        let e = parse(cond, &names).unwrap();
        e.eval(&mut |i| truthy.contains(&names[i].as_str()))
    }

    #[test]
    fn conditions_evaluate_as_sigma_defines() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("selection", &["selection"], true),
            ("selection", &[], false),
            ("selection and not filter_a", &["selection"], true),
            (
                "selection and not filter_a",
                &["selection", "filter_a"],
                false,
            ),
            (
                "selection and not 1 of filter_*",
                &["selection", "filter_b"],
                false,
            ),
            ("selection and not 1 of filter_*", &["selection"], true),
            ("all of filter_*", &["filter_a"], false),
            ("all of filter_*", &["filter_a", "filter_b"], true),
            ("1 of them", &["sel_x"], true),
            ("1 of them", &["_hidden"], false),
            (
                "all of them",
                &["selection", "filter_a", "filter_b", "sel_x"],
                true,
            ),
            ("2 of filter_* or sel_x", &["filter_a"], false),
            ("2 of filter_* or sel_x", &["filter_a", "filter_b"], true),
            ("selection or filter_a and filter_b", &["selection"], true),
            ("selection or filter_a and filter_b", &["filter_a"], false),
            (
                "(selection or filter_a) and filter_b",
                &["selection"],
                false,
            ),
            ("not not selection", &["selection"], true),
            ("not selection or filter_a", &["selection"], false),
            ("1 of sel*", &["sel_x"], true),
            ("1 of *_b", &["filter_b"], true),
            ("1 of f*_*", &["filter_a"], true),
            ("( selection )", &["selection"], true),
        ];
        for (cond, truthy, want) in cases {
            assert_eq!(eval(cond, truthy), *want, "{cond} with {truthy:?}");
        }
    }

    #[test]
    fn them_over_only_hidden_detections_is_an_error() {
        let names = vec!["_a".to_string(), "_b".to_string()];
        assert!(parse("all of them", &names).is_err());
        assert!(parse("1 of them", &names).is_err());
    }

    #[test]
    fn bad_conditions_are_errors() {
        let names = names();
        for bad in [
            "",
            "selection and",
            "missing",
            "1 of nothing*",
            "selection | count() > 5",
            "filter_*",
            "(selection",
            "selection)",
            "selection filter_a",
            "0 of them",
            "all them",
            "selection & filter_a",
        ] {
            assert!(parse(bad, &names).is_err(), "{bad:?} should be rejected");
        }
    }
}
