//! The Secrets Store CSI driver provider (`dbwarden csi-provider --endpoint <socket>`).
//!
//! The driver (a node DaemonSet) dials `unix://<provider-dir>/dbwarden.sock` and calls
//! `Mount` with the SecretProviderClass parameters and the Pod's ServiceAccount token; the
//! provider logs in, fetches the credentials and returns the files, which the driver writes
//! to the Pod's tmpfs volume. [`attributes`] reads a request, [`provider`] serves it with a
//! per-Pod cache that renews rather than re-mints, and [`proto`] is the checked-in generated
//! gRPC code.

pub mod attributes;
pub mod proto;
pub mod provider;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use self::proto::v1alpha1::csi_driver_provider_server::CsiDriverProviderServer;
use self::provider::{Provider, Settings};
use crate::agent::health::{self, Health};

/// Command-line options of the provider.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// The unix socket to serve on.
    pub endpoint: PathBuf,
    /// Token audience when the class sets none.
    pub default_audience: String,
    /// Server when the class sets none.
    pub default_address: Option<String>,
    /// Where to serve `/healthz` and `/metrics`.
    pub listen_address: Option<SocketAddr>,
    /// Fraction of the time left before a lease's maximum after which it is replaced.
    pub rotate_threshold: f64,
}

/// Errors that stop the provider.
#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    /// The socket could not be created.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The health endpoint could not listen.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Serves the provider until SIGTERM or SIGINT, then removes the socket.
pub async fn run(options: ProviderOptions) -> Result<(), CsiError> {
    let bind_error = |source| CsiError::Bind {
        path: options.endpoint.clone(),
        source,
    };
    if let Some(dir) = options.endpoint.parent() {
        std::fs::create_dir_all(dir).map_err(bind_error)?;
    }
    // A socket left by a previous run would make bind fail.
    match std::fs::remove_file(&options.endpoint) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    let listener = tokio::net::UnixListener::bind(&options.endpoint).map_err(bind_error)?;
    if let Some(address) = options.listen_address {
        let health = Arc::new(Health::new([]));
        health.set_auth(Ok(()));
        health::serve(address, health, health::install_metrics())
            .await
            .map_err(|source| CsiError::Listen { address, source })?;
    }
    let provider = Provider::new(Settings {
        default_audience: options.default_audience.clone(),
        default_address: options.default_address.clone(),
        rotate_threshold: options.rotate_threshold,
    });
    tracing::info!(endpoint = %options.endpoint.display(), "CSI provider serving");
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let result = tonic::transport::Server::builder()
        .add_service(CsiDriverProviderServer::new(provider))
        .serve_with_incoming_shutdown(incoming, shutdown_signal())
        .await;
    let _ = std::fs::remove_file(&options.endpoint);
    result?;
    tracing::info!("CSI provider stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
