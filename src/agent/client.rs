//! A small client of the Vault-compatible HTTP API, used by the agent and the CSI provider.
//!
//! Only the calls a credential consumer needs: log in, look up and renew its token, read a
//! secret, and look up, renew and revoke a lease. Tokens travel only in the `X-Vault-Token`
//! header and secret data only in response bodies, so neither can end up in an error message
//! (errors quote the method, the path and the server's own error text, which never carries a
//! secret).

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

/// Errors talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request did not get an HTTP answer.
    #[error("{method} {path}: {message}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// API path below `/v1/`.
        path: String,
        /// What went wrong (connection refused, timeout...).
        message: String,
    },
    /// The server answered with an error status.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// API path below `/v1/`.
        path: String,
        /// HTTP status.
        status: u16,
        /// The server's `errors` joined.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("{method} {path}: unexpected response: {message}")]
    Malformed {
        /// HTTP method.
        method: &'static str,
        /// API path below `/v1/`.
        path: String,
        /// What was missing.
        message: String,
    },
    /// The client could not be built (bad CA certificate).
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed (no answer, 429 or 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport { .. } => true,
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether the server refused the token (403): it expired or was revoked.
    pub fn is_permission_denied(&self) -> bool {
        self.status() == Some(403)
    }
}

/// Secret key-value data (credentials) whose `Debug` never shows the values.
#[derive(Clone, Default, PartialEq)]
pub struct SecretData(pub Map<String, Value>);

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self.0.keys().collect();
        write!(f, "SecretData({keys:?}: [REDACTED])")
    }
}

impl SecretData {
    /// A field as text (strings verbatim, other JSON values in JSON form).
    pub fn text(&self, field: &str) -> Option<String> {
        self.0.get(field).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// A token and what the server said about it.
#[derive(Debug, Clone)]
pub struct AuthInfo {
    /// The token.
    pub token: SecretString,
    /// Its accessor (not a secret: it can only look up, renew or revoke).
    pub accessor: String,
    /// Seconds it lives for (0: no expiry).
    pub lease_duration: u64,
    /// Whether it can be renewed.
    pub renewable: bool,
    /// Whether the server capped the TTL at the token's maximum.
    pub capped: bool,
}

/// A secret read from the server.
#[derive(Debug, Clone)]
pub struct Secret {
    /// Lease id (empty for unleased secrets such as static credentials).
    pub lease_id: String,
    /// Seconds the lease lives for.
    pub lease_duration: u64,
    /// Whether the lease can be renewed.
    pub renewable: bool,
    /// The data (credentials).
    pub data: SecretData,
}

/// The outcome of a lease renewal.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    /// The TTL granted, seconds.
    pub ttl: u64,
    /// Whether the server capped it at the lease's maximum (renewals no longer extend it).
    pub capped: bool,
}

/// What a lease lookup says.
#[derive(Debug, Clone)]
pub struct LeaseLookup {
    /// Seconds left.
    pub ttl: u64,
    /// Whether it can be renewed.
    pub renewable: bool,
}

/// The API client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
}

