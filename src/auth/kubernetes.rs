//! Kubernetes: workloads log in with their ServiceAccount JWT, as in Vault, with a safer
//! default.
//!
//! Vault verifies nothing locally unless `pem_keys` is set and leans on the TokenReview API.
//! Here the JWT signature is **always** verified, with the configured `pem_keys` or with the
//! keys published at the cluster's JWKS endpoint (`<kubernetes_host>/openid/v1/jwks`, or
//! `jwks_url`), which are cached and fetched again when a token names an unknown key id (at
//! most once per `jwks_min_refresh_interval`). Only asymmetric algorithms are accepted
//! (RS256/384/512, PS256/384/512, ES256/384); `iss` (unless `disable_iss_validation`), `aud`
//! (when the role sets one), `exp` and `nbf` are checked, and `sub` must name the same
//! ServiceAccount as the `kubernetes.io` claims. A TokenReview call is made only when
//! `token_reviewer_jwt` is set; it then also catches tokens Kubernetes has revoked.
//!
//! Storage below the mount: `config` (sealed: it holds the reviewer JWT) and `role/<name>`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::login::{self, Identity, TokenParams};
use super::mounts::AuthMount;
use super::token::TokenEntry;
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

/// Algorithms a ServiceAccount token may use: asymmetric only, never `none` or HMAC.
const ALLOWED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Clock skew tolerated on `exp` and `nbf`, seconds.
const LEEWAY_SECONDS: u64 = 30;

/// Issuers accepted when `issuer` is not configured: the legacy Secret-token issuer and
/// the defaults of kubeadm-style clusters. Set `issuer` for any other cluster.
const DEFAULT_ISSUERS: &[&str] = &[
    "kubernetes/serviceaccount",
    "https://kubernetes.default.svc.cluster.local",
    "https://kubernetes.default.svc",
];

/// Fetched keys older than this are fetched again at the next login (the old keys stay in
/// use if the fetch fails).
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

/// Default minimum time between two JWKS fetches.
pub const DEFAULT_JWKS_MIN_REFRESH_SECONDS: i64 = 10;

/// Where a pod finds its cluster's CA (used when `disable_local_ca_jwt` is false).
const LOCAL_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// `auth/<mount>/config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    /// The API server URL (`https://k8s.example:6443`).
    pub kubernetes_host: String,
    /// PEM CA of the API server (TLS of JWKS and TokenReview calls).
    pub kubernetes_ca_cert: String,
    /// Bearer token for TokenReview (and for the JWKS endpoint). A secret: never returned.
    pub token_reviewer_jwt: String,
    /// PEM public keys or certificates that verify ServiceAccount JWTs.
    pub pem_keys: Vec<String>,
    /// Expected `iss`.
    pub issuer: String,
    /// Skip the `iss` check (Vault's default; not ours).
    pub disable_iss_validation: bool,
    /// Do not read the pod's own CA when `kubernetes_ca_cert` is empty.
    pub disable_local_ca_jwt: bool,
    /// dbwarden: the JWKS URL (default `<kubernetes_host>/openid/v1/jwks`).
    pub jwks_url: String,
    /// dbwarden: PEM CA for the JWKS URL (default: `kubernetes_ca_cert`).
    pub jwks_ca_pem: String,
    /// dbwarden: minimum seconds between two JWKS fetches (0 = the default, 10).
    pub jwks_min_refresh_interval: i64,
}

impl Config {
    /// Checks a configuration before it is stored: the host is required, and every PEM key
    /// must be a usable RSA or EC public key.
    pub fn validate(&self) -> Result<()> {
        if self.kubernetes_host.trim().is_empty() {
            return Err(invalid("no host provided"));
        }
        url::Url::parse(&self.kubernetes_host)
            .map_err(|e| invalid(format!("invalid kubernetes_host: {e}")))?;
        if !self.jwks_url.is_empty() {
            url::Url::parse(&self.jwks_url)
                .map_err(|e| invalid(format!("invalid jwks_url: {e}")))?;
        }
        for pem in &self.pem_keys {
            parse_pem_key(pem)?;
        }
        for (name, pem) in [
            ("kubernetes_ca_cert", &self.kubernetes_ca_cert),
            ("jwks_ca_pem", &self.jwks_ca_pem),
        ] {
            if !pem.trim().is_empty() {
                reqwest::Certificate::from_pem(pem.as_bytes())
                    .map_err(|_| invalid(format!("{name} is not a PEM certificate")))?;
            }
        }
        if self.jwks_min_refresh_interval < 0 {
            return Err(invalid("jwks_min_refresh_interval cannot be negative"));
        }
        Ok(())
    }

