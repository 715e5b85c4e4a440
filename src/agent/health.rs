//! `/healthz` and `/metrics`: what the kubelet's probes and Prometheus see.
//!
//! Health is "logged in, and every secret rendered and not expired". Details (names,
//! expiry times, the last error) are shown; secrets and tokens never are, because errors
//! are built from [`super::client::ApiError`] and friends, which carry none.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

/// Health of one secret.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SecretHealth {
    /// Whether the files hold valid credentials.
    pub ok: bool,
    /// When the current credentials expire, Unix seconds (static: next re-read).
    pub expires_at: Option<i64>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Inner {
    authenticated: bool,
    auth_error: Option<String>,
    secrets: BTreeMap<String, SecretHealth>,
}

/// Shared health state.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
}

impl Health {
    /// A health state that expects the given secrets.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Health {
        let health = Health::default();
        {
            let mut inner = health.lock();
            for name in secrets {
                inner
                    .secrets
                    .insert(name.to_owned(), SecretHealth::default());
            }
        }
        health
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a login outcome.
    pub fn set_auth(&self, result: Result<(), String>) {
        let mut inner = self.lock();
        inner.authenticated = result.is_ok();
        inner.auth_error = result.err();
    }

    /// Records a secret's state.
    pub fn set_secret(&self, name: &str, health: SecretHealth) {
        self.lock().secrets.insert(name.to_owned(), health);
    }

    /// Records a failed attempt, keeping what is known about the current credentials.
    pub fn secret_error(&self, name: &str, error: String) {
        let mut inner = self.lock();
        let entry = inner.secrets.entry(name.to_owned()).or_default();
        let now = chrono::Utc::now().timestamp();
        entry.ok = entry.expires_at.is_some_and(|t| t > now);
        entry.last_error = Some(error);
    }

    /// Whether everything is fine, and the JSON report.
    pub fn report(&self) -> (bool, serde_json::Value) {
        let inner = self.lock();
        let now = chrono::Utc::now().timestamp();
        let healthy = inner.authenticated
            && inner
                .secrets
                .values()
                .all(|s| s.ok && s.expires_at.is_none_or(|t| t > now));
        let mut json = serde_json::to_value(&*inner).unwrap_or_default();
        json["status"] = serde_json::Value::from(if healthy { "ok" } else { "unhealthy" });
        (healthy, json)
    }
}

#[derive(Clone)]
struct Telemetry {
    health: std::sync::Arc<Health>,
    metrics: Option<PrometheusHandle>,
}

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install_metrics() -> Option<PrometheusHandle> {
    match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

/// Serves `/healthz` and `/metrics` on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    health: std::sync::Arc<Health>,
    metrics: Option<PrometheusHandle>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /healthz and /metrics");
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(Telemetry { health, metrics });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health endpoint stopped");
        }
    });
    Ok(())
}

async fn healthz(State(t): State<Telemetry>) -> impl IntoResponse {
    let (healthy, body) = t.health.report();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics_text(State(t): State<Telemetry>) -> impl IntoResponse {
    match &t.metrics {
        Some(handle) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            handle.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [("content-type", "text/plain")],
            "metrics are not enabled\n".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_logged_in_and_every_secret_is_valid() {
        let h = Health::new(["db"]);
        assert!(!h.report().0);
        h.set_auth(Ok(()));
        assert!(!h.report().0, "db not rendered yet");
        let later = chrono::Utc::now().timestamp() + 60;
        h.set_secret(
            "db",
            SecretHealth {
                ok: true,
                expires_at: Some(later),
                last_error: None,
            },
        );
        let (ok, json) = h.report();
        assert!(ok, "{json}");
        assert_eq!(json["status"], "ok");
        h.secret_error("db", "renewal failed".into());
        let (ok, json) = h.report();
        assert!(ok, "still valid until it expires: {json}");
        assert_eq!(json["secrets"]["db"]["last_error"], "renewal failed");
        h.set_auth(Err("login failed".into()));
        assert!(!h.report().0);
    }
}
