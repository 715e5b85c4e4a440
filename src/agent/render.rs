//! Turning a secret into file contents: one field, JSON, an env file, or a template.
//!
//! Templates use minijinja (Jinja2 syntax) with *strict* undefined values, so a misspelt
//! field is an error at the first render rather than an empty password in a config file.
//! Rendered contents are returned in [`Zeroizing`] buffers because they hold credentials.

use std::path::PathBuf;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;
use zeroize::Zeroizing;

use super::client::SecretData;
use super::config::{DEFAULT_MODE, OutputConfig, OutputKind};
use super::file::Owner;

/// Errors building or rendering an output. Messages name fields and templates, never values.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The secret has no such field.
    #[error("{path}: the secret has no field {field:?} (it has {available})")]
    MissingField {
        /// The output file.
        path: String,
        /// The field asked for.
        field: String,
        /// The fields there are.
        available: String,
    },
    /// A template failed to load, compile or render.
    #[error("{path}: template: {message}")]
    Template {
        /// The output file.
        path: String,
        /// minijinja's message (kind, line; no values).
        message: String,
    },
}

/// The template's name inside its environment.
const TEMPLATE: &str = "output";

enum Format {
    Field(String),
    Json,
    Env { prefix: String },
    Template(Box<Environment<'static>>),
}

/// One output file, ready to render.
pub struct Output {
    /// The file.
    pub path: PathBuf,
    /// Its mode.
    pub mode: u32,
    /// Its owner.
    pub owner: Owner,
    format: Format,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish_non_exhaustive()
    }
}

/// What a render sees: the secret's fields, and its lease.
pub struct RenderInput<'a> {
    /// The credentials.
    pub data: &'a SecretData,
    /// The lease id (empty for static credentials).
    pub lease_id: &'a str,
    /// The lease's TTL, seconds.
    pub lease_duration: u64,
}

impl Output {
    /// Builds an output from its configuration, loading and compiling any template.
    pub fn from_config(config: &OutputConfig) -> Result<Output, RenderError> {
        let path = config.path.display().to_string();
        let template_error = |message: String| RenderError::Template {
            path: path.clone(),
            message,
        };
        let format = match config.kind {
            OutputKind::Field => Format::Field(config.field.clone().unwrap_or_default()),
            OutputKind::Json => Format::Json,
            OutputKind::Env => Format::Env {
                prefix: config.prefix.clone().unwrap_or_default(),
            },
            OutputKind::Template => {
                let source = match (&config.template, &config.template_file) {
                    (Some(text), _) => text.clone(),
                    (None, Some(file)) => std::fs::read_to_string(file).map_err(|e| {
                        template_error(format!("cannot read {}: {e}", file.display()))
                    })?,
                    (None, None) => String::new(),
                };
                let mut env = Environment::new();
                env.set_undefined_behavior(UndefinedBehavior::Strict);
                // Templates render config files and URLs, not HTML: no escaping.
                env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
                env.add_filter("urlquote", urlquote);
                env.add_template_owned(TEMPLATE, source)
                    .map_err(|e| template_error(e.to_string()))?;
                Format::Template(Box::new(env))
            }
        };
        Ok(Output {
            path: config.path.clone(),
            mode: config.mode.map_or(DEFAULT_MODE, |m| m.0),
            owner: Owner {
                uid: config.uid,
                gid: config.gid,
            },
            format,
        })
    }

    /// Renders the file contents for a secret.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<Zeroizing<Vec<u8>>, RenderError> {
        let path = || self.path.display().to_string();
        let bytes = match &self.format {
            Format::Field(field) => input
                .data
                .text(field)
                .ok_or_else(|| RenderError::MissingField {
                    path: path(),
                    field: field.clone(),
                    available: input.data.0.keys().cloned().collect::<Vec<_>>().join(", "),
                })?
                .into_bytes(),
            Format::Json => {
                let mut text = serde_json::to_string(&input.data.0).unwrap_or_default();
                text.push('\n');
                text.into_bytes()
            }
            Format::Env { prefix } => env_file(prefix, input.data).into_bytes(),
            Format::Template(env) => {
                let mut context = input.data.0.clone();
                context.insert("lease_id".into(), Value::from(input.lease_id));
                context.insert("lease_duration".into(), Value::from(input.lease_duration));
                let context = minijinja::Value::from(minijinja::value::Serde(context));
                let template = env
                    .get_template(TEMPLATE)
                    .map_err(|e| RenderError::Template {
                        path: path(),
                        message: e.to_string(),
                    })?;
                template
                    .render(context)
                    .map_err(|e| RenderError::Template {
                        path: path(),
                        message: e.to_string(),
                    })?
                    .into_bytes()
            }
        };
        Ok(Zeroizing::new(bytes))
    }
}