    fn jwks_endpoint(&self) -> String {
        if self.jwks_url.is_empty() {
            format!(
                "{}/openid/v1/jwks",
                self.kubernetes_host.trim_end_matches('/')
            )
        } else {
            self.jwks_url.clone()
        }
    }

    /// The CA for calls to the API server: configured, else the pod's own (if allowed).
    fn api_ca(&self) -> Option<String> {
        if !self.kubernetes_ca_cert.trim().is_empty() {
            return Some(self.kubernetes_ca_cert.clone());
        }
        if !self.disable_local_ca_jwt {
            return std::fs::read_to_string(LOCAL_CA_PATH).ok();
        }
        None
    }

    fn min_refresh(&self) -> Duration {
        // 0 (unset) means the default: never fetch in a tight loop because of bad tokens.
        let secs = if self.jwks_min_refresh_interval > 0 {
            self.jwks_min_refresh_interval
        } else {
            DEFAULT_JWKS_MIN_REFRESH_SECONDS
        };
        Duration::from_secs(secs as u64)
    }
}

/// `auth/<mount>/role/:name`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Role {
    /// ServiceAccount names allowed (`*` and globs).
    pub bound_service_account_names: Vec<String>,
    /// Namespaces allowed (`*` and globs).
    pub bound_service_account_namespaces: Vec<String>,
    /// Required `aud` value, if any.
    pub audience: String,
    /// `serviceaccount_uid` (default) or `serviceaccount_name`.
    pub alias_name_source: String,
    /// Settings of the tokens its logins get.
    pub token: TokenParams,
}

impl Role {
    /// Checks a role before it is stored.
    pub fn validate(&self) -> Result<()> {
        self.token.validate()?;
        if self.bound_service_account_names.is_empty() {
            return Err(invalid("\"bound_service_account_names\" can not be empty"));
        }
        if self.bound_service_account_namespaces.is_empty() {
            return Err(invalid(
                "\"bound_service_account_namespaces\" can not be empty",
            ));
        }
        if self.bound_service_account_names.iter().any(|n| n == "*")
            && self
                .bound_service_account_namespaces
                .iter()
                .any(|n| n == "*")
        {
            return Err(invalid(
                "service_account_names and service_account_namespaces can not both be \"*\"",
            ));
        }
        for pattern in self
            .bound_service_account_names
            .iter()
            .chain(&self.bound_service_account_namespaces)
        {
            glob::Pattern::new(pattern)
                .map_err(|e| invalid(format!("invalid glob {pattern:?}: {e}")))?;
        }
        match self.alias_name_source.as_str() {
            "" | "serviceaccount_uid" | "serviceaccount_name" => Ok(()),
            other => Err(invalid(format!("invalid alias_name_source {other:?}"))),
        }
    }
}

/// One verification key and what it may verify.
#[derive(Clone)]
struct VerifyKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

/// Keys fetched from a JWKS endpoint, per mount.
#[derive(Default)]
pub struct JwksCache {
    /// The endpoint the keys came from (a changed config fetches again).
    url: String,
    keys: Vec<VerifyKey>,
    /// When keys were last fetched successfully.
    fetched: Option<Instant>,
    /// When a fetch was last attempted (successful or not), for the minimum interval.
    attempted: Option<Instant>,
    /// How many fetches were made (shown in the server log; useful to operators).
    fetches: u64,
}

