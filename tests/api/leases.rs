//! The lease life-cycle through the API: expiry, revoke-prefix, deleted roles, tokens,
//! lookups, counts and metrics.

use std::time::{Duration, Instant};

use dbwarden_testkit::{TempPostgres, TestMysql};
use mysql_async::prelude::Queryable;
use serde_json::json;

use crate::postgres::{prepare_db, register};
use crate::support::{Client, Server};

async fn pg_user_exists(pg: &TempPostgres, user: &str) -> bool {
    pg.connect("postgres")
        .await
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

/// Polls `done` every 50 ms until it holds or `limit` passes; returns the time it took.
async fn wait_until<F, Fut>(limit: Duration, mut done: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if done().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn postgres_two_second_lease_is_revoked_at_expiry_and_its_session_cut() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;
    client
        .ok("POST", "database/roles/short", Some(json!({
            "db_name": "pg",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                "GRANT SELECT ON t TO \"{{name}}\";"
            ],
            "default_ttl": 2,
        })))
        .await;
    let creds = client.ok("GET", "database/creds/short", None).await;
    let issued = Instant::now();
    let user = creds["data"]["username"].as_str().unwrap().to_owned();
    let pass = creds["data"]["password"].as_str().unwrap().to_owned();
    let session = pg.connect_as(&db, &user, &pass).await.unwrap();
    session.query_one("SELECT v FROM t", &[]).await.unwrap();
    // The acceptance bound: gone within 2 s of the expiry (4 s after issue).
    let gone = wait_until(Duration::from_secs(4), || async {
        !pg_user_exists(pg, &user).await
    })
    .await;
    let after_issue = issued.elapsed();
    assert!(
        gone.is_some(),
        "user still exists {after_issue:?} after issue"
    );
    println!(
        "2 s lease: user dropped {:.2} s after issue",
        after_issue.as_secs_f64()
    );
    assert!(
        session.query_one("SELECT v FROM t", &[]).await.is_err(),
        "session must be terminated"
    );
    assert!(
        client
            .wait_lease_gone(creds["lease_id"].as_str().unwrap())
            .await
    );
}

#[tokio::test]
async fn mariadb_two_second_lease_is_revoked_at_expiry_and_its_session_cut() {
    let my = TestMysql::shared();
    let db = my.create_database("lease_").await;
    let server = Server::dev();
    let client = server.client();
    crate::mysql::register(&client, my, &db, "my", "*").await;
    client
        .ok("POST", "database/roles/short", Some(json!({
            "db_name": "my",
            "creation_statements": format!("CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; GRANT SELECT ON `{db}`.* TO '{{{{name}}}}'@'%';"),
            "default_ttl": "2s",
        })))
        .await;
    let creds = client.ok("GET", "database/creds/short", None).await;
    let issued = Instant::now();
    let user = creds["data"]["username"].as_str().unwrap().to_owned();
    let pass = creds["data"]["password"].as_str().unwrap().to_owned();
    let mut session = my.connect_as(&user, &pass, Some(&db)).await.unwrap();
    session.query_drop("SELECT 1").await.unwrap();
    let gone = wait_until(Duration::from_secs(4), || {
        let user = user.clone();
        async move {
            let mut admin = my.connect().await;
            let n: Option<i64> = admin
                .exec_first("SELECT COUNT(*) FROM mysql.user WHERE user = ?", (user,))
                .await
                .unwrap();
            n == Some(0)
        }
    })
    .await;
    assert!(
        gone.is_some(),
        "user still exists {:?} after issue",
        issued.elapsed()
    );
    println!(
        "2 s lease (MariaDB): user dropped {:.2} s after issue",
        issued.elapsed().as_secs_f64()
    );
    assert!(
        session.query_drop("SELECT 1").await.is_err(),
        "session must be killed"
    );
    my.drop_database(&db).await;
}

