//! `storage.get_file` and `storage.get_metadata` as PostgREST calls them (migration 0014,
//! docs/postgrest.md).
//!
//! No PostgREST binary can be installed from this project's package registries, so each call
//! here is what PostgREST sends for `GET /rpc/get_file?bucket=..&name=..`: on a connection of
//! a NOINHERIT login role (PostgREST's authenticator; here the server's request role), a
//! read-only transaction that switches to the JWT's role, sets `request.jwt.claims`,
//! `request.method`, `request.path` and `request.headers`, runs the function in PostgREST's
//! query shape (named arguments, the body and `response.headers` / `response.status` read in
//! the same statement), and rolls back. The servers each test starts pick their own byte store,
//! so this file runs once, not per store.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{self, WAIT};
use common::{JWT_SECRET, Options, TestDb, TestServer, json_of};
use pgstorage::auth::JwtKeys;
use pgstorage::auth::signed_url::{self, Scope};
use pgstorage::config::Backend;
use pgstorage::core::sql_files::SqlFileSettings;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What PostgREST would answer with.
#[derive(Debug)]
struct Answer {
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    status: Option<String>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A refusal: SQLSTATE and message, which PostgREST turns into the status and JSON body.
#[derive(Debug, PartialEq)]
struct Refusal {
    code: String,
    message: String,
}

/// `GET /rpc/<function>?bucket=<bucket>&name=<name>` with a JWT of `role` and `sub`, as
/// PostgREST runs it.
async fn rpc(
    db: &TestDb,
    role: &str,
    sub: Option<&str>,
    function: &str,
    bucket: &str,
    name: &str,
) -> Result<Answer, Refusal> {
    let mut client = pgstorage::db::connect(&db.request).await.unwrap();
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .unwrap();
    let mut claims = json!({ "role": role });
    if let Some(sub) = sub {
        claims["sub"] = sub.into();
    }
    let path = format!("/rpc/{function}");
    tx.query(
        "select set_config('role', $1, true), \
                set_config('request.jwt.claims', $2, true), \
                set_config('request.method', 'GET', true), \
                set_config('request.path', $3, true), \
                set_config('request.headers', $4, true), \
                set_config('search_path', 'public', true)",
        &[
            &role,
            &claims.to_string(),
            &path,
            &json!({ "accept": "*/*" }).to_string(),
        ],
    )
    .await
    .unwrap();
    // PostgREST's shape: the function in a CTE with named arguments, read once; the response
    // settings read in the same statement. A "*/*" answer is sent as the bytes themselves, a
    // json one as its text.
    let body = if function == "get_file" {
        "(select pgrst_scalar from pgrst_source)::bytea"
    } else {
        "convert_to((select pgrst_scalar from pgrst_source)::text, 'UTF8')"
    };
    let query = format!(
        "with pgrst_source as ( \
             select \"storage\".\"{function}\"(\"bucket\" := $1, \"name\" := $2) as pgrst_scalar) \
         select {body} as body, \
                nullif(current_setting('response.headers', true), '') as response_headers, \
                nullif(current_setting('response.status', true), '') as response_status"
    );
    let result = tx.query_one(&query, &[&bucket, &name]).await;
    let row = match result {
        Ok(row) => row,
        Err(error) => {
            let db = error.as_db_error().expect("a database error");
            return Err(Refusal {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
            });
        }
    };
    let body: Vec<u8> = row.get(0);
    let headers: Option<String> = row.get(1);
    let status: Option<String> = row.get(2);
    let headers = match headers {
        None => Vec::new(),
        Some(text) => {
            let list: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("response.headers is not PostgREST's shape: {e}"));
            list.into_iter()
                .map(|object| {
                    assert_eq!(object.len(), 1, "one header per object: {text}");
                    let (name, value) = object.into_iter().next().unwrap();
                    (
                        name,
                        value.as_str().expect("header values are text").to_string(),
                    )
                })
                .collect()
        }
    };
    tx.rollback().await.unwrap();
    Ok(Answer {
        body,
        headers,
        status,
    })
}

