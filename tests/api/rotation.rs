//! Static roles, scheduled rotation of static and root credentials, hooks, and rotation
//! under SIGKILL, against real PostgreSQL and MariaDB.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbwarden_testkit::{TempPostgres, TestMysql, unique_name};
use hmac::Mac;
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::postgres::{prepare_db, register};
use crate::support::{Client, Server, operator_init, write_config};

/// Creates a login role with a known password in the throwaway cluster.
pub(crate) async fn pg_account(pg: &TempPostgres) -> (String, String) {
    let user = unique_name("app_");
    let password = unique_name("Init-");
    pg.connect("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {user} WITH LOGIN PASSWORD '{password}'"
        ))
        .await
        .unwrap();
    (user, password)
}

async fn creds(client: &Client, role: &str) -> Value {
    client
        .ok("GET", &format!("database/static-creds/{role}"), None)
        .await["data"]
        .clone()
}

#[tokio::test]
async fn postgres_static_role_rotates_on_create_on_demand_and_on_period() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let (user, initial) = pg_account(pg).await;
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;
    client
        .ok(
            "POST",
            "database/static-roles/app",
            Some(json!({
                "db_name": "pg", "username": user, "rotation_period": "5s",
            })),
        )
        .await;
    let first = creds(&client, "app").await;
    assert_eq!(first["username"], user.as_str());
    assert_eq!(first["rotation_period"], 5);
    assert!(first["ttl"].as_i64().unwrap() <= 5);
    let p1 = first["password"].as_str().unwrap().to_owned();
    assert!(
        pg.connect_as(&db, &user, &p1).await.is_ok(),
        "rotated-on-create password logs in"
    );
    assert!(
        pg.connect_as(&db, &user, &initial).await.is_err(),
        "the imported password is refused"
    );

    client.ok("POST", "database/rotate-role/app", None).await;
    let p2 = creds(&client, "app").await["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(p1, p2);
    assert!(pg.connect_as(&db, &user, &p2).await.is_ok());
    assert!(pg.connect_as(&db, &user, &p1).await.is_err());

    // The period fires by itself.
    let mut p3 = p2.clone();
    for _ in 0..200 {
        p3 = creds(&client, "app").await["password"]
            .as_str()
            .unwrap()
            .to_owned();
        if p3 != p2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(p3, p2, "the 5 s period did not rotate");
    assert!(pg.connect_as(&db, &user, &p3).await.is_ok());
    assert!(pg.connect_as(&db, &user, &p2).await.is_err());

    // Vault's rules on fields and names.
    let (status, body) = client
        .call(
            "POST",
            "database/static-roles/app",
            Some(json!({"username": "someone-else"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body.to_string()
            .contains("cannot update static account username")
    );
    let (status, body) = client
        .call("POST", "database/static-roles/x", Some(json!({"db_name": "pg", "username": user, "rotation_period": 60, "rotation_schedule": "0 * * * *"})))
        .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("mutually exclusive"), "{body}");
    let (status, _) = client
        .call(
            "POST",
            "database/static-roles/x",
            Some(json!({"db_name": "pg", "username": user, "rotation_period": 2})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = client
        .call(
            "POST",
            "database/roles/app",
            Some(json!({"db_name": "pg", "creation_statements": "SELECT 1"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("must be unique"));
    let listed = client.ok("LIST", "database/static-roles", None).await;
    assert_eq!(listed["data"]["keys"], json!(["app"]));
    client.ok("DELETE", "database/static-roles/app", None).await;
    let (status, _) = client.call("GET", "database/static-creds/app", None).await;
    assert_eq!(status, 400);
    let log = server.stop();
    for secret in [&p1, &p2, &p3] {
        assert!(
            !log.contains(secret.as_str()),
            "a static password reached the log"
        );
    }
}

#[tokio::test]
async fn mariadb_static_role_rotates() {
    let my = TestMysql::shared();
    let db = my.create_database("static_").await;
    let user = unique_name("app_");
    let initial = unique_name("Init-");
    let mut admin = my.connect().await;
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{initial}'"
        ))
        .await
        .unwrap();
    let server = Server::dev();
    let client = server.client();
    crate::mysql::register(&client, my, &db, "my", "*").await;
    client
        .ok(
            "POST",
            "database/static-roles/app",
            Some(json!({"db_name": "my", "username": user, "rotation_period": 3600})),
        )
        .await;
    let p1 = creds(&client, "app").await["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(my.connect_as(&user, &p1, None).await.is_ok());
    assert!(my.connect_as(&user, &initial, None).await.is_err());
    client.ok("POST", "database/rotate-role/app", None).await;
    let p2 = creds(&client, "app").await["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(my.connect_as(&user, &p2, None).await.is_ok());
    assert!(my.connect_as(&user, &p1, None).await.is_err());
    admin
        .query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
    my.drop_database(&db).await;
}

#[tokio::test]
async fn cron_schedule_fires_at_the_scheduled_seconds() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let (user, _) = pg_account(pg).await;
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;
    // The 6-field extension: every 2 seconds.
    client
        .ok("POST", "database/static-roles/cron", Some(json!({
            "db_name": "pg", "username": user, "rotation_schedule": "*/2 * * * * *", "skip_import_rotation": true,
        })))
        .await;
    let role = client.ok("GET", "database/static-roles/cron", None).await;
    assert_eq!(role["data"]["rotation_schedule"], "*/2 * * * * *");
    let mut seen = Vec::new();
    for _ in 0..100 {
        let c = creds(&client, "cron").await;
        if let Some(t) = c["last_vault_rotation"].as_str()
            && !c["password"].as_str().unwrap_or_default().is_empty()
            && seen.last().map(String::as_str) != Some(t)
        {
            seen.push(t.to_owned());
        }
        if seen.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.len() >= 2,
        "the schedule should fire every 2 s: {seen:?}"
    );
    // Each planned time is an even second, as the expression says.
    let next =
        client.ok("GET", "database/static-roles/cron", None).await["data"]["next_vault_rotation"]
            .as_str()
            .unwrap()
            .to_owned();
    let next = chrono::DateTime::parse_from_rfc3339(&next).unwrap();
    assert_eq!(chrono::Timelike::second(&next) % 2, 0, "{next}");
    assert_eq!(chrono::Timelike::nanosecond(&next), 0, "{next}");
    let c = creds(&client, "cron").await;
    assert!(
        pg.connect_as(&db, &user, c["password"].as_str().unwrap())
            .await
            .is_ok()
    );
}

/// A webhook receiver: records (signature header, body) of every POST.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let sig = headers
                        .get("x-dbwarden-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    store
                        .lock()
                        .unwrap()
                        .push((sig, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    let raw = String::from_utf8_lossy(&body).into_owned();
                    store.lock().unwrap().last_mut().unwrap().1["__raw"] = json!(raw);
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn verify_signature(secret: &str, header: &str, raw: &str) -> bool {
    let Some((t, sig)) = header
        .strip_prefix("t=")
        .and_then(|h| h.split_once(",sha256="))
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{raw}").as_bytes());
    hex::encode(mac.finalize().into_bytes()) == sig
}

#[tokio::test]
async fn hooks_receive_signed_events_for_rotations_and_failures() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let (user, _) = pg_account(pg).await;
    let (url, seen) = webhook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("event.json");
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;
    let secret = "a-webhook-secret-of-some-length";
    client
        .ok(
            "POST",
            "database/hooks/notify",
            Some(json!({"type": "webhook", "url": url, "secret": secret})),
        )
        .await;
    client
        .ok("POST", "database/hooks/script", Some(json!({
            "type": "command", "command": "/bin/sh", "args": ["-c", format!("cat >> {}", out.display())],
        })))
        .await;
    let hook = client.ok("GET", "database/hooks/notify", None).await;
    assert!(
        hook["data"].get("secret").is_none(),
        "the hook secret is never returned"
    );
    let (status, _) = client
        .call("POST", "database/hooks/leaky", Some(json!({"type": "webhook", "url": "http://x.test/", "secret": secret, "include_password": true})))
        .await;
    assert_eq!(status, 400, "include_password needs https");

    client
        .ok("POST", "database/static-roles/app", Some(json!({
            "db_name": "pg", "username": user, "rotation_period": 3600, "hooks": ["notify", "script"],
        })))
        .await;
    let password = creds(&client, "app").await["password"]
        .as_str()
        .unwrap()
        .to_owned();
    // Make the next rotation fail.
    client
        .ok("POST", "database/static-roles/app", Some(json!({"rotation_statements": "ALTER ROLE \"no_such_role_x\" WITH PASSWORD '{{password}}'"})))
        .await;
    let (status, body) = client.call("POST", "database/rotate-role/app", None).await;
    assert_eq!(status, 500, "{body}");
    let failing = creds(&client, "app").await;
    assert_eq!(failing["ttl"], 0);
    assert!(failing["last_error"].is_string(), "{failing}");
    assert_eq!(
        failing["password"],
        password.as_str(),
        "the stored password stays the working one"
    );

    let mut events = Vec::new();
    for _ in 0..100 {
        events = seen.lock().unwrap().clone();
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Hooks are delivered independently; order them by the rotation they report.
    events.sort_by(|a, b| {
        a.1["rotation_time"]
            .as_str()
            .cmp(&b.1["rotation_time"].as_str())
    });
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        vec!["rotation.succeeded", "rotation.failed"],
        "{events:?}"
    );
    for (sig, event) in &events {
        assert!(
            verify_signature(secret, sig, event["__raw"].as_str().unwrap()),
            "bad signature {sig}"
        );
        assert_eq!(event["username"], user.as_str());
        assert_eq!(event["name"], "app");
        assert!(
            event.get("password").is_none(),
            "no password unless asked for"
        );
        assert!(!event["__raw"].as_str().unwrap().contains(&password));
    }
    assert!(events[1].1["error"].is_string());

    let mut script_events = String::new();
    for _ in 0..100 {
        script_events = std::fs::read_to_string(&out).unwrap_or_default();
        if script_events.matches("rotation.").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        script_events.contains("\"event\":\"rotation.succeeded\""),
        "{script_events}"
    );
    assert!(
        script_events.contains("\"event\":\"rotation.failed\""),
        "{script_events}"
    );
    let metrics = reqwest::Client::new()
        .get(format!("{}/v1/sys/metrics?format=prometheus", server.addr))
        .header("X-Vault-Token", &server.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("dbwarden_rotations_total"), "{metrics}");
    assert!(metrics.contains("dbwarden_hook_runs_total"), "{metrics}");
}

#[tokio::test]
async fn scheduled_root_rotation_changes_the_admin_password() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let admin = unique_name("root_admin_");
    let admin_password = unique_name("Root-");
    pg.connect("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {admin} WITH LOGIN SUPERUSER PASSWORD '{admin_password}'"
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
                "username": admin, "password": admin_password,
                "allowed_roles": "*", "rotation_period": "5s",
            })),
        )
        .await;
    client
        .ok("POST", "database/roles/ro", Some(json!({"db_name": "pg", "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"})))
        .await;
    let config = client.ok("GET", "database/config/pg", None).await;
    assert_eq!(config["data"]["rotation_period"], 5);
    let mut rotated = false;
    for _ in 0..150 {
        if pg.connect_as(&db, &admin, &admin_password).await.is_err() {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rotated,
        "the scheduled root rotation did not change the admin password"
    );
    let issued = client.ok("GET", "database/creds/ro", None).await;
    assert!(
        issued["data"]["username"].is_string(),
        "issuance works with the rotated admin password"
    );
    let config = client.ok("GET", "database/config/pg", None).await;
    assert!(config["data"]["last_root_rotation"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_rotations_never_loses_the_password() {
    let kills: usize = std::env::var("DBWARDEN_TORTURE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let pg = TempPostgres::shared();
    let (user, _) = pg_account(pg).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = write_config(
        dir.path(),
        "rot.toml",
        &format!(
            "backend = \"sqlite\"\npath = \"{}\"",
            dir.path().join("dbwarden.db").display()
        ),
        "",
    );
    let root = operator_init(&config);
    let mut server = Server::with_config(&config, &root, &listen);
    let client = server.client();
    client
        .ok(
            "POST",
            "sys/mounts/database",
            Some(json!({"type": "database"})),
        )
        .await;
    client
        .ok("POST", "database/config/pg", Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.connection_url_template("postgres"),
            "username": pg.superuser(), "password": pg.superuser_password(), "allowed_roles": "*",
        })))
        .await;
    client
        .ok(
            "POST",
            "database/static-roles/app",
            Some(json!({"db_name": "pg", "username": user, "rotation_period": 5})),
        )
        .await;
    let mut rotations = 0;
    let mut logins = 0;
    for round in 0..kills {
        let client = server.client();
        let hammer = tokio::spawn(async move {
            let mut n = 0;
            while let Some(200 | 204) = client.try_call("POST", "database/rotate-role/app").await {
                n += 1;
            }
            n
        });
        tokio::time::sleep(Duration::from_millis(100 + (round as u64 * 53) % 400)).await;
        server.kill9();
        rotations += hammer.await.unwrap();
        server = Server::with_config(&config, &root, &listen);
        let c = creds(&server.client(), "app").await;
        let password = c["password"].as_str().unwrap();
        if let Err(e) = pg.connect_as("postgres", &user, password).await {
            let log = server.stop();
            panic!(
                "round {round}: the password in static-creds does not log in: {e}\n{c}\nserver log:\n{log}"
            );
        }
        logins += 1;
    }
    println!(
        "rotation torture: kills={kills} completed_rotations={rotations} successful_logins={logins}"
    );
    server.stop();
}
