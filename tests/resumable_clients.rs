//! The real TUS clients, as Supabase users run them, against live `pgstorage serve` processes:
//! `tus-js-client` (tests/clients/js/tus/tus.mjs) uploading 50 MiB in 6 MiB chunks through a
//! proxy that alternates its connections between two servers and cuts one mid-chunk, and while
//! its server is killed with SIGKILL and restarted; signed uploads, RLS, limits, termination;
//! and `tuspy` (tests/clients/python/tuspy_suite.py). On the store named by
//! `PGSTORAGE_TEST_BACKEND`. The clients are installed by `scripts/install-client-deps`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestDb, TestStore, token};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
const FIXTURES: &str = include_str!("clients/fixtures.sql");

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn server_log(port: u16) -> std::fs::File {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("server-logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::File::create(dir.join(format!("tus-{port}.log"))).unwrap()
}

/// A `pgstorage serve` process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    async fn start(db: &TestDb, store: &TestStore, port: u16) -> Self {
        let mut command = common::process::pgstorage(&["serve"]);
        let child = command
            .args(["--database-url", &db.admin_url()])
            .args(["--request-database-url", &db.request_url()])
            .args(["--jwt-secret", common::JWT_SECRET])
            .args(store.server_args())
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(server_log(port))
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{url}/status")).await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill9(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a [`proxy`] did.
struct Proxy {
    port: u16,
    connections: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
}

/// A TCP proxy that hands its connections to `backends` in turn, and cuts connection number
/// `cut.0` (counting from 0) after `cut.1` bytes from the client.
async fn proxy(backends: Vec<u16>, cut: Option<(usize, usize)>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let cuts = Arc::new(AtomicUsize::new(0));
    let answer = Proxy {
        port,
        connections: count.clone(),
        cuts: cuts.clone(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let backend = backends[n % backends.len()];
            let limit = cut.filter(|(k, _)| *k == n).map(|(_, bytes)| bytes);
            let cuts = cuts.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend)).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut sent = 0;
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let n = limit.map_or(n, |l| n.min(l - sent));
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                        if limit == Some(sent) {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            // The cut: both sides see the connection die mid-request.
                            return true;
                        }
                    }
                    let _ = server_write.shutdown().await;
                    false
                };
                let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                tokio::select! {
                    cut = upstream => if !cut {
                        // Let the answer finish after the client is done sending.
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    },
                    _ = downstream => {}
                }
            });
        }
    });
    answer
}

