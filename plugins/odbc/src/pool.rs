//! A bounded pool of ODBC connections whose every call runs on tokio's blocking threads.
//!
//! ODBC is a blocking C API, so no ODBC call ever runs on an async worker: each use of a
//! connection is one `spawn_blocking` closure that owns the connection for its duration.
//! A semaphore with `max_open_connections` permits bounds the connections in use *and* being
//! opened, so the database never sees more than that many sessions from this pool. The permit
//! travels into the blocking closure: when the caller's future is dropped half-way, the
//! closure still finishes (rolling back what it began) before the permit is released.
//!
//! Connections are reused while younger than `max_connection_lifetime` and kept idle up to
//! `max_idle_connections`. A connection whose last error was in SQLSTATE class 08, or that
//! the driver reports dead, is discarded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbwarden_plugin::details::PoolSettings;
use odbc_api::{Connection, ConnectionOptions};
use tokio::sync::Semaphore;

use crate::dialect::is_connection_lost;

/// An ODBC error reduced to what the backend needs. The message is not redacted.
#[derive(Debug, Clone)]
pub(crate) struct OdbcFailure {
    /// The SQLSTATE (empty when the error did not come from a diagnostic record).
    pub state: String,
    /// The driver's or server's native error code.
    pub native: i32,
    /// The message, without the driver manager's prefixes.
    pub message: String,
}

impl From<odbc_api::Error> for OdbcFailure {
    fn from(err: odbc_api::Error) -> Self {
        match err {
            odbc_api::Error::Diagnostics { record, .. } => OdbcFailure {
                state: record.state.as_str().to_owned(),
                native: record.native_error,
                message: tidy_message(&String::from_utf8_lossy(&record.message)),
            },
            other => OdbcFailure {
                state: String::new(),
                native: 0,
                message: other.to_string(),
            },
        }
    }
}

/// One line, without psqlODBC's trailing "Error while executing the query".
fn tidy_message(raw: &str) -> String {
    let raw = raw.trim_end_matches('\0').trim();
    let raw = raw
        .strip_suffix("Error while executing the query")
        .map(|s| s.trim_end().trim_end_matches(';'))
        .unwrap_or(raw);
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl OdbcFailure {
    /// `message (SQLSTATE s, native n)`.
    pub fn describe(&self) -> String {
        if self.state.is_empty() {
            self.message.clone()
        } else {
            format!(
                "{} (SQLSTATE {}, native error {})",
                self.message, self.state, self.native
            )
        }
    }
}

/// The result of a closure run on a pooled connection: says whether the connection broke.
pub(crate) trait Outcome {
    /// Whether the failure, if any, was the loss of the connection (SQLSTATE class 08).
    fn connection_lost(&self) -> bool;
}

impl<T> Outcome for Result<T, OdbcFailure> {
    fn connection_lost(&self) -> bool {
        matches!(self, Err(f) if is_connection_lost(&f.state))
    }
}

/// Why a connection could not be used.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// Opening a connection failed (bad credentials, unreachable server, missing driver).
    Connect(OdbcFailure),
    /// Every connection stayed busy for the whole wait.
    Timeout(Duration),
    /// The pool was closed.
    Closed,
    /// The blocking task panicked (a driver bug).
    Panicked,
}

/// An open connection and when it was opened.
struct Idle {
    conn: Connection<'static>,
    opened: Instant,
}

struct Inner {
    connection_string: String,
    connect_timeout: u32,
    settings: PoolSettings,
    idle: Mutex<Vec<Idle>>,
    closed: AtomicBool,
}

/// The pool. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
    permits: Arc<Semaphore>,
}

/// How long a call waits for a free connection.
const WAIT: Duration = Duration::from_secs(60);

impl Pool {
    /// A pool that connects lazily.
    pub fn new(connection_string: String, connect_timeout: u32, settings: PoolSettings) -> Self {
        Pool {
            permits: Arc::new(Semaphore::new(settings.max_open)),
            inner: Arc::new(Inner {
                connection_string,
                connect_timeout,
                settings,
                idle: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Opens a connection that is not part of the pool, runs `f` on it and closes it.
    pub async fn with_fresh<R, F>(&self, f: F) -> Result<R, PoolError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection<'static>) -> R + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.connect().map_err(PoolError::Connect)?;
            let result = f(&conn);
            discard(conn);
            Ok(result)
        })
        .await
        .map_err(|_| PoolError::Panicked)?
    }

    /// Runs `f` on a pooled connection, on a blocking thread.
    ///
    /// The connection is in autocommit mode when `f` starts; it is put back in autocommit mode
    /// afterwards (a connection that refuses is discarded).
    pub async fn run<R, F>(&self, f: F) -> Result<R, PoolError>
    where
        R: Outcome + Send + 'static,
        F: FnOnce(&Connection<'static>) -> R + Send + 'static,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(PoolError::Closed);
        }
        let permit = tokio::time::timeout(WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| PoolError::Timeout(WAIT))?
            .map_err(|_| PoolError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let (conn, opened) = match inner.take_idle() {
                Some(idle) => (idle.conn, idle.opened),
                None => (inner.connect().map_err(PoolError::Connect)?, Instant::now()),
            };
            let result = f(&conn);
            let lost = result.connection_lost();
            let healthy =
                !lost && conn.set_autocommit(true).is_ok() && !conn.is_dead().unwrap_or(true);
            if healthy {
                inner.put_back(Idle { conn, opened });
            } else {
                discard(conn);
            }
            Ok(result)
        })
        .await
        .map_err(|_| PoolError::Panicked)?
    }

    /// Closes idle connections and refuses new calls; calls in flight finish.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.permits.close();
        let idle: Vec<Idle> = std::mem::take(&mut *self.inner.idle.lock().expect("not poisoned"));
        if idle.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || idle.into_iter().for_each(|i| discard(i.conn)))
            .await;
    }
}

impl Inner {
    fn connect(&self) -> Result<Connection<'static>, OdbcFailure> {
        let env = odbc_api::environment()?;
        Ok(env.connect_with_connection_string(
            &self.connection_string,
            ConnectionOptions {
                login_timeout_sec: Some(self.connect_timeout),
                packet_size: None,
            },
        )?)
    }

    /// The most recently returned idle connection that is young enough; older ones are closed.
    fn take_idle(&self) -> Option<Idle> {
        loop {
            let idle = self.idle.lock().expect("not poisoned").pop()?;
            match self.settings.max_lifetime {
                Some(max) if idle.opened.elapsed() >= max => discard(idle.conn),
                _ => return Some(idle),
            }
        }
    }

    fn put_back(&self, idle: Idle) {
        let mut pool = self.idle.lock().expect("not poisoned");
        if self.closed.load(Ordering::Acquire) || pool.len() >= self.settings.max_idle {
            drop(pool);
            discard(idle.conn);
        } else {
            pool.push(idle);
        }
    }
}

/// Closes a connection without ever panicking.
///
/// `odbc_api::Connection`'s `Drop` panics when `SQLDisconnect` fails (a connection the server
/// has already dropped may do that); here a failed disconnect leaks the handle instead.
pub(crate) fn discard(conn: Connection<'static>) {
    let _ = conn.rollback();
    let mut handle = conn.into_handle();
    if handle.disconnect().is_err() {
        std::mem::forget(handle);
    }
}