fn not_found() -> Refusal {
    Refusal {
        code: "PT404".into(),
        message: "Object not found".into(),
    }
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Seed 003's kinds of policy: an owner's folder, a public bucket, and its join with a business
/// table (an article's cover follows the article's visibility).
async fn policies(server: &TestServer) {
    server.create_bucket("files", false).await;
    server.create_bucket("pub", true).await;
    server.create_bucket("article-assets", false).await;
    server
        .db
        .sql(
            "create policy owner_folder on storage.objects for select to authenticated
                 using (bucket_id = 'files' and (storage.foldername(name))[1] = (select auth.uid()));
             create policy public_read on storage.objects for select to anon, authenticated
                 using (bucket_id in (select id from storage.buckets where public));
             create table public.articles (
                 id bigserial primary key,
                 owner_id text default auth.uid(),
                 cover_key text,
                 is_public boolean default false);
             grant select on public.articles to anon, authenticated;
             insert into public.articles (owner_id, cover_key, is_public) values
                 ('u1', 'articles/1/cover.png', true),
                 ('u1', 'articles/2/cover.png', false);
             create policy cover_read on storage.objects for select to anon, authenticated
                 using (bucket_id = 'article-assets' and exists (
                     select 1 from public.articles a
                     where a.cover_key = storage.objects.name
                       and (a.is_public or a.owner_id = auth.uid())));",
        )
        .await;
}

/// Uploads as service_role through the REST API.
async fn put(server: &TestServer, bucket: &str, name: &str, data: &[u8], content_type: &str) {
    let path = format!("/object/{bucket}/{}", encode_path(name));
    let response = server
        .request(Method::POST, &path, Some(&server.service_key()))
        .header("content-type", content_type)
        .header("cache-control", "max-age=60")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{name}: {body}");
}

fn encode_path(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The server's own answer to a download of `bucket/name` by `key` (None: anonymous).
async fn rest_get(
    server: &TestServer,
    key: Option<&str>,
    bucket: &str,
    name: &str,
) -> reqwest::Response {
    let route = if key.is_some() {
        "authenticated"
    } else {
        "public"
    };
    server
        .request(
            Method::GET,
            &format!("/object/{route}/{bucket}/{}", encode_path(name)),
            key,
        )
        .send()
        .await
        .unwrap()
}

async fn publish(server: &TestServer, lifetime: Duration, max_inline_size: u64) {
    server
        .storage
        .publish_sql_file_settings(&SqlFileSettings {
            secret: common::keys().database_signing_key().to_vec(),
            public_url: format!("{}/", server.url),
            url_lifetime: lifetime,
            max_inline_size,
        })
        .await
        .unwrap();
}

fn postgres_store() -> Options {
    Options {
        backend: Backend::Postgres,
        ..Options::default()
    }
}

fn fs_store() -> Options {
    Options {
        backend: Backend::Fs,
        ..Options::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes in the database
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_postgres_store_answers_with_the_exact_bytes_and_headers() {
    let server = TestServer::start_with(postgres_store()).await;
    policies(&server).await;
    publish(&server, Duration::from_secs(60), 25_000_000).await;
    // Three chunks and a bit: the assembly must keep every byte in order.
    let data = pattern(3 * 1024 * 1024 + 12_345);
    put(&server, "files", "u1/photo.png", &data, "image/png").await;

    let answer = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/photo.png",
    )
    .await
    .unwrap();
    assert_eq!(sha256(&answer.body), sha256(&data));
    assert_eq!(answer.status, None, "200 is PostgREST's default");

    // The headers, exactly, in order; the dates and tags match the server's own answer.
    let rest = rest_get(
        &server,
        Some(&server.user_key("u1")),
        "files",
        "u1/photo.png",
    )
    .await;
    assert_eq!(rest.status(), 200);
    let rest_header = |name: &str| rest.headers()[name].to_str().unwrap().to_string();
    let expected: Vec<(String, String)> = [
        ("Content-Type", "image/png".to_string()),
        ("Content-Length", data.len().to_string()),
        (
            "Content-Disposition",
            "inline; filename=\"photo.png\"; filename*=UTF-8''photo.png".to_string(),
        ),
        ("Cache-Control", "max-age=60".to_string()),
        ("ETag", rest_header("etag")),
        ("Last-Modified", rest_header("last-modified")),
        ("X-Content-Type-Options", "nosniff".to_string()),
        ("Content-Security-Policy", "sandbox".to_string()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    assert_eq!(answer.headers, expected);
    assert!(answer.header("ETag").unwrap().starts_with('"'));

    // An empty object is an empty body, not a missing one.
    put(&server, "files", "u1/empty.txt", b"", "text/plain").await;
    let empty = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/empty.txt",
    )
    .await
    .unwrap();
    assert!(empty.body.is_empty());
    assert_eq!(empty.header("Content-Length"), Some("0"));

    // A PDF keeps working in browsers' viewers: no sandbox for it.
    put(
        &server,
        "files",
        "u1/doc.pdf",
        b"%PDF-1.4",
        "application/pdf",
    )
    .await;
    let pdf = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/doc.pdf",
    )
    .await
    .unwrap();
    assert_eq!(pdf.header("Content-Security-Policy"), None);
    assert_eq!(pdf.header("Content-Type"), Some("application/pdf"));

    // Active content is a download, as from the REST API: never a page of the API's origin.
    put(
        &server,
        "files",
        "u1/page.html",
        b"<script>1</script>",
        "text/html",
    )
    .await;
    let html = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/page.html",
    )
    .await
    .unwrap();
    assert_eq!(
        html.header("Content-Disposition"),
        Some("attachment; filename=\"page.html\"; filename*=UTF-8''page.html")
    );
    assert_eq!(html.header("Content-Security-Policy"), Some("sandbox"));
    let rest = rest_get(
        &server,
        Some(&server.user_key("u1")),
        "files",
        "u1/page.html",
    )
    .await;
    assert_eq!(
        rest.headers()["content-disposition"].to_str().unwrap(),
        html.header("Content-Disposition").unwrap()
    );
}

#[tokio::test]
async fn policies_decide_through_get_file_as_through_the_rest_api() {
    let server = TestServer::start_with(postgres_store()).await;
    policies(&server).await;
    put(&server, "files", "u1/private.txt", b"mine", "text/plain").await;
    put(
        &server,
        "article-assets",
        "articles/1/cover.png",
        b"public cover",
        "image/png",
    )
    .await;
    put(
        &server,
        "article-assets",
        "articles/2/cover.png",
        b"draft cover",
        "image/png",
    )
    .await;
    put(&server, "pub", "open.txt", b"everyone", "text/plain").await;

    // (who asks, bucket, name, may they see it?)
    let cases = [
        ("u1", "files", "u1/private.txt", true),
        ("u2", "files", "u1/private.txt", false),
        ("anon", "files", "u1/private.txt", false),
        ("service", "files", "u1/private.txt", true),
        ("u1", "files", "u1/missing.txt", false),
        ("anon", "pub", "open.txt", true),
        ("u2", "pub", "open.txt", true),
        ("anon", "article-assets", "articles/1/cover.png", true),
        ("anon", "article-assets", "articles/2/cover.png", false),
        ("u1", "article-assets", "articles/2/cover.png", true),
        ("u2", "article-assets", "articles/2/cover.png", false),
        ("u2", "article-assets", "articles/1/cover.png", true),
        ("anon", "nope", "x", false),
    ];
    for (who, bucket, name, visible) in cases {
        let (role, sub, key) = match who {
            "anon" => ("anon", None, None),
            "service" => ("service_role", None, Some(server.service_key())),
            user => ("authenticated", Some(user), Some(server.user_key(user))),
        };
        let key = key.as_deref();
        let sql = rpc(&server.db, role, sub, "get_file", bucket, name).await;
        let rest = rest_get(&server, key, bucket, name).await;
        let rest_status = rest.status().as_u16();
        let rest_body = rest.bytes().await.unwrap();
        let case = format!("{role} {sub:?} {bucket}/{name}");
        if visible {
            let answer = sql.unwrap_or_else(|e| panic!("{case}: {e:?}"));
            assert_eq!(rest_status, 200, "{case}");
            assert_eq!(answer.body, rest_body.to_vec(), "{case}");
        } else {
            assert_eq!(sql.unwrap_err(), not_found(), "{case}");
            assert_ne!(rest_status, 200, "{case}");
        }
        let meta = rpc(&server.db, role, sub, "get_metadata", bucket, name).await;
        assert_eq!(meta.is_ok(), visible, "{case}: {meta:?}");
    }
}

#[tokio::test]
async fn get_file_runs_as_storage_download_and_get_metadata_as_storage_info() {
    let server = TestServer::start_with(postgres_store()).await;
    server.create_bucket("files", false).await;
    // Downloads allowed, metadata not: each function is seen under its own operation.
    server
        .db
        .sql(
            "create policy download_only on storage.objects for select to authenticated
                 using (storage.allow_only_operation('download'));",
        )
        .await;
    put(&server, "files", "a.txt", b"abc", "text/plain").await;
    let file = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "a.txt",
    )
    .await;
    assert_eq!(file.unwrap().body, b"abc");
    let meta = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_metadata",
        "files",
        "a.txt",
    )
    .await;
    assert_eq!(meta.unwrap_err(), not_found());

    // The operation is the function's only: the transaction's own is back afterwards.
    let mut client = pgstorage::db::connect(&server.db.request).await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("set local role authenticated; set local storage.operation = 'storage.list';")
        .await
        .unwrap();
    let row = tx
        .query_one(
            "select octet_length(storage.get_file('files', 'a.txt'))",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), Some(3));
    let row = tx
        .query_one("select storage.operation()", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("storage.list")
    );
}

