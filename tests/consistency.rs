//! The consistency invariants under concurrency and crashes (DESIGN §5).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{JWT_SECRET, TestDb, TestServer, TestStore, test_backend};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::Method;
use sha2::{Digest, Sha256};

fn body_for(seed: u64, len: usize) -> Vec<u8> {
    // A cheap deterministic pseudo-random body (xorshift), different for every seed.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test]
async fn twenty_concurrent_uploads_of_one_new_key_have_one_winner() {
    let server = TestServer::start().await;
    server.create_bucket("race", false).await;
    let key = server.service_key();
    let uploads = (0..20u64).map(|i| {
        let request = server
            .request(Method::POST, "/object/race/same.bin", Some(&key))
            .header("content-type", "application/octet-stream")
            .body(body_for(i, 64 * 1024));
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    });
    let mut statuses = Vec::new();
    for upload in uploads {
        statuses.push(upload.await.unwrap());
    }
    let won = statuses.iter().filter(|s| **s == 200).count();
    let lost = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((won, lost), (1, 19), "statuses: {statuses:?}");

    // The losers' bytes were discarded: one file, nothing left in the journal.
    let client = server.db.admin_client().await;
    let journal: i64 = client
        .query_one("select count(*) from storage.byte_journal", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(journal, 0);
    assert_eq!(server.stored_keys().await, 1);
    assert_eq!(server.store.partial_writes().await, 0);
}

/// An upsert whose row another transaction moves away, putting another object under the name,
/// while the upsert's policy probe waits for that row's lock, still overwrites: the probe's
/// update follows the old row, finds it renamed, and must then judge the row that holds the
/// name now (it used to answer 403).
#[tokio::test]
async fn an_upsert_overwrites_a_row_replaced_while_its_check_waited() {
    let server = TestServer::start().await;
    server.create_bucket("swap", false).await;
    let key = server.service_key();
    let path = "/object/swap/hot.bin";
    for (name, seed) in [("hot.bin", 1), ("spare.bin", 3)] {
        let upload = server
            .request(Method::POST, &format!("/object/swap/{name}"), Some(&key))
            .body(body_for(seed, 1024))
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), 200);
    }

    // The other writer: two moves in one transaction, which holds the old row's lock until
    // it commits.
    let mut admin = server.db.admin_client().await;
    let swap = admin.transaction().await.unwrap();
    swap.batch_execute(
        "update storage.objects set name = 'moved.bin' where bucket_id = 'swap' and name = 'hot.bin';
         update storage.objects set name = 'hot.bin' where bucket_id = 'swap' and name = 'spare.bin';",
    )
    .await
    .unwrap();

    let put = server
        .request(Method::PUT, path, Some(&key))
        .body(body_for(2, 1024))
        .send();
    let put = tokio::spawn(put);
    let watcher = server.db.admin_client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "select count(*) from pg_stat_activity \
                 where datname = current_database() and wait_event_type = 'Lock' \
                   and query like 'update storage.objects%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upsert never waited for the row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    swap.commit().await.unwrap();

    let put = put.await.unwrap().unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let read = server
        .request(Method::GET, path, Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap(), body_for(2, 1024));
    let moved = server
        .request(Method::GET, "/object/swap/moved.bin", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.bytes().await.unwrap(), body_for(1, 1024));
}

