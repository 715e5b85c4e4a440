//! Lenient reading of connection details, pool settings, username rules and retry pacing.
//!
//! Shared by every backend: the rules are family-neutral.
//!
//! Vault stores connection details as loosely typed JSON (a number may arrive as `"4"`, a
//! duration as `"30s"` or `30`), so every reader here accepts the spellings Vault accepts and
//! names the key, never the value, when it refuses one.

use std::time::Duration;

use crate::{BackendError, UsernameMetadata, UsernameTemplate, statement};
use serde_json::{Map, Value};

/// How many times a statement batch is attempted when it fails with a transient error.
pub const MAX_ATTEMPTS: u32 = 5;

/// Reads a string (numbers and booleans are accepted and printed).
pub fn string(details: &Map<String, Value>, key: &str) -> Result<Option<String>, BackendError> {
    match details.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(BackendError::InvalidConfig(format!(
            "{key} must be a string"
        ))),
    }
}

/// Reads a boolean (`true`, `"true"`, `"1"`, `1`, ...).
pub fn boolean(details: &Map<String, Value>, key: &str) -> Result<Option<bool>, BackendError> {
    let bad = || BackendError::InvalidConfig(format!("{key} must be a boolean"));
    match details.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => n.as_f64().map(|f| Some(f != 0.0)).ok_or_else(bad),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "1" | "t" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "f" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// Reads a non-negative integer (`4` or `"4"`).
pub fn integer(details: &Map<String, Value>, key: &str) -> Result<Option<u64>, BackendError> {
    let bad = || BackendError::InvalidConfig(format!("{key} must be a non-negative integer"));
    match details.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(f) = n.as_f64()
                && f >= 0.0
                && f.fract() == 0.0
                && f < u64::MAX as f64
            {
                Ok(Some(f as u64))
            } else {
                Err(bad())
            }
        }
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// Reads a duration: whole seconds (`30`, `"30"`) or a Go duration string (`"1m30s"`).
pub fn duration(details: &Map<String, Value>, key: &str) -> Result<Option<Duration>, BackendError> {
    let bad = || {
        BackendError::InvalidConfig(format!(
            "{key} must be a duration such as \"30s\" or a number of seconds"
        ))
    };
    match details.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(_)) => integer(details, key).map(|s| s.map(Duration::from_secs)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => parse_go_duration(s.trim()).map(Some).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// Parses whole seconds or Go's duration syntax (`300ms`, `1.5h`, `2h45m`); negative is refused.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The pool settings every backend reads, with Vault's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// `max_open_connections`: the most connections, and so the most parallel issuances (default 4).
    pub max_open: usize,
    /// `max_idle_connections`: idle connections kept (default and ceiling: `max_open`).
    pub max_idle: usize,
    /// `max_connection_lifetime`: connections older than this are not reused (`None`: no limit).
    pub max_lifetime: Option<Duration>,
}

impl PoolSettings {
    /// Default pool size, as Vault's `max_open_connections`.
    pub const DEFAULT_MAX_OPEN: usize = 4;

    /// Reads the pool settings from connection details.
    pub fn from_details(details: &Map<String, Value>) -> Result<Self, BackendError> {
        let max_open = match integer(details, "max_open_connections")? {
            None | Some(0) => Self::DEFAULT_MAX_OPEN,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(10_000),
        };
        let max_idle = match integer(details, "max_idle_connections")? {
            None | Some(0) => max_open,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(max_open),
        };
        let max_lifetime = duration(details, "max_connection_lifetime")?.filter(|d| !d.is_zero());
        Ok(PoolSettings {
            max_open,
            max_idle,
            max_lifetime,
        })
    }
}

/// How a dialect measures a name against its limit.
#[allow(
    dead_code,
    reason = "this file is shared by the backends; each uses one unit"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    /// Bytes (PostgreSQL's `NAMEDATALEN`).
    Bytes,
    /// Characters (MySQL's user name column).
    Chars,
}

/// Characters a dialect accepts in user names, beyond the statement-safety rule every name
/// must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameAlphabet {
    /// Whatever the database takes inside a quoted name.
    Any,
    /// An ASCII letter, then ASCII letters and digits, at least `min_len` characters in all
    /// (PolarDB-X: 4 to 20 letters and digits, starting with a letter).
    LetterThenAlphanumeric {
        /// Fewest characters.
        min_len: usize,
    },
}

