//! Small objects' bytes kept in memory (`--small-object-cache`): once read, they are served
//! without the store, whole or in ranges, while every request is still decided by the row its
//! caller may read.

mod common;

use common::{Options, TestServer};
use reqwest::Method;

async fn get(server: &TestServer, path: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = server.request(Method::GET, path, Some(&server.service_key()));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

async fn version(server: &TestServer, name: &str) -> String {
    server
        .db
        .admin_client()
        .await
        .query_one(
            "select version from storage.objects where name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

async fn upload(server: &TestServer, method: Method, path: &str, body: &'static [u8]) {
    let response = server
        .request(method, path, Some(&server.service_key()))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// The proof that a read came from memory: the store no longer holds the bytes (removed
/// behind the server's back), yet the object reads whole. Without the cache the same read is
/// the fault it is (500).
#[tokio::test]
async fn a_small_object_once_read_is_served_from_memory() {
    for cache in [16 * 1024 * 1024, 0] {
        let server = TestServer::start_with(Options {
            small_object_cache: cache,
            ..Options::default()
        })
        .await;
        server.create_bucket("small", false).await;
        let path = "/object/small/digits.txt";
        upload(&server, Method::POST, path, b"0123456789").await;
        assert_eq!(
            get(&server, path, None).await,
            (200, b"0123456789".to_vec())
        );

        let store = server.store.open().await;
        store
            .delete(&version(&server, "digits.txt").await)
            .await
            .unwrap();
        match cache {
            0 => assert_eq!(get(&server, path, None).await.0, 500),
            _ => {
                assert_eq!(
                    get(&server, path, None).await,
                    (200, b"0123456789".to_vec())
                );
                assert_eq!(
                    get(&server, path, Some("bytes=2-5")).await,
                    (206, b"2345".to_vec())
                );
                assert_eq!(
                    get(&server, path, Some("bytes=-3")).await,
                    (206, b"789".to_vec())
                );
            }
        }
    }
}

/// A kept copy never outlives what the caller may read: an overwrite is read at once (its
/// bytes have a new key), a deleted object is a 404, and another user's policy still refuses.
#[tokio::test]
async fn the_row_decides_what_a_kept_copy_serves() {
    let server = TestServer::start().await;
    server.create_bucket("small", false).await;
    let path = "/object/small/note.txt";
    upload(&server, Method::POST, path, b"first").await;
    assert_eq!(get(&server, path, None).await, (200, b"first".to_vec()));
    upload(&server, Method::PUT, path, b"second").await;
    assert_eq!(get(&server, path, None).await, (200, b"second".to_vec()));

    // A user without a policy on the bucket gets the same answer as for a missing object.
    let stranger = server
        .request(
            Method::GET,
            "/object/authenticated/small/note.txt",
            Some(&server.user_key("7c1d7d5e-94c6-4c38-8e2b-0d7a4c6f9a11")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 404);

    let deleted = server
        .request(Method::DELETE, path, Some(&server.service_key()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(get(&server, path, None).await.0, 404);
}
