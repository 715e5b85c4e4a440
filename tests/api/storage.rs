//! The storage layer runs the same way on SQLite and PostgreSQL.

use dbwarden::storage::{LeaseRow, LeaseState, Store};
use dbwarden_testkit::{TempPostgres, unique_name};

async fn exercise(store: &Store) {
    store.put("config/a_%", b"1").await.unwrap();
    store.put("config/b", b"2").await.unwrap();
    store.put("configz", b"3").await.unwrap();
    assert_eq!(
        store.list("config/").await.unwrap(),
        vec!["config/a_%", "config/b"]
    );
    assert!(!store.put_if_absent("config/b", b"x").await.unwrap());
    assert_eq!(
        store.get("config/b").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    store.delete("config/b").await.unwrap();
    assert_eq!(store.get("config/b").await.unwrap(), None);

    let lease = |id: &str, next: i64| LeaseRow {
        id: id.to_owned(),
        mount: "database".into(),
        role_name: "ro".into(),
        connection_name: "pg".into(),
        username: "v-u".into(),
        owner: Some("owner1".into()),
        state: LeaseState::Pending,
        renewable: true,
        issue_time: 1,
        expire_time: 10,
        max_expire_time: 100,
        last_renewal: None,
        revocation: vec![1, 2, 3],
        revoke_attempts: 0,
        revoke_error: None,
        next_attempt: next,
        claimed_until: 0,
        owner_accessor: Some("acc".into()),
    };
    store
        .insert_lease(&lease("database/creds/ro/a", 50))
        .await
        .unwrap();
    store
        .insert_lease(&lease("database/creds/ro/b", 5))
        .await
        .unwrap();
    store
        .insert_lease(&lease("database/creds/rw/c", 500))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_lease("database/creds/ro/a")
            .await
            .unwrap()
            .unwrap(),
        lease("database/creds/ro/a", 50)
    );
    assert_eq!(
        store
            .list_lease_ids("database/creds/ro/")
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.lease_ids_by_owner("owner1").await.unwrap().len(), 3);
    assert_eq!(store.next_due().await.unwrap(), Some(5));

    // Claiming due work takes each lease once, and claimed leases are not due again.
    let mut claimed: Vec<String> = store
        .claim_due_leases(60, 1000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    claimed.sort();
    assert_eq!(claimed, vec!["database/creds/ro/a", "database/creds/ro/b"]);
    assert!(
        store
            .claim_due_leases(60, 1000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .claim_lease("database/creds/ro/a", 60, 2000)
            .await
            .unwrap(),
        "already claimed"
    );
    assert!(
        store
            .claim_lease("database/creds/ro/a", 1001, 2000)
            .await
            .unwrap(),
        "an expired claim can be taken over"
    );

    store
        .insert_lease(&lease("database/creds/ro/d", 5))
        .await
        .unwrap();
    assert!(
        store
            .activate_lease("database/creds/ro/d", 70)
            .await
            .unwrap()
    );
    assert!(
        !store
            .activate_lease("database/creds/ro/d", 70)
            .await
            .unwrap(),
        "only pending leases activate"
    );
    assert!(
        store
            .renew_lease("database/creds/ro/d", 80, 60)
            .await
            .unwrap()
    );
    assert!(
        !store
            .renew_lease("database/creds/ro/b", 80, 60)
            .await
            .unwrap(),
        "only active leases renew"
    );
    store
        .record_revoke_failure("database/creds/ro/b", "boom", 99)
        .await
        .unwrap();
    let b = store
        .get_lease("database/creds/ro/b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            b.state,
            b.revoke_attempts,
            b.revoke_error.as_deref(),
            b.next_attempt,
            b.claimed_until
        ),
        (LeaseState::Revoking, 1, Some("boom"), 99, 0)
    );
    assert_eq!(store.count_failing_leases(1).await.unwrap(), 1);
    assert_eq!(
        store.failing_leases(1, 10).await.unwrap()[0].id,
        "database/creds/ro/b"
    );
    store.delete_lease("database/creds/ro/b").await.unwrap();
    assert_eq!(store.count_leases().await.unwrap(), 3);
    let mut states = store.count_leases_by_state().await.unwrap();
    states.sort();
    assert_eq!(
        states,
        vec![
            ("active".into(), 1),
            ("pending".into(), 1),
            ("revoking".into(), 1)
        ]
    );
    assert_eq!(store.release_lease_claims(7).await.unwrap(), 1);
    assert_eq!(store.oldest_due(60).await.unwrap(), Some(7));

    store.set_token_expiry("tok", 100).await.unwrap();
    store.set_token_expiry("tok", 50).await.unwrap();
    assert_eq!(store.expired_tokens(60, 10).await.unwrap(), vec!["tok"]);
    store.delete_token_expiry("tok").await.unwrap();
    assert!(store.expired_tokens(60, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_storage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
    exercise(&store).await;
}

#[tokio::test]
async fn postgres_storage() {
    let pg = TempPostgres::shared();
    let db = unique_name("storage_");
    pg.create_database(&db).await;
    let store = Store::open_postgres(&pg.url_for(&db)).await.unwrap();
    exercise(&store).await;
    // Opening again re-applies nothing and keeps the data.
    let again = Store::open_postgres(&pg.url_for(&db)).await.unwrap();
    assert_eq!(again.count_leases().await.unwrap(), 3);
}
