//! Lease scale: how a server behaves with N leases in storage.
//!
//! Storage is filled with N leases that are not due, then a fresh server process is started
//! on it and measured: start-up to ready, resident memory at ready and after lookups, and the
//! lookup latency. dbwarden keeps no per-lease state in memory (no timer per lease, no
//! restore phase), so none of these should grow with N; the run shows whether they do.
//!
//! With a target database, the run then measures expiry throughput: it issues real users
//! through the API, stops the server, makes all of those leases due at once, starts the
//! server again and times until every lease is gone and every user dropped, the case that
//! leaves Vault unresponsive after an outage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;

use super::BenchError;
use super::drive::{Limit, drive, progress_bar};
use crate::agent::client::ApiClient;
use crate::storage::{LeaseRow, LeaseState, Store};

/// Leases inserted per storage transaction while filling.
const CHUNK: usize = 20_000;
/// Lease lookups timed per run.
const LOOKUPS: usize = 500;

/// What to measure.
pub struct ScaleOptions {
    /// The `dbwarden` binary to start as the server.
    pub server_binary: PathBuf,
    /// Lease counts, one run each.
    pub sizes: Vec<usize>,
    /// A PostgreSQL admin URL for the expiry phase (none: skip it).
    pub database_url: Option<SecretString>,
    /// How many real users, on top of the N leases, fall due together (0: skip).
    pub expire: usize,
    /// Show progress on stderr.
    pub progress: bool,
}

/// The figures of one run.
#[derive(Debug, Serialize)]
pub struct ScaleFigures {
    /// Leases in storage.
    pub leases: usize,
    /// Time to write them, seconds.
    pub fill_s: f64,
    /// Process start to the first healthy answer, milliseconds.
    pub ready_ms: f64,
    /// Resident memory at ready, MiB.
    pub rss_ready_mib: f64,
    /// Resident memory after the lookups, MiB.
    pub rss_idle_mib: f64,
    /// Median lease lookup, milliseconds.
    pub lookup_p50_ms: f64,
    /// 99th percentile lease lookup, milliseconds.
    pub lookup_p99_ms: f64,
    /// The expiry phase, when a database was given.
    pub expiry: Option<ExpiryFigures>,
}

/// Leases that all fell due at once, revoked against a real database.
#[derive(Debug, Serialize)]
pub struct ExpiryFigures {
    /// Due leases (each with a real user).
    pub leases: usize,
    /// Process start until every one was revoked, seconds.
    pub drained_s: f64,
    /// Revocations per second over that time.
    pub throughput: f64,
    /// Process start to ready while all were due, milliseconds.
    pub ready_ms: f64,
    /// Users of those leases still in the database afterwards (must be 0).
    pub users_left: usize,
}

/// Runs every size in turn.
pub async fn run(options: &ScaleOptions) -> Result<Vec<ScaleFigures>, BenchError> {
    let mut out = Vec::new();
    for &n in &options.sizes {
        if n == 0 {
            return Err(BenchError::Usage(
                "--leases sizes must be at least 1".into(),
            ));
        }
        if options.progress {
            eprintln!("lease scale: {n} leases");
        }
        out.push(measure(options, n).await?);
    }
    Ok(out)
}

fn scale_error(what: &str) -> impl Fn(String) -> BenchError + '_ {
    move |e| BenchError::Scale(format!("{what}: {e}"))
}

/// A throwaway server installation: config, seal key, SQLite storage and its root token.
struct Installation {
    dir: tempfile::TempDir,
    config: PathBuf,
    address: String,
    token: SecretString,
    binary: PathBuf,
}