fn parse_pem_key(pem: &str) -> Result<VerifyKey> {
    let bytes = pem.trim().as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok(VerifyKey {
            kid: None,
            family: AlgorithmFamily::Rsa,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        return Ok(VerifyKey {
            kid: None,
            family: AlgorithmFamily::Ec,
            key,
        });
    }
    Err(invalid(
        "pem_keys: every entry must be a PEM RSA or EC public key or certificate",
    ))
}

/// Parses a JWKS document, keeping the RSA and EC keys (symmetric or unknown keys are
/// skipped: a symmetric key in a JWKS would let anyone who can read it forge tokens).
fn parse_jwks(body: &[u8]) -> std::result::Result<Vec<VerifyKey>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let items = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let mut keys = Vec::new();
    for item in items {
        let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else {
            continue;
        };
        let family = match jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                family,
                key,
            });
        }
    }
    Ok(keys)
}

fn http_client(ca: Option<&str>) -> std::result::Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca.filter(|c| !c.trim().is_empty()) {
        let cert = reqwest::Certificate::from_pem(ca.as_bytes())
            .map_err(|e| format!("bad CA certificate: {e}"))?;
        builder = builder.tls_certs_only([cert]);
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

async fn fetch_jwks(config: &Config, url: &str) -> std::result::Result<Vec<VerifyKey>, String> {
    let ca = if config.jwks_ca_pem.trim().is_empty() {
        config.api_ca()
    } else {
        Some(config.jwks_ca_pem.clone())
    };
    let client = http_client(ca.as_deref())?;
    let mut request = client.get(url).header("Accept", "application/json");
    if !config.token_reviewer_jwt.is_empty() {
        // Clusters without anonymous issuer discovery need a credential here.
        request = request.bearer_auth(&config.token_reviewer_jwt);
    }
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    parse_jwks(&body)
}

/// Why a login was refused: the caller sees `public`, the server log also `detail`.
struct Denied {
    public: &'static str,
    detail: String,
}

fn denied(public: &'static str, detail: impl Into<String>) -> Denied {
    Denied {
        public,
        detail: detail.into(),
    }
}

/// The keys of `keys` that may verify a token signed with `alg` naming key id `kid`.
fn matching_keys(keys: &[VerifyKey], alg: Algorithm, kid: Option<&str>) -> Vec<VerifyKey> {
    keys.iter()
        .filter(|k| k.family == alg.family())
        .filter(|k| match (kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .cloned()
        .collect()
}

/// The configured `pem_keys` that parse (all of them, once the config was validated).
fn pem_keys(config: &Config) -> Vec<VerifyKey> {
    config
        .pem_keys
        .iter()
        .filter_map(|p| parse_pem_key(p).ok())
        .collect()
}

/// The keys that may verify a token with this header, fetching the JWKS when needed.
async fn candidate_keys(
    core: &Core,
    mount: &AuthMount,
    config: &Config,
    alg: Algorithm,
    kid: Option<&str>,
) -> std::result::Result<Vec<VerifyKey>, Denied> {
    if !config.pem_keys.is_empty() {
        return Ok(matching_keys(&pem_keys(config), alg, kid));
    }
    let url = config.jwks_endpoint();
    let cache = core.auth.jwks(&mount.uuid);
    let mut cache = cache.lock().await;
    if cache.url != url {
        *cache = JwksCache {
            url: url.clone(),
            ..Default::default()
        };
    }
    let now = Instant::now();
    let stale = cache
        .fetched
        .is_none_or(|t| now.duration_since(t) >= JWKS_MAX_AGE);
    let unknown_kid =
        kid.is_some_and(|want| !cache.keys.iter().any(|k| k.kid.as_deref() == Some(want)));
    let may_fetch = cache
        .attempted
        .is_none_or(|t| now.duration_since(t) >= config.min_refresh());
    if (stale || unknown_kid) && may_fetch {
        cache.attempted = Some(now);
        cache.fetches += 1;
        match fetch_jwks(config, &url).await {
            Ok(keys) => {
                tracing::info!(mount = %mount.path, keys = keys.len(), fetches = cache.fetches, "fetched Kubernetes JWKS");
                cache.keys = keys;
                cache.fetched = Some(Instant::now());
            }
            Err(e) => {
                // Keep whatever keys we had: an API server hiccup must not stop logins.
                tracing::warn!(mount = %mount.path, url = %url, error = %e, "fetching Kubernetes JWKS failed");
            }
        }
    }
    if cache.keys.is_empty() {
        return Err(denied(
            "permission denied",
            "no keys to verify ServiceAccount JWTs: set pem_keys, or make the JWKS endpoint reachable",
        ));
    }
    Ok(matching_keys(&cache.keys, alg, kid))
}

/// The ServiceAccount a token speaks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ServiceAccount {
    namespace: String,
    name: String,
    uid: String,
    secret_name: String,
}

fn claim_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// Reads the ServiceAccount from the projected (`kubernetes.io` object) or legacy
/// (`kubernetes.io/serviceaccount/*`) claims and checks that `sub` names the same one.
fn service_account(claims: &Value) -> std::result::Result<ServiceAccount, Denied> {
    const LEGACY: &str = "kubernetes.io/serviceaccount/";
    let pick = |nested: &[&str], legacy: &str| -> std::result::Result<Option<String>, Denied> {
        let a = claim_str(claims, nested);
        let b = claims
            .get(format!("{LEGACY}{legacy}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        match (a, b) {
            (Some(a), Some(b)) if a != b => Err(denied(
                "permission denied",
                format!("projected and legacy claims disagree on {legacy}"),
            )),
            (a, b) => Ok(a.or(b).map(str::to_owned)),
        }
    };
    let namespace = pick(&["kubernetes.io", "namespace"], "namespace")?;
    let name = pick(
        &["kubernetes.io", "serviceaccount", "name"],
        "service-account.name",
    )?;
    let (Some(namespace), Some(name)) = (namespace, name) else {
        return Err(denied(
            "permission denied",
            "the JWT has no ServiceAccount namespace and name claims",
        ));
    };
    let expected_sub = format!("system:serviceaccount:{namespace}:{name}");
    if claim_str(claims, &["sub"]) != Some(expected_sub.as_str()) {
        return Err(denied(
            "permission denied",
            "sub does not match the ServiceAccount claims",
        ));
    }
    Ok(ServiceAccount {
        uid: pick(
            &["kubernetes.io", "serviceaccount", "uid"],
            "service-account.uid",
        )?
        .unwrap_or_default(),
        secret_name: pick(&["kubernetes.io", "secret", "name"], "secret.name")?.unwrap_or_default(),
        namespace,
        name,
    })
}

fn glob_match(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*" || p == value || glob::Pattern::new(p).is_ok_and(|pattern| pattern.matches(value))
    })
}

fn audience_matches(claims: &Value, want: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == want,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(want)),
        _ => false,
    }
}

