//! The only module that knows HTTP: it turns a request into a logical operation on a path,
//! authenticates the token, checks the ACL, routes to a handler and wraps the answer in
//! Vault's envelope. Handlers return [`EngineError`], mapped to a status once in
//! [`envelope::render_error`].

mod auth;
mod database;
pub mod envelope;
pub mod fields;
mod sys;
mod token;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response as HttpResponse;
use serde_json::{Map, Value};

use crate::auth::policy::Capability;
use crate::auth::token::TokenEntry;
use crate::core::Core;
use crate::engine::error::{EngineError, Result};
use envelope::Response;
use fields::Fields;

/// What a request asks to do, as Vault names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// GET.
    Read,
    /// LIST, or GET with `?list=true`.
    List,
    /// POST or PUT on an object that does not exist yet.
    Create,
    /// POST or PUT.
    Update,
    /// DELETE.
    Delete,
}

impl Operation {
    fn capability(self) -> Capability {
        match self {
            Operation::Read => Capability::Read,
            Operation::List => Capability::List,
            Operation::Create => Capability::Create,
            Operation::Update => Capability::Update,
            Operation::Delete => Capability::Delete,
        }
    }

    /// Whether this is a write (create or update).
    pub fn is_write(self) -> bool {
        matches!(self, Operation::Create | Operation::Update)
    }
}

/// A request after parsing and authentication.
#[derive(Debug)]
pub struct Request {
    /// The operation.
    pub op: Operation,
    /// The path below `/v1/`, without leading or trailing slash.
    pub path: String,
    /// Body fields (and query parameters for reads).
    pub data: Fields,
    /// The caller's token, when the path needs one.
    pub token: Option<TokenEntry>,
    /// Whether the caller holds `sudo` on this path.
    pub sudo: bool,
    /// The caller's address.
    pub remote: Option<IpAddr>,
}

impl Request {
    /// The caller's token; handlers on authenticated paths always have one.
    pub fn token(&self) -> Result<&TokenEntry> {
        self.token
            .as_ref()
            .ok_or_else(|| EngineError::PermissionDenied("permission denied".into()))
    }
}

/// Paths that need no token.
fn is_unauthenticated(path: &str) -> bool {
    matches!(path, "sys/health" | "sys/seal-status" | "sys/leader")
}

/// Paths that need `sudo` on top of the operation's capability (Vault's root paths).
fn needs_sudo(path: &str, op: Operation) -> bool {
    path == "sys/rotate"
        || path == "sys/leases"
        || path.starts_with("sys/leases/revoke-prefix/")
        || path.starts_with("sys/leases/revoke-force/")
        || (op == Operation::List && (path.starts_with("sys/leases/lookup")))
        || path.starts_with("auth/token/accessors")
        || path.starts_with("auth/token/revoke-orphan")
        // Vault's `auth/*` root path of the system backend: enabling, tuning and disabling
        // login methods. Listing them (`sys/auth`) is not a root path.
        || path.starts_with("sys/auth/")
}

/// Builds the router.
pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/v1/{*path}", axum::routing::any(handle))
        .with_state(core)
}

fn client_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned()).filter(|s| !s.is_empty());
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn parse_body(body: &Bytes) -> Result<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(EngineError::InvalidRequest(
            "request body must be a JSON object".into(),
        )),
        Err(e) => Err(EngineError::InvalidRequest(format!(
            "failed to parse JSON input: {e}"
        ))),
    }
}

async fn handle(
    State(core): State<Arc<Core>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let remote = Some(peer.ip());
    match serve(&core, method, uri, &headers, query, remote, body).await {
        Ok(response) => envelope::render(response, &request_id),
        Err(err) => envelope::render_error(&err),
    }
}

