//! Slow clients cannot starve the server: however many uploads trickle, downloads, listings and
//! `/health` keep answering, and every trickling upload ends in bounded time (408) and leaves
//! nothing. Runs on every store (`PGSTORAGE_TEST_BACKEND`).

mod common;
mod object_helpers;

use std::time::{Duration, Instant};

use common::{Options, TestServer, json_of, test_backend};
use futures::StreamExt;
use object_helpers::{call, download, upload};
use pgstorage::config::Backend;
use reqwest::Method;
use serde_json::json;

const TRICKLERS: usize = 16;

/// A body that sends `head` bytes at once, then one byte every `every`, for at most `limit`
/// (so a server that never refuses it still ends the test).
fn trickle(head: usize, every: Duration, limit: Duration) -> reqwest::Body {
    let started = Instant::now();
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(vec![7u8; head]) });
    let drip = futures::stream::unfold((), move |()| async move {
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok(vec![1u8]), ()))
    });
    reqwest::Body::wrap_stream(head.chain(drip))
}

/// Requests that must keep answering 200 within a second while uploads trickle.
async fn reads_answer_promptly(server: &TestServer, key: &str, kept: &[u8]) {
    let started = Instant::now();
    let (status, body) = download(server, key, "docs", "kept").await;
    assert_eq!(status, 200);
    assert_eq!(body, kept);
    let downloaded = started.elapsed();

    let started = Instant::now();
    let (status, body) = json_of(
        call(server, Method::GET, "/health", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let health = started.elapsed();

    let started = Instant::now();
    let (status, body) = json_of(
        call(server, Method::POST, "/object/list/docs", Some(key))
            .json(&json!({ "prefix": "" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let listed = started.elapsed();

    for (what, took) in [
        ("a download", downloaded),
        ("/health", health),
        ("a listing", listed),
    ] {
        assert!(
            took < Duration::from_secs(1),
            "{what} took {took:?} while uploads trickled"
        );
    }
}

/// 16 clients each send a little over a megabyte, then one byte every 200 ms: more uploads
/// than the pool has connections. A downloader, a lister and `/health` keep answering 200 within
/// a second all along, and every trickling upload is refused with 408 once a rate window shows
/// it below the minimum rate, keeping nothing. With the postgres store, the uploads never hold
/// more connections than their share of the pool.
#[tokio::test(flavor = "multi_thread")]
async fn trickling_uploads_leave_downloads_and_health_answering() {
    let server = TestServer::start_with(Options {
        pool_size: 8,
        min_body_rate: 1000,
        body_rate_window: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();
    let kept = vec![42u8; 100_000];
    let (status, body) = upload(&server, &key, "docs", "kept", kept.clone(), false).await;
    assert_eq!(status, 200, "{body}");
    reads_answer_promptly(&server, &key, &kept).await;

    // The postgres store holds a transaction only past its first megabyte (until then it only
    // buffers), so there the heads go past it; elsewhere a small head keeps the test light.
    let head = match test_backend() {
        Backend::Postgres => 1024 * 1024 + 4096,
        _ => 64 * 1024,
    };
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|i| {
            // Arriving a little apart, as clients do: the test is about trickles, not a burst.
            let delay = Duration::from_millis(40 * i as u64);
            let request = server
                .request(Method::POST, &format!("/object/docs/slow-{i}"), Some(&key))
                .body(trickle(
                    head,
                    Duration::from_millis(200),
                    Duration::from_secs(40),
                ));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let started = Instant::now();
                let (status, body) = json_of(request.send().await.unwrap()).await;
                (status, body, started.elapsed())
            })
        })
        .collect();

    // Once the heads are in (measuring them is work for the server), and while every upload
    // still trickles: none has had two rate windows yet.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut held = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        reads_answer_promptly(&server, &key, &kept).await;
        if test_backend() == Backend::Postgres {
            held = held.max(long_transactions(&server).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if test_backend() == Backend::Postgres {
        let share = server.storage.database().upload_connections();
        assert_eq!(share, 4, "half the pool by default");
        assert!(
            held <= share,
            "{held} request connections were held, more than the {share} uploads may use"
        );
    }

    for trickler in tricklers {
        let (status, body, took) = tokio::time::timeout(Duration::from_secs(30), trickler)
            .await
            .expect("a trickling upload was never refused")
            .unwrap();
        assert_eq!(status, 408, "{body}");
        assert_eq!(body["code"], "RequestTimeout", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("slower than"),
            "{body}"
        );
        assert!(
            took < Duration::from_secs(20),
            "refused only after {took:?}"
        );
    }
    for i in 0..TRICKLERS {
        let (status, _) = download(&server, &key, "docs", &format!("slow-{i}")).await;
        assert_eq!(status, 404, "slow-{i} was kept");
    }
    reads_answer_promptly(&server, &key, &kept).await;
}

/// Request-role transactions open for more than half a second (the ones uploads hold).
async fn long_transactions(server: &TestServer) -> usize {
    let client = server.db.admin_client().await;
    let count: i64 = client
        .query_one(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and usename = $1 \
               and now() - xact_start > interval '500 ms'",
            &[&pgstorage::db::embedded::REQUEST_ROLE],
        )
        .await
        .unwrap()
        .get(0);
    count as usize
}

/// The minimum rate refuses only what is below it: an upload that takes several windows at a
/// steady rate above the minimum is stored whole.
#[tokio::test]
async fn a_steady_upload_above_the_minimum_rate_is_kept() {
    let server = TestServer::start_with(Options {
        min_body_rate: 1000,
        body_rate_window: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();
    // 500 bytes every 100 ms (5,000 bytes/s) for 3 s: three windows.
    let steady = futures::stream::iter(0..30).then(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(vec![5u8; 500])
    });
    let (status, body) = json_of(
        server
            .request(Method::POST, "/object/docs/steady", Some(&key))
            .body(reqwest::Body::wrap_stream(steady))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, bytes) = download(&server, &key, "docs", "steady").await;
    assert_eq!(status, 200);
    assert_eq!(bytes, vec![5u8; 15_000]);
}
