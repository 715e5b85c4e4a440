//! Connection details of a PostgreSQL connection, parsed and checked once at open.
//!
//! `connection_url` is a `postgres://` / `postgresql://` URL or a libpq `key=value` string.
//! `{{username}}`, `{{name}}` and `{{password}}` take the admin credentials: percent-encoded in
//! URLs (unless `disable_escaping`), backslash-escaped in `key=value` strings (Vault escapes
//! those too, which breaks passwords with special characters; dbwarden quotes them instead).
//!
//! Parameters tokio-postgres does not know (libpq has many) are dropped with a warning that
//! names the key only; `sslmode` and `sslrootcert` are handled here (see [`crate::tls`]).
//! `application_name` defaults to `dbwarden`, `connect_timeout` to 10 seconds.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use dbwarden_plugin::BackendError;
use dbwarden_plugin::error::redact;
use serde_json::{Map, Value};

use crate::Dialect;
use crate::tls::SslMode;
use dbwarden_plugin::details::{self, LengthUnit, PoolSettings, UsernameRules};

/// Parameters passed through to tokio-postgres.
const KNOWN_PARAMS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// How `{{password}}` is substituted into creation and rotation statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordAuthentication {
    /// The plain password; the server hashes it (`password_encryption`).
    Password,
    /// A SCRAM-SHA-256 verifier computed here, so the plain password never reaches the server.
    ScramSha256,
}

/// Everything read from the connection details.
pub(crate) struct Settings {
    /// The admin connection (credentials filled in).
    pub pg: tokio_postgres::Config,
    /// The TLS mode.
    pub ssl_mode: SslMode,
    /// Trust anchors for `verify-ca` / `verify-full`.
    pub ssl_root_cert: Option<PathBuf>,
    /// Pool size and connection lifetime.
    pub pool: PoolSettings,
    /// How passwords are written into statements.
    pub password_authentication: PasswordAuthentication,
    /// Username template and limit.
    pub usernames: UsernameRules,
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
        let disable_escaping = details::boolean(details, "disable_escaping")?.unwrap_or(false);
        let template = template.trim();
        let is_url = template.starts_with("postgres://") || template.starts_with("postgresql://");

        let (user_sub, pass_sub) = if is_url && !disable_escaping {
            (
                details::percent_escape(&username),
                details::percent_escape(&password),
            )
        } else if is_url {
            (username.clone(), password.clone())
        } else {
            (dsn_escape(&username), dsn_escape(&password))
        };
        let mut admin_secrets = vec![password.clone(), pass_sub.clone()];
        admin_secrets.dedup();
        let secrets: Vec<&str> = admin_secrets.iter().map(String::as_str).collect();
        let url = details::substitute_credentials(template, &user_sub, &pass_sub);

        let parsed = if is_url {
            split_url(&url)
        } else {
            split_dsn(&url)
        }
        .map_err(|e| {
            BackendError::InvalidConfig(format!("connection_url: {}", redact(&e, &secrets)))
        })?;
        let mut pg = tokio_postgres::Config::from_str(&parsed.rebuilt).map_err(|e| {
            BackendError::InvalidConfig(format!(
                "connection_url: {}",
                redact(&e.to_string(), &secrets)
            ))
        })?;
        if pg.get_user().is_none() && !username.is_empty() {
            pg.user(&username);
        }
        if pg.get_password().is_none() && !password.is_empty() {
            pg.password(&password);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("dbwarden");
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        let ssl_mode = match parsed.sslmode.as_deref() {
            Some(mode) => SslMode::parse(mode)?,
            None => SslMode::Prefer,
        };
        pg.ssl_mode(ssl_mode.negotiation());

        let password_authentication = match details::string(details, "password_authentication")?
            .unwrap_or_default()
            .as_str()
        {
            "" | "password" => PasswordAuthentication::Password,
            "scram-sha-256" if dialect.accepts_scram_verifiers() => {
                PasswordAuthentication::ScramSha256
            }
            "scram-sha-256" => {
                return Err(BackendError::InvalidConfig(format!(
                    "password_authentication = \"scram-sha-256\" sends a PostgreSQL SCRAM verifier, which the {} dialect would store as the password itself; use \"password\"",
                    dialect.name()
                )));
            }
            other => {
                return Err(BackendError::InvalidConfig(format!(
                    "password_authentication must be \"password\" or \"scram-sha-256\", not {other:?}"
                )));
            }
        };
        Ok(Settings {
            pg,
            ssl_mode,
            ssl_root_cert: parsed.sslrootcert.map(PathBuf::from),
            pool: PoolSettings::from_details(details)?,
            password_authentication,
            usernames: UsernameRules::from_details(
                details,
                dialect.default_username_template(),
                dialect.max_username_bytes(),
                LengthUnit::Bytes,
                dialect.username_limit_name(),
            )?,
            admin_secrets,
        })
    }
}

