//! Leases: the durable record of every issued user, and the worker that revokes them.
//!
//! Life of a lease:
//! 1. *pending*: written before the user is created, claimed by the issuing request. If the
//!    issuer dies, its claim runs out and the worker revokes the user (which may or may not
//!    exist: revocation is idempotent).
//! 2. *active*: the user exists and was handed out; the worker acts at `expire_time`.
//! 3. *revoking*: the lease ended; revocation is running or is being retried with backoff.
//!    Success deletes the row. Failures are recorded and retried forever at most
//!    `retry_cap` apart; after `irrevocable_after` attempts the lease is reported as failing
//!    (Vault's "irrevocable") but still retried.
//!
//! The worker finds due work with an indexed query on `next_attempt` and *claims* it (with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL), so memory does not grow with the number of
//! leases, start-up restores nothing, and replicas sharing one database never revoke the
//! same lease at the same time. A claim is itself a lease on the row: if a replica dies,
//! its claims run out after `claim_timeout` and another replica takes over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::database;
use super::error::{EngineError, Result, invalid};
use super::mounts;
use super::ttl::{self, TtlInputs};
use crate::core::Core;
use crate::storage::{LeaseRow, LeaseState};

/// Tunables of revocation and the worker (`[leases]` in the configuration file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseSettings {
    /// First retry delay after a failed revocation.
    #[serde(with = "humantime_serde")]
    pub revocation_retry_base: Duration,
    /// Longest delay between revocation retries.
    #[serde(with = "humantime_serde")]
    pub revocation_retry_cap: Duration,
    /// Failed attempts after which a lease is reported as failing (irrevocable).
    pub irrevocable_after_attempts: i64,
    /// How long a claim (an issuer's on its pending lease, a worker's on a due lease) lasts.
    /// Longer than the slowest creation or revocation; a dead replica's work waits this long.
    #[serde(with = "humantime_serde")]
    pub claim_timeout: Duration,
    /// Revocations run at once against one connection.
    pub revocations_per_connection: usize,
    /// Leases claimed per worker pass.
    pub batch_size: i64,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            revocation_retry_base: Duration::from_secs(5),
            revocation_retry_cap: Duration::from_secs(3600),
            irrevocable_after_attempts: 6,
            claim_timeout: Duration::from_secs(120),
            revocations_per_connection: 4,
            batch_size: 256,
        }
    }
}

/// What a lease needs to be revoked even after its role is deleted. Sealed in storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revocation {
    /// The mount's storage namespace.
    pub mount_uuid: String,
    /// The role's revocation statements when the lease was issued.
    pub revocation_statements: Vec<String>,
    /// The role's renew statements when the lease was issued.
    pub renew_statements: Vec<String>,
    /// The role's max TTL when the lease was issued.
    pub role_max_ttl: i64,
    /// The role's default TTL when the lease was issued.
    pub role_default_ttl: i64,
}

