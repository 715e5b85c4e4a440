//! Fault tests: the target database unreachable while leases expire, and a replica dying
//! while it owns due leases. SIGKILL during a mixed workload, and real outages of the target
//! and storage databases, are the torture harness's (`torture.rs`).

use std::collections::HashSet;
use std::time::Duration;

use dbwarden_testkit::{TempPostgres, unique_name};
use serde_json::{Value, json};

use crate::support::{Client, Proxy, Server, operator_init, write_config};

/// The roles of the cluster whose names start with `prefix`.
pub(crate) async fn pg_users_with_prefix(pg: &TempPostgres, prefix: &str) -> HashSet<String> {
    pg.connect("postgres")
        .await
        .query(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Registers a connection (URL through `port`) and a role without grants.
pub(crate) async fn setup_role(
    client: &Client,
    pg: &TempPostgres,
    port: u16,
    role: &str,
    extra: Value,
) {
    let (status, _) = client
        .call(
            "POST",
            "sys/mounts/database",
            Some(json!({"type": "database"})),
        )
        .await;
    assert!(status == 204 || status == 400);
    client
        .ok("POST", "database/config/pg", Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!("postgres://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/postgres?sslmode=disable"),
            "username": pg.superuser(),
            "password": pg.superuser_password(),
            "allowed_roles": "*",
            "max_open_connections": 8,
        })))
        .await;
    let mut body = json!({
        "db_name": "pg",
        "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';",
        "default_ttl": "1h",
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    client
        .ok("POST", &format!("database/roles/{role}"), Some(body))
        .await;
}

async fn lease_states(client: &Client, prefix: &str) -> Vec<(String, String)> {
    let (status, listed) = client
        .call("LIST", &format!("sys/leases/lookup/{prefix}"), None)
        .await;
    if status == 404 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for key in listed["data"]["keys"].as_array().unwrap() {
        let id = format!("{prefix}/{}", key.as_str().unwrap());
        let (status, lease) = client
            .call("PUT", "sys/leases/lookup", Some(json!({"lease_id": id})))
            .await;
        if status == 200 {
            out.push((id, lease["data"]["state"].as_str().unwrap().to_owned()));
        }
    }
    out
}

#[tokio::test]
async fn target_outage_is_retried_until_every_user_is_dropped() {
    let pg = TempPostgres::shared();
    let proxy = Proxy::start(pg.port()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = write_config(
        dir.path(),
        "outage.toml",
        &format!(
            "backend = \"sqlite\"\npath = \"{}\"",
            dir.path().join("dbwarden.db").display()
        ),
        "[leases]\nrevocation_retry_base = \"200ms\"\nrevocation_retry_cap = \"1s\"\nirrevocable_after_attempts = 2\n",
    );
    let root = operator_init(&config);
    let server = Server::with_config(&config, &root, &listen);
    let client = server.client();
    let role = unique_name("o").chars().take(8).collect::<String>();
    setup_role(&client, pg, proxy.port, &role, json!({"default_ttl": 2})).await;
    let mut users = Vec::new();
    for _ in 0..5 {
        let creds = client
            .ok("GET", &format!("database/creds/{role}"), None)
            .await;
        users.push((
            creds["lease_id"].as_str().unwrap().to_owned(),
            creds["data"]["username"].as_str().unwrap().to_owned(),
        ));
    }
    proxy.cut();
    // The leases expire while the database is unreachable: revocation fails and is retried.
    let mut failing = 0;
    for _ in 0..150 {
        let list = client.ok("GET", "sys/leases?type=irrevocable", None).await;
        failing = list["data"]["lease_count"].as_u64().unwrap();
        if failing == users.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        failing,
        users.len() as u64,
        "every lease should be failing while the database is away"
    );
    let lease = client
        .ok(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": users[0].0})),
        )
        .await;
    assert!(lease["data"]["revoke_error"].is_string(), "{lease}");
    assert_eq!(lease["data"]["irrevocable"], true);
    let (status, body) = client
        .call(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": users[0].0})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let user_set: HashSet<String> = users.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!(
        pg_users_with_prefix(pg, &format!("v-root-{role}-")).await,
        user_set,
        "nothing dropped yet"
    );

    proxy.restore();
    for (lease, _) in &users {
        assert!(
            client.wait_lease_gone(lease).await,
            "lease {lease} was not revoked after the outage"
        );
    }
    assert!(
        pg_users_with_prefix(pg, &format!("v-root-{role}-"))
            .await
            .is_empty()
    );
    let log = server.stop();
    println!(
        "outage: {} leases, {} failed revocation attempts logged, all users dropped after recovery",
        users.len(),
        log.matches("revocation failed").count()
    );
}

#[tokio::test]
async fn a_dead_replicas_claimed_leases_are_revoked_by_another() {
    let pg = TempPostgres::shared();
    let storage_db = unique_name("replicas_");
    pg.create_database(&storage_db).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "backend = \"postgres\"\nurl = \"{}\"",
        pg.url_for(&storage_db)
    );
    let leases = "[leases]\nclaim_timeout = \"8s\"\nrevocation_retry_base = \"200ms\"\nrevocation_retry_cap = \"1s\"\n";
    let (config_a, listen_a) = write_config(dir.path(), "a.toml", &storage, leases);
    let (config_b, listen_b) = write_config(dir.path(), "b.toml", &storage, leases);
    let root = operator_init(&config_a);
    let a = Server::with_config(&config_a, &root, &listen_a);
    let role = unique_name("r").chars().take(8).collect::<String>();
    // A slow revocation, so replica A is caught holding its claims.
    setup_role(
        &a.client(),
        pg,
        pg.port(),
        &role,
        json!({"default_ttl": 2, "revocation_statements": "SELECT pg_sleep(6); DROP ROLE IF EXISTS \"{{name}}\";"}),
    )
    .await;
    let mut leases_issued = Vec::new();
    for _ in 0..6 {
        let creds = a
            .client()
            .ok("GET", &format!("database/creds/{role}"), None)
            .await;
        leases_issued.push(creds["lease_id"].as_str().unwrap().to_owned());
    }
    // Let A claim the due leases (from 2 s on) and start its slow revocations, then start B.
    let client_a = a.client();
    for _ in 0..100 {
        let states = lease_states(&client_a, &format!("database/creds/{role}")).await;
        if states.len() == leases_issued.len() && states.iter().all(|(_, s)| s == "revoking") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = Server::with_config(&config_b, &root, &listen_b);
    let client_b = b.client();
    let states = lease_states(&client_b, &format!("database/creds/{role}")).await;
    assert_eq!(states.len(), leases_issued.len());
    assert!(
        states.iter().all(|(_, s)| s == "revoking"),
        "A should hold them: {states:?}"
    );
    let log_a = a.kill9();
    // While A's claims last, B must not touch them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        lease_states(&client_b, &format!("database/creds/{role}"))
            .await
            .len(),
        leases_issued.len()
    );
    for lease in &leases_issued {
        assert!(
            client_b.wait_lease_gone(lease).await || client_b.wait_lease_gone(lease).await,
            "{lease} not revoked by B"
        );
    }
    assert!(
        pg_users_with_prefix(pg, &format!("v-root-{role}-"))
            .await
            .is_empty()
    );
    let log_b = b.stop();
    let revoked_by_a = log_a.matches("lease revoked").count();
    let revoked_by_b = log_b.matches("lease revoked").count();
    println!(
        "replicas: leases={} revoked_by_a={revoked_by_a} revoked_by_b={revoked_by_b}",
        leases_issued.len()
    );
    assert_eq!(
        revoked_by_a + revoked_by_b,
        leases_issued.len(),
        "each lease revoked exactly once"
    );
    for lease in &leases_issued {
        assert!(
            !(log_a.contains(lease.as_str()) && log_b.contains(&format!("lease_id={lease}"))),
            "{lease} handled by both"
        );
    }
}
