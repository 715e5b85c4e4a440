//! Issue, use, renew and revoke a PostgreSQL credential through the API.

use dbwarden_testkit::{TempPostgres, unique_name};
use serde_json::json;

use crate::support::{Client, Server};

/// Registers the throwaway cluster's database `db` as connection `name` and a role `role`
/// that may read table `t`.
pub async fn register(client: &Client, pg: &TempPostgres, db: &str, name: &str, role: &str) {
    client
        .ok(
            "POST",
            &format!("database/config/{name}"),
            Some(json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": pg.connection_url_template(db),
                "username": pg.superuser(),
                "password": pg.superuser_password(),
                "allowed_roles": "*",
                "max_open_connections": 4,
            })),
        )
        .await;
    client
        .ok(
            "POST",
            &format!("database/roles/{role}"),
            Some(json!({
                "db_name": name,
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                    "GRANT SELECT ON t TO \"{{name}}\";"
                ],
                "default_ttl": "1h",
                "max_ttl": "2h",
            })),
        )
        .await;
}

/// Creates a database with a readable table `t`.
pub async fn prepare_db(pg: &TempPostgres) -> String {
    let db = unique_name("api_");
    pg.create_database(&db).await;
    pg.connect(&db)
        .await
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42);")
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn issue_use_renew_revoke_cuts_access() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;

    // The admin password never comes back.
    let config = client.ok("GET", "database/config/pg", None).await;
    assert!(
        config["data"]["connection_details"]
            .get("password")
            .is_none()
    );
    assert!(!config.to_string().contains(pg.superuser_password()));

    let creds = client.ok("GET", "database/creds/ro", None).await;
    let lease_id = creds["lease_id"].as_str().unwrap().to_owned();
    assert!(lease_id.starts_with("database/creds/ro/"));
    assert_eq!(lease_id.rsplit('/').next().unwrap().len(), 24);
    assert_eq!(creds["lease_duration"], 3600);
    assert_eq!(creds["renewable"], true);
    let user = creds["data"]["username"].as_str().unwrap().to_owned();
    let pass = creds["data"]["password"].as_str().unwrap().to_owned();
    assert!(
        user.starts_with("v-root-ro-") || user.starts_with("v-token-ro-"),
        "{user}"
    );

    // Log in and read the table.
    let session = pg
        .connect_as(&db, &user, &pass)
        .await
        .expect("login with issued credential");
    let row = session.query_one("SELECT v FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    // A wrong password is refused (the harness cluster requires passwords).
    assert!(pg.connect_as(&db, &user, "wrong-password").await.is_err());

    // Renew.
    let renewed = client
        .ok(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": lease_id, "increment": "30m"})),
        )
        .await;
    assert_eq!(renewed["lease_id"], lease_id.as_str());
    assert_eq!(renewed["lease_duration"], 1800);
    let looked = client
        .ok(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert!(looked["data"]["ttl"].as_i64().unwrap() <= 1800);
    assert!(looked["data"]["last_renewal"].is_string());

    // Revoke with the session still open.
    let (status, _) = client
        .call(
            "PUT",
            "sys/leases/revoke",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert_eq!(status, 204);

    assert!(
        session.query_one("SELECT v FROM t", &[]).await.is_err(),
        "live session must be terminated"
    );
    assert!(
        pg.connect_as(&db, &user, &pass).await.is_err(),
        "login must fail after revoke"
    );
    let admin = pg.connect("postgres").await;
    let exists = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(exists, 0, "user must be dropped");
    let (status, body) = client
        .call(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Revoking again is harmless.
    let (status, _) = client
        .call(
            "PUT",
            "sys/leases/revoke",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert_eq!(status, 204);
    let log = server.stop();
    assert!(!log.contains(&pass), "issued password in the server log");
    assert!(
        !log.contains(pg.superuser_password()),
        "admin password in the server log"
    );
}

#[tokio::test]
async fn failed_creation_leaves_no_user_and_no_password_in_error() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;
    client
        .ok(
            "POST",
            "database/roles/broken",
            Some(json!({
                "db_name": "pg",
                "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'; GRANT SELECT ON no_such_table TO \"{{name}}\";",
            })),
        )
        .await;
    let (status, body) = client.call("GET", "database/creds/broken", None).await;
    assert_eq!(status, 500, "{body}");
    let message = body["errors"][0].as_str().unwrap();
    assert!(message.contains("statement 2 of 2"), "{message}");
    let admin = pg.connect("postgres").await;
    let leftovers = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-root-broken-%'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(leftovers, 0);
    let (status, _) = client
        .call("LIST", "sys/leases/lookup/database/creds/broken", None)
        .await;
    assert_eq!(status, 404, "no lease may remain");
}

#[tokio::test]
async fn issuance_is_parallel_and_rotate_root_keeps_working() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    // A dedicated admin whose password rotate-root may change.
    let admin_name = unique_name("admin_");
    let admin_pass = unique_name("Pw-");
    pg.connect("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {admin_name} WITH LOGIN CREATEROLE SUPERUSER PASSWORD '{admin_pass}'"
        ))
        .await
        .unwrap();
    let server = Server::dev();
    let client = server.client();
    client
        .ok(
            "POST",
            "database/config/pg",
            Some(json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": pg.connection_url_template(&db),
                "username": admin_name,
                "password": admin_pass,
                "allowed_roles": ["ro"],
            })),
        )
        .await;
    client
        .ok(
            "POST",
            "database/roles/ro",
            Some(json!({"db_name": "pg", "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"]})),
        )
        .await;
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.ok("GET", "database/creds/ro", None).await })
        })
        .collect();
    for t in tasks {
        let creds = t.await.unwrap();
        assert!(creds["data"]["username"].is_string());
    }
    client.ok("POST", "database/rotate-root/pg", None).await;
    assert!(
        pg.connect_as(&db, &admin_name, &admin_pass).await.is_err(),
        "old admin password must be refused"
    );
    let creds = client.ok("GET", "database/creds/ro", None).await;
    assert!(
        creds["data"]["username"].is_string(),
        "issuance works with the rotated password"
    );
    client
        .ok("PUT", "sys/leases/revoke-prefix/database/creds/ro", None)
        .await;
    let (status, _) = client
        .call("LIST", "sys/leases/lookup/database/creds/ro", None)
        .await;
    assert_eq!(status, 404);
}
