//! Checkpoints of SQLite's write-ahead log, off the request path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! store's only connection: it copies the log into the database file and fsyncs it while
//! every other storage write queues behind it. Under issuance load that was a stall of all
//! requests for about 35 ms every 3 s (the fsync alone), time in which the target database
//! sat idle too. Here a second connection checkpoints in PASSIVE mode, which never takes the
//! write lock, so writers go on appending to the log meanwhile. The automatic checkpoint
//! stays as a backstop at a much larger threshold, for a checkpointer that falls behind.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Executor};

/// How often the log is checkpointed.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// WAL pages after which a commit checkpoints by itself (about 400 MB with 4 KiB pages).
pub const BACKSTOP_PAGES: &str = "100000";

/// The background checkpoint task; dropping it stops the task and closes its connection.
#[derive(Debug)]
pub struct Checkpointer {
    task: tokio::task::AbortHandle,
}

impl Checkpointer {
    /// Opens a connection to the same file and checkpoints every `every`.
    pub async fn start(options: &SqliteConnectOptions, every: Duration) -> sqlx::Result<Self> {
        let mut conn = options.clone().connect().await?;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(error) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
                    // The next tick tries again; the backstop bounds the log meanwhile.
                    tracing::warn!(%error, "SQLite WAL checkpoint failed");
                }
            }
        });
        Ok(Checkpointer {
            task: task.abort_handle(),
        })
    }

    /// Stops checkpointing (the connection closes with the task).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;

    #[tokio::test]
    async fn the_log_reaches_the_database_file_without_a_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let value = vec![7u8; 2048];
        for i in 0..400 {
            store.put(&format!("k/{i}"), &value).await.unwrap();
        }
        // 800 KiB went to the log, far below the backstop: only the checkpointer can have
        // copied it into the database file.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 700 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not checkpointed within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            store.get("k/399").await.unwrap().as_deref(),
            Some(&value[..])
        );
        store.close().await;
    }
}
