//! Reading the connection details of an ODBC connection.
//!
//! `connection_url` is an ODBC connection string (`Driver={PostgreSQL Unicode};Server=...;`
//! or `DSN=...;`) in which `{{username}}` and `{{password}}` are replaced by the `username`
//! and `password` details, escaped by ODBC's rule: a value containing `;`, `{`, `}`, `=`, `+`
//! or surrounding spaces is wrapped in braces, with `}` doubled. Write `PWD={{password}}`, not
//! `PWD={{{password}}}`. When the string names no `UID`/`PWD` (and has no placeholder), the
//! details are appended as `UID=...;PWD=...`.
//!
//! Other details: `dialect` (see [`crate::dialect`]), `max_open_connections`,
//! `max_idle_connections`, `max_connection_lifetime`, `username_template`, and
//! `connect_timeout` (seconds, default 10).

use dbwarden_plugin::BackendError;
use dbwarden_plugin::details::{self, PoolSettings, UsernameRules};
use serde_json::{Map, Value};

use crate::dialect::Dialect;

/// Everything read from the connection details.
pub(crate) struct Settings {
    /// The ODBC connection string with credentials filled in. Never logged.
    pub connection_string: String,
    /// Pool size and connection lifetime.
    pub pool: PoolSettings,
    /// Username template and limit.
    pub usernames: UsernameRules,
    /// Login timeout in seconds.
    pub connect_timeout: u32,
    /// The admin password, raw and as substituted, for redaction.
    pub admin_secrets: Vec<String>,
}

impl Settings {
    /// Parses connection details for `dialect`.
    pub fn from_details(
        dialect: Dialect,
        details: &Map<String, Value>,
    ) -> Result<Self, BackendError> {
        let template = details::string(details, "connection_url")?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| BackendError::InvalidConfig("connection_url is required".into()))?;
        let username = details::string(details, "username")?.unwrap_or_default();
        let password = details::string(details, "password")?.unwrap_or_default();
        let user_sub = escape_value(&username);
        let pass_sub = escape_value(&password);
        let mut admin_secrets = vec![password.clone(), pass_sub.clone()];
        admin_secrets.dedup();
        admin_secrets.retain(|s| !s.is_empty());

        let template = template.trim();
        // Validate the template's own syntax before secrets are substituted into it, so an
        // error can never quote the password.
        let keys = attribute_keys(&details::substitute_credentials(template, "u", "p"))
            .map_err(BackendError::InvalidConfig)?;
        let has = |names: &[&str]| {
            keys.iter()
                .any(|k| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
        };
        if !keys.iter().any(|k| {
            k.eq_ignore_ascii_case("driver")
                || k.eq_ignore_ascii_case("dsn")
                || k.eq_ignore_ascii_case("filedsn")
        }) {
            return Err(BackendError::InvalidConfig(
                "connection_url must be an ODBC connection string naming a Driver or a DSN, \
                 for example Driver={PostgreSQL Unicode};Server=db;Port=5432;Database=app;\
                 UID={{username}};PWD={{password}}"
                    .into(),
            ));
        }
        let mut connection_string = details::substitute_credentials(template, &user_sub, &pass_sub);
        let mut append = |key: &str, value: &str| {
            if !connection_string.trim_end().ends_with(';') {
                connection_string.push(';');
            }
            connection_string.push_str(key);
            connection_string.push('=');
            connection_string.push_str(value);
            connection_string.push(';');
        };
        if !username.is_empty()
            && !template.contains("{{username}}")
            && !template.contains("{{name}}")
            && !has(&["uid", "user", "username"])
        {
            append("UID", &user_sub);
        }
        if !password.is_empty() && !template.contains("{{password}}") && !has(&["pwd", "password"])
        {
            append("PWD", &pass_sub);
        }

        let connect_timeout = details::integer(details, "connect_timeout")?
            .map(|s| u32::try_from(s).unwrap_or(u32::MAX))
            .unwrap_or(10);
        let (limit, unit) = dialect.max_username();
        Ok(Settings {
            connection_string,
            pool: PoolSettings::from_details(details)?,
            usernames: UsernameRules::from_details(
                details,
                dialect.default_username_template(),
                limit,
                unit,
                dialect.username_limit_name(),
            )?,
            connect_timeout,
            admin_secrets,
        })
    }
}

/// The connection string a connection's details produce, credentials included (for tests and
/// golden files; never log it).
pub fn connection_string(
    dialect: Dialect,
    details: &Map<String, Value>,
) -> Result<String, BackendError> {
    Settings::from_details(dialect, details).map(|s| s.connection_string)
}

