//! `storage.get_file` and `storage.get_metadata` with bytes in the database (the postgres store),
//! called as PostgREST calls them (see `postgrest/mod.rs` and docs/postgrest.md): policies,
//! headers, bytes, the size cap, file names, metadata, and the `"*/*"` domain. The servers pick
//! their own byte store, so this file runs once, not per store.

mod common;
mod postgrest;

use std::time::Duration;

use common::{TestDb, TestServer};
use postgrest::*;
use reqwest::Method;
use serde_json::{Value, json};

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
