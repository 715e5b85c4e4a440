//! `dbwarden bench` against a real server and real databases: every workload runs, the
//! baselines run the role's statements on the database, and nothing is left behind.

use std::process::Command;

use dbwarden_testkit::{TempPostgres, TestMysql, unique_name};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::access::count_users;
use crate::postgres::{prepare_db, register};
use crate::support::Server;

/// Runs `dbwarden bench <args>` with the server's address and token in the environment.
fn bench(server: &Server, args: &[&str], database_url: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbwarden"));
    cmd.arg("bench")
        .args(args)
        .env("DBWARDEN_ADDR", &server.addr)
        .env("DBWARDEN_TOKEN", &server.token)
        .env_remove("DBWARDEN_BENCH_DATABASE_URL");
    if let Some(url) = database_url {
        cmd.env("DBWARDEN_BENCH_DATABASE_URL", url);
    }
    let out = cmd.output().expect("run dbwarden bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_report(out: &(i32, String, String)) -> Value {
    assert_eq!(out.0, 0, "bench failed: {}", out.2);
    serde_json::from_str(&out.1).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.1))
}

#[tokio::test]
async fn postgres_group_role_creds_with_baselines_leave_nothing_behind() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let group = unique_name("grp_");
    pg.connect(&db)
        .await
        .batch_execute(&format!(
            "CREATE ROLE {group} NOLOGIN; GRANT SELECT ON t TO {group};"
        ))
        .await
        .unwrap();
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;
    let role = unique_name("b").chars().take(8).collect::<String>();
    client
        .ok("POST", &format!("database/roles/{role}"), Some(json!({
            "db_name": "pg",
            "creation_statements": format!("CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' IN ROLE {group};"),
            "default_ttl": "1h",
        })))
        .await;

    let out = bench(
        &server,
        &[
            "creds",
            "--role",
            &role,
            "-c",
            "1,4",
            "-n",
            "12",
            "--rounds",
            "2",
            "--baseline",
            "--format",
            "json",
        ],
        Some(&pg.url_for(&db)),
    );
    let report = json_report(&out);
    assert_eq!(report["workload"], "creds");
    assert_eq!(report["rounds"], 2);
    assert_eq!(report["plugin_name"], "postgresql-database-plugin");
    let levels = report["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for level in levels {
        for run in ["dbwarden", "database", "serialized"] {
            assert_eq!(
                level[run]["ok"], 24,
                "{run} at {}: {level}",
                level["concurrency"]
            );
            assert_eq!(level[run]["errors"], 0, "{run}: {level}");
            assert!(level[run]["throughput"].as_f64().unwrap() > 0.0);
            let (p50, p99, max) = (
                level[run]["p50_ms"].as_f64().unwrap(),
                level[run]["p99_ms"].as_f64().unwrap(),
                level[run]["max_ms"].as_f64().unwrap(),
            );
            assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{level}");
        }
        assert!(level["efficiency"].as_f64().unwrap() > 0.0);
        assert!(level["vs_serialized"].as_f64().unwrap() > 0.0);
    }
    // Every user the run created is gone: dbwarden's leases were revoked, the baselines'
    // users (named by the same template, for the same token and role) dropped.
    assert_eq!(count_users(pg, &format!("v-root-{role}-")).await, 0);
    let (status, _) = client
        .call(
            "LIST",
            &format!("sys/leases/lookup/database/creds/{role}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "no lease left");
    // The admin URL's password is in no output.
    assert!(!out.1.contains(pg.superuser_password()) && !out.2.contains(pg.superuser_password()));

    // The other workloads, and the text table.
    for workload in ["creds-revoke", "renew", "lookup"] {
        let out = bench(
            &server,
            &[workload, "--role", &role, "-c", "2", "-n", "10"],
            None,
        );
        assert_eq!(out.0, 0, "{workload}: {}", out.2);
        assert!(
            out.1.contains("ops/s") && out.1.contains("dbwarden"),
            "{}",
            out.1
        );
        assert!(
            out.1
                .lines()
                .any(|l| l.trim_start().starts_with("2  dbwarden")
                    && l.split_whitespace().last() == Some("0")),
            "{workload}: no error-free row:\n{}",
            out.1
        );
    }
    assert_eq!(count_users(pg, &format!("v-root-{role}-")).await, 0);
}

#[tokio::test]
async fn mariadb_creds_revoke_baseline_and_static_read() {
    let my = TestMysql::shared();
    let db = my.create_database("bench_").await;
    let server = Server::dev();
    let client = server.client();
    crate::mysql::register(&client, my, &db, "my", "*").await;
    client
        .ok("POST", "database/roles/ro", Some(json!({
            "db_name": "my",
            "creation_statements": format!("CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; GRANT SELECT ON `{db}`.* TO '{{{{name}}}}'@'%';"),
            "default_ttl": 600,
        })))
        .await;
    let report = json_report(&bench(
        &server,
        &[
            "creds-revoke",
            "--role",
            "ro",
            "-c",
            "3",
            "-n",
            "15",
            "--baseline",
            "--format",
            "json",
        ],
        Some(&my.admin_url()),
    ));
    let level = &report["levels"][0];
    for run in ["dbwarden", "database", "serialized"] {
        assert_eq!(level[run]["ok"], 15, "{run}: {level}");
    }
    let mut admin = my.connect().await;
    let left: Vec<String> = admin
        .query("SELECT user FROM mysql.user WHERE user LIKE 'v-root-ro-%'")
        .await
        .unwrap();
    assert!(left.is_empty(), "users left: {left:?}");

    // static-read against a static role.
    let user = unique_name("st").chars().take(16).collect::<String>();
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'Initial-1'"
        ))
        .await
        .unwrap();
    client
        .ok(
            "POST",
            "database/static-roles/app",
            Some(json!({
                "db_name": "my", "username": user, "rotation_period": "1h",
            })),
        )
        .await;
    let report = json_report(&bench(
        &server,
        &[
            "static-read",
            "--role",
            "app",
            "-c",
            "2",
            "-n",
            "20",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(report["levels"][0]["dbwarden"]["ok"], 20);
    admin
        .query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
}

#[test]
fn bad_options_exit_2_with_a_message() {
    let server = Server::dev();
    let out = bench(
        &server,
        &[
            "lookup",
            "--role",
            "x",
            "--baseline",
            "--baseline-url",
            "postgres://u@h/db",
        ],
        None,
    );
    assert_eq!(out.0, 2, "{}", out.2);
    assert!(out.2.contains("--baseline compares creation"), "{}", out.2);
    let out = bench(&server, &["creds", "--role", "x", "-c", "0"], None);
    assert_eq!(out.0, 2, "{}", out.2);
    assert!(
        out.2.contains("--concurrency must be at least 1"),
        "{}",
        out.2
    );
    let out = bench(&server, &["creds", "--role", "x", "--rounds", "0"], None);
    assert_eq!(out.0, 2, "{}", out.2);
    assert!(out.2.contains("--rounds"), "{}", out.2);
    // An unknown role is a runtime failure with the server's message.
    let out = bench(&server, &["creds", "--role", "nope", "-n", "1"], None);
    assert_eq!(out.0, 1, "{}", out.2);
    assert!(out.2.contains("database/roles/nope"), "{}", out.2);
}
