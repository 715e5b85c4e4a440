//! The only module that knows HTTP: it turns a request into a logical operation on a path,
//! authenticates the token, checks the ACL, routes to a handler and wraps the answer in
//! Vault's envelope. Handlers return [`EngineError`], mapped to a status once in
//! [`envelope::render_error`].

mod auth;
mod catalog;
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

use crate::audit::{RequestInfo as AuditInfo, ResponseInfo};
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
        || path.starts_with("sys/audit")
        || path.starts_with("sys/leases/revoke-prefix/")
        || path.starts_with("sys/leases/revoke-force/")
        || (op == Operation::List && (path.starts_with("sys/leases/lookup")))
        || path.starts_with("auth/token/accessors")
        || path.starts_with("auth/token/revoke-orphan")
        || path == "sys/plugins/catalog"
        || path.starts_with("sys/plugins/catalog/")
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
    let mut audit = AuditInfo {
        id: request_id.clone(),
        remote_address: peer.ip().to_string(),
        ..Default::default()
    };
    let result = serve(
        &core, method, uri, &headers, query, remote, body, &mut audit,
    )
    .await;
    // A request that was audited gets a response entry too; if no device can record
    // it, the client is told so (the action itself has happened, as in Vault).
    let audited = if audit.operation.is_empty() {
        Ok(())
    } else {
        core.audit.log_response(&audit, &response_info(&result))
    };
    match (result, audited) {
        (_, Err(err)) => envelope::render_error(&err),
        (Ok(response), Ok(())) => envelope::render(response, &request_id),
        (Err(err), Ok(())) => envelope::render_error(&err),
    }
}

fn response_info(result: &Result<Response>) -> ResponseInfo {
    match result {
        Ok(r) => ResponseInfo {
            data: r.data.clone(),
            auth: r.auth.clone(),
            lease_id: r
                .lease
                .as_ref()
                .map(|(id, _, _)| id.clone())
                .filter(|id| !id.is_empty()),
            warnings: r.warnings.clone(),
            error: None,
        },
        Err(e) => ResponseInfo {
            error: Some(e.to_string()),
            ..Default::default()
        },
    }
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Read => "read",
        Operation::List => "list",
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    core: &Core,
    method: Method,
    uri: Uri,
    headers: &HeaderMap,
    query: Vec<(String, String)>,
    remote: Option<IpAddr>,
    body: Bytes,
    audit: &mut AuditInfo,
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
    audit.operation = operation_name(request.op).to_owned();
    audit.path = request.path.clone();
    audit.data = request.data.0.clone();
    let token_text = client_token(headers);
    audit.client_token = token_text.clone();
    // A login proves identity by its body, not by a token (hvac even sends a stale one,
    // which is ignored and not recorded). It is audited like any request (the audit HMACs
    // the JWT or secret id in the body), and its answer may be wrapped.
    if auth::is_login(core, &request).await? {
        audit.client_token = None;
        audit.allowed = true;
        core.audit.log_request(audit, None)?;
        let response = route(core, &request).await?;
        return wrap_if_asked(core, headers, &request.path, response).await;
    }
    // A wrapping token is its own credential, for looking up and unwrapping itself only.
    if let Some(text) = &token_text
        && matches!(
            request.path.as_str(),
            "sys/wrapping/unwrap" | "sys/wrapping/lookup"
        )
        && crate::auth::wrapping::is_wrapping_token(core, text).await?
    {
        audit.display_name = "response-wrapping".into();
        audit.allowed = true;
        core.audit.log_request(audit, None)?;
        request
            .data
            .0
            .insert("token".into(), Value::String(text.clone()));
        return route(core, &request).await;
    }
    let token = match &token_text {
        Some(text) => core.lookup_token(text).await?,
        None => None,
    };
    let Some(token) = token else {
        return denied(core, audit);
    };
    audit.accessor = Some(token.accessor.clone());
    audit.display_name = token.display_name.clone();
    audit.policies = token.policies.clone();
    if !crate::auth::cidr::allows(&token.bound_cidrs, remote) {
        // The caller learns only "permission denied"; the reason stays in the server log.
        tracing::warn!(
            accessor = %token.accessor,
            remote = ?remote,
            path = %request.path,
            "token used from outside its bound CIDRs"
        );
        return denied(core, audit);
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
    let context = crate::auth::policy::RequestContext::now(remote);
    let decision = acl.allowed_in(&acl_path, request.op.capability(), &context);
    audit.operation = operation_name(request.op).to_owned();
    if let Some(reason) = decision.failed_condition {
        // The caller holds a policy for this path; saying which condition failed helps
        // them without revealing the condition's values.
        core.audit.log_request(audit, Some(reason))?;
        return Err(EngineError::PermissionDenied(format!(
            "permission denied: {reason}"
        )));
    }
    if !decision.allowed || (needs_sudo(&request.path, request.op) && !decision.sudo) {
        return denied(core, audit);
    }
    audit.allowed = true;
    audit.granting_policies = decision.granting_policies.clone();
    // Fail closed: nothing runs unless an enabled audit device recorded it.
    core.audit.log_request(audit, None)?;
    request.sudo = decision.sudo;
    crate::auth::token::spend_use(core, &token).await?;
    if let Some(group) = &decision.control_group {
        // Not executed now: it runs when the requester unwraps after enough approvals.
        let info = crate::auth::wrapping::request_approval(
            core,
            group,
            &token,
            operation_name(request.op),
            &request.path,
            request.data.0.clone(),
        )
        .await?;
        return Ok(Response {
            wrap_info: Some(info),
            ..Default::default()
        });
    }
    request.token = Some(token);
    let response = route(core, &request).await?;
    wrap_if_asked(core, headers, &request.path, response).await
}

/// Honours `X-Vault-Wrap-TTL`: the response is stored and only `wrap_info` returned.
async fn wrap_if_asked(
    core: &Core,
    headers: &HeaderMap,
    path: &str,
    response: Response,
) -> Result<Response> {
    let Some(ttl) = headers
        .get("x-vault-wrap-ttl")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(response);
    };
    let ttl = fields::parse_duration(ttl)
        .ok_or_else(|| EngineError::InvalidRequest("invalid X-Vault-Wrap-TTL".into()))?;
    if response.data.is_none() && response.auth.is_none() && response.lease.is_none() {
        return Ok(response);
    }
    let stored = crate::auth::wrapping::StoredResponse {
        data: response.data,
        auth: response.auth,
        lease: response.lease,
        warnings: response.warnings,
    };
    let info = crate::auth::wrapping::wrap(core, path, ttl, stored).await?;
    Ok(Response {
        wrap_info: Some(info),
        ..Default::default()
    })
}

