//! What every dialect promises about names and passwords, checked through dbwarden itself:
//! the default password generator of each dialect against the dialect's documented rule, and
//! the 400 that names the limit when a generated name is too long.

use dbwarden::crypto::password::PasswordPolicy;
use dbwarden_plugin::complexity::PasswordRules;
use dbwarden_testkit::{TempPostgres, TestMysql};
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::support::{Client, Server};

/// Generates `count` passwords from the policy and checks each against the rule, and against
/// the statement-safety rule every substituted value must pass.
fn check_generator(dialect: &str, policy: Option<&str>, rules: &PasswordRules, count: usize) {
    let policy = match policy {
        Some(source) => PasswordPolicy::parse(source)
            .unwrap_or_else(|e| panic!("{dialect}: the default policy does not parse: {e}")),
        None => PasswordPolicy::vault_default(),
    };
    for _ in 0..count {
        let password = policy.generate().expect("the policy can be satisfied");
        let password = password.expose_secret();
        if let Err(broken) = rules.check(password) {
            panic!("{dialect}: a generated password breaks the database's rule: {broken}");
        }
        assert!(
            !password.contains(['\'', '"', '`', '\\']),
            "{dialect}: a generated password holds a quote or backslash"
        );
    }
}

#[test]
fn every_dialects_default_passwords_satisfy_its_rule() {
    for dialect in dbwarden_postgres::Dialect::ALL {
        check_generator(
            dialect.name(),
            dialect.default_password_policy(),
            &dialect.password_rules(),
            2_000,
        );
    }
    for dialect in dbwarden_mysql::Dialect::ALL {
        check_generator(
            dialect.name(),
            dialect.default_password_policy(),
            &dialect.password_rules(),
            2_000,
        );
    }
}

/// Registers a connection with a username template and a role, then asks for a credential;
/// returns the status and body.
async fn issue_with_template(
    client: &Client,
    name: &str,
    mut connection: serde_json::Value,
    template: &str,
    creation: &str,
) -> (u16, serde_json::Value) {
    connection["username_template"] = json!(template);
    connection["allowed_roles"] = json!("*");
    client
        .ok("POST", &format!("database/config/{name}"), Some(connection))
        .await;
    client
        .ok(
            "POST",
            &format!("database/roles/{name}"),
            Some(json!({"db_name": name, "creation_statements": creation})),
        )
        .await;
    client
        .call("GET", &format!("database/creds/{name}"), None)
        .await
}

const MYSQL_CREATE: &str = "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';";
const PG_CREATE: &str =
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';";

/// A name one over the limit gets a 400 that names the limit (never a truncated name): TiDB's
/// 32 characters and PolarDB-X's alphabet on MariaDB, KingbaseES's 63 bytes on PostgreSQL.
/// The refusal comes before any SQL, so the stand-in servers only have to accept the config.
#[tokio::test]
async fn over_long_names_are_refused_with_400_naming_the_limit() {
    dbwarden_testkit::install_crypto_provider();
    let my = TestMysql::shared();
    let pg = TempPostgres::shared();
    let db = crate::postgres::prepare_db(pg).await;
    let server = Server::dev();
    let client = server.client();
    let mysql = |plugin: &str| {
        json!({
            "plugin_name": plugin,
            "connection_url": my.connection_url_template(""),
            "username": my.admin_user(),
            "password": my.admin_password(),
        })
    };
    let (status, body) = issue_with_template(
        &client,
        "tidb",
        mysql("tidb-database-plugin"),
        &"v".repeat(33),
        MYSQL_CREATE,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("limit of 32 characters"),
        "{body}"
    );

    let (status, body) = issue_with_template(
        &client,
        "pdbx",
        mysql("polardbx-database-plugin"),
        "{{ printf \"v-%s\" .RoleName }}",
        MYSQL_CREATE,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("4 to 20 letters and digits"),
        "{body}"
    );

    let (status, body) = issue_with_template(
        &client,
        "kb",
        json!({
            "plugin_name": "kingbase-database-plugin",
            "connection_url": pg.connection_url_template(&db),
            "username": pg.superuser(),
            "password": pg.superuser_password(),
        }),
        &"v".repeat(64),
        PG_CREATE,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("limit of 63 bytes"), "{body}");
}

/// A KingbaseES connection on the PostgreSQL stand-in issues passwords from the dialect's
/// default policy, and its revocation (PostgreSQL catalog, after the `sys_catalog` lookup
/// fails here) ends an open session.
#[tokio::test]
async fn kingbase_dialect_on_postgresql_through_the_api() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = crate::postgres::prepare_db(pg).await;
    let server = Server::dev();
    let client = server.client();
    client
        .ok(
            "POST",
            "database/config/kb",
            Some(json!({
                "plugin_name": "kingbase-database-plugin",
                "connection_url": pg.connection_url_template(&db),
                "username": pg.superuser(),
                "password": pg.superuser_password(),
                "allowed_roles": "*",
            })),
        )
        .await;
    client
        .ok(
            "POST",
            "database/roles/ro",
            Some(json!({
                "db_name": "kb",
                "creation_statements": [PG_CREATE, "GRANT SELECT ON t TO \"{{name}}\";"],
            })),
        )
        .await;
    let creds = client.ok("GET", "database/creds/ro", None).await;
    let lease_id = creds["lease_id"].as_str().unwrap().to_owned();
    let user = creds["data"]["username"].as_str().unwrap().to_owned();
    let password = creds["data"]["password"].as_str().unwrap().to_owned();
    assert!(
        password.contains(['@', '#', '%', '^']),
        "the password does not come from the KingbaseES dialect's default policy"
    );
    let session = pg.connect_as(&db, &user, &password).await.unwrap();
    session.query_one("SELECT v FROM t", &[]).await.unwrap();
    let (status, _) = client
        .call(
            "PUT",
            "sys/leases/revoke",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert_eq!(status, 204);
    assert!(session.query_one("SELECT v FROM t", &[]).await.is_err());
    assert!(pg.connect_as(&db, &user, &password).await.is_err());
    let log = server.stop();
    assert!(!log.contains(&password));
}
