//! Userpass: people (DBAs) log in with a username and a password, optionally with a TOTP
//! code as a second factor, as in Vault's userpass plus lock-out.
//!
//! - Passwords are stored only as Argon2id hashes (RustCrypto `argon2`, OWASP parameters,
//!   a random salt per hash). Hashing costs about 25 ms of CPU, so it runs on the blocking
//!   pool and never stalls other requests.
//! - Every failure answers the same message, and a login for a user that does not exist is
//!   verified against a dummy hash, so neither the answer nor its timing says whether the
//!   user exists. A locked-out user gets the same answer too (the lock-out is visible to
//!   operators in the server log and in `users/:name`).
//! - TOTP (RFC 6238: SHA-1, 6 digits, 30 s, one step of skew either way) through `totp-rs`.
//!   A code is accepted once: the step it matched is remembered, and older or equal steps
//!   are refused, so a code seen over a shoulder cannot be replayed.
//!
//! Storage below the mount: `user/<name>` (the hash and token settings), `totp/<name>` (the
//! TOTP secret, sealed by the barrier like everything else), `state/<name>` (failure
//! counter, lock-out, last TOTP step).

use std::net::IpAddr;
use std::sync::OnceLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::login::{self, Identity, TokenParams};
use super::mounts::AuthMount;
use super::token::TokenEntry;
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

/// The one answer to every failed login, whatever failed.
pub const INVALID_LOGIN: &str = "invalid username or password";

/// Issuer shown by authenticator apps.
const TOTP_ISSUER: &str = "dbwarden";

/// A user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The username (lower case, as Vault stores it).
    pub username: String,
    /// PHC string of the Argon2id hash.
    pub password_hash: String,
    /// Settings of the tokens its logins get.
    pub token: TokenParams,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TotpSecret {
    /// Base32 secret (sealed in storage; shown to the user once at enrolment).
    secret: String,
    created: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct LoginState {
    failures: u32,
    last_failure: i64,
    locked_until: Option<i64>,
    totp_last_step: Option<u64>,
}

/// A fresh TOTP enrolment: the secret is shown once.
#[derive(Debug)]
pub struct TotpEnrollment {
    /// Base32 secret, for manual entry in an authenticator app.
    pub secret: Zeroizing<String>,
    /// `otpauth://totp/...` URL (usually shown as a QR code).
    pub url: Zeroizing<String>,
    /// Issuer in the URL.
    pub issuer: String,
    /// Account name in the URL.
    pub account_name: String,
}

/// What operators may see of a user's lock-out.
#[derive(Debug, Clone, Default)]
pub struct LockoutStatus {
    /// Consecutive failures counted now.
    pub failures: u32,
    /// Unix seconds until which the user is locked, if locked now.
    pub locked_until: Option<i64>,
}

/// Normalises a username (Vault lower-cases them).
pub fn normalize_name(name: &str) -> Result<String> {
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.contains('/') {
        return Err(invalid("username must be non-empty and contain no '/'"));
    }
    Ok(name)
}

fn user_key(mount: &AuthMount, name: &str) -> String {
    mount.key(&format!("user/{name}"))
}

fn totp_key(mount: &AuthMount, name: &str) -> String {
    mount.key(&format!("totp/{name}"))
}

fn state_key(mount: &AuthMount, name: &str) -> String {
    mount.key(&format!("state/{name}"))
}

/// Hashes a password with Argon2id (on the blocking pool).
pub async fn hash_password(password: Zeroizing<String>) -> Result<String> {
    if password.is_empty() {
        return Err(invalid("password must not be empty"));
    }
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| EngineError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| EngineError::Internal(format!("password hashing task failed: {e}")))?
}