impl Installation {
    fn create(binary: &Path) -> Result<Installation, BenchError> {
        let dir =
            tempfile::tempdir().map_err(|e| scale_error("temporary directory")(e.to_string()))?;
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| scale_error("free port")(e.to_string()))?;
        let config = dir.path().join("bench.toml");
        std::fs::write(
            &config,
            format!(
                "listen_address = \"{listen}\"\n[storage]\nbackend = \"sqlite\"\npath = \"{}\"\n[seal]\ntype = \"keyfile\"\npath = \"{}\"\n",
                dir.path().join("db.sqlite").display(),
                dir.path().join("seal.key").display()
            ),
        )
        .map_err(|e| scale_error("write config")(e.to_string()))?;
        let init = Command::new(binary)
            .args(["operator", "init", "--format", "json", "--config"])
            .arg(&config)
            .output()
            .map_err(|e| scale_error("operator init")(e.to_string()))?;
        if !init.status.success() {
            return Err(BenchError::Scale(format!(
                "operator init: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            )));
        }
        let token = serde_json::from_slice::<serde_json::Value>(&init.stdout)
            .ok()
            .and_then(|v| v["root_token"].as_str().map(str::to_owned))
            .ok_or_else(|| BenchError::Scale("operator init printed no root token".into()))?;
        Ok(Installation {
            dir,
            config,
            address: format!("http://{listen}"),
            token: SecretString::from(token),
            binary: binary.to_owned(),
        })
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("db.sqlite")
    }

    /// Starts the server and waits until it answers; returns it and the time that took.
    async fn start(&self) -> Result<(ServerProcess, Duration), BenchError> {
        let started = Instant::now();
        let child = Command::new(&self.binary)
            .args(["server", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| scale_error("start server")(e.to_string()))?;
        let server = ServerProcess(child);
        let http = reqwest::Client::new();
        loop {
            let healthy = http
                .get(format!("{}/v1/sys/health", self.address))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return Ok((server, started.elapsed()));
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err(BenchError::Scale(
                    "the server did not become ready in 5 minutes".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A server child process, stopped with SIGTERM when dropped.
struct ServerProcess(Child);

impl ServerProcess {
    fn rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<f64>().ok())
                })
            })
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.0.wait();
    }
}

/// A lease that is not due for a year; its revocation record is never opened.
fn idle_lease(i: usize, now: i64) -> LeaseRow {
    let year = 365 * 24 * 3600 * 1000;
    LeaseRow {
        id: format!("database/creds/bench/{i:024}"),
        mount: "database".into(),
        role_name: "bench".into(),
        connection_name: "pg".into(),
        username: format!("v-bench-{i}"),
        owner: Some(format!("owner-{}", i % 1000)),
        state: LeaseState::Active,
        renewable: true,
        issue_time: now,
        expire_time: now + year,
        max_expire_time: now + year,
        last_renewal: None,
        revocation: vec![0u8; 96],
        revoke_attempts: 0,
        revoke_error: None,
        next_attempt: now + year,
        claimed_until: 0,
        owner_accessor: None,
    }
}

async fn open_store(install: &Installation) -> Result<Store, BenchError> {
    Store::open_sqlite(&install.storage())
        .await
        .map_err(|e| scale_error("open storage")(e.to_string()))
}

async fn measure(options: &ScaleOptions, leases: usize) -> Result<ScaleFigures, BenchError> {
    let install = Installation::create(&options.server_binary)?;
    let store = open_store(&install).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let fill_started = Instant::now();
    let bar = progress_bar("filling storage", Limit::Count(leases as u64));
    if !options.progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    for start in (0..leases).step_by(CHUNK) {
        let rows: Vec<LeaseRow> = (start..(start + CHUNK).min(leases))
            .map(|i| idle_lease(i, now))
            .collect();
        store
            .insert_leases(&rows)
            .await
            .map_err(|e| scale_error("fill storage")(e.to_string()))?;
        bar.inc(rows.len() as u64);
    }
    // Closed, so the server starts on a checkpointed file as it would after a clean stop.
    store.close().await;
    bar.finish_and_clear();
    let fill = fill_started.elapsed();

    let (server, ready) = install.start().await?;
    let rss_ready = server.rss_mib();
    let client = ApiClient::new(&install.address, None, Duration::from_secs(30))?;
    let mut latencies = Vec::with_capacity(LOOKUPS);
    for i in 0..LOOKUPS {
        let id = format!("database/creds/bench/{:024}", (i * 7919) % leases);
        let t = Instant::now();
        if client.lookup_lease(&install.token, &id).await?.is_none() {
            return Err(BenchError::Scale(format!("lease {id} not found")));
        }
        latencies.push(t.elapsed());
    }
    latencies.sort_unstable();
    let rss_idle = server.rss_mib();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let expiry = match &options.database_url {
        Some(url) if options.expire > 0 => {
            Some(measure_expiry(&install, server, url, options.expire, options.progress).await?)
        }
        _ => None,
    };
    Ok(ScaleFigures {
        leases,
        fill_s: fill.as_secs_f64(),
        ready_ms: ms(ready),
        rss_ready_mib: rss_ready,
        rss_idle_mib: rss_idle,
        lookup_p50_ms: ms(latencies[latencies.len() / 2]),
        lookup_p99_ms: ms(latencies[latencies.len() * 99 / 100]),
        expiry,
    })
}

/// The ids of the leases left under `prefix`, through the API (`LIST`; 404 when none).
async fn leases_left(
    client: &ApiClient,
    token: &SecretString,
    prefix: &str,
) -> Result<usize, BenchError> {
    match client
        .read(token, &format!("sys/leases/lookup/{prefix}?list=true"))
        .await
    {
        Ok(secret) => Ok(secret
            .data
            .0
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len)),
        Err(e) if e.status() == Some(404) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Issues `count` real users on top of the idle leases, makes their leases due together
/// while the server is down, and times the restarted server draining them.
async fn measure_expiry(
    install: &Installation,
    server: ServerProcess,
    database_url: &SecretString,
    count: usize,
    progress: bool,
) -> Result<ExpiryFigures, BenchError> {
    let client = Arc::new(ApiClient::new(
        &install.address,
        None,
        Duration::from_secs(60),
    )?);
    let token = &install.token;
    let role = format!("bx{}", hex::encode(rand::random::<[u8; 3]>()));
    client
        .write(token, "sys/mounts/database", json!({"type": "database"}))
        .await?;
    client
        .write(
            token,
            "database/config/pg",
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": database_url.expose_secret(),
                "allowed_roles": "*",
                "max_open_connections": 8,
                "verify_connection": true,
            }),
        )
        .await?;
    // No password: the expiry phase measures revocation, and SCRAM hashing at creation
    // would only make the set-up slower.
    client
        .write(
            token,
            &format!("database/roles/{role}"),
            json!({
                "db_name": "pg",
                "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN;",
                "default_ttl": "1h",
            }),
        )
        .await?;
    let bar = progress_bar("issuing users", Limit::Count(count as u64));
    if !progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let path = format!("database/creds/{role}");
    let issuer = (client.clone(), token.clone());
    let issued = drive(16, Limit::Count(count as u64), &bar, move |_| {
        let (client, token, path) = (issuer.0.clone(), issuer.1.clone(), path.clone());
        async move {
            client
                .read(&token, &path)
                .await
                .map(drop)
                .map_err(super::op_error)
        }
    })
    .await
    .summary();
    bar.finish_and_clear();
    if issued.errors > 0 {
        return Err(BenchError::Scale(format!(
            "{} of {count} credentials failed: {:?}",
            issued.errors, issued.errors_by_kind
        )));
    }
    drop(server);

    let prefix = format!("database/creds/{role}/");
    let store = open_store(install).await?;
    let ids = store
        .list_lease_ids(&prefix)
        .await
        .map_err(|e| scale_error("list leases")(e.to_string()))?;
    let now = chrono::Utc::now().timestamp_millis();
    for id in &ids {
        store
            .mark_lease_due(id, now)
            .await
            .map_err(|e| scale_error("make leases due")(e.to_string()))?;
    }
    store.close().await;
    let (server, ready) = install.start().await?;
    let started = Instant::now() - ready;
    let bar = progress_bar("expiring", Limit::Count(ids.len() as u64));
    if !progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    loop {
        let left = leases_left(&client, token, &prefix).await?;
        bar.set_position((ids.len() - left.min(ids.len())) as u64);
        if left == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(BenchError::Scale(format!(
                "{left} leases still due after an hour"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed();
    bar.finish_and_clear();
    drop(server);
    let users_left = users_with_prefix(database_url, &format!("v-root-{role}-")).await?;
    Ok(ExpiryFigures {
        leases: ids.len(),
        drained_s: drained.as_secs_f64(),
        throughput: ids.len() as f64 / drained.as_secs_f64(),
        ready_ms: ready.as_secs_f64() * 1000.0,
        users_left,
    })
}

async fn users_with_prefix(url: &SecretString, prefix: &str) -> Result<usize, BenchError> {
    let client = dbwarden_postgres::connect_direct(url.expose_secret())
        .await
        .map_err(|e| scale_error("connect to the database")(e.to_string()))?;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await
        .map_err(|e| scale_error("count users")(e.to_string()))?;
    Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}
