//! Userpass paths: `users/:name` (plus `password`, `policies`, `totp`, `unlock`) and
//! `login/:name`.
//!
//! TOTP enrolment is `POST users/:name/totp`: it returns the `otpauth://` URL and the base32
//! secret once (a new POST replaces the secret); `GET` says whether the user is enrolled and
//! since when; `DELETE` removes the factor. From then on `login/:name` needs `totp` with the
//! current 6-digit code.

use serde_json::{Map, Value, json};

use super::{
    apply_token_params, login_response, no_route, rfc3339, secret_field, token_params_json,
};
use crate::auth::login::TokenParams;
use crate::auth::mounts::AuthMount;
use crate::auth::userpass::{self, User};
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};
use crate::http::envelope::Response;
use crate::http::{Operation, Request, split_first, unsupported};

/// Whether the object a write targets exists.
pub async fn exists(core: &Core, mount: &AuthMount, rest: &str) -> Result<Option<bool>> {
    match split_first(rest) {
        ("users", name) if !name.is_empty() && !name.contains('/') => Ok(Some(
            userpass::read_user(core, mount, name).await?.is_some(),
        )),
        _ => Ok(None),
    }
}

/// Serves `auth/<mount>/<rest>` of a userpass mount.
pub async fn handle(core: &Core, req: &Request, mount: &AuthMount, rest: &str) -> Result<Response> {
    let (head, tail) = split_first(rest);
    match head {
        "login" if !tail.is_empty() && !tail.contains('/') => {
            if !req.op.is_write() {
                return unsupported();
            }
            let password = secret_field(&req.data, "password")?.unwrap_or_default();
            let totp = secret_field(&req.data, "totp")?;
            // The token's path names the user as stored (lower case), whatever the caller typed.
            let path = userpass::normalize_name(tail)
                .map(|n| format!("auth/{}/login/{n}", mount.path))
                .unwrap_or_else(|_| req.path.clone());
            let (token, entry) =
                userpass::login(core, mount, &path, tail, password, totp, req.remote).await?;
            Ok(login_response(&token, &entry))
        }
        "users" if tail.is_empty() => match req.op {
            Operation::List => Response::keys(userpass::list_users(core, mount).await?),
            _ => unsupported(),
        },
        "users" => {
            let (name, sub) = split_first(tail);
            let name = userpass::normalize_name(name)?;
            user_routes(core, req, mount, &name, sub).await
        }
        _ => no_route(mount, rest),
    }
}

async fn user_routes(
    core: &Core,
    req: &Request,
    mount: &AuthMount,
    name: &str,
    sub: &str,
) -> Result<Response> {
    let missing = || invalid(format!("user \"{name}\" does not exist"));
    match (sub, req.op) {
        ("", Operation::Read) => {
            let user = userpass::read_user(core, mount, name)
                .await?
                .ok_or(EngineError::NotFound)?;
            Ok(Response::data(user_json(core, mount, &user).await?))
        }
        ("", op) if op.is_write() => {
            write_user(core, req, mount, name).await?;
            Ok(Response::empty())
        }
        ("", Operation::Delete) => {
            userpass::delete_user(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("password", op) if op.is_write() => {
            let mut user = userpass::read_user(core, mount, name)
                .await?
                .ok_or_else(missing)?;
            let password =
                secret_field(&req.data, "password")?.ok_or_else(|| invalid("missing password"))?;
            user.password_hash = userpass::hash_password(password).await?;
            userpass::write_user(core, mount, &user).await?;
            // A reset password is a fresh start.
            userpass::unlock(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("policies", op) if op.is_write() => {
            let mut user = userpass::read_user(core, mount, name)
                .await?
                .ok_or_else(missing)?;
            let key = if req.data.has("token_policies") {
                "token_policies"
            } else {
                "policies"
            };
            user.token.policies = req
                .data
                .comma_list(key)?
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.to_lowercase())
                .collect();
            userpass::write_user(core, mount, &user).await?;
            Ok(Response::empty())
        }
        ("totp", op) if op.is_write() => {
            let enrolment = userpass::enrol_totp(core, mount, name).await?;
            tracing::info!(mount = %mount.path, user = %name, "TOTP factor enrolled");
            Ok(Response::data(json!({
                "url": enrolment.url.as_str(),
                "secret": enrolment.secret.as_str(),
                "issuer": enrolment.issuer,
                "account_name": enrolment.account_name,
                "algorithm": "SHA1",
                "digits": 6,
                "period": 30,
            }))
            .with_warnings(vec![
                "The TOTP secret is shown only now; store it in an authenticator app.".into(),
            ]))
        }
        ("totp", Operation::Read) => {
            if userpass::read_user(core, mount, name).await?.is_none() {
                return Err(EngineError::NotFound);
            }
            let enrolled = userpass::totp_enrolled(core, mount, name).await?;
            Ok(Response::data(json!({
                "enabled": enrolled.is_some(),
                "created": enrolled.map(rfc3339),
            })))
        }
        ("totp", Operation::Delete) => {
            userpass::delete_totp(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("unlock", op) if op.is_write() => {
            userpass::unlock(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("" | "password" | "policies" | "totp" | "unlock", _) => unsupported(),
        (other, _) => no_route(mount, &format!("users/{name}/{other}")),
    }
}

async fn write_user(core: &Core, req: &Request, mount: &AuthMount, name: &str) -> Result<()> {
    let d = &req.data;
    let existing = userpass::read_user(core, mount, name).await?;
    let password = secret_field(d, "password")?;
    let password_hash = match (password, &existing) {
        (Some(p), _) => userpass::hash_password(p).await?,
        (None, Some(user)) => user.password_hash.clone(),
        (None, None) => return Err(invalid("missing password")),
    };
    let mut token: TokenParams = existing.map(|u| u.token).unwrap_or_default();
    apply_token_params(d, &mut token)?;
    userpass::write_user(
        core,
        mount,
        &User {
            username: name.to_owned(),
            password_hash,
            token,
        },
    )
    .await
}

async fn user_json(core: &Core, mount: &AuthMount, user: &User) -> Result<Value> {
    let mut out = Map::new();
    token_params_json(&user.token, &mut out);
    // dbwarden's additions: the second factor and the lock-out, for operators.
    let enrolled = userpass::totp_enrolled(core, mount, &user.username).await?;
    out.insert("totp_enabled".into(), json!(enrolled.is_some()));
    let lock = userpass::lockout_status(core, mount, &user.username).await?;
    out.insert("failed_logins".into(), json!(lock.failures));
    out.insert(
        "locked_until".into(),
        lock.locked_until.map_or(Value::Null, rfc3339),
    );
    Ok(Value::Object(out))
}
