//! The `rotations` table: when each scheduled rotation is next due, and its claim.

use super::{Result, Row, Statement, Store};

/// One scheduled rotation. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRow {
    /// `<mount uuid>/<kind>/<name>`.
    pub id: String,
    /// The mount's storage namespace.
    pub mount_uuid: String,
    /// `static` (a static role) or `root` (a connection's admin credential).
    pub kind: String,
    /// The role or connection name.
    pub name: String,
    /// When it is next due.
    pub next_rotation: i64,
    /// Until when a process holds it (0 when nobody does).
    pub claimed_until: i64,
}

/// Reads a row of [`COLUMNS`].
fn from_row(row: &Row) -> Result<RotationRow> {
    Ok(RotationRow {
        id: row.text(0)?,
        mount_uuid: row.text(1)?,
        kind: row.text(2)?,
        name: row.text(3)?,
        next_rotation: row.int(4)?,
        claimed_until: row.int(5)?,
    })
}

const COLUMNS: &str = "id, mount_uuid, kind, name, next_rotation, claimed_until";

impl Store {
    /// Creates or reschedules a rotation; keeps any claim.
    pub async fn upsert_rotation(&self, row: &RotationRow) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO rotations (id, mount_uuid, kind, name, next_rotation, claimed_until) \
                 VALUES ($1, $2, $3, $4, $5, 0) \
                 ON CONFLICT (id) DO UPDATE SET next_rotation = excluded.next_rotation",
            )
            .bind(&row.id)
            .bind(&row.mount_uuid)
            .bind(&row.kind)
            .bind(&row.name)
            .bind(row.next_rotation),
        )
        .await
        .map(drop)
    }

    /// Reads one rotation.
    pub async fn get_rotation(&self, id: &str) -> Result<Option<RotationRow>> {
        let sql = format!("SELECT {COLUMNS} FROM rotations WHERE id = $1");
        self.fetch_optional(Statement::new(sql).bind(id))
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// Deletes a rotation (its role or connection is gone).
    pub async fn delete_rotation(&self, id: &str) -> Result<()> {
        self.execute(Statement::new("DELETE FROM rotations WHERE id = $1").bind(id))
            .await
            .map(drop)
    }

    /// Claims one rotation until `until` unless another process holds it.
    pub async fn claim_rotation(&self, id: &str, now: i64, until: i64) -> Result<bool> {
        let n = self
            .execute(
                Statement::new(
                    "UPDATE rotations SET claimed_until = $3 WHERE id = $1 AND claimed_until < $2",
                )
                .bind(id)
                .bind(now)
                .bind(until),
            )
            .await?;
        Ok(n == 1)
    }

    /// Releases a claim and sets the next due time.
    pub async fn release_rotation(&self, id: &str, next_rotation: i64) -> Result<()> {
        self.execute(
            Statement::new(
                "UPDATE rotations SET claimed_until = 0, next_rotation = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(next_rotation),
        )
        .await
        .map(drop)
    }

    /// Claims up to `limit` due rotations until `until` (skipping rows other replicas lock).
    pub async fn claim_due_rotations(
        &self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<RotationRow>> {
        let lock = match self {
            Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Store::Sqlite(..) => "",
        };
        let sql = format!(
            "UPDATE rotations SET claimed_until = $2 WHERE id IN (SELECT id FROM rotations \
             WHERE next_rotation <= $1 AND claimed_until < $1 ORDER BY next_rotation LIMIT $3{lock}) \
             RETURNING {COLUMNS}"
        );
        self.fetch_all(Statement::new(sql).bind(now).bind(until).bind(limit))
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Releases every claim: single-process storage at start-up, where any claim is a dead
    /// process's.
    pub async fn release_rotation_claims(&self) -> Result<u64> {
        self.execute(Statement::new(
            "UPDATE rotations SET claimed_until = 0 WHERE claimed_until > 0",
        ))
        .await
    }

    /// The earliest due time of any unclaimed rotation.
    pub async fn next_rotation_due(&self) -> Result<Option<i64>> {
        self.fetch_one(Statement::new(
            "SELECT MIN(next_rotation) FROM rotations WHERE claimed_until = 0",
        ))
        .await?
        .opt_int(0)
    }
}
