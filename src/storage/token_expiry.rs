//! The `token_expiry` table: when each expiring token ends.

use super::{Result, Statement, Store, strings};

impl Store {
    /// Records (or moves) the expiry of a token.
    pub async fn set_token_expiry(&self, id_hmac: &str, expire_time: i64) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO token_expiry (id_hmac, expire_time) VALUES ($1, $2) \
                 ON CONFLICT (id_hmac) DO UPDATE SET expire_time = excluded.expire_time",
            )
            .bind(id_hmac)
            .bind(expire_time),
        )
        .await
        .map(drop)
    }

    /// Forgets a token's expiry (the token is gone).
    pub async fn delete_token_expiry(&self, id_hmac: &str) -> Result<()> {
        self.execute(Statement::new("DELETE FROM token_expiry WHERE id_hmac = $1").bind(id_hmac))
            .await
            .map(drop)
    }

    /// Tokens that expired at or before `now` (unix seconds), oldest first.
    pub async fn expired_tokens(&self, now: i64, limit: i64) -> Result<Vec<String>> {
        strings(
            self.fetch_all(
                Statement::new(
                    "SELECT id_hmac FROM token_expiry WHERE expire_time <= $1 \
                     ORDER BY expire_time LIMIT $2",
                )
                .bind(now)
                .bind(limit),
            )
            .await?,
        )
    }
}
