//! Connection details of a MySQL-family connection, parsed and checked once at open.
//!
//! `connection_url` is either Vault's form, a Go MySQL driver DSN
//! (`{{username}}:{{password}}@tcp(127.0.0.1:3306)/db?tls=skip-verify`), or a `mysql://` URL.
//! `{{username}}`, `{{name}}` and `{{password}}` take the admin credentials:
//!
//! | Form | Username | Password | Why |
//! |---|---|---|---|
//! | Go DSN | as is | as is (Vault never escapes MySQL passwords) | the DSN parser does not decode; the password may hold `@`, `:` or `/` |
//! | `mysql://` URL | percent-encoded | percent-encoded | the URL parser decodes; `disable_escaping` turns encoding off |
//!
//! Go DSN parameters: `tls` (`true`, `skip-verify`, `false`) is honoured, others are ignored
//! with a warning naming the key. Vault's `tls_ca` (PEM), `tls_certificate_key` (PEM with the
//! client certificate and key), `tls_server_name` and `tls_skip_verify` details turn TLS on.
//! `tls=preferred` is refused: the driver cannot fall back to plaintext, and silently
//! dropping encryption is worse than a clear error.

use std::time::Duration;

use dbwarden_plugin::BackendError;
use dbwarden_plugin::error::redact;
use mysql_async::{ClientIdentity, Opts, OptsBuilder, PoolConstraints, PoolOpts, SslOpts};
use serde_json::{Map, Value};

use crate::Dialect;
use dbwarden_plugin::details::{self, PoolSettings, UsernameRules};

/// Everything read from the connection details.
pub(crate) struct Settings {
    /// Admin connection and pool options.
    pub opts: Opts,
    /// Username template and limit.
    pub usernames: UsernameRules,
    /// The admin password, raw and as substituted, for redaction.
    pub admin_secrets: Vec<String>,
}

/// The parts of a Go MySQL driver DSN.
#[derive(Debug, Default, PartialEq, Eq)]
struct GoDsn {
    user: String,
    password: Option<String>,
    net: String,
    addr: String,
    db: String,
    params: Vec<(String, String)>,
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
        let template = template.trim();
        let username = details::string(details, "username")?.unwrap_or_default();
        let password = details::string(details, "password")?.unwrap_or_default();
        let disable_escaping = details::boolean(details, "disable_escaping")?.unwrap_or(false);
        let is_url = template.starts_with("mysql://");
        let (user_sub, pass_sub) = if is_url && !disable_escaping {
            (
                details::percent_escape(&username),
                details::percent_escape(&password),
            )
        } else {
            (username.clone(), password.clone())
        };
        let mut admin_secrets = vec![password.clone(), pass_sub.clone()];
        admin_secrets.dedup();
        let secrets: Vec<&str> = admin_secrets.iter().map(String::as_str).collect();
        let conn_str = details::substitute_credentials(template, &user_sub, &pass_sub);
        let bad = |e: String| {
            BackendError::InvalidConfig(format!("connection_url: {}", redact(&e, &secrets)))
        };

        let mut builder = if is_url {
            let opts = Opts::from_url(&conn_str).map_err(|e| bad(e.to_string()))?;
            let explicit_socket = conn_str.contains("prefer_socket=");
            let mut builder = OptsBuilder::from_opts(opts);
            if !explicit_socket {
                builder = builder.prefer_socket(false);
            }
            builder
        } else {
            let dsn = parse_go_dsn(&conn_str).map_err(bad)?;
            go_dsn_builder(dsn).map_err(bad)?
        };
        if let Some(ssl) = vault_tls_details(details)? {
            builder = builder.ssl_opts(ssl);
        }
        let finished: Opts = builder.clone().into();
        if finished.user().is_none() && !username.is_empty() {
            builder = builder.user(Some(username.clone()));
        }
        if finished.pass().is_none() && !password.is_empty() {
            builder = builder.pass(Some(password.clone()));
        }

