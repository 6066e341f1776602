//! `storage.get_file` when the bytes are elsewhere (the local-disk and S3 stores): a 307 to a
//! download URL signed inside the database, which the server serves like its own (see
//! docs/postgrest.md). Also what signing directly gains (nothing), and a real `pgstorage serve`
//! publishing its key at start-up and replacing it when restarted with a new secret.

mod common;
mod postgrest;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{self, WAIT};
use common::{JWT_SECRET, Options, TestDb, TestServer, json_of};
use pgstorage::auth::JwtKeys;
use pgstorage::auth::signed_url::{self, Scope};
use pgstorage::config::Backend;
use postgrest::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Bytes elsewhere: a redirect to a URL signed in the database
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_fs_store_redirects_to_a_url_the_server_serves() {
    redirects_to_a_url_the_server_serves(fs_store()).await;
}

#[tokio::test]
async fn the_s3_store_redirects_to_a_url_the_server_serves() {
    redirects_to_a_url_the_server_serves(Options {
        backend: Backend::S3,
        ..Options::default()
    })
    .await;
}

async fn redirects_to_a_url_the_server_serves(options: Options) {
    let server = TestServer::start_with(options).await;
    policies(&server).await;
    publish(&server, Duration::from_secs(60), 25_000_000).await;
    let data = pattern(200_000);
    let name = "u1/r\u{e9}sum\u{e9} #1?.pdf";
    put(&server, "files", name, &data, "application/pdf").await;

    let answer = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        name,
    )
    .await
    .unwrap();
    assert_eq!(answer.status.as_deref(), Some("307"));
    assert!(answer.body.is_empty());
    let location = answer.header("Location").unwrap().to_string();
    assert_eq!(answer.header("Cache-Control"), Some("no-store"));
    let prefix = format!(
        "{}/object/sign/files/u1/r%C3%A9sum%C3%A9%20%231%3F.pdf?token=",
        server.url
    );
    assert!(location.starts_with(&prefix), "{location}");

    // The same token the server would make: its own verifier takes it.
    let token = &location[prefix.len()..];
    let keys = JwtKeys::new(JWT_SECRET.as_bytes());
    let verified = signed_url::verify(&keys, Some(token), "files", name, Scope::Download).unwrap();
    let signer = verified.signer.unwrap();
    assert_eq!(
        (signer.role.as_str(), signer.sub.as_deref()),
        ("authenticated", Some("u1"))
    );
    let lifetime = verified.expires_at - common::unix_now();
    assert!((55..=61).contains(&lifetime), "{lifetime}");

    let response = reqwest::get(&location).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(sha256(&response.bytes().await.unwrap()), sha256(&data));

    // A tampered token is refused.
    let mut tampered = location.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let response = reqwest::get(String::from_utf8(tampered).unwrap())
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400, "{body}");

    // Anonymous callers of a public bucket get a URL too; of a private one, nothing.
    put(&server, "pub", "open.txt", b"everyone", "text/plain").await;
    let anon = rpc(&server.db, "anon", None, "get_file", "pub", "open.txt")
        .await
        .unwrap();
    let response = reqwest::get(anon.header("Location").unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"everyone");
    let denied = rpc(&server.db, "anon", None, "get_file", "files", name).await;
    assert_eq!(denied.unwrap_err(), not_found());
}

#[tokio::test]
async fn a_url_signed_in_the_database_expires() {
    let server = TestServer::start_with(fs_store()).await;
    policies(&server).await;
    publish(&server, Duration::from_secs(1), 25_000_000).await;
    put(&server, "files", "u1/a.txt", b"abc", "text/plain").await;
    let answer = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/a.txt",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = reqwest::get(answer.header("Location").unwrap())
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn signing_directly_gives_no_one_more_than_their_policies() {
    let server = TestServer::start_with(fs_store()).await;
    policies(&server).await;
    publish(&server, Duration::from_secs(60), 25_000_000).await;
    put(&server, "files", "u1/private.txt", b"mine", "text/plain").await;

    // A stranger skips get_file and calls the signer itself: the URL carries the stranger,
    // and the server checks the stranger's policies when it is used.
    let mut client = pgstorage::db::connect(&server.db.request).await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(
        "set local role authenticated;
         select set_config('request.jwt.claims', '{\"role\":\"authenticated\",\"sub\":\"u2\"}', true);",
    )
    .await
    .unwrap();
    let row = tx
        .query_one(
            "select storage.sign_download_url('files', 'u1/private.txt')",
            &[],
        )
        .await
        .unwrap();
    let url: String = row.get(0);
    tx.rollback().await.unwrap();
    let response = reqwest::get(&url).await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 404, "{body}");

    // The key itself is out of every API role's reach.
    for role in ["anon", "authenticated", "service_role"] {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(&format!("set local role {role}"))
            .await
            .unwrap();
        let error = tx
            .query_one("select secret from storage.sql_file_settings", &[])
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{role}"
        );
    }
}