/// Reads the JWT's header and builds the checks its claims must pass: the algorithm must be
/// asymmetric, `exp` is required unless TokenReview runs, `iss` unless disabled.
fn jwt_validation(
    config: &Config,
    jwt: &str,
) -> std::result::Result<(jsonwebtoken::Header, Validation), Denied> {
    let header = jsonwebtoken::decode_header(jwt)
        .map_err(|e| denied("permission denied", format!("malformed JWT: {e}")))?;
    if !ALLOWED_ALGORITHMS.contains(&header.alg) {
        return Err(denied(
            "permission denied",
            format!("JWT algorithm {:?} is not accepted", header.alg),
        ));
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    // `aud` is checked against the role below; an unset role audience accepts any.
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    if config.token_reviewer_jwt.is_empty() {
        // Without TokenReview nothing else limits a token's life: demand an expiry.
        validation.required_spec_claims.insert("exp".to_owned());
    }
    if !config.disable_iss_validation {
        if config.issuer.is_empty() {
            validation.set_issuer(DEFAULT_ISSUERS);
        } else {
            validation.set_issuer(&[config.issuer.as_str()]);
        }
        validation.required_spec_claims.insert("iss".to_owned());
    }
    Ok((header, validation))
}

/// Checks the JWT's signature with each candidate key in turn and its claims against
/// `validation`; returns its claims.
fn decode_with_keys(
    jwt: &str,
    kid: Option<&str>,
    keys: &[VerifyKey],
    validation: &Validation,
) -> std::result::Result<Value, Denied> {
    for key in keys {
        match jsonwebtoken::decode::<Value>(jwt, &key.key, validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    // Not this key: try the next one.
                    K::InvalidSignature
                    | K::InvalidEcdsaKey
                    | K::InvalidRsaKey(_)
                    | K::InvalidKeyFormat
                    | K::InvalidAlgorithm => continue,
                    K::ExpiredSignature => {
                        return Err(denied("permission denied: token is expired", "expired"));
                    }
                    K::ImmatureSignature => {
                        return Err(denied(
                            "permission denied: token is not yet valid",
                            "nbf in the future",
                        ));
                    }
                    K::InvalidIssuer => {
                        return Err(denied(
                            "permission denied: invalid issuer (iss) claim",
                            "issuer not accepted; set `issuer` to the cluster's --service-account-issuer",
                        ));
                    }
                    other => {
                        return Err(denied(
                            "permission denied",
                            format!("JWT refused: {other:?}"),
                        ));
                    }
                }
            }
        }
    }
    Err(denied(
        "permission denied",
        format!(
            "no configured key verifies the JWT signature ({} candidate keys, kid {kid:?})",
            keys.len(),
        ),
    ))
}

