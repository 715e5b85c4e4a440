//! A `--config` server keeps its state across restarts, and storage holds no secret in clear.

use dbwarden_testkit::TempPostgres;
use serde_json::json;

use crate::postgres::{prepare_db, register};
use crate::support::{Server, run_cli, sqlite_config};

#[tokio::test]
async fn restart_keeps_state_and_storage_has_no_admin_password() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = sqlite_config(dir.path());
    let config_arg = config.to_str().unwrap();

    let (code, stdout, stderr) = run_cli(&[
        "operator", "init", "--config", config_arg, "--format", "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let root: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let root = root["root_token"].as_str().unwrap().to_owned();
    let key_mode = std::fs::metadata(dir.path().join("seal.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777,
        0o400
    );

    // A second init refuses and changes nothing.
    let db_before = std::fs::read(dir.path().join("dbwarden.db")).unwrap();
    let key_before = std::fs::read(dir.path().join("seal.key")).unwrap();
    let (code, _, stderr) = run_cli(&["operator", "init", "--config", config_arg]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("already"), "{stderr}");
    assert_eq!(
        std::fs::read(dir.path().join("seal.key")).unwrap(),
        key_before
    );
    assert_eq!(
        std::fs::read(dir.path().join("dbwarden.db")).unwrap().len(),
        db_before.len()
    );

    let server = Server::with_config(&config, &root, &listen);
    let client = server.client();
    client
        .ok(
            "POST",
            "sys/mounts/database",
            Some(json!({"type": "database"})),
        )
        .await;
    register(&client, pg, &db, "pg", "ro").await;
    let child = client
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"]})),
        )
        .await;
    let child_token = child["auth"]["client_token"].as_str().unwrap().to_owned();
    let creds = client.ok("GET", "database/creds/ro", None).await;
    let password = creds["data"]["password"].as_str().unwrap().to_owned();
    let log = server.stop();

    // Nothing secret in clear in storage or the log.
    let mut storage = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("dbwarden.db") {
            storage.extend(std::fs::read(&path).unwrap());
        }
    }
    for (what, secret) in [
        ("admin password", pg.superuser_password()),
        ("issued password", password.as_str()),
        ("root token", root.as_str()),
        ("child token", child_token.as_str()),
    ] {
        assert!(
            !storage
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{what} found in storage"
        );
        assert!(!log.contains(secret), "{what} found in the log");
    }

    let server = Server::with_config(&config, &root, &listen);
    let client = server.client();
    let config_read = client.ok("GET", "database/config/pg", None).await;
    assert_eq!(
        config_read["data"]["plugin_name"],
        "postgresql-database-plugin"
    );
    client.ok("GET", "database/roles/ro", None).await;
    client
        .with_token(&child_token)
        .ok("GET", "auth/token/lookup-self", None)
        .await;
    let lease = client
        .ok(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": creds["lease_id"]})),
        )
        .await;
    assert_eq!(lease["data"]["id"], creds["lease_id"]);
    // The stored admin password still works after the restart.
    let again = client.ok("GET", "database/creds/ro", None).await;
    assert!(again["data"]["username"].is_string());
    client
        .ok("PUT", "sys/leases/revoke-prefix/database/creds", None)
        .await;
    server.stop();
}

#[test]
fn cli_errors_have_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen_address = \"127.0.0.1:1\"\nlisten_adress = 2\n",
    )
    .unwrap();
    let (code, _, stderr) = run_cli(&["server", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("listen_adress"), "{stderr}");
    let (code, _, _) = run_cli(&["server"]);
    assert_eq!(code, 2);
    let (config, _) = sqlite_config(dir.path());
    let (code, _, stderr) = run_cli(&["server", "--config", config.to_str().unwrap()]);
    assert_eq!(
        code, 2,
        "an uninitialised storage is a configuration error: {stderr}"
    );
    assert!(stderr.contains("operator init"), "{stderr}");
    let (code, stdout, _) = run_cli(&["server", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--dev-root-token-id"));
}

#[tokio::test]
async fn tls_listener_serves_https() {
    dbwarden_testkit::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make a test certificate");
    assert!(status.success());
    let (config, listen) = sqlite_config(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replacen(
        "\n[storage]",
        &format!(
            "\n[listener.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\n[storage]",
            cert.display(),
            key.display()
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let (code, _, stderr) = run_cli(&["operator", "init", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let server = Server::with_config(&config, "unused", &listen);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{listen}/v1/sys/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["initialized"], true);
    // Plain HTTP on the TLS port does not get an answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{listen}/v1/sys/health"))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    server.stop();
}
