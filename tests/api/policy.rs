//! Tokens and ACL policies: a token limited to `database/creds/ro`.

use dbwarden_testkit::TempPostgres;
use serde_json::json;

use crate::postgres::{prepare_db, register};
use crate::support::Server;

#[tokio::test]
async fn creds_only_token_is_refused_elsewhere() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    root.ok(
        "PUT",
        "sys/policy/creds-ro",
        Some(json!({"policy": "path \"database/creds/ro\" { capabilities = [\"read\"] }"})),
    )
    .await;
    let created = root
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["creds-ro"], "ttl": "1h"})),
        )
        .await;
    let token = created["auth"]["client_token"].as_str().unwrap();
    assert_eq!(created["auth"]["lease_duration"], 3600);
    let limited = root.with_token(token);

    let creds = limited.ok("GET", "database/creds/ro", None).await;
    assert!(creds["data"]["username"].is_string());

    for (method, path) in [
        ("GET", "database/config/pg"),
        ("POST", "database/config/pg"),
        ("LIST", "database/config"),
        ("GET", "database/roles/ro"),
        ("GET", "sys/mounts"),
        ("PUT", "sys/policy/creds-ro"),
        ("POST", "sys/rotate"),
        ("LIST", "sys/leases/lookup/database/creds/ro"),
    ] {
        let (status, body) = limited.call(method, path, Some(json!({}))).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["errors"][0], "permission denied");
    }
    // The default policy lets it look itself up and renew its own lease.
    limited.ok("GET", "auth/token/lookup-self", None).await;
    limited
        .ok(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": creds["lease_id"]})),
        )
        .await;

    // No token, or a bad one: 403.
    let anonymous = root.with_token("dbw.not-a-token");
    let (status, _) = anonymous.call("GET", "database/creds/ro", None).await;
    assert_eq!(status, 403);

    // Revoking the token revokes its lease and the user.
    let user = creds["data"]["username"].as_str().unwrap().to_owned();
    root.ok("POST", "auth/token/revoke", Some(json!({"token": token})))
        .await;
    let (status, _) = limited.call("GET", "auth/token/lookup-self", None).await;
    assert_eq!(status, 403);
    // As in Vault, the token's leases are revoked by the background worker, promptly.
    assert!(
        root.wait_lease_gone(creds["lease_id"].as_str().unwrap())
            .await,
        "the token's lease is gone"
    );
    let n = pg
        .connect("postgres")
        .await
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn vault_http_conventions() {
    let server = Server::dev();
    let c = server.client();
    // Empty lists are 404 with an empty error list, and the content type is exact.
    let (status, body) = c.call("LIST", "database/roles", None).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"errors": []}));
    let (status, body) = c.call("GET", "database/roles/missing", None).await;
    assert_eq!((status, body), (404, json!({"errors": []})));
    // Validation errors are 400 with a message.
    let (status, body) = c
        .call(
            "POST",
            "database/roles/x",
            Some(json!({"creation_statements": "SELECT 1"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("database name is required"),
        "{body}"
    );
    let (status, body) = c
        .call(
            "POST",
            "database/roles/x",
            Some(json!({"db_name": "a", "creation_statements": "x", "default_ttl": "soon"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // GET ?list=true is LIST; PUT is POST.
    c.ok("PUT", "database/roles/x", Some(json!({"db_name": "a", "creation_statements": "x", "default_ttl": "1h", "max_ttl": null})))
        .await;
    let listed = c.ok("GET", "database/roles?list=true", None).await;
    assert_eq!(listed["data"]["keys"], json!(["x"]));
    let role = c.ok("GET", "database/roles/x", None).await;
    assert_eq!(role["data"]["default_ttl"], 3600);
    assert_eq!(role["data"]["revocation_statements"], json!([]));
    for key in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(role.get(key).is_some(), "envelope lacks {key}");
    }
    // Authorization: Bearer works too.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/auth/token/lookup-self", server.addr))
        .header("Authorization", format!("Bearer {}", server.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    // A bad JSON body is a 400.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/database/roles/y", server.addr))
        .header("X-Vault-Token", &server.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Password policies.
    c.ok("PUT", "sys/policies/password/digits", Some(json!({"policy": "length = 12\nrule \"charset\" {\n  charset = \"0123456789\"\n  min-chars = 12\n}\n"})))
        .await;
    let generated = c
        .ok("GET", "sys/policies/password/digits/generate", None)
        .await;
    let password = generated["data"]["password"].as_str().unwrap();
    assert!(
        password.len() == 12 && password.chars().all(|ch| ch.is_ascii_digit()),
        "{password}"
    );
    let (status, body) = c
        .call("PUT", "sys/policies/password/impossible", Some(json!({"policy": "length = 4\nrule \"charset\" {\n  charset = \"a\"\n  min-chars = 5\n}\n"})))
        .await;
    assert_eq!(status, 400, "{body}");
    // Keyring rotation.
    c.ok("POST", "sys/rotate", None).await;
    let status = c.ok("GET", "sys/key-status", None).await;
    assert_eq!(status["data"]["term"], 2);
}

#[tokio::test]
async fn token_limits_are_enforced() {
    let server = Server::dev();
    let root = server.client();
    // num_uses: the token works exactly that many times.
    let created = root
        .ok("POST", "auth/token/create", Some(json!({"num_uses": 2})))
        .await;
    let limited = root.with_token(created["auth"]["client_token"].as_str().unwrap());
    limited.ok("GET", "auth/token/lookup-self", None).await;
    limited.ok("GET", "auth/token/lookup-self", None).await;
    let (status, _) = limited.call("GET", "auth/token/lookup-self", None).await;
    assert_eq!(status, 403);

    // A child cannot get policies its parent lacks, nor create orphans without sudo.
    root.ok(
        "PUT",
        "sys/policies/acl/tokens",
        Some(json!({"policy": "path \"auth/token/create*\" { capabilities = [\"update\"] }"})),
    )
    .await;
    let parent = root
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": "tokens"})),
        )
        .await;
    let parent = root.with_token(parent["auth"]["client_token"].as_str().unwrap());
    let (status, body) = parent
        .call(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["admin"]})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = parent
        .call("POST", "auth/token/create-orphan", Some(json!({})))
        .await;
    assert_eq!(status, 403, "{body}");
    let child = parent
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"ttl": "10m", "explicit_max_ttl": "20m"})),
        )
        .await;
    assert_eq!(child["auth"]["policies"], json!(["default", "tokens"]));
    let child_token = child["auth"]["client_token"].as_str().unwrap().to_owned();
    // explicit_max_ttl caps renewals.
    let renewed = root
        .ok(
            "POST",
            "auth/token/renew",
            Some(json!({"token": child_token, "increment": "1h"})),
        )
        .await;
    assert!(renewed["auth"]["lease_duration"].as_i64().unwrap() <= 1200);
    assert!(renewed["warnings"][0].as_str().unwrap().contains("capped"));
    // Revoking the parent revokes the child; accessors resolve until then.
    let accessor = child["auth"]["accessor"].as_str().unwrap();
    root.ok(
        "POST",
        "auth/token/lookup-accessor",
        Some(json!({"accessor": accessor})),
    )
    .await;
    parent.ok("POST", "auth/token/revoke-self", None).await;
    let (status, _) = root
        .with_token(&child_token)
        .call("GET", "auth/token/lookup-self", None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = root
        .call(
            "POST",
            "auth/token/lookup-accessor",
            Some(json!({"accessor": accessor})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn huge_token_durations_saturate_instead_of_overflowing() {
    let server = Server::dev();
    let root = server.client();
    let huge = i64::MAX;
    // A periodic token with the largest period the duration fields accept, and one whose
    // explicit max TTL is that large: neither creating nor renewing them may overflow.
    for body in [
        json!({"period": huge, "policies": ["default"]}),
        json!({"ttl": "1h", "explicit_max_ttl": huge, "policies": ["default"]}),
    ] {
        let created = root.ok("POST", "auth/token/create", Some(body)).await;
        let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
        let holder = root.with_token(&token);
        let renewed = holder
            .ok(
                "POST",
                "auth/token/renew-self",
                Some(json!({"increment": huge})),
            )
            .await;
        assert!(renewed["auth"]["lease_duration"].as_i64().unwrap() > 0);
        let looked = holder.ok("GET", "auth/token/lookup-self", None).await;
        assert!(looked["data"]["ttl"].as_i64().unwrap() > 0, "{looked}");
    }
}