/// Verifies the JWT's signature and time and issuer claims; returns its claims.
async fn verify_jwt(
    core: &Core,
    mount: &AuthMount,
    config: &Config,
    jwt: &str,
) -> std::result::Result<Value, Denied> {
    let (header, validation) = jwt_validation(config, jwt)?;
    let keys = candidate_keys(core, mount, config, header.alg, header.kid.as_deref()).await?;
    decode_with_keys(jwt, header.kid.as_deref(), &keys, &validation)
}

/// Verifies a ServiceAccount JWT without a server, by the same steps as a login: with the
/// configured `pem_keys` when there are any, else with the keys of `jwks` (a JWKS document
/// as the cluster publishes it, which a login fetches instead). Returns the ServiceAccount's
/// namespace and name, or the reason for the refusal as the server log would show it.
/// Role bindings, audience and TokenReview are not checked. This exists so the handling of
/// untrusted tokens and key sets can be tested and fuzzed in isolation.
pub fn verify_offline(
    config: &Config,
    jwks: &[u8],
    jwt: &str,
) -> std::result::Result<(String, String), String> {
    let (header, validation) = jwt_validation(config, jwt).map_err(|d| d.detail)?;
    let keys = if config.pem_keys.is_empty() {
        parse_jwks(jwks)?
    } else {
        pem_keys(config)
    };
    let keys = matching_keys(&keys, header.alg, header.kid.as_deref());
    let claims =
        decode_with_keys(jwt, header.kid.as_deref(), &keys, &validation).map_err(|d| d.detail)?;
    let sa = service_account(&claims).map_err(|d| d.detail)?;
    Ok((sa.namespace, sa.name))
}

/// Asks the API server whether it still considers the token valid (TokenReview).
async fn token_review(
    config: &Config,
    jwt: &str,
    sa: &ServiceAccount,
    audience: &str,
) -> std::result::Result<(), Denied> {
    let client =
        http_client(config.api_ca().as_deref()).map_err(|e| denied("permission denied", e))?;
    let mut spec = serde_json::json!({ "token": jwt });
    if !audience.is_empty() {
        spec["audiences"] = serde_json::json!([audience]);
    }
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": spec,
    });
    let url = format!(
        "{}/apis/authentication.k8s.io/v1/tokenreviews",
        config.kubernetes_host.trim_end_matches('/')
    );
    let response = client
        .post(&url)
        .bearer_auth(&config.token_reviewer_jwt)
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            denied(
                "permission denied",
                format!("TokenReview call failed: {}", e.without_url()),
            )
        })?;
    let status = response.status();
    let review: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(denied(
            "permission denied",
            format!("TokenReview answered HTTP {status}"),
        ));
    }
    let st = &review["status"];
    if st["authenticated"] != Value::Bool(true) {
        return Err(denied(
            "permission denied",
            format!(
                "TokenReview did not authenticate the token: {}",
                st["error"].as_str().unwrap_or("no reason given")
            ),
        ));
    }
    let expected = format!("system:serviceaccount:{}:{}", sa.namespace, sa.name);
    if st["user"]["username"].as_str() != Some(expected.as_str()) {
        return Err(denied(
            "permission denied",
            "TokenReview names a different user than the JWT",
        ));
    }
    if !sa.uid.is_empty()
        && let Some(uid) = st["user"]["uid"].as_str()
        && uid != sa.uid
    {
        return Err(denied(
            "permission denied",
            "TokenReview names a different uid than the JWT",
        ));
    }
    Ok(())
}

