//! Userpass: Argon2id passwords, TOTP second factor, lock-out, and failures that never say
//! whether a user exists.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Client, Server};

async fn login(c: &Client, user: &str, body: Value) -> (u16, Value) {
    c.anonymous()
        .call("POST", &format!("auth/userpass/login/{user}"), Some(body))
        .await
}

/// The TOTP code of `secret` (base32) at unix time `at`.
pub fn totp_code(secret: &str, at: i64) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret).unwrap();
    totp_rs::Builder::new()
        .with_secret(bytes.to_vec())
        .build()
        .unwrap()
        .generate(at as u64)
        .to_string()
}

/// A dev server with userpass at `userpass/`, locking a user out after `threshold`
/// consecutive failures for 2 seconds.
async fn setup(threshold: u32) -> (Server, Client) {
    let server = Server::dev();
    let root = server.client();
    root.ok(
        "POST",
        "sys/auth/userpass",
        Some(json!({"type": "userpass", "description": "DBAs",
                    "config": {"user_lockout_config": {"lockout_threshold": threshold, "lockout_duration": "2s"}}})),
    )
    .await;
    (server, root)
}

#[tokio::test]
async fn users_log_in_with_passwords_and_policies() {
    let (_server, root) = setup(5).await;
    root.ok(
        "POST",
        "auth/userpass/users/Alice",
        Some(json!({"password": "correct horse battery", "policies": "dba,ops", "ttl": "30m", "max_ttl": "1h"})),
    )
    .await;
    let user = root.ok("GET", "auth/userpass/users/alice", None).await;
    assert_eq!(user["data"]["token_policies"], json!(["dba", "ops"]));
    assert_eq!(user["data"]["policies"], json!(["dba", "ops"]));
    assert_eq!(user["data"]["token_ttl"], 1800);
    assert_eq!(user["data"]["totp_enabled"], false);
    assert!(!user.to_string().contains("correct horse"));
    assert!(!user.to_string().contains("argon2"));
    assert_eq!(
        root.ok("LIST", "auth/userpass/users", None).await["data"]["keys"],
        json!(["alice"])
    );
    // A user is created only with a password.
    let (status, _) = root
        .call(
            "POST",
            "auth/userpass/users/bob",
            Some(json!({"policies": "x"})),
        )
        .await;
    assert_eq!(status, 400);

    let (status, body) = login(&root, "ALICE", json!({"password": "correct horse battery"})).await;
    assert_eq!(status, 200, "{body}");
    let auth = &body["auth"];
    assert_eq!(auth["policies"], json!(["dba", "default", "ops"]));
    assert_eq!(auth["lease_duration"], 1800);
    assert_eq!(auth["metadata"]["username"], "alice");
    let token = auth["client_token"].as_str().unwrap();
    let me = root
        .with_token(token)
        .ok("GET", "auth/token/lookup-self", None)
        .await;
    assert_eq!(me["data"]["display_name"], "userpass-alice");
    assert_eq!(me["data"]["path"], "auth/userpass/login/alice");
    // Renewal is capped by the user's max_ttl (1h from creation).
    let renewed = root
        .with_token(token)
        .ok(
            "POST",
            "auth/token/renew-self",
            Some(json!({"increment": "10h"})),
        )
        .await;
    assert!(renewed["auth"]["lease_duration"].as_i64().unwrap() <= 3600);

    // Password change; the old one stops working.
    root.ok(
        "POST",
        "auth/userpass/users/alice/password",
        Some(json!({"password": "new-password-1"})),
    )
    .await;
    let (status, _) = login(&root, "alice", json!({"password": "correct horse battery"})).await;
    assert_eq!(status, 400);
    let (status, _) = login(&root, "alice", json!({"password": "new-password-1"})).await;
    assert_eq!(status, 200);
    // Policies endpoint.
    root.ok(
        "POST",
        "auth/userpass/users/alice/policies",
        Some(json!({"policies": ["readonly"]})),
    )
    .await;
    let (_, body) = login(&root, "alice", json!({"password": "new-password-1"})).await;
    assert_eq!(body["auth"]["policies"], json!(["default", "readonly"]));
    // A user bound to a network cannot log in from elsewhere.
    root.ok(
        "POST",
        "auth/userpass/users/alice",
        Some(json!({"token_bound_cidrs": "127.0.0.1/32"})),
    )
    .await;
    let (status, _) = root
        .anonymous()
        .bound_to("127.0.0.2".parse().unwrap())
        .call(
            "POST",
            "auth/userpass/login/alice",
            Some(json!({"password": "new-password-1"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = login(&root, "alice", json!({"password": "new-password-1"})).await;
    assert_eq!(status, 200);
    // Deleted users cannot log in.
    root.ok("DELETE", "auth/userpass/users/alice", None).await;
    let (status, _) = login(&root, "alice", json!({"password": "new-password-1"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn failures_do_not_reveal_whether_the_user_exists() {
    let (_server, root) = setup(5).await;
    root.ok(
        "POST",
        "auth/userpass/users/real",
        Some(json!({"password": "real-password-123"})),
    )
    .await;
    let (s1, wrong_password) = login(&root, "real", json!({"password": "nope"})).await;
    let (s2, missing_user) = login(&root, "ghost", json!({"password": "nope"})).await;
    assert_eq!((s1, s2), (400, 400));
    assert_eq!(wrong_password, missing_user);
    assert_eq!(wrong_password["errors"][0], "invalid username or password");

    // Timing: a missing user costs an Argon2id verification too. Compare medians, with a
    // wide margin because this machine is shared and noisy.
    async fn median(root: &Client, user: &str) -> Duration {
        let mut times = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            let (status, _) = login(root, user, json!({"password": "nope"})).await;
            assert_eq!(status, 400);
            times.push(started.elapsed());
        }
        times.sort();
        times[3]
    }
    // Without lock-out, so that every failure below still verifies a password.
    root.ok(
        "POST",
        "sys/auth/userpass/tune",
        Some(json!({"user_lockout_config": {"disable_lockout": true}})),
    )
    .await;
    let existing = median(&root, "real").await;
    let missing = median(&root, "ghost").await;
    let (lo, hi) = if existing < missing {
        (existing, missing)
    } else {
        (missing, existing)
    };
    assert!(
        hi < lo * 3 + Duration::from_millis(20),
        "timing differs too much: existing user {existing:?}, missing user {missing:?}"
    );
}

#[tokio::test]
async fn totp_second_factor_is_enforced_and_not_replayable() {
    let (_server, root) = setup(5).await;
    root.ok(
        "POST",
        "auth/userpass/users/dba",
        Some(json!({"password": "dba-password-1", "policies": "dba"})),
    )
    .await;
    let (status, _) = login(&root, "dba", json!({"password": "dba-password-1"})).await;
    assert_eq!(status, 200);

    let enrolled = root.ok("POST", "auth/userpass/users/dba/totp", None).await;
    let secret = enrolled["data"]["secret"].as_str().unwrap().to_owned();
    let url = enrolled["data"]["url"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/dbwarden:dba"), "{url}");
    assert!(url.contains(&format!("secret={secret}")));
    assert!(url.contains("issuer=dbwarden"));
    let status = root.ok("GET", "auth/userpass/users/dba/totp", None).await;
    assert_eq!(status["data"]["enabled"], true);
    assert!(
        !status.to_string().contains(&secret),
        "the secret is shown only once"
    );
    let user = root.ok("GET", "auth/userpass/users/dba", None).await;
    assert_eq!(user["data"]["totp_enabled"], true);
    // Enrolment of a missing user is refused.
    let (code, _) = root
        .call("POST", "auth/userpass/users/nobody/totp", None)
        .await;
    assert_eq!(code, 400);

    // The password alone no longer suffices; a wrong code neither.
    let now = chrono::Utc::now().timestamp();
    let (status, body) = login(&root, "dba", json!({"password": "dba-password-1"})).await;
    assert_eq!(
        (status, body["errors"][0].as_str()),
        (400, Some("invalid username or password"))
    );
    let wrong = format!(
        "{:06}",
        (totp_code(&secret, now).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let (status, _) = login(
        &root,
        "dba",
        json!({"password": "dba-password-1", "totp": wrong}),
    )
    .await;
    assert_eq!(status, 400);
    // A right code with a wrong password is still a failure.
    let (status, _) = login(
        &root,
        "dba",
        json!({"password": "x", "totp": totp_code(&secret, now)}),
    )
    .await;
    assert_eq!(status, 400);
    // Password and code: accepted once.
    let code = totp_code(&secret, now);
    let (status, body) = login(
        &root,
        "dba",
        json!({"password": "dba-password-1", "totp": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = login(
        &root,
        "dba",
        json!({"password": "dba-password-1", "totp": code}),
    )
    .await;
    assert_eq!(status, 400, "a TOTP code must not be accepted twice");
    // The next step's code (one step of skew) is accepted.
    let (status, body) = login(
        &root,
        "dba",
        json!({"password": "dba-password-1", "totp": totp_code(&secret, now + 30)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A code from long ago is not.
    let (status, _) = login(
        &root,
        "dba",
        json!({"password": "dba-password-1", "totp": totp_code(&secret, now - 600)}),
    )
    .await;
    assert_eq!(status, 400);

    // Removing the factor returns to password-only logins.
    root.ok("DELETE", "auth/userpass/users/dba/totp", None)
        .await;
    let (status, _) = login(&root, "dba", json!({"password": "dba-password-1"})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn repeated_failures_lock_the_user_out_for_a_while() {
    let (_server, root) = setup(3).await;
    root.ok(
        "POST",
        "auth/userpass/users/locky",
        Some(json!({"password": "locky-password-1"})),
    )
    .await;
    // A success resets the counter, so two failures then a success never lock.
    for _ in 0..2 {
        assert_eq!(
            login(&root, "locky", json!({"password": "bad"})).await.0,
            400
        );
    }
    assert_eq!(
        login(&root, "locky", json!({"password": "locky-password-1"}))
            .await
            .0,
        200
    );
    for _ in 0..3 {
        assert_eq!(
            login(&root, "locky", json!({"password": "bad"})).await.0,
            400
        );
    }
    // Locked: even the right password fails, with the same answer.
    let (status, body) = login(&root, "locky", json!({"password": "locky-password-1"})).await;
    assert_eq!(
        (status, body["errors"][0].as_str()),
        (400, Some("invalid username or password"))
    );
    let user = root.ok("GET", "auth/userpass/users/locky", None).await;
    assert!(user["data"]["locked_until"].is_string(), "{user}");
    assert_eq!(user["data"]["failed_logins"], 3);
    // The lock-out ends by itself.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        login(&root, "locky", json!({"password": "locky-password-1"}))
            .await
            .0,
        200
    );

    // An operator can lift it early.
    for _ in 0..3 {
        login(&root, "locky", json!({"password": "bad"})).await;
    }
    assert_eq!(
        login(&root, "locky", json!({"password": "locky-password-1"}))
            .await
            .0,
        400
    );
    root.ok("POST", "auth/userpass/users/locky/unlock", None)
        .await;
    assert_eq!(
        login(&root, "locky", json!({"password": "locky-password-1"}))
            .await
            .0,
        200
    );
    // The tunables are visible and changeable.
    let tune = root.ok("GET", "sys/auth/userpass/tune", None).await;
    assert_eq!(tune["data"]["user_lockout_config"]["lockout_threshold"], 3);
    assert_eq!(tune["data"]["user_lockout_config"]["lockout_duration"], 2);
}
