//! One secret's life: fetch, write, renew, rotate before the maximum, reload, revoke the old.
//!
//! The order of a rotation is the point of the agent: the new credentials are fetched and
//! written *before* the old lease ends, then the reload action runs, and only after the grace
//! period is the old lease revoked, so the application never holds a revoked password
//! (Vault's cache revokes first, vault#17541). A restart reuses the lease in the state file
//! (looked up, then renewed) instead of minting another (vault#14634).
//!
//! Cancellation: every await point leaves the files and the state file consistent, since
//! each is written atomically and the state is written after the files it describes. A lease
//! minted but not yet recorded when the process dies is an extra credential that expires
//! with its TTL, never a lost one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::auth::{CurrentToken, TokenWatch};
use super::client::{ApiClient, ApiError, Secret};
use super::config::Lifecycle;
use super::file::{holds, write_atomic};
use super::health::{Health, SecretHealth};
use super::reload::Reload;
use super::render::{Output, RenderError, RenderInput};
use super::schedule;
use super::state::{PendingRevocation, StateFile, StoredSecret};

/// Errors of one attempt at getting a secret onto disk.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The server refused or was unreachable.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// An output could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// An output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Static credentials came back with `ttl = 0` (Vault's agent treats it as an error too).
    #[error("static credentials came back with ttl 0")]
    ZeroTtl,
    /// No token yet (shutting down).
    #[error("no token")]
    NoToken,
}

/// The credentials currently on disk.
#[derive(Debug, Clone)]
struct Held {
    /// Lease id; empty for static credentials.
    lease_id: String,
    /// The TTL asked for at each renewal.
    lease_duration: u64,
    /// Token generation the lease belongs to.
    generation: u64,
    /// When the lease ends if not renewed.
    expires: Instant,
    /// Next renewal, for renewable leases not yet at their maximum.
    next_renew: Option<Instant>,
    /// When to fetch new credentials (lease near its end, or static re-read).
    refresh_at: Option<Instant>,
    /// Consecutive failures of the current step, for backoff.
    failures: u32,
}

/// Why new credentials are fetched (a metric label and a log field).
#[derive(Debug, Clone, Copy)]
enum Reason {
    Initial,
    Rotation,
    LeaseLost,
    NewToken,
    StaticRefresh,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Initial => "initial",
            Reason::Rotation => "rotation",
            Reason::LeaseLost => "lease_lost",
            Reason::NewToken => "new_token",
            Reason::StaticRefresh => "static_refresh",
        }
    }
}

