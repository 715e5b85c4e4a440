//! Response wrapping and control groups (approvals).
//!
//! A wrapped response is stored sealed under the HMAC of a single-use wrapping token; the
//! client gets `wrap_info` instead of the response and unwraps it once with
//! `sys/wrapping/unwrap`. A control group uses the same token: the request itself is
//! stored (not executed), approvers authorize it through `sys/control-group/authorize`, and
//! only when the requester unwraps after enough approvals is the original request run,
//! so a credential issued after approval has its full TTL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::policy::ControlGroup;
use super::token::TokenEntry;
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

/// A response as stored for unwrapping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredResponse {
    /// `data`.
    pub data: Option<Map<String, Value>>,
    /// `auth`.
    pub auth: Option<Value>,
    /// `lease_id`, `lease_duration`, `renewable`.
    pub lease: Option<(String, i64, bool)>,
    /// `warnings`.
    pub warnings: Vec<String>,
}

/// A request waiting for approvals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingRequest {
    /// `read`, `update`, ...
    pub operation: String,
    /// The path below `/v1/`.
    pub path: String,
    /// The request body (sealed with the record).
    pub data: Map<String, Value>,
    /// HMAC of the requester's token: the request runs as this token.
    pub requester_hmac: String,
    /// The requester's accessor.
    pub requester_accessor: String,
    /// The requester's display name.
    pub requester_name: String,
    /// What approval is needed.
    pub approvals_required: u32,
    /// Policies whose holders may approve.
    pub approver_policies: Vec<String>,
    /// Display names that may approve.
    pub approver_users: Vec<String>,
    /// Approvals so far: (accessor, display name, time).
    pub approvals: Vec<(String, String, DateTime<Utc>)>,
}

/// A wrapping token's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WrapRecord {
    accessor: String,
    creation_time: DateTime<Utc>,
    ttl: i64,
    creation_path: String,
    response: Option<StoredResponse>,
    pending: Option<PendingRequest>,
}

impl WrapRecord {
    fn expired(&self) -> bool {
        Utc::now() >= self.creation_time + chrono::Duration::seconds(self.ttl)
    }
}

fn key(core: &Core, token: &str) -> String {
    format!("wrap/token/{}", core.hmac(token))
}

fn accessor_key(accessor: &str) -> String {
    format!("wrap/accessor/{accessor}")
}

#[derive(Serialize, Deserialize)]
struct AccessorIndex {
    token_key: String,
}

fn wrap_info(token: &str, record: &WrapRecord) -> Value {
    json!({
        "token": token,
        "accessor": record.accessor,
        "ttl": record.ttl,
        "creation_time": record.creation_time.to_rfc3339(),
        "creation_path": record.creation_path,
        "wrapped_accessor": "",
    })
}

async fn store(core: &Core, record: &WrapRecord) -> Result<Zeroizing<String>> {
    let token = Zeroizing::new(format!("dbw.w.{}", crate::crypto::random_base62(32)));
    let token_key = key(core, &token);
    core.put_json(&token_key, record).await?;
    core.put_json(
        &accessor_key(&record.accessor),
        &AccessorIndex { token_key },
    )
    .await?;
    Ok(token)
}

/// Wraps a response: stores it and returns `wrap_info` for the client.
pub async fn wrap(core: &Core, path: &str, ttl: i64, response: StoredResponse) -> Result<Value> {
    if ttl <= 0 {
        return Err(invalid("wrap TTL must be positive"));
    }
    let record = WrapRecord {
        accessor: crate::crypto::random_base62(24),
        creation_time: Utc::now(),
        ttl,
        creation_path: path.to_owned(),
        response: Some(response),
        pending: None,
    };
    let token = store(core, &record).await?;
    Ok(wrap_info(&token, &record))
}

/// Stores a request that needs approvals and returns `wrap_info` for the requester.
pub async fn request_approval(
    core: &Core,
    group: &ControlGroup,
    requester: &TokenEntry,
    operation: &str,
    path: &str,
    data: Map<String, Value>,
) -> Result<Value> {
    let record = WrapRecord {
        accessor: crate::crypto::random_base62(24),
        creation_time: Utc::now(),
        ttl: group.ttl_seconds,
        creation_path: path.to_owned(),
        response: None,
        pending: Some(PendingRequest {
            operation: operation.to_owned(),
            path: path.to_owned(),
            data,
            requester_hmac: requester.id_hmac.clone(),
            requester_accessor: requester.accessor.clone(),
            requester_name: requester.display_name.clone(),
            approvals_required: group.approvals,
            approver_policies: group.approver_policies.clone(),
            approver_users: group.approver_users.clone(),
            approvals: Vec::new(),
        }),
    };
    let token = store(core, &record).await?;
    tracing::info!(accessor = %record.accessor, path, requester = %requester.display_name, "request waits for control group approval");
    metrics::counter!("dbwarden_control_group_requests_total").increment(1);
    Ok(wrap_info(&token, &record))
}

async fn by_token(core: &Core, token: &str) -> Result<Option<(String, WrapRecord)>> {
    let k = key(core, token);
    Ok(core.get_json::<WrapRecord>(&k).await?.map(|r| (k, r)))
}

async fn by_accessor(core: &Core, accessor: &str) -> Result<(String, WrapRecord)> {
    let index = core
        .get_json::<AccessorIndex>(&accessor_key(accessor))
        .await?
        .ok_or_else(|| invalid("control group request not found"))?;
    let record = core
        .get_json::<WrapRecord>(&index.token_key)
        .await?
        .ok_or_else(|| invalid("control group request not found"))?;
    if record.expired() {
        forget(core, &index.token_key, &record).await?;
        return Err(invalid("control group request has expired"));
    }
    Ok((index.token_key, record))
}