/// The `urlquote` filter: percent-encodes everything but RFC 3986's unreserved characters,
/// which is what a password inside a URL's user-info needs (Jinja's `urlencode` keeps `/`).
fn urlquote(value: String) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `PREFIX_FIELD='value'` lines, quoted for POSIX shells (`'` becomes `'\''`), in field order.
fn env_file(prefix: &str, data: &SecretData) -> String {
    let mut out = String::new();
    for key in data.0.keys() {
        let name: String = format!("{prefix}{key}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let value = data.text(key).unwrap_or_default();
        out.push_str(&name);
        out.push_str("='");
        out.push_str(&value.replace('\'', "'\\''"));
        out.push_str("'\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::config::Mode;

    fn data() -> SecretData {
        let mut map = serde_json::Map::new();
        map.insert("username".into(), Value::from("v-app-x1"));
        map.insert("password".into(), Value::from("p'a ss@/"));
        SecretData(map)
    }

    fn output(kind: OutputKind, tweak: impl FnOnce(&mut OutputConfig)) -> Output {
        let mut config = OutputConfig {
            kind,
            path: PathBuf::from("/s/out"),
            field: None,
            prefix: None,
            template: None,
            template_file: None,
            mode: None,
            uid: None,
            gid: None,
        };
        tweak(&mut config);
        Output::from_config(&config).unwrap()
    }

    fn render(o: &Output) -> Result<String, RenderError> {
        let d = data();
        let input = RenderInput {
            data: &d,
            lease_id: "database/creds/app/abc",
            lease_duration: 60,
        };
        o.render(&input)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn field_json_and_env() {
        let f = output(OutputKind::Field, |c| c.field = Some("password".into()));
        assert_eq!(render(&f).unwrap(), "p'a ss@/");
        assert_eq!(f.mode, 0o400);
        let j = output(OutputKind::Json, |c| c.mode = Some(Mode(0o440)));
        let parsed: Value = serde_json::from_str(&render(&j).unwrap()).unwrap();
        assert_eq!(parsed["username"], "v-app-x1");
        assert_eq!(j.mode, 0o440);
        let e = output(OutputKind::Env, |c| c.prefix = Some("db_".into()));
        let text = render(&e).unwrap();
        assert!(text.contains("DB_USERNAME='v-app-x1'\n"), "{text}");
        assert!(text.contains("DB_PASSWORD='p'\\''a ss@/'\n"), "{text}");
    }

    #[test]
    fn missing_field_names_the_fields_not_the_values() {
        let f = output(OutputKind::Field, |c| c.field = Some("pasword".into()));
        let err = render(&f).unwrap_err().to_string();
        assert!(err.contains("pasword") && err.contains("password"), "{err}");
        assert!(!err.contains("ss@"), "{err}");
    }

    #[test]
    fn templates_render_and_are_strict() {
        let t = output(OutputKind::Template, |c| {
            c.template = Some(
                "postgres://{{ username }}:{{ password | urlquote }}@db:5432/app # {{ lease_id }}"
                    .into(),
            )
        });
        assert_eq!(
            render(&t).unwrap(),
            "postgres://v-app-x1:p%27a%20ss%40%2F@db:5432/app # database/creds/app/abc"
        );
        let strict = output(OutputKind::Template, |c| {
            c.template = Some("{{ pasword }}".into())
        });
        let err = render(&strict).unwrap_err().to_string();
        assert!(err.contains("undefined"), "{err}");
        let mut bad = OutputConfig {
            kind: OutputKind::Template,
            path: PathBuf::from("/s/t"),
            field: None,
            prefix: None,
            template: Some("{% if %}".into()),
            template_file: None,
            mode: None,
            uid: None,
            gid: None,
        };
        assert!(Output::from_config(&bad).is_err());
        bad.template = None;
        bad.template_file = Some(PathBuf::from("/nonexistent/template"));
        let err = Output::from_config(&bad).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