/// Everything a secret task needs.
pub struct SecretTask {
    /// The secret's name.
    pub name: String,
    /// The API path.
    pub path: String,
    /// Files to render.
    pub outputs: Vec<Output>,
    /// What to run after new credentials were written.
    pub reload: Option<Reload>,
    /// The server.
    pub client: ApiClient,
    /// Timing.
    pub lifecycle: Lifecycle,
    /// The current token.
    pub token: TokenWatch,
    /// Rung when the server answers 403.
    pub rejected: Arc<Notify>,
    /// The state file.
    pub state: Arc<StateFile>,
    /// Health report.
    pub health: Arc<Health>,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl SecretTask {
    fn current_token(&self) -> Option<Arc<CurrentToken>> {
        self.token.borrow().clone()
    }

    fn backoff(&self, failures: u32) -> Duration {
        schedule::backoff(
            failures.saturating_sub(1),
            self.lifecycle.min_backoff,
            self.lifecycle.max_backoff,
            rand::random(),
        )
    }

    fn note_api_error(&self, e: &ApiError) {
        if e.is_permission_denied() {
            self.rejected.notify_one();
        }
    }

    /// Gets credentials onto disk once, reusing the recorded lease when it is still valid;
    /// retries until it works or `shutdown` fires (`None`).
    async fn first(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Held> {
        if let Some(held) = self.reuse().await {
            return Some(held);
        }
        let mut failures = 0;
        loop {
            match self.fetch(None, Reason::Initial).await {
                Ok(held) => return Some(held),
                Err(e) => {
                    failures += 1;
                    let delay = self.backoff(failures);
                    tracing::warn!(secret = %self.name, error = %e, retry_in = ?delay, "cannot fetch the secret");
                    self.health.secret_error(&self.name, e.to_string());
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return None,
                    }
                }
            }
        }
    }

    /// Renders once and returns (for `--once` and init containers).
    pub async fn run_once(self, mut shutdown: watch::Receiver<bool>) -> bool {
        self.first(&mut shutdown).await.is_some()
    }

    /// Keeps the secret fresh until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Some(mut held) = self.first(&mut shutdown).await else {
            return;
        };
        let mut token = self.token.clone();
        let mut revocation_failures = 0u32;
        loop {
            let revoke_due = self.pending().iter().map(|p| p.due).min().map(|due| {
                let wait = (due - unix_now()).max(0) as u64;
                let backoff = if revocation_failures > 0 {
                    self.backoff(revocation_failures)
                } else {
                    Duration::ZERO
                };
                Instant::now() + Duration::from_secs(wait) + backoff
            });
            let wake = [held.next_renew, held.refresh_at, revoke_due]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let mut reason = None;
            tokio::select! {
                _ = sleep => {}
                changed = token.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let generation = token.borrow().as_ref().map_or(0, |t| t.generation);
                    if generation != held.generation && !held.lease_id.is_empty() {
                        // The old token's leases die with it: replace them now.
                        reason = Some(Reason::NewToken);
                    } else {
                        held.generation = generation;
                    }
                }
                _ = shutdown.changed() => {
                    if self.lifecycle.revoke_on_shutdown {
                        self.revoke_everything(&held).await;
                    }
                    return;
                }
            }
            let now = Instant::now();
            if reason.is_none() && held.refresh_at.is_some_and(|t| t <= now) {
                reason = Some(if held.lease_id.is_empty() {
                    Reason::StaticRefresh
                } else {
                    Reason::Rotation
                });
            }
            if reason.is_none() && held.next_renew.is_some_and(|t| t <= now) {
                match self.renew(&mut held).await {
                    Ok(()) => {}
                    Err(true) => reason = Some(Reason::LeaseLost),
                    Err(false) => {}
                }
            }
            if let Some(reason) = reason {
                match self.fetch(Some(&held), reason).await {
                    Ok(new) => held = new,
                    Err(e) => {
                        held.failures += 1;
                        let delay = self.backoff(held.failures);
                        tracing::warn!(secret = %self.name, error = %e, reason = reason.as_str(), retry_in = ?delay, "cannot fetch new credentials");
                        self.health.secret_error(&self.name, e.to_string());
                        held.refresh_at = Some(Instant::now() + delay);
                        held.next_renew = None;
                    }
                }
            }
            if revoke_due.is_some_and(|t| t <= Instant::now()) {
                if self.revoke_due().await {
                    revocation_failures = 0;
                } else {
                    revocation_failures += 1;
                }
            }
        }
    }

    /// Reuses the lease in the state file: it must be for the same path, every output file
    /// must exist, and the server must still know the lease and renew it.
    async fn reuse(&self) -> Option<Held> {
        let stored = self.state.snapshot().secrets.get(&self.name).cloned()?;
        if stored.path != self.path || stored.lease_id.is_empty() {
            return None;
        }
        if let Some(missing) = self.outputs.iter().find(|o| !o.path.exists()) {
            tracing::info!(secret = %self.name, file = %missing.path.display(), "an output is missing; fetching new credentials");
            self.schedule_revocation(&stored.lease_id, Duration::ZERO);
            return None;
        }
        let token = self.current_token()?;
        match self
            .client
            .lookup_lease(&token.secret, &stored.lease_id)
            .await
        {
            Ok(Some(lookup)) if lookup.ttl > 0 => {}
            Ok(_) => {
                tracing::info!(secret = %self.name, lease_id = %stored.lease_id, "the recorded lease has ended; fetching new credentials");
                return None;
            }
            Err(e) => {
                self.note_api_error(&e);
                tracing::warn!(secret = %self.name, error = %e, "cannot look up the recorded lease; fetching new credentials");
                return None;
            }
        }
        let mut held = Held {
            lease_id: stored.lease_id.clone(),
            lease_duration: stored.lease_duration,
            generation: token.generation,
            expires: Instant::now(),
            next_renew: None,
            refresh_at: None,
            failures: 0,
        };
        match self.renew(&mut held).await {
            Ok(()) => {
                metrics::counter!("dbwarden_agent_leases_reused_total", "secret" => self.name.clone()).increment(1);
                tracing::info!(secret = %self.name, lease_id = %held.lease_id, "reusing the recorded lease");
                Some(held)
            }
            Err(_) => None,
        }
    }

    /// Renews the lease. `Err(true)`: the lease is gone (fetch new credentials now);
    /// `Err(false)`: a transient failure, retried later (the schedule is updated).
    async fn renew(&self, held: &mut Held) -> Result<(), bool> {
        let token = self.current_token().ok_or(false)?;
        let now = Instant::now();
        match self
            .client
            .renew_lease(&token.secret, &held.lease_id, held.lease_duration)
            .await
        {
            Ok(renewal) => {
                metrics::counter!("dbwarden_agent_lease_renewals_total", "secret" => self.name.clone(), "result" => "ok").increment(1);
                let ttl = Duration::from_secs(renewal.ttl);
                held.expires = now + ttl;
                held.failures = 0;
                if renewal.capped {
                    // Renewals no longer extend the lease: replace it before it ends.
                    let delay = schedule::rotate_delay(
                        ttl,
                        self.lifecycle.rotate_threshold,
                        self.lifecycle.jitter,
                        rand::random(),
                    );
                    held.next_renew = None;
                    held.refresh_at = Some(now + delay);
                    tracing::info!(secret = %self.name, lease_id = %held.lease_id, ttl = renewal.ttl, rotate_in = ?delay, "lease renewed up to its maximum");
                } else {
                    held.next_renew = Some(
                        now + schedule::renew_delay(
                            ttl,
                            self.lifecycle.renew_fraction,
                            self.lifecycle.jitter,
                            rand::random(),
                        ),
                    );
                    tracing::debug!(secret = %self.name, lease_id = %held.lease_id, ttl = renewal.ttl, "lease renewed");
                }
                self.report_ok(held);
                Ok(())
            }
            Err(e) => {
                metrics::counter!("dbwarden_agent_lease_renewals_total", "secret" => self.name.clone(), "result" => "error").increment(1);
                self.note_api_error(&e);
                let gone = e.status() == Some(400) || now >= held.expires;
                if gone {
                    tracing::warn!(secret = %self.name, lease_id = %held.lease_id, error = %e, "the lease can no longer be renewed");
                    return Err(true);
                }
                held.failures += 1;
                let delay = self.backoff(held.failures);
                tracing::warn!(secret = %self.name, lease_id = %held.lease_id, error = %e, retry_in = ?delay, "lease renewal failed");
                self.health.secret_error(&self.name, e.to_string());
                held.next_renew = Some((now + delay).min(held.expires));
                Err(false)
            }
        }
    }

    /// Fetches credentials, writes the files, records the lease, runs the reload action if
    /// anything changed under a running application, and schedules the old lease's
    /// revocation.
    async fn fetch(&self, old: Option<&Held>, reason: Reason) -> Result<Held, SecretError> {
        let token = self.current_token().ok_or(SecretError::NoToken)?;
        let secret = self
            .client
            .read(&token.secret, &self.path)
            .await
            .inspect_err(|e| self.note_api_error(e))?;
        metrics::counter!("dbwarden_agent_fetches_total", "secret" => self.name.clone(), "reason" => reason.as_str()).increment(1);
        let now = Instant::now();
        let held = match self.schedule_new(&secret, token.generation, now) {
            Ok(held) => held,
            Err(e) => {
                self.discard(&secret).await;
                return Err(e);
            }
        };
        let changed = match self.write_outputs(&secret) {
            Ok(changed) => changed,
            Err(e) => {
                self.discard(&secret).await;
                return Err(e);
            }
        };
        let record = StoredSecret {
            path: self.path.clone(),
            lease_id: secret.lease_id.clone(),
            lease_duration: secret.lease_duration,
        };
        if let Err(e) = self.state.update(|s| {
            s.secrets.insert(self.name.clone(), record);
        }) {
            tracing::error!(secret = %self.name, error = %e, "cannot record the lease (a restart will mint another)");
        }
        if !secret.lease_id.is_empty() {
            tracing::info!(secret = %self.name, lease_id = %secret.lease_id, ttl = secret.lease_duration, renewable = secret.renewable, reason = reason.as_str(), "new credentials written");
        } else if changed.any {
            tracing::info!(secret = %self.name, reason = reason.as_str(), "static credentials changed and were written");
        }
        self.report_ok(&held);
        if changed.any
            && (changed.replaced_existing || old.is_some())
            && let Some(reload) = &self.reload
        {
            match reload.run(&self.name).await {
                Ok(()) => {
                    metrics::counter!("dbwarden_agent_reloads_total", "secret" => self.name.clone(), "result" => "ok").increment(1);
                    tracing::info!(secret = %self.name, "reload action ran");
                }
                Err(e) => {
                    metrics::counter!("dbwarden_agent_reloads_total", "secret" => self.name.clone(), "result" => "error").increment(1);
                    tracing::error!(secret = %self.name, error = %e, "reload action failed");
                }
            }
        }
        if let Some(old) = old
            && !old.lease_id.is_empty()
            && old.lease_id != secret.lease_id
        {
            self.schedule_revocation(&old.lease_id, self.lifecycle.revoke_grace);
        }
        Ok(held)
    }

    /// The schedule of freshly fetched credentials.
    fn schedule_new(
        &self,
        secret: &Secret,
        generation: u64,
        now: Instant,
    ) -> Result<Held, SecretError> {
        let ttl = Duration::from_secs(secret.lease_duration);
        let mut held = Held {
            lease_id: secret.lease_id.clone(),
            lease_duration: secret.lease_duration,
            generation,
            expires: now + ttl,
            next_renew: None,
            refresh_at: None,
            failures: 0,
        };
        if secret.lease_id.is_empty() {
            // Static credentials: the data's ttl is the time to the next password rotation.
            let rotation = secret
                .data
                .0
                .get("ttl")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if rotation == 0 {
                return Err(SecretError::ZeroTtl);
            }
            let delay = schedule::static_refresh_delay(rotation);
            held.expires = now + delay;
            held.refresh_at = Some(now + delay);
        } else if secret.renewable && secret.lease_duration > 0 {
            held.next_renew = Some(
                now + schedule::renew_delay(
                    ttl,
                    self.lifecycle.renew_fraction,
                    self.lifecycle.jitter,
                    rand::random(),
                ),
            );
        } else {
            held.refresh_at = Some(
                now + schedule::rotate_delay(
                    ttl,
                    self.lifecycle.rotate_threshold,
                    self.lifecycle.jitter,
                    rand::random(),
                ),
            );
        }
        Ok(held)
    }

    /// Revokes a lease that was minted but cannot be used (no orphan is left behind).
    async fn discard(&self, secret: &Secret) {
        if secret.lease_id.is_empty() {
            return;
        }
        if let Some(token) = self.current_token()
            && let Err(e) = self
                .client
                .revoke_lease(&token.secret, &secret.lease_id)
                .await
        {
            tracing::warn!(secret = %self.name, lease_id = %secret.lease_id, error = %e, "cannot revoke an unusable lease; it will expire");
        }
    }

    /// Renders and writes every output; reports whether anything changed.
    fn write_outputs(&self, secret: &Secret) -> Result<Changes, SecretError> {
        let input = RenderInput {
            data: &secret.data,
            lease_id: &secret.lease_id,
            lease_duration: secret.lease_duration,
        };
        // Render everything first, so a template error writes nothing at all.
        let rendered = self
            .outputs
            .iter()
            .map(|o| o.render(&input).map(|bytes| (o, bytes)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut changes = Changes::default();
        for (output, bytes) in rendered {
            if holds(&output.path, &bytes) {
                continue;
            }
            changes.any = true;
            changes.replaced_existing |= output.path.exists();
            write_atomic(&output.path, &bytes, output.mode, output.owner).map_err(|source| {
                SecretError::Write {
                    path: output.path.display().to_string(),
                    source,
                }
            })?;
        }
        Ok(changes)
    }

    fn report_ok(&self, held: &Held) {
        let left = held.expires.saturating_duration_since(Instant::now());
        let expires_at = unix_now() + left.as_secs() as i64;
        metrics::gauge!("dbwarden_agent_credentials_expiry_timestamp_seconds", "secret" => self.name.clone()).set(expires_at as f64);
        self.health.set_secret(
            &self.name,
            SecretHealth {
                ok: true,
                expires_at: Some(expires_at),
                last_error: None,
            },
        );
    }

    fn pending(&self) -> Vec<PendingRevocation> {
        self.state
            .snapshot()
            .pending_revocations
            .into_iter()
            .filter(|p| p.secret == self.name)
            .collect()
    }

    fn schedule_revocation(&self, lease_id: &str, grace: Duration) {
        let pending = PendingRevocation {
            secret: self.name.clone(),
            lease_id: lease_id.to_owned(),
            due: unix_now() + grace.as_secs() as i64 + i64::from(grace.subsec_nanos() > 0),
        };
        tracing::info!(secret = %self.name, lease_id = %lease_id, grace = ?grace, "old lease will be revoked after the grace period");
        if let Err(e) = self.state.update(|s| {
            s.pending_revocations
                .retain(|p| p.lease_id != pending.lease_id);
            s.pending_revocations.push(pending);
        }) {
            tracing::error!(secret = %self.name, error = %e, "cannot record a pending revocation");
        }
    }

    /// Revokes the leases whose grace period is over; returns false if one failed and
    /// should be retried.
    async fn revoke_due(&self) -> bool {
        let Some(token) = self.current_token() else {
            return false;
        };
        let now = unix_now();
        let mut all_ok = true;
        for pending in self.pending().into_iter().filter(|p| p.due <= now) {
            match self
                .client
                .revoke_lease(&token.secret, &pending.lease_id)
                .await
            {
                Ok(()) => {
                    metrics::counter!("dbwarden_agent_lease_revocations_total", "result" => "ok")
                        .increment(1);
                    tracing::info!(secret = %self.name, lease_id = %pending.lease_id, "old lease revoked");
                }
                Err(e) if e.is_transient() => {
                    metrics::counter!("dbwarden_agent_lease_revocations_total", "result" => "error").increment(1);
                    tracing::warn!(secret = %self.name, lease_id = %pending.lease_id, error = %e, "cannot revoke the old lease yet");
                    all_ok = false;
                    continue;
                }
                Err(e) => {
                    // 403 (no policy on sys/leases/revoke) or 400: retrying will not help,
                    // and the lease ends at its max TTL anyway.
                    metrics::counter!("dbwarden_agent_lease_revocations_total", "result" => "refused").increment(1);
                    self.note_api_error(&e);
                    tracing::warn!(secret = %self.name, lease_id = %pending.lease_id, error = %e, "old lease not revoked; it will expire");
                }
            }
            if let Err(e) = self.state.update(|s| {
                s.pending_revocations
                    .retain(|p| p.lease_id != pending.lease_id)
            }) {
                tracing::error!(secret = %self.name, error = %e, "cannot update the state file");
            }
        }
        all_ok
    }

    /// On shutdown with `revoke_on_shutdown`: revoke the current lease and every pending one.
    async fn revoke_everything(&self, held: &Held) {
        let Some(token) = self.current_token() else {
            return;
        };
        let mut ids: Vec<String> = self.pending().into_iter().map(|p| p.lease_id).collect();
        if !held.lease_id.is_empty() {
            ids.push(held.lease_id.clone());
        }
        for id in &ids {
            match self.client.revoke_lease(&token.secret, id).await {
                Ok(()) => {
                    tracing::info!(secret = %self.name, lease_id = %id, "lease revoked on shutdown")
                }
                Err(e) => {
                    tracing::warn!(secret = %self.name, lease_id = %id, error = %e, "cannot revoke on shutdown")
                }
            }
        }
        if let Err(e) = self.state.update(|s| {
            s.secrets.remove(&self.name);
            s.pending_revocations.retain(|p| p.secret != self.name);
        }) {
            tracing::error!(secret = %self.name, error = %e, "cannot update the state file");
        }
    }
}

/// What a write changed.
#[derive(Debug, Default)]
struct Changes {
    /// Some file got new contents.
    any: bool,
    /// Some file that already existed got new contents (an application may have read it).
    replaced_existing: bool,
}
