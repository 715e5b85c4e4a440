//! Auto-auth: getting a token and keeping one.
//!
//! The credential files (ServiceAccount token, AppRole ids) are read afresh at every login,
//! never cached, because the kubelet rotates projected tokens. A `token_file` is polled and
//! a changed token adopted. The token is renewed at about two thirds of its TTL; once
//! renewals stop extending it (its max TTL) or it cannot be renewed, the agent logs in again
//! before it ends. A login that fails is retried with capped exponential backoff.
//!
//! Every new token gets a new *generation*. Leases are children of the token that created
//! them and die with it, so secret tasks fetch fresh credentials when the generation moves.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::client::{ApiClient, ApiError, AuthInfo};
use super::config::{AutoAuth, DEFAULT_MODE, Lifecycle, TokenSink};
use super::file::{Owner, write_atomic};
use super::health::Health;
use super::schedule;
use super::state::StateFile;

/// Errors logging in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A credential file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadCredential {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A credential file is empty.
    #[error("{0} is empty")]
    EmptyCredential(PathBuf),
    /// The server refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// The token in use, as the secret tasks see it.
#[derive(Debug)]
pub struct CurrentToken {
    /// The token.
    pub secret: SecretString,
    /// Which login produced it (starts at 1).
    pub generation: u64,
}

/// Receives the current token.
pub type TokenWatch = watch::Receiver<Option<Arc<CurrentToken>>>;

/// Logs in and keeps the token alive.
pub struct Authenticator {
    client: ApiClient,
    method: AutoAuth,
    sink: Option<TokenSink>,
    lifecycle: Lifecycle,
    state: Arc<StateFile>,
    health: Arc<Health>,
    /// Secret tasks ring this when the server answers 403 to the token.
    pub rejected: Arc<Notify>,
}

fn read_credential(path: &Path) -> Result<String, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::ReadCredential {
        path: path.to_owned(),
        source,
    })?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(AuthError::EmptyCredential(path.to_owned()));
    }
    Ok(text)
}

impl Authenticator {
    /// An authenticator for `method`.
    pub fn new(
        client: ApiClient,
        method: AutoAuth,
        sink: Option<TokenSink>,
        lifecycle: Lifecycle,
        state: Arc<StateFile>,
        health: Arc<Health>,
    ) -> Authenticator {
        Authenticator {
            client,
            method,
            sink,
            lifecycle,
            state,
            health,
            rejected: Arc::new(Notify::new()),
        }
    }

    /// Whether tokens come from a file (and so are not kept in the state file).
    fn is_token_file(&self) -> bool {
        matches!(self.method, AutoAuth::TokenFile { .. })
    }

    /// One login attempt.
    async fn login_once(&self) -> Result<AuthInfo, AuthError> {
        match &self.method {
            AutoAuth::Kubernetes {
                role,
                mount,
                token_path,
            } => {
                let jwt = read_credential(token_path)?;
                Ok(self
                    .client
                    .login(mount, json!({ "role": role, "jwt": jwt }))
                    .await?)
            }
            AutoAuth::Approle {
                role_id_file,
                secret_id_file,
                mount,
            } => {
                let mut body = json!({ "role_id": read_credential(role_id_file)? });
                if let Some(file) = secret_id_file {
                    body["secret_id"] = json!(read_credential(file)?);
                }
                Ok(self.client.login(mount, body).await?)
            }
            AutoAuth::TokenFile { path } => {
                let token = SecretString::from(read_credential(path)?);
                Ok(self.client.lookup_self(&token).await?)
            }
        }
    }