/// A lease about to be written as pending.
#[derive(Debug, Clone)]
pub struct PendingLease {
    /// Lease id.
    pub id: String,
    /// Mount path.
    pub mount: String,
    /// Role name.
    pub role_name: String,
    /// Connection name.
    pub connection_name: String,
    /// Database username.
    pub username: String,
    /// HMAC of the owning token.
    pub owner: Option<String>,
    /// Accessor of the owning token.
    pub owner_accessor: Option<String>,
    /// Issue time.
    pub issue_time: DateTime<Utc>,
    /// Expiry.
    pub expire_time: DateTime<Utc>,
    /// Latest possible expiry.
    pub max_expire_time: DateTime<Utc>,
    /// Revocation snapshot.
    pub revocation: Revocation,
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn revocation_key(id: &str) -> String {
    format!("lease/{id}")
}

/// Writes the pending lease (the intent) durably, claimed by the caller for `claim_timeout`.
pub async fn insert_pending(core: &Core, lease: &PendingLease) -> Result<()> {
    let plain =
        serde_json::to_vec(&lease.revocation).map_err(|e| EngineError::Internal(e.to_string()))?;
    let claim = now_ms() + ms(core.leases.claim_timeout);
    let row = LeaseRow {
        id: lease.id.clone(),
        mount: lease.mount.clone(),
        role_name: lease.role_name.clone(),
        connection_name: lease.connection_name.clone(),
        username: lease.username.clone(),
        owner: lease.owner.clone(),
        state: LeaseState::Pending,
        renewable: true,
        issue_time: millis(lease.issue_time),
        expire_time: millis(lease.expire_time),
        max_expire_time: millis(lease.max_expire_time),
        last_renewal: None,
        revocation: core.barrier.seal(&revocation_key(&lease.id), &plain),
        revoke_attempts: 0,
        revoke_error: None,
        next_attempt: claim,
        claimed_until: claim,
        owner_accessor: lease.owner_accessor.clone(),
    };
    core.store.insert_lease(&row).await?;
    Ok(())
}

/// Marks a pending lease active; the worker will act on it at `expire`.
pub async fn activate(core: &Core, id: &str, expire: DateTime<Utc>) -> Result<()> {
    if !core.store.activate_lease(id, millis(expire)).await? {
        return Err(EngineError::Internal(format!(
            "lease {id} was taken over before the user was handed out (the request took longer than the claim timeout)"
        )));
    }
    core.lease_wake.due_at(millis(expire));
    Ok(())
}

/// Wakes the lease worker, but only when it would otherwise sleep past a new deadline.
///
/// Waking the worker for every issued lease would cost a storage pass per credential
/// (three queries, measured as most of the storage traffic under load) for leases that are
/// usually due hours later.
#[derive(Debug)]
pub struct LeaseWake {
    notify: tokio::sync::Notify,
    /// When the worker plans to wake (ms since the epoch); `i64::MAX` while it is deciding.
    planned: std::sync::atomic::AtomicI64,
}

impl Default for LeaseWake {
    fn default() -> Self {
        LeaseWake {
            notify: tokio::sync::Notify::new(),
            planned: std::sync::atomic::AtomicI64::new(i64::MAX),
        }
    }
}

impl LeaseWake {
    /// Wakes the worker now (work is due already).
    pub fn now(&self) {
        self.notify.notify_one();
    }