/// A child process with the keys of tests/clients.rs in its environment.
fn client_command(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    url: &str,
    direct: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .env("PGSTORAGE_URL", url)
        .env("PGSTORAGE_DIRECT_URL", direct)
        .env("PGSTORAGE_SERVICE_KEY", token("service_role", None))
        .env("PGSTORAGE_ANON_KEY", token("anon", None))
        .env("PGSTORAGE_USER1_KEY", token("authenticated", Some("u1")))
        .env("PGSTORAGE_USER2_KEY", token("authenticated", Some("u2")))
        .env("NO_COLOR", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn finish(name: &str, child: tokio::process::Child) {
    let output = tokio::time::timeout(SUITE_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within {SUITE_TIMEOUT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed ({:?})\n---- stdout ----\n{stdout}\n---- stderr ----\n{stderr}",
        output.status
    );
    println!("{name}\n{stdout}");
}

fn tus_js(scenario: &str, url: &str, direct: &str) -> tokio::process::Child {
    let js = clients_dir().join("js");
    let manifest = js.join("node_modules/tus-js-client/package.json");
    assert!(
        manifest.exists(),
        "tus-js-client is not installed: run `scripts/install-client-deps`"
    );
    client_command(
        Path::new("node"),
        &["tus/tus.mjs", scenario],
        &js,
        url,
        direct,
    )
    .spawn()
    .unwrap()
}

async fn database() -> (TestDb, TestStore) {
    let db = TestDb::new().await;
    db.sql(FIXTURES).await;
    let store = TestStore::new(common::test_backend(), &db.name).await;
    (db, store)
}

/// What is left of the uploads once they finished: no upload rows, no staged keys.
async fn assert_clean(db: &TestDb) {
    let client = db.admin_client().await;
    let uploads: i64 = client
        .query_one("select count(*) from storage.s3_multipart_uploads", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(uploads, 0, "every upload completed");
}

/// What a killed server left of an upload: the offset HEAD reports is the sum of the recorded
/// parts, each of them whole in the store (a 204 meant durable bytes), and every key holding
/// bytes is a recorded part's or one staged in the journal (the PATCH cut short wrote under
/// its staged key, which the collector frees).
async fn assert_durable_and_journaled(db: &TestDb, store: &TestStore) {
    let client = db.admin_client().await;
    let offset: i64 = client
        .query_one(
            "select in_progress_size from storage.s3_multipart_uploads",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let parts: Vec<(String, i64)> = client
        .query(
            "select version, size from storage.s3_multipart_uploads_parts",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(parts.iter().map(|(_, size)| size).sum::<i64>(), offset);
    let bytes = store.open().await;
    for (key, size) in &parts {
        let mut stream = bytes.get(key, None).await.expect("a recorded part's bytes");
        let mut read = 0;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            read += chunk.expect("reading a part").len() as i64;
        }
        assert_eq!(read, *size, "part {key} is whole");
    }
    let staged: Vec<String> = client
        .query(
            "select key from storage.byte_journal where state = 'staged'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for key in store.stored_key_names().await {
        assert!(
            parts.iter().any(|(part, _)| *part == key) || staged.contains(&key),
            "{key} holds bytes that neither a part nor the journal knows"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_across_two_servers_and_a_cut_connection() {
    let (db, store) = database().await;
    let a = Server::start(&db, &store, common::process::free_port()).await;
    let b = Server::start(&db, &store, common::process::free_port()).await;
    // Connections: 0 creates the bucket (direct), then the proxy's 0 is the POST with the first
    // chunk, 1, 2, ... the PATCHes; the third is cut 2 MiB into its 6 MiB.
    let proxy = proxy(vec![a.port, b.port], Some((3, 2 * 1024 * 1024))).await;
    let url = format!("http://127.0.0.1:{}", proxy.port);
    finish("tus-js-client big", tus_js("big", &url, &a.url())).await;
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1, "a PATCH was cut");
    // 9 chunks, the one cut sent again, and the HEAD that found where to resume.
    assert!(proxy.connections.load(Ordering::SeqCst) >= 11);
    assert_clean(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_resumes_after_its_server_is_killed() {
    let (db, store) = database().await;
    let port = common::process::free_port();
    let mut server = Server::start(&db, &store, port).await;
    let url = server.url();
    let child = tus_js("big", &url, &url);
    // Wait until some chunks are in, then kill the server in the middle of the next one.
    let admin = db.admin_client().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let size: Option<i64> = admin
            .query_opt(
                "select in_progress_size from storage.s3_multipart_uploads",
                &[],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        if size.is_some_and(|s| s >= 12 * 1024 * 1024) {
            break;
        }
        assert!(Instant::now() < deadline, "the upload did not progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill9();
    let left: i64 = admin
        .query_one(
            "select in_progress_size from storage.s3_multipart_uploads",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(left < 50 * 1024 * 1024, "killed before the upload finished");
    assert_durable_and_journaled(&db, &store).await;
    let server = Server::start(&db, &store, port).await;
    finish("tus-js-client big, killed", child).await;
    assert_clean(&db).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_signed_rls_limits_termination() {
    let (db, store) = database().await;
    let server = Server::start(&db, &store, common::process::free_port()).await;
    finish(
        "tus-js-client rules",
        tus_js("rules", &server.url(), &server.url()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy() {
    let (db, store) = database().await;
    let server = Server::start(&db, &store, common::process::free_port()).await;
    let dir = clients_dir().join("python");
    let python = dir.join(".venv/bin/python");
    assert!(python.exists(), "run `scripts/install-client-deps` first");
    let child = client_command(
        &python,
        &["-m", "pytest", "-q", "-rfE", "tuspy_suite.py"],
        &dir,
        &server.url(),
        &server.url(),
    )
    .spawn()
    .unwrap();
    finish("tuspy", child).await;
}
