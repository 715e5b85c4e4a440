//! The agent's configuration file (TOML).
//!
//! Parsing is strict (unknown keys are errors that name the key) and happens in two steps:
//! serde reads the file into plain structs, then [`AgentConfig::validate`] checks what serde
//! cannot (a template that does not compile, two outputs writing one file, thresholds outside
//! 0..1) so that every mistake is reported at start-up rather than at the first rotation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The default ServiceAccount token of a Pod.
pub const DEFAULT_SA_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The name of the state file when `state_file` is not set (kept beside the first output).
pub const DEFAULT_STATE_FILE_NAME: &str = ".dbwarden-agent-state.json";

/// Errors in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("invalid agent configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("invalid agent configuration: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// The whole agent configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Where the dbwarden server is.
    pub server: ServerConfig,
    /// How the agent logs in.
    pub auto_auth: AutoAuth,
    /// Where to write the agent's token, if anywhere.
    #[serde(default)]
    pub token_sink: Option<TokenSink>,
    /// Renewal, rotation and retry timing.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Log in, render every secret once, write the state file and exit 0 (init containers).
    #[serde(default)]
    pub exit_after_auth: bool,
    /// The state file (lease ids and the token of this Pod's agent); by default
    /// `.dbwarden-agent-state.json` in the directory of the first output.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// `host:port` for `/healthz` and `/metrics`; none when unset.
    #[serde(default)]
    pub listen_address: Option<SocketAddr>,
    /// Log level filter (`info`, `debug`, or a tracing filter); `DBWARDEN_LOG` overrides.
    #[serde(default)]
    pub log_level: Option<String>,
    /// `text` (default) or `json` (one object per line, for log pipelines).
    #[serde(default)]
    pub log_format: LogFormat,
    /// The secrets to keep fresh.
    #[serde(default, rename = "secret")]
    pub secrets: Vec<SecretConfig>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The dbwarden server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Base URL, `https://dbwarden.example:8200`.
    pub address: String,
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Timeout of one HTTP request (default 30 s).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The auto-auth method.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AutoAuth {
    /// Kubernetes: log in with the Pod's ServiceAccount token.
    Kubernetes {
        /// The role at `auth/<mount>/role/<role>`.
        role: String,
        /// The auth mount (default `kubernetes`).
        #[serde(default = "default_kubernetes_mount")]
        mount: String,
        /// The ServiceAccount token file, read again at every login because the kubelet
        /// rotates projected tokens.
        #[serde(default = "default_sa_token_path")]
        token_path: PathBuf,
    },
    /// AppRole: log in with a role id and a secret id read from files.
    Approle {
        /// The role id file.
        role_id_file: PathBuf,
        /// The secret id file (omit for roles with `bind_secret_id = false`).
        #[serde(default)]
        secret_id_file: Option<PathBuf>,
        /// The auth mount (default `approle`).
        #[serde(default = "default_approle_mount")]
        mount: String,
    },
    /// A token read from a file (re-read when the file changes).
    TokenFile {
        /// The file holding the token.
        path: PathBuf,
    },
}

fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_sa_token_path() -> PathBuf {
    PathBuf::from(DEFAULT_SA_TOKEN_PATH)
}

/// Where the agent's token is written after every login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSink {
    /// The file.
    pub path: PathBuf,
    /// File mode (default 0400).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Owner uid.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Owner gid.
    #[serde(default)]
    pub gid: Option<u32>,
}

/// Timing of renewals, rotations and retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lifecycle {
    /// Renew when this fraction of a lease's TTL has passed (default 2/3), minus jitter.
    pub renew_fraction: f64,
    /// Random fraction (0..1) taken off each scheduled time so replicas spread out
    /// (default 0.1).
    pub jitter: f64,
    /// Fetch new credentials when this fraction of the time left before the lease's
    /// maximum has passed (default 0.9).
    pub rotate_threshold: f64,
    /// How long an old lease stays valid after its replacement was written and the reload
    /// action ran (default 60 s), so connections opened with it can drain.
    #[serde(with = "humantime_serde")]
    pub revoke_grace: Duration,
    /// Revoke every lease on SIGTERM (default false: a restarted agent reuses them).
    pub revoke_on_shutdown: bool,
    /// First retry delay after a failed login, fetch or renewal (default 1 s).
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Longest retry delay (default 5 min).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How often a `token_file` is checked for a new token (default 10 s).
    #[serde(with = "humantime_serde")]
    pub token_file_poll: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            renew_fraction: 2.0 / 3.0,
            jitter: 0.1,
            rotate_threshold: 0.9,
            revoke_grace: Duration::from_secs(60),
            revoke_on_shutdown: false,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            token_file_poll: Duration::from_secs(10),
        }
    }
}

