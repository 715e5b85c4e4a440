//! Statement templates and the only path by which SQL reaches a target database.
//!
//! A backend sends [`SqlText`] and nothing else. `SqlText` can be produced only by
//! [`render`] (a DBA's statement template with `{{name}}`-style placeholders) or by
//! [`SqlBuilder`] (static SQL plus identifiers and literals quoted for the dialect), so a
//! raw `format!` of user input cannot reach a database.
//!
//! Placeholders are substituted as plain text, as Vault does, because templates already
//! carry their own quotes (`CREATE ROLE "{{name}}" ... PASSWORD '{{password}}'`). To keep
//! that safe, a substituted value may not contain any character that could end a quoted
//! context: quotes of every kind, backslashes and control characters are refused, and so is
//! a value that would add a dollar-quote delimiter (`$$`, `$tag$`) of its statement, which
//! would end a PostgreSQL `DO $$ ... $$` body early. Each placeholder is replaced once, in
//! one pass: text inside a substituted value is never taken for a placeholder.

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::BackendError;

/// SQL text that is safe to send: rendered from a template or built with quoting.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlText(String);

impl SqlText {
    /// SQL fixed at compile time.
    pub fn from_static(sql: &'static str) -> Self {
        SqlText(sql.to_owned())
    }

    /// The text to send.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `SqlText` is not printed as is, since it may contain a password.
impl std::fmt::Debug for SqlText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlText({} bytes)", self.0.len())
    }
}

/// How a dialect quotes identifiers and string literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// SQL standard: `"ident"`, `'literal'`, quotes doubled (PostgreSQL family, DM).
    Ansi,
    /// MySQL family: `` `ident` ``, `'literal'` with `'` doubled and `\` escaped.
    MySql,
}

impl Quoting {
    /// Quotes an identifier.
    pub fn ident(self, name: &str) -> String {
        match self {
            Quoting::Ansi => format!("\"{}\"", name.replace('"', "\"\"")),
            Quoting::MySql => format!("`{}`", name.replace('`', "``")),
        }
    }

    /// Quotes a string literal.
    pub fn literal(self, value: &str) -> String {
        match self {
            Quoting::Ansi => format!("'{}'", value.replace('\'', "''")),
            Quoting::MySql => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''")),
        }
    }
}

/// Builds [`SqlText`] from static fragments and quoted values.
#[derive(Debug)]
pub struct SqlBuilder {
    quoting: Quoting,
    sql: String,
}

impl SqlBuilder {
    /// Starts an empty statement for a dialect.
    pub fn new(quoting: Quoting) -> Self {
        SqlBuilder {
            quoting,
            sql: String::new(),
        }
    }

    /// Appends SQL fixed at compile time.
    pub fn push(mut self, sql: &'static str) -> Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a quoted identifier.
    pub fn ident(mut self, name: &str) -> Self {
        self.sql.push_str(&self.quoting.ident(name));
        self
    }

    /// Appends a quoted string literal.
    pub fn literal(mut self, value: &str) -> Self {
        self.sql.push_str(&self.quoting.literal(value));
        self
    }

    /// Appends an integer (session ids, oids): digits only, so it needs no quoting.
    pub fn integer(mut self, value: i64) -> Self {
        self.sql.push_str(&value.to_string());
        self
    }

    /// Finishes the statement.
    pub fn finish(self) -> SqlText {
        SqlText(self.sql)
    }
}

/// The values a statement template may refer to.
#[derive(Default)]
pub struct StatementVars<'a> {
    /// `{{name}}` and `{{username}}`.
    pub username: Option<&'a str>,
    /// `{{password}}`.
    pub password: Option<&'a str>,
    /// `{{expiration}}`, formatted as `2006-01-02 15:04:05-0700` like Vault.
    pub expiration: Option<DateTime<Utc>>,
}

/// Formats an expiry the way Vault's plugins substitute `{{expiration}}`.
pub fn format_expiration(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%z").to_string()
}

