//! The `leases` table: one row per issued credential, indexed by when work is next due.

use super::{Result, Row, Statement, StorageError, Store, prefix_upper_bound, strings};

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Written before the user is created (the intent); the user may or may not exist.
    Pending,
    /// The user exists and the credential was handed out.
    Active,
    /// The lease ended and revocation has started (or is being retried).
    Revoking,
}

impl LeaseState {
    /// The value stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Pending => "pending",
            LeaseState::Active => "active",
            LeaseState::Revoking => "revoking",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(LeaseState::Pending),
            "active" => Ok(LeaseState::Active),
            "revoking" => Ok(LeaseState::Revoking),
            other => Err(StorageError::Corrupt(format!(
                "unknown lease state {other:?}"
            ))),
        }
    }
}

/// One row of the `leases` table. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// `<mount>/creds/<role>/<24 base62>`.
    pub id: String,
    /// The mount path, without trailing slash.
    pub mount: String,
    /// The role the credential was issued for.
    pub role_name: String,
    /// The connection the user lives in.
    pub connection_name: String,
    /// The database username (not a secret).
    pub username: String,
    /// HMAC of the owning token, if any.
    pub owner: Option<String>,
    /// Life-cycle state.
    pub state: LeaseState,
    /// Whether renewals are allowed.
    pub renewable: bool,
    /// When the lease was issued.
    pub issue_time: i64,
    /// When the lease ends.
    pub expire_time: i64,
    /// The latest time renewals may reach (`issue_time + max_ttl`).
    pub max_expire_time: i64,
    /// Last successful renewal.
    pub last_renewal: Option<i64>,
    /// Barrier-sealed revocation snapshot (statements, connection, plugin).
    pub revocation: Vec<u8>,
    /// Failed revocation attempts so far.
    pub revoke_attempts: i64,
    /// The last revocation error, redacted.
    pub revoke_error: Option<String>,
    /// When the background worker should next act on this lease.
    pub next_attempt: i64,
    /// Until when a worker or request owns this lease (0 when nobody does).
    pub claimed_until: i64,
    /// Accessor of the owning token, if any.
    pub owner_accessor: Option<String>,
}
/// The lease columns as a literal, so statements can be built with `concat!`.
macro_rules! lease_columns {
    () => {
        "id, mount, role_name, connection_name, username, owner, state, renewable, \
         issue_time, expire_time, max_expire_time, last_renewal, revocation, revoke_attempts, \
         revoke_error, next_attempt, claimed_until, owner_accessor"
    };
}

const COLUMNS: &str = lease_columns!();

/// Reads a row of [`COLUMNS`].
fn from_row(row: &Row) -> Result<LeaseRow> {
    Ok(LeaseRow {
        id: row.text(0)?,
        mount: row.text(1)?,
        role_name: row.text(2)?,
        connection_name: row.text(3)?,
        username: row.text(4)?,
        owner: row.opt_text(5)?,
        state: LeaseState::parse(&row.text(6)?)?,
        renewable: row.int(7)? != 0,
        issue_time: row.int(8)?,
        expire_time: row.int(9)?,
        max_expire_time: row.int(10)?,
        last_renewal: row.opt_int(11)?,
        revocation: row.bytes(12)?,
        revoke_attempts: row.int(13)?,
        revoke_error: row.opt_text(14)?,
        next_attempt: row.int(15)?,
        claimed_until: row.int(16)?,
        owner_accessor: row.opt_text(17)?,
    })
}

/// Claims due leases: PostgreSQL skips rows other replicas hold locked, so two replicas
/// never claim the same lease; SQLite serialises writers, so the plain form is atomic.
const CLAIM_DUE_POSTGRES: &str = "UPDATE leases SET state = 'revoking', next_attempt = $2, claimed_until = $2 \
    WHERE id IN (SELECT id FROM leases WHERE next_attempt <= $1 ORDER BY next_attempt LIMIT $3 \
    FOR UPDATE SKIP LOCKED) RETURNING ";
const CLAIM_DUE_SQLITE: &str = "UPDATE leases SET state = 'revoking', next_attempt = $2, claimed_until = $2 \
    WHERE id IN (SELECT id FROM leases WHERE next_attempt <= $1 ORDER BY next_attempt LIMIT $3) \
    RETURNING ";

/// Inserts one lease; the placeholders follow [`COLUMNS`].
const INSERT_LEASE: &str = concat!(
    "INSERT INTO leases (",
    lease_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
);

