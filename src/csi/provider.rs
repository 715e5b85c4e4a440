//! The `CSIDriverProvider` service: `Version` and `Mount`, with a per-Pod cache.
//!
//! With rotation enabled the driver calls `Mount` again at every poll (2 min by default).
//! vault-csi-provider answers each call with a fresh login and fresh credentials, so a Pod
//! accumulates a database user every two minutes (secrets-store-csi-driver#1453,
//! vault-csi-provider#150/#213). Here a Pod's token and leases are cached (keyed by Pod UID
//! and the class's settings): each poll *renews* the cached lease and returns the same files
//! and object versions; new credentials are minted only when renewals stop extending the
//! lease (its max TTL) and `rotate_threshold` of the remaining time has passed, and then the
//! new lease shows up as a new object version, which makes the driver rewrite the files.
//!
//! Nothing tells a provider that a Pod is gone: its cache entry simply stops being renewed,
//! its leases expire after one TTL, and the entry is dropped once they have.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::attributes::{AttributeError, AuthMethod, MountParams, request_mode};
use super::proto::v1alpha1::csi_driver_provider_server::CsiDriverProvider;
use super::proto::v1alpha1::{
    File, MountRequest, MountResponse, ObjectVersion, VersionRequest, VersionResponse,
};
use crate::agent::client::{ApiClient, ApiError, SecretData};
use crate::agent::schedule;

/// The provider's name, as `SecretProviderClass.spec.provider` names it.
pub const PROVIDER_NAME: &str = "dbwarden";

/// Timeout of one request to the server (the driver's own Mount deadline is longer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Default file mode when neither the object nor the driver sets one.
const DEFAULT_FILE_MODE: i32 = 0o644;

/// How long an entry whose leases have all ended is kept (a Pod that only restarted its
/// containers mounts again within this time).
const IDLE_EVICTION: Duration = Duration::from_secs(600);

/// Settings of the provider.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Token audience when the class sets none.
    pub default_audience: String,
    /// Server when the class sets none.
    pub default_address: Option<String>,
    /// Fraction of the remaining time before a lease's maximum after which it is replaced.
    pub rotate_threshold: f64,
}

#[derive(Debug)]
struct CachedToken {
    secret: SecretString,
    /// When it ends (`None`: never).
    expires: Option<Instant>,
    renew_at: Option<Instant>,
    relogin_at: Option<Instant>,
    /// The TTL granted at login.
    ttl: u64,
}

#[derive(Debug)]
struct CachedSecret {
    lease_id: String,
    lease_duration: u64,
    data: SecretData,
    version: String,
    expires: Instant,
    /// Replace the credentials at this time (lease near its maximum, or static re-read).
    refresh_at: Option<Instant>,
    /// The token generation the lease belongs to.
    generation: u64,
}

#[derive(Debug, Default)]
struct PodCache {
    token: Option<CachedToken>,
    /// Increases at every login: leases of an older token die with it.
    generation: u64,
    secrets: HashMap<String, CachedSecret>,
    last_mount: Option<Instant>,
}

impl PodCache {
    /// Whether nothing in the entry is worth keeping.
    fn is_stale(&self, now: Instant) -> bool {
        self.last_mount
            .is_none_or(|t| now.duration_since(t) > IDLE_EVICTION)
            && self.secrets.values().all(|s| s.expires <= now)
    }
}

/// The gRPC service.
pub struct Provider {
    settings: Settings,
    pods: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PodCache>>>>,
    clients: Mutex<HashMap<String, ApiClient>>,
    /// Key of the versions of unleased (static) secrets, so a version reveals nothing about
    /// the password it was computed from.
    version_key: [u8; 32],
}

/// Errors of one Mount, mapped to gRPC statuses; none carries a secret.
#[derive(Debug, thiserror::Error)]
enum MountError {
    #[error(transparent)]
    Attributes(#[from] AttributeError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    Invalid(String),
}

impl From<MountError> for Status {
    fn from(e: MountError) -> Status {
        let message = e.to_string();
        match &e {
            MountError::Attributes(_) | MountError::Invalid(_) => Status::invalid_argument(message),
            MountError::Api(api) if api.is_permission_denied() => {
                Status::permission_denied(message)
            }
            MountError::Api(api) if api.is_transient() => Status::unavailable(message),
            MountError::Api(api) if api.status().is_some() => Status::failed_precondition(message),
            MountError::Api(_) => Status::internal(message),
        }
    }
}

impl Provider {
    /// A provider with an empty cache.
    pub fn new(settings: Settings) -> Provider {
        Provider {
            settings,
            pods: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            version_key: rand::random(),
        }
    }