    /// A lease falls due at `at_ms`: wakes the worker if it planned to sleep longer.
    pub fn due_at(&self, at_ms: i64) {
        if at_ms < self.planned.load(std::sync::atomic::Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    /// Called by the worker before it reads the next deadline, so that a lease stored
    /// meanwhile wakes it rather than being missed.
    fn deciding(&self) {
        self.planned
            .store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
    }

    /// Called by the worker with the time it will wake at.
    fn plan(&self, at_ms: i64) {
        self.planned
            .store(at_ms, std::sync::atomic::Ordering::SeqCst);
    }
}

fn open_revocation(core: &Core, row: &LeaseRow) -> Result<Revocation> {
    let plain = core
        .barrier
        .open(&revocation_key(&row.id), &row.revocation)?;
    serde_json::from_slice(&plain)
        .map_err(|e| EngineError::Internal(format!("lease {} is unreadable: {e}", row.id)))
}

async fn mount_for(core: &Core, row: &LeaseRow, revocation: &Revocation) -> Result<mounts::Mount> {
    mounts::list(core)
        .await?
        .into_iter()
        .find(|m| m.uuid == revocation.mount_uuid)
        .ok_or_else(|| invalid(format!("the mount of lease {} no longer exists", row.id)))
}

/// Revokes a lease now: claims it, then revokes its user. If another process holds the
/// claim, waits (briefly) for that process to finish instead of revoking twice.
pub async fn revoke_row(core: &Core, row: &LeaseRow) -> Result<()> {
    let now = now_ms();
    if core
        .store
        .claim_lease(&row.id, now, now + ms(core.leases.claim_timeout))
        .await?
    {
        return revoke_claimed(core, row).await;
    }
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match core.store.get_lease(&row.id).await? {
            None => return Ok(()),
            Some(current) if current.claimed_until < now_ms() => {
                return Box::pin(revoke_row(core, &current)).await;
            }
            Some(_) => {}
        }
    }
    Err(EngineError::Internal(format!(
        "lease {} is being revoked by another process; check its state later",
        row.id
    )))
}

/// Revokes the user of a lease the caller has claimed, and deletes the lease. On failure
/// the lease is kept with the error and a backoff, the claim released, and the error returned.
pub async fn revoke_claimed(core: &Core, row: &LeaseRow) -> Result<()> {
    let started = Instant::now();
    let outcome = async {
        let revocation = open_revocation(core, row)?;
        let mount = mount_for(core, row, &revocation).await?;
        // The role's current statements if it still exists, else the snapshot (Vault #4782).
        let statements = match database::read_role(core, &mount, &row.role_name).await? {
            Some(role) => role.revocation_statements,
            None => revocation.revocation_statements,
        };
        database::delete_user(
            core,
            &mount,
            &row.connection_name,
            &row.username,
            statements,
        )
        .await
    }
    .await;
    let labels = [
        ("mount", row.mount.clone()),
        ("connection", row.connection_name.clone()),
    ];
    metrics::histogram!("dbwarden_revoke_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(()) => {
            core.store.delete_lease(&row.id).await?;
            metrics::counter!(
                "dbwarden_revocations_total",
                &[&labels[..], &[("outcome", "ok".to_owned())]].concat()
            )
            .increment(1);
            tracing::info!(lease_id = %row.id, username = %row.username, "lease revoked");
            Ok(())
        }
        Err(e) => {
            let attempts = row.revoke_attempts + 1;
            let delay = backoff(
                core.leases.revocation_retry_base,
                core.leases.revocation_retry_cap,
                attempts,
            );
            let message: String = e.to_string().chars().take(500).collect();
            core.store
                .record_revoke_failure(&row.id, &message, now_ms() + ms(delay))
                .await?;
            metrics::counter!(
                "dbwarden_revocations_total",
                &[&labels[..], &[("outcome", "error".to_owned())]].concat()
            )
            .increment(1);
            if let EngineError::Backend(b) = &e {
                metrics::counter!("dbwarden_backend_errors_total", "kind" => b.kind()).increment(1);
            }
            let irrevocable = attempts >= core.leases.irrevocable_after_attempts;
            tracing::warn!(lease_id = %row.id, attempts, irrevocable, retry_in_s = delay.as_secs(), error = %message, "revocation failed; will retry");
            Err(e)
        }
    }
}

/// Exponential backoff with ±50 % jitter from `base`, capped at `cap`: the delay before
/// retry number `attempt` (1 for the first retry). Shared by revocation and rotation.
pub fn backoff(base: Duration, cap: Duration, attempt: i64) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 30) - 1).unwrap_or(0);
    let delay = base.saturating_mul(2u32.saturating_pow(exp)).min(cap);
    let jitter = rand::rng().random_range(0.5..1.5);
    delay.mul_f64(jitter).min(cap)
}

/// What `sys/leases/lookup` shows.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    /// Lease id.
    pub id: String,
    /// Issue time.
    pub issue_time: DateTime<Utc>,
    /// Expiry.
    pub expire_time: DateTime<Utc>,
    /// Last renewal.
    pub last_renewal: Option<DateTime<Utc>>,
    /// Renewable.
    pub renewable: bool,
    /// Seconds left.
    pub ttl: i64,
    /// Last revocation error.
    pub revoke_error: Option<String>,
    /// Failed revocation attempts.
    pub revoke_attempts: i64,
    /// Whether it failed often enough to be reported as irrevocable.
    pub irrevocable: bool,
    /// State.
    pub state: LeaseState,
    /// Accessor of the owning token.
    pub token_accessor: Option<String>,
    /// The database username (not a secret).
    pub username: String,
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn info(core: &Core, row: LeaseRow) -> LeaseInfo {
    let now = now_ms();
    LeaseInfo {
        issue_time: from_ms(row.issue_time),
        expire_time: from_ms(row.expire_time),
        last_renewal: row.last_renewal.map(from_ms),
        renewable: row.renewable && row.state == LeaseState::Active,
        ttl: ((row.expire_time - now).max(0) + 500) / 1000,
        irrevocable: row.revoke_attempts >= core.leases.irrevocable_after_attempts,
        revoke_attempts: row.revoke_attempts,
        revoke_error: row.revoke_error,
        state: row.state,
        token_accessor: row.owner_accessor,
        username: row.username,
        id: row.id,
    }
}

