//! The per-request identity inside the transaction: role, claims, operation; and that nothing
//! of it survives into the next use of a pooled connection.

mod common;

use common::{TestDb, caller};
use pgstorage::core::{Operation, Storage};

async fn storage(db: &TestDb, pool: usize) -> Storage {
    db.storage(pool).await
}

#[tokio::test]
async fn claims_role_and_operation_are_visible_to_sql() {
    let db = TestDb::new().await;
    let storage = storage(&db, 2).await;
    let tx = storage
        .begin(&caller("authenticated", Some("user-42")), Operation::Move)
        .await
        .unwrap();
    let row = tx
        .query_one(
            "select current_user::text, auth.uid(), auth.role(), auth.jwt() ->> 'sub', \
             storage.operation()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "authenticated");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("user-42"));
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("authenticated")
    );
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("user-42"));
    assert_eq!(
        row.get::<_, Option<String>>(4).as_deref(),
        Some("storage.move")
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_pooled_connection_never_carries_a_previous_identity() {
    let db = TestDb::new().await;
    // One connection, so the second request must reuse the first one's.
    let storage = storage(&db, 1).await;
    {
        let tx = storage
            .begin(&caller("service_role", Some("admin")), Operation::Delete)
            .await
            .unwrap();
        tx.query("select 1", &[]).await.unwrap();
        // Dropped without commit, as when a client disconnects mid-request.
    }
    let tx = storage
        .begin(&caller("anon", None), Operation::List)
        .await
        .unwrap();
    let row = tx
        .query_one(
            "select current_user::text, auth.uid(), storage.operation(), \
             current_setting('storage.allow_delete', true)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "anon");
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("storage.list")
    );
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some(""));
    tx.commit().await.unwrap();

    // After the transaction ends the connection is back to the bare login role.
    let conn = pgstorage::db::connect(&db.request).await.unwrap();
    let row = conn
        .query_one(
            "select current_user::text, coalesce(current_setting('request.jwt.claims', true), '')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        pgstorage::db::embedded::REQUEST_ROLE
    );
    assert_eq!(row.get::<_, String>(1), "");
}

#[tokio::test]
async fn the_request_login_role_reads_nothing_until_it_switches_role() {
    let db = TestDb::new().await;
    db.sql("insert into storage.buckets (id, name) values ('secret', 'secret')")
        .await;
    let conn = pgstorage::db::connect(&db.request).await.unwrap();
    let error = conn
        .query("select * from storage.buckets", &[])
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    // Nor may it become a superuser-like role it was not granted.
    let error = conn.batch_execute("set role postgres").await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
}

#[tokio::test]
async fn direct_delete_is_refused_with_42501() {
    let db = TestDb::new().await;
    db.sql("insert into storage.buckets (id, name) values ('b', 'b')")
        .await;
    let client = db.admin_client().await;
    for sql in [
        "delete from storage.buckets where id = 'b'",
        "delete from storage.objects",
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}"
        );
        let message = error.as_db_error().unwrap().message().to_string();
        assert!(message.contains("Storage API"), "{message}");
    }
    // Through the server's own transaction (allow_delete set) the same delete passes RLS.
    let storage = storage(&db, 1).await;
    storage
        .delete_bucket(&caller("service_role", None), "b")
        .await
        .unwrap();
}