impl ApiClient {
    /// A client for `address` (`https://host:port`); with `ca_pem`, only that CA is trusted
    /// (a private CA should not be mixed with the public roots).
    pub fn new(
        address: &str,
        ca_pem: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ApiClient, ApiError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("dbwarden/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ApiError::Setup(format!("CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(ApiError::Setup("CA file holds no certificate".into()));
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ApiError::Setup(e.to_string()))?;
        Ok(ApiClient {
            http,
            base: address.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends a request and returns the JSON body (Null when empty).
    async fn call(
        &self,
        method: &'static str,
        path: &str,
        token: Option<&SecretString>,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let verb = match method {
            "GET" => reqwest::Method::GET,
            "PUT" => reqwest::Method::PUT,
            _ => reqwest::Method::POST,
        };
        let mut request = self.http.request(verb, format!("{}/v1/{path}", self.base));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let transport = |e: reqwest::Error| ApiError::Transport {
            method,
            path: path.to_owned(),
            // without_url: the URL holds nothing secret, but the message is shorter without it.
            message: e.without_url().to_string(),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(transport)?;
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        if !(200..300).contains(&status) {
            let message = json["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "no error message".into());
            return Err(ApiError::Status {
                method,
                path: path.to_owned(),
                status,
                message,
            });
        }
        Ok(json)
    }

    /// `POST auth/<mount>/login`.
    pub async fn login(&self, mount: &str, body: Value) -> Result<AuthInfo, ApiError> {
        let path = format!("auth/{mount}/login");
        let json = self.call("POST", &path, None, Some(body)).await?;
        parse_auth(&json, &path, None)
    }

    /// `POST auth/token/renew-self`.
    pub async fn renew_self(
        &self,
        token: &SecretString,
        increment: Option<u64>,
    ) -> Result<AuthInfo, ApiError> {
        let path = "auth/token/renew-self";
        let body = increment.map(|i| json!({ "increment": i }));
        let json = self.call("POST", path, Some(token), body).await?;
        parse_auth(&json, path, Some(token))
    }

    /// `GET auth/token/lookup-self`: the token's TTL and renewability.
    pub async fn lookup_self(&self, token: &SecretString) -> Result<AuthInfo, ApiError> {
        let path = "auth/token/lookup-self";
        let json = self.call("GET", path, Some(token), None).await?;
        let data = &json["data"];
        Ok(AuthInfo {
            token: token.clone(),
            accessor: data["accessor"].as_str().unwrap_or_default().to_owned(),
            lease_duration: data["ttl"].as_u64().unwrap_or(0),
            renewable: data["renewable"].as_bool().unwrap_or(false),
            capped: false,
        })
    }

    /// `GET <path>`: a secret (dynamic or static credentials).
    pub async fn read(&self, token: &SecretString, path: &str) -> Result<Secret, ApiError> {
        let json = self.call("GET", path, Some(token), None).await?;
        let data = match &json["data"] {
            Value::Object(map) => map.clone(),
            _ => {
                return Err(ApiError::Malformed {
                    method: "GET",
                    path: path.to_owned(),
                    message: "no data".into(),
                });
            }
        };
        Ok(Secret {
            lease_id: json["lease_id"].as_str().unwrap_or_default().to_owned(),
            lease_duration: json["lease_duration"].as_u64().unwrap_or(0),
            renewable: json["renewable"].as_bool().unwrap_or(false),
            data: SecretData(data),
        })
    }

    /// `POST <path>` with a JSON body; the response body (Null when empty).
    pub async fn write(
        &self,
        token: &SecretString,
        path: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        self.call("POST", path, Some(token), Some(body)).await
    }

    /// `PUT sys/leases/renew`.
    pub async fn renew_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
        increment: u64,
    ) -> Result<Renewal, ApiError> {
        let path = "sys/leases/renew";
        let json = self
            .call(
                "PUT",
                path,
                Some(token),
                Some(json!({ "lease_id": lease_id, "increment": increment })),
            )
            .await?;
        let ttl = json["lease_duration"]
            .as_u64()
            .ok_or_else(|| ApiError::Malformed {
                method: "PUT",
                path: path.to_owned(),
                message: "no lease_duration".into(),
            })?;
        Ok(Renewal {
            ttl,
            capped: ttl < increment || has_cap_warning(&json),
        })
    }

    /// `PUT sys/leases/lookup`; `None` when the lease does not exist (any more).
    pub async fn lookup_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
    ) -> Result<Option<LeaseLookup>, ApiError> {
        let result = self
            .call(
                "PUT",
                "sys/leases/lookup",
                Some(token),
                Some(json!({ "lease_id": lease_id })),
            )
            .await;
        match result {
            Ok(json) => Ok(Some(LeaseLookup {
                ttl: json["data"]["ttl"].as_u64().unwrap_or(0),
                renewable: json["data"]["renewable"].as_bool().unwrap_or(false),
            })),
            // Vault answers 400 "invalid lease" for a lease it does not know.
            Err(e) if e.status() == Some(400) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT sys/leases/revoke` (an unknown lease is not an error).
    pub async fn revoke_lease(&self, token: &SecretString, lease_id: &str) -> Result<(), ApiError> {
        self.call(
            "PUT",
            "sys/leases/revoke",
            Some(token),
            Some(json!({ "lease_id": lease_id })),
        )
        .await
        .map(drop)
    }
}

fn has_cap_warning(json: &Value) -> bool {
    json["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .filter_map(Value::as_str)
            .any(|w| w.contains("max_ttl") || w.contains("capped"))
    })
}

fn parse_auth(
    json: &Value,
    path: &str,
    known_token: Option<&SecretString>,
) -> Result<AuthInfo, ApiError> {
    let auth = &json["auth"];
    let malformed = |message: &str| ApiError::Malformed {
        method: "POST",
        path: path.to_owned(),
        message: message.into(),
    };
    if !auth.is_object() {
        return Err(malformed("no auth block"));
    }
    // Renewals may leave client_token empty (the server never holds the token to echo).
    let token = match (auth["client_token"].as_str(), known_token) {
        (Some(t), _) if !t.is_empty() => SecretString::from(t.to_owned()),
        (_, Some(known)) => known.clone(),
        _ => return Err(malformed("no client_token")),
    };
    Ok(AuthInfo {
        token,
        accessor: auth["accessor"].as_str().unwrap_or_default().to_owned(),
        lease_duration: auth["lease_duration"].as_u64().unwrap_or(0),
        renewable: auth["renewable"].as_bool().unwrap_or(false),
        capped: has_cap_warning(json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_debug_hides_values() {
        let mut map = Map::new();
        map.insert("password".into(), json!("hunter2-very-secret"));
        let shown = format!("{:?}", SecretData(map));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password"));
    }

    #[test]
    fn auth_blocks_parse_and_renewals_keep_the_token() {
        let login = json!({"auth": {"client_token": "s.abc", "accessor": "acc", "lease_duration": 60, "renewable": true}});
        let a = parse_auth(&login, "auth/x/login", None).unwrap();
        assert_eq!(a.token.expose_secret(), "s.abc");
        assert_eq!((a.lease_duration, a.renewable, a.capped), (60, true, false));
        let renew = json!({"auth": {"client_token": "", "lease_duration": 10, "renewable": true},
                           "warnings": ["TTL of \"1m0s\" exceeded the effective max_ttl of \"10s\"; TTL value is capped accordingly"]});
        let known = SecretString::from("s.abc".to_owned());
        let r = parse_auth(&renew, "auth/token/renew-self", Some(&known)).unwrap();
        assert_eq!(r.token.expose_secret(), "s.abc");
        assert!(r.capped);
        assert!(parse_auth(&json!({}), "p", None).is_err());
    }

    #[test]
    fn transient_errors_are_classified() {
        let status = |s| ApiError::Status {
            method: "GET",
            path: "p".into(),
            status: s,
            message: String::new(),
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(400).is_transient());
        assert!(status(403).is_permission_denied());
    }
}