/// Runs a request that waited for approvals, as its requester, with today's policies.
pub(crate) async fn replay(
    core: &Core,
    pending: crate::auth::wrapping::PendingRequest,
    remote: Option<IpAddr>,
) -> Result<Response> {
    let token = crate::auth::token::lookup_hmac(core, &pending.requester_hmac)
        .await?
        .ok_or_else(|| {
            EngineError::PermissionDenied("the requesting token is no longer valid".into())
        })?;
    if !crate::auth::cidr::allows(&token.bound_cidrs, remote) {
        tracing::warn!(accessor = %token.accessor, remote = ?remote, "approved request replayed from outside the token's bound CIDRs");
        return Err(EngineError::PermissionDenied("permission denied".into()));
    }
    let op = match pending.operation.as_str() {
        "read" => Operation::Read,
        "list" => Operation::List,
        "create" => Operation::Create,
        "delete" => Operation::Delete,
        _ => Operation::Update,
    };
    let acl = crate::auth::policy_store::acl_for(core, &token).await?;
    let decision = acl.allowed_in(
        &pending.path,
        op.capability(),
        &crate::auth::policy::RequestContext::now(remote),
    );
    if !decision.allowed {
        return Err(EngineError::PermissionDenied("permission denied".into()));
    }
    let request = Request {
        op,
        path: pending.path,
        data: Fields(pending.data),
        token: Some(token),
        sudo: decision.sudo,
        remote,
    };
    Box::pin(route(core, &request)).await
}

/// Records a refused request (if audit devices are enabled) and refuses it.
fn denied(core: &Core, audit: &AuditInfo) -> Result<Response> {
    core.audit.log_request(audit, Some("permission denied"))?;
    Err(EngineError::PermissionDenied("permission denied".into()))
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
