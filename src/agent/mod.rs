//! The sidecar agent (`dbwarden agent --config agent.toml`).
//!
//! It logs in ([`auth`]), fetches each configured secret and writes it to files ([`render`],
//! [`file`](mod@file)), renews the leases at about two thirds of their TTL, replaces them before their
//! maximum, runs a reload action and revokes the old lease after a grace period
//! ([`secret`], [`schedule`], [`reload`]). Its [`state`] file, kept beside the outputs, lets a
//! restarted agent (or the sidecar after an init container) reuse the token and leases
//! instead of minting duplicates. [`health`] serves `/healthz` and `/metrics`; [`client`] is
//! the small API client it shares with the CSI provider.
//!
//! Logs carry lease ids, accessors, paths and errors, never a token or a credential.

pub mod auth;
pub mod client;
pub mod config;
pub mod file;
pub mod health;
pub mod reload;
pub mod render;
pub mod schedule;
pub mod secret;
pub mod state;

use std::sync::Arc;

use tokio::sync::watch;

use self::auth::Authenticator;
use self::client::ApiClient;
use self::config::AgentConfig;
use self::health::Health;
use self::render::Output;
use self::secret::SecretTask;
use self::state::StateFile;

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable (exit code 2).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// An output could not be prepared (a template that does not compile).
    #[error(transparent)]
    Render(#[from] render::RenderError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] client::ApiError),
    /// The CA file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadCa {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The health endpoint could not listen.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `--once`: a secret could not be rendered before shutdown.
    #[error("stopped before every secret was rendered")]
    Incomplete,
}

impl AgentError {
    /// Whether the error is the operator's configuration (exit code 2) rather than a
    /// runtime failure.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            AgentError::Config(_)
                | AgentError::Render(_)
                | AgentError::Client(_)
                | AgentError::ReadCa { .. }
        )
    }
}

/// Runs the agent until SIGTERM or SIGINT (or, with `once`, until every secret is written).
pub async fn run(config: AgentConfig, once: bool) -> Result<(), AgentError> {
    let once = once || config.exit_after_auth;
    let ca = match &config.server.ca_cert {
        Some(path) => Some(std::fs::read(path).map_err(|source| AgentError::ReadCa {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let client = ApiClient::new(
        &config.server.address,
        ca.as_deref(),
        config.server.request_timeout,
    )?;
    // Templates are compiled before anything else so a typo fails at start-up.
    let mut prepared = Vec::new();
    for secret in &config.secrets {
        let outputs = secret
            .outputs
            .iter()
            .map(Output::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        prepared.push((secret, outputs));
    }
    let state = Arc::new(StateFile::load(&config.state_path()));
    let health = Arc::new(Health::new(config.secrets.iter().map(|s| s.name())));
    if let Some(address) = config.listen_address {
        let metrics = health::install_metrics();
        health::serve(address, health.clone(), metrics)
            .await
            .map_err(|source| AgentError::Listen { address, source })?;
    }
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.send_replace(true);
    });
    tracing::info!(
        server = %config.server.address,
        secrets = config.secrets.len(),
        state_file = %state.path().display(),
        once,
        "agent starting"
    );

    let authenticator = Authenticator::new(
        client.clone(),
        config.auto_auth.clone(),
        config.token_sink.clone(),
        config.lifecycle.clone(),
        state.clone(),
        health.clone(),
    );
    let mut first_shutdown = shutdown.clone();
    let Some(first) = authenticator.first_token(&mut first_shutdown).await else {
        return if once {
            Err(AgentError::Incomplete)
        } else {
            Ok(())
        };
    };
    let (token_tx, token_rx) = watch::channel(None);
    let rejected = authenticator.rejected.clone();
    let auth_task = tokio::spawn(authenticator.maintain(first, token_tx, shutdown.clone()));
    // Wait until `maintain` has published the first token.
    let mut ready = token_rx.clone();
    let _ = ready.wait_for(Option::is_some).await;

    let mut tasks = Vec::new();
    for (secret, outputs) in prepared {
        let task = SecretTask {
            name: secret.name().to_owned(),
            path: secret.path.clone(),
            outputs,
            reload: secret.reload.as_ref().map(reload::Reload::from_config),
            client: client.clone(),
            lifecycle: config.lifecycle.clone(),
            token: token_rx.clone(),
            rejected: rejected.clone(),
            state: state.clone(),
            health: health.clone(),
        };
        let shutdown = shutdown.clone();
        tasks.push(if once {
            tokio::spawn(async move { task.run_once(shutdown).await })
        } else {
            tokio::spawn(async move {
                task.run(shutdown).await;
                true
            })
        });
    }
    let mut complete = true;
    for task in tasks {
        complete &= task.await.unwrap_or(false);
    }
    auth_task.abort();
    if once {
        if !complete {
            return Err(AgentError::Incomplete);
        }
        tracing::info!("every secret written; exiting (exit_after_auth)");
    }
    Ok(())
}

/// Waits for SIGTERM (what Kubernetes sends) or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
