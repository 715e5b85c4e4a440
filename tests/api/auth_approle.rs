//! AppRole, `sys/auth` mounts, and tokens bound to networks.

use std::net::IpAddr;
use std::time::Duration;

use dbwarden_testkit::TempPostgres;
use serde_json::{Value, json};

use crate::postgres::{prepare_db, register};
use crate::support::{Client, Server, operator_init, sqlite_config};

fn other_address() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

/// Enables AppRole at `approle/` and writes `role` with `settings`.
async fn enable_approle_with_role(root: &Client, role: &str, settings: Value) {
    root.ok("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    root.ok("POST", &format!("auth/approle/role/{role}"), Some(settings))
        .await;
}

async fn role_id(root: &Client, mount: &str, role: &str) -> String {
    root.ok("GET", &format!("auth/{mount}/role/{role}/role-id"), None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn secret_id(root: &Client, mount: &str, role: &str, body: Value) -> Value {
    root.ok(
        "POST",
        &format!("auth/{mount}/role/{role}/secret-id"),
        Some(body),
    )
    .await["data"]
        .clone()
}

async fn login(c: &Client, mount: &str, role_id: &str, secret_id: &str) -> (u16, Value) {
    c.anonymous()
        .call(
            "POST",
            &format!("auth/{mount}/login"),
            Some(json!({"role_id": role_id, "secret_id": secret_id})),
        )
        .await
}

#[tokio::test]
async fn approle_login_gets_database_credentials_its_policy_allows() {
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
    enable_approle_with_role(
        &root,
        "web",
        json!({"token_policies": ["creds-ro"], "token_ttl": "20m", "token_max_ttl": "1h"}),
    )
    .await;
    let rid = role_id(&root, "approle", "web").await;
    let sid = secret_id(
        &root,
        "approle",
        "web",
        json!({"metadata": "{\"team\": \"payments\"}"}),
    )
    .await;
    assert_eq!(sid["secret_id_num_uses"], 0);
    let (status, body) = login(&root, "approle", &rid, sid["secret_id"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let auth = &body["auth"];
    assert_eq!(auth["policies"], json!(["creds-ro", "default"]));
    assert_eq!(auth["token_policies"], json!(["creds-ro", "default"]));
    assert_eq!(
        auth["metadata"],
        json!({"role_name": "web", "team": "payments"})
    );
    assert_eq!(auth["lease_duration"], 1200);
    assert_eq!(auth["renewable"], true);
    assert_eq!(auth["orphan"], true);
    assert_eq!(auth["token_type"], "service");
    assert_eq!(auth["entity_id"], "");
    assert!(auth["accessor"].is_string() && auth["num_uses"] == 0);

    let app = root.with_token(auth["client_token"].as_str().unwrap());
    let me = app.ok("GET", "auth/token/lookup-self", None).await;
    assert_eq!(me["data"]["display_name"], "approle");
    assert_eq!(me["data"]["path"], "auth/approle/login");
    let creds = app.ok("GET", "database/creds/ro", None).await;
    let username = creds["data"]["username"].as_str().unwrap();
    assert!(username.starts_with("v-approle-ro-"), "{username}");
    let password = creds["data"]["password"].as_str().unwrap();
    let url = format!(
        "host=127.0.0.1 port={} dbname={db} user={username} password={password}",
        pg.port()
    );
    let (conn, task) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the issued credential logs in");
    tokio::spawn(task);
    let v: i32 = conn.query_one("SELECT v FROM t", &[]).await.unwrap().get(0);
    assert_eq!(v, 42);
    // What the policy does not allow stays refused.
    for (method, path) in [
        ("GET", "database/config/pg"),
        ("GET", "auth/approle/role/web"),
        ("POST", "auth/approle/role/web/secret-id"),
        ("GET", "sys/auth"),
    ] {
        let (status, _) = app.call(method, path, None).await;
        assert_eq!(status, 403, "{method} {path}");
    }
    // Renewal is capped by token_max_ttl.
    let renewed = app
        .ok(
            "POST",
            "auth/token/renew-self",
            Some(json!({"increment": "5h"})),
        )
        .await;
    assert!(renewed["auth"]["lease_duration"].as_i64().unwrap() <= 3600);
    // Revoking the login token revokes its credential.
    app.ok("POST", "auth/token/revoke-self", None).await;
    assert!(
        root.wait_lease_gone(creds["lease_id"].as_str().unwrap())
            .await
    );
}

#[tokio::test]
async fn secret_ids_are_limited_by_uses_ttl_and_networks() {
    let server = Server::dev();
    let root = server.client();
    enable_approle_with_role(
        &root,
        "batch",
        json!({"secret_id_num_uses": 2, "secret_id_ttl": "1h", "policies": "default"}),
    )
    .await;
    let role = root.ok("GET", "auth/approle/role/batch", None).await;
    assert_eq!(role["data"]["bind_secret_id"], true);
    assert_eq!(role["data"]["secret_id_num_uses"], 2);
    assert_eq!(role["data"]["secret_id_ttl"], 3600);
    let rid = role_id(&root, "approle", "batch").await;

    // Uses: two logins, then nothing; lookups count down.
    let sid = secret_id(&root, "approle", "batch", json!({})).await;
    let secret = sid["secret_id"].as_str().unwrap();
    assert_eq!(sid["secret_id_ttl"], 3600);
    assert_eq!(login(&root, "approle", &rid, secret).await.0, 200);
    let looked = root
        .ok(
            "POST",
            "auth/approle/role/batch/secret-id/lookup",
            Some(json!({"secret_id": secret})),
        )
        .await;
    assert_eq!(looked["data"]["secret_id_num_uses"], 1);
    assert_eq!(
        looked["data"]["secret_id_accessor"],
        sid["secret_id_accessor"]
    );
    assert_eq!(login(&root, "approle", &rid, secret).await.0, 200);
    let (status, body) = login(&root, "approle", &rid, secret).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0], "invalid role or secret ID");
    let (status, _) = root
        .call(
            "POST",
            "auth/approle/role/batch/secret-id/lookup",
            Some(json!({"secret_id": secret})),
        )
        .await;
    assert_eq!(status, 204, "a spent secret ID is gone");

    // Parallel logins can never spend more uses than granted.
    let sid = secret_id(&root, "approle", "batch", json!({"num_uses": 1})).await;
    let secret = sid["secret_id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, rid, secret) = (root.clone(), rid.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            login(&c, "approle", &rid, &secret).await.0
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "a one-use secret ID logged in {ok} times");
    // A secret ID may not ask for more than its role allows.
    let (status, _) = root
        .call(
            "POST",
            "auth/approle/role/batch/secret-id",
            Some(json!({"num_uses": 5})),
        )
        .await;
    assert_eq!(status, 400);

    // TTL.
    let sid = secret_id(&root, "approle", "batch", json!({"ttl": "2s"})).await;
    let secret = sid["secret_id"].as_str().unwrap().to_owned();
    assert_eq!(sid["secret_id_ttl"], 2);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(login(&root, "approle", &rid, &secret).await.0, 400);

    // CIDR binding of the secret ID: refused from elsewhere, without spending a use.
    let sid = secret_id(
        &root,
        "approle",
        "batch",
        json!({"cidr_list": "127.0.0.1/32", "num_uses": 1}),
    )
    .await;
    let secret = sid["secret_id"].as_str().unwrap().to_owned();
    let (status, body) = login(&root.bound_to(other_address()), "approle", &rid, &secret).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("CIDR"),
        "{body}"
    );
    assert_eq!(login(&root, "approle", &rid, &secret).await.0, 200);
    // A secret ID's networks must lie within the role's.
    root.ok(
        "POST",
        "auth/approle/role/batch",
        Some(json!({"secret_id_bound_cidrs": ["127.0.0.0/30"]})),
    )
    .await;
    let (status, _) = root
        .call(
            "POST",
            "auth/approle/role/batch/secret-id",
            Some(json!({"cidr_list": "10.0.0.0/8"})),
        )
        .await;
    assert_eq!(status, 400);
    let sid = secret_id(&root, "approle", "batch", json!({})).await;
    let secret = sid["secret_id"].as_str().unwrap().to_owned();
    // 127.0.0.2 is inside 127.0.0.0/30.
    assert_eq!(
        login(&root.bound_to(other_address()), "approle", &rid, &secret)
            .await
            .0,
        200
    );
    root.ok(
        "POST",
        "auth/approle/role/batch",
        Some(json!({"secret_id_bound_cidrs": ["127.0.0.1/32"]})),
    )
    .await;
    assert_eq!(
        login(&root.bound_to(other_address()), "approle", &rid, &secret)
            .await
            .0,
        400
    );

    // Accessors: list, look up, destroy.
    let list = root
        .ok("LIST", "auth/approle/role/batch/secret-id", None)
        .await;
    assert!(
        list["data"]["keys"]
            .as_array()
            .unwrap()
            .contains(&sid["secret_id_accessor"])
    );
    let by_accessor = root
        .ok(
            "POST",
            "auth/approle/role/batch/secret-id-accessor/lookup",
            Some(json!({"secret_id_accessor": sid["secret_id_accessor"]})),
        )
        .await;
    assert_eq!(
        by_accessor["data"]["secret_id_num_uses"], 1,
        "one of two uses is spent"
    );
    assert!(
        !by_accessor.to_string().contains(&secret),
        "lookups never show the secret"
    );
    root.ok(
        "POST",
        "auth/approle/role/batch/secret-id-accessor/destroy",
        Some(json!({"secret_id_accessor": sid["secret_id_accessor"]})),
    )
    .await;
    assert_eq!(login(&root, "approle", &rid, &secret).await.0, 400);
    let (status, _) = root
        .call(
            "POST",
            "auth/approle/role/batch/secret-id-accessor/lookup",
            Some(json!({"secret_id_accessor": sid["secret_id_accessor"]})),
        )
        .await;
    assert_eq!(status, 404);

    // Custom secret IDs, and destroying by value.
    root.ok(
        "POST",
        "auth/approle/role/batch/custom-secret-id",
        Some(json!({"secret_id": "my-own-secret-id-0001"})),
    )
    .await;
    let (status, _) = root
        .call(
            "POST",
            "auth/approle/role/batch/custom-secret-id",
            Some(json!({"secret_id": "my-own-secret-id-0001"})),
        )
        .await;
    assert_eq!(status, 400, "duplicate custom secret ID");
    assert_eq!(
        login(&root, "approle", &rid, "my-own-secret-id-0001")
            .await
            .0,
        200
    );
    root.ok(
        "POST",
        "auth/approle/role/batch/secret-id/destroy",
        Some(json!({"secret_id": "my-own-secret-id-0001"})),
    )
    .await;
    assert_eq!(
        login(&root, "approle", &rid, "my-own-secret-id-0001")
            .await
            .0,
        400
    );

    // A new role ID replaces the old one.
    root.ok(
        "POST",
        "auth/approle/role/batch/role-id",
        Some(json!({"role_id": "batch-role-id"})),
    )
    .await;
    let sid = secret_id(&root, "approle", "batch", json!({})).await;
    let secret = sid["secret_id"].as_str().unwrap().to_owned();
    assert_eq!(login(&root, "approle", &rid, &secret).await.0, 400);
    assert_eq!(
        login(&root, "approle", "batch-role-id", &secret).await.0,
        200
    );
    // Missing fields and unknown role IDs.
    let (status, _) = login(&root, "approle", "", &secret).await;
    assert_eq!(status, 400);
    let (status, body) = login(&root, "approle", "no-such-role-id", &secret).await;
    assert_eq!(
        (status, body["errors"][0].as_str()),
        (400, Some("invalid role or secret ID"))
    );

    // A role without a secret ID must be bound to a network.
    let (status, _) = root
        .call(
            "POST",
            "auth/approle/role/open",
            Some(json!({"bind_secret_id": false})),
        )
        .await;
    assert_eq!(status, 400);
    root.ok(
        "POST",
        "auth/approle/role/open",
        Some(json!({"bind_secret_id": false, "secret_id_bound_cidrs": "127.0.0.1/32", "role_id": "open-role"})),
    )
    .await;
    let (status, _) = root
        .anonymous()
        .call(
            "POST",
            "auth/approle/login",
            Some(json!({"role_id": "open-role"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = root
        .anonymous()
        .bound_to(other_address())
        .call(
            "POST",
            "auth/approle/login",
            Some(json!({"role_id": "open-role"})),
        )
        .await;
    assert_eq!(status, 400);

    // Deleting the role removes its secret IDs.
    root.ok("DELETE", "auth/approle/role/batch", None).await;
    assert_eq!(
        login(&root, "approle", "batch-role-id", &secret).await.0,
        400
    );
    let roles = root.ok("LIST", "auth/approle/role", None).await;
    assert_eq!(roles["data"]["keys"], json!(["open"]));
}

#[tokio::test]
async fn cidr_bound_tokens_are_refused_from_other_addresses() {
    let server = Server::dev();
    let root = server.client();
    enable_approle_with_role(
        &root,
        "pinned",
        json!({"token_bound_cidrs": "127.0.0.1/32", "token_num_uses": 0}),
    )
    .await;
    let rid = role_id(&root, "approle", "pinned").await;
    let sid = secret_id(&root, "approle", "pinned", json!({})).await;
    let (status, body) = login(&root, "approle", &rid, sid["secret_id"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let token = body["auth"]["client_token"].as_str().unwrap().to_owned();
    let here = root.with_token(&token);
    let me = here.ok("GET", "auth/token/lookup-self", None).await;
    assert_eq!(me["data"]["bound_cidrs"], json!(["127.0.0.1/32"]));
    // From 127.0.0.2 the same token is refused on every path, with nothing but "permission denied".
    let there = here.bound_to(other_address());
    for (method, path) in [
        ("GET", "auth/token/lookup-self"),
        ("POST", "auth/token/renew-self"),
        ("POST", "sys/capabilities-self"),
    ] {
        let (status, body) = there
            .call(method, path, Some(json!({"paths": ["x"]})))
            .await;
        assert_eq!(status, 403, "{method} {path}");
        assert_eq!(body, json!({"errors": ["permission denied"]}));
    }
    // A child token stays bound to its parent's networks.
    root.ok(
        "PUT",
        "sys/policy/mint",
        Some(json!({"policy": "path \"auth/token/create\" { capabilities = [\"update\"] }"})),
    )
    .await;
    root.ok(
        "POST",
        "auth/approle/role/pinned",
        Some(json!({"token_policies": "mint"})),
    )
    .await;
    let sid = secret_id(&root, "approle", "pinned", json!({})).await;
    let (_, body) = login(&root, "approle", &rid, sid["secret_id"].as_str().unwrap()).await;
    let minter = root.with_token(body["auth"]["client_token"].as_str().unwrap());
    let child = minter
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"]})),
        )
        .await;
    let child = root.with_token(child["auth"]["client_token"].as_str().unwrap());
    child.ok("GET", "auth/token/lookup-self", None).await;
    let (status, _) = child
        .bound_to(other_address())
        .call("GET", "auth/token/lookup-self", None)
        .await;
    assert_eq!(status, 403);
    // A login from outside the token's networks is refused up front.
    let sid = secret_id(&root, "approle", "pinned", json!({})).await;
    let (status, _) = login(
        &root.bound_to(other_address()),
        "approle",
        &rid,
        sid["secret_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    // The reason is in the server log only.
    let log = server.stop();
    assert!(
        log.contains("token used from outside its bound CIDRs"),
        "{log}"
    );
}

#[tokio::test]
async fn auth_mounts_are_listed_guarded_and_isolated() {
    let server = Server::dev();
    let root = server.client();
    root.ok(
        "POST",
        "sys/auth/approle",
        Some(json!({"type": "approle", "description": "machines"})),
    )
    .await;
    root.ok(
        "POST",
        "sys/auth/ci/approle",
        Some(json!({"type": "approle"})),
    )
    .await;
    root.ok(
        "POST",
        "sys/auth/userpass",
        Some(json!({"type": "userpass"})),
    )
    .await;
    let list = root.ok("GET", "sys/auth", None).await;
    let data = &list["data"];
    assert_eq!(data["token/"]["type"], "token");
    assert_eq!(data["approle/"]["type"], "approle");
    assert_eq!(data["approle/"]["description"], "machines");
    assert_eq!(data["ci/approle/"]["type"], "approle");
    assert_eq!(data["userpass/"]["type"], "userpass");
    assert!(
        data["approle/"]["accessor"]
            .as_str()
            .unwrap()
            .starts_with("auth_approle_")
    );
    assert_ne!(
        data["approle/"]["accessor"],
        data["ci/approle/"]["accessor"]
    );
    let one = root.ok("GET", "sys/auth/ci/approle", None).await;
    assert_eq!(one["data"]["type"], "approle");
    for (body, what) in [
        (json!({"type": "approle"}), "path in use"),
        (json!({"type": "ldap"}), "unknown type"),
        (json!({}), "missing type"),
    ] {
        let (status, _) = root.call("POST", "sys/auth/approle", Some(body)).await;
        assert_eq!(status, 400, "{what}");
    }
    let (status, _) = root
        .call("POST", "sys/auth/token", Some(json!({"type": "approle"})))
        .await;
    assert_eq!(status, 400);
    let (status, _) = root.call("DELETE", "sys/auth/token", None).await;
    assert_eq!(status, 400);

    // Roles of two mounts of the same type are separate.
    root.ok(
        "POST",
        "auth/approle/role/r",
        Some(json!({"policies": "a"})),
    )
    .await;
    let (status, _) = root.call("GET", "auth/ci/approle/role/r", None).await;
    assert_eq!(status, 404);
    root.ok(
        "POST",
        "auth/ci/approle/role/r",
        Some(json!({"policies": "b"})),
    )
    .await;
    let ci_rid = role_id(&root, "ci/approle", "r").await;
    let ci_sid = secret_id(&root, "ci/approle", "r", json!({})).await;
    let (status, _) = login(
        &root,
        "approle",
        &ci_rid,
        ci_sid["secret_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        status, 400,
        "a role ID of one mount means nothing on another"
    );
    let (status, body) = login(
        &root,
        "ci/approle",
        &ci_rid,
        ci_sid["secret_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["auth"]["policies"], json!(["b", "default"]));
    let ci_token = root.with_token(body["auth"]["client_token"].as_str().unwrap());
    let me = ci_token.ok("GET", "auth/token/lookup-self", None).await;
    assert_eq!(me["data"]["display_name"], "ci-approle");

    // Everything but login needs a token; a login needs none and ignores a bad one.
    let anonymous = root.anonymous();
    for (method, path) in [
        ("GET", "sys/auth"),
        ("LIST", "auth/approle/role"),
        ("GET", "auth/approle/role/r"),
        ("GET", "auth/approle/role/r/role-id"),
        ("POST", "auth/approle/role/r/secret-id"),
        ("POST", "auth/userpass/users/x"),
        ("POST", "sys/auth/other"),
        ("GET", "auth/approle/login"),
    ] {
        let (status, _) = anonymous
            .call(method, path, Some(json!({"password": "p"})))
            .await;
        assert_eq!(status, 403, "{method} {path} without a token");
    }
    let (status, _) = root
        .with_token("dbw.stale-token")
        .call(
            "POST",
            "auth/ci/approle/login",
            Some(json!({"role_id": ci_rid, "secret_id": "wrong"})),
        )
        .await;
    assert_eq!(
        status, 400,
        "a login is judged on its body, not on a stale token"
    );

    // Enabling and disabling methods needs sudo; a policy with only create/update is refused.
    root.ok(
        "PUT",
        "sys/policy/auth-admin",
        Some(json!({"policy": "path \"sys/auth/*\" { capabilities = [\"create\", \"update\", \"delete\"] }\npath \"sys/auth\" { capabilities = [\"read\"] }"})),
    )
    .await;
    root.ok(
        "PUT",
        "sys/policy/role-editor",
        Some(json!({"policy": "path \"auth/approle/role/*\" { capabilities = [\"update\", \"read\"] }"})),
    )
    .await;
    let t = root
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["auth-admin", "role-editor"]})),
        )
        .await;
    let limited = root.with_token(t["auth"]["client_token"].as_str().unwrap());
    let (status, _) = limited
        .call("POST", "sys/auth/new", Some(json!({"type": "approle"})))
        .await;
    assert_eq!(status, 403);
    limited.ok("GET", "sys/auth", None).await;
    // `update` without `create`: existing roles may change, new ones may not be made.
    limited
        .ok(
            "POST",
            "auth/approle/role/r",
            Some(json!({"policies": "c"})),
        )
        .await;
    let (status, _) = limited
        .call(
            "POST",
            "auth/approle/role/brand-new",
            Some(json!({"policies": "c"})),
        )
        .await;
    assert_eq!(status, 403);

    // Disabling a method revokes the tokens it issued, and a new mount at the path is empty.
    root.ok("DELETE", "sys/auth/ci/approle", None).await;
    let (status, _) = ci_token.call("GET", "auth/token/lookup-self", None).await;
    assert_eq!(status, 403);
    root.ok(
        "POST",
        "sys/auth/ci/approle",
        Some(json!({"type": "approle"})),
    )
    .await;
    let (status, _) = root.call("GET", "auth/ci/approle/role/r", None).await;
    assert_eq!(status, 404);
    let (status, _) = root.call("GET", "auth/nothing/here", None).await;
    assert_eq!(status, 404);
    // Tuning.
    root.ok(
        "POST",
        "sys/auth/approle/tune",
        Some(json!({"default_lease_ttl": "10m", "max_lease_ttl": "1h"})),
    )
    .await;
    let tune = root.ok("GET", "sys/auth/approle/tune", None).await;
    assert_eq!(
        (
            tune["data"]["default_lease_ttl"].as_i64(),
            tune["data"]["max_lease_ttl"].as_i64()
        ),
        (Some(600), Some(3600))
    );
    root.ok(
        "POST",
        "auth/approle/role/r",
        Some(json!({"token_ttl": 0, "token_max_ttl": 0})),
    )
    .await;
    let rid = role_id(&root, "approle", "r").await;
    let sid = secret_id(&root, "approle", "r", json!({})).await;
    let (_, body) = login(&root, "approle", &rid, sid["secret_id"].as_str().unwrap()).await;
    assert_eq!(
        body["auth"]["lease_duration"], 600,
        "the mount's default TTL applies"
    );
}

#[tokio::test]
async fn login_tokens_follow_the_roles_token_settings() {
    let server = Server::dev();
    let root = server.client();
    root.ok("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    let login_with = |settings: Value| {
        let root = root.clone();
        async move {
            root.ok("POST", "auth/approle/role/t", Some(settings)).await;
            let rid = role_id(&root, "approle", "t").await;
            let sid = secret_id(&root, "approle", "t", json!({})).await;
            let (status, body) =
                login(&root, "approle", &rid, sid["secret_id"].as_str().unwrap()).await;
            assert_eq!(status, 200, "{body}");
            body["auth"].clone()
        }
    };
    // Periodic: the TTL is the period, and renewals go back to it.
    let auth = login_with(json!({"period": "10m", "token_ttl": "1h"})).await;
    assert_eq!(auth["lease_duration"], 600);
    let renewed = root
        .with_token(auth["client_token"].as_str().unwrap())
        .ok(
            "POST",
            "auth/token/renew-self",
            Some(json!({"increment": "2h"})),
        )
        .await;
    assert_eq!(renewed["auth"]["lease_duration"], 600);
    // Explicit max TTL caps the TTL.
    let auth =
        login_with(json!({"period": 0, "token_ttl": "1h", "token_explicit_max_ttl": "5m"})).await;
    assert_eq!(auth["lease_duration"], 300);
    // Without the default policy.
    let auth = login_with(json!({"token_explicit_max_ttl": 0, "token_policies": "app", "token_no_default_policy": true})).await;
    assert_eq!(auth["policies"], json!(["app"]));
    // Limited uses: the token dies with its last use.
    let auth = login_with(json!({"token_num_uses": 2, "token_no_default_policy": false})).await;
    assert_eq!(auth["num_uses"], 2);
    let limited = root.with_token(auth["client_token"].as_str().unwrap());
    limited.ok("GET", "auth/token/lookup-self", None).await;
    limited.ok("GET", "auth/token/lookup-self", None).await;
    let (status, _) = limited.call("GET", "auth/token/lookup-self", None).await;
    assert_eq!(status, 403);
    // Contradictions and things a login may never grant are refused when the role is written.
    for (body, what) in [
        (
            json!({"token_ttl": "2h", "token_max_ttl": "1h", "token_num_uses": 0}),
            "ttl above max_ttl",
        ),
        (json!({"token_policies": "root"}), "root policy"),
        (json!({"token_type": "batch"}), "batch tokens"),
        (json!({"token_bound_cidrs": "not-a-cidr"}), "bad CIDR"),
        (json!({"token_num_uses": -1}), "negative uses"),
    ] {
        let (status, _) = root.call("POST", "auth/approle/role/t", Some(body)).await;
        assert_eq!(status, 400, "{what}");
    }
}

#[tokio::test]
async fn a_login_answer_can_be_wrapped() {
    // A server with its storage in a known place, so the file can be searched afterwards.
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = sqlite_config(dir.path());
    let root_token = operator_init(&config);
    let server = Server::with_config(&config, &root_token, &listen);
    let root = server.client();
    enable_approle_with_role(&root, "wrapped", json!({"policies": "default"})).await;
    let rid = role_id(&root, "approle", "wrapped").await;
    let sid = secret_id(&root, "approle", "wrapped", json!({})).await;
    let secret = sid["secret_id"].as_str().unwrap().to_owned();
    // As Vault Agent's wrapped login does: the token only reaches whoever unwraps it.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/auth/approle/login", server.addr))
        .header("X-Vault-Wrap-TTL", "2m")
        .json(&json!({"role_id": rid, "secret_id": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let wrapped: Value = resp.json().await.unwrap();
    assert!(wrapped["auth"].is_null(), "{wrapped}");
    assert_eq!(wrapped["wrap_info"]["creation_path"], "auth/approle/login");
    let wrap_token = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
    let unwrapped = root
        .with_token(&wrap_token)
        .ok("POST", "sys/wrapping/unwrap", None)
        .await;
    let token = unwrapped["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = root
        .with_token(&token)
        .ok("GET", "auth/token/lookup-self", None)
        .await;
    assert_eq!(me["data"]["meta"]["role_name"], "wrapped", "{me}");

    // The wrapped answer sat in storage until it was unwrapped: only sealed, as the
    // secret id and the wrapping token; none of them is in the log either.
    let log = server.stop();
    let mut stored = Vec::new();
    for file in ["dbwarden.db", "dbwarden.db-wal"] {
        stored.extend(std::fs::read(dir.path().join(file)).unwrap_or_default());
    }
    for clear in [&token, &secret, &wrap_token] {
        assert!(!log.contains(clear.as_str()), "a secret is in the log");
        assert!(
            !stored.windows(clear.len()).any(|w| w == clear.as_bytes()),
            "a secret is in storage in clear"
        );
    }
}