#[tokio::test]
async fn the_postgres_store_refuses_objects_above_the_cap() {
    let server = TestServer::start_with(postgres_store()).await;
    policies(&server).await;
    publish(&server, Duration::from_secs(60), 1000).await;
    put(
        &server,
        "files",
        "u1/small.bin",
        &pattern(1000),
        "application/octet-stream",
    )
    .await;
    put(
        &server,
        "files",
        "u1/big.bin",
        &pattern(1001),
        "application/octet-stream",
    )
    .await;

    let small = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/small.bin",
    )
    .await
    .unwrap();
    assert_eq!(small.body, pattern(1000));
    let big = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/big.bin",
    )
    .await;
    assert_eq!(
        big.unwrap_err(),
        Refusal {
            code: "54000".into(),
            message: "the object is 1001 bytes, more than the 1000 bytes get_file returns".into(),
        }
    );
    // Only a caller who may see it learns its size.
    let stranger = rpc(
        &server.db,
        "authenticated",
        Some("u2"),
        "get_file",
        "files",
        "u1/big.bin",
    );
    assert_eq!(stranger.await.unwrap_err(), not_found());
}

#[tokio::test]
async fn file_names_are_given_as_rfc_6266_asks() {
    let server = TestServer::start_with(postgres_store()).await;
    policies(&server).await;
    let name = "u1/r\u{e9}sum\u{e9} \"final\"; 100%.txt";
    put(&server, "files", name, b"cv", "text/plain").await;
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
    assert_eq!(
        answer.header("Content-Disposition"),
        Some(
            "inline; filename=\"r_sum_ _final_; 100%.txt\"; \
             filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%3B%20100%25.txt"
        )
    );
    assert_eq!(answer.body, b"cv");
}