fn config_key(mount: &AuthMount) -> String {
    mount.key("config")
}

fn role_key(mount: &AuthMount, name: &str) -> String {
    mount.key(&format!("role/{name}"))
}

/// Validates a role name.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(invalid("role name must be non-empty and contain no '/'"));
    }
    Ok(())
}

/// Reads the configuration.
pub async fn read_config(core: &Core, mount: &AuthMount) -> Result<Option<Config>> {
    core.get_json(&config_key(mount)).await
}

/// Stores the configuration (and forgets keys fetched under the old one).
pub async fn write_config(core: &Core, mount: &AuthMount, config: &Config) -> Result<()> {
    config.validate()?;
    core.put_json(&config_key(mount), config).await?;
    core.auth.forget_mount(&mount.uuid);
    Ok(())
}

/// Reads a role.
pub async fn read_role(core: &Core, mount: &AuthMount, name: &str) -> Result<Option<Role>> {
    check_name(name)?;
    core.get_json(&role_key(mount, name)).await
}

/// Stores a role.
pub async fn write_role(core: &Core, mount: &AuthMount, name: &str, role: &Role) -> Result<()> {
    check_name(name)?;
    role.validate()?;
    core.put_json(&role_key(mount, name), role).await
}

/// Deletes a role.
pub async fn delete_role(core: &Core, mount: &AuthMount, name: &str) -> Result<()> {
    check_name(name)?;
    core.delete(&role_key(mount, name)).await
}

/// Lists role names.
pub async fn list_roles(core: &Core, mount: &AuthMount) -> Result<Vec<String>> {
    core.list(&mount.key("role/")).await
}

