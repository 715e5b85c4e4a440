//! Drives a dev server with the real Python client `hvac` (tests/hvac/test_hvac.py).

use dbwarden_testkit::TempPostgres;

use crate::postgres::prepare_db;
use crate::support::Server;

#[tokio::test]
async fn hvac_client_works_unchanged() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    // A dedicated admin whose password rotate_root_credentials may change.
    let admin_user = dbwarden_testkit::unique_name("hvac_admin_");
    let admin_password = dbwarden_testkit::unique_name("Pw-");
    pg.connect("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {admin_user} WITH LOGIN SUPERUSER PASSWORD '{admin_password}'"
        ))
        .await
        .unwrap();
    let static_user = dbwarden_testkit::unique_name("hvac_static_");
    pg.connect("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {static_user} WITH LOGIN PASSWORD 'initial-pw'"
        ))
        .await
        .unwrap();
    let server = Server::dev();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hvac/test_hvac.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .env("VAULT_ADDR", &server.addr)
        .env("VAULT_TOKEN", &server.token)
        .env("PG_URL_TEMPLATE", pg.connection_url_template(&db))
        .env("ADMIN_USER", &admin_user)
        .env("ADMIN_PASSWORD", &admin_password)
        .env("STATIC_USER", &static_user)
        .output()
        .await
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hvac compatibility script failed (is `pip install hvac==2.4.0` done?)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("hvac compatibility: all checks passed"),
        "{stdout}"
    );
}

/// AppRole, Kubernetes and userpass logins through hvac's own calls
/// (tests/hvac/test_hvac_auth.py), with JWTs signed here by a test-only key.
#[tokio::test]
async fn hvac_auth_methods_work_unchanged() {
    use crate::k8s::{self, claims, keys, sign};
    use jsonwebtoken::Algorithm;

    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let k = keys();
    let jwt = |key: &k8s::KeyPair, ns: &str, aud: &str, ttl: i64| {
        sign(key, Algorithm::RS256, None, &claims(ns, "app", aud, ttl))
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hvac/test_hvac_auth.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .env("VAULT_ADDR", &server.addr)
        .env("VAULT_TOKEN", &server.token)
        .env("PG_URL_TEMPLATE", pg.connection_url_template(&db))
        .env("PG_USER", pg.superuser())
        .env("PG_PASSWORD", pg.superuser_password())
        .env("K8S_PEM", &k.rsa.cert_pem)
        .env("K8S_ISSUER", k8s::ISSUER)
        .env("K8S_JWT", jwt(&k.rsa, "team-a", "vault", 3600))
        .env("K8S_JWT_OTHER_NS", jwt(&k.rsa, "team-b", "vault", 3600))
        .env("K8S_JWT_EXPIRED", jwt(&k.rsa, "team-a", "vault", -600))
        .env("K8S_JWT_BAD_SIG", jwt(&k.attacker, "team-a", "vault", 3600))
        .env("K8S_JWT_WRONG_AUD", jwt(&k.rsa, "team-a", "other", 3600))
        .output()
        .await
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hvac auth script failed (is `pip install hvac==2.4.0` done?)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("hvac auth methods: all checks passed"),
        "{stdout}"
    );
    // The server refused the bad JWTs for the reasons the test meant.
    let log = server.stop();
    for reason in [
        "namespace",
        "expired",
        "verifies the JWT signature",
        "audience",
    ] {
        assert!(
            log.contains(reason),
            "no {reason:?} refusal in the log:\n{log}"
        );
    }
}