#[tokio::test]
async fn get_metadata_reports_the_seeds_fields() {
    let server = TestServer::start_with(postgres_store()).await;
    policies(&server).await;
    let response = server
        .request(
            Method::POST,
            "/object/files/u1/notes.txt",
            Some(&server.service_key()),
        )
        .header("content-type", "text/plain")
        .header("cache-control", "max-age=60")
        .header(
            "x-metadata",
            base64_of(&json!({ "project": "apollo" }).to_string()),
        )
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let answer = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_metadata",
        "files",
        "u1/notes.txt",
    )
    .await
    .unwrap();
    let meta: Value = serde_json::from_slice(&answer.body).unwrap();
    let row = server
        .db
        .admin_client()
        .await
        .query_one(
            "select id::text, metadata, to_json(created_at), to_json(updated_at)
             from storage.objects where name = 'u1/notes.txt'",
            &[],
        )
        .await
        .unwrap();
    let stored: Value = row.get(1);
    assert_eq!(meta["id"], json!(row.get::<_, String>(0)));
    assert_eq!(meta["bucket"], "files");
    assert_eq!(meta["name"], "u1/notes.txt");
    assert_eq!(meta["size"], 5);
    assert_eq!(meta["mimetype"], "text/plain");
    assert_eq!(meta["sha256"], sha256(b"hello"));
    assert_eq!(meta["eTag"], stored["eTag"]);
    assert_eq!(meta["cacheControl"], "max-age=60");
    assert_eq!(meta["lastModified"], stored["lastModified"]);
    assert_eq!(meta["createdAt"], row.get::<_, Value>(2));
    assert_eq!(meta["updatedAt"], row.get::<_, Value>(3));
    assert_eq!(meta["metadata"], json!({ "project": "apollo" }));
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

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