    /// The API client for the class's server and CA (kept, since building one loads roots).
    fn client_for(&self, params: &MountParams) -> Result<ApiClient, MountError> {
        let address = params
            .address
            .clone()
            .or_else(|| self.settings.default_address.clone())
            .ok_or_else(|| {
                MountError::Invalid(
                    "missing parameter vaultAddress (and no --default-address)".into(),
                )
            })?;
        let ca = match (&params.ca_cert, &params.ca_cert_path) {
            (Some(pem), _) => Some(pem.clone().into_bytes()),
            (None, Some(path)) => Some(std::fs::read(path).map_err(|e| {
                MountError::Invalid(format!("cannot read vaultCACertPath {path}: {e}"))
            })?),
            (None, None) => None,
        };
        let key = format!(
            "{address}|{}",
            ca.as_ref()
                .map(|c| hex::encode(Sha256::digest(c)))
                .unwrap_or_default()
        );
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = ApiClient::new(&address, ca.as_deref(), REQUEST_TIMEOUT)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn entry(&self, key: String) -> Arc<tokio::sync::Mutex<PodCache>> {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Drop entries of Pods that stopped mounting and whose leases have ended.
        pods.retain(|k, entry| {
            *k == key || entry.try_lock().map_or(true, |cache| !cache.is_stale(now))
        });
        metrics::gauge!("dbwarden_csi_cached_pods").set(pods.len() as f64);
        pods.entry(key).or_default().clone()
    }

    /// Makes sure the Pod's entry holds a usable token: renews it when due, logs in again
    /// when it cannot be renewed any more.
    async fn ensure_token(
        &self,
        client: &ApiClient,
        params: &MountParams,
        node_secrets: &str,
        cache: &mut PodCache,
    ) -> Result<(), MountError> {
        let now = Instant::now();
        if let Some(token) = &mut cache.token {
            let alive = token
                .expires
                .is_none_or(|e| e > now + Duration::from_secs(5));
            let relogin_due = token.relogin_at.is_some_and(|t| t <= now);
            if alive && !relogin_due {
                if token.renew_at.is_none_or(|t| t > now) {
                    return Ok(());
                }
                match client.renew_self(&token.secret, None).await {
                    Ok(renewed) => {
                        let ttl = Duration::from_secs(renewed.lease_duration);
                        token.expires = Some(now + ttl);
                        if renewed.capped || renewed.lease_duration < token.ttl {
                            token.renew_at = None;
                            token.relogin_at = Some(
                                now + schedule::rotate_delay(
                                    ttl,
                                    self.settings.rotate_threshold,
                                    0.0,
                                    0.0,
                                ),
                            );
                        } else {
                            token.renew_at =
                                Some(now + schedule::renew_delay(ttl, 2.0 / 3.0, 0.0, 0.0));
                        }
                        return Ok(());
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(pod = %params.pod, error = %e, "token renewal failed; using the token while it lasts");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::info!(pod = %params.pod, error = %e, "token renewal refused; logging in again");
                    }
                }
            }
        }
        let info = match params.auth_method {
            AuthMethod::Kubernetes => {
                let jwt = params.token_for(&self.settings.default_audience)?;
                client
                    .login(
                        &params.auth_mount,
                        json!({ "role": params.role, "jwt": jwt }),
                    )
                    .await?
            }
            AuthMethod::Token => {
                let secrets: HashMap<String, String> =
                    serde_json::from_str(node_secrets).map_err(|_| {
                        MountError::Invalid(
                            "authMethod token needs a nodePublishSecretRef Secret with a token key"
                                .into(),
                        )
                    })?;
                let token = secrets
                    .get("token")
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| {
                        MountError::Invalid(
                            "the nodePublishSecretRef Secret has no token key".into(),
                        )
                    })?;
                client
                    .lookup_self(&SecretString::from(token.trim().to_owned()))
                    .await?
            }
        };
        metrics::counter!("dbwarden_csi_logins_total").increment(1);
        tracing::info!(pod = %params.pod, service_account = %params.service_account, accessor = %info.accessor, "logged in for the pod");
        let ttl = Duration::from_secs(info.lease_duration);
        let (renew_at, relogin_at) = match (info.lease_duration, info.renewable) {
            (0, _) => (None, None),
            (_, true) => (
                Some(now + schedule::renew_delay(ttl, 2.0 / 3.0, 0.0, 0.0)),
                None,
            ),
            (_, false) => (
                None,
                Some(now + schedule::rotate_delay(ttl, self.settings.rotate_threshold, 0.0, 0.0)),
            ),
        };
        cache.token = Some(CachedToken {
            secret: info.token,
            expires: (info.lease_duration > 0).then(|| now + ttl),
            renew_at,
            relogin_at,
            ttl: info.lease_duration,
        });
        cache.generation += 1;
        Ok(())
    }

