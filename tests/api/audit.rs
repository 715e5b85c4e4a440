//! Audit devices: no secret in clear, a verifiable hash chain, and fail-closed requests.

use std::time::Duration;

use dbwarden_testkit::{TempPostgres, unique_name};
use serde_json::json;

use crate::postgres::{prepare_db, register};
use crate::support::{Server, run_cli};

fn verify(path: &std::path::Path) -> (i32, String) {
    let (code, stdout, stderr) = run_cli(&["audit", "verify", path.to_str().unwrap()]);
    (code, format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn audit_log_holds_no_secret_verifies_and_detects_tampering() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let static_user = unique_name("audited_");
    pg.connect("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {static_user} WITH LOGIN PASSWORD 'initial-static-pw'"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let server = Server::dev();
    let client = server.client();
    client
        .ok(
            "PUT",
            "sys/audit/file",
            Some(json!({"type": "file", "options": {"file_path": log.to_str().unwrap()}})),
        )
        .await;

    // A scripted sequence of the things an auditor cares about.
    register(&client, pg, &db, "pg", "ro").await;
    client
        .ok(
            "PUT",
            "sys/policy/app",
            Some(json!({"policy": "path \"database/creds/*\" { capabilities = [\"read\"] }"})),
        )
        .await;
    let child = client
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["app"]})),
        )
        .await;
    let child_token = child["auth"]["client_token"].as_str().unwrap().to_owned();
    let app = client.with_token(&child_token);
    let creds = app.ok("GET", "database/creds/ro", None).await;
    let issued_password = creds["data"]["password"].as_str().unwrap().to_owned();
    let lease = creds["lease_id"].as_str().unwrap().to_owned();
    app.ok("PUT", "sys/leases/renew", Some(json!({"lease_id": lease})))
        .await;
    let (status, _) = app.call("GET", "database/config/pg", None).await;
    assert_eq!(status, 403);
    client
        .ok(
            "POST",
            "database/static-roles/audited",
            Some(json!({"db_name": "pg", "username": static_user, "rotation_period": 3600})),
        )
        .await;
    client
        .ok("POST", "database/rotate-role/audited", None)
        .await;
    let static_password = client
        .ok("GET", "database/static-creds/audited", None)
        .await["data"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .ok("PUT", "sys/leases/revoke", Some(json!({"lease_id": lease})))
        .await;

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() >= 20,
        "expected request and response entries, got {}",
        lines.len()
    );
    for (what, secret) in [
        ("root token", server.token.as_str()),
        ("child token", child_token.as_str()),
        ("admin password", pg.superuser_password()),
        ("issued password", issued_password.as_str()),
        ("static password", static_password.as_str()),
        ("initial static password", "initial-static-pw"),
    ] {
        assert!(
            !text.contains(secret),
            "{what} appears in clear in the audit log"
        );
    }
    // The issued password is there, as its HMAC, which sys/audit-hash reproduces.
    let hashed = client
        .ok(
            "POST",
            "sys/audit-hash/file",
            Some(json!({"input": issued_password})),
        )
        .await["data"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(hashed.starts_with("hmac-sha256:"));
    assert!(
        text.contains(&hashed),
        "the issued password's HMAC is recorded"
    );
    // The denied request is recorded with its error; the lease id stays readable.
    assert!(text.contains("permission denied"));
    assert!(text.contains(&lease));
    // The first line is the response to enabling the device itself.
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["seq"].as_u64()),
        (Some("response"), Some(1))
    );
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["type"], "request");

    let (code, out) = verify(&log);
    assert_eq!(code, 0, "{out}");
    let devices = client.ok("GET", "sys/audit", None).await;
    let last_hash = devices["data"]["file/"]["last_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(devices["data"]["file/"]["options"].get("salt").is_none());
    server.stop();

    // `last_hash` is where the chain stood when sys/audit was read; that read's own
    // response entry is the one line after it.
    let original = std::fs::read_to_string(&log).unwrap();
    let all: Vec<&str> = original.lines().collect();
    let upto_read = all[..all.len() - 1].join("\n") + "\n";
    std::fs::write(&log, &upto_read).unwrap();
    let (c, o, e) = run_cli(&[
        "audit",
        "verify",
        log.to_str().unwrap(),
        "--expect-last-hash",
        &last_hash,
    ]);
    assert_eq!(c, 0, "{o}{e}");
    let original = upto_read;
    let lines: Vec<&str> = original.lines().collect();
    // Any single edited or deleted line is detected.
    for i in [0, lines.len() / 2, lines.len() - 2] {
        let mut edited = lines.clone();
        let changed = edited[i].replacen("\"type\":\"", "\"type\":\"x", 1);
        edited[i] = &changed;
        std::fs::write(&log, edited.join("\n") + "\n").unwrap();
        assert_ne!(verify(&log).0, 0, "editing line {} went unnoticed", i + 1);
        let mut removed = lines.clone();
        removed.remove(i);
        std::fs::write(&log, removed.join("\n") + "\n").unwrap();
        assert_ne!(verify(&log).0, 0, "deleting line {} went unnoticed", i + 1);
    }
    // Cutting the last line is caught against the hash the server reported.
    std::fs::write(&log, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let (c, _, _) = run_cli(&[
        "audit",
        "verify",
        log.to_str().unwrap(),
        "--expect-last-hash",
        &last_hash,
    ]);
    assert_ne!(c, 0);
}

#[tokio::test]
async fn requests_fail_closed_when_no_audit_device_can_write() {
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let server = Server::dev();
    let client = server.client();
    register(&client, pg, &db, "pg", "ro").await;
    client
        .ok(
            "PUT",
            "sys/audit/file",
            Some(json!({"type": "file", "options": {"file_path": log.to_str().unwrap()}})),
        )
        .await;
    client.ok("GET", "database/creds/ro", None).await;
    let before = pg
        .connect("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-root-ro-%'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    // Make the file unwritable (root ignores permissions, so point it at /dev/full) and
    // have the server reopen it, as log rotation does.
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    let pid = std::process::Command::new("pgrep")
        .args(["-f", &format!("dev-root-token-id {}", server.token)])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&pid.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(!pid.is_empty(), "server pid");
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = client.call("GET", "database/creds/ro", None).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.to_string().contains("audit"), "{body}");
    let after = pg
        .connect("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-root-ro-%'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        before, after,
        "no credential may be issued without an audit record"
    );
}