/// The insert of one lease, its fields bound in [`COLUMNS`] order.
fn insert(lease: &LeaseRow) -> Statement {
    Statement::new(INSERT_LEASE)
        .bind(lease.id.as_str())
        .bind(lease.mount.as_str())
        .bind(lease.role_name.as_str())
        .bind(lease.connection_name.as_str())
        .bind(lease.username.as_str())
        .bind(lease.owner.as_deref())
        .bind(lease.state.as_str())
        .bind(i64::from(lease.renewable))
        .bind(lease.issue_time)
        .bind(lease.expire_time)
        .bind(lease.max_expire_time)
        .bind(lease.last_renewal)
        .bind(lease.revocation.as_slice())
        .bind(lease.revoke_attempts)
        .bind(lease.revoke_error.as_deref())
        .bind(lease.next_attempt)
        .bind(lease.claimed_until)
        .bind(lease.owner_accessor.as_deref())
}

impl Store {
    /// Inserts a new lease row (one autocommitted statement: issuance is latency-bound).
    pub async fn insert_lease(&self, lease: &LeaseRow) -> Result<()> {
        self.execute(insert(lease)).await.map(drop)
    }

    /// Inserts lease rows in one transaction (bulk loads, benchmarks).
    pub async fn insert_leases(&self, leases: &[LeaseRow]) -> Result<()> {
        self.execute_all(&leases.iter().map(insert).collect::<Vec<_>>())
            .await
    }

