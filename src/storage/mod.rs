//! dbwarden's own storage: SQLite (embedded, the default) or PostgreSQL (shared by replicas).
//!
//! Storage knows nothing about encryption: callers put barrier-sealed bytes in `entries` and
//! in the `revocation` column of `leases`. Every query is written once (a `Statement`) and
//! runs on both databases; the few places where they differ say so.
//!
//! | backend    | tested here             | driver                    | use                                  |
//! |------------|-------------------------|---------------------------|--------------------------------------|
//! | SQLite     | bundled 3.x             | rusqlite, on the caller's task | single server, `--dev`          |
//! | PostgreSQL | 15 (this machine)       | sqlx pool                 | several replicas sharing one database|

mod checkpoint;
mod entry_cache;
mod lease;
mod rotation;
mod statement;
mod token_expiry;

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqlSafeStr};

use checkpoint::Checkpointer;
use entry_cache::EntryCache;
pub use lease::{LeaseRow, LeaseState};
pub use rotation::RotationRow;
use statement::{Row, Statement};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database reported an error.
    #[error("storage error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite file reported an error.
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store was closed (the server is shutting down).
    #[error("storage is closed")]
    Closed,
    /// Applying the schema failed.
    #[error("storage migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row does not have the expected shape.
    #[error("corrupt storage row: {0}")]
    Corrupt(String),
}

/// Result alias for storage calls.
pub type Result<T> = std::result::Result<T, StorageError>;

/// A handle to dbwarden's storage database.
#[derive(Clone, Debug)]
pub enum Store {
    /// Embedded SQLite file, owned by this process.
    Sqlite(Arc<SqliteStore>),
    /// Shared PostgreSQL database.
    Postgres(PgPool),
}

/// The embedded SQLite store: its one connection, the cache of its entries (only this
/// process writes the file) and the task that checkpoints its log.
#[derive(Debug)]
pub struct SqliteStore {
    /// `None` once the store is closed.
    connection: tokio::sync::Mutex<Option<rusqlite::Connection>>,
    cache: EntryCache,
    checkpointer: Checkpointer,
}

impl SqliteStore {
    /// Waits for the connection (statements queue here, one at a time).
    async fn connection(&self) -> Result<tokio::sync::MappedMutexGuard<'_, rusqlite::Connection>> {
        tokio::sync::MutexGuard::try_map(self.connection.lock().await, Option::as_mut)
            .map_err(|_| StorageError::Closed)
    }
}

/// The schema, one list per database; a new migration is one more line in each.
type Migrations = [(i64, &'static str, &'static str)];

const SQLITE_MIGRATIONS: &Migrations = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "claims",
        include_str!("../../migrations/sqlite/0002_claims.sql"),
    ),
    (
        3,
        "rotations",
        include_str!("../../migrations/sqlite/0003_rotations.sql"),
    ),
    (
        4,
        "claimed index",
        include_str!("../../migrations/sqlite/0004_claimed_index.sql"),
    ),
];

const POSTGRES_MIGRATIONS: &Migrations = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "claims",
        include_str!("../../migrations/postgres/0002_claims.sql"),
    ),
    (
        3,
        "rotations",
        include_str!("../../migrations/postgres/0003_rotations.sql"),
    ),
    (
        4,
        "claimed index",
        include_str!("../../migrations/postgres/0004_claimed_index.sql"),
    ),
];

/// sqlx's migrator over `migrations` (its `_sqlx_migrations` table records what ran).
fn migrator(migrations: &Migrations) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

