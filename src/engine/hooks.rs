//! Rotation hooks: tell dependent systems that a credential rotated (or failed to).
//!
//! A hook is either a webhook (an HTTPS or HTTP POST of a JSON event, signed with
//! HMAC-SHA256) or a local command (the event as JSON on standard input, never in arguments
//! or environment, where other processes could read it). Hooks run after every rotation, in
//! the background, so a slow receiver never delays a rotation. Outcomes are logged and
//! counted (`dbwarden_hook_runs_total{hook,outcome}`).
//!
//! Webhook signature: header `X-Dbwarden-Signature: t=<unix seconds>,sha256=<hex>` where the
//! HMAC is over `<t>.<body>` with the hook's secret, so a receiver can reject replays.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::error::{Result, invalid};
use super::mounts::Mount;
use crate::core::Core;

/// What a hook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    /// POST the event to a URL.
    Webhook,
    /// Run a local command with the event on standard input.
    Command,
}

/// A stored hook. The secret is sealed in storage like every entry and never returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hook {
    /// Webhook or command.
    pub kind: HookKind,
    /// The webhook URL.
    #[serde(default)]
    pub url: String,
    /// The HMAC key for webhook signatures.
    #[serde(default)]
    pub secret: String,
    /// The program to run.
    #[serde(default)]
    pub command: String,
    /// Its arguments (fixed; the event never goes here).
    #[serde(default)]
    pub args: Vec<String>,
    /// Put the new password in the event (webhooks only over https).
    #[serde(default)]
    pub include_password: bool,
    /// Seconds one attempt may take.
    pub timeout_seconds: u64,
    /// Attempts before giving up (webhooks retry with backoff).
    pub max_attempts: u32,
}

impl Hook {
    /// Checks the fields that make sense together.
    pub fn validate(&self) -> Result<()> {
        match self.kind {
            HookKind::Webhook => {
                let url = url::Url::parse(&self.url).map_err(|e| invalid(format!("url: {e}")))?;
                if url.scheme() != "https" && url.scheme() != "http" {
                    return Err(invalid("url must be http or https"));
                }
                if self.include_password && url.scheme() != "https" {
                    return Err(invalid("include_password requires an https url"));
                }
                if self.secret.len() < 16 {
                    return Err(invalid(
                        "secret (the HMAC key) must be at least 16 characters",
                    ));
                }
            }
            HookKind::Command => {
                if self.command.is_empty() {
                    return Err(invalid("command is required"));
                }
            }
        }
        if self.timeout_seconds == 0 || self.max_attempts == 0 {
            return Err(invalid("timeout_seconds and max_attempts must be positive"));
        }
        Ok(())
    }
}

fn key(mount: &Mount, name: &str) -> String {
    format!("{}hook/{name}", mount.storage_prefix())
}

/// Stores a hook.
pub async fn write(core: &Core, mount: &Mount, name: &str, hook: &Hook) -> Result<()> {
    super::database::check_name("hook", name)?;
    hook.validate()?;
    core.put_json(&key(mount, name), hook).await
}

/// Reads a hook.
pub async fn read(core: &Core, mount: &Mount, name: &str) -> Result<Option<Hook>> {
    core.get_json(&key(mount, name)).await
}

/// Deletes a hook.
pub async fn delete(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    core.delete(&key(mount, name)).await
}

/// Lists hook names.
pub async fn list(core: &Core, mount: &Mount) -> Result<Vec<String>> {
    core.list(&format!("{}hook/", mount.storage_prefix())).await
}

/// Checks that every named hook exists.
pub async fn check_names(core: &Core, mount: &Mount, names: &[String]) -> Result<()> {
    for name in names {
        if read(core, mount, name).await?.is_none() {
            return Err(invalid(format!("hook \"{name}\" does not exist")));
        }
    }
    Ok(())
}

