//! `dbwarden bench`: load against a running server, measured against the target database's
//! own rate in the same run.
//!
//! A credential engine cannot issue users faster than the database can create them: a
//! password-bearing `CREATE ROLE` costs PostgreSQL milliseconds of CPU for the SCRAM hash.
//! So the figure that matters is the engine's rate as a fraction of the database's rate for
//! the same statements at the same concurrency (the efficiency), and against one serialised
//! connection (how Vault's plugins issue). `--baseline` measures both in the same run, with
//! the users it creates dropped between phases so every phase starts from the same catalog.

pub mod direct;
pub mod drive;
pub mod lease_scale;
mod report;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;

use crate::agent::client::{ApiClient, ApiError};
use dbwarden_plugin::{UsernameMetadata, UsernameTemplate};
use direct::{Direct, DirectRole, Family};
use drive::{Limit, OpError, Sample, Summary, drive, progress_bar};

pub use report::{print_load_table, print_scale_table};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options do not make sense (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A setup call to the server failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The direct database baseline could not run.
    #[error("baseline: {0}")]
    Baseline(String),
    /// The lease-scale run failed.
    #[error("lease scale: {0}")]
    Scale(String),
}

/// What each operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// `GET <mount>/creds/<role>`; the leases are revoked after the run, untimed.
    Creds,
    /// `GET <mount>/creds/<role>` then `PUT sys/leases/revoke`, timed together.
    CredsRevoke,
    /// `PUT sys/leases/renew` of one lease per worker.
    Renew,
    /// `PUT sys/leases/lookup` of one lease per worker.
    Lookup,
    /// `GET <mount>/static-creds/<role>`.
    StaticRead,
}

/// Where and how hard to push.
pub struct LoadOptions {
    /// The workload.
    pub workload: Workload,
    /// The server's address, `http(s)://host:port`.
    pub address: String,
    /// PEM of the CA to trust for an https address.
    pub ca_pem: Option<Vec<u8>>,
    /// A token allowed to use the paths (and `sys/leases/*`).
    pub token: SecretString,
    /// The database secrets engine's mount.
    pub mount: String,
    /// The role.
    pub role: String,
    /// One run per level.
    pub concurrency: Vec<usize>,
    /// How long each run lasts.
    pub limit: Limit,
    /// `--baseline`: an admin URL of the target database.
    pub baseline_url: Option<SecretString>,
    /// How many times each level's phases run (at least 1), alternating which goes first.
    pub rounds: usize,
}

/// The runs at one concurrency level.
#[derive(Debug, Serialize)]
pub struct LevelReport {
    /// Workers.
    pub concurrency: usize,
    /// Through dbwarden.
    pub dbwarden: Summary,
    /// The role's statements straight on the database, one connection per worker.
    pub database: Option<Summary>,
    /// The same on one connection that every worker waits for.
    pub serialized: Option<Summary>,
    /// dbwarden's rate over the database's.
    pub efficiency: Option<f64>,
    /// dbwarden's rate over the serialised connection's.
    pub vs_serialized: Option<f64>,
    /// dbwarden's mean latency minus the database's, milliseconds.
    pub overhead_ms: Option<f64>,
}

/// Everything one `dbwarden bench <workload>` measured.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// The workload.
    pub workload: Workload,
    /// The mount.
    pub mount: String,
    /// The role.
    pub role: String,
    /// The target's `plugin_name` (with `--baseline`).
    pub plugin_name: Option<String>,
    /// Runs of each phase per level, merged in the figures.
    pub rounds: usize,
    /// One entry per concurrency level.
    pub levels: Vec<LevelReport>,
}

