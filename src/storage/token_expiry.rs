//! The `token_expiry` table: when each expiring token ends.

use super::{Result, Store, on_database, strings};

impl Store {
    /// Records (or moves) the expiry of a token.
    pub async fn set_token_expiry(&self, id_hmac: &str, expire_time: i64) -> Result<()> {
        on_database!(self, db => sqlx::query(
            "INSERT INTO token_expiry (id_hmac, expire_time) VALUES ($1, $2) \
             ON CONFLICT (id_hmac) DO UPDATE SET expire_time = excluded.expire_time",
        )
        .bind(id_hmac)
        .bind(expire_time)
        .execute(db)
        .await
        .map(drop)?);
        Ok(())
    }

    /// Forgets a token's expiry (the token is gone).
    pub async fn delete_token_expiry(&self, id_hmac: &str) -> Result<()> {
        on_database!(self, db => sqlx::query("DELETE FROM token_expiry WHERE id_hmac = $1")
            .bind(id_hmac)
            .execute(db)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Tokens that expired at or before `now` (unix seconds), oldest first.
    pub async fn expired_tokens(&self, now: i64, limit: i64) -> Result<Vec<String>> {
        on_database!(self, db => strings(sqlx::query(
            "SELECT id_hmac FROM token_expiry WHERE expire_time <= $1 ORDER BY expire_time LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(db)
            .await?))
    }
}
