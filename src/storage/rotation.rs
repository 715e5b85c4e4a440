//! The `rotations` table: when each scheduled rotation is next due, and its claim.

use sqlx::Row;

use super::{Result, Store, on_database};

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

fn from_row<R>(row: &R) -> Result<RotationRow>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RotationRow {
        id: row.try_get("id")?,
        mount_uuid: row.try_get("mount_uuid")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        next_rotation: row.try_get("next_rotation")?,
        claimed_until: row.try_get("claimed_until")?,
    })
}

const COLUMNS: &str = "id, mount_uuid, kind, name, next_rotation, claimed_until";

impl Store {
    /// Creates or reschedules a rotation; keeps any claim.
    pub async fn upsert_rotation(&self, row: &RotationRow) -> Result<()> {
        on_database!(self, db => sqlx::query(
            "INSERT INTO rotations (id, mount_uuid, kind, name, next_rotation, claimed_until) \
             VALUES ($1, $2, $3, $4, $5, 0) \
             ON CONFLICT (id) DO UPDATE SET next_rotation = excluded.next_rotation",
        )
        .bind(&row.id)
        .bind(&row.mount_uuid)
        .bind(&row.kind)
        .bind(&row.name)
        .bind(row.next_rotation)
        .execute(db)
        .await
        .map(drop)?);
        Ok(())
    }

    /// Reads one rotation.
    pub async fn get_rotation(&self, id: &str) -> Result<Option<RotationRow>> {
        let sql = format!("SELECT {COLUMNS} FROM rotations WHERE id = $1");
        on_database!(self, db => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(db)
            .await?
            .as_ref()
            .map(from_row)
            .transpose())
    }

    /// Deletes a rotation (its role or connection is gone).
    pub async fn delete_rotation(&self, id: &str) -> Result<()> {
        on_database!(self, db => sqlx::query("DELETE FROM rotations WHERE id = $1")
            .bind(id)
            .execute(db)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Claims one rotation until `until` unless another process holds it.
    pub async fn claim_rotation(&self, id: &str, now: i64, until: i64) -> Result<bool> {
        let n = on_database!(self, db => sqlx::query(
            "UPDATE rotations SET claimed_until = $3 WHERE id = $1 AND claimed_until < $2",
        )
        .bind(id)
        .bind(now)
        .bind(until)
        .execute(db)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Releases a claim and sets the next due time.
    pub async fn release_rotation(&self, id: &str, next_rotation: i64) -> Result<()> {
        on_database!(self, db => sqlx::query(
            "UPDATE rotations SET claimed_until = 0, next_rotation = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(next_rotation)
        .execute(db)
        .await
        .map(drop)?);
        Ok(())
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
        on_database!(self, db => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(until)
            .bind(limit)
            .fetch_all(db)
            .await?
            .iter()
            .map(from_row)
            .collect())
    }

    /// Releases every claim: single-process storage at start-up, where any claim is a dead
    /// process's.
    pub async fn release_rotation_claims(&self) -> Result<u64> {
        Ok(
            on_database!(self, db => sqlx::query("UPDATE rotations SET claimed_until = 0 WHERE claimed_until > 0")
            .execute(db)
            .await?
            .rows_affected()),
        )
    }

    /// The earliest due time of any unclaimed rotation.
    pub async fn next_rotation_due(&self) -> Result<Option<i64>> {
        Ok(
            on_database!(self, db => sqlx::query("SELECT MIN(next_rotation) FROM rotations WHERE claimed_until = 0")
            .fetch_one(db)
            .await?
            .try_get::<Option<i64>, _>(0)?),
        )
    }
}
