//! OceanBase through the API: the real `dbwarden` binary and a real OceanBase server (seekdb,
//! MySQL mode, started by `dbwarden_testkit::TestSeekdb`), with `oceanbase-database-plugin`.
//!
//! One test walks the whole life of credentials: a refused admin login, creation, login,
//! the grant check (what the role may and may not do), renewal, parallel issuance, root
//! rotation, revocation that locks, kills an open session and drops the user, and the
//! username limit. The backend-level conformance kit runs against the same server in
//! `plugins/mysql/tests/conformance.rs`.

use dbwarden_testkit::{TestMysql, TestSeekdb, unique_name};
use mysql_async::prelude::Queryable as _;
use serde_json::json;

use crate::support::Server;

/// The special characters of the dialect's default password policy.
const POLICY_SPECIALS: &[char] = &['@', '#', '%', '^'];

async fn users_named(server: &TestMysql, user: &str) -> i64 {
    let mut admin = server.connect().await;
    let n: Option<i64> = admin
        .exec_first("SELECT COUNT(*) FROM mysql.user WHERE user = ?", (user,))
        .await
        .unwrap();
    let _ = admin.disconnect().await;
    n.unwrap_or(0)
}

#[tokio::test]
async fn oceanbase_lifecycle_through_the_api() {
    dbwarden_testkit::install_crypto_provider();
    let seekdb = TestSeekdb::shared();
    eprintln!("seekdb: {}", seekdb.version());
    let ob = seekdb.server();
    let db = ob.create_database("api_").await;
    for statement in [
        format!("CREATE TABLE IF NOT EXISTS `{db}`.t (v INT)"),
        format!("INSERT INTO `{db}`.t VALUES (7)"),
        format!("CREATE TABLE IF NOT EXISTS `{db}`.secret (v INT)"),
    ] {
        ob.execute(&statement).await;
    }
    // An admin of its own, whose password rotate-root may change.
    let admin = unique_name("obadm");
    let admin_password = format!("Adm-{}", unique_name(""));
    ob.execute(&format!(
        "CREATE USER IF NOT EXISTS '{admin}'@'%' IDENTIFIED BY '{admin_password}'"
    ))
    .await;
    ob.execute(&format!(
        "GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'%' WITH GRANT OPTION"
    ))
    .await;

    let server = Server::dev();
    let client = server.client();
    let config = |password: &str, template: Option<&str>| {
        let mut body = json!({
            "plugin_name": "oceanbase-database-plugin",
            "connection_url": ob.connection_url_template(&db),
            "username": admin,
            "password": password,
            "allowed_roles": "*",
        });
        if let Some(t) = template {
            body["username_template"] = json!(t);
        }
        body
    };

    // A wrong admin password is refused, and not echoed.
    let wrong = "Wrong-Adm1n-Pw";
    let (status, body) = client
        .call("POST", "database/config/ob", Some(config(wrong, None)))
        .await;
    assert!(status >= 400, "{status} {body}");
    assert!(!body.to_string().contains(wrong), "{body}");

    client
        .ok(
            "POST",
            "database/config/ob",
            Some(config(&admin_password, None)),
        )
        .await;
    client
        .ok(
            "POST",
            "database/roles/ro",
            Some(json!({
                "db_name": "ob",
                "creation_statements": format!(
                    "CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; GRANT SELECT ON `{db}`.t TO '{{{{name}}}}'@'%';"
                ),
                "default_ttl": 600,
                "max_ttl": 1200,
            })),
        )
        .await;

    // Create and log in; the password comes from the dialect's default policy.
    let creds = client.ok("GET", "database/creds/ro", None).await;
    let lease_id = creds["lease_id"].as_str().unwrap().to_owned();
    let user = creds["data"]["username"].as_str().unwrap().to_owned();
    let password = creds["data"]["password"].as_str().unwrap().to_owned();
    assert!(user.len() <= 64, "{user}");
    assert_eq!(password.len(), 20);
    assert!(
        password.contains(POLICY_SPECIALS),
        "the password does not come from the OceanBase dialect's default policy"
    );
    let mut session = ob
        .connect_as(&user, &password, Some(&db))
        .await
        .expect("log in with the issued credential");
    let v: Option<i32> = session.query_first("SELECT v FROM t").await.unwrap();
    assert_eq!(v, Some(7));

    // The grant check: only what the role granted.
    let denied = session
        .query_drop("SELECT v FROM secret")
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("1142"), "{denied}");
    assert!(
        session
            .query_drop("INSERT INTO t VALUES (8)")
            .await
            .is_err()
    );
    assert!(
        ob.connect_as(&user, "wrong-Pw-1#", Some(&db))
            .await
            .is_err()
    );

    // Renewal keeps the credential working.
    let renewed = client
        .ok(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert_eq!(renewed["lease_duration"], 600);
    assert!(session.query_drop("SELECT v FROM t").await.is_ok());

    // Parallel issuance through the pool.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.spawn(async move { client.ok("GET", "database/creds/ro", None).await });
    }
    let mut issued = Vec::new();
    while let Some(creds) = tasks.join_next().await {
        let creds = creds.unwrap();
        issued.push((
            creds["data"]["username"].as_str().unwrap().to_owned(),
            creds["data"]["password"].as_str().unwrap().to_owned(),
        ));
    }
    for (u, p) in &issued {
        let mut conn = ob.connect_as(u, p, Some(&db)).await.expect("parallel user");
        assert!(conn.query_drop("SELECT v FROM t").await.is_ok());
        let _ = conn.disconnect().await;
    }

    // Root rotation: the old admin password stops working, issuance goes on.
    client.ok("POST", "database/rotate-root/ob", None).await;
    assert!(
        ob.connect_as(&admin, &admin_password, None).await.is_err(),
        "the old admin password still works after rotate-root"
    );
    client.ok("GET", "database/creds/ro", None).await;

    // Revocation: the open session is killed, the login refused, the user dropped.
    let (status, _) = client
        .call(
            "PUT",
            "sys/leases/revoke",
            Some(json!({"lease_id": lease_id})),
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        session.query_drop("SELECT v FROM t").await.is_err(),
        "a session opened before revocation survived it"
    );
    assert!(ob.connect_as(&user, &password, Some(&db)).await.is_err());
    assert_eq!(users_named(ob, &user).await, 0, "user {user} still exists");
    client
        .ok("PUT", "sys/leases/revoke-prefix/database/creds/ro", None)
        .await;
    for (u, _) in &issued {
        assert_eq!(users_named(ob, u).await, 0, "user {u} still exists");
    }

    // A name over OceanBase's 64 bytes is refused with a 400 that names the limit.
    client
        .ok(
            "POST",
            "database/config/long",
            Some(json!({
                "plugin_name": "oceanbase-database-plugin",
                "connection_url": ob.connection_url_template(&db),
                "username": ob.admin_user(),
                "password": ob.admin_password(),
                "allowed_roles": "*",
                "username_template": "v".repeat(65),
            })),
        )
        .await;
    client
        .ok(
            "POST",
            "database/roles/long",
            Some(json!({
                "db_name": "long",
                "creation_statements": "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';",
            })),
        )
        .await;
    let (status, body) = client.call("GET", "database/creds/long", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("64 bytes"), "{body}");

    let log = server.stop();
    assert!(!log.contains(&password), "an issued password is in the log");
    assert!(
        !log.contains(&admin_password),
        "the admin password is in the log"
    );
    assert!(
        !log.contains("ACCOUNT LOCK failed"),
        "the lock step of revocation failed:\n{log}"
    );
    ob.execute(&format!("DROP USER IF EXISTS '{admin}'@'%'"))
        .await;
    ob.drop_database(&db).await;
}
