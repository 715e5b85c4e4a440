//! After logins through every method, neither the storage file nor the server log (at debug
//! level) holds any of the secrets involved in clear.

use serde_json::json;

use crate::auth_userpass::totp_code;
use crate::k8s::{self, keys};
use crate::support::{Server, operator_init, sqlite_config};

#[tokio::test]
async fn no_login_secret_is_stored_or_logged_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = sqlite_config(dir.path());
    // Debug logging: the most a misconfigured deployment would write.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("log_level = \"debug\"\n{text}")).unwrap();
    let root_token = operator_init(&config);
    let server = Server::with_config(&config, &root_token, &listen);
    let root = server.client();
    let anonymous = root.anonymous();
    let mut secrets: Vec<(&str, String)> = Vec::new();

    for (path, kind) in [
        ("approle", "approle"),
        ("userpass", "userpass"),
        ("kubernetes", "kubernetes"),
        ("k8s-reviewed", "kubernetes"),
    ] {
        root.ok(
            "POST",
            &format!("sys/auth/{path}"),
            Some(json!({"type": kind})),
        )
        .await;
    }

    // AppRole: a generated and a custom secret ID, both used.
    root.ok(
        "POST",
        "auth/approle/role/app",
        Some(json!({"policies": "default"})),
    )
    .await;
    let rid = root.ok("GET", "auth/approle/role/app/role-id", None).await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let generated = root
        .ok("POST", "auth/approle/role/app/secret-id", None)
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let custom = "custom-secret-id-7f3a9c2e51".to_owned();
    root.ok(
        "POST",
        "auth/approle/role/app/custom-secret-id",
        Some(json!({"secret_id": custom})),
    )
    .await;
    for secret in [&generated, &custom] {
        let login = anonymous
            .ok(
                "POST",
                "auth/approle/login",
                Some(json!({"role_id": rid, "secret_id": secret})),
            )
            .await;
        secrets.push((
            "approle token",
            login["auth"]["client_token"].as_str().unwrap().to_owned(),
        ));
    }
    let (status, _) = anonymous
        .call(
            "POST",
            "auth/approle/login",
            Some(json!({"role_id": rid, "secret_id": "guessed-secret-id-0c9d8e7f"})),
        )
        .await;
    assert_eq!(status, 400);
    secrets.push(("generated secret ID", generated));
    secrets.push(("custom secret ID", custom));
    secrets.push(("guessed secret ID", "guessed-secret-id-0c9d8e7f".into()));

    // Userpass with TOTP, and a failed attempt.
    let password = "Userpass-Password-5b6c7d8e".to_owned();
    root.ok(
        "POST",
        "auth/userpass/users/dba",
        Some(json!({"password": password})),
    )
    .await;
    let totp = root.ok("POST", "auth/userpass/users/dba/totp", None).await;
    let totp_secret = totp["data"]["secret"].as_str().unwrap().to_owned();
    let code = totp_code(&totp_secret, chrono::Utc::now().timestamp());
    let login = anonymous
        .ok(
            "POST",
            "auth/userpass/login/dba",
            Some(json!({"password": password, "totp": code})),
        )
        .await;
    secrets.push((
        "userpass token",
        login["auth"]["client_token"].as_str().unwrap().to_owned(),
    ));
    let (status, _) = anonymous
        .call(
            "POST",
            "auth/userpass/login/dba",
            Some(json!({"password": "Wrong-Password-1a2b3c4d"})),
        )
        .await;
    assert_eq!(status, 400);
    secrets.push(("userpass password", password));
    secrets.push(("wrong password", "Wrong-Password-1a2b3c4d".into()));
    secrets.push(("TOTP secret", totp_secret));

    // Kubernetes: a ServiceAccount JWT, and a reviewer JWT kept in the config.
    root.ok(
        "POST",
        "auth/kubernetes/config",
        Some(
            json!({"kubernetes_host": "https://127.0.0.1:1", "pem_keys": [keys().rsa.public_pem]}),
        ),
    )
    .await;
    root.ok(
        "POST",
        "auth/kubernetes/role/app",
        Some(
            json!({"bound_service_account_names": "app", "bound_service_account_namespaces": "ns"}),
        ),
    )
    .await;
    let jwt = k8s::token("ns", "app");
    let login = anonymous
        .ok(
            "POST",
            "auth/kubernetes/login",
            Some(json!({"role": "app", "jwt": jwt})),
        )
        .await;
    secrets.push((
        "kubernetes token",
        login["auth"]["client_token"].as_str().unwrap().to_owned(),
    ));
    let reviewer = "reviewer-jwt-3e4f5a6b7c8d9e0f".to_owned();
    root.ok(
        "POST",
        "auth/k8s-reviewed/config",
        Some(
            json!({"kubernetes_host": "https://127.0.0.1:1", "token_reviewer_jwt": reviewer,
                    "pem_keys": [keys().ec.public_pem]}),
        ),
    )
    .await;
    secrets.push(("JWT signature", jwt.rsplit('.').next().unwrap().to_owned()));
    secrets.push(("JWT", jwt));
    secrets.push(("reviewer JWT", reviewer));
    secrets.push(("root token", root_token.clone()));

    let log = server.stop();
    let mut storage = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("dbwarden.db") {
            storage.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(storage.len() > 10_000, "the storage file was found");
    assert!(
        log.contains("DEBUG") || log.contains("INFO"),
        "the log was captured"
    );
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} is long enough to search for");
        assert!(
            !storage
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{what} found in storage"
        );
        assert!(
            !log.contains(secret.as_str()),
            "{what} found in the server log"
        );
    }
}
