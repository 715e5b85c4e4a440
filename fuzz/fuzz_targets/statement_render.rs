//! Statement rendering and quoting (`dbwarden_plugin::statement`).
//!
//! Input: byte fields separated by 0xFF (never part of UTF-8 text):
//! `name 0xFF password 0xFF expiration-unix-seconds 0xFF template 0xFF template ...`.
//!
//! Properties:
//! - `Quoting::ident` / `Quoting::literal` of any text, read back by the dialect's lexer, is
//!   one token that ends where the quoted text ends and decodes to the input.
//! - `SqlBuilder` output is exactly the concatenation of its pieces.
//! - `render` substitutes each placeholder once, literally (a value containing `{{...}}` is
//!   not expanded again), and refuses values `check_substitutable` rejects; the only other
//!   refusal is a value that adds a dollar-quote delimiter.
//! - When every placeholder of a template sits inside a quoted token (string, quoted
//!   identifier, dollar-quoted body), substituting the values never changes the statement's
//!   token structure under either dialect's lexer: a value cannot leave its quotes.
#![no_main]

use chrono::DateTime;
use dbwarden_plugin::statement::{
    Quoting, SqlBuilder, StatementVars, format_expiration, render, split_statements,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data
        .split(|&b| b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let name = parts.next().unwrap_or_default();
    let password = parts.next().unwrap_or_default();
    let expiration = parts
        .next()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0));
    let templates: Vec<String> = parts.collect();

    check_quoting(&name);
    check_quoting(&password);
    let built = SqlBuilder::new(Quoting::Ansi)
        .push("GRANT ")
        .ident(&name)
        .push(" TO ")
        .literal(&password)
        .integer(i64::from(name.len() as u32))
        .finish();
    assert_eq!(
        built.as_str(),
        format!(
            "GRANT {} TO {}{}",
            Quoting::Ansi.ident(&name),
            Quoting::Ansi.literal(&password),
            name.len() as u32
        )
    );

    // split_statements never yields empty or untrimmed statements.
    for stmt in split_statements(&templates) {
        assert!(!stmt.is_empty() && stmt.trim() == stmt, "{stmt:?}");
    }

    let vars = StatementVars {
        username: Some(&name),
        password: Some(&password),
        expiration,
    };
    match render(&templates, &vars) {
        Err(err) => {
            // Besides characters that end quotes, only a value that adds a dollar-quote
            // delimiter to a statement is refused.
            if substitutable(&name) && substitutable(&password) {
                assert!(err.to_string().contains("dollar-quoted"), "{err}");
                let exp = expiration.map(format_expiration);
                assert!(
                    split_statements(&templates).iter().any(|stmt| {
                        let sql = one_pass(stmt, &name, &password, exp.as_deref());
                        dollar_delimiters(&sql) > dollar_delimiters(stmt)
                    }),
                    "refused although no value adds a dollar-quote delimiter"
                );
            }
        }
        Ok(rendered) => {
            assert!(substitutable(&name) && substitutable(&password));
            let statements = split_statements(&templates);
            assert_eq!(rendered.len(), statements.len());
            let exp = expiration.map(format_expiration);
            for (stmt, sql) in statements.iter().zip(&rendered) {
                let expected = one_pass(stmt, &name, &password, exp.as_deref());
                assert_eq!(
                    sql.as_str(),
                    expected,
                    "placeholders must be substituted once"
                );
            }
            // The same templates with marker characters (private-use, so ordinary text to
            // both lexers) for the values show where each placeholder sits. They are
            // rendered from the same element list: a split statement is not necessarily
            // split the same way again (a JSON element may hold base64 text). A marker
            // between two `$` can itself be refused as a dollar-quote tag; then there is
            // nothing to compare.
            let markers = StatementVars {
                username: Some("\u{E001}"),
                password: Some("\u{E002}"),
                expiration,
            };
            let Ok(marked_all) = render(&templates, &markers) else {
                return;
            };
            for ((stmt, sql), marked) in statements.iter().zip(&rendered).zip(&marked_all) {
                let marked = marked.as_str();
                for dialect in [Dialect::Postgres, Dialect::MySql] {
                    let template_tokens = lex(marked, dialect);
                    if markers_all_quoted(marked, &template_tokens) {
                        assert_eq!(
                            kinds(&lex(sql.as_str(), dialect)),
                            kinds(&template_tokens),
                            "{dialect:?}: a substituted value changed the statement structure: {stmt:?}"
                        );
                    }
                }
            }
        }
    }
});