    /// Reads one lease.
    pub async fn get_lease(&self, id: &str) -> Result<Option<LeaseRow>> {
        let sql = format!("SELECT {COLUMNS} FROM leases WHERE id = $1");
        self.fetch_optional(Statement::new(sql).bind(id))
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// Runs an update of one lease and tells whether it matched.
    async fn update_one(&self, statement: Statement) -> Result<bool> {
        Ok(self.execute(statement).await? == 1)
    }

    /// Turns a pending lease active and releases the issuer's claim; the worker acts at `expire_time`.
    pub async fn activate_lease(&self, id: &str, expire_time: i64) -> Result<bool> {
        self.update_one(
            Statement::new(
                "UPDATE leases SET state = 'active', next_attempt = $2, claimed_until = 0 \
                 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(expire_time),
        )
        .await
    }

    /// Claims one lease for revocation until `until`, unless somebody else holds it.
    pub async fn claim_lease(&self, id: &str, now: i64, until: i64) -> Result<bool> {
        self.update_one(
            Statement::new(
                "UPDATE leases SET state = 'revoking', next_attempt = $3, claimed_until = $3 \
                 WHERE id = $1 AND claimed_until < $2",
            )
            .bind(id)
            .bind(now)
            .bind(until),
        )
        .await
    }

    /// Extends a claim this process holds (`claimed_until` still equals `held`), so time spent
    /// queued before the work starts does not eat into it. False if someone else took over.
    pub async fn renew_claim(&self, id: &str, held: i64, until: i64) -> Result<bool> {
        self.update_one(
            Statement::new(
                "UPDATE leases SET claimed_until = $3, next_attempt = $3 \
                 WHERE id = $1 AND claimed_until = $2",
            )
            .bind(id)
            .bind(held)
            .bind(until),
        )
        .await
    }

    /// Marks a lease to be revoked as soon as the worker gets to it (lazy revocation).
    pub async fn mark_lease_due(&self, id: &str, now: i64) -> Result<bool> {
        self.update_one(
            Statement::new(
                "UPDATE leases SET state = 'revoking', next_attempt = $2 \
                 WHERE id = $1 AND claimed_until < $2",
            )
            .bind(id)
            .bind(now),
        )
        .await
    }

    /// Claims up to `limit` due leases until `until` and returns them.
    pub async fn claim_due_leases(
        &self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<LeaseRow>> {
        let head = match self {
            Store::Sqlite(..) => CLAIM_DUE_SQLITE,
            Store::Postgres(_) => CLAIM_DUE_POSTGRES,
        };
        let sql = format!("{head}{COLUMNS}");
        self.fetch_all(Statement::new(sql).bind(now).bind(until).bind(limit))
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Releases every claim and makes the claimed leases due now: pending leases whose
    /// issuer died and revocations cut off half-way. Only for single-process storage at
    /// start-up, where every claim belongs to a process that is gone.
    pub async fn release_lease_claims(&self, now: i64) -> Result<u64> {
        self.execute(
            Statement::new(
                "UPDATE leases SET next_attempt = $1, claimed_until = 0 WHERE claimed_until > 0",
            )
            .bind(now),
        )
        .await
    }

    /// Records a renewal of an active, unclaimed lease.
    pub async fn renew_lease(&self, id: &str, expire_time: i64, now: i64) -> Result<bool> {
        self.update_one(
            Statement::new(
                "UPDATE leases SET expire_time = $2, next_attempt = $2, last_renewal = $3 \
                 WHERE id = $1 AND state = 'active' AND claimed_until < $3",
            )
            .bind(id)
            .bind(expire_time)
            .bind(now),
        )
        .await
    }

    /// Records a failed revocation, releases the claim, and sets when to try again.
    pub async fn record_revoke_failure(
        &self,
        id: &str,
        error: &str,
        next_attempt: i64,
    ) -> Result<()> {
        self.execute(
            Statement::new(
                "UPDATE leases SET state = 'revoking', revoke_attempts = revoke_attempts + 1, \
                 revoke_error = $2, next_attempt = $3, claimed_until = 0 WHERE id = $1",
            )
            .bind(id)
            .bind(error)
            .bind(next_attempt),
        )
        .await
        .map(drop)
    }

    /// Deletes a lease (after its user was revoked).
    pub async fn delete_lease(&self, id: &str) -> Result<()> {
        self.execute(Statement::new("DELETE FROM leases WHERE id = $1").bind(id))
            .await
            .map(drop)
    }

    /// Lists lease ids starting with `prefix`, in order.
    pub async fn list_lease_ids(&self, prefix: &str) -> Result<Vec<String>> {
        strings(
            self.fetch_all(
                Statement::new("SELECT id FROM leases WHERE id >= $1 AND id < $2 ORDER BY id")
                    .bind(prefix)
                    .bind(prefix_upper_bound(prefix)),
            )
            .await?,
        )
    }

    /// Lists the ids of the leases a token owns.
    pub async fn lease_ids_by_owner(&self, owner: &str) -> Result<Vec<String>> {
        strings(
            self.fetch_all(Statement::new("SELECT id FROM leases WHERE owner = $1").bind(owner))
                .await?,
        )
    }

    /// Distinct owners of leases (for `sys/leases/tidy`), after `after`, at most `limit`.
    pub async fn lease_owners(&self, after: &str, limit: i64) -> Result<Vec<String>> {
        strings(
            self.fetch_all(
                Statement::new(
                    "SELECT DISTINCT owner FROM leases WHERE owner IS NOT NULL AND owner > $1 \
                     ORDER BY owner LIMIT $2",
                )
                .bind(after)
                .bind(limit),
            )
            .await?,
        )
    }

    /// The earliest `next_attempt` of any lease, for the worker's sleep.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        self.fetch_one(Statement::new("SELECT MIN(next_attempt) FROM leases"))
            .await?
            .opt_int(0)
    }

    /// Number of leases in storage.
    pub async fn count_leases(&self) -> Result<i64> {
        self.fetch_one(Statement::new("SELECT COUNT(*) FROM leases"))
            .await?
            .int(0)
    }

    /// Number of leases per state.
    pub async fn count_leases_by_state(&self) -> Result<Vec<(String, i64)>> {
        self.fetch_all(Statement::new(
            "SELECT state, COUNT(*) FROM leases GROUP BY state",
        ))
        .await?
        .iter()
        .map(|row| Ok((row.text(0)?, row.int(1)?)))
        .collect()
    }

    /// Leases whose revocation failed at least `min_attempts` times, oldest expiry first.
    pub async fn failing_leases(&self, min_attempts: i64, limit: i64) -> Result<Vec<LeaseRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM leases WHERE state = 'revoking' AND revoke_attempts >= $1 \
             ORDER BY expire_time LIMIT $2"
        );
        self.fetch_all(Statement::new(sql).bind(min_attempts).bind(limit))
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Number of leases whose revocation failed at least `min_attempts` times.
    pub async fn count_failing_leases(&self, min_attempts: i64) -> Result<i64> {
        self.fetch_one(
            Statement::new(
                "SELECT COUNT(*) FROM leases WHERE state = 'revoking' AND revoke_attempts >= $1",
            )
            .bind(min_attempts),
        )
        .await?
        .int(0)
    }

    /// The oldest `next_attempt` that is already due at `now` (for the queue-lag metric).
    pub async fn oldest_due(&self, now: i64) -> Result<Option<i64>> {
        self.fetch_one(
            Statement::new("SELECT MIN(next_attempt) FROM leases WHERE next_attempt <= $1")
                .bind(now),
        )
        .await?
        .opt_int(0)
    }
}