    /// Brings one secret of the entry up to date: renew, re-read, or mint.
    async fn refresh_secret(
        &self,
        client: &ApiClient,
        params: &MountParams,
        cache: &mut PodCache,
        path: &str,
    ) -> Result<(), MountError> {
        let now = Instant::now();
        let generation = cache.generation;
        let Some(token) = cache.token.as_ref().map(|t| t.secret.clone()) else {
            return Err(MountError::Invalid("no token".into()));
        };
        let reason = match cache.secrets.get_mut(path) {
            None => "initial",
            Some(cached) if cached.generation != generation => "new_token",
            Some(cached) if cached.refresh_at.is_some_and(|t| t <= now) => {
                if cached.lease_id.is_empty() {
                    "static_refresh"
                } else {
                    "rotation"
                }
            }
            Some(cached) if cached.lease_id.is_empty() => return Ok(()),
            Some(cached) => {
                match client
                    .renew_lease(&token, &cached.lease_id, cached.lease_duration)
                    .await
                {
                    Ok(renewal) => {
                        metrics::counter!("dbwarden_csi_lease_renewals_total", "result" => "ok")
                            .increment(1);
                        let ttl = Duration::from_secs(renewal.ttl);
                        cached.expires = now + ttl;
                        if renewal.capped && cached.refresh_at.is_none() {
                            let delay = schedule::rotate_delay(
                                ttl,
                                self.settings.rotate_threshold,
                                0.0,
                                0.0,
                            );
                            cached.refresh_at = Some(now + delay);
                            tracing::info!(pod = %params.pod, lease_id = %cached.lease_id, rotate_in = ?delay, "lease renewed up to its maximum");
                        } else {
                            tracing::debug!(pod = %params.pod, lease_id = %cached.lease_id, ttl = renewal.ttl, "lease renewed");
                        }
                        return Ok(());
                    }
                    Err(e) => {
                        metrics::counter!("dbwarden_csi_lease_renewals_total", "result" => "error")
                            .increment(1);
                        if e.is_transient() && cached.expires > now {
                            tracing::warn!(pod = %params.pod, lease_id = %cached.lease_id, error = %e, "renewal failed; serving the cached credentials while they last");
                            return Ok(());
                        }
                        tracing::info!(pod = %params.pod, lease_id = %cached.lease_id, error = %e, "the lease can no longer be renewed");
                        "lease_lost"
                    }
                }
            }
        };
        let secret = client.read(&token, path).await?;
        metrics::counter!("dbwarden_csi_credentials_fetched_total", "reason" => reason)
            .increment(1);
        let ttl = Duration::from_secs(secret.lease_duration);
        let (version, expires, refresh_at) = if secret.lease_id.is_empty() {
            let rotation = secret
                .data
                .0
                .get("ttl")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let next = now + schedule::static_refresh_delay(rotation);
            (self.content_version(&secret.data), next, Some(next))
        } else {
            let refresh = (!secret.renewable).then(|| {
                now + schedule::rotate_delay(ttl, self.settings.rotate_threshold, 0.0, 0.0)
            });
            (lease_version(&secret.lease_id), now + ttl, refresh)
        };
        tracing::info!(pod = %params.pod, path = %path, lease_id = %secret.lease_id, reason, "credentials fetched for the pod");
        cache.secrets.insert(
            path.to_owned(),
            CachedSecret {
                lease_id: secret.lease_id,
                lease_duration: secret.lease_duration,
                data: secret.data,
                version,
                expires,
                refresh_at,
                generation,
            },
        );
        Ok(())
    }