/// The same rule as `check_substitutable`, restated.
fn substitutable(value: &str) -> bool {
    !value
        .chars()
        .any(|c| matches!(c, '\'' | '"' | '`' | '\\') || c.is_control())
}

/// Reference renderer: one left-to-right pass, substituted text is never scanned again.
fn one_pass(template: &str, name: &str, password: &str, exp: Option<&str>) -> String {
    let mut out = String::new();
    let mut rest = template;
    'scan: while !rest.is_empty() {
        for (ph, value) in [
            ("{{name}}", Some(name)),
            ("{{username}}", Some(name)),
            ("{{password}}", Some(password)),
            ("{{expiration}}", exp),
        ] {
            if let (true, Some(value)) = (rest.starts_with(ph), value) {
                out.push_str(value);
                rest = &rest[ph.len()..];
                continue 'scan;
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn check_quoting(value: &str) {
    for (quoting, dialect) in [
        (Quoting::Ansi, Dialect::Postgres),
        (Quoting::MySql, Dialect::MySql),
    ] {
        for (quoted, kind) in [
            (quoting.ident(value), Kind::Ident),
            (quoting.literal(value), Kind::Str),
        ] {
            let tokens = lex(&quoted, dialect);
            assert_eq!(
                tokens.len(),
                1,
                "{quoting:?} {kind:?} of {value:?}: {quoted:?}"
            );
            assert_eq!(tokens[0].kind, kind);
            assert_eq!(tokens[0].end, quoted.len());
            assert_eq!(
                decode(&quoted, dialect, kind),
                value,
                "{quoting:?} {kind:?} does not decode back"
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// PostgreSQL: `'str'` with `''`, `"ident"` with `""`, `$tag$...$tag$`, `--`, nested `/* */`.
    Postgres,
    /// MySQL: `'str'`/`"str"` with doubling and `\` escapes, `` `ident` ``, `#`, `-- `, `/* */`.
    MySql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Ident,
    Dollar,
    Comment,
    Unterminated,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Splits SQL into quoted tokens, comments and runs of other text (merged).
fn lex(sql: &str, dialect: Dialect) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let rest = &b[i..];
        let (kind, end) = match (rest[0], dialect) {
            (b'\'', _) => quoted(b, i, b'\'', dialect == Dialect::MySql, Kind::Str),
            (b'"', Dialect::Postgres) => quoted(b, i, b'"', false, Kind::Ident),
            (b'"', Dialect::MySql) => quoted(b, i, b'"', true, Kind::Str),
            (b'`', Dialect::MySql) => quoted(b, i, b'`', false, Kind::Ident),
            (b'-', _)
                if rest.starts_with(b"--")
                    && (dialect == Dialect::Postgres
                        || rest.get(2).is_none_or(|c| c.is_ascii_whitespace())) =>
            {
                (Kind::Comment, line_end(b, i))
            }
            (b'#', Dialect::MySql) => (Kind::Comment, line_end(b, i)),
            (b'/', _) if rest.starts_with(b"/*") => block_comment(b, i, dialect),
            (b'$', Dialect::Postgres) if i == 0 || !is_ident_byte(b[i - 1]) => {
                match dollar_tag(b, i) {
                    Some(tag_end) => {
                        let tag = &b[i..tag_end];
                        match find(b, tag_end, tag) {
                            Some(at) => (Kind::Dollar, at + tag.len()),
                            None => (Kind::Unterminated, b.len()),
                        }
                    }
                    None => (Kind::Other, i + 1),
                }
            }
            _ => (Kind::Other, i + 1),
        };
        i = end;
        if kind == Kind::Other
            && let Some(last) = tokens.last_mut()
            && last.kind == Kind::Other
        {
            last.end = end;
            continue;
        }
        tokens.push(Token { kind, start, end });
    }
    tokens
}

fn quoted(b: &[u8], start: usize, q: u8, backslash: bool, kind: Kind) -> (Kind, usize) {
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return (kind, i + 1);
        }
        i += 1;
    }
    (Kind::Unterminated, b.len())
}

fn line_end(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| start + p + 1)
}

fn block_comment(b: &[u8], start: usize, dialect: Dialect) -> (Kind, usize) {
    let mut depth = 0;
    let mut i = start;
    while i < b.len() {
        if b[i..].starts_with(b"/*") && (depth == 0 || dialect == Dialect::Postgres) {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return (Kind::Comment, i);
            }
        } else {
            i += 1;
        }
    }
    (Kind::Unterminated, b.len())
}

/// End of a `$tag$` delimiter starting at `start`, if there is one.
fn dollar_tag(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if b.get(i).is_some_and(|c| c.is_ascii_digit()) {
        return None; // `$1` is a parameter
    }
    while i < b.len() && is_ident_byte(b[i]) && b[i] != b'$' {
        i += 1;
    }
    (b.get(i) == Some(&b'$')).then_some(i + 1)
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Decodes a quoted token as the dialect's lexer would.
fn decode(quoted: &str, dialect: Dialect, kind: Kind) -> String {
    let q = quoted.chars().next().unwrap();
    let inner = &quoted[1..quoted.len() - 1];
    let backslash = dialect == Dialect::MySql && kind == Kind::Str;
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if backslash && c == '\\' {
            let next = chars.next().expect("escape at the end");
            match next {
                '0' => out.push('\0'),
                'b' => out.push('\u{8}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'Z' => out.push('\u{1A}'),
                // MySQL keeps the backslash of `\%` and `\_` (LIKE patterns).
                '%' | '_' => {
                    out.push('\\');
                    out.push(next);
                }
                other => out.push(other),
            }
        } else if c == q {
            assert_eq!(chars.next(), Some(q), "lone quote inside a token");
            out.push(q);
        } else {
            out.push(c);
        }
    }
    out
}

/// How many `$$` / `$tag$` delimiters `sql` contains, overlapping ones included. A value
/// may complete one with the template's own `$` characters (`${{name}}$`).
fn dollar_delimiters(sql: &str) -> usize {
    let b = sql.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'$' && dollar_tag(b, i).is_some())
        .count()
}

fn kinds(tokens: &[Token]) -> Vec<Kind> {
    tokens.iter().map(|t| t.kind).collect()
}

/// Whether every marker character lies inside a string, quoted identifier or dollar body,
/// and not where the template's own text acts on it: next to a `$` (the value would shape a
/// dollar-quote tag) or after a backslash (a MySQL escape of the value's first character,
/// or of the template's next one when the value is empty).
fn markers_all_quoted(sql: &str, tokens: &[Token]) -> bool {
    let acted_on = [
        "$\u{E001}",
        "\u{E001}$",
        "\\\u{E001}",
        "$\u{E002}",
        "\u{E002}$",
        "\\\u{E002}",
    ];
    if acted_on.iter().any(|m| sql.contains(m)) {
        return false;
    }
    sql.char_indices()
        .filter(|(_, c)| matches!(c, '\u{E001}' | '\u{E002}'))
        .all(|(at, _)| {
            tokens.iter().any(|t| {
                t.start < at
                    && at < t.end
                    && matches!(t.kind, Kind::Str | Kind::Ident | Kind::Dollar)
            })
        })
}