#[tokio::test]
async fn readers_during_overwrites_see_a_whole_old_or_new_body() {
    let server = TestServer::start().await;
    server.create_bucket("hot", false).await;
    let key = server.service_key();
    const VERSIONS: u64 = 25;
    const SIZE: usize = 256 * 1024;
    let known: std::collections::HashSet<String> =
        (0..VERSIONS).map(|i| sha256(&body_for(i, SIZE))).collect();
    let put = |i: u64| {
        server
            .request(Method::PUT, "/object/hot/file.bin", Some(&key))
            .header("content-type", "application/octet-stream")
            .body(body_for(i, SIZE))
            .send()
    };
    assert_eq!(put(0).await.unwrap().status(), 200);

    let writer = {
        let requests: Vec<_> = (1..VERSIONS).map(put).collect();
        tokio::spawn(async move {
            for request in requests {
                assert_eq!(request.await.unwrap().status(), 200);
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..4 {
        let request = server.request(Method::GET, "/object/hot/file.bin", Some(&key));
        let known = known.clone();
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            while reads < 30 && Instant::now() < deadline {
                let response = request.try_clone().unwrap().send().await.unwrap();
                assert_eq!(response.status(), 200);
                let etag = response.headers()["etag"].to_str().unwrap().to_string();
                let body = response.bytes().await.unwrap();
                assert_eq!(body.len(), SIZE, "a partial body was served");
                assert!(
                    known.contains(&sha256(&body)),
                    "a body that was never written"
                );
                // The headers describe the very bytes that were sent.
                let md5 = format!(
                    "\"{}\"",
                    hex::encode(<md5::Md5 as md5::Digest>::digest(&body))
                );
                assert_eq!(etag, md5);
                reads += 1;
            }
        }));
    }
    writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
}

/// Where a spawned server's log goes: a file under target/tmp, printed when a test fails.
fn server_log(port: u16) -> std::fs::File {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("server-logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::File::create(dir.join(format!("{port}.log"))).unwrap()
}

/// A `pgstorage serve` process over a test database, killed when dropped.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    async fn start(db: &TestDb, store: &TestStore, extra: &[&str]) -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_pgstorage"))
            .arg("serve")
            .args(["--database-url", &db.admin_url()])
            .args(["--request-database-url", &db.request_url()])
            .args(["--jwt-secret", JWT_SECRET])
            .args(store.server_args())
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(server_log(port))
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{url}/status")).await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, url }
    }

    fn kill9(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test]
async fn a_crash_mid_upload_leaves_no_row_and_gc_leaves_no_bytes() {
    let db = TestDb::new().await;
    let store = TestStore::new(test_backend(), &db.name).await;
    let service = common::token("service_role", None);
    let http = reqwest::Client::new();
    let args = ["--upload-lease-seconds", "2", "--gc-interval-seconds", "0"];
    let mut server = ServerProcess::start(&db, &store, &args).await;

    let create = http
        .post(format!("{}/bucket", server.url))
        .bearer_auth(&service)
        .json(&serde_json::json!({"name": "crash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 200);
    let kept = body_for(7, 300 * 1024);
    let stored = http
        .post(format!("{}/object/crash/kept.bin", server.url))
        .bearer_auth(&service)
        .body(kept.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);

    // A large upload that sends 8 MiB and then hangs, as if the client were slow.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let upload = http
        .post(format!("{}/object/crash/big.bin", server.url))
        .bearer_auth(&service)
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let upload = tokio::spawn(upload);
    for i in 0..8 {
        tx.send(Ok(Bytes::from(body_for(100 + i, 1024 * 1024))))
            .await
            .unwrap();
    }
    let admin = db.admin_client().await;
    let staged = || async {
        admin
            .query_one(
                "select count(*) from storage.byte_journal where state = 'staged'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let staged_key = || async {
        admin
            .query_opt(
                "select key from storage.byte_journal where state = 'staged'",
                &[],
            )
            .await
            .unwrap()
            .map(|row| row.get::<_, String>(0))
    };
    // Bytes are being written: visible as a staged key and a partial write (on the local disk,
    // in place: a file under the staged key itself), or, with the postgres store, as the
    // server's transaction writing chunks (nothing is visible outside it).
    let in_database = matches!(store, TestStore::Postgres { .. });
    let on_disk = matches!(store, TestStore::Fs { .. });
    let writing = || async {
        if on_disk {
            match staged_key().await {
                Some(key) => store.key_exists(&key).await,
                None => false,
            }
        } else if in_database {
            admin
                .query_one(
                    "select count(*) from pg_stat_activity \
                     where datname = current_database() and query like '%write_chunk%' \
                       and xact_start is not null",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                > 0
        } else {
            staged().await > 0 && store.partial_writes().await > 0
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !writing().await {
        assert!(
            Instant::now() < deadline,
            "the upload never started writing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    server.kill9();
    // The client only sees its connection drop; what matters is what the server left.
    drop(tx);
    let _ = upload.await;

    let rows: i64 = admin
        .query_one(
            "select count(*) from storage.objects where name = 'big.bin'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "a crashed upload must leave no row");
    if in_database {
        // The server's connection dies with it and PostgreSQL rolls the transaction back:
        // chunks and staged key vanish together, at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.stored_keys().await != 1 {
            assert!(
                Instant::now() < deadline,
                "the aborted upload's chunks remain"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(staged().await, 0);
    } else {
        assert_eq!(
            staged().await,
            1,
            "its key stays staged until the lease ends"
        );
    }
    // On the local disk the cut-off bytes sit under the staged key itself, not in `tmp/`.
    let cut_off = match on_disk {
        true => {
            let key = staged_key().await.unwrap();
            assert!(store.key_exists(&key).await, "the partial file is in place");
            assert_eq!(store.partial_writes().await, 0, "nothing in tmp/");
            Some(key)
        }
        false => None,
    };

    // Restarted, the committed object is intact.
    let server = ServerProcess::start(&db, &store, &args).await;
    let got = http
        .get(format!("{}/object/crash/kept.bin", server.url))
        .bearer_auth(&service)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(sha256(&got.bytes().await.unwrap()), sha256(&kept));

    // Once the lease has run out, `pgstorage gc` frees the partial bytes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let gc = Command::new(env!("CARGO_BIN_EXE_pgstorage"))
        .arg("gc")
        .args(["--database-url", &db.admin_url()])
        .args(store.server_args())
        .args(["--gc-grace-seconds", "0"])
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert_eq!(staged().await, 0);
    match store {
        TestStore::Fs { .. } => {
            assert_eq!(store.partial_writes().await, 0, "partial bytes left behind")
        }
        // A crash leaves its multipart upload open: no object, invisible to readers, reclaimed
        // by the bucket's AbortIncompleteMultipartUpload lifecycle rule (README, Deployment).
        // Garage keeps an upload as a version of its key: the collector's delete of the key
        // ends it too (docs/garage.md).
        TestStore::S3 { .. } => {
            let left = match common::garage::s3_server() {
                common::garage::S3Server::Moto => 1,
                common::garage::S3Server::Garage => 0,
            };
            assert_eq!(store.partial_writes().await, left)
        }
        TestStore::Postgres { .. } => assert_eq!(store.partial_writes().await, 0),
    }
    if let Some(key) = cut_off {
        assert!(
            !store.key_exists(&key).await,
            "the collector freed the partial file under the staged key"
        );
    }
    assert_eq!(
        store.stored_keys().await,
        1,
        "only the committed object's bytes remain"
    );
    let got = http
        .get(format!("{}/object/crash/kept.bin", server.url))
        .bearer_auth(&service)
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&got.bytes().await.unwrap()), sha256(&kept));
}

/// A body that proves itself: 8 bytes of seed, then bytes derived from it.
fn self_checking(seed: u64, len: usize) -> Vec<u8> {
    let mut body = seed.to_le_bytes().to_vec();
    body.extend(body_for(seed, len - 8));
    body
}

fn is_whole(body: &[u8]) -> bool {
    body.len() > 8 && {
        let seed = u64::from_le_bytes(body[..8].try_into().unwrap());
        body[8..] == body_for(seed, body.len() - 8)[..]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_and_store_keep_every_invariant() {
    let db = TestDb::new().await;
    let store = TestStore::new(common::test_backend(), &db.name).await;
    // Both run the collector with a short grace, so they contend for its leadership too.
    let args = ["--gc-interval-seconds", "1", "--gc-grace-seconds", "5"];
    let a = ServerProcess::start(&db, &store, &args).await;
    let b = ServerProcess::start(&db, &store, &args).await;
    let servers = [a.url.clone(), b.url.clone()];
    let service = common::token("service_role", None);
    let http = reqwest::Client::new();
    let create = http
        .post(format!("{}/bucket", servers[0]))
        .bearer_auth(&service)
        .json(&serde_json::json!({"name": "shared"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 200);

    const SIZE: usize = 64 * 1024;
    let mut tasks = Vec::new();
    // Writers: both servers overwrite the same five keys.
    for (w, url) in servers.iter().enumerate() {
        let (http, url, service) = (http.clone(), url.clone(), service.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..30u64 {
                let seed = (w as u64) << 32 | i;
                let response = http
                    .put(format!("{url}/object/shared/hot-{}.bin", i % 5))
                    .bearer_auth(&service)
                    .body(self_checking(seed, SIZE))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            }
        }));
    }
    // Readers on both servers: a whole body or a 404 (not written yet, or deleted), never a mix.
    for url in servers.iter().cycle().take(4) {
        let (http, url, service) = (http.clone(), url.clone(), service.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let response = http
                    .get(format!("{url}/object/shared/hot-{}.bin", i % 5))
                    .bearer_auth(&service)
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    404 => {}
                    200 => {
                        let body = response.bytes().await.unwrap();
                        assert!(
                            is_whole(&body),
                            "a torn or mixed body of {} bytes",
                            body.len()
                        );
                    }
                    other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
                }
            }
        }));
    }
    // New keys raced from both servers at once: one wins, the other gets 409.
    {
        let (http, servers, service) = (http.clone(), servers.clone(), service.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..10u64 {
                let posts = servers.iter().enumerate().map(|(s, url)| {
                    http.post(format!("{url}/object/shared/new-{round}.bin"))
                        .bearer_auth(&service)
                        .body(self_checking(1000 + round * 2 + s as u64, SIZE))
                        .send()
                });
                let statuses: Vec<u16> = futures::future::join_all(posts)
                    .await
                    .into_iter()
                    .map(|r| r.unwrap().status().as_u16())
                    .collect();
                let mut sorted = statuses.clone();
                sorted.sort();
                assert_eq!(sorted, [200, 409], "round {round}: {statuses:?}");
            }
        }));
    }
    // Deletes through the other server while all that goes on.
    {
        let (http, url, service) = (http.clone(), servers[1].clone(), service.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let response = http
                    .delete(format!("{url}/object/shared/hot-{}.bin", i % 5))
                    .bearer_auth(&service)
                    .send()
                    .await
                    .unwrap();
                assert!(matches!(response.status().as_u16(), 200 | 404));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    drop((a, b));

    // Every invariant, checked against the database and the store themselves.
    let gc = Command::new(env!("CARGO_BIN_EXE_pgstorage"))
        .arg("gc")
        .args(["--database-url", &db.admin_url()])
        .args(store.server_args())
        .args(["--gc-grace-seconds", "0"])
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let admin = db.admin_client().await;
    let mut versions: Vec<String> = admin
        .query(
            "select version from storage.objects where version is not null",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    versions.sort();
    let stored = store.stored_key_names().await;
    assert_eq!(
        stored, versions,
        "rows and stored bytes must match one to one"
    );
    let journal: i64 = admin
        .query_one("select count(*) from storage.byte_journal", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(journal, 0, "nothing left staged or released");
    assert_eq!(store.partial_writes().await, 0);
    let new_keys: i64 = admin
        .query_one(
            "select count(*) from storage.objects where name like 'new-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(new_keys, 10);
}