/// A connection string with the parameters handled here taken out.
#[derive(Debug, PartialEq, Eq)]
struct SplitConnString {
    /// What tokio-postgres parses.
    rebuilt: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Escapes a value for a libpq `key=value` string (works inside and outside quotes).
fn dsn_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || c == '\'' || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn split_url(url: &str) -> Result<SplitConnString, String> {
    // The query starts at the first `?` after the user-info part.
    let after_at = url.rfind('@').map_or(0, |i| i + 1);
    let Some(q) = url[after_at..].find('?').map(|i| i + after_at) else {
        return Ok(SplitConnString {
            rebuilt: url.to_owned(),
            sslmode: None,
            sslrootcert: None,
        });
    };
    let (base, query) = (&url[..q], &url[q + 1..]);
    let mut kept = Vec::new();
    let (mut sslmode, mut sslrootcert) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key)?;
        match key.as_str() {
            "sslmode" => sslmode = Some(decode(raw_value)?),
            "sslrootcert" => sslrootcert = Some(decode(raw_value)?),
            k if KNOWN_PARAMS.contains(&k) => kept.push(pair),
            k => tracing::warn!(
                parameter = k,
                "ignoring a connection parameter tokio-postgres does not support"
            ),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(SplitConnString {
        rebuilt,
        sslmode,
        sslrootcert,
    })
}

fn decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "a URL parameter is not valid UTF-8 after percent-decoding".to_owned())
}

fn split_dsn(dsn: &str) -> Result<SplitConnString, String> {
    let mut rebuilt = Vec::new();
    let (mut sslmode, mut sslrootcert) = (None, None);
    for (key, value) in parse_dsn(dsn)? {
        match key.as_str() {
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => sslrootcert = Some(value),
            k if KNOWN_PARAMS.contains(&k) => {
                rebuilt.push(format!("{key}='{}'", dsn_escape(&value)))
            }
            k => tracing::warn!(
                parameter = k,
                "ignoring a connection parameter tokio-postgres does not support"
            ),
        }
    }
    Ok(SplitConnString {
        rebuilt: rebuilt.join(" "),
        sslmode,
        sslrootcert,
    })
}