        let pool = PoolSettings::from_details(details)?;
        let constraints = PoolConstraints::new(pool.max_idle.min(pool.max_open), pool.max_open)
            .ok_or_else(|| {
                BackendError::InvalidConfig(
                    "max_idle_connections exceeds max_open_connections".into(),
                )
            })?;
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60))
            .with_abs_conn_ttl(pool.max_lifetime);
        let opts: Opts = builder.pool_opts(pool_opts).into();

        Ok(Settings {
            opts,
            usernames: username_rules(dialect, details)?,
            admin_secrets,
        })
    }
}

/// The dialect's username template, limit and alphabet.
fn username_rules(
    dialect: Dialect,
    details: &Map<String, Value>,
) -> Result<UsernameRules, BackendError> {
    let (limit, unit) = dialect.username_limit();
    let rules = UsernameRules::from_details(
        details,
        dialect.default_username_template(),
        limit,
        unit,
        dialect.username_limit_name(),
    )?;
    Ok(match dialect.username_alphabet() {
        Some((alphabet, rule)) => rules.with_alphabet(alphabet, rule),
        None => rules,
    })
}

/// Parses `[user[:password]@][net[(addr)]]/dbname[?param=value&...]` exactly as the Go MySQL
/// driver does: the last `/` ends the address part, the last `@` before it ends the
/// credentials, the first `:` splits user and password.
fn parse_go_dsn(dsn: &str) -> Result<GoDsn, String> {
    let slash = dsn
        .rfind('/')
        .ok_or("expected a Go MySQL DSN such as {{username}}:{{password}}@tcp(host:3306)/ or a mysql:// URL")?;
    let (left, right) = (&dsn[..slash], &dsn[slash + 1..]);
    let mut out = GoDsn::default();
    let net_part = match left.rfind('@') {
        Some(at) => {
            let creds = &left[..at];
            match creds.find(':') {
                Some(colon) => {
                    out.user = creds[..colon].to_owned();
                    out.password = Some(creds[colon + 1..].to_owned());
                }
                None => out.user = creds.to_owned(),
            }
            &left[at + 1..]
        }
        None => left,
    };
    match net_part.find('(') {
        Some(open) => {
            if !net_part.ends_with(')') {
                return Err("the address in the DSN must be closed with ')'".into());
            }
            out.net = net_part[..open].to_owned();
            out.addr = net_part[open + 1..net_part.len() - 1].to_owned();
        }
        None => out.net = net_part.to_owned(),
    }
    let (db, query) = right.split_once('?').unwrap_or((right, ""));
    out.db = percent_encoding::percent_decode_str(db)
        .decode_utf8()
        .map_err(|_| "the database name is not valid UTF-8")?
        .into_owned();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or("DSN parameters must be key=value")?;
        let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
            .decode_utf8()
            .map_err(|_| "a DSN parameter is not valid UTF-8")?
            .into_owned();
        out.params.push((key.to_owned(), value));
    }
    Ok(out)
}

fn go_dsn_builder(dsn: GoDsn) -> Result<OptsBuilder, String> {
    let mut builder = OptsBuilder::default()
        .user((!dsn.user.is_empty()).then_some(dsn.user))
        .pass(dsn.password)
        .db_name((!dsn.db.is_empty()).then_some(dsn.db))
        .prefer_socket(false);
    match dsn.net.as_str() {
        "" | "tcp" | "tcp4" | "tcp6" => {
            let (host, port) = split_host_port(if dsn.addr.is_empty() {
                "127.0.0.1:3306"
            } else {
                &dsn.addr
            })?;
            builder = builder.ip_or_hostname(host).tcp_port(port);
        }
        "unix" => {
            let path = if dsn.addr.is_empty() {
                "/tmp/mysql.sock".to_owned()
            } else {
                dsn.addr
            };
            builder = builder.socket(Some(path));
        }
        other => {
            return Err(format!(
                "unsupported network {other:?} in the DSN (use tcp or unix)"
            ));
        }
    }
    for (key, value) in dsn.params {
        match key.as_str() {
            "tls" => match value.as_str() {
                "true" => builder = builder.ssl_opts(SslOpts::default()),
                "skip-verify" => {
                    builder =
                        builder.ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true))
                }
                "false" | "" => builder = builder.ssl_opts(None::<SslOpts>),
                "preferred" => {
                    return Err("tls=preferred is not supported (no plaintext fallback); use tls=true, tls=skip-verify or tls=false".into());
                }
                _ => {
                    return Err(
                        "unknown tls value in the DSN; use true, skip-verify or false".into(),
                    );
                }
            },
            k => tracing::warn!(
                parameter = k,
                "ignoring a DSN parameter dbwarden does not use"
            ),
        }
    }
    Ok(builder)
}

fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let bad_port = || "the port in the DSN address is not a number".to_owned();
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("unterminated [IPv6] address in the DSN")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port())?,
            None => 3306,
        };
        return Ok((host.to_owned(), port));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), port.parse().map_err(|_| bad_port())?)),
        None => Ok((addr.to_owned(), 3306)),
    }
}

/// Vault's TLS details (`tls_ca`, `tls_certificate_key`, `tls_server_name`, `tls_skip_verify`).
fn vault_tls_details(details: &Map<String, Value>) -> Result<Option<SslOpts>, BackendError> {
    let ca = details::string(details, "tls_ca")?.filter(|s| !s.trim().is_empty());
    let identity =
        details::string(details, "tls_certificate_key")?.filter(|s| !s.trim().is_empty());
    let server_name = details::string(details, "tls_server_name")?.filter(|s| !s.trim().is_empty());
    let skip_verify = details::boolean(details, "tls_skip_verify")?.unwrap_or(false);
    if ca.is_none() && identity.is_none() && server_name.is_none() && !skip_verify {
        return Ok(None);
    }
    let mut ssl = SslOpts::default().with_danger_accept_invalid_certs(skip_verify);
    if let Some(ca) = ca {
        ssl = ssl
            .with_root_certs(vec![ca.into_bytes().into()])
            .with_disable_built_in_roots(true);
    }
    if let Some(pem) = identity {
        let bytes = pem.into_bytes();
        ssl = ssl.with_client_identity(Some(ClientIdentity::new(
            bytes.clone().into(),
            bytes.into(),
        )));
    }
    if let Some(name) = server_name {
        ssl = ssl.with_danger_tls_hostname_override(Some(name));
    }
    Ok(Some(ssl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(details: Value) -> Result<Settings, BackendError> {
        Settings::from_details(Dialect::Mysql, details.as_object().unwrap())
    }

    #[test]
    fn go_dsn_like_the_go_driver() {
        let d =
            parse_go_dsn("root:p@ss:w/rd@tcp(db.example:3307)/app?tls=skip-verify&parseTime=true")
                .unwrap();
        assert_eq!(d.user, "root");
        assert_eq!(d.password.as_deref(), Some("p@ss:w/rd"));
        assert_eq!(
            (d.net.as_str(), d.addr.as_str(), d.db.as_str()),
            ("tcp", "db.example:3307", "app")
        );
        assert_eq!(d.params[0], ("tls".to_owned(), "skip-verify".to_owned()));
        let d = parse_go_dsn("/").unwrap();
        assert_eq!(d, GoDsn::default());
        let d = parse_go_dsn("u@unix(/run/mysqld/mysqld.sock)/").unwrap();
        assert_eq!(
            (d.user.as_str(), d.password, d.net.as_str()),
            ("u", None, "unix")
        );
        assert!(parse_go_dsn("no slash here").is_err());
        assert!(parse_go_dsn("u:p@tcp(h:1/db").is_err());
    }

    #[test]
    fn host_ports() {
        assert_eq!(split_host_port("h:1").unwrap(), ("h".into(), 1));
        assert_eq!(split_host_port("h").unwrap(), ("h".into(), 3306));
        assert_eq!(split_host_port("[::1]:3307").unwrap(), ("::1".into(), 3307));
        assert!(split_host_port("h:x").is_err());
    }

    #[test]
    fn vault_style_details() {
        let s = settings(json!({
            "connection_url": "{{username}}:{{password}}@tcp(10.0.0.5:3306)/",
            "username": "vault", "password": "pa:ss@w/rd%41",
            "max_open_connections": 8, "max_connection_lifetime": "30s"
        }))
        .unwrap();
        assert_eq!(s.opts.user(), Some("vault"));
        // Go DSNs are not decoded, so the password arrives unchanged.
        assert_eq!(s.opts.pass(), Some("pa:ss@w/rd%41"));
        assert_eq!(s.opts.ip_or_hostname(), "10.0.0.5");
        assert_eq!(s.opts.tcp_port(), 3306);
        assert_eq!(s.opts.pool_opts().constraints().max(), 8);
        assert_eq!(
            s.opts.pool_opts().abs_conn_ttl(),
            Some(Duration::from_secs(30))
        );
        assert!(!s.opts.prefer_socket());
        assert!(s.opts.ssl_opts().is_none());
    }

    #[test]
    fn mysql_urls_escape_unless_told_not_to() {
        let s = settings(json!({
            "connection_url": "mysql://{{username}}:{{password}}@h:3307/db",
            "username": "a@b", "password": "p@ss/w:rd"
        }))
        .unwrap();
        assert_eq!(s.opts.user(), Some("a@b"));
        assert_eq!(s.opts.pass(), Some("p@ss/w:rd"));
        assert_eq!(s.opts.db_name(), Some("db"));
        let s = settings(json!({
            "connection_url": "mysql://{{username}}:{{password}}@h/db",
            "username": "u", "password": "a%40b", "disable_escaping": true
        }))
        .unwrap();
        assert_eq!(s.opts.pass(), Some("a@b"));
    }

    #[test]
    fn tls_settings() {
        let s = settings(json!({"connection_url": "u:p@tcp(h:1)/?tls=true"})).unwrap();
        assert!(s.opts.ssl_opts().is_some_and(|o| !o.accept_invalid_certs()));
        let s = settings(json!({"connection_url": "u:p@tcp(h:1)/", "tls_skip_verify": "true"}))
            .unwrap();
        assert!(s.opts.ssl_opts().is_some_and(|o| o.accept_invalid_certs()));
        let s = settings(
            json!({"connection_url": "u:p@tcp(h:1)/", "tls_ca": "-----BEGIN CERTIFICATE-----"}),
        )
        .unwrap();
        assert!(
            s.opts
                .ssl_opts()
                .is_some_and(|o| o.disable_built_in_roots())
        );
        assert!(matches!(
            settings(json!({"connection_url": "u:p@tcp(h:1)/?tls=preferred"})),
            Err(BackendError::InvalidConfig(_))
        ));
    }

    #[test]
    fn credentials_from_fields_when_the_url_has_none() {
        let s = settings(json!({"connection_url": "tcp(h:1)/", "username": "a", "password": "b"}))
            .unwrap();
        assert_eq!((s.opts.user(), s.opts.pass()), (Some("a"), Some("b")));
    }

    #[test]
    fn errors_never_echo_the_password() {
        for url in [
            "{{username}}:{{password}}@tcp(h:port)/",
            "{{username}}:{{password}}@tcp(h:1/",
            "mysql://{{username}}:{{password}}@h:99999/db",
            "mysql://{{username}}:{{password}}@h/db?nonsense={{password}}",
        ] {
            let err =
                settings(json!({"connection_url": url, "username": "u", "password": "Sekr1t-Pw"}))
                    .err()
                    .unwrap_or_else(|| panic!("{url} parsed"));
            assert!(matches!(err, BackendError::InvalidConfig(_)), "{err:?}");
            assert!(!err.to_string().contains("Sekr1t-Pw"), "{err}");
        }
    }

    #[test]
    fn legacy_dialect_limit() {
        let s = Settings::from_details(
            Dialect::Legacy,
            json!({"connection_url": "u:p@tcp(h:1)/"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let name = s
            .usernames
            .generate(&dbwarden_plugin::UsernameMetadata::default())
            .unwrap();
        assert!(name.len() <= 16 && name.starts_with("v-"), "{name}");
    }
}
