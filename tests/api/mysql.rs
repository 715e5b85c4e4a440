//! Issue, use, renew and revoke a MariaDB credential through the API.

use dbwarden_testkit::TestMysql;
use mysql_async::prelude::Queryable;
use serde_json::json;

use crate::support::{Client, Server};

/// Registers the MariaDB database `db` as connection `name`.
pub async fn register(client: &Client, my: &TestMysql, db: &str, name: &str, allowed_roles: &str) {
    client
        .ok(
            "POST",
            &format!("database/config/{name}"),
            Some(json!({
                "plugin_name": "mysql-database-plugin",
                "connection_url": my.connection_url_template(db),
                "username": my.admin_user(),
                "password": my.admin_password(),
                "allowed_roles": allowed_roles,
            })),
        )
        .await;
}

#[tokio::test]
async fn issue_use_renew_revoke_cuts_access() {
    dbwarden_testkit::install_crypto_provider();
    let my = TestMysql::shared();
    let db = my.create_database("api_").await;
    let mut admin = my.connect().await;
    admin
        .query_drop(format!("CREATE TABLE `{db}`.t (v INT)"))
        .await
        .unwrap();
    admin
        .query_drop(format!("INSERT INTO `{db}`.t VALUES (7)"))
        .await
        .unwrap();

    let server = Server::dev();
    let client = server.client();
    register(&client, my, &db, "my", "ro").await;
    client
        .ok(
            "POST",
            "database/roles/ro",
            Some(json!({
                "db_name": "my",
                "creation_statements": format!("CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; GRANT SELECT ON `{db}`.* TO '{{{{name}}}}'@'%';"),
                "default_ttl": 600,
                "max_ttl": 1200,
            })),
        )
        .await;
    let creds = client.ok("GET", "database/creds/ro", None).await;
    let lease_id = creds["lease_id"].as_str().unwrap().to_owned();
    let user = creds["data"]["username"].as_str().unwrap().to_owned();
    let pass = creds["data"]["password"].as_str().unwrap().to_owned();
    assert!(user.len() <= 32);

    let mut session = my
        .connect_as(&user, &pass, Some(&db))
        .await
        .expect("login with issued credential");
    let v: Option<i32> = session.query_first("SELECT v FROM t").await.unwrap();
    assert_eq!(v, Some(7));
    assert!(
        my.connect_as(&user, "wrong-password", Some(&db))
            .await
            .is_err()
    );

    let renewed = client
        .ok(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert_eq!(renewed["lease_duration"], 600);

    let (status, _) = client
        .call(
            "PUT",
            "sys/leases/revoke",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        session
            .query_first::<i32, _>("SELECT v FROM t")
            .await
            .is_err(),
        "live session must be killed"
    );
    assert!(
        my.connect_as(&user, &pass, Some(&db)).await.is_err(),
        "login must fail after revoke"
    );
    let left: Option<i64> = admin
        .exec_first(
            "SELECT COUNT(*) FROM mysql.user WHERE user = ?",
            (user.clone(),),
        )
        .await
        .unwrap();
    assert_eq!(left, Some(0), "user must be dropped");
    let log = server.stop();
    assert!(!log.contains(&pass));
    my.drop_database(&db).await;
}