#[tokio::test]
async fn without_a_published_key_the_redirect_is_a_clear_503() {
    let server = TestServer::start_with(fs_store()).await;
    policies(&server).await;
    put(&server, "files", "u1/a.txt", b"abc", "text/plain").await;
    let answer = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/a.txt",
    )
    .await;
    assert_eq!(
        answer.unwrap_err(),
        Refusal {
            code: "PT503".into(),
            message: "the pgstorage server has not published its signing key".into(),
        }
    );
}

// ---------------------------------------------------------------------------------------------
// The real server publishes its key at start-up, and a new secret replaces it
// ---------------------------------------------------------------------------------------------

/// A spawned server, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(db: &TestDb, dir: &std::path::Path, port: u16, secret: &str) -> Command {
    let mut command = process::pgstorage(&["serve"]);
    command
        .args(["--database-url", &db.admin_url()])
        .args(["--request-database-url", &db.request_url()])
        .args(["--jwt-secret", secret, "--port", &port.to_string()])
        .args(["--backend", "fs"])
        .arg("--fs-root")
        .arg(dir.join("bytes"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--public-url",
            &format!("http://127.0.0.1:{port}/storage/v1/"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

async fn wait_until_up(port: u16, server: &mut Running) {
    let deadline = Instant::now() + WAIT;
    loop {
        if reqwest::get(format!("http://127.0.0.1:{port}/status"))
            .await
            .is_ok()
        {
            return;
        }
        assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_server_started_with_a_new_secret_replaces_the_key_in_the_database() {
    let db = TestDb::new().await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("postgrest-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let first_secret = "first-secret-first-secret-first-secret!!";
    let second_secret = "second-secret-second-secret-second-secret";
    let port = process::free_port();

    let mut first = Running(serve(&db, &dir, port, first_secret).spawn().unwrap());
    wait_until_up(port, &mut first).await;
    let service = JwtKeys::new(first_secret.as_bytes())
        .mint(
            "service_role",
            None,
            Some(Duration::from_secs(600)),
            Default::default(),
        )
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let response = http
        .post(format!("{base}/bucket"))
        .bearer_auth(&service)
        .json(&json!({ "name": "files" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http
        .post(format!("{base}/object/files/u1/a.txt"))
        .bearer_auth(&service)
        .header("content-type", "text/plain")
        .body("first")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    db.sql(
        "create policy owner_folder on storage.objects for select to authenticated
             using ((storage.foldername(name))[1] = (select auth.uid()));",
    )
    .await;

    let old = rpc(
        &db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/a.txt",
    )
    .await
    .unwrap();
    let old_url = old.header("Location").unwrap().to_string();
    assert!(
        old_url.starts_with(&format!(
            "{base}/storage/v1/object/sign/files/u1/a.txt?token="
        )),
        "{old_url}"
    );
    let response = reqwest::get(&old_url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "first");
    drop(first);

    let mut second = Running(serve(&db, &dir, port, second_secret).spawn().unwrap());
    wait_until_up(port, &mut second).await;
    let stored: Vec<u8> = db
        .admin_client()
        .await
        .query_one("select secret from storage.sql_file_settings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        JwtKeys::new(second_secret.as_bytes()).database_signing_key()
    );
    assert_ne!(stored, second_secret.as_bytes(), "never the secret itself");
    let response = reqwest::get(&old_url).await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400, "the old key's URL must stop working: {body}");
    let new = rpc(
        &db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/a.txt",
    )
    .await
    .unwrap();
    let response = reqwest::get(new.header("Location").unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "first");
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}