/// Runs a workload at each concurrency level (with the baselines if asked for).
pub async fn run_load(options: LoadOptions) -> Result<LoadReport, BenchError> {
    if options.concurrency.is_empty() || options.concurrency.contains(&0) {
        return Err(BenchError::Usage("--concurrency must be at least 1".into()));
    }
    if options.rounds == 0 {
        return Err(BenchError::Usage("--rounds must be at least 1".into()));
    }
    if options.baseline_url.is_some()
        && !matches!(options.workload, Workload::Creds | Workload::CredsRevoke)
    {
        return Err(BenchError::Usage(
            "--baseline compares creation and revocation statements: use it with `creds` or \
             `creds-revoke`"
                .into(),
        ));
    }
    let client = Arc::new(ApiClient::new(
        &options.address,
        options.ca_pem.as_deref(),
        Duration::from_secs(60),
    )?);
    let target = Target {
        client,
        token: options.token.clone(),
        mount: options.mount.trim_matches('/').to_owned(),
        role: options.role.clone(),
    };
    let role = match options.workload {
        Workload::StaticRead => None,
        _ => Some(target.read_role().await?),
    };
    let baseline = match (&options.baseline_url, &role) {
        (Some(url), Some(role)) => Some((url, role, target.baseline_naming(&role.db_name).await?)),
        _ => None,
    };
    let mut levels = Vec::new();
    for &concurrency in &options.concurrency {
        // `connections` = workers: the database's own rate; 1: the serialised connection.
        let baseline = &baseline;
        let role_name = target.role.as_str();
        let baseline_run = |connections: usize, label: String| async move {
            let Some((url, role, naming)) = baseline else {
                return Ok(None);
            };
            let direct = Direct::open(
                naming.family,
                secrecy::ExposeSecret::expose_secret(*url),
                connections,
                DirectRole {
                    creation: role.creation_statements.clone(),
                    revocation: role.revocation_statements.clone(),
                    expiration: Utc::now() + chrono::Duration::seconds(role.default_ttl.max(3600)),
                    names: naming.template.clone(),
                    meta: UsernameMetadata {
                        display_name: naming.display_name.clone(),
                        role_name: role_name.to_owned(),
                    },
                },
            )
            .await?;
            direct_run(
                &direct,
                options.workload,
                concurrency,
                options.limit,
                &label,
            )
            .await
            .map(Some)
        };
        let mut dbwarden = Sample::default();
        let (mut database, mut serialized) = (None, None);
        for round in 0..options.rounds {
            // Whichever phase runs first meets a calmer catalog (no dead rows from the
            // previous phase's users, no autovacuum, fewer full-page writes after a
            // checkpoint); alternating the order shares that out.
            let dbwarden_first = round % 2 == 1;
            if dbwarden_first {
                let run = target.run(options.workload, concurrency, options.limit);
                dbwarden.merge(run.await?);
            }
            let label = format!("database x{concurrency}");
            merge(&mut database, baseline_run(concurrency, label).await?);
            if !dbwarden_first {
                let run = target.run(options.workload, concurrency, options.limit);
                dbwarden.merge(run.await?);
            }
            let serialized_label = "database, serialised".to_owned();
            merge(&mut serialized, baseline_run(1, serialized_label).await?);
        }
        levels.push(LevelReport::new(
            concurrency,
            dbwarden.summary(),
            database.map(Sample::summary),
            serialized.map(Sample::summary),
        ));
    }
    Ok(LoadReport {
        workload: options.workload,
        mount: target.mount,
        role: target.role,
        plugin_name: baseline.map(|(_, _, naming)| naming.plugin_name),
        rounds: options.rounds,
        levels,
    })
}

/// Adds a baseline run to the runs of the same kind so far.
fn merge(into: &mut Option<Sample>, run: Option<Sample>) {
    if let Some(run) = run {
        into.get_or_insert_with(Sample::default).merge(run);
    }
}

impl LevelReport {
    fn new(
        concurrency: usize,
        dbwarden: Summary,
        database: Option<Summary>,
        serialized: Option<Summary>,
    ) -> LevelReport {
        let ratio = |base: &Option<Summary>| {
            base.as_ref()
                .filter(|b| b.throughput > 0.0)
                .map(|b| dbwarden.throughput / b.throughput)
        };
        LevelReport {
            concurrency,
            efficiency: ratio(&database),
            vs_serialized: ratio(&serialized),
            overhead_ms: database.as_ref().map(|d| dbwarden.mean_ms - d.mean_ms),
            dbwarden,
            database,
            serialized,
        }
    }
}

/// The parts of a dynamic role the baseline needs.
struct RoleInfo {
    db_name: String,
    creation_statements: Vec<String>,
    revocation_statements: Vec<String>,
    default_ttl: i64,
}

/// How the target connection names users, so the baseline's names have the same shape.
struct BaselineNaming {
    family: Family,
    plugin_name: String,
    /// The connection's `username_template`, or its dialect's default.
    template: UsernameTemplate,
    /// The bench token's display name, which dbwarden renders into the names it issues.
    display_name: String,
}

/// The server, token and role under test.
struct Target {
    client: Arc<ApiClient>,
    token: SecretString,
    mount: String,
    role: String,
}

