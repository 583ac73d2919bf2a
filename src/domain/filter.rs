//! The `$filter` language of the OData list: a small recursive-descent parser that produces a
//! typed [`Expr`]. Errors say where (character position) and what was expected.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | test | function
//! test    := column op literal
//!          | column ("oneOf" | "notOneOf" | "associateIsOneOf" | "associateIsNotOneOf") list
//!          | column ("between" | "dateBetween") list-of-two
//! list    := "(" literal ("," literal)* ")" | literal ("," literal)*
//! function:= ("startswith" | "endswith" | "contains") "(" column "," 'text' ")"
//!          | "substringof" "(" 'text' "," column ")"
//! op      := eq ne lt le gt ge = != <> < <= > >= equals unequals greater less before after date
//!            contains notContains begins startsWith notBegins endsWith is isNot
//! literal := 'text' or "text" (a doubled quote stands for itself) | integer | null
//!          | a state name (State only)
//! ```
//!
//! Limits keep every accepted filter cheap and within SQLite's own limits (expression depth
//! 1000, 32766 bound values): at most [`MAX_DEPTH`] nested parentheses or `not`s, [`MAX_TESTS`]
//! tests and [`MAX_VALUES`] values in all. Over a limit is an error like any other, never a 500.

use chrono_tz::Tz;

use super::query::{Column, ColumnType, CompareOp, Expr, Literal, TextOp};
use super::task::BatchTaskState;

/// Deeper nesting than this is refused rather than risking the stack.
pub const MAX_DEPTH: usize = 32;
/// Most tests (comparisons) in one filter.
pub const MAX_TESTS: usize = 100;
/// Most literal values in one filter (oneOf lists included).
pub const MAX_VALUES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: expected {expected}, found {found}")]
pub struct FilterError {
    pub position: usize,
    pub expected: String,
    pub found: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Text(String),
    Number(i64),
    Op(&'static str),
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{}'", clip(w)),
            Tok::Text(t) => format!("text '{}'", clip(t)),
            Tok::Number(n) => format!("number {n}"),
            Tok::Op(o) => format!("'{o}'"),
            Tok::Open => "'('".into(),
            Tok::Close => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::End => "the end of the filter".into(),
        }
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 40 { s.chars().take(40).chain("…".chars()).collect() } else { s.to_owned() }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err =
        |pos: usize, expected: &str, found: String| FilterError { position: pos, expected: expected.into(), found };
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::Open
            }
            ')' => {
                i += 1;
                Tok::Close
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '\'' | '"' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(err(pos, "a closing quote", "the end of the filter".into()));
                        }
                        Some((_, ch)) if *ch == quote => {
                            if chars.get(i + 1).is_some_and(|(_, n)| *n == quote) {
                                text.push(quote);
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        // No stored text can hold U+0000 (PostgreSQL refuses it), so neither can a value.
                        Some((at, '\0')) => return Err(err(*at, "a character other than NUL", "NUL".into())),
                        Some((_, ch)) => {
                            text.push(*ch);
                            i += 1;
                        }
                    }
                }
                Tok::Text(text)
            }
            '=' => {
                i += 1;
                Tok::Op("eq")
            }
            '!' | '<' | '>' => {
                let next = chars.get(i + 1).map(|(_, c)| *c);
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => ("ne", 2),
                    ('<', Some('>')) => ("ne", 2),
                    ('<', Some('=')) => ("le", 2),
                    ('>', Some('=')) => ("ge", 2),
                    ('<', _) => ("lt", 1),
                    ('>', _) => ("gt", 1),
                    _ => return Err(err(pos, "an operator", format!("'{c}'"))),
                };
                i += len;
                Tok::Op(op)
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while chars.get(i).is_some_and(|(_, c)| c.is_ascii_digit()) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().map(|(_, c)| c).collect();
                Tok::Number(text.parse().map_err(|_| err(pos, "a whole number", format!("'{}'", clip(&text))))?)
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while chars.get(i).is_some_and(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '$') {
                    i += 1;
                }
                Tok::Word(chars[start..i].iter().map(|(_, c)| c).collect())
            }
            other => {
                return Err(err(pos, "a column, value or operator", format!("'{other}'")));
            }
        };
        out.push((pos, tok));
    }
    out.push((src.len(), Tok::End));
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    zone: Tz,
    depth: usize,
    tests: usize,
    values: usize,
}

