//! A privileged transaction whose caller goes away while its `begin` is on the way (a client
//! that disconnects mid-request drops the request's future) must not hand its connection back
//! to the pool inside that transaction. Otherwise the next user's autocommit statements, such
//! as a staged key's journal entry, stay uncommitted and invisible to every other connection:
//! bench/ceilings saw a TUS PATCH answered 503 "the part's staged bytes expired before it was
//! recorded" 22 ms after it began, right after wrk had cut off its requests.
mod common;

use futures::FutureExt;

#[tokio::test]
async fn an_admin_transaction_dropped_during_begin_leaves_no_transaction_open() {
    let db = common::TestDb::new().await;
    // Request pool 4: the privileged pool then holds 2 connections.
    let database = db.database(4);
    for round in 0..20 {
        // Both privileged connections open and idle, so the next `get` is ready at once and
        // the first poll of `admin_tx` sends `begin`.
        let (a, b) = (
            database.admin().await.unwrap(),
            database.admin().await.unwrap(),
        );
        drop((a, b));
        // One poll, then the future is dropped, as a cancelled request's would be.
        assert!(database.admin_tx().now_or_never().is_none());
        // Each connection must be outside any transaction: two statements then get two
        // transaction ids (inside one transaction they would share it).
        let (a, b) = (
            database.admin().await.unwrap(),
            database.admin().await.unwrap(),
        );
        for conn in [&a, &b] {
            let xid = "select pg_current_xact_id()::text";
            let first: String = conn.query_one(xid, &[]).await.unwrap().get(0);
            let second: String = conn.query_one(xid, &[]).await.unwrap().get(0);
            assert_ne!(
                first, second,
                "round {round}: a privileged connection came back from the pool inside a transaction"
            );
        }
    }
}
