//! The search query form (SPEC 10.3, `GET /search?q=…`): exact-match terms
//! combined with AND, OR, IN and parentheses, e.g.
//! `meta.team='ml' AND (name='fraud' OR meta.tier IN ('a','b'))`.
//!
//! Pure: parsing and the set algebra are here (table-tested); each term is
//! one index query, done by the repository (`search_expression`).
//!
//! Grammar (keywords in any case, values in single quotes, `''` for a quote):
//!
//! ```text
//! query := and ("OR" and)*
//! and   := atom ("AND" atom)*
//! atom  := "(" query ")" | field "=" value | field "IN" "(" value ("," value)* ")"
//! field := "name" | "sha256" | "meta." key        key: 1-64 of a-z 0-9 - _
//! ```

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::names::{ArtifactName, Sha256};

/// Most terms (after IN is expanded) in one query: each is an index query.
pub const MAX_QUERY_TERMS: usize = 16;
/// Most characters in a query.
pub const MAX_QUERY_LEN: usize = 2048;
/// Most versions one term may match (a broader term is refused: narrow it).
pub const MAX_TERM_MATCHES: usize = 1000;
/// Most index entries one term's query reads, of any name: a caller who may
/// read few names still reads the entries of the others to skip them, so
/// what a term costs (and how long it takes) stays bounded whoever asks,
/// and past it every caller gets the same 400.
pub const MAX_TERM_ENTRIES_READ: usize = 10 * MAX_TERM_MATCHES;

/// Most pages (Queries, up to 1 MB each) one term reads: a `name=` term
/// skips the partition's deleted versions unread by the count above
/// (DynamoDB filters them), so this bounds what it reads at all.
pub const MAX_TERM_PAGES: usize = 20;
/// Deepest nesting of parentheses.
const MAX_DEPTH: usize = 8;

/// One exact-match term: one index query.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Term {
    Name(ArtifactName),
    Sha256(Sha256),
    Meta { key: String, value: String },
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Term(Term),
    And(Vec<Query>),
    Or(Vec<Query>),
}

impl Query {
    /// The distinct terms, each to be queried once.
    pub fn terms(&self) -> BTreeSet<&Term> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut BTreeSet<&'a Term>) {
        match self {
            Self::Term(t) => {
                out.insert(t);
            }
            Self::And(qs) | Self::Or(qs) => qs.iter().for_each(|q| q.collect(out)),
        }
    }

    /// The query's matches, given each term's (a set algebra: AND is the
    /// intersection, OR the union).
    pub fn evaluate<K: Ord + Clone>(&self, matches: &dyn Fn(&Term) -> BTreeSet<K>) -> BTreeSet<K> {
        match self {
            Self::Term(t) => matches(t),
            Self::Or(qs) => qs.iter().flat_map(|q| q.evaluate(matches)).collect(),
            Self::And(qs) => {
                let mut sets = qs.iter().map(|q| q.evaluate(matches));
                let first = sets.next().unwrap_or_default();
                sets.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
            }
        }
    }

    /// Whether one row matches, given whether each term holds for it: what
    /// a search checks on every row it reads back, since an index entry
    /// can outlive what it recorded (the library purges rows, not index
    /// entries; a version number is reused after a purge; the `by-sha256`
    /// index lags behind LATEST).
    pub fn holds(&self, term_holds: &dyn Fn(&Term) -> bool) -> bool {
        match self {
            Self::Term(t) => term_holds(t),
            Self::Or(qs) => qs.iter().any(|q| q.holds(term_holds)),
            Self::And(qs) => qs.iter().all(|q| q.holds(term_holds)),
        }
    }
}