/// What a hook is told about a rotation.
#[derive(Debug, Clone, Serialize)]
pub struct RotationEvent {
    /// `rotation.succeeded` or `rotation.failed`.
    pub event: &'static str,
    /// The mount path.
    pub mount: String,
    /// `static-role` or `root`.
    pub kind: &'static str,
    /// The static role or connection name.
    pub name: String,
    /// The database username.
    pub username: String,
    /// When the rotation ran.
    pub rotation_time: DateTime<Utc>,
    /// When the next one is due.
    pub next_rotation: Option<DateTime<Utc>>,
    /// Why it failed (redacted), for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The new password, only for hooks configured to receive it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

/// Signs a webhook body: returns the header value `t=<t>,sha256=<hex>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},sha256={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Runs the named hooks for an event in the background. `password` is added only for hooks
/// that asked for it.
pub async fn fire(
    core: &Core,
    mount: &Mount,
    names: &[String],
    event: RotationEvent,
    password: Option<String>,
) {
    for name in names {
        let hook = match read(core, mount, name).await {
            Ok(Some(hook)) => hook,
            Ok(None) => {
                tracing::warn!(hook = %name, "rotation hook no longer exists; skipped");
                continue;
            }
            Err(e) => {
                tracing::error!(hook = %name, error = %e, "cannot read rotation hook");
                continue;
            }
        };
        let mut event = event.clone();
        if hook.include_password {
            event.password = password.clone();
        }
        let name = name.clone();
        tokio::spawn(async move {
            let outcome = run(&hook, &event).await;
            let label = if outcome.is_ok() { "ok" } else { "error" };
            metrics::counter!("dbwarden_hook_runs_total", "hook" => name.clone(), "outcome" => label).increment(1);
            match outcome {
                Ok(()) => {
                    tracing::info!(hook = %name, event = event.event, role = %event.name, "rotation hook delivered")
                }
                Err(e) => {
                    tracing::warn!(hook = %name, event = event.event, role = %event.name, error = %e, "rotation hook failed")
                }
            }
        });
    }
}

async fn run(hook: &Hook, event: &RotationEvent) -> std::result::Result<(), String> {
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(hook.timeout_seconds);
    match hook.kind {
        HookKind::Webhook => {
            let mut last = String::new();
            for attempt in 1..=hook.max_attempts {
                let timestamp = Utc::now().timestamp();
                let sent = http_client()
                    .post(&hook.url)
                    .header("Content-Type", "application/json")
                    .header("X-Dbwarden-Event", event.event)
                    .header(
                        "X-Dbwarden-Signature",
                        signature(&hook.secret, timestamp, &body),
                    )
                    .timeout(timeout)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status().is_success() => return Ok(()),
                    Ok(resp) => last = format!("receiver answered {}", resp.status()),
                    // reqwest's error names the URL, never the body.
                    Err(e) => last = e.to_string(),
                }
                if attempt < hook.max_attempts {
                    tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1).min(64)))
                        .await;
                }
            }
            Err(format!("{last} (after {} attempts)", hook.max_attempts))
        }
        HookKind::Command => {
            let mut child = tokio::process::Command::new(&hook.command)
                .args(&hook.args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", hook.command))?;
            let mut stdin = child.stdin.take().ok_or("no stdin")?;
            let write = async {
                stdin.write_all(&body).await?;
                stdin.shutdown().await
            };
            let status = tokio::time::timeout(timeout, async {
                write.await.map_err(|e| e.to_string())?;
                child.wait().await.map_err(|e| e.to_string())
            })
            .await
            .map_err(|_| format!("timed out after {}s", hook.timeout_seconds))??;
            if status.success() {
                Ok(())
            } else {
                Err(format!("command exited with {status}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_and_body() {
        let sig = signature("0123456789abcdef", 1700000000, b"{}");
        // Independently: HMAC-SHA256("0123456789abcdef", "1700000000.{}").
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"0123456789abcdef").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(
            sig,
            format!(
                "t=1700000000,sha256={}",
                hex::encode(mac.finalize().into_bytes())
            )
        );
    }

    #[test]
    fn validation() {
        let mut hook = Hook {
            kind: HookKind::Webhook,
            url: "http://example.test/h".into(),
            secret: "0123456789abcdef".into(),
            command: String::new(),
            args: vec![],
            include_password: false,
            timeout_seconds: 5,
            max_attempts: 3,
        };
        hook.validate().unwrap();
        hook.include_password = true;
        assert!(hook.validate().unwrap_err().to_string().contains("https"));
        hook.url = "https://example.test/h".into();
        hook.validate().unwrap();
        hook.secret = "short".into();
        assert!(hook.validate().is_err());
        let command = Hook {
            kind: HookKind::Command,
            command: String::new(),
            ..hook
        };
        assert!(command.validate().is_err());
    }
}
