//! `execute_batch` and `connect_direct` against a real server: a batch is one transaction in
//! one round trip, comments do not swallow the statement after them, and a failure leaves
//! nothing behind.

use dbwarden_plugin::statement::SqlText;
use dbwarden_testkit::{TempPostgres, install_crypto_provider, unique_name};

/// Statements are built from trusted test text here (the engine builds them by rendering).
fn sql(text: String) -> SqlText {
    SqlText::from_static(Box::leak(text.into_boxed_str()))
}

async fn role_exists(client: &tokio_postgres::Client, name: &str) -> bool {
    client
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

#[tokio::test]
async fn a_batch_is_one_transaction_and_comments_end_at_the_line() {
    install_crypto_provider();
    let pg = TempPostgres::shared();
    let client = dbwarden_postgres::connect_direct(&pg.url_for("postgres"))
        .await
        .unwrap();
    let name = unique_name("batch_");
    let ok = [
        sql(format!("CREATE ROLE {name} LOGIN -- a trailing comment")),
        sql(format!("COMMENT ON ROLE {name} IS 'a;b'")),
    ];
    dbwarden_postgres::execute_batch(&client, &ok)
        .await
        .unwrap();
    assert!(role_exists(&client, &name).await);
    let comment: Option<String> = client
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment.as_deref(), Some("a;b"));

    let other = unique_name("batch_");
    let failing = [
        sql(format!("CREATE ROLE {other} LOGIN")),
        SqlText::from_static("SELECT 1/0"),
    ];
    assert!(
        dbwarden_postgres::execute_batch(&client, &failing)
            .await
            .is_err()
    );
    assert!(
        !role_exists(&client, &other).await,
        "rolled back as a whole"
    );
    client
        .batch_execute(&format!("DROP ROLE {name}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn connect_direct_never_quotes_the_password() {
    install_crypto_provider();
    let pg = TempPostgres::shared();
    let url = format!(
        "postgres://{}:Wr0ng-Secret-Pw@{}:{}/postgres",
        pg.superuser(),
        pg.host(),
        pg.port()
    );
    let err = dbwarden_postgres::connect_direct(&url).await.unwrap_err();
    assert!(!err.to_string().contains("Wr0ng-Secret-Pw"), "{err}");
}