/// Parses `text` (400 with what is wrong and where).
pub fn parse(text: &str) -> Result<Query> {
    if text.len() > MAX_QUERY_LEN {
        return Err(invalid(format!(
            "q is longer than {MAX_QUERY_LEN} characters"
        )));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let query = parser.or(0)?;
    if let Some(token) = parser.tokens.get(parser.at) {
        return Err(invalid(format!("unexpected {token} after the query")));
    }
    let terms = query.terms().len();
    if terms > MAX_QUERY_TERMS {
        return Err(invalid(format!(
            "q has {terms} terms; at most {MAX_QUERY_TERMS}"
        )));
    }
    Ok(query)
}

fn invalid(detail: String) -> Error {
    Error::InvalidRequest(format!("q: {detail}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Value(String),
    Open,
    Close,
    Comma,
    Equals,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Word(w) => write!(f, "{w:?}"),
            Self::Value(v) => write!(f, "'{v}'"),
            Self::Open => f.write_str("\"(\""),
            Self::Close => f.write_str("\")\""),
            Self::Comma => f.write_str("\",\""),
            Self::Equals => f.write_str("\"=\""),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            ',' => tokens.push(Token::Comma),
            '=' => tokens.push(Token::Equals),
            '\'' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) if c.is_control() => {
                            return Err(invalid("a value holds a control character".into()));
                        }
                        Some(c) => value.push(c),
                        None => return Err(invalid("a value's closing quote is missing".into())),
                    }
                }
                tokens.push(Token::Value(value));
            }
            c if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' => {
                let mut word = String::from(c);
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            c => return Err(invalid(format!("unexpected character {c:?}"))),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self, depth: usize) -> Result<Query> {
        let mut parts = vec![self.and(depth)?];
        while self.keyword("OR") {
            self.at += 1;
            parts.push(self.and(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::Or(parts)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Query> {
        let mut parts = vec![self.atom(depth)?];
        while self.keyword("AND") {
            self.at += 1;
            parts.push(self.atom(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::And(parts)
        })
    }

    fn atom(&mut self, depth: usize) -> Result<Query> {
        match self.next() {
            Some(Token::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(invalid(format!("parentheses nest deeper than {MAX_DEPTH}")));
                }
                let inner = self.or(depth + 1)?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    other => Err(invalid(format!(
                        "expected \")\", found {}",
                        shown(other.as_ref())
                    ))),
                }
            }
            Some(Token::Word(field)) => {
                if self.keyword("IN") {
                    self.at += 1;
                    self.expect(Token::Open)?;
                    let mut values = vec![self.value()?];
                    while self.peek() == Some(&Token::Comma) {
                        self.at += 1;
                        values.push(self.value()?);
                    }
                    self.expect(Token::Close)?;
                    let terms = values
                        .into_iter()
                        .map(|v| term(&field, v).map(Query::Term))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(if terms.len() == 1 {
                        terms
                            .into_iter()
                            .next()
                            .map_or(Query::Or(Vec::new()), |t| t)
                    } else {
                        Query::Or(terms)
                    })
                } else {
                    self.expect(Token::Equals)?;
                    let value = self.value()?;
                    term(&field, value).map(Query::Term)
                }
            }
            other => Err(invalid(format!(
                "expected a term such as meta.team='ml' or \"(\", found {}",
                shown(other.as_ref())
            ))),
        }
    }

    fn expect(&mut self, want: Token) -> Result<()> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(invalid(format!(
                "expected {want}, found {}",
                shown(other.as_ref())
            ))),
        }
    }

    fn value(&mut self) -> Result<String> {
        match self.next() {
            Some(Token::Value(v)) => Ok(v),
            other => Err(invalid(format!(
                "expected a value in single quotes, found {}",
                shown(other.as_ref())
            ))),
        }
    }
}

fn shown(token: Option<&Token>) -> String {
    token.map_or_else(|| "the end".to_owned(), ToString::to_string)
}