async fn forget(core: &Core, token_key: &str, record: &WrapRecord) -> Result<()> {
    core.delete(&accessor_key(&record.accessor)).await?;
    core.delete(token_key).await
}

/// Whether `token` is a live wrapping token (so it may call `sys/wrapping/*` by itself).
pub async fn is_wrapping_token(core: &Core, token: &str) -> Result<bool> {
    Ok(token.starts_with("dbw.w.")
        && by_token(core, token)
            .await?
            .is_some_and(|(_, r)| !r.expired()))
}

/// `sys/wrapping/lookup`.
pub async fn lookup(core: &Core, token: &str) -> Result<Value> {
    match by_token(core, token).await? {
        Some((_, r)) if !r.expired() => Ok(json!({
            "creation_path": r.creation_path,
            "creation_time": r.creation_time.to_rfc3339(),
            "creation_ttl": r.ttl,
        })),
        _ => Err(invalid("wrapping token is not valid or does not exist")),
    }
}

/// What unwrapping yields.
pub enum Unwrapped {
    /// A stored response.
    Response(StoredResponse),
    /// An approved request to run now, as its requester.
    Approved(PendingRequest),
}

/// `sys/wrapping/unwrap`: single use. A control group request that lacks approvals is
/// kept (the requester may try again later).
pub async fn unwrap(core: &Core, token: &str) -> Result<Unwrapped> {
    let Some((token_key, record)) = by_token(core, token).await? else {
        return Err(invalid("wrapping token is not valid or does not exist"));
    };
    if record.expired() {
        forget(core, &token_key, &record).await?;
        return Err(invalid("wrapping token is not valid or does not exist"));
    }
    if let Some(pending) = &record.pending
        && (pending.approvals.len() as u32) < pending.approvals_required
    {
        return Err(invalid("Request needs further approval"));
    }
    forget(core, &token_key, &record).await?;
    match (record.response, record.pending) {
        (Some(response), _) => Ok(Unwrapped::Response(response)),
        (None, Some(pending)) => Ok(Unwrapped::Approved(pending)),
        (None, None) => Err(EngineError::Internal("empty wrapping record".into())),
    }
}

fn may_approve(pending: &PendingRequest, approver: &TokenEntry) -> bool {
    approver
        .policies
        .iter()
        .any(|p| pending.approver_policies.contains(p) || p == "root")
        || pending.approver_users.contains(&approver.display_name)
}

fn is_requester(pending: &PendingRequest, approver: &TokenEntry) -> bool {
    // The same token, a token the requester created, or the same login identity.
    approver.id_hmac == pending.requester_hmac
        || approver.parent.as_deref() == Some(pending.requester_hmac.as_str())
        || (approver.display_name == pending.requester_name
            && approver.display_name != "token"
            && approver.display_name != "root")
}

/// `sys/control-group/authorize`: records an approval from `approver`.
pub async fn authorize(core: &Core, accessor: &str, approver: &TokenEntry) -> Result<bool> {
    let (token_key, mut record) = by_accessor(core, accessor).await?;
    let pending = record
        .pending
        .as_mut()
        .ok_or_else(|| invalid("not a control group request"))?;
    if is_requester(pending, approver) {
        return Err(EngineError::PermissionDenied(
            "a requester cannot approve their own request".into(),
        ));
    }
    if !may_approve(pending, approver) {
        return Err(EngineError::PermissionDenied(
            "permission denied: not an approver for this request".into(),
        ));
    }
    if !pending
        .approvals
        .iter()
        .any(|(a, _, _)| a == &approver.accessor)
    {
        pending.approvals.push((
            approver.accessor.clone(),
            approver.display_name.clone(),
            Utc::now(),
        ));
        tracing::info!(accessor, approver = %approver.display_name, approvals = pending.approvals.len(), "control group request approved");
    }
    let approved = pending.approvals.len() as u32 >= pending.approvals_required;
    core.put_json(&token_key, &record).await?;
    Ok(approved)
}

/// `sys/control-group/request`: the state of one request.
pub async fn status(core: &Core, accessor: &str) -> Result<Value> {
    let (_, record) = by_accessor(core, accessor).await?;
    let pending = record
        .pending
        .ok_or_else(|| invalid("not a control group request"))?;
    Ok(json!({
        "approved": pending.approvals.len() as u32 >= pending.approvals_required,
        "request_path": pending.path,
        "request_entity": { "id": pending.requester_accessor, "name": pending.requester_name },
        "authorizations": pending.approvals.iter().map(|(a, n, t)| json!({"entity_id": a, "entity_name": n, "time": t.to_rfc3339()})).collect::<Vec<_>>(),
        "approvals_required": pending.approvals_required,
        "expires": (record.creation_time + chrono::Duration::seconds(record.ttl)).to_rfc3339(),
    }))
}

/// Pending requests `approver` may approve (LIST `sys/control-group/request`).
pub async fn pending_for(core: &Core, approver: &TokenEntry) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for accessor in core.list("wrap/accessor/").await? {
        if let Ok((_, record)) = by_accessor(core, &accessor).await
            && let Some(p) = &record.pending
            && may_approve(p, approver)
            && !is_requester(p, approver)
        {
            out.push(accessor);
        }
    }
    Ok(out)
}