async fn issue(client: &Client, role: &str) -> (String, String) {
    let creds = client
        .ok("GET", &format!("database/creds/{role}"), None)
        .await;
    (
        creds["lease_id"].as_str().unwrap().to_owned(),
        creds["data"]["username"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn revoke_prefix_deleted_roles_and_lease_details() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;
    // A role whose name extends "ro": revoke-prefix of database/creds/ro must not touch it.
    client
        .ok("POST", "database/roles/ro2", Some(json!({
            "db_name": "pg",
            "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';",
            "revocation_statements": "DROP ROLE IF EXISTS \"{{name}}\";",
        })))
        .await;
    let ro: Vec<(String, String)> = vec![issue(&client, "ro").await, issue(&client, "ro").await];
    let ro2 = issue(&client, "ro2").await;

    // Lookups show the owning token's accessor and the lease state.
    let me = client.ok("GET", "auth/token/lookup-self", None).await;
    let looked = client
        .ok(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": ro[0].0})),
        )
        .await;
    assert_eq!(looked["data"]["token_accessor"], me["data"]["accessor"]);
    assert_eq!(looked["data"]["state"], "active");
    let listed = client
        .ok("LIST", "sys/leases/lookup/database/creds", None)
        .await;
    assert_eq!(listed["data"]["keys"], json!(["ro/", "ro2/"]));
    let count = client.ok("GET", "sys/leases/count?type=all", None).await;
    assert_eq!(count["data"]["lease_count"], 3);

    client
        .ok("PUT", "sys/leases/revoke-prefix/database/creds/ro", None)
        .await;
    for (lease, user) in &ro {
        assert!(client.wait_lease_gone(lease).await);
        assert!(!pg_user_exists(pg, user).await);
    }
    assert!(
        pg_user_exists(pg, &ro2.1).await,
        "revoke-prefix must not touch database/creds/ro2"
    );
    client
        .ok("PUT", "sys/leases/lookup", Some(json!({"lease_id": ro2.0})))
        .await;

    // Deleting the role does not stop revocation: the lease carries its own statements.
    client.ok("DELETE", "database/roles/ro2", None).await;
    let (status, _) = client
        .call("PUT", "sys/leases/revoke", Some(json!({"lease_id": ro2.0})))
        .await;
    assert_eq!(status, 204);
    assert!(!pg_user_exists(pg, &ro2.1).await);

    // sync=false answers 202 and the worker revokes soon after.
    let (lease, user) = issue(&client, "ro").await;
    let (status, _) = client
        .call(
            "PUT",
            "sys/leases/revoke",
            Some(json!({"lease_id": lease, "sync": false})),
        )
        .await;
    assert_eq!(status, 202);
    assert!(client.wait_lease_gone(&lease).await);
    assert!(!pg_user_exists(pg, &user).await);

    // A user dropped behind dbwarden's back counts as revoked.
    client
        .ok("POST", "database/roles/plain", Some(json!({
            "db_name": "pg",
            "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';",
        })))
        .await;
    let (lease, user) = issue(&client, "plain").await;
    pg.connect("postgres")
        .await
        .batch_execute(&format!("DROP ROLE \"{user}\""))
        .await
        .unwrap();
    let (status, _) = client
        .call("PUT", "sys/leases/revoke", Some(json!({"lease_id": lease})))
        .await;
    assert_eq!(status, 204);

    // Renewal clamps to issue time + max TTL with Vault's warning.
    client
        .ok("POST", "database/roles/clamp", Some(json!({
            "db_name": "pg",
            "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';",
            "default_ttl": 60, "max_ttl": 120,
        })))
        .await;
    let (lease, _) = issue(&client, "clamp").await;
    let renewed = client
        .ok(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": lease, "increment": 3600})),
        )
        .await;
    assert!(renewed["lease_duration"].as_i64().unwrap() <= 120);
    assert!(
        renewed["warnings"][0]
            .as_str()
            .unwrap()
            .contains("TTL value is capped accordingly")
    );
    let renewed = client
        .ok(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": lease, "increment": null})),
        )
        .await;
    assert_eq!(
        renewed["lease_duration"], 60,
        "no increment resets to the role's default TTL"
    );

    // Tidy and metrics.
    let (status, body) = client.call("POST", "sys/leases/tidy", None).await;
    assert_eq!(status, 202, "{body}");
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/sys/metrics?format=prometheus", server.addr))
        .header("X-Vault-Token", &server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    for needle in [
        "dbwarden_leases{state=\"active\"}",
        "dbwarden_leases{state=\"irrevocable\"} 0",
        "dbwarden_credentials_issued_total{mount=\"database\",connection=\"pg\"}",
        "dbwarden_revocations_total",
        "dbwarden_issue_duration_seconds_bucket",
        "dbwarden_revocation_queue_lag_seconds",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let irrevocable = client.ok("GET", "sys/leases?type=irrevocable", None).await;
    assert_eq!(irrevocable["data"]["lease_count"], 0);
}

#[tokio::test]
async fn an_expired_tokens_leases_are_revoked() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    root.ok(
        "PUT",
        "sys/policy/creds",
        Some(json!({"policy": "path \"database/creds/*\" { capabilities = [\"read\"] }"})),
    )
    .await;
    let token = root
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["creds"], "ttl": "2s"})),
        )
        .await;
    let short = root.with_token(token["auth"]["client_token"].as_str().unwrap());
    let (lease, user) = issue(&short, "ro").await;
    // The lease itself lasts an hour; its token does not.
    assert!(
        root.wait_lease_gone(&lease).await,
        "the expired token's lease must be revoked"
    );
    assert!(!pg_user_exists(pg, &user).await);
}