    fn content_version(&self, data: &SecretData) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.version_key).expect("HMAC takes any key length");
        mac.update(
            serde_json::to_string(&data.0)
                .unwrap_or_default()
                .as_bytes(),
        );
        hex::encode(&mac.finalize().into_bytes()[..12])
    }

    async fn mount_inner(&self, request: MountRequest) -> Result<MountResponse, MountError> {
        let params = MountParams::parse(&request.attributes)?;
        let key = format!(
            "{}#{}",
            params.pod_uid,
            &hex::encode(Sha256::digest(params.settings_key().as_bytes()))[..16]
        );
        let client = self.client_for(&params)?;
        let entry = self.entry(key);
        // One Mount at a time per Pod: two concurrent polls must not both mint.
        let mut cache = entry.lock().await;
        self.ensure_token(&client, &params, &request.secrets, &mut cache)
            .await?;
        let mut paths: Vec<&str> = params
            .objects
            .iter()
            .map(|o| o.secret_path.as_str())
            .collect();
        paths.sort_unstable();
        paths.dedup();
        for path in paths {
            self.refresh_secret(&client, &params, &mut cache, path)
                .await?;
        }
        cache.last_mount = Some(Instant::now());
        let default_mode = request_mode(&request.permission).unwrap_or(DEFAULT_FILE_MODE);
        let mut files = Vec::with_capacity(params.objects.len());
        let mut versions = Vec::with_capacity(params.objects.len());
        for object in &params.objects {
            let cached = cache
                .secrets
                .get(&object.secret_path)
                .ok_or_else(|| MountError::Invalid("secret missing from the cache".into()))?;
            let contents = match &object.secret_key {
                Some(key) => cached.data.text(key).ok_or_else(|| {
                    MountError::Invalid(format!(
                        "object {}: {} has no field {key:?} (it has {})",
                        object.name,
                        object.secret_path,
                        cached.data.0.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?,
                None => serde_json::to_string(&cached.data.0).unwrap_or_default(),
            };
            files.push(File {
                path: object.file_name.clone(),
                mode: object.mode.unwrap_or(default_mode),
                contents: contents.into_bytes(),
            });
            versions.push(ObjectVersion {
                id: object.name.clone(),
                version: cached.version.clone(),
            });
        }
        Ok(MountResponse {
            object_version: versions,
            error: None,
            files,
        })
    }
}

/// The version of a leased secret: derived from the lease id, so it stays the same while
/// the lease is renewed and changes exactly when a new credential is minted.
fn lease_version(lease_id: &str) -> String {
    hex::encode(&Sha256::digest(lease_id.as_bytes())[..12])
}

#[tonic::async_trait]
impl CsiDriverProvider for Provider {
    async fn version(
        &self,
        _request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: "v1alpha1".into(),
            runtime_name: PROVIDER_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn mount(
        &self,
        request: Request<MountRequest>,
    ) -> Result<Response<MountResponse>, Status> {
        match self.mount_inner(request.into_inner()).await {
            Ok(response) => {
                metrics::counter!("dbwarden_csi_mounts_total", "result" => "ok").increment(1);
                Ok(Response::new(response))
            }
            Err(e) => {
                metrics::counter!("dbwarden_csi_mounts_total", "result" => "error").increment(1);
                tracing::warn!(error = %e, "mount failed");
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_lease_and_hide_static_content() {
        assert_eq!(
            lease_version("database/creds/a/1"),
            lease_version("database/creds/a/1")
        );
        assert_ne!(
            lease_version("database/creds/a/1"),
            lease_version("database/creds/a/2")
        );
        let provider = Provider::new(Settings {
            default_audience: "dbwarden".into(),
            default_address: None,
            rotate_threshold: 0.9,
        });
        let mut map = serde_json::Map::new();
        map.insert("password".into(), json!("pw"));
        let data = SecretData(map);
        let v = provider.content_version(&data);
        assert_eq!(v, provider.content_version(&data));
        let plain =
            hex::encode(&Sha256::digest(serde_json::to_string(&data.0).unwrap().as_bytes())[..12]);
        assert_ne!(v, plain, "keyed, not a bare hash of the password");
    }

    #[test]
    fn api_errors_map_to_statuses() {
        let status = |s: u16| -> tonic::Code {
            Status::from(MountError::Api(ApiError::Status {
                method: "GET",
                path: "p".into(),
                status: s,
                message: "m".into(),
            }))
            .code()
        };
        assert_eq!(status(403), tonic::Code::PermissionDenied);
        assert_eq!(status(503), tonic::Code::Unavailable);
        assert_eq!(status(400), tonic::Code::FailedPrecondition);
        let bad = Status::from(MountError::Attributes(AttributeError::Missing("roleName")));
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    }
}