enum Op {
    Cmp(CompareOp),
    Text(TextOp),
    OneOf(bool),
    Between,
}

fn op_word(w: &str) -> Option<Op> {
    Some(match w.to_ascii_lowercase().as_str() {
        "eq" | "equals" | "is" | "date" => Op::Cmp(CompareOp::Eq),
        "ne" | "unequals" | "isnot" => Op::Cmp(CompareOp::Ne),
        "lt" | "less" | "before" => Op::Cmp(CompareOp::Lt),
        "le" => Op::Cmp(CompareOp::Le),
        "gt" | "greater" | "after" => Op::Cmp(CompareOp::Gt),
        "ge" => Op::Cmp(CompareOp::Ge),
        "contains" => Op::Text(TextOp::Contains),
        "notcontains" => Op::Text(TextOp::NotContains),
        "begins" | "startswith" => Op::Text(TextOp::Begins),
        "notbegins" => Op::Text(TextOp::NotBegins),
        "endswith" | "ends" => Op::Text(TextOp::Ends),
        "oneof" | "associateisoneof" => Op::OneOf(false),
        "notoneof" | "associateisnotoneof" => Op::OneOf(true),
        "between" | "datebetween" => Op::Between,
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].1
    }
    fn pos(&self) -> usize {
        self.toks[self.i].0
    }
    fn fail<T>(&self, expected: &str) -> Result<T, FilterError> {
        Err(FilterError { position: self.pos(), expected: expected.into(), found: self.peek().describe() })
    }
    fn keyword(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail("less nesting (at most 32 levels)");
        }
        let mut left = self.and()?;
        while self.keyword("or") {
            self.i += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.i += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("not") {
            self.i += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return self.fail("less nesting (at most 32 levels)");
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if *self.peek() == Tok::Open {
            self.i += 1;
            let e = self.expr()?;
            if *self.peek() != Tok::Close {
                return self.fail("')'");
            }
            self.i += 1;
            return Ok(e);
        }
        self.test()
    }

    /// `startswith(Col, 'x')`, `endswith(Col, 'x')`, `contains(Col, 'x')`, `substringof('x', Col)`.
    fn function(&mut self, name: &str) -> Result<Expr, FilterError> {
        let op = match name.to_ascii_lowercase().as_str() {
            "startswith" => TextOp::Begins,
            "endswith" => TextOp::Ends,
            "contains" | "substringof" => TextOp::Contains,
            _ => return self.fail("a column of the BatchTasks archive"),
        };
        let text_first = name.eq_ignore_ascii_case("substringof");
        self.i += 2; // the name and '('
        let mut column = None;
        let mut value = None;
        for k in 0..2 {
            if k == 1 {
                if *self.peek() != Tok::Comma {
                    return self.fail("','");
                }
                self.i += 1;
            }
            if (k == 0) == text_first {
                match self.peek().clone() {
                    Tok::Text(t) => value = Some(t),
                    _ => return self.fail("a quoted text"),
                }
            } else {
                let c = match self.peek() {
                    Tok::Word(w) => Column::parse(w),
                    _ => None,
                };
                match c {
                    Some(c) if c.kind() == ColumnType::Text => column = Some(c),
                    Some(_) => return self.fail("a text column"),
                    None => return self.fail("a column of the BatchTasks archive"),
                }
            }
            self.i += 1;
        }
        if *self.peek() != Tok::Close {
            return self.fail("')'");
        }
        self.i += 1;
        self.count_test()?;
        self.count_value()?;
        Ok(Expr::Text { column: column.expect("set above"), op, value: value.expect("set above") })
    }

    fn count_test(&mut self) -> Result<(), FilterError> {
        self.tests += 1;
        if self.tests > MAX_TESTS { self.fail("fewer tests (at most 100)") } else { Ok(()) }
    }

    fn count_value(&mut self) -> Result<(), FilterError> {
        self.values += 1;
        if self.values > MAX_VALUES { self.fail("fewer values (at most 1000)") } else { Ok(()) }
    }

    /// `(a, b, c)` or `a, b, c`: the values of oneOf and between.
    fn list(&mut self, column: Column) -> Result<Vec<Literal>, FilterError> {
        let parens = *self.peek() == Tok::Open;
        if parens {
            self.i += 1;
        }
        let mut values = vec![self.literal(column)?];
        while *self.peek() == Tok::Comma {
            self.i += 1;
            values.push(self.literal(column)?);
        }
        if parens {
            if *self.peek() != Tok::Close {
                return self.fail("')' or ','");
            }
            self.i += 1;
        }
        Ok(values)
    }

    fn test(&mut self) -> Result<Expr, FilterError> {
        if let Tok::Word(w) = self.peek()
            && Column::parse(w).is_none()
            && self.toks.get(self.i + 1).is_some_and(|(_, t)| *t == Tok::Open)
        {
            let name = w.clone();
            return self.function(&name);
        }
        let column = match self.peek() {
            Tok::Word(w) => match Column::parse(w) {
                Some(c) => c,
                None => return self.fail("a column of the BatchTasks archive"),
            },
            _ => return self.fail("a column name"),
        };
        self.i += 1;
        let op = match self.peek() {
            Tok::Op(o) => op_word(o).expect("lexer emits known operators"),
            Tok::Word(w) => match op_word(w) {
                Some(op) => op,
                None => {
                    return self.fail("an operator (eq, ne, lt, le, gt, ge, contains, begins, oneOf)");
                }
            },
            _ => return self.fail("an operator (eq, ne, lt, le, gt, ge, contains, begins, oneOf)"),
        };
        self.i += 1;
        match op {
            Op::Cmp(op) => {
                let value = self.literal(column)?;
                self.count_test()?;
                Ok(Expr::Compare { column, op, value })
            }
            Op::Text(op) => {
                if column.kind() != ColumnType::Text {
                    self.i -= 1;
                    return self.fail(&format!("a comparison operator ({} is not a text column)", column.name()));
                }
                match self.peek().clone() {
                    Tok::Text(t) => {
                        self.i += 1;
                        self.count_test()?;
                        self.count_value()?;
                        Ok(Expr::Text { column, op, value: t })
                    }
                    _ => self.fail("a quoted text"),
                }
            }
            Op::OneOf(negated) => {
                let values = self.list(column)?;
                self.count_test()?;
                Ok(Expr::OneOf { column, values, negated })
            }
            Op::Between => {
                let at = self.i;
                let values = self.list(column)?;
                let [low, high]: [Literal; 2] = values.try_into().map_err(|_| FilterError {
                    position: self.toks[at].0,
                    expected: "two values (low, high)".into(),
                    found: "another number of values".into(),
                })?;
                self.count_test()?;
                Ok(Expr::And(
                    Box::new(Expr::Compare { column, op: CompareOp::Ge, value: low }),
                    Box::new(Expr::Compare { column, op: CompareOp::Le, value: high }),
                ))
            }
        }
    }

    fn literal(&mut self, column: Column) -> Result<Literal, FilterError> {
        let tok = self.peek().clone();
        let lit = match (column.kind(), tok) {
            (_, Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
            (ColumnType::Int | ColumnType::Associate, Tok::Number(n)) => Literal::Int(n),
            (ColumnType::Int, Tok::Word(w) | Tok::Text(w)) if column == Column::State => {
                match BatchTaskState::parse(&w) {
                    Some(s) => Literal::Int(s.number().into()),
                    None => return self.fail("a BatchTaskState name or number"),
                }
            }
            (ColumnType::Int | ColumnType::Associate, Tok::Text(t)) => match t.trim().parse() {
                Ok(n) => Literal::Int(n),
                Err(_) => return self.fail("a whole number"),
            },
            (ColumnType::Text, Tok::Text(t)) => Literal::Text(t),
            (ColumnType::Text, Tok::Number(n)) => Literal::Text(n.to_string()),
            (ColumnType::Date, Tok::Text(t)) => match super::time::parse(&t, self.zone) {
                Ok(d) => Literal::Date(d),
                Err(_) => {
                    return self.fail("a date like '2024-05-01' or '2024-05-01T12:00:00+02:00'");
                }
            },
            (ColumnType::Int | ColumnType::Associate, _) => return self.fail("a whole number"),
            (ColumnType::Text, _) => return self.fail("a quoted text"),
            (ColumnType::Date, _) => return self.fail("a quoted date"),
        };
        self.count_value()?;
        self.i += 1;
        Ok(lit)
    }
}

/// Parses a `$filter` value. Dates without a zone are read in `zone`.
pub fn parse(src: &str, zone: Tz) -> Result<Expr, FilterError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, i: 0, zone, depth: 0, tests: 0, values: 0 };
    let e = p.expr()?;
    if *p.peek() != Tok::End {
        return p.fail("'and', 'or' or the end of the filter");
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Expr {
        parse(s, Tz::UTC).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_documented_shapes() {
        assert_eq!(
            ok("State eq 1"),
            Expr::Compare { column: Column::State, op: CompareOp::Eq, value: Literal::Int(1) }
        );
        assert_eq!(
            ok("state = 'Started'"),
            Expr::Compare { column: Column::State, op: CompareOp::Eq, value: Literal::Int(3) }
        );
        assert!(matches!(ok("DefinitionName begins 'foo' and StartCount gt 1"), Expr::And(..)));
        assert!(matches!(
            ok("(Description contains 'a''b' or State oneOf(1,2)) and not StartCount ge 3"),
            Expr::And(..)
        ));
        assert!(matches!(ok("registeredDate lt '2024-05-01'"), Expr::Compare { value: Literal::Date(_), .. }));
        assert!(matches!(ok("State oneOf 1,2,3"), Expr::OneOf { .. }));
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse("State eq", Tz::UTC).unwrap_err();
        assert_eq!(e.position, 8);
        assert!(e.expected.contains("number") || e.expected.contains("State"), "{e}");
        let e = parse("Nope eq 1", Tz::UTC).unwrap_err();
        assert_eq!(e.position, 0);
        let e = parse("StartCount contains 'x'", Tz::UTC).unwrap_err();
        assert!(e.to_string().contains("not a text column"), "{e}");
        assert!(parse("Description eq 'unterminated", Tz::UTC).is_err());
        assert!(parse(&"(".repeat(10_000), Tz::UTC).is_err());
        assert!(parse("Description eq '1'; DROP TABLE batchtask; --'", Tz::UTC).is_err());
        assert_eq!(parse("Description eq 'a\0b'", Tz::UTC).unwrap_err().position, 17);
    }

    #[test]
    fn functions_between_and_associate_lists() {
        assert_eq!(
            ok("startswith(definitionName, 'Exp')"),
            Expr::Text { column: Column::DefinitionName, op: TextOp::Begins, value: "Exp".into() }
        );
        assert_eq!(
            ok("substringof('x', Description)"),
            Expr::Text { column: Column::Description, op: TextOp::Contains, value: "x".into() }
        );
        assert!(matches!(ok("endswith(Description,'z') and contains(Response, 'y')"), Expr::And(..)));
        assert!(matches!(ok("StartCount between (1, 5)"), Expr::And(..)));
        assert!(matches!(ok("registeredDate dateBetween '2024-01-01', '2024-02-01'"), Expr::And(..)));
        assert!(matches!(ok("registeredBy associateIsOneOf (1, 2)"), Expr::OneOf { negated: false, .. }));
        let e = parse("StartCount between (1, 2, 3)", Tz::UTC).unwrap_err();
        assert!(e.expected.contains("two values"), "{e}");
        let e = parse("startswith(StartCount, 'x')", Tz::UTC).unwrap_err();
        assert!(e.expected.contains("text column"), "{e}");
        assert!(parse("nosuch(Description, 'x')", Tz::UTC).is_err());
    }

    #[test]
    fn limits_are_errors_with_positions() {
        let many = vec!["StartCount eq 1"; MAX_TESTS + 1].join(" and ");
        let e = parse(&many, Tz::UTC).unwrap_err();
        assert!(e.expected.contains("fewer tests"), "{e}");
        assert!(parse(&vec!["StartCount eq 1"; MAX_TESTS].join(" or "), Tz::UTC).is_ok());
        let values = (0..=MAX_VALUES).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let e = parse(&format!("batchTaskId oneOf ({values})"), Tz::UTC).unwrap_err();
        assert!(e.expected.contains("fewer values"), "{e}");
        let deep = format!("{}State eq 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&deep, Tz::UTC).is_err());
        let nots = format!("{}State eq 1", "not ".repeat(MAX_DEPTH + 1));
        assert!(parse(&nots, Tz::UTC).is_err());
        let long = format!("Description eq '{}'", "x".repeat(100_000));
        assert!(parse(&long, Tz::UTC).is_ok());
        let e = parse(&format!("Description eq '{}", "x".repeat(100_000)), Tz::UTC).unwrap_err();
        assert_eq!(e.position, 15);
    }
}