/// Splits the statement list of a role into single statements, as Vault does.
///
/// Each element may be base64 of the statements, a JSON array of strings, or plain text
/// with statements separated by `;`. An element containing a bare `END` keyword outside
/// quotes (a `DO $$ ... END $$` block) is kept whole.
pub fn split_statements(elements: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for element in elements {
        let text = decode_element(element);
        for part in text {
            if contains_bare_end(&part) {
                let trimmed = part.trim();
                if !trimmed.is_empty() {
                    out.push(trimmed.to_owned());
                }
                continue;
            }
            out.extend(
                part.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    out
}

fn decode_element(element: &str) -> Vec<String> {
    let trimmed = element.trim();
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(trimmed)
        && let Ok(text) = String::from_utf8(bytes)
        && !trimmed.is_empty()
    {
        return decode_element(&text);
    }
    if trimmed.starts_with('[')
        && let Ok(list) = serde_json::from_str::<Vec<String>>(trimmed)
    {
        return list;
    }
    vec![element.to_owned()]
}

fn contains_bare_end(sql: &str) -> bool {
    let mut in_single = false;
    let mut in_double = false;
    let mut word = String::new();
    for c in sql.chars().chain(std::iter::once(' ')) {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single => in_double = !in_double,
            _ => {}
        }
        if !in_single && !in_double && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
        } else {
            if word.eq_ignore_ascii_case("end") {
                return true;
            }
            word.clear();
        }
    }
    false
}

/// Renders statement templates into SQL, refusing values that could escape their quotes.
///
/// `{{name}}` and `{{username}}` take the username, `{{password}}` the password and
/// `{{expiration}}` the expiry. An unknown `{{...}}` is left as is, as in Vault.
pub fn render(
    templates: &[String],
    vars: &StatementVars<'_>,
) -> Result<Vec<SqlText>, BackendError> {
    if let Some(name) = vars.username {
        check_substitutable("username", name)?;
    }
    if let Some(password) = vars.password {
        check_substitutable("password", password)?;
    }
    let expiration = vars.expiration.map(format_expiration);
    let values = [
        ("{{name}}", vars.username),
        ("{{username}}", vars.username),
        ("{{password}}", vars.password),
        ("{{expiration}}", expiration.as_deref()),
    ];
    split_statements(templates)
        .into_iter()
        .map(|stmt| {
            let sql = substitute(&stmt, &values);
            check_dollar_quotes(&stmt, &sql)?;
            Ok(SqlText(sql))
        })
        .collect()
}

/// Replaces each placeholder that has a value in one left-to-right pass, so a value that
/// itself contains `{{password}}` (say) is copied as it is.
fn substitute(template: &str, values: &[(&str, Option<&str>)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match values
            .iter()
            .find_map(|(ph, value)| value.filter(|_| rest.starts_with(ph)).map(|v| (ph, v)))
        {
            Some((ph, value)) => {
                out.push_str(value);
                rest = &rest[ph.len()..];
            }
            None => {
                // Only one `{`: in `{{{name}}` the placeholder starts at the second.
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Refuses a rendering in which the substituted values added a dollar-quote delimiter that
/// the statement uses (`$$` or `$tag$`): inside `DO $$ ... $$` such a value would end the
/// body and let the rest of it run as SQL. Delimiters are collected wherever they appear in
/// the template, which may refuse a harmless value but never misses a real delimiter.
fn check_dollar_quotes(template: &str, sql: &str) -> Result<(), BackendError> {
    for delimiter in dollar_delimiters(template) {
        if count_overlapping(sql, &delimiter) > count_overlapping(template, &delimiter) {
            return Err(BackendError::InvalidRequest(format!(
                "a substituted value contains {delimiter}, which would end a dollar-quoted \
                 block of the statement; change the password policy or username template"
            )));
        }
    }
    Ok(())
}

/// Every `$$` and `$tag$` in `sql` (a tag as PostgreSQL allows: a letter, `_` or any
/// non-ASCII character, then those and digits).
fn dollar_delimiters(sql: &str) -> Vec<String> {
    let is_tag_char = |c: char| c.is_alphanumeric() || c == '_' || !c.is_ascii();
    let mut found: Vec<String> = Vec::new();
    for (at, _) in sql.match_indices('$') {
        let after = &sql[at + 1..];
        let tag_len = after.find(|c| !is_tag_char(c)).unwrap_or(after.len());
        let tag = &after[..tag_len];
        if after[tag_len..].starts_with('$') && !tag.starts_with(|c: char| c.is_ascii_digit()) {
            let delimiter = format!("${tag}$");
            if !found.contains(&delimiter) {
                found.push(delimiter);
            }
        }
    }
    found
}

/// Occurrences of `needle` in `haystack`, overlapping ones included (`$$$` holds two `$$`).
fn count_overlapping(haystack: &str, needle: &str) -> usize {
    haystack
        .char_indices()
        .filter(|(at, _)| haystack[*at..].starts_with(needle))
        .count()
}

fn check_substitutable(what: &str, value: &str) -> Result<(), BackendError> {
    // The offending character is named, the value never is (it may be a password).
    if let Some(bad) = value
        .chars()
        .find(|c| matches!(c, '\'' | '"' | '`' | '\\') || c.is_control())
    {
        return Err(BackendError::InvalidRequest(format!(
            "the {what} contains the character {bad:?}, which cannot be substituted into a statement safely; \
             change the password policy or username template"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_on_semicolons_and_drops_empty() {
        let got = split_statements(&strings(&[
            "CREATE ROLE \"{{name}}\"; GRANT x TO \"{{name}}\";;",
            "  ",
        ]));
        assert_eq!(
            got,
            strings(&["CREATE ROLE \"{{name}}\"", "GRANT x TO \"{{name}}\""])
        );
    }

    #[test]
    fn keeps_do_blocks_whole() {
        let block = "DO $$ BEGIN CREATE ROLE a; END $$;";
        assert_eq!(
            split_statements(&strings(&[block])),
            strings(&[block.trim()])
        );
        // END inside quotes is not a block end.
        assert_eq!(
            split_statements(&strings(&["SELECT 'end'; SELECT 1"])),
            strings(&["SELECT 'end'", "SELECT 1"])
        );
    }

    #[test]
    fn accepts_base64_and_json_elements() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("SELECT 1; SELECT 2");
        assert_eq!(split_statements(&[b64]), strings(&["SELECT 1", "SELECT 2"]));
        assert_eq!(
            split_statements(&strings(&["[\"SELECT 1\", \"SELECT 2\"]"])),
            strings(&["SELECT 1", "SELECT 2"])
        );
    }

    #[test]
    fn renders_placeholders() {
        let vars = StatementVars {
            username: Some("v-u1"),
            password: Some("Pa55-word"),
            expiration: Some(DateTime::from_timestamp(0, 0).unwrap()),
        };
        let got = render(
            &strings(&["CREATE ROLE \"{{name}}\" PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT r TO \"{{username}}\""]),
            &vars,
        )
        .unwrap();
        assert_eq!(
            got[0].as_str(),
            "CREATE ROLE \"v-u1\" PASSWORD 'Pa55-word' VALID UNTIL '1970-01-01 00:00:00+0000'"
        );
        assert_eq!(got[1].as_str(), "GRANT r TO \"v-u1\"");
    }

    #[test]
    fn refuses_values_that_escape_quotes_without_echoing_them() {
        for hostile in ["a'b", "a\"b", "a`b", "a\\b", "a\nb", "a\0b"] {
            let vars = StatementVars {
                password: Some(hostile),
                ..Default::default()
            };
            let err = render(&strings(&["SELECT '{{password}}'"]), &vars).unwrap_err();
            assert!(!err.to_string().contains(hostile), "{err}");
        }
        let vars = StatementVars {
            username: Some("x\"; DROP TABLE t; --"),
            ..Default::default()
        };
        assert!(render(&strings(&["CREATE ROLE \"{{name}}\""]), &vars).is_err());
    }

    /// Found by the `statement_render` fuzz target: with the password `pa$$word` the `$$`
    /// ended the `DO $$` body early, so the rest of the body ran as top-level SQL.
    #[test]
    fn refuses_values_that_end_a_dollar_quoted_body() {
        let block = strings(&[
            "DO $$ BEGIN CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}'; END $$;",
        ]);
        let vars = |password| StatementVars {
            username: Some("v-u1"),
            password: Some(password),
            ..Default::default()
        };
        let err = render(&block, &vars("pa$$word")).unwrap_err();
        assert!(!err.to_string().contains("pa$$word"), "{err}");
        // A value that completes a delimiter with the template's own `$` is refused too.
        let tagged = strings(&["DO $body$ BEGIN PERFORM '{{password}}body$'; END $body$"]);
        assert!(render(&tagged, &vars("x$")).is_err());
        let unicode = strings(&["DO $é😀$ BEGIN PERFORM '{{password}}'; END $é😀$"]);
        assert!(render(&unicode, &vars("a$é😀$b")).is_err());
        // `$` alone, another tag, or `$$` outside any dollar-quoted statement are fine.
        assert!(render(&block, &vars("pa$word$")).is_ok());
        assert!(
            render(
                &strings(&["ALTER ROLE \"{{name}}\" PASSWORD '{{password}}'"]),
                &vars("pa$$word")
            )
            .is_ok()
        );
    }

    /// Values used to be substituted one placeholder after the other, so a username
    /// containing `{{password}}` received the password (seen while writing the one-pass
    /// reference renderer of the `statement_render` fuzz target, which now checks this; the
    /// target also caught `{{{name}}` mishandled by the first version of the fix).
    #[test]
    fn substitutes_each_placeholder_once() {
        let vars = StatementVars {
            username: Some("u{{password}}"),
            password: Some("p{{name}}{{expiration}}"),
            expiration: Some(DateTime::from_timestamp(0, 0).unwrap()),
        };
        let got = render(
            &strings(&["CREATE ROLE \"{{name}}\" PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' {{other}} {{{name}}}"]),
            &vars,
        )
        .unwrap();
        assert_eq!(
            got[0].as_str(),
            "CREATE ROLE \"u{{password}}\" PASSWORD 'p{{name}}{{expiration}}' VALID UNTIL '1970-01-01 00:00:00+0000' {{other}} {u{{password}}}"
        );
    }

    #[test]
    fn quoting_handles_hostile_input() {
        assert_eq!(Quoting::Ansi.ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(Quoting::Ansi.literal("it's"), "'it''s'");
        assert_eq!(Quoting::MySql.ident("a`b"), "`a``b`");
        assert_eq!(Quoting::MySql.literal("a\\'b"), "'a\\\\''b'");
        let sql = SqlBuilder::new(Quoting::Ansi)
            .push("DROP ROLE IF EXISTS ")
            .ident("x\"y")
            .finish();
        assert_eq!(sql.as_str(), "DROP ROLE IF EXISTS \"x\"\"y\"");
        assert!(!format!("{sql:?}").contains("DROP"));
    }
}