    /// Logs in, retrying with backoff until it works or `shutdown` fires (`None`).
    async fn login(&self, shutdown: &mut watch::Receiver<bool>) -> Option<AuthInfo> {
        let mut attempt = 0;
        loop {
            match self.login_once().await {
                Ok(info) => {
                    metrics::counter!("dbwarden_agent_logins_total", "result" => "ok").increment(1);
                    tracing::info!(
                        accessor = %info.accessor,
                        ttl = info.lease_duration,
                        renewable = info.renewable,
                        "logged in"
                    );
                    self.health.set_auth(Ok(()));
                    self.publish(&info);
                    return Some(info);
                }
                Err(e) => {
                    metrics::counter!("dbwarden_agent_logins_total", "result" => "error")
                        .increment(1);
                    let delay = schedule::backoff(
                        attempt,
                        self.lifecycle.min_backoff,
                        self.lifecycle.max_backoff,
                        rand::random(),
                    );
                    tracing::warn!(error = %e, retry_in = ?delay, "login failed");
                    self.health.set_auth(Err(e.to_string()));
                    attempt += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return None,
                    }
                }
            }
        }
    }

    /// Writes the sink and records the token in the state file.
    fn publish(&self, info: &AuthInfo) {
        if let Some(sink) = &self.sink {
            let owner = Owner {
                uid: sink.uid,
                gid: sink.gid,
            };
            let mode = sink.mode.map_or(DEFAULT_MODE, |m| m.0);
            if let Err(e) = write_atomic(
                &sink.path,
                info.token.expose_secret().as_bytes(),
                mode,
                owner,
            ) {
                tracing::error!(path = %sink.path.display(), error = %e, "cannot write the token sink");
            }
        }
        if !self.is_token_file() {
            let token = info.token.expose_secret().to_owned();
            if let Err(e) = self.state.update(|s| s.token = Some(token)) {
                tracing::error!(error = %e, "cannot record the token");
            }
        }
    }

    /// The first token: the one recorded in the state file while the server still accepts
    /// it (an agent restarted in the same Pod), else a new login. `None` on shutdown.
    pub async fn first_token(&self, shutdown: &mut watch::Receiver<bool>) -> Option<AuthInfo> {
        if !self.is_token_file()
            && let Some(text) = self.state.snapshot().token
        {
            let token = SecretString::from(text);
            match self.client.lookup_self(&token).await {
                Ok(info) => {
                    tracing::info!(accessor = %info.accessor, ttl = info.lease_duration, "reusing the recorded token");
                    self.health.set_auth(Ok(()));
                    self.publish(&info);
                    return Some(info);
                }
                Err(e) => {
                    tracing::info!(error = %e, "the recorded token is no longer valid; logging in")
                }
            }
        }
        self.login(shutdown).await
    }

    /// Keeps a token valid until `shutdown`, publishing every new one on `tx`.
    pub async fn maintain(
        self,
        first: AuthInfo,
        tx: watch::Sender<Option<Arc<CurrentToken>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut info = first;
        let mut generation = 1;
        tx.send_replace(Some(Arc::new(CurrentToken {
            secret: info.token.clone(),
            generation,
        })));
        let mut obtained = Instant::now();
        let mut attempt = 0u32;
        loop {
            let ttl = Duration::from_secs(info.lease_duration);
            let expires = obtained + ttl;
            // What to do next and when.
            let (action, at) = if info.lease_duration == 0 {
                (Action::Idle, None)
            } else if attempt > 0 {
                let delay = schedule::backoff(
                    attempt - 1,
                    self.lifecycle.min_backoff,
                    self.lifecycle.max_backoff,
                    rand::random(),
                );
                (Action::Renew, Some((Instant::now() + delay).min(expires)))
            } else if info.renewable && !info.capped {
                let delay = schedule::renew_delay(
                    ttl,
                    self.lifecycle.renew_fraction,
                    self.lifecycle.jitter,
                    rand::random(),
                );
                (Action::Renew, Some(obtained + delay))
            } else {
                let delay = schedule::rotate_delay(
                    ttl,
                    self.lifecycle.rotate_threshold,
                    self.lifecycle.jitter,
                    rand::random(),
                );
                (Action::Relogin, Some(obtained + delay))
            };
            let poll = if self.is_token_file() {
                Some(Instant::now() + self.lifecycle.token_file_poll)
            } else {
                None
            };
            let wake = match (at, poll) {
                (Some(a), Some(p)) => Some(a.min(p)),
                (a, p) => a.or(p),
            };
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let mut relogin = false;
            tokio::select! {
                _ = sleep => {}
                _ = self.rejected.notified() => {
                    // Confirm before throwing the token away: a 403 may be a policy gap.
                    match self.client.lookup_self(&info.token).await {
                        Err(e) if e.is_permission_denied() => {
                            tracing::warn!("the server no longer accepts the token; logging in again");
                            relogin = true;
                        }
                        _ => continue,
                    }
                }
                _ = shutdown.changed() => return,
            }
            if !relogin
                && let AutoAuth::TokenFile { path } = &self.method
                && let Ok(text) = read_credential(path)
                && text != info.token.expose_secret()
            {
                tracing::info!(path = %path.display(), "the token file changed");
                relogin = true;
            }
            let now = Instant::now();
            if !relogin && at.is_some_and(|t| t <= now) {
                match action {
                    Action::Relogin => relogin = true,
                    Action::Renew => match self.client.renew_self(&info.token, None).await {
                        Ok(renewed) => {
                            metrics::counter!("dbwarden_agent_token_renewals_total", "result" => "ok").increment(1);
                            tracing::debug!(
                                ttl = renewed.lease_duration,
                                capped = renewed.capped,
                                "token renewed"
                            );
                            // A renewal that did not give back a full TTL has hit the max.
                            let capped = renewed.capped
                                || renewed.lease_duration + 1 < info.lease_duration && attempt == 0;
                            info = AuthInfo { capped, ..renewed };
                            obtained = now;
                            attempt = 0;
                        }
                        Err(e) => {
                            metrics::counter!("dbwarden_agent_token_renewals_total", "result" => "error").increment(1);
                            if e.is_transient() && now < expires {
                                tracing::warn!(error = %e, "token renewal failed; retrying");
                                attempt += 1;
                            } else {
                                tracing::warn!(error = %e, "token renewal refused; logging in again");
                                relogin = true;
                            }
                        }
                    },
                    Action::Idle => {}
                }
            }
            if relogin {
                let Some(new) = self.login(&mut shutdown).await else {
                    return;
                };
                info = new;
                obtained = Instant::now();
                attempt = 0;
                generation += 1;
                tx.send_replace(Some(Arc::new(CurrentToken {
                    secret: info.token.clone(),
                    generation,
                })));
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Idle,
    Renew,
    Relogin,
}
