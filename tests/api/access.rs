//! Policy conditions (source networks, time windows), response wrapping and control groups.

use std::time::Duration;

use chrono::Datelike;
use dbwarden_testkit::TempPostgres;
use serde_json::{Value, json};

use crate::postgres::{prepare_db, register};
use crate::support::Server;

#[tokio::test]
async fn source_network_and_time_window_conditions() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    root.ok(
        "PUT",
        "sys/policy/local-only",
        Some(json!({"policy": r#"
path "database/creds/ro" {
  capabilities = ["read"]
  allowed_source_networks = ["127.0.0.1/32"]
}"#})),
    )
    .await;
    let local = root.child(&["local-only"]).await;
    local.ok("GET", "database/creds/ro", None).await;
    // The same token from another loopback address is refused, and told why.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let resp = other
        .get(format!("{}/v1/database/creds/ro", server.addr))
        .header("X-Vault-Token", local.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["errors"][0],
        "permission denied: source address not allowed"
    );
    assert!(
        !body.to_string().contains("127.0.0.1/32"),
        "the condition's value is not revealed"
    );

    // A window that excludes today.
    let today = chrono::Utc::now().weekday();
    let not_today = today.succ().to_string().to_lowercase();
    root.ok(
        "PUT",
        "sys/policy/never-today",
        Some(json!({"policy": format!(r#"
path "database/creds/ro" {{
  capabilities = ["read"]
  allowed_time_windows = [{{ days = ["{not_today}"], hours = "00:00-24:00", time_zone = "UTC" }}]
}}"#)})),
    )
    .await;
    let windowed = root.child(&["never-today"]).await;
    let (status, body) = windowed.call("GET", "database/creds/ro", None).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["errors"][0],
        "permission denied: outside the allowed time window"
    );
    // Without the policy for the path at all, the plain message (nothing to leak).
    let nobody = root.child(&["default"]).await;
    let (status, body) = nobody.call("GET", "database/creds/ro", None).await;
    assert_eq!(
        (status, body["errors"][0].as_str()),
        (403, Some("permission denied"))
    );
}

#[tokio::test]
async fn response_wrapping_is_single_use() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/database/creds/ro", server.addr))
        .header("X-Vault-Token", &server.token)
        .header("X-Vault-Wrap-TTL", "60s")
        .send()
        .await
        .unwrap();
    let wrapped: Value = resp.json().await.unwrap();
    assert!(wrapped["data"].is_null(), "{wrapped}");
    let wrap_token = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
    assert_eq!(wrapped["wrap_info"]["ttl"], 60);
    assert_eq!(wrapped["wrap_info"]["creation_path"], "database/creds/ro");
    let wrapper = root.with_token(&wrap_token);
    let looked = wrapper.ok("POST", "sys/wrapping/lookup", None).await;
    assert_eq!(looked["data"]["creation_path"], "database/creds/ro");
    let unwrapped = wrapper.ok("POST", "sys/wrapping/unwrap", None).await;
    let user = unwrapped["data"]["username"].as_str().unwrap();
    let pass = unwrapped["data"]["password"].as_str().unwrap();
    assert!(
        unwrapped["lease_id"]
            .as_str()
            .unwrap()
            .starts_with("database/creds/ro/")
    );
    assert!(pg.connect_as(&db, user, pass).await.is_ok());
    let (status, _) = root
        .call(
            "POST",
            "sys/wrapping/unwrap",
            Some(json!({"token": wrap_token})),
        )
        .await;
    assert_eq!(status, 400, "a wrapping token works once");
}

/// How many roles of the cluster have names starting with `prefix`.
pub(crate) async fn count_users(pg: &TempPostgres, prefix: &str) -> i64 {
    pg.connect("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
}

#[tokio::test]
async fn control_group_needs_approvals_from_others_before_it_runs() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    root.ok(
        "POST",
        "database/roles/prod",
        Some(json!({
            "db_name": "pg",
            "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';",
            "default_ttl": "1h",
        })),
    )
    .await;
    root.ok(
        "POST",
        "database/roles/brief",
        Some(json!({
            "db_name": "pg",
            "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';",
        })),
    )
    .await;
    root.ok(
        "PUT",
        "sys/policy/requester",
        Some(json!({"policy": r#"
path "database/creds/prod" {
  capabilities = ["read"]
  control_group {
    approvals = 2
    approver_policies = ["dba"]
    ttl = "1h"
  }
}
path "database/creds/brief" {
  capabilities = ["read"]
  control_group {
    approvals = 1
    approver_policies = ["dba"]
    ttl = "2s"
  }
}"#})),
    )
    .await;
    root.ok(
        "PUT",
        "sys/policy/dba",
        Some(json!({"policy": r#"
path "sys/control-group/authorize" {
  capabilities = ["update"]
}"#})),
    )
    .await;
    // The requester also holds "dba": it must still not approve its own request.
    let requester = root.child(&["requester", "dba"]).await;
    let alice = root.child(&["dba"]).await;
    let bob = root.child(&["dba"]).await;

    let before = count_users(pg, "v-token-prod-").await;
    let pending = requester.ok("GET", "database/creds/prod", None).await;
    let wrap = pending["wrap_info"].clone();
    let (wrap_token, accessor) = (
        wrap["token"].as_str().unwrap().to_owned(),
        wrap["accessor"].as_str().unwrap().to_owned(),
    );
    assert!(pending["data"].is_null());
    assert_eq!(
        count_users(pg, "v-token-prod-").await,
        before,
        "nothing runs before approval"
    );

    let (status, body) = requester
        .call(
            "POST",
            "sys/wrapping/unwrap",
            Some(json!({"token": wrap_token})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("further approval"));
    let (status, _) = requester
        .call(
            "POST",
            "sys/control-group/authorize",
            Some(json!({"accessor": accessor})),
        )
        .await;
    assert_eq!(status, 403, "self-approval is refused");
    let listed = alice.ok("LIST", "sys/control-group/request", None).await;
    assert_eq!(listed["data"]["keys"], json!([accessor]));
    let first = alice
        .ok(
            "POST",
            "sys/control-group/authorize",
            Some(json!({"accessor": accessor})),
        )
        .await;
    assert_eq!(first["data"]["approved"], false);
    let again = alice
        .ok(
            "POST",
            "sys/control-group/authorize",
            Some(json!({"accessor": accessor})),
        )
        .await;
    assert_eq!(again["data"]["approved"], false, "one approver counts once");
    let (status, _) = requester
        .call(
            "POST",
            "sys/wrapping/unwrap",
            Some(json!({"token": wrap_token})),
        )
        .await;
    assert_eq!(status, 400);
    let second = bob
        .ok(
            "POST",
            "sys/control-group/authorize",
            Some(json!({"accessor": accessor})),
        )
        .await;
    assert_eq!(second["data"]["approved"], true);
    let state = requester
        .ok(
            "POST",
            "sys/control-group/request",
            Some(json!({"accessor": accessor})),
        )
        .await;
    assert_eq!(state["data"]["approved"], true);
    assert_eq!(state["data"]["authorizations"].as_array().unwrap().len(), 2);

    // Only now does it run, with the role's full TTL.
    let creds = requester
        .ok(
            "POST",
            "sys/wrapping/unwrap",
            Some(json!({"token": wrap_token})),
        )
        .await;
    assert_eq!(creds["lease_duration"], 3600);
    let user = creds["data"]["username"].as_str().unwrap();
    assert!(
        pg.connect_as(&db, user, creds["data"]["password"].as_str().unwrap())
            .await
            .is_ok()
    );
    assert_eq!(count_users(pg, "v-token-prod-").await, before + 1);
    let (status, _) = requester
        .call(
            "POST",
            "sys/wrapping/unwrap",
            Some(json!({"token": wrap_token})),
        )
        .await;
    assert_eq!(status, 400, "used once");

    // An expired request can be neither approved nor run.
    let brief = requester.ok("GET", "database/creds/brief", None).await;
    let (brief_token, brief_accessor) = (
        brief["wrap_info"]["token"].as_str().unwrap().to_owned(),
        brief["wrap_info"]["accessor"].as_str().unwrap().to_owned(),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = alice
        .call(
            "POST",
            "sys/control-group/authorize",
            Some(json!({"accessor": brief_accessor})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = requester
        .call(
            "POST",
            "sys/wrapping/unwrap",
            Some(json!({"token": brief_token})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(count_users(pg, "v-token-brief-").await, 0);
}