/// A hash of a random password, computed once, to verify against when the user is missing
/// so that the time a failure takes does not reveal whether the user exists.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = crate::crypto::random_base62(32);
        Argon2::default()
            .hash_password(random.as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

async fn verify_password(password: Zeroizing<String>, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        // Build the dummy hash even when the user exists, so that only the very first login
        // of the process (not the first one for a missing user) pays for creating it.
        let dummy = dummy_hash();
        let hash = hash.as_deref().unwrap_or(dummy);
        Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Reads a user.
pub async fn read_user(core: &Core, mount: &AuthMount, name: &str) -> Result<Option<User>> {
    let name = normalize_name(name)?;
    core.get_json(&user_key(mount, &name)).await
}

/// Lists usernames.
pub async fn list_users(core: &Core, mount: &AuthMount) -> Result<Vec<String>> {
    core.list(&mount.key("user/")).await
}

/// Stores a user.
pub async fn write_user(core: &Core, mount: &AuthMount, user: &User) -> Result<()> {
    user.token.validate()?;
    if user.password_hash.is_empty() {
        return Err(invalid("missing password"));
    }
    core.put_json(&user_key(mount, &user.username), user).await
}

/// Deletes a user with its TOTP enrolment and lock-out state.
pub async fn delete_user(core: &Core, mount: &AuthMount, name: &str) -> Result<()> {
    let name = normalize_name(name)?;
    core.delete(&totp_key(mount, &name)).await?;
    core.delete(&state_key(mount, &name)).await?;
    core.delete(&user_key(mount, &name)).await
}

/// Enrols (or re-enrols) a user for TOTP; the secret and URL are returned once.
pub async fn enrol_totp(core: &Core, mount: &AuthMount, name: &str) -> Result<TotpEnrollment> {
    let name = normalize_name(name)?;
    if read_user(core, mount, &name).await?.is_none() {
        return Err(invalid(format!("user {name:?} does not exist")));
    }
    let bytes = Zeroizing::new(crate::crypto::random_bytes::<20>().to_vec());
    // An account name may not contain ':' in an otpauth URL.
    let account_name = format!("{name}@{}", mount.path).replace(':', "_");
    let totp = build_totp(&bytes, &account_name)?;
    let url = Zeroizing::new(
        totp.to_url()
            .map_err(|e| EngineError::Internal(format!("building the otpauth URL failed: {e}")))?,
    );
    let secret = Zeroizing::new(totp.secret().to_base32());
    core.put_json(
        &totp_key(mount, &name),
        &TotpSecret {
            secret: secret.to_string(),
            created: Utc::now().timestamp(),
        },
    )
    .await?;
    // A new secret starts a new sequence of steps.
    let _guard = core.auth.bookkeeping.lock().await;
    let mut state = load_state(core, mount, &name).await?;
    state.totp_last_step = None;
    store_state(core, mount, &name, &state).await?;
    Ok(TotpEnrollment {
        secret,
        url,
        issuer: TOTP_ISSUER.to_owned(),
        account_name,
    })
}

fn build_totp(secret: &[u8], account_name: &str) -> Result<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(account_name)
        .with_issuer(Some(TOTP_ISSUER))
        .build()
        .map_err(|e| EngineError::Internal(format!("TOTP setup failed: {e}")))
}

/// Unix seconds of the user's TOTP enrolment, if enrolled.
pub async fn totp_enrolled(core: &Core, mount: &AuthMount, name: &str) -> Result<Option<i64>> {
    let name = normalize_name(name)?;
    Ok(core
        .get_json::<TotpSecret>(&totp_key(mount, &name))
        .await?
        .map(|t| t.created))
}

/// Removes a user's TOTP factor.
pub async fn delete_totp(core: &Core, mount: &AuthMount, name: &str) -> Result<()> {
    let name = normalize_name(name)?;
    core.delete(&totp_key(mount, &name)).await
}

async fn load_state(core: &Core, mount: &AuthMount, name: &str) -> Result<LoginState> {
    Ok(core
        .get_json(&state_key(mount, name))
        .await?
        .unwrap_or_default())
}

async fn store_state(core: &Core, mount: &AuthMount, name: &str, state: &LoginState) -> Result<()> {
    if *state == LoginState::default() {
        core.delete(&state_key(mount, name)).await
    } else {
        core.put_json(&state_key(mount, name), state).await
    }
}

/// Applies the mount's counter reset and lock-out expiry to a stored state.
fn current(state: &mut LoginState, mount: &AuthMount, now: i64) {
    let cfg = &mount.config.lockout;
    if state.locked_until.is_some_and(|t| t <= now) {
        state.locked_until = None;
        state.failures = 0;
    }
    if state.locked_until.is_none()
        && state.failures > 0
        && now - state.last_failure >= cfg.counter_reset
    {
        state.failures = 0;
    }
}

/// The lock-out status of a user, for operators.
pub async fn lockout_status(core: &Core, mount: &AuthMount, name: &str) -> Result<LockoutStatus> {
    let name = normalize_name(name)?;
    let mut state = load_state(core, mount, &name).await?;
    current(&mut state, mount, Utc::now().timestamp());
    Ok(LockoutStatus {
        failures: state.failures,
        locked_until: state.locked_until,
    })
}

/// Clears a user's failure counter and lock-out (an operator's action, or a new password).
pub async fn unlock(core: &Core, mount: &AuthMount, name: &str) -> Result<()> {
    let name = normalize_name(name)?;
    let _guard = core.auth.bookkeeping.lock().await;
    let mut state = load_state(core, mount, &name).await?;
    state.failures = 0;
    state.last_failure = 0;
    state.locked_until = None;
    store_state(core, mount, &name, &state).await
}

/// `login/:username`: checks the password, the TOTP code when enrolled, the lock-out and
/// the caller's network, and issues the token.
pub async fn login(
    core: &Core,
    mount: &AuthMount,
    path: &str,
    username: &str,
    password: Zeroizing<String>,
    totp_code: Option<Zeroizing<String>>,
    remote: Option<IpAddr>,
) -> Result<(Zeroizing<String>, TokenEntry)> {
    let failed = || EngineError::InvalidRequest(INVALID_LOGIN.to_owned());
    let name = normalize_name(username).map_err(|_| failed())?;
    let user = read_user(core, mount, &name).await?;
    // Always pay for one Argon2id verification, user or not.
    let password_ok =
        verify_password(password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let Some(user) = user else {
        tracing::info!(mount = %mount.path, "userpass login failed");
        return Err(failed());
    };
    let now = Utc::now().timestamp();
    let totp_step = match core.get_json::<TotpSecret>(&totp_key(mount, &name)).await? {
        None => Ok(None),
        Some(secret) => {
            let bytes = totp_rs::Secret::try_from_base32(&secret.secret)
                .map_err(|_| EngineError::Internal("stored TOTP secret is unreadable".into()))?;
            let totp = build_totp(&bytes, &name)?;
            match totp_code.as_deref().map(|c| c.trim()) {
                Some(code) if !code.is_empty() => match totp.check(code, now as u64) {
                    Some(step) => Ok(Some(step)),
                    None => Err("wrong TOTP code"),
                },
                _ => Err("missing TOTP code"),
            }
        }
    };
    let network_ok = super::cidr::allows(&user.token.bound_cidrs, remote);
    // Bookkeeping under the lock, so concurrent failures all count and a TOTP code can
    // be used only once even by two simultaneous logins.
    let guard = core.auth.bookkeeping.lock().await;
    let mut state = load_state(core, mount, &name).await?;
    let before = state.clone();
    current(&mut state, mount, now);
    let locked = state.locked_until.is_some();
    let reason = if locked {
        Some("user is locked out")
    } else if !password_ok {
        Some("wrong password")
    } else {
        match totp_step {
            Err(reason) => Some(reason),
            Ok(Some(step)) if state.totp_last_step.is_some_and(|last| step <= last) => {
                Some("TOTP code already used")
            }
            Ok(_) => None,
        }
    };
    if let Some(reason) = reason {
        if !locked {
            state.failures += 1;
            state.last_failure = now;
            let cfg = &mount.config.lockout;
            if !cfg.disabled && state.failures >= cfg.threshold {
                state.locked_until = Some(now.saturating_add(cfg.duration));
                tracing::warn!(mount = %mount.path, user = %name, seconds = cfg.duration, "userpass user locked out after repeated login failures");
            }
        }
        if state != before {
            store_state(core, mount, &name, &state).await?;
        }
        drop(guard);
        tracing::info!(mount = %mount.path, user = %name, reason, "userpass login failed");
        return Err(failed());
    }
    state.failures = 0;
    state.last_failure = 0;
    if let Ok(Some(step)) = totp_step {
        state.totp_last_step = Some(step);
    }
    if state != before {
        store_state(core, mount, &name, &state).await?;
    }
    drop(guard);
    if !network_ok {
        // The password was right, so refusing for the network reveals nothing new.
        login::check_login_network(&user.token.bound_cidrs, remote, mount)?;
    }
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("username".to_owned(), name.clone());
    login::issue(
        core,
        mount,
        path,
        &user.token,
        Identity {
            display_name: name,
            meta,
            bound_cidrs: None,
        },
    )
    .await
}
