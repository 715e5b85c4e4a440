//! Leases: the durable record of every issued user, and the worker that revokes them.
//!
//! A lease is written as *pending* before its user is created, becomes *active* when the
//! user exists, and *revoking* once it has ended. The worker finds due work with an indexed
//! query on `next_attempt` instead of holding one timer per lease, so memory does not grow
//! with the number of leases and start-up has nothing to restore.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::database;
use super::error::{EngineError, Result, invalid};
use super::mounts;
use super::ttl::{self, TtlInputs};
use crate::core::Core;
use crate::storage::{LeaseRow, LeaseState};

/// How long a pending lease may stay pending before the worker assumes its issuer died.
/// Longer than [`database::CREATE_TIMEOUT`], so a slow creation is never revoked mid-way.
pub const PENDING_GRACE: Duration = Duration::from_secs(120);
/// First retry delay after a failed revocation.
const RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest delay between revocation retries.
const RETRY_CAP: Duration = Duration::from_secs(3600);
/// Leases revoked per worker pass.
const BATCH: i64 = 64;

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

fn revocation_key(id: &str) -> String {
    format!("lease/{id}")
}

/// Writes the pending lease (the intent) durably.
pub async fn insert_pending(core: &Core, lease: &PendingLease) -> Result<()> {
    let plain =
        serde_json::to_vec(&lease.revocation).map_err(|e| EngineError::Internal(e.to_string()))?;
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
        next_attempt: now_ms() + PENDING_GRACE.as_millis() as i64,
    };
    core.store.insert_lease(&row).await?;
    Ok(())
}

/// Marks a pending lease active; the worker will act on it at `expire`.
pub async fn activate(core: &Core, id: &str, expire: DateTime<Utc>) -> Result<()> {
    core.store
        .set_lease_state(id, LeaseState::Active, millis(expire))
        .await?;
    core.lease_wake.notify_one();
    Ok(())
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

/// Revokes one lease's user and deletes the lease. On failure the lease is kept with the
/// error and a backoff, and the error is returned.
pub async fn revoke_row(core: &Core, row: &LeaseRow) -> Result<()> {
    // Claim: if this process dies now, the worker retries after the grace period.
    core.store
        .set_lease_state(
            &row.id,
            LeaseState::Revoking,
            now_ms() + PENDING_GRACE.as_millis() as i64,
        )
        .await?;
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
    match outcome {
        Ok(()) => {
            core.store.delete_lease(&row.id).await?;
            tracing::info!(lease_id = %row.id, username = %row.username, "lease revoked");
            Ok(())
        }
        Err(e) => {
            let delay = backoff(row.revoke_attempts + 1);
            let message: String = e.to_string().chars().take(500).collect();
            core.store
                .record_revoke_failure(&row.id, &message, now_ms() + delay.as_millis() as i64)
                .await?;
            tracing::warn!(lease_id = %row.id, attempts = row.revoke_attempts + 1, retry_in_s = delay.as_secs(), error = %message, "revocation failed; will retry");
            Err(e)
        }
    }
}

/// Exponential backoff with ±50 % jitter, capped.
pub fn backoff(attempt: i64) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 20) - 1).unwrap_or(0);
    let base = RETRY_BASE
        .saturating_mul(2u32.saturating_pow(exp))
        .min(RETRY_CAP);
    let jitter = rand::rng().random_range(0.5..1.5);
    base.mul_f64(jitter).min(RETRY_CAP)
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
    /// State.
    pub state: LeaseState,
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Looks up a lease.
pub async fn lookup(core: &Core, id: &str) -> Result<LeaseInfo> {
    let row = core
        .store
        .get_lease(id)
        .await?
        .ok_or_else(|| invalid("invalid lease"))?;
    let now = now_ms();
    Ok(LeaseInfo {
        id: row.id.clone(),
        issue_time: from_ms(row.issue_time),
        expire_time: from_ms(row.expire_time),
        last_renewal: row.last_renewal.map(from_ms),
        renewable: row.renewable && row.state == LeaseState::Active,
        ttl: ((row.expire_time - now).max(0) + 500) / 1000,
        revoke_error: row.revoke_error.clone(),
        state: row.state,
    })
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
        LeaseState::Revoking if row.revoke_error.is_some() => {
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

/// Revokes every lease under `prefix`. With `force`, backend errors are ignored and the
/// leases deleted anyway (`revoke-force`: the operator takes responsibility).
pub async fn revoke_prefix(core: &Core, prefix: &str, force: bool) -> Result<()> {
    // An exact lease id without trailing slash revokes just that lease.
    let prefix = if core.store.get_lease(prefix).await?.is_some()
        || prefix.ends_with('/')
        || prefix.is_empty()
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

/// Revokes the leases owned by a token (the token is being revoked).
///
/// Failures are recorded on each lease and retried by the worker; they do not stop the
/// token's revocation.
pub async fn revoke_by_owner(core: &Core, owner: &str) -> Result<()> {
    for id in core.store.lease_ids_by_owner(owner).await? {
        if let Some(row) = core.store.get_lease(&id).await?
            && let Err(e) = revoke_row(core, &row).await
        {
            tracing::warn!(lease_id = %id, error = %e, "revocation with owning token deferred to the worker");
        }
    }
    Ok(())
}

/// Lists the next path segments of lease ids under `prefix` (which ends with `/` or is empty).
pub async fn list(core: &Core, prefix: &str) -> Result<Vec<String>> {
    let ids = core.store.list_lease_ids(prefix).await?;
    Ok(crate::storage::next_segments(prefix, &ids))
}

/// One pass of the worker: revokes due leases. Returns how many it handled.
pub async fn run_due(core: &Core) -> Result<usize> {
    let due = core.store.due_leases(now_ms(), BATCH).await?;
    let handled = due.len();
    for row in due {
        // Errors are recorded on the lease with a backoff; keep going with the others.
        let _ = revoke_row(core, &row).await;
    }
    Ok(handled)
}

/// The background worker: revokes due leases, sleeping until the next deadline or until
/// woken by a newly issued lease. Stops when `shutdown` fires.
pub async fn worker(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // Re-read storage at least this often, for leases written by other replicas.
    const MAX_SLEEP: Duration = Duration::from_secs(5);
    loop {
        match run_due(&core).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "lease worker pass failed"),
        }
        let sleep = match core.store.next_due().await {
            Ok(Some(at)) => {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(MAX_SLEEP)
            }
            _ => MAX_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = core.lease_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..50 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(2500) && first <= Duration::from_millis(7500));
            assert!(backoff(30) <= RETRY_CAP);
        }
        assert!(backoff(12) >= RETRY_CAP / 2);
    }
}
