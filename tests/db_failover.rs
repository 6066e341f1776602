//! PostgreSQL unreachable, then back (what a failover looks like from a server): requests answer
//! 503 while it is gone — never 500, never a hang — and the server recovers by itself, reaching
//! the database through a multi-host URL (`host=a,b target_session_attrs=read-write`) whose
//! first host is dead.
//!
//! The server reaches the test cluster through a small TCP proxy that these tests switch
//! between passing traffic and refusing it; refusing also cuts the connections already open,
//! as a stopped primary does.

mod common;
mod object_helpers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Options, TestDb, TestServer};
use object_helpers::{download, upload};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;
use tokio_postgres::config::Host;

/// A TCP proxy in front of the test cluster (a Unix socket or a TCP address).
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
    /// Bytes that, once a client sends them, make its connection deaf: what the client sends
    /// still reaches the database, nothing comes back, and the connection is cut a moment later
    /// (a primary that commits and dies before its answer leaves).
    deaf_after: Arc<Mutex<Option<Vec<u8>>>>,
}

enum Target {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl Proxy {
    async fn start(target: Target) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watcher) = watch::channel(true);
        let target = Arc::new(target);
        let deaf_after = Arc::new(Mutex::new(None));
        let trigger = deaf_after.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let mut watcher = watcher.clone();
                let target = target.clone();
                let trigger = trigger.clone();
                tokio::spawn(async move {
                    if !*watcher.borrow_and_update() {
                        return; // refused: closed at once
                    }
                    let cut = async move {
                        while watcher.changed().await.is_ok() {
                            if !*watcher.borrow() {
                                return;
                            }
                        }
                    };
                    match &*target {
                        Target::Unix(path) => {
                            if let Ok(server) = UnixStream::connect(path).await {
                                pass(client, server, cut, trigger).await;
                            }
                        }
                        Target::Tcp(address) => {
                            if let Ok(server) = TcpStream::connect(address).await {
                                pass(client, server, cut, trigger).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            port,
            up,
            deaf_after,
        }
    }

    fn deaf_after(&self, bytes: Option<Vec<u8>>) {
        *self.deaf_after.lock().unwrap() = bytes;
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// Passes bytes both ways until either side closes or `cut` fires (then both are dropped), or
/// the connection turns deaf (see [`Proxy::deaf_after`]).
async fn pass(
    client: TcpStream,
    server: impl AsyncRead + AsyncWrite,
    cut: impl std::future::Future<Output = ()>,
    trigger: Arc<Mutex<Option<Vec<u8>>>>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let deaf = AtomicBool::new(false);
    let to_server = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let pattern = trigger.lock().unwrap().clone();
            if let Some(pattern) = pattern
                && buf[..n]
                    .windows(pattern.len())
                    .any(|w| w == pattern.as_slice())
            {
                deaf.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let to_client = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if deaf.load(Ordering::SeqCst) {
                // Give the database time to finish what it was sent, then cut.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = to_server => {}
        _ = to_client => {}
        _ = cut => {}
    }
}

/// A port on which nothing listens (bound, then released).
async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// `config` rewritten as a multi-host URL: a dead host first, then the proxy.
fn through(config: &tokio_postgres::Config, dead: u16, proxy: u16) -> tokio_postgres::Config {
    let mut url = format!(
        "host=127.0.0.1,127.0.0.1 port={dead},{proxy} target_session_attrs=read-write \
         sslmode=disable connect_timeout=5 dbname={} user={}",
        config.get_dbname().unwrap(),
        config.get_user().unwrap()
    );
    if let Some(password) = config.get_password() {
        url.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
    }
    pgstorage::db::parse_config(&url)
        .unwrap()
        .postgres()
        .clone()
}

async fn server_behind_proxy() -> (TestServer, Proxy) {
    let db = TestDb::new().await;
    let port = db.admin.get_ports().first().copied().unwrap_or(5432);
    let target = match db.admin.get_hosts().first() {
        Some(Host::Unix(dir)) => Target::Unix(dir.join(format!(".s.PGSQL.{port}"))),
        Some(Host::Tcp(host)) => Target::Tcp(format!("{host}:{port}")),
        None => Target::Tcp(format!("127.0.0.1:{port}")),
    };
    let proxy = Proxy::start(target).await;
    let dead = dead_port().await;
    let mut behind = db.clone();
    behind.admin = through(&db.admin, dead, proxy.port);
    behind.request = through(&db.request, dead, proxy.port);
    let server = TestServer::start_on(behind, Options::default()).await;
    (server, proxy)
}

/// Status of a request, bounded: a hang fails the test instead of stalling it.
async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    tokio::time::timeout(Duration::from_secs(60), request.send())
        .await
        .expect("the server answers while the database is gone, without hanging")
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn requests_answer_503_while_the_database_is_unreachable_and_recover_after() {
    let (server, proxy) = server_behind_proxy().await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();
    let (status, _) = upload(
        &server,
        &key,
        "docs",
        "before.txt",
        b"written before".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200);

    proxy.set_up(false);
    let checks = [
        (
            "download",
            server.request(
                reqwest::Method::GET,
                "/object/authenticated/docs/before.txt",
                Some(&key),
            ),
        ),
        (
            "upload",
            server
                .request(reqwest::Method::POST, "/object/docs/during.txt", Some(&key))
                .header("content-type", "text/plain")
                .body("written during"),
        ),
        (
            "list",
            server
                .request(reqwest::Method::POST, "/object/list/docs", Some(&key))
                .json(&serde_json::json!({ "prefix": "" })),
        ),
        (
            "bucket",
            server.request(reqwest::Method::GET, "/bucket/docs", Some(&key)),
        ),
        (
            "health",
            server.request(reqwest::Method::GET, "/health", None),
        ),
    ];
    for (what, request) in checks {
        assert_eq!(
            status_of(request).await,
            503,
            "{what} while the database is gone"
        );
    }

    // Back: the server recovers by itself (its pool drops the dead connections and makes new
    // ones), with nothing lost.
    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = download(&server, &key, "docs", "before.txt").await;
        if status == 200 {
            assert_eq!(body, b"written before");
            break;
        }
        assert_eq!(status, 503, "while recovering");
        assert!(Instant::now() < deadline, "the server never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = upload(
        &server,
        &key,
        "docs",
        "after.txt",
        b"written after".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = download(&server, &key, "docs", "during.txt").await;
    assert_eq!(status, 404, "the upload answered 503 wrote nothing");
}

/// The connection drops after the database received the commit of an upload's row but before
/// its answer came back (a primary stopped just then, its synchronous standby promoted with the
/// commit): the client gets 503, and the object, which exists, keeps its bytes. Deleting them
/// on the 503 would leave a row without bytes.
#[tokio::test]
async fn a_commit_whose_answer_is_lost_keeps_its_bytes() {
    let (server, proxy) = server_behind_proxy().await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();
    let body = b"committed, but the answer was lost".to_vec();
    // The row's metadata carries the body's sha256: only the commit sends it.
    let digest = hex::encode(sha2::Sha256::digest(&body));
    proxy.deaf_after(Some(digest.into_bytes()));
    let (status, answer) = upload(&server, &key, "docs", "lost.txt", body.clone(), false).await;
    assert_eq!(status, 503, "{answer}");
    proxy.deaf_after(None);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, got) = download(&server, &key, "docs", "lost.txt").await;
        if status != 503 {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
            assert_eq!(got, body);
            break;
        }
        assert!(Instant::now() < deadline, "the server never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A server whose URL reaches a standby (one host that was demoted, or a URL without
/// `target_session_attrs=read-write`): writes are refused as read-only (25006), which is 503
/// (retry, a primary will be back), not 500; reads carry on.
#[tokio::test]
async fn a_database_that_refuses_writes_as_read_only_answers_503() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();
    let (status, _) = upload(
        &server,
        &key,
        "docs",
        "before.txt",
        b"before".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200);
    // What a hot standby does to every transaction, for this database's request role only.
    server
        .db
        .sql(&format!(
            "alter role {} in database {} set default_transaction_read_only = on",
            pgstorage::db::embedded::REQUEST_ROLE,
            server.db.name
        ))
        .await;
    server
        .db
        .sql(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where datname = current_database() and pid <> pg_backend_pid()",
        )
        .await;
    // The pool notices the terminated connections on their next use (503 as well).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = upload(
            &server,
            &key,
            "docs",
            "during.txt",
            b"during".to_vec(),
            false,
        )
        .await;
        assert_eq!(status, 503, "{body}");
        if body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no writes")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
    }
    let (status, body) = download(&server, &key, "docs", "before.txt").await;
    assert_eq!((status, body.as_slice()), (200, b"before".as_slice()));
}

/// The multi-host forms the README documents parse, and keep every host.
#[test]
fn multi_host_urls_are_accepted() {
    for url in [
        "host=db1,db2 port=5432,5433 user=u dbname=d target_session_attrs=read-write",
        "postgres://u@db1:5432,db2:5433/d?target_session_attrs=read-write",
        "postgresql://u@db1:5432,db2:5433/d?target_session_attrs=read-write&sslmode=disable",
    ] {
        let config = pgstorage::db::parse_config(url).unwrap_or_else(|e| panic!("{url}: {e:#}"));
        assert_eq!(config.postgres().get_hosts().len(), 2, "{url}");
        assert_eq!(config.postgres().get_ports(), &[5432, 5433], "{url}");
        assert_eq!(
            config.postgres().get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite,
            "{url}"
        );
    }
}
