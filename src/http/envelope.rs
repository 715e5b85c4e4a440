//! The Vault response envelope, and the one place where errors become HTTP statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use dbwarden_plugin::BackendError;
use serde_json::{Map, Value, json};

use crate::engine::error::EngineError;

/// A logical response, before it is wrapped in Vault's envelope.
#[derive(Debug, Default)]
pub struct Response {
    /// `data`.
    pub data: Option<Map<String, Value>>,
    /// `lease_id`, `lease_duration`, `renewable`.
    pub lease: Option<(String, i64, bool)>,
    /// `auth`.
    pub auth: Option<Value>,
    /// `warnings`.
    pub warnings: Vec<String>,
    /// 202 instead of 200/204.
    pub accepted: bool,
    /// A body sent as is, without the envelope (`sys/health` in Vault).
    pub raw: Option<Value>,
    /// A non-JSON body and its content type (`sys/metrics`).
    pub text: Option<(String, &'static str)>,
    /// `wrap_info`: the response (or request) is held behind a wrapping token.
    pub wrap_info: Option<Value>,
}

impl Response {
    /// 204 No Content.
    pub fn empty() -> Self {
        Response::default()
    }

    /// 200 with `data`.
    pub fn data(value: Value) -> Self {
        Response {
            data: Some(value.as_object().cloned().unwrap_or_default()),
            ..Default::default()
        }
    }

    /// 200 with `data.keys`, or 404 when there are none (as Vault answers empty lists).
    pub fn keys(keys: Vec<String>) -> Result<Self, EngineError> {
        if keys.is_empty() {
            return Err(EngineError::NotFound);
        }
        Ok(Response::data(json!({ "keys": keys })))
    }

    /// 200 with a bare JSON body.
    pub fn raw(value: Value) -> Self {
        Response {
            raw: Some(value),
            ..Default::default()
        }
    }

    /// 200 with a text body of the given content type.
    pub fn text(body: String, content_type: &'static str) -> Self {
        Response {
            text: Some((body, content_type)),
            ..Default::default()
        }
    }

    /// Adds warnings.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings.extend(warnings);
        self
    }
}

fn json_response(status: StatusCode, body: Option<Value>) -> HttpResponse {
    let mut response = match body {
        Some(body) => (status, body.to_string()).into_response(),
        None => status.into_response(),
    };
    // hvac compares Content-Type to "application/json" exactly: no charset.
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Wraps a logical response in the envelope.
pub fn render(response: Response, request_id: &str) -> HttpResponse {
    if let Some((body, content_type)) = response.text {
        let mut http = (StatusCode::OK, body).into_response();
        http.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        return http;
    }
    if let Some(raw) = response.raw {
        return json_response(StatusCode::OK, Some(raw));
    }
    let empty = response.data.is_none()
        && response.lease.is_none()
        && response.wrap_info.is_none()
        && response.auth.is_none()
        && response.warnings.is_empty();
    if empty {
        let status = if response.accepted {
            StatusCode::ACCEPTED
        } else {
            StatusCode::NO_CONTENT
        };
        return json_response(status, None);
    }
    let (lease_id, lease_duration, renewable) = response.lease.unwrap_or_default();
    let body = json!({
        "request_id": request_id,
        "lease_id": lease_id,
        "renewable": renewable,
        "lease_duration": lease_duration,
        "data": response.data,
        "wrap_info": response.wrap_info,
        "warnings": if response.warnings.is_empty() { Value::Null } else { json!(response.warnings) },
        "auth": response.auth,
    });
    let status = if response.accepted {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    json_response(status, Some(body))
}

/// Maps an engine error to a status and `{"errors": [...]}`.
pub fn render_error(err: &EngineError) -> HttpResponse {
    let (status, message) = match err {
        EngineError::NotFound => {
            return json_response(StatusCode::NOT_FOUND, Some(json!({"errors": []})));
        }
        EngineError::InvalidRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
        EngineError::PermissionDenied(m) => (StatusCode::FORBIDDEN, m.clone()),
        EngineError::UnsupportedPath(m) => (StatusCode::NOT_FOUND, m.clone()),
        EngineError::UnsupportedOperation => (StatusCode::METHOD_NOT_ALLOWED, err.to_string()),
        EngineError::Backend(BackendError::InvalidConfig(_) | BackendError::InvalidRequest(_)) => {
            (StatusCode::BAD_REQUEST, err.to_string())
        }
        EngineError::Backend(_) | EngineError::Internal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
        }
        EngineError::Storage(_) | EngineError::Barrier(_) | EngineError::Seal(_) => {
            tracing::error!(error = %err, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log".to_owned(),
            )
        }
    };
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), error = %message, "request failed");
    }
    json_response(status, Some(json!({ "errors": [message] })))
}