/// One secret and the files rendered from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// A name for logs, metrics and the state file (default: the path).
    #[serde(default)]
    pub name: Option<String>,
    /// `database/creds/<role>` or `database/static-creds/<role>` (any mount).
    pub path: String,
    /// What to run after new credentials were written.
    #[serde(default)]
    pub reload: Option<ReloadConfig>,
    /// The files.
    #[serde(rename = "output")]
    pub outputs: Vec<OutputConfig>,
}

/// A reload action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// A command as an argument vector (no shell, so nothing is interpolated).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How long the command may run (default 30 s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// A file holding the pid of the process to signal (needs `shareProcessNamespace`).
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// The signal: `HUP` (default), `USR1`, `USR2`, `INT`, `TERM` or `QUIT`.
    #[serde(default)]
    pub signal: Option<String>,
}

/// The kinds of output.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// One field's value, verbatim.
    Field,
    /// Every field as a JSON object.
    Json,
    /// `KEY='value'` lines.
    Env,
    /// A minijinja template.
    Template,
}

/// One output file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// What to write.
    #[serde(rename = "type")]
    pub kind: OutputKind,
    /// The file.
    pub path: PathBuf,
    /// The field (`type = "field"`).
    #[serde(default)]
    pub field: Option<String>,
    /// Prefix of variable names (`type = "env"`, default none).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Template text (`type = "template"`).
    #[serde(default)]
    pub template: Option<String>,
    /// Template file (`type = "template"`), read at start-up.
    #[serde(default)]
    pub template_file: Option<PathBuf>,
    /// File mode (default 0400).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Owner uid.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Owner gid.
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A file mode: a TOML integer (`0o400`) or an octal string (`"0400"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u32),
            Text(String),
        }
        let value = match Raw::deserialize(d)? {
            Raw::Int(v) => v,
            Raw::Text(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| {
                serde::de::Error::custom(format!("mode {s:?} is not an octal number"))
            })?,
        };
        if value > 0o777 {
            return Err(serde::de::Error::custom(format!(
                "mode {value:o} is above 0777"
            )));
        }
        Ok(Mode(value))
    }
}

/// The default file mode of outputs and the token sink.
pub const DEFAULT_MODE: u32 = 0o400;

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = AgentConfig::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let must_be_url = || {
            invalid(format!(
                "server.address {:?} must be an http:// or https:// URL",
                self.server.address
            ))
        };
        let address = url::Url::parse(&self.server.address).map_err(|_| must_be_url())?;
        if !matches!(address.scheme(), "http" | "https") || address.host().is_none() {
            return Err(must_be_url());
        }
        match &self.auto_auth {
            AutoAuth::Kubernetes { role, mount, .. } => {
                if role.is_empty() {
                    return Err(invalid("auto_auth.role must not be empty"));
                }
                check_mount(mount)?;
            }
            AutoAuth::Approle { mount, .. } => check_mount(mount)?,
            AutoAuth::TokenFile { .. } => {}
        }
        let l = &self.lifecycle;
        for (name, value) in [
            ("renew_fraction", l.renew_fraction),
            ("rotate_threshold", l.rotate_threshold),
        ] {
            if !(value > 0.0 && value < 1.0) {
                return Err(invalid(format!(
                    "lifecycle.{name} must be between 0 and 1 (exclusive)"
                )));
            }
        }
        if !(0.0..1.0).contains(&l.jitter) {
            return Err(invalid("lifecycle.jitter must be in [0, 1)"));
        }
        if l.min_backoff.is_zero() || l.max_backoff < l.min_backoff {
            return Err(invalid(
                "lifecycle.min_backoff must be positive and not above max_backoff",
            ));
        }
        if self.secrets.is_empty() && self.state_file.is_none() && !self.exit_after_auth {
            return Err(invalid(
                "no [[secret]] configured (add one, or set exit_after_auth for a token-only agent)",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut files = std::collections::BTreeSet::new();
        if let Some(sink) = &self.token_sink {
            files.insert(sink.path.clone());
        }
        for secret in &self.secrets {
            let name = secret.name();
            if !names.insert(name.to_owned()) {
                return Err(invalid(format!("two secrets are named {name:?}")));
            }
            if secret.path.is_empty() || secret.path.starts_with('/') || secret.path.ends_with('/')
            {
                return Err(invalid(format!(
                    "secret {name:?}: path must look like database/creds/<role>"
                )));
            }
            if secret.outputs.is_empty() {
                return Err(invalid(format!(
                    "secret {name:?}: needs at least one [[secret.output]]"
                )));
            }
            if let Some(reload) = &secret.reload {
                reload.validate(name)?;
            }
            for output in &secret.outputs {
                output.validate(name)?;
                if !files.insert(output.path.clone()) {
                    return Err(invalid(format!(
                        "{} is written by two outputs",
                        output.path.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The state file: `state_file`, or a hidden file beside the first output.
    pub fn state_path(&self) -> PathBuf {
        if let Some(path) = &self.state_file {
            return path.clone();
        }
        let dir = self
            .secrets
            .first()
            .and_then(|s| s.outputs.first())
            .and_then(|o| o.path.parent())
            .or_else(|| self.token_sink.as_ref().and_then(|s| s.path.parent()))
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        dir.join(DEFAULT_STATE_FILE_NAME)
    }
}

fn check_mount(mount: &str) -> Result<(), ConfigError> {
    if mount.is_empty() || mount.starts_with('/') || mount.ends_with('/') {
        return Err(invalid(format!(
            "auto_auth.mount {mount:?} must be a mount name such as \"kubernetes\""
        )));
    }
    Ok(())
}

impl SecretConfig {
    /// The name used in logs, metrics and the state file.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.path)
    }
}

impl ReloadConfig {
    fn validate(&self, secret: &str) -> Result<(), ConfigError> {
        match (&self.command, &self.pid_file) {
            (Some(_), Some(_)) | (None, None) => Err(invalid(format!(
                "secret {secret:?}: reload needs exactly one of command or pid_file"
            ))),
            (Some(cmd), None) => {
                if cmd.is_empty() || cmd[0].is_empty() {
                    return Err(invalid(format!(
                        "secret {secret:?}: reload.command must name a program"
                    )));
                }
                if self.signal.is_some() {
                    return Err(invalid(format!(
                        "secret {secret:?}: reload.signal goes with pid_file, not command"
                    )));
                }
                Ok(())
            }
            (None, Some(_)) => {
                if let Some(signal) = &self.signal {
                    super::reload::parse_signal(signal).ok_or_else(|| {
                        invalid(format!(
                            "secret {secret:?}: unknown reload.signal {signal:?} (HUP, USR1, USR2, INT, TERM, QUIT)"
                        ))
                    })?;
                }
                if self.timeout.is_some() {
                    return Err(invalid(format!(
                        "secret {secret:?}: reload.timeout goes with command, not pid_file"
                    )));
                }
                Ok(())
            }
        }
    }
}

impl OutputConfig {
    fn validate(&self, secret: &str) -> Result<(), ConfigError> {
        let at = format!("secret {secret:?}, output {}", self.path.display());
        if !self.path.is_absolute() {
            return Err(invalid(format!("{at}: path must be absolute")));
        }
        let only = |present: bool, key: &str, kind: &str| {
            if present {
                Err(invalid(format!(
                    "{at}: {key} is only for type = \"{kind}\""
                )))
            } else {
                Ok(())
            }
        };
        if self.kind != OutputKind::Field {
            only(self.field.is_some(), "field", "field")?;
        }
        if self.kind != OutputKind::Env {
            only(self.prefix.is_some(), "prefix", "env")?;
        }
        if self.kind != OutputKind::Template {
            only(self.template.is_some(), "template", "template")?;
            only(self.template_file.is_some(), "template_file", "template")?;
        }
        match self.kind {
            OutputKind::Field if self.field.as_deref().is_none_or(str::is_empty) => {
                Err(invalid(format!("{at}: type = \"field\" needs field")))
            }
            OutputKind::Template => {
                if self.template.is_some() == self.template_file.is_some() {
                    return Err(invalid(format!(
                        "{at}: type = \"template\" needs exactly one of template or template_file"
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [server]
        address = "http://127.0.0.1:8200"

        [auto_auth]
        method = "kubernetes"
        role = "app"

        [[secret]]
        path = "database/creds/app"
        [[secret.output]]
        type = "field"
        field = "username"
        path = "/etc/secrets/db-user"
        [[secret.output]]
        type = "field"
        field = "password"
        path = "/etc/secrets/db-pass"
        mode = "0440"
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = AgentConfig::parse(MINIMAL).unwrap();
        match &c.auto_auth {
            AutoAuth::Kubernetes {
                mount, token_path, ..
            } => {
                assert_eq!(mount, "kubernetes");
                assert_eq!(token_path, Path::new(DEFAULT_SA_TOKEN_PATH));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.lifecycle.rotate_threshold, 0.9);
        assert_eq!(c.secrets[0].outputs[0].mode, None);
        assert_eq!(c.secrets[0].outputs[1].mode, Some(Mode(0o440)));
        assert_eq!(
            c.state_path(),
            Path::new("/etc/secrets/.dbwarden-agent-state.json")
        );
        assert_eq!(c.secrets[0].name(), "database/creds/app");
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = MINIMAL.replace("role = \"app\"", "role = \"app\"\nrole_name = \"x\"");
        let err = AgentConfig::parse(&text).unwrap_err().to_string();
        assert!(err.contains("role_name"), "{err}");
        let text = MINIMAL.replace("[server]", "[server]\nadress = \"x\"");
        let err = AgentConfig::parse(&text).unwrap_err().to_string();
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn mistakes_are_reported_clearly() {
        let cases = [
            (MINIMAL.replace("field = \"username\"\n", ""), "needs field"),
            (
                MINIMAL.replace("/etc/secrets/db-pass", "/etc/secrets/db-user"),
                "written by two outputs",
            ),
            (
                MINIMAL.replace("method = \"kubernetes\"", "method = \"ldap\""),
                "unknown variant",
            ),
            (MINIMAL.replace("\"0440\"", "\"0999\""), "not an octal"),
            (
                MINIMAL.replace("http://127.0.0.1:8200", "127.0.0.1:8200"),
                "http",
            ),
            (
                format!("{MINIMAL}\n[secret.reload]\ncommand = [\"x\"]\npid_file = \"/p\"\n"),
                "exactly one of command or pid_file",
            ),
            (
                format!("{MINIMAL}\n[secret.reload]\npid_file = \"/p\"\nsignal = \"KILL\"\n"),
                "unknown reload.signal",
            ),
            (
                format!("{MINIMAL}\n[lifecycle]\nrotate_threshold = 1.5\n"),
                "between 0 and 1",
            ),
            (
                MINIMAL.replace("/etc/secrets/db-user", "db-user"),
                "must be absolute",
            ),
        ];
        for (text, expected) in cases {
            let err = AgentConfig::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected:?} not in {err}");
        }
    }

    #[test]
    fn every_auth_method_parses() {
        let approle = MINIMAL.replace(
            "method = \"kubernetes\"\n        role = \"app\"",
            "method = \"approle\"\nrole_id_file = \"/r\"\nsecret_id_file = \"/s\"",
        );
        assert!(matches!(
            AgentConfig::parse(&approle).unwrap().auto_auth,
            AutoAuth::Approle { ref mount, .. } if mount == "approle"
        ));
        let token = MINIMAL.replace(
            "method = \"kubernetes\"\n        role = \"app\"",
            "method = \"token_file\"\npath = \"/t\"",
        );
        assert!(matches!(
            AgentConfig::parse(&token).unwrap().auto_auth,
            AutoAuth::TokenFile { .. }
        ));
    }
}