/// `login`: verifies the JWT and the role's bindings and issues the token.
pub async fn login(
    core: &Core,
    mount: &AuthMount,
    path: &str,
    role_name: &str,
    jwt: &Zeroizing<String>,
    remote: Option<IpAddr>,
) -> Result<(Zeroizing<String>, TokenEntry)> {
    if role_name.is_empty() {
        return Err(invalid("missing role"));
    }
    if jwt.trim().is_empty() {
        return Err(invalid("missing jwt"));
    }
    let role = match read_role(core, mount, role_name).await {
        Ok(Some(role)) => role,
        _ => return Err(invalid(format!("invalid role name \"{role_name}\""))),
    };
    let config = read_config(core, mount)
        .await?
        .ok_or_else(|| invalid("could not load backend configuration"))?;
    login::check_login_network(&role.token.bound_cidrs, remote, mount)?;
    let refuse = |d: Denied| -> EngineError {
        tracing::warn!(mount = %mount.path, role = %role_name, remote = ?remote, reason = %d.detail, "kubernetes login refused");
        EngineError::PermissionDenied(d.public.to_owned())
    };
    let claims = verify_jwt(core, mount, &config, jwt.trim())
        .await
        .map_err(refuse)?;
    if !role.audience.is_empty() && !audience_matches(&claims, &role.audience) {
        return Err(refuse(denied(
            "permission denied: invalid audience (aud) claim",
            "audience not accepted by the role",
        )));
    }
    let sa = service_account(&claims).map_err(refuse)?;
    if !glob_match(&role.bound_service_account_names, &sa.name) {
        return Err(refuse(denied(
            "service account name not authorized",
            format!("service account {:?} not bound", sa.name),
        )));
    }
    if !glob_match(&role.bound_service_account_namespaces, &sa.namespace) {
        return Err(refuse(denied(
            "namespace not authorized",
            format!("namespace {:?} not bound", sa.namespace),
        )));
    }
    if !config.token_reviewer_jwt.is_empty() {
        token_review(&config, jwt.trim(), &sa, &role.audience)
            .await
            .map_err(refuse)?;
    }
    let mut meta = BTreeMap::new();
    meta.insert("role".to_owned(), role_name.to_owned());
    meta.insert("service_account_name".to_owned(), sa.name.clone());
    meta.insert("service_account_namespace".to_owned(), sa.namespace.clone());
    meta.insert(
        "service_account_secret_name".to_owned(),
        sa.secret_name.clone(),
    );
    meta.insert("service_account_uid".to_owned(), sa.uid.clone());
    login::issue(
        core,
        mount,
        path,
        &role.token,
        Identity {
            display_name: format!("{}-{}", sa.namespace, sa.name),
            meta,
            bound_cidrs: None,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projected_and_legacy_claims_must_agree_with_sub() {
        let projected = json!({"sub": "system:serviceaccount:ns1:app",
            "kubernetes.io": {"namespace": "ns1", "serviceaccount": {"name": "app", "uid": "u1"}}});
        let sa = service_account(&projected).ok().unwrap();
        assert_eq!(
            (sa.namespace.as_str(), sa.name.as_str(), sa.uid.as_str()),
            ("ns1", "app", "u1")
        );
        let legacy = json!({"sub": "system:serviceaccount:ns1:app",
            "kubernetes.io/serviceaccount/namespace": "ns1",
            "kubernetes.io/serviceaccount/service-account.name": "app",
            "kubernetes.io/serviceaccount/secret.name": "app-token-x"});
        assert_eq!(
            service_account(&legacy).ok().unwrap().secret_name,
            "app-token-x"
        );
        let lying_sub = json!({"sub": "system:serviceaccount:kube-system:admin",
            "kubernetes.io": {"namespace": "ns1", "serviceaccount": {"name": "app"}}});
        assert!(service_account(&lying_sub).is_err());
        let disagree = json!({"sub": "system:serviceaccount:ns1:app",
            "kubernetes.io": {"namespace": "ns1", "serviceaccount": {"name": "app"}},
            "kubernetes.io/serviceaccount/namespace": "ns2"});
        assert!(service_account(&disagree).is_err());
        assert!(service_account(&json!({"sub": "system:serviceaccount:a:b"})).is_err());
    }

    #[test]
    fn globs_and_audiences() {
        let p = vec!["app-*".to_owned(), "exact".to_owned()];
        assert!(glob_match(&p, "app-web"));
        assert!(glob_match(&p, "exact"));
        assert!(!glob_match(&p, "other"));
        assert!(glob_match(&["*".to_owned()], "anything"));
        assert!(audience_matches(&json!({"aud": ["x", "vault"]}), "vault"));
        assert!(audience_matches(&json!({"aud": "vault"}), "vault"));
        assert!(!audience_matches(&json!({"aud": ["x"]}), "vault"));
        assert!(!audience_matches(&json!({}), "vault"));
    }

    #[test]
    fn jwks_skips_symmetric_and_unknown_keys() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "e"},
            {"kty": "weird"},
            {"kty": "EC", "crv": "P-256", "kid": "ec1",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ec1"));
        assert!(parse_jwks(b"{}").is_err());
    }

    /// A P-256 public key made for these tests (its private half is in `fuzz/fuzz_targets/jwt_parse.rs`).
    const TEST_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0OH5L8IiQ6PeQx6j6rer7W/uTmZe
PRpWh9+/YEHOPgJstB1nIgjOlToDgasqsQXMHYL50x7v5vhaaIlt6h2A2Q==
-----END PUBLIC KEY-----
";
    const TEST_JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "test-key", "use": "sig", "alg": "ES256", "x": "0OH5L8IiQ6PeQx6j6rer7W_uTmZePRpWh9-_YEHOPgI", "y": "bLQdZyIIzpU6A4GrKrEFzB2C-dMe7-b4WmiJbeodgNk"}]}"#;
    /// Legacy claims for `ns1/app`, issuer `kubernetes/serviceaccount`, key id `test-key`,
    /// expiring in 2100.
    const LEGACY_TOKEN: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InRlc3Qta2V5In0.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50Om5zMTphcHAiLCJleHAiOjQxMDI0NDQ4MDAsImt1YmVybmV0ZXMuaW8vc2VydmljZWFjY291bnQvbmFtZXNwYWNlIjoibnMxIiwia3ViZXJuZXRlcy5pby9zZXJ2aWNlYWNjb3VudC9zZXJ2aWNlLWFjY291bnQubmFtZSI6ImFwcCJ9.0ZfdmZokl8oFn9ACua8fRnEnuZk1DL7b-SZaVbugvxir8LHvQoGfpcczTGP8fG57YjSHEMk0Dq7mTZtNdhBLLg";
    /// Projected claims for `ns1/app`, issuer `https://kubernetes.default.svc`.
    const PROJECTED_TOKEN: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3Qta2V5In0.eyJhdWQiOlsiaHR0cHM6Ly9rdWJlcm5ldGVzLmRlZmF1bHQuc3ZjIl0sImlzcyI6Imh0dHBzOi8va3ViZXJuZXRlcy5kZWZhdWx0LnN2YyIsInN1YiI6InN5c3RlbTpzZXJ2aWNlYWNjb3VudDpuczE6YXBwIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsIm5iZiI6MTcwMDAwMDAwMCwia3ViZXJuZXRlcy5pbyI6eyJuYW1lc3BhY2UiOiJuczEiLCJzZXJ2aWNlYWNjb3VudCI6eyJuYW1lIjoiYXBwIiwidWlkIjoiNWYwYyJ9fX0.2NGcIMsnoMwcY2rW-Gd82EQO5CWUz_jZE1G55Hk5TroPnUUs7UX_IjMipW_-hPghD1VGKfbaLNR1M6Qg8I7apQ";

    #[test]
    fn verify_offline_checks_signature_issuer_and_service_account() {
        let pem = Config {
            pem_keys: vec![TEST_PUBLIC_PEM.to_owned()],
            ..Default::default()
        };
        let sa = ("ns1".to_owned(), "app".to_owned());
        assert_eq!(verify_offline(&pem, b"", LEGACY_TOKEN), Ok(sa.clone()));
        assert_eq!(verify_offline(&pem, b"", PROJECTED_TOKEN), Ok(sa.clone()));
        let jwks = Config::default();
        assert_eq!(
            verify_offline(&jwks, TEST_JWKS.as_bytes(), PROJECTED_TOKEN),
            Ok(sa)
        );
        assert!(verify_offline(&jwks, b"{\"keys\": []}", PROJECTED_TOKEN).is_err());
        // A changed signature, a custom issuer, garbage: refused.
        let mut forged = LEGACY_TOKEN.to_owned();
        forged.replace_range(forged.len() - 4.., "AAAA");
        assert!(verify_offline(&pem, b"", &forged).is_err());
        let other_issuer = Config {
            issuer: "https://issuer.example".to_owned(),
            ..pem.clone()
        };
        let err = verify_offline(&other_issuer, b"", LEGACY_TOKEN).unwrap_err();
        assert!(err.contains("issuer"), "{err}");
        assert!(verify_offline(&pem, b"", "not.a.jwt").is_err());
    }

    #[test]
    fn roles_need_bindings_and_valid_globs() {
        let mut role = Role {
            bound_service_account_names: vec!["app".into()],
            bound_service_account_namespaces: vec!["*".into()],
            ..Default::default()
        };
        assert!(role.validate().is_ok());
        role.bound_service_account_names = vec!["*".into()];
        assert!(role.validate().is_err());
        role.bound_service_account_names = vec!["[".into()];
        assert!(role.validate().is_err());
        role.bound_service_account_names = vec![];
        assert!(role.validate().is_err());
    }
}