impl Store {
    /// Opens (creating if needed) a SQLite file and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        // WAL with synchronous=NORMAL never loses a committed transaction when the process
        // is killed; only an operating-system crash can lose the last commits.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // The schema through sqlx's migrator, as before, so its bookkeeping table stays the
        // one existing files have; then the store's own connection.
        let mut migrating = options.clone().connect().await?;
        migrator(SQLITE_MIGRATIONS).run(&mut migrating).await?;
        migrating.close().await?;
        // One connection: SQLite has one writer at a time anyway, and with several
        // connections concurrent writers meet SQLITE_BUSY, whose handler sleeps for
        // milliseconds (measured: 4 sleeps per issued credential at 8 concurrent requests,
        // most of the engine's overhead). Queued on a mutex instead, a write waits only for
        // the one before it, and the single page cache is never invalidated by another
        // connection's commits. No store method holds the connection across another call.
        let connection = rusqlite::Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints run in the background (see `checkpoint`); this is the backstop.
        connection.pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES)?;
        connection.set_prepared_statement_cache_capacity(64);
        let checkpointer = Checkpointer::start(&options, checkpoint::INTERVAL).await?;
        Ok(Store::Sqlite(Arc::new(SqliteStore {
            connection: tokio::sync::Mutex::new(Some(connection)),
            cache: EntryCache::default(),
            checkpointer,
        })))
    }

    /// Connects to PostgreSQL and applies migrations.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        migrator(POSTGRES_MIGRATIONS).run(&pool).await?;
        Ok(Store::Postgres(pool))
    }

    /// Closes every connection (for SQLite, the last close checkpoints and removes the WAL).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(sqlite) => {
                sqlite.checkpointer.stop().await;
                let connection = sqlite.connection.lock().await.take();
                if let Some(connection) = connection
                    && let Err((_, error)) = connection.close()
                {
                    tracing::warn!(%error, "closing SQLite storage failed");
                }
            }
            Store::Postgres(pool) => pool.close().await,
        }
    }

    // SQLite statements run on the calling task, holding the store's mutex: see
    // `statement` for why.

    /// Runs a statement and returns how many rows it changed.
    pub(crate) async fn execute(&self, statement: Statement) -> Result<u64> {
        match self {
            Store::Sqlite(sqlite) => {
                statement::sqlite_execute(&*sqlite.connection().await?, &statement)
            }
            Store::Postgres(pool) => statement::postgres_execute(pool, &statement).await,
        }
    }

    /// Runs a statement and returns its rows.
    pub(crate) async fn fetch_all(&self, statement: Statement) -> Result<Vec<Row>> {
        match self {
            Store::Sqlite(sqlite) => {
                statement::sqlite_fetch(&*sqlite.connection().await?, &statement)
            }
            Store::Postgres(pool) => statement::postgres_fetch(pool, &statement).await,
        }
    }

    /// Runs a statement and returns its first row, if any.
    pub(crate) async fn fetch_optional(&self, statement: Statement) -> Result<Option<Row>> {
        Ok(self.fetch_all(statement).await?.into_iter().next())
    }

    /// Runs a statement that always returns a row (an aggregate) and returns it.
    pub(crate) async fn fetch_one(&self, statement: Statement) -> Result<Row> {
        self.fetch_optional(statement)
            .await?
            .ok_or_else(|| StorageError::Corrupt("an aggregate returned no row".into()))
    }

    /// Runs statements in one transaction.
    pub(crate) async fn execute_all(&self, statements: &[Statement]) -> Result<()> {
        match self {
            Store::Sqlite(sqlite) => {
                let mut connection = sqlite.connection().await?;
                let transaction = connection.transaction()?;
                for statement in statements {
                    statement::sqlite_execute(&transaction, statement)?;
                }
                transaction.commit()?;
                Ok(())
            }
            Store::Postgres(pool) => statement::postgres_execute_all(pool, statements).await,
        }
    }

    /// Reads one entry.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let version = match self.cache().map(|c| c.get(key)) {
            Some(Ok(hit)) => return Ok(hit),
            Some(Err(version)) => Some(version),
            None => None,
        };
        let value = self
            .fetch_optional(Statement::new("SELECT value FROM entries WHERE key = $1").bind(key))
            .await?
            .map(|row| row.bytes(0))
            .transpose()?;
        if let (Some(cache), Some(version)) = (self.cache(), version) {
            cache.fill(version, key, value.clone());
        }
        Ok(value)
    }

    /// The entry cache, for a store only this process writes.
    fn cache(&self) -> Option<&EntryCache> {
        match self {
            Store::Sqlite(sqlite) => Some(&sqlite.cache),
            Store::Postgres(_) => None,
        }
    }

    /// Tells the cache about a write that reached the database.
    fn wrote(&self, key: &str, value: Option<&[u8]>) {
        if let Some(cache) = self.cache() {
            cache.wrote(key, value.map(<[u8]>::to_vec));
        }
    }

    /// Writes one entry, replacing any previous value.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO entries (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value),
        )
        .await?;
        self.wrote(key, Some(value));
        Ok(())
    }

    /// Writes one entry only if the key is absent; returns whether it was written.
    pub async fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<bool> {
        let done = self
            .execute(
                Statement::new(
                    "INSERT INTO entries (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(value),
            )
            .await?;
        // Written: the new value; not written: whatever is cached may be a stale absence.
        self.wrote(key, (done == 1).then_some(value));
        Ok(done == 1)
    }

    /// Deletes one entry; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.execute(Statement::new("DELETE FROM entries WHERE key = $1").bind(key))
            .await?;
        self.wrote(key, None);
        Ok(())
    }

    /// Lists the full keys that start with `prefix`, in order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // Range scan instead of LIKE, so `%` and `_` in names need no escaping and the
        // primary key index is used on both databases.
        let upper = prefix_upper_bound(prefix);
        strings(
            self.fetch_all(
                Statement::new("SELECT key FROM entries WHERE key >= $1 AND key < $2 ORDER BY key")
                    .bind(prefix)
                    .bind(upper),
            )
            .await?,
        )
    }
}

/// The first column of every row, as strings.
fn strings(rows: Vec<Row>) -> Result<Vec<String>> {
    rows.iter().map(|row| row.text(0)).collect()
}

/// The smallest string greater than every string that starts with `prefix`.
fn prefix_upper_bound(prefix: &str) -> String {
    // Keys are ASCII-safe paths; U+10FFFF sorts after every character a key can hold.
    format!("{prefix}\u{10FFFF}")
}

/// Lists the next path segment of each key below `prefix` (sub-folders end with `/`), as
/// Vault's LIST does, deduplicated and in order.
pub fn next_segments(prefix: &str, keys: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let segment = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if !segment.is_empty() && out.last().map(String::as_str) != Some(segment) {
            out.push(segment.to_owned());
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_segments_lists_one_level() {
        let keys: Vec<String> = ["a/b", "a/c/d", "a/c/e", "a/f", "b/x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(next_segments("a/", &keys), vec!["b", "c/", "f"]);
    }

    #[tokio::test]
    async fn sqlite_entries_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        store.put("config/a%", b"1").await.unwrap();
        store.put("config/b", b"2").await.unwrap();
        store.put("configx", b"3").await.unwrap();
        assert_eq!(
            store.get("config/b").await.unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(
            store.list("config/").await.unwrap(),
            vec!["config/a%", "config/b"]
        );
        assert!(!store.put_if_absent("config/b", b"9").await.unwrap());
        store.delete("config/b").await.unwrap();
        assert_eq!(store.get("config/b").await.unwrap(), None);
        // Reopening applies migrations idempotently.
        drop(store);
        let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        assert_eq!(
            store.get("configx").await.unwrap().as_deref(),
            Some(&b"3"[..])
        );
    }
}