#[tokio::test]
async fn a_multipart_object_in_the_database_is_assembled_from_its_parts() {
    use futures::StreamExt;
    use pgstorage::core::Limits;
    use pgstorage::core::multipart::{CompletePart, CreateMultipart};

    let server = TestServer::start_with(postgres_store()).await;
    policies(&server).await;
    let storage = server.storage.with_limits(Limits {
        multipart_min_part_size: 1000,
        ..server.storage.limits().clone()
    });
    let who = common::caller("service_role", None);
    let upload = storage
        .create_multipart(
            &who,
            CreateMultipart {
                bucket: "files".into(),
                name: "u1/joined.bin".into(),
                content_type: Some("application/octet-stream".into()),
                ..CreateMultipart::default()
            },
        )
        .await
        .unwrap();
    // Parts of more than one chunk each, so both orders (segments, then chunks) matter.
    let parts = [
        pattern(1024 * 1024 + 7),
        pattern(1024 * 1024 + 3)
            .into_iter()
            .rev()
            .collect::<Vec<_>>(),
        b"tail".to_vec(),
    ];
    let mut named = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let body = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
            part.clone(),
        ))])
        .boxed();
        let info = storage
            .upload_part(
                &who,
                &upload.id,
                i as u32 + 1,
                body,
                Some(part.len() as u64),
            )
            .await
            .unwrap();
        named.push(CompletePart {
            part_number: i as u32 + 1,
            etag: Some(info.etag),
        });
    }
    storage
        .complete_multipart(&who, &upload.id, &named)
        .await
        .unwrap();
    let segments: i64 = server
        .db
        .admin_client()
        .await
        .query_one("select count(*) from storage.object_segments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        segments, 3,
        "the object must be segmented for this test to mean anything"
    );

    let answer = rpc(
        &server.db,
        "authenticated",
        Some("u1"),
        "get_file",
        "files",
        "u1/joined.bin",
    )
    .await
    .unwrap();
    assert_eq!(sha256(&answer.body), sha256(&parts.concat()));
    let stranger = rpc(
        &server.db,
        "authenticated",
        Some("u2"),
        "get_file",
        "files",
        "u1/joined.bin",
    );
    assert_eq!(stranger.await.unwrap_err(), not_found());
}

// ---------------------------------------------------------------------------------------------
// The "*/*" domain
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_any_media_type_domain_is_created_once_beside_an_applications_own() {
    // The seed's application made its own "*/*" in public; ours lives in storage and both stay.
    let db = TestDb::empty().await;
    let mut client = db.admin_client().await;
    client
        .batch_execute(
            "create schema storage; create domain storage.\"*/*\" as bytea;
             create domain public.\"*/*\" as bytea;",
        )
        .await
        .unwrap();
    pgstorage::db::migrate::run(&mut client).await.unwrap();
    let rows = client
        .query(
            "select n.nspname::text, format_type(t.typbasetype, null)
             from pg_type t join pg_namespace n on n.oid = t.typnamespace
             where t.typname = '*/*' order by 1",
            &[],
        )
        .await
        .unwrap();
    let found: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        found,
        [
            ("public".to_string(), "bytea".to_string()),
            ("storage".to_string(), "bytea".to_string())
        ]
    );
    let returns: String = client
        .query_one(
            "select format_type(prorettype, null) from pg_proc
             where oid = 'storage.get_file(text, text)'::regprocedure",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(returns, "storage.\"*/*\"");

    // A "*/*" over another type cannot serve bytes: refused rather than adopted.
    let other = TestDb::empty().await;
    let mut client = other.admin_client().await;
    client
        .batch_execute("create schema storage; create domain storage.\"*/*\" as text;")
        .await
        .unwrap();
    let error = pgstorage::db::migrate::run(&mut client).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("is not a domain over bytea"),
        "{error:#}"
    );
}