/// Parses libpq's `key = value` syntax (values optionally single-quoted, `\` escapes).
fn parse_dsn(dsn: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return Err("expected key=value pairs or a postgres:// URL".into());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted value for {key}")),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(details: Value) -> Result<Settings, BackendError> {
        Settings::from_details(Dialect::Postgres, details.as_object().unwrap())
    }

    #[test]
    fn url_credentials_are_escaped() {
        let s = settings(json!({
            "connection_url": "postgres://{{username}}:{{password}}@db.example:5433/app?sslmode=disable",
            "username": "ad@min", "password": "p@ss:/?#w'rd"
        }))
        .unwrap();
        assert_eq!(s.pg.get_user(), Some("ad@min"));
        assert_eq!(s.pg.get_password(), Some("p@ss:/?#w'rd".as_bytes()));
        assert_eq!(s.pg.get_dbname(), Some("app"));
        assert_eq!(s.pg.get_ports(), &[5433]);
        assert_eq!(s.ssl_mode, SslMode::Disable);
        assert_eq!(s.pg.get_application_name(), Some("dbwarden"));
        assert!(
            s.admin_secrets
                .contains(&"p%40ss%3A%2F%3F%23w%27rd".to_owned())
        );
    }

    #[test]
    fn disable_escaping_substitutes_raw() {
        let s = settings(json!({
            "connection_url": "postgresql://{{username}}:{{password}}@h/db",
            "username": "u", "password": "a%40b", "disable_escaping": "true"
        }))
        .unwrap();
        // The raw value is substituted; the URL parser then decodes it, as Vault's does.
        assert_eq!(s.pg.get_password(), Some("a@b".as_bytes()));
    }

    #[test]
    fn dsn_form_quotes_instead_of_percent_encoding() {
        let s = settings(json!({
            "connection_url": "host=h port=5432 user={{username}} password={{password}} dbname='my db' sslmode=require application_name=x",
            "username": "u", "password": "a b'c\\d%40"
        }))
        .unwrap();
        assert_eq!(s.pg.get_password(), Some("a b'c\\d%40".as_bytes()));
        assert_eq!(s.pg.get_dbname(), Some("my db"));
        assert_eq!(s.pg.get_application_name(), Some("x"));
        assert_eq!(s.ssl_mode, SslMode::Require);
    }

    #[test]
    fn unknown_params_are_dropped_and_ssl_params_taken() {
        let s = settings(json!({
            "connection_url": "postgres://u:p@h/db?search_path=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=3",
        }))
        .unwrap();
        assert_eq!(s.ssl_mode, SslMode::VerifyFull);
        assert_eq!(s.ssl_root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(s.pg.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn credentials_from_fields_when_url_has_none() {
        let s = settings(
            json!({"connection_url": "postgres://h/db", "username": "a", "password": "b"}),
        )
        .unwrap();
        assert_eq!(s.pg.get_user(), Some("a"));
        assert_eq!(s.pg.get_password(), Some("b".as_bytes()));
    }

    #[test]
    fn errors_never_echo_the_password() {
        for url in [
            "postgres://{{username}}:{{password}}@h:notaport/db",
            "host=h password={{password}} port=x",
            "host=h password='{{password}}",
        ] {
            let err =
                settings(json!({"connection_url": url, "username": "u", "password": "Sekr1t-Pw"}))
                    .err()
                    .unwrap_or_else(|| panic!("{url} parsed"));
            assert!(matches!(err, BackendError::InvalidConfig(_)));
            assert!(!err.to_string().contains("Sekr1t-Pw"), "{err}");
        }
    }

    #[test]
    fn config_errors() {
        assert!(matches!(
            settings(json!({})),
            Err(BackendError::InvalidConfig(_))
        ));
        assert!(matches!(
            settings(
                json!({"connection_url": "postgres://h/db", "password_authentication": "md5"})
            ),
            Err(BackendError::InvalidConfig(_))
        ));
        assert!(matches!(
            settings(json!({"connection_url": "postgres://h/db?sslmode=nope"})),
            Err(BackendError::InvalidConfig(_))
        ));
        let s = settings(json!({"connection_url": "postgres://h/db", "password_authentication": "scram-sha-256", "other_key": [1]}))
            .unwrap();
        assert_eq!(
            s.password_authentication,
            PasswordAuthentication::ScramSha256
        );
    }

    #[test]
    fn opengauss_refuses_scram_verifiers() {
        let details = json!({"connection_url": "postgres://h/db", "password_authentication": "scram-sha-256"});
        let err = Settings::from_details(Dialect::OpenGauss, details.as_object().unwrap())
            .err()
            .expect("openGauss with SCRAM verifiers must be refused");
        assert!(matches!(err, BackendError::InvalidConfig(_)), "{err:?}");
        assert!(Settings::from_details(Dialect::Kingbase, details.as_object().unwrap()).is_ok());
    }

    #[test]
    fn dsn_parser() {
        assert_eq!(
            parse_dsn(" a=1  b = 'x y\\'z' c=\\ d ").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y'z".into()),
                ("c".into(), " d".into())
            ]
        );
        assert!(parse_dsn("a").is_err());
        assert!(parse_dsn("=1").is_err());
    }
}
