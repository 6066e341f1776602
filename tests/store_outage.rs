//! The S3 store down, refusing, stalled or failing: uploads and downloads answer 503 in a time
//! bounded by the store's timeouts, no row is written, the staged key stays in the journal, and
//! the collector cleans up once the store is back.
//!
//! The server talks to moto through a small TCP proxy that these tests switch between passing
//! traffic through, refusing connections, accepting them and never answering, and answering
//! every request with a 500.

mod common;
mod object_helpers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Options, TestServer, TestStore};
use object_helpers::{download, journal, row, upload};
use pgstorage::config::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Traffic passes to moto.
    Up,
    /// Connections are accepted and closed at once.
    Refuse,
    /// Connections are accepted and never answered.
    Stall,
    /// Every request gets a 500.
    Fail,
}

/// A TCP proxy in front of moto. Switching away from `Up` also cuts the connections already
/// open, so pooled connections cannot bypass an outage.
struct Proxy {
    port: u16,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, watcher) = watch::channel(Mode::Up);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let mut watcher = watcher.clone();
                tokio::spawn(async move {
                    let current = *watcher.borrow_and_update();
                    match current {
                        Mode::Refuse => drop(client),
                        Mode::Stall => {
                            // Hold the connection, unanswered, until the mode changes.
                            let _ = watcher.changed().await;
                            drop(client);
                        }
                        Mode::Fail => answer_500(client).await,
                        Mode::Up => {
                            let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)).await
                            else {
                                return;
                            };
                            let mut client = client;
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                                _ = watcher.wait_for(|m| *m != Mode::Up) => {}
                            }
                        }
                    }
                });
            }
        });
        Self { port, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn answer_500(mut client: TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    let _ = client.read(&mut buffer).await;
    let body = "<Error><Code>InternalError</Code><Message>down</Message></Error>";
    let response = format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/xml\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Timeouts short enough for a test: 1 s per request, 2 retries within that second.
fn short_timeouts(endpoint: String) -> common::S3Tweak {
    Arc::new(move |config| {
        config.endpoint = Some(endpoint.clone());
        config.connect_timeout = Duration::from_secs(1);
        config.request_timeout = Duration::from_secs(1);
        config.max_retries = 2;
    })
}

/// A server whose S3 store is reached through a proxy, with a bucket `b` holding `kept.txt`.
async fn server_behind_proxy() -> (TestServer, Proxy, String) {
    let proxy = Proxy::start(common::moto_port().await).await;
    let server = TestServer::start_with(Options {
        backend: Backend::S3,
        s3_tweak: Some(short_timeouts(proxy.endpoint())),
        upload_lease: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    server.create_bucket("b", false).await;
    let key = server.service_key();
    let (status, body) = upload(&server, &key, "b", "kept.txt", "kept bytes", false).await;
    assert_eq!(status, 200, "{body}");
    (server, proxy, key)
}

/// Uploads `new.txt` while the store is out: 503 in bounded time, no row, and the staged key
/// left in the journal (the store could not even be asked to delete it).
async fn upload_is_refused(server: &TestServer, key: &str, bound: Duration, body: Vec<u8>) {
    let started = Instant::now();
    let (status, response) = upload(server, key, "b", "new.txt", body, false).await;
    let took = started.elapsed();
    eprintln!("upload with the store out: {status} after {took:?}");
    assert_eq!(status, 503, "{response}");
    assert_eq!(response["error"], "ServiceUnavailable", "{response}");
    assert!(took < bound, "took {took:?}");
    assert!(
        row(server, "b", "new.txt").await.is_none(),
        "a row was written"
    );
    let entries = journal(server).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].1, "staged");
}

async fn download_is_refused(server: &TestServer, key: &str, bound: Duration) {
    let started = Instant::now();
    let (status, _) = download(server, key, "b", "kept.txt").await;
    let took = started.elapsed();
    eprintln!("download with the store out: {status} after {took:?}");
    assert_eq!(status, 503);
    assert!(took < bound, "took {took:?}");
}

/// The store is back: the object is intact and the collector frees the abandoned key.
async fn recovers(server: &TestServer, proxy: &Proxy, key: &str) {
    proxy.set(Mode::Up);
    let started = Instant::now();
    let (status, body) = download(server, key, "b", "kept.txt").await;
    eprintln!(
        "download once the store is back: {status} after {:?}",
        started.elapsed()
    );
    assert_eq!((status, body.as_slice()), (200, &b"kept bytes"[..]));
    tokio::time::sleep(Duration::from_millis(1100)).await; // the 1 s lease runs out
    let started = Instant::now();
    let report = server
        .storage
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    eprintln!("collection once the store is back: {:?}", started.elapsed());
    assert_eq!((report.freed, report.failed), (1, 0));
    assert!(journal(server).await.is_empty());
    assert_eq!(server.stored_keys().await, 1);
    assert_eq!(server.store.partial_writes().await, 0);
}

#[tokio::test]
async fn a_store_refusing_connections_answers_503_and_the_journal_cleans_up() {
    let (server, proxy, key) = server_behind_proxy().await;
    proxy.set(Mode::Refuse);
    let bound = Duration::from_secs(5);
    upload_is_refused(&server, &key, bound, b"new bytes".to_vec()).await;
    download_is_refused(&server, &key, bound).await;
    recovers(&server, &proxy, &key).await;
}

#[tokio::test]
async fn a_stalled_store_times_out_into_503() {
    let (server, proxy, key) = server_behind_proxy().await;
    proxy.set(Mode::Stall);
    // One request timeout, a retry started within it and its own timeout, plus slack.
    let bound = Duration::from_secs(6);
    upload_is_refused(&server, &key, bound, b"new bytes".to_vec()).await;
    download_is_refused(&server, &key, bound).await;
    recovers(&server, &proxy, &key).await;
}

#[tokio::test]
async fn a_store_answering_500_gives_503() {
    let (server, proxy, key) = server_behind_proxy().await;
    proxy.set(Mode::Fail);
    let bound = Duration::from_secs(5);
    upload_is_refused(&server, &key, bound, b"new bytes".to_vec()).await;
    download_is_refused(&server, &key, bound).await;
    recovers(&server, &proxy, &key).await;
}

#[tokio::test]
async fn a_store_going_down_mid_multipart_upload_leaves_nothing_behind() {
    let (server, proxy, key) = server_behind_proxy().await;
    // 20 MiB: the first part goes up, then the store stops answering.
    let body = vec![7u8; 20 * 1024 * 1024];
    let switch = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.store.partial_writes().await == 0 {
            assert!(
                Instant::now() < deadline,
                "the multipart upload never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy.set(Mode::Refuse);
    };
    let ((status, response), ()) =
        tokio::join!(upload(&server, &key, "b", "big.bin", body, false), switch);
    assert_eq!(status, 503, "{response}");
    assert!(row(&server, "b", "big.bin").await.is_none());
    let entries = journal(&server).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].1, "staged");
    proxy.set(Mode::Up);
    // The abort could not reach the store either: the open upload is invisible (no object),
    // and reclaimed by the bucket's lifecycle rule in production.
    assert_eq!(server.stored_keys().await, 1);
    let (status, body) = download(&server, &key, "b", "kept.txt").await;
    assert_eq!((status, body.as_slice()), (200, &b"kept bytes"[..]));
}

#[tokio::test]
async fn a_store_at_a_closed_port_answers_503() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = TestServer::start_with(Options {
        backend: Backend::S3,
        s3_tweak: Some(short_timeouts(format!("http://127.0.0.1:{closed}"))),
        ..Options::default()
    })
    .await;
    assert!(matches!(server.store, TestStore::S3 { .. }));
    server.create_bucket("b", false).await;
    let key = server.service_key();
    upload_is_refused(&server, &key, Duration::from_secs(5), b"bytes".to_vec()).await;
}