async fn serve(
    core: &Core,
    method: Method,
    uri: Uri,
    headers: &HeaderMap,
    query: Vec<(String, String)>,
    remote: Option<IpAddr>,
    body: Bytes,
) -> Result<Response> {
    let raw_path = uri.path().strip_prefix("/v1/").unwrap_or_default();
    let path = raw_path.trim_matches('/').to_owned();
    let list_query = query.iter().any(|(k, v)| k == "list" && v == "true");
    let op = match method.as_str() {
        "GET" if list_query => Operation::List,
        "GET" => Operation::Read,
        "LIST" => Operation::List,
        "POST" | "PUT" => Operation::Update,
        "DELETE" => Operation::Delete,
        _ => return Err(EngineError::UnsupportedOperation),
    };
    let mut data = parse_body(&body)?;
    if matches!(op, Operation::Read | Operation::List) {
        for (k, v) in query {
            if k != "list" {
                data.entry(k).or_insert(Value::String(v));
            }
        }
    }
    let mut request = Request {
        op,
        path,
        data: Fields(data),
        token: None,
        sudo: false,
        remote,
    };
    if is_unauthenticated(&request.path) {
        return route(core, &request).await;
    }
    // A login proves identity by its body, not by a token (hvac even sends a stale one).
    if auth::is_login(core, &request).await? {
        return route(core, &request).await;
    }
    let Some(token_text) = client_token(headers) else {
        return Err(EngineError::PermissionDenied("permission denied".into()));
    };
    let Some(token) = core.lookup_token(&token_text).await? else {
        return Err(EngineError::PermissionDenied("permission denied".into()));
    };
    if !crate::auth::cidr::allows(&token.bound_cidrs, remote) {
        // The caller learns only "permission denied"; the reason stays in the server log.
        tracing::warn!(
            accessor = %token.accessor,
            remote = ?remote,
            path = %request.path,
            "token used from outside its bound CIDRs"
        );
        return Err(EngineError::PermissionDenied("permission denied".into()));
    }
    if request.op == Operation::Update && exists(core, &request).await? == Some(false) {
        request.op = Operation::Create;
    }
    let acl = crate::auth::policy_store::acl_for(core, &token).await?;
    // Vault's LIST requests carry a trailing slash, and policies are written that way.
    let acl_path = if request.op == Operation::List {
        format!("{}/", request.path)
    } else {
        request.path.clone()
    };
    let decision = acl.allowed(&acl_path, request.op.capability());
    if !decision.allowed || (needs_sudo(&request.path, request.op) && !decision.sudo) {
        return Err(EngineError::PermissionDenied("permission denied".into()));
    }
    request.sudo = decision.sudo;
    crate::auth::token::spend_use(core, &token).await?;
    request.token = Some(token);
    route(core, &request).await
}

/// Whether the object a write targets exists (`None` when the path has no such notion).
async fn exists(core: &Core, request: &Request) -> Result<Option<bool>> {
    if let Some(rest) = request.path.strip_prefix("sys/") {
        return sys::exists(core, rest).await;
    }
    if let Some(below) = request.path.strip_prefix("auth/") {
        if below == "token" || below.starts_with("token/") {
            return Ok(None);
        }
        return auth::exists(core, below).await;
    }
    match crate::engine::mounts::resolve(core, &request.path).await? {
        Some((mount, rest)) => database::exists(core, &mount, &rest).await,
        None => Ok(None),
    }
}

async fn route(core: &Core, request: &Request) -> Result<Response> {
    if let Some(rest) = request.path.strip_prefix("sys/") {
        return sys::handle(core, request, rest).await;
    }
    if let Some(rest) = request.path.strip_prefix("auth/token/") {
        return token::handle(core, request, rest).await;
    }
    if request.path == "auth/token" {
        return token::handle(core, request, "").await;
    }
    if let Some(below) = request.path.strip_prefix("auth/") {
        return auth::handle(core, request, below).await;
    }
    match crate::engine::mounts::resolve(core, &request.path).await? {
        Some((mount, rest)) => database::handle(core, request, &mount, &rest).await,
        None => Err(EngineError::UnsupportedPath(format!(
            "no handler for route \"{}\". route entry not found.",
            request.path
        ))),
    }
}

/// The standard 405 for a path that does not take this operation.
fn unsupported<T>() -> Result<T> {
    Err(EngineError::UnsupportedOperation)
}

/// Splits `rest` into its first segment and the remainder.
fn split_first(rest: &str) -> (&str, &str) {
    match rest.split_once('/') {
        Some((a, b)) => (a, b),
        None => (rest, ""),
    }
}