/// Looks up a lease.
pub async fn lookup(core: &Core, id: &str) -> Result<LeaseInfo> {
    let row = core
        .store
        .get_lease(id)
        .await?
        .ok_or_else(|| invalid("invalid lease"))?;
    Ok(info(core, row))
}

/// Leases whose revocation failed `irrevocable_after_attempts` times or more.
pub async fn irrevocable(core: &Core, limit: i64) -> Result<Vec<LeaseInfo>> {
    let rows = core
        .store
        .failing_leases(core.leases.irrevocable_after_attempts, limit)
        .await?;
    Ok(rows.into_iter().map(|r| info(core, r)).collect())
}

/// Number of irrevocable leases.
pub async fn count_irrevocable(core: &Core) -> Result<i64> {
    Ok(core
        .store
        .count_failing_leases(core.leases.irrevocable_after_attempts)
        .await?)
}

/// Renews a lease with Vault's arithmetic; returns the new TTL and any warning.
pub async fn renew(core: &Core, id: &str, increment: Option<i64>) -> Result<(i64, Option<String>)> {
    let row = core
        .store
        .get_lease(id)
        .await?
        .ok_or_else(|| invalid("lease not found"))?;
    match row.state {
        LeaseState::Active => {}
        LeaseState::Revoking if row.revoke_attempts >= core.leases.irrevocable_after_attempts => {
            return Err(invalid(
                "lease is expired and has failed previous revocation attempts",
            ));
        }
        _ => return Err(invalid("lease expired")),
    }
    let now = Utc::now();
    if row.expire_time <= millis(now) {
        return Err(invalid("lease expired"));
    }
    if !row.renewable {
        return Err(invalid("lease is not renewable"));
    }
    let revocation = open_revocation(core, &row)?;
    let mount = mount_for(core, &row, &revocation).await?;
    let role = database::read_role(core, &mount, &row.role_name).await?;
    let (default_ttl, max_ttl, statements) = match &role {
        Some(r) => (r.default_ttl, r.max_ttl, r.renew_statements.clone()),
        None => (
            revocation.role_default_ttl,
            revocation.role_max_ttl,
            revocation.renew_statements.clone(),
        ),
    };
    let inputs = TtlInputs {
        increment: increment.unwrap_or(0),
        backend_ttl: default_ttl,
        backend_max_ttl: max_ttl,
        mount_default_ttl: mount.config.default_lease_ttl,
        mount_max_ttl: mount.config.max_lease_ttl,
    };
    // Vault measures max TTL from the issue time truncated to the second.
    let (ttl_secs, warning) = ttl::calculate(inputs, row.issue_time / 1000, now.timestamp())?;
    let expire = now + chrono::Duration::seconds(ttl_secs);
    database::renew_user(
        core,
        &mount,
        &row.connection_name,
        &row.username,
        statements,
        expire + chrono::Duration::seconds(5),
    )
    .await?;
    if !core
        .store
        .renew_lease(id, millis(expire), millis(now))
        .await?
    {
        return Err(invalid("lease expired"));
    }
    Ok((ttl_secs, warning))
}