/// Escapes an attribute value for an ODBC connection string.
///
/// Values that could end the attribute or be misread (`;`, braces, `=`, `+` which some drivers
/// decode as a space, surrounding blanks) are wrapped in braces with `}` doubled; others are
/// left as they are, since a few drivers mishandle braces they do not need.
pub fn escape_value(value: &str) -> String {
    let needs_braces = value.contains([';', '{', '}', '=', '+'])
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace);
    if needs_braces {
        format!("{{{}}}", value.replace('}', "}}"))
    } else {
        value.to_owned()
    }
}

/// The attribute keys of a connection string, checking its brace syntax.
///
/// Errors describe the position only, never the text.
pub fn attribute_keys(conn: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut chars = conn.char_indices().peekable();
    loop {
        while chars
            .next_if(|(_, c)| *c == ';' || c.is_whitespace())
            .is_some()
        {}
        let Some(&(start, _)) = chars.peek() else {
            return Ok(keys);
        };
        let mut key = String::new();
        loop {
            match chars.next() {
                Some((_, '=')) => break,
                Some((_, ';')) | None => {
                    return Err(format!(
                        "connection_url: the attribute at byte {start} has no '='"
                    ));
                }
                Some((_, c)) => key.push(c),
            }
        }
        keys.push(key.trim().to_owned());
        while chars.next_if(|(_, c)| *c == ' ').is_some() {}
        if chars.next_if(|(_, c)| *c == '{').is_some() {
            // A braced value ends at a `}` that is not doubled.
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "connection_url: the value of the attribute at byte {start} has an \
                             unterminated '{{'"
                        ));
                    }
                    Some((_, '}')) => {
                        if chars.next_if(|(_, c)| *c == '}').is_none() {
                            break;
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        while chars.next_if(|(_, c)| *c != ';').is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: Value) -> Result<Settings, BackendError> {
        Settings::from_details(Dialect::Postgres, v.as_object().unwrap())
    }

    #[test]
    fn escaping_follows_odbc_braces() {
        assert_eq!(escape_value("plain-Pw1"), "plain-Pw1");
        assert_eq!(escape_value("a;b"), "{a;b}");
        assert_eq!(escape_value("a}b{c"), "{a}}b{c}");
        assert_eq!(escape_value("x=1+2"), "{x=1+2}");
        assert_eq!(escape_value(" pad"), "{ pad}");
        assert_eq!(escape_value("pässwörd#%^"), "pässwörd#%^");
        assert_eq!(escape_value(""), "");
    }

    #[test]
    fn credentials_are_substituted_escaped() {
        let s = settings(json!({
            "connection_url": "Driver={PostgreSQL Unicode};Server=h;UID={{username}};PWD={{password}};",
            "username": "adm", "password": "p;w}d"
        }))
        .unwrap();
        assert_eq!(
            s.connection_string,
            "Driver={PostgreSQL Unicode};Server=h;UID=adm;PWD={p;w}}d};"
        );
        assert_eq!(
            s.admin_secrets,
            vec!["p;w}d".to_owned(), "{p;w}}d}".to_owned()]
        );
        assert_eq!(attribute_keys(&s.connection_string).unwrap().len(), 4);
    }

    #[test]
    fn credentials_are_appended_when_not_named() {
        let s = settings(json!({
            "connection_url": "DSN=dm8",
            "username": "SYSDBA", "password": "Dameng#123"
        }))
        .unwrap();
        assert_eq!(s.connection_string, "DSN=dm8;UID=SYSDBA;PWD=Dameng#123;");
        let s = settings(json!({
            "connection_url": "DSN=dm8;uid=x;Pwd=y;",
            "username": "SYSDBA", "password": "Dameng#123"
        }))
        .unwrap();
        assert_eq!(s.connection_string, "DSN=dm8;uid=x;Pwd=y;");
    }

    #[test]
    fn bad_strings_are_refused_without_echoing() {
        for url in [
            "Server=h;UID={{username}};PWD={{password}}",
            "Driver={PostgreSQL Unicode;Server=h",
            "Driver={x};Server",
        ] {
            let err = settings(json!({"connection_url": url, "password": "Sekr1t"}))
                .err()
                .unwrap_or_else(|| panic!("{url} accepted"));
            assert!(matches!(err, BackendError::InvalidConfig(_)), "{err}");
            assert!(!err.to_string().contains("Sekr1t"));
        }
        assert!(matches!(
            settings(json!({})),
            Err(BackendError::InvalidConfig(_))
        ));
    }

    #[test]
    fn keys_parser_handles_braces() {
        assert_eq!(
            attribute_keys("Driver={A;B}};C}; PWD = {x;y} ;Port=5").unwrap(),
            vec!["Driver", "PWD", "Port"]
        );
    }
}