fn term(field: &str, value: String) -> Result<Term> {
    match field {
        "name" => value
            .parse()
            .map(Term::Name)
            .map_err(|e| invalid(format!("name='{value}': {e}"))),
        "sha256" => value
            .parse()
            .map(Term::Sha256)
            .map_err(|e| invalid(format!("sha256='{value}': {e}"))),
        _ => {
            let Some(key) = field.strip_prefix("meta.") else {
                return Err(invalid(format!(
                    "unknown field {field:?}: use name, sha256 or meta.KEY"
                )));
            };
            let valid = !key.is_empty()
                && key.len() <= crate::limits::metadata_limits::MAX_KEY_LEN
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
            if !valid {
                return Err(invalid(format!(
                    "{field}: metadata keys are 1-64 of a-z 0-9 - _"
                )));
            }
            if value.len() > 1024 {
                return Err(invalid(format!("{field}: a value is at most 1024 bytes")));
            }
            Ok(Term::Meta {
                key: key.to_owned(),
                value,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, value: &str) -> Query {
        Query::Term(Term::Meta {
            key: key.into(),
            value: value.into(),
        })
    }

    fn name(n: &str) -> Query {
        Query::Term(Term::Name(n.parse().expect("a name")))
    }

    #[test]
    fn queries_parse_with_and_binding_tighter_than_or() {
        let cases = [
            ("meta.team='ml'", meta("team", "ml")),
            (
                "meta.team='ml' AND (name='fraud' OR meta.tier IN ('a','b'))",
                Query::And(vec![
                    meta("team", "ml"),
                    Query::Or(vec![
                        name("fraud"),
                        Query::Or(vec![meta("tier", "a"), meta("tier", "b")]),
                    ]),
                ]),
            ),
            (
                "name='a' or name='b' and meta.x='1'",
                Query::Or(vec![name("a"), Query::And(vec![name("b"), meta("x", "1")])]),
            ),
            ("meta.note='it''s'", meta("note", "it's")),
            ("meta.tier in ('a')", meta("tier", "a")),
            ("((name='a'))", name("a")),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).expect(text), want, "{text}");
        }
    }

    #[test]
    fn malformed_queries_are_refused_with_the_reason() {
        let cases = [
            ("", "expected a term"),
            ("meta.team=ml", "single quotes"),
            ("meta.team='ml", "closing quote"),
            ("meta.Team='ml'", "metadata keys"),
            ("owner='x'", "unknown field"),
            ("name='../x'", "name="),
            ("sha256='abc'", "sha256="),
            ("meta.a='1' AND", "expected a term"),
            ("(meta.a='1'", "expected \")\""),
            ("meta.a='1' meta.b='2'", "after the query"),
            ("meta.a IN ()", "single quotes"),
            ("meta.a='1'; DROP", "unexpected character"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let deep = format!("{}name='a'{}", "(".repeat(9), ")".repeat(9));
        assert!(parse(&deep).is_err());
        let wide = (0..17)
            .map(|i| format!("meta.k='{i}'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        assert!(
            parse(&wide)
                .expect_err("too many")
                .to_string()
                .contains("at most 16")
        );
        assert!(parse(&"a".repeat(MAX_QUERY_LEN + 1)).is_err());
    }

    #[test]
    fn and_intersects_or_unites() {
        let q = parse("meta.team='ml' AND (name='fraud' OR meta.tier IN ('a','b'))").expect("q");
        let matches = |t: &Term| -> BTreeSet<u32> {
            match t {
                Term::Meta { key, value } if key == "team" && value == "ml" => [1, 2, 3, 4].into(),
                Term::Name(n) if n.as_str() == "fraud" => [1, 9].into(),
                Term::Meta { key, value } if key == "tier" && value == "a" => [2].into(),
                Term::Meta { key, value } if key == "tier" && value == "b" => [3, 8].into(),
                _ => BTreeSet::new(),
            }
        };
        assert_eq!(q.evaluate(&matches), [1, 2, 3].into());
        assert_eq!(q.terms().len(), 4);
    }

    #[test]
    fn holds_agrees_with_evaluate_row_by_row() {
        let q = parse("meta.team='ml' AND (name='fraud' OR meta.tier IN ('a','b'))").expect("q");
        // (row, terms that hold for it, expected)
        let rows: [(&[&str], bool); 6] = [
            (&["team=ml", "name=fraud"], true),
            (&["team=ml", "tier=b"], true),
            (&["team=ml"], false),
            (&["name=fraud", "tier=a"], false),
            (&[], false),
            (&["team=ml", "tier=a", "tier=b", "name=fraud"], true),
        ];
        for (held, expected) in rows {
            let term_holds = |t: &Term| {
                let spelled = match t {
                    Term::Meta { key, value } => format!("{key}={value}"),
                    Term::Name(n) => format!("name={n}"),
                    Term::Sha256(d) => format!("sha256={d}"),
                };
                held.contains(&spelled.as_str())
            };
            assert_eq!(q.holds(&term_holds), expected, "{held:?}");
            let as_set = |t: &Term| -> BTreeSet<u8> {
                if term_holds(t) {
                    [0].into()
                } else {
                    BTreeSet::new()
                }
            };
            assert_eq!(q.evaluate(&as_set).contains(&0), expected, "{held:?}");
        }
    }
}
