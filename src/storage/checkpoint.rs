//! Checkpoints of SQLite's write-ahead log, off the request path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! store's only connection: it copies the log into the database file and fsyncs it while
//! every other storage write queues behind it. Under issuance load that was a stall of all
//! requests for about 35 ms every 3 s (the fsync alone), time in which the target database
//! sat idle too. Here a second connection checkpoints in PASSIVE mode, which never takes the
//! write lock, so writers go on appending to the log meanwhile. The automatic checkpoint
//! stays as a backstop, for bulk writes that outrun the checkpointer.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// How often the log is checkpointed.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// WAL pages after which a commit checkpoints by itself (about 40 MB with 4 KiB pages;
/// issuance at a few hundred credentials per second writes a tenth of that between two
/// background checkpoints).
pub const BACKSTOP_PAGES: &str = "10000";

/// The background checkpoint task; dropping it stops the task and closes its connection.
#[derive(Debug)]
pub struct Checkpointer {
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens a connection to the same file and checkpoints every `every`.
    pub async fn start(options: &SqliteConnectOptions, every: Duration) -> sqlx::Result<Self> {
        let mut conn = options.clone().connect().await?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                if let Err(error) = catch_up(&mut conn).await {
                    // The next tick tries again; the backstop bounds the log meanwhile.
                    tracing::warn!(%error, "SQLite WAL checkpoint failed");
                }
            }
            // Closed here rather than dropped, so the store's last connection (the one that
            // checkpoints everything and removes the log) is the store's own, closed after.
            let _ = conn.close().await;
        });
        Ok(Checkpointer {
            stop,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Stops checkpointing and waits until the connection is closed.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Checkpoints until the whole log is in the database file (or `MAX_PASSES` ran).
///
/// The writer starts the log over only when every frame has been copied; under steady writes
/// one pass always leaves the frames written during it, so the log would grow until the
/// backstop made the writer checkpoint (and stall) by itself. Each further pass copies only
/// what arrived during the one before, so the passes get short and one soon finds nothing new.
async fn catch_up(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<()> {
    const MAX_PASSES: usize = 8;
    for _ in 0..MAX_PASSES {
        let (busy, log, checkpointed): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut *conn)
                .await?;
        if busy != 0 || checkpointed >= log {
            break;
        }
    }
    Ok(())
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
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