impl Target {
    async fn read_role(&self) -> Result<RoleInfo, BenchError> {
        let path = format!("{}/roles/{}", self.mount, self.role);
        let data = self.client.read(&self.token, &path).await?.data.0;
        let strings = |key: &str| -> Vec<String> {
            match &data.get(key) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        Ok(RoleInfo {
            db_name: data
                .get("db_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            creation_statements: strings("creation_statements"),
            revocation_statements: strings("revocation_statements"),
            default_ttl: data.get("default_ttl").and_then(Value::as_i64).unwrap_or(0),
        })
    }

    async fn baseline_naming(&self, db_name: &str) -> Result<BaselineNaming, BenchError> {
        let path = format!("{}/config/{db_name}", self.mount);
        let data = self.client.read(&self.token, &path).await?.data.0;
        let plugin_name = data
            .get("plugin_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (family, default_template) = Family::of_plugin(&plugin_name).ok_or_else(|| {
            BenchError::Usage(format!(
                "--baseline supports the compiled-in PostgreSQL and MySQL families, not \
                 plugin_name \"{plugin_name}\""
            ))
        })?;
        let source = data
            .get("connection_details")
            .and_then(|d| d.get("username_template"))
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(default_template);
        let template = UsernameTemplate::parse(source).map_err(|e| {
            BenchError::Baseline(format!("the connection's username_template: {e}"))
        })?;
        let own = self
            .client
            .read(&self.token, "auth/token/lookup-self")
            .await?
            .data
            .0;
        Ok(BaselineNaming {
            family,
            plugin_name,
            template,
            display_name: own
                .get("display_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// One timed run through the API, then the untimed revocation of what it left.
    async fn run(
        &self,
        workload: Workload,
        concurrency: usize,
        limit: Limit,
    ) -> Result<Sample, BenchError> {
        let creds_path = format!("{}/creds/{}", self.mount, self.role);
        let held = match workload {
            Workload::Renew | Workload::Lookup => {
                let mut held = Vec::with_capacity(concurrency);
                for _ in 0..concurrency {
                    held.push(self.client.read(&self.token, &creds_path).await?.lease_id);
                }
                held
            }
            _ => Vec::new(),
        };
        let held = Arc::new(held);
        let issued = Arc::new(std::sync::Mutex::new(Vec::new()));
        let bar = progress_bar("dbwarden", limit);
        let client = self.client.clone();
        let token = self.token.clone();
        let static_path = format!("{}/static-creds/{}", self.mount, self.role);
        let summary = {
            let held = held.clone();
            let issued = issued.clone();
            drive(concurrency, limit, &bar, move |worker| {
                let (client, token, held, issued) =
                    (client.clone(), token.clone(), held.clone(), issued.clone());
                let (creds_path, static_path) = (creds_path.clone(), static_path.clone());
                async move {
                    match workload {
                        Workload::Creds => {
                            let secret =
                                client.read(&token, &creds_path).await.map_err(op_error)?;
                            issued
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(secret.lease_id);
                        }
                        Workload::CredsRevoke => {
                            let secret =
                                client.read(&token, &creds_path).await.map_err(op_error)?;
                            if let Err(e) = client.revoke_lease(&token, &secret.lease_id).await {
                                issued
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(secret.lease_id);
                                return Err(op_error(e));
                            }
                        }
                        Workload::Renew => {
                            client
                                .renew_lease(&token, &held[worker], 3600)
                                .await
                                .map_err(op_error)?;
                        }
                        Workload::Lookup => {
                            client
                                .lookup_lease(&token, &held[worker])
                                .await
                                .map_err(op_error)?
                                .ok_or_else(|| OpError {
                                    kind: "lease gone".into(),
                                    message: "the looked-up lease no longer exists".into(),
                                })?;
                        }
                        Workload::StaticRead => {
                            client.read(&token, &static_path).await.map_err(op_error)?;
                        }
                    }
                    Ok(())
                }
            })
            .await
        };
        bar.finish_and_clear();
        let mut leftover = std::mem::take(&mut *issued.lock().unwrap_or_else(|p| p.into_inner()));
        leftover.extend(held.iter().cloned());
        self.revoke_all(leftover, concurrency).await?;
        Ok(summary)
    }

    /// Revokes `leases` with `concurrency` requests in flight.
    async fn revoke_all(&self, leases: Vec<String>, concurrency: usize) -> Result<(), BenchError> {
        if leases.is_empty() {
            return Ok(());
        }
        let bar = progress_bar("revoking", Limit::Count(leases.len() as u64));
        let queue = Arc::new(std::sync::Mutex::new(leases));
        let mut tasks: tokio::task::JoinSet<Result<(), ApiError>> = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (client, token, queue, bar) = (
                self.client.clone(),
                self.token.clone(),
                queue.clone(),
                bar.clone(),
            );
            tasks.spawn(async move {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some(lease) = next else { return Ok(()) };
                    client.revoke_lease(&token, &lease).await?;
                    bar.inc(1);
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        }
        bar.finish_and_clear();
        Ok(())
    }
}

/// One timed baseline run, then the untimed drop of the users it left.
async fn direct_run(
    direct: &Arc<Direct>,
    workload: Workload,
    concurrency: usize,
    limit: Limit,
    label: &str,
) -> Result<Sample, BenchError> {
    let bar = progress_bar(label, limit);
    let d = direct.clone();
    let summary = drive(concurrency, limit, &bar, move |worker| {
        let d = d.clone();
        async move {
            let name = d.create(worker).await?;
            if workload == Workload::CredsRevoke {
                d.revoke(worker, &name).await?;
            }
            Ok(())
        }
    })
    .await;
    bar.finish_and_clear();
    direct.cleanup().await?;
    Ok(summary)
}

fn op_error(e: ApiError) -> OpError {
    OpError {
        kind: match &e {
            ApiError::Status { status, .. } => format!("HTTP {status}"),
            ApiError::Transport { .. } => "transport".into(),
            ApiError::Malformed { .. } => "malformed response".into(),
            ApiError::Setup(_) => "setup".into(),
        },
        message: e.to_string(),
    }
}
