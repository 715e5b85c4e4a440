//! Running the server: open storage, unseal, recover, start the lease worker, serve HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ServerConfig, TlsConfig};
use crate::core::Core;
use crate::crypto::Seal;
use crate::engine::error::EngineError;
use crate::storage::Store;

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Storage could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The core could not be opened or initialised.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The listener failed.
    #[error("listener on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Options of `server --dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Listen address.
    pub listen: SocketAddr,
    /// A fixed root token, if wanted.
    pub root_token_id: Option<String>,
    /// The directory external plugins are registered from, if any.
    pub plugin_directory: Option<PathBuf>,
}

/// Runs a dev server: SQLite in a temporary directory, an in-memory seal key, the database
/// engine mounted at `database/`. Everything is gone when it stops.
pub async fn run_dev(options: DevOptions) -> Result<(), ServerError> {
    let dir = tempfile_dir()?;
    crate::engine::catalog::set_plugin_directory(options.plugin_directory.clone());
    let store = Store::open_sqlite(&dir.join("dbwarden.db")).await?;
    let (mut core, root_token) =
        Core::initialize(store, &Seal::Ephemeral, options.root_token_id).await?;
    core.metrics = install_metrics();
    crate::engine::mounts::enable(
        &core,
        "database",
        "database",
        "database engine (dev)",
        Default::default(),
    )
    .await?;
    let listener = bind(options.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: options.listen,
            source,
        })?;
    // The one place a secret is printed on purpose: dev mode's root token, once. Write
    // errors (a closed pipe) must not stop the server, hence no println!.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "dbwarden dev server listening on http://{addr}");
        let _ = writeln!(out, "Root Token: {}", root_token.as_str());
        let _ = writeln!(
            out,
            "Storage lives in a temporary directory and is lost on exit. Do not use dev mode in production."
        );
        let _ = out.flush();
    }
    drop(root_token);
    let result = serve(Arc::new(core), listener, None).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempfile_dir() -> Result<PathBuf, ServerError> {
    let dir = std::env::temp_dir().join(format!("dbwarden-dev-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| ServerError::Tls(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Runs a server from a configuration file.
pub async fn run(config: ServerConfig) -> Result<(), ServerError> {
    let store = config.storage.open().await?;
    let mut core = Core::open(store, &config.seal()).await?;
    // External plugins must be resolvable before anything below reaches a backend.
    crate::engine::catalog::set_plugin_directory(config.plugin_directory.clone());
    let plugins = crate::engine::catalog::load(&core).await?;
    if plugins > 0 {
        tracing::info!(count = plugins, "loaded the external plugin catalog");
    }
    core.leases = config.leases.clone();
    core.rotation = config.rotation.clone();
    core.metrics = install_metrics();
    if matches!(core.store, Store::Sqlite(..)) {
        // One process owns a SQLite file, so every pending lease found now was left by a
        // process that died mid-issuance: revoke those users at once.
        let released = core
            .store
            .release_lease_claims(chrono::Utc::now().timestamp_millis())
            .await?;
        if released > 0 {
            tracing::warn!(
                count = released,
                "found leases claimed by a previous process (pending issuance or cut-off revocation); revoking their users now"
            );
        }
        core.store.release_rotation_claims().await?;
        let interrupted = crate::engine::rotation::recover(&core).await?;
        if interrupted > 0 {
            tracing::warn!(
                count = interrupted,
                "found interrupted static rotations; finishing them"
            );
        }
    }
    let listener = bind(config.listen_address).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen_address,
            source,
        })?;
    let scheme = if config.listener.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(%addr, "dbwarden listening on {scheme}://{addr}");
    serve(Arc::new(core), listener, config.listener.tls.as_ref()).await
}

/// Installs the process-wide Prometheus recorder, once.
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    const SECONDS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(SECONDS)
        .map_err(|e| tracing::warn!(error = %e, "metrics buckets rejected"))
        .ok()?;
    match builder.install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

async fn serve(
    core: Arc<Core>,
    listener: tokio::net::TcpListener,
    tls: Option<&TlsConfig>,
) -> Result<(), ServerError> {
    match crate::engine::database::recover_root_rotations(&core).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "finished interrupted root rotations"),
        Err(e) => {
            tracing::error!(error = %e, "recovering root rotations failed; will retry at next start")
        }
    }
    crate::audit::Broker::load(&core).await?;
    // SIGHUP reopens audit files, for log rotation.
    let hup_core = core.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reopening audit files");
            hup_core.audit.reopen();
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(crate::engine::lease::worker(core.clone(), stop_rx.clone()));
    let rotator = tokio::spawn(crate::engine::rotation::worker(core.clone(), stop_rx));
    let store = core.store.clone();
    let app = crate::http::router(core).into_make_service_with_connect_info::<SocketAddr>();
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    let result = match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|source| ServerError::Listen { addr, source }),
        Some(tls) => {
            let rustls =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_file, &tls.key_file)
                    .await
                    .map_err(|e| {
                        ServerError::Tls(format!(
                            "{} / {}: {e}",
                            tls.cert_file.display(),
                            tls.key_file.display()
                        ))
                    })?;
            let std_listener = listener
                .into_std()
                .map_err(|source| ServerError::Listen { addr, source })?;
            let handle = axum_server::Handle::new();
            let shutdown = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(std_listener, rustls)
                .map_err(|source| ServerError::Listen { addr, source })?
                .handle(handle)
                .serve(app)
                .await
                .map_err(|source| ServerError::Listen { addr, source })
        }
    };
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = rotator.await;
    // A clean close leaves SQLite with its log checkpointed and removed, so the next start
    // has nothing to recover.
    store.close().await;
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on unix");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
