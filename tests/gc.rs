//! The garbage collector: grace period, leases, and one collector at a time.

mod common;

use std::time::Duration;

use common::TestServer;
use pgstorage::core::gc::GC_LOCK;
use reqwest::Method;

async fn upload(server: &TestServer, name: &str, body: &'static [u8]) {
    let response = server
        .request(
            Method::PUT,
            &format!("/object/gc/{name}"),
            Some(&server.service_key()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn released_bytes_wait_for_the_grace_period() {
    let server = TestServer::start().await;
    server.create_bucket("gc", false).await;
    upload(&server, "a.txt", b"first").await;
    upload(&server, "a.txt", b"second").await;
    assert_eq!(
        server.stored_keys().await,
        2,
        "old bytes stay until collected"
    );

    let report = server
        .storage
        .collect_garbage(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(report.ran);
    assert_eq!(report.freed, 0, "inside the grace period nothing is freed");
    assert_eq!(server.stored_keys().await, 2);

    let report = server
        .storage
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.freed, 1);
    assert_eq!(server.stored_keys().await, 1);
    let body = server
        .request(Method::GET, "/object/gc/a.txt", Some(&server.service_key()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], b"second");
}

#[tokio::test]
async fn a_staged_key_is_collected_only_after_its_lease() {
    let server = TestServer::start().await;
    let admin = server.db.admin_client().await;
    admin
        .batch_execute(
            "insert into storage.byte_journal (key, state, lease_until) values
               ('aaaaaaaaaaaaaaaa', 'staged', now() + interval '1 hour'),
               ('bbbbbbbbbbbbbbbb', 'staged', now() - interval '1 second')",
        )
        .await
        .unwrap();
    let report = server
        .storage
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.freed, 1);
    let left: Vec<String> = admin
        .query("select key from storage.byte_journal", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["aaaaaaaaaaaaaaaa"]);
}

#[tokio::test]
async fn only_one_collector_runs_at_a_time() {
    let server = TestServer::start().await;
    server.create_bucket("gc", false).await;
    upload(&server, "a.txt", b"one").await;
    upload(&server, "a.txt", b"two").await;
    // Another server's collector holds the lock.
    let other = server.db.admin_client().await;
    other
        .execute("select pg_advisory_lock($1)", &[&GC_LOCK])
        .await
        .unwrap();
    let report = server
        .storage
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert!(!report.ran);
    assert_eq!(report.freed, 0);
    other
        .execute("select pg_advisory_unlock($1)", &[&GC_LOCK])
        .await
        .unwrap();
    let report = server
        .storage
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert!(report.ran);
    assert_eq!(report.freed, 1);
}