/// Revokes one lease now. An unknown lease is not an error (Vault answers 204).
pub async fn revoke(core: &Core, id: &str) -> Result<()> {
    match core.store.get_lease(id).await? {
        Some(row) => revoke_row(core, &row).await,
        None => Ok(()),
    }
}

/// Hands a lease to the worker for revocation as soon as possible (`sync=false`).
pub async fn revoke_later(core: &Core, id: &str) -> Result<()> {
    if core.store.mark_lease_due(id, now_ms()).await? {
        core.lease_wake.now();
    }
    Ok(())
}

/// Revokes every lease under `prefix`. With `force`, backend errors are ignored and the
/// leases deleted anyway (`revoke-force`: the operator takes responsibility).
pub async fn revoke_prefix(core: &Core, prefix: &str, force: bool) -> Result<()> {
    // An exact lease id without trailing slash revokes just that lease.
    let prefix = if prefix.is_empty()
        || prefix.ends_with('/')
        || core.store.get_lease(prefix).await?.is_some()
    {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    };
    let ids = core.store.list_lease_ids(&prefix).await?;
    let mut first_error = None;
    for id in ids {
        let Some(row) = core.store.get_lease(&id).await? else {
            continue;
        };
        if let Err(e) = revoke_row(core, &row).await {
            if force {
                tracing::warn!(lease_id = %id, error = %e, "revoke-force: deleting lease despite revocation failure");
                core.store.delete_lease(&id).await?;
            } else if first_error.is_none() {
                first_error = Some(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Revokes the leases owned by a token (the token is being revoked or has expired).
///
/// Each lease is handed to the worker rather than revoked inline, so a token with many
/// leases is revoked quickly and a slow database does not hold up the token's revocation.
pub async fn revoke_by_owner(core: &Core, owner: &str) -> Result<()> {
    let now = now_ms();
    for id in core.store.lease_ids_by_owner(owner).await? {
        core.store.mark_lease_due(&id, now).await?;
    }
    core.lease_wake.now();
    Ok(())
}

/// `sys/leases/tidy`: hands to the worker every lease whose owning token no longer exists.
/// Returns how many leases were found orphaned.
pub async fn tidy(core: &Core) -> Result<usize> {
    let mut orphaned = 0;
    let mut after = String::new();
    loop {
        let owners = core.store.lease_owners(&after, 500).await?;
        let Some(last) = owners.last().cloned() else {
            break;
        };
        for owner in owners {
            if crate::auth::token::lookup_hmac(core, &owner)
                .await?
                .is_none()
            {
                let ids = core.store.lease_ids_by_owner(&owner).await?;
                orphaned += ids.len();
                revoke_by_owner(core, &owner).await?;
            }
        }
        after = last;
    }
    Ok(orphaned)
}

/// Lists the next path segments of lease ids under `prefix` (which ends with `/` or is empty).
pub async fn list(core: &Core, prefix: &str) -> Result<Vec<String>> {
    let ids = core.store.list_lease_ids(prefix).await?;
    Ok(crate::storage::next_segments(prefix, &ids))
}

/// Per-connection limits on concurrent revocations, created on first use.
#[derive(Default)]
struct ConnectionLimits(Mutex<HashMap<String, Arc<Semaphore>>>);

impl ConnectionLimits {
    fn get(&self, key: &str, permits: usize) -> Arc<Semaphore> {
        self.0
            .lock()
            .expect("limits lock poisoned")
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(permits.max(1))))
            .clone()
    }
}

/// Claims up to `room` due leases and starts revoking each in its own task, at most
/// `revocations_per_connection` at once per target connection. A slow database therefore
/// holds up only its own leases, never the claiming of others. Returns how many it claimed.
async fn start_due(
    core: &Arc<Core>,
    limits: &Arc<ConnectionLimits>,
    running: &mut tokio::task::JoinSet<()>,
    room: usize,
) -> Result<usize> {
    let now = now_ms();
    let limit = i64::try_from(room).unwrap_or(i64::MAX);
    let due = core
        .store
        .claim_due_leases(now, now + ms(core.leases.claim_timeout), limit)
        .await?;
    let claimed = due.len();
    let permits = core.leases.revocations_per_connection;
    for row in due {
        let (core, limits) = (core.clone(), limits.clone());
        running.spawn(async move {
            let limit = limits.get(&format!("{}\0{}", row.mount, row.connection_name), permits);
            let _permit = limit.acquire().await.expect("semaphore is never closed");
            // The claim ran while this task waited for a permit: renew it now, and give up
            // if it ran out and another replica took the lease over.
            let until = now_ms() + ms(core.leases.claim_timeout);
            match core.store.renew_claim(&row.id, row.claimed_until, until).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::error!(lease_id = %row.id, error = %e, "cannot renew the claim on a lease");
                    return;
                }
            }
            // Errors are recorded on the lease with a backoff; the others go on.
            let _ = revoke_claimed(&core, &row).await;
        });
    }
    Ok(claimed)
}

/// Revokes tokens that expired (and so, through the worker, their leases).
async fn run_expired_tokens(core: &Core) -> Result<usize> {
    let expired = core
        .store
        .expired_tokens(Utc::now().timestamp(), 100)
        .await?;
    for id in &expired {
        // lookup revokes an expired token (and its leases) as a side effect.
        match crate::auth::token::lookup_hmac(core, id).await? {
            // Renewed meanwhile: the index was stale, so correct it.
            Some(entry) if entry.expire_time.is_some() => {
                core.store
                    .set_token_expiry(id, entry.expire_time.unwrap_or_default())
                    .await?;
            }
            _ => core.store.delete_token_expiry(id).await?,
        }
    }
    Ok(expired.len())
}

/// The background worker: revokes due leases and expired tokens, sleeping until the next
/// deadline or until woken by a newly issued lease. Stops when `shutdown` fires.
pub async fn worker(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // Re-read storage at least this often, for work written by other replicas.
    const MAX_SLEEP: Duration = Duration::from_secs(5);
    let limits = Arc::new(ConnectionLimits::default());
    let mut running = tokio::task::JoinSet::new();
    let capacity = usize::try_from(core.leases.batch_size)
        .unwrap_or(256)
        .max(1);
    loop {
        while running.try_join_next().is_some() {}
        if let Err(e) = run_expired_tokens(&core).await {
            tracing::error!(error = %e, "expired-token pass failed");
        }
        let room = capacity.saturating_sub(running.len());
        if room > 0 {
            match start_due(&core, &limits, &mut running, room).await {
                Ok(n) if n == room => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "lease worker pass failed"),
            }
        }
        core.lease_wake.deciding();
        let sleep = match core.store.next_due().await {
            Ok(Some(at)) => {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(MAX_SLEEP)
            }
            _ => MAX_SLEEP,
        };
        core.lease_wake
            .plan(now_ms().saturating_add(i64::try_from(sleep.as_millis()).unwrap_or(i64::MAX)));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = core.lease_wake.notify.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // Let revocations in progress finish (briefly), so their claims are not left to expire.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while running.join_next().await.is_some() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let (base, cap) = (Duration::from_secs(5), Duration::from_secs(3600));
        for _ in 0..50 {
            let first = backoff(base, cap, 1);
            assert!(first >= Duration::from_millis(2500) && first <= Duration::from_millis(7500));
            assert!(backoff(base, cap, 300) <= cap);
        }
        assert!(backoff(base, cap, 12) >= cap / 2);
    }

    #[test]
    fn settings_parse_from_toml() {
        let s: LeaseSettings =
            toml::from_str("revocation_retry_cap = \"10m\"\nirrevocable_after_attempts = 3\n")
                .unwrap();
        assert_eq!(s.revocation_retry_cap, Duration::from_secs(600));
        assert_eq!(s.irrevocable_after_attempts, 3);
        assert_eq!(s.claim_timeout, Duration::from_secs(120));
        assert!(toml::from_str::<LeaseSettings>("retry = 1").is_err());
    }
}