impl NameAlphabet {
    /// Whether `name` is made of this alphabet.
    pub fn admits(self, name: &str) -> bool {
        match self {
            NameAlphabet::Any => true,
            NameAlphabet::LetterThenAlphanumeric { min_len } => {
                name.chars().count() >= min_len
                    && name.starts_with(|c: char| c.is_ascii_alphabetic())
                    && name.chars().all(|c| c.is_ascii_alphanumeric())
            }
        }
    }
}

/// The username template of one connection and the limit its names must respect.
#[derive(Debug)]
pub struct UsernameRules {
    template: UsernameTemplate,
    limit: usize,
    unit: LengthUnit,
    /// Names the limit in error messages, e.g. "PostgreSQL's limit (NAMEDATALEN-1)".
    what: &'static str,
    alphabet: NameAlphabet,
    /// Describes `alphabet` in error messages.
    alphabet_rule: &'static str,
}

impl UsernameRules {
    /// Reads `username_template` (or takes `default`) and validates it by rendering it with
    /// empty metadata, as Vault does at `Initialize`.
    pub fn from_details(
        details: &Map<String, Value>,
        default: &str,
        limit: usize,
        unit: LengthUnit,
        what: &'static str,
    ) -> Result<Self, BackendError> {
        let source = string(details, "username_template")?
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| default.to_owned());
        let template = UsernameTemplate::parse(&source)
            .map_err(|e| BackendError::InvalidConfig(format!("invalid username_template: {e}")))?;
        template.render(&UsernameMetadata::default()).map_err(|e| {
            BackendError::InvalidConfig(format!("username_template cannot be rendered: {e}"))
        })?;
        Ok(UsernameRules {
            template,
            limit,
            unit,
            what,
            alphabet: NameAlphabet::Any,
            alphabet_rule: "",
        })
    }

    /// Also requires names to be made of `alphabet`; `rule` describes it in refusals (for
    /// example "PolarDB-X: 4 to 20 letters and digits, starting with a letter").
    pub fn with_alphabet(mut self, alphabet: NameAlphabet, rule: &'static str) -> Self {
        self.alphabet = alphabet;
        self.alphabet_rule = rule;
        self
    }

    /// Renders a username and checks it: never longer than the limit (no silent truncation),
    /// never empty, and free of characters that could escape a quoted statement.
    pub fn generate(&self, meta: &UsernameMetadata) -> Result<String, BackendError> {
        let name = self.template.render(meta).map_err(|e| {
            BackendError::InvalidRequest(format!("cannot render the username template: {e}"))
        })?;
        self.check(&name)?;
        Ok(name)
    }

    /// Checks a username against the limit and the statement-safety rule.
    pub fn check(&self, name: &str) -> Result<(), BackendError> {
        if name.is_empty() {
            return Err(BackendError::InvalidRequest(
                "the username template rendered an empty name".into(),
            ));
        }
        let (len, unit) = match self.unit {
            LengthUnit::Bytes => (name.len(), "bytes"),
            LengthUnit::Chars => (name.chars().count(), "characters"),
        };
        if len > self.limit {
            return Err(BackendError::InvalidRequest(format!(
                "the generated username is {len} {unit} long, over the limit of {limit} {unit} ({what}); \
                 shorten username_template (for example with `| truncate {limit}`)",
                limit = self.limit,
                what = self.what,
            )));
        }
        if !self.alphabet.admits(name) {
            return Err(BackendError::InvalidRequest(format!(
                "the generated username {name:?} breaks the user-name rule ({}); change username_template",
                self.alphabet_rule
            )));
        }
        // The SDK's renderer owns the rule for what may be substituted into a statement;
        // rendering a bare `{{name}}` applies exactly that rule here, before any lease exists.
        statement::render(
            &["{{name}}".to_owned()],
            &statement::StatementVars {
                username: Some(name),
                ..Default::default()
            },
        )?;
        Ok(())
    }
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
///
/// Stricter than Go's `url.PathEscape` (which Vault uses): `@`, `:` and `/` are encoded too,
/// because URL parsers stop the user-info part at the first `@`.
pub fn percent_escape(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

/// Substitutes `{{username}}`, `{{name}}` and `{{password}}` in a connection URL template.
pub fn substitute_credentials(template: &str, username: &str, password: &str) -> String {
    template
        .replace("{{username}}", username)
        .replace("{{name}}", username)
        .replace("{{password}}", password)
}

/// Sleeps before attempt `attempt + 1`: exponential from 20 ms, capped at 400 ms, with full jitter.
pub async fn backoff(attempt: u32) {
    let cap_ms = (20u64 << attempt.min(5)).min(400);
    let ms = rand::random_range(cap_ms / 2..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn readers_are_lenient_like_vault() {
        let d = map(
            json!({"a": 4, "b": "7", "c": true, "d": "false", "e": "30s", "f": 45, "g": "", "h": 1.0}),
        );
        assert_eq!(integer(&d, "a").unwrap(), Some(4));
        assert_eq!(integer(&d, "b").unwrap(), Some(7));
        assert_eq!(integer(&d, "h").unwrap(), Some(1));
        assert_eq!(integer(&d, "g").unwrap(), None);
        assert_eq!(integer(&d, "zz").unwrap(), None);
        assert!(integer(&d, "c").is_err());
        assert_eq!(boolean(&d, "c").unwrap(), Some(true));
        assert_eq!(boolean(&d, "d").unwrap(), Some(false));
        assert_eq!(duration(&d, "e").unwrap(), Some(Duration::from_secs(30)));
        assert_eq!(duration(&d, "f").unwrap(), Some(Duration::from_secs(45)));
        assert_eq!(string(&d, "a").unwrap().as_deref(), Some("4"));
    }

    #[test]
    fn errors_name_the_key_not_the_value() {
        let d = map(json!({"max_open_connections": "s3cret-looking"}));
        let err = PoolSettings::from_details(&d).unwrap_err().to_string();
        assert!(err.contains("max_open_connections"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("5 s"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("10x"), None);
    }

    #[test]
    fn pool_defaults_follow_vault() {
        let p = PoolSettings::from_details(&Map::new()).unwrap();
        assert_eq!(
            p,
            PoolSettings {
                max_open: 4,
                max_idle: 4,
                max_lifetime: None
            }
        );
        let p = PoolSettings::from_details(&map(json!({
            "max_open_connections": 0, "max_idle_connections": 9, "max_connection_lifetime": "0s"
        })))
        .unwrap();
        assert_eq!((p.max_open, p.max_idle, p.max_lifetime), (4, 4, None));
        let p = PoolSettings::from_details(&map(json!({
            "max_open_connections": "10", "max_idle_connections": 2, "max_connection_lifetime": "1m"
        })))
        .unwrap();
        assert_eq!(
            (p.max_open, p.max_idle, p.max_lifetime),
            (10, 2, Some(Duration::from_secs(60)))
        );
    }

    #[test]
    fn escaping_is_strict() {
        assert_eq!(percent_escape("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_escape("p@ss:w/rd?#%"), "p%40ss%3Aw%2Frd%3F%23%25");
        assert_eq!(
            substitute_credentials("postgres://{{username}}:{{password}}@h/{{name}}", "u", "p"),
            "postgres://u:p@h/u"
        );
    }

    #[test]
    fn username_rules_refuse_instead_of_truncating() {
        let rules = UsernameRules::from_details(
            &map(json!({"username_template": "{{ printf \"%s\" .RoleName }}"})),
            "unused",
            5,
            LengthUnit::Bytes,
            "test limit",
        )
        .unwrap();
        let meta = |role: &str| UsernameMetadata {
            display_name: String::new(),
            role_name: role.to_owned(),
        };
        assert_eq!(rules.generate(&meta("abcde")).unwrap(), "abcde");
        let err = rules.generate(&meta("abcdef")).unwrap_err();
        assert!(matches!(err, BackendError::InvalidRequest(_)), "{err}");
        assert!(err.to_string().contains("limit of 5"), "{err}");
        assert!(matches!(
            rules.generate(&meta("a'b")),
            Err(BackendError::InvalidRequest(_))
        ));
        assert!(matches!(
            rules.generate(&meta("")),
            Err(BackendError::InvalidRequest(_))
        ));
        let strict = UsernameRules::from_details(
            &map(json!({"username_template": "{{ printf \"%s\" .RoleName }}"})),
            "unused",
            6,
            LengthUnit::Chars,
            "test limit",
        )
        .unwrap()
        .with_alphabet(
            NameAlphabet::LetterThenAlphanumeric { min_len: 4 },
            "letters and digits",
        );
        assert_eq!(strict.generate(&meta("ab12")).unwrap(), "ab12");
        for bad in ["ab1", "1abc", "ab-12", "abcü"] {
            let err = strict.generate(&meta(bad)).unwrap_err();
            assert!(
                err.to_string().contains("letters and digits"),
                "{bad}: {err}"
            );
        }
        let bad = UsernameRules::from_details(
            &map(json!({"username_template": "{{ .Nope"})),
            "unused",
            5,
            LengthUnit::Bytes,
            "x",
        );
        assert!(matches!(bad, Err(BackendError::InvalidConfig(_))));
    }
}
