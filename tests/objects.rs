//! The REST object routes, as service_role unless a test says otherwise: upload, download,
//! info, delete, move, copy, bucket limits, hostile names, and the bytes behind each row.

mod common;
mod object_helpers;

use std::time::Duration;

use common::{Options, TestServer, json_of, token};
use object_helpers::{
    b64, call, download, enc, journal, md5_hex, names, random_bytes, raw_request, row, sha256_hex,
    stored_files, upload,
};
use reqwest::Method;
use reqwest::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RANGE,
};
use serde_json::{Value, json};

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Asserts an error body: the real status, repeated as text, and the S3-style code.
fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["statusCode"], want_status.to_string(), "{body}");
    assert_eq!(body["code"], want_code, "{body}");
}

async fn server_with_bucket(bucket: &str) -> (TestServer, String) {
    let server = TestServer::start().await;
    server.create_bucket(bucket, false).await;
    let key = server.service_key();
    (server, key)
}

async fn create_bucket_with(server: &TestServer, body: Value) {
    let (status, answer) = json_of(
        call(server, Method::POST, "/bucket", Some(&server.service_key()))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

async fn info(server: &TestServer, key: &str, bucket: &str, name: &str) -> (u16, Value) {
    json_of(
        call(
            server,
            Method::GET,
            &format!("/object/info/{bucket}/{}", enc(name)),
            Some(key),
        )
        .send()
        .await
        .unwrap(),
    )
    .await
}

async fn post_json(server: &TestServer, key: &str, path: &str, body: Value) -> (u16, Value) {
    json_of(
        call(server, Method::POST, path, Some(key))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_raw_upload_answers_id_and_key_and_a_second_one_conflicts() {
    let (server, key) = server_with_bucket("docs").await;

    let (status, body) = upload(&server, &key, "docs", "a/b.txt", "first", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "docs/a/b.txt");
    let stored = row(&server, "docs", "a/b.txt").await.unwrap();
    assert_eq!(body["Id"], stored.id.to_string());

    let (status, body) = upload(&server, &key, "docs", "a/b.txt", "second", false).await;
    // Supabase Storage's code for an existing object key (storage-js exposes it as error.code).
    assert_error(status, &body, 409, "KeyAlreadyExists");
    assert_eq!(
        body["error"], "Duplicate",
        "storage3 reads this field as its code"
    );
    assert_eq!(download(&server, &key, "docs", "a/b.txt").await.1, b"first");

    let (status, body) = upload(&server, &key, "docs", "a/b.txt", "third", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Id"], stored.id.to_string(), "an upsert keeps the row");
    assert_eq!(download(&server, &key, "docs", "a/b.txt").await.1, b"third");
}

#[tokio::test]
async fn put_replaces_an_object_and_creates_a_missing_one() {
    let (server, key) = server_with_bucket("docs").await;
    upload(&server, &key, "docs", "x.txt", "old", false).await;

    let put = |name: &'static str, body: &'static str| {
        call(
            &server,
            Method::PUT,
            &format!("/object/docs/{name}"),
            Some(&key),
        )
        .body(body)
        .send()
    };
    let (status, body) = json_of(put("x.txt", "new").await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "docs/x.txt");
    assert_eq!(download(&server, &key, "docs", "x.txt").await.1, b"new");

    let (status, body) = json_of(put("fresh.txt", "made by PUT").await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        download(&server, &key, "docs", "fresh.txt").await.1,
        b"made by PUT"
    );
}

#[tokio::test]
async fn an_upload_into_a_missing_bucket_is_404_no_such_bucket() {
    let server = TestServer::start().await;
    let (status, body) = upload(&server, &server.service_key(), "nope", "a.txt", "x", false).await;
    assert_error(status, &body, 404, "NoSuchBucket");
    assert_eq!(stored_files(&server).await, 0);
    assert!(journal(&server).await.is_empty());
}

#[tokio::test]
async fn a_multipart_form_carries_cache_control_metadata_and_an_unnamed_file_part() {
    let (server, key) = server_with_bucket("forms").await;
    let data = random_bytes(5000, 1);
    let form = reqwest::multipart::Form::new()
        .text("cacheControl", "60")
        .text("metadata", r#"{"a":1}"#)
        .part("", reqwest::multipart::Part::bytes(data.clone()));
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/forms/blob.bin", Some(&key))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "forms/blob.bin");

    let stored = row(&server, "forms", "blob.bin").await.unwrap();
    assert_eq!(stored.metadata["cacheControl"], "max-age=60");
    assert_eq!(stored.metadata["size"], 5000);
    assert_eq!(stored.user_metadata, Some(json!({"a": 1})));
    assert_eq!(download(&server, &key, "forms", "blob.bin").await.1, data);
}

#[tokio::test]
async fn a_multipart_file_part_named_file_brings_its_own_content_type() {
    let (server, key) = server_with_bucket("forms").await;
    let part = reqwest::multipart::Part::bytes(b"\x89PNG not really".to_vec())
        .file_name("picture")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/forms/picture", Some(&key))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let stored = row(&server, "forms", "picture").await.unwrap();
    assert_eq!(stored.metadata["mimetype"], "image/png");
    assert_eq!(stored.metadata["cacheControl"], "no-cache");
    assert_eq!(
        download(&server, &key, "forms", "picture").await.1,
        b"\x89PNG not really"
    );
}

#[tokio::test]
async fn content_type_cache_control_and_x_metadata_headers_are_stored() {
    let (server, key) = server_with_bucket("docs").await;
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/docs/table", Some(&key))
            .header(CONTENT_TYPE, "text/csv")
            .header(CACHE_CONTROL, "max-age=3600")
            .header("x-metadata", b64(r#"{"k":"v","n":[1,2]}"#))
            .body("a,b\n1,2\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let stored = row(&server, "docs", "table").await.unwrap();
    assert_eq!(stored.metadata["mimetype"], "text/csv");
    assert_eq!(stored.metadata["cacheControl"], "max-age=3600");
    assert_eq!(stored.user_metadata, Some(json!({"k": "v", "n": [1, 2]})));
}

#[tokio::test]
async fn x_metadata_that_is_not_base64_is_400_and_stores_nothing() {
    let (server, key) = server_with_bucket("docs").await;
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/docs/a.txt", Some(&key))
            .header("x-metadata", "{not base64!}")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["statusCode"], "400");
    assert!(
        body["message"].as_str().unwrap().contains("base64"),
        "{body}"
    );
    assert!(row(&server, "docs", "a.txt").await.is_none());
    assert_eq!(stored_files(&server).await, 0);
}

#[tokio::test]
async fn the_server_writes_size_type_etag_and_sha256_and_the_owner_from_the_token() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server
        .db
        .sql(
            "create policy anything on storage.objects for all to authenticated \
             using (true) with check (true);",
        )
        .await;
    let user = server.user_key("user-1");
    let data = random_bytes(70_000, 2);
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);

    // Everything the client might try to say about owner and system metadata is ignored.
    let forged = r#"{"size":1,"eTag":"\"forged\"","owner_id":"mallory"}"#;
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/object/docs/u/data.bin",
            Some(&user),
        )
        .header("x-owner-id", "mallory")
        .header("x-owner", "mallory")
        .header("owner_id", "mallory")
        .header("x-metadata", b64(forged))
        .body(data.clone())
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let stored = row(&server, "docs", "u/data.bin").await.unwrap();
    assert_eq!(stored.owner_id.as_deref(), Some("user-1"));
    let m = &stored.metadata;
    assert_eq!(m["size"], 70_000);
    assert_eq!(m["contentLength"], 70_000);
    assert_eq!(m["mimetype"], "application/octet-stream");
    assert_eq!(m["cacheControl"], "no-cache");
    assert_eq!(m["eTag"], format!("\"{}\"", md5_hex(&data)));
    assert_eq!(m["sha256"], sha256_hex(&data));
    let modified: chrono::DateTime<chrono::Utc> =
        m["lastModified"].as_str().unwrap().parse().unwrap();
    assert!(modified > before && modified < chrono::Utc::now(), "{m}");
    // The forged values are the client's own metadata, nothing more.
    assert_eq!(
        stored.user_metadata,
        Some(serde_json::from_str::<Value>(forged).unwrap())
    );

    // The same through a multipart form with forged fields before the file part.
    let form = reqwest::multipart::Form::new()
        .text("owner_id", "mallory")
        .text("owner", "mallory")
        .text("eTag", "\"forged\"")
        .part("file", reqwest::multipart::Part::bytes(b"form".to_vec()));
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/object/docs/u/form.bin",
            Some(&user),
        )
        .multipart(form)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let stored = row(&server, "docs", "u/form.bin").await.unwrap();
    assert_eq!(stored.owner_id.as_deref(), Some("user-1"));
    assert_eq!(stored.metadata["eTag"], format!("\"{}\"", md5_hex(b"form")));
    assert_eq!(stored.user_metadata, None);
}

#[tokio::test]
async fn a_service_upload_without_sub_has_no_owner() {
    let (server, key) = server_with_bucket("docs").await;
    upload(&server, &key, "docs", "a", "x", false).await;
    assert_eq!(row(&server, "docs", "a").await.unwrap().owner_id, None);
    let with_sub = token("service_role", Some("robot"));
    upload(&server, &with_sub, "docs", "b", "x", false).await;
    assert_eq!(
        row(&server, "docs", "b").await.unwrap().owner_id.as_deref(),
        Some("robot")
    );
}

#[tokio::test]
async fn content_type_comes_from_the_request_else_the_extension_else_octet_stream() {
    let (server, key) = server_with_bucket("docs").await;
    let send = |name: &'static str, content_type: Option<&'static str>| {
        let mut request = call(
            &server,
            Method::POST,
            &format!("/object/docs/{name}"),
            Some(&key),
        )
        .body("x");
        if let Some(t) = content_type {
            request = request.header(CONTENT_TYPE, t);
        }
        request.send()
    };
    assert_eq!(
        send("given.png", Some("text/csv")).await.unwrap().status(),
        200
    );
    assert_eq!(send("guessed.png", None).await.unwrap().status(), 200);
    assert_eq!(send("no-extension", None).await.unwrap().status(), 200);
    let mimetype = |name: &'static str| {
        let server = &server;
        async move { row(server, "docs", name).await.unwrap().metadata["mimetype"].clone() }
    };
    assert_eq!(mimetype("given.png").await, "text/csv");
    assert_eq!(mimetype("guessed.png").await, "image/png");
    assert_eq!(mimetype("no-extension").await, "application/octet-stream");
}

// ---------------------------------------------------------------------------------------------
// Downloads
// ---------------------------------------------------------------------------------------------

const BIG: usize = 300 * 1024 + 17;

async fn server_with_big_object() -> (TestServer, String, Vec<u8>) {
    let (server, key) = server_with_bucket("media").await;
    let data = random_bytes(BIG, 3);
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/object/media/dir/big.bin",
            Some(&key),
        )
        .header(CACHE_CONTROL, "max-age=120")
        .body(data.clone())
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (server, key, data)
}

#[tokio::test]
async fn both_download_routes_return_the_exact_bytes_with_http_headers() {
    let (server, key, data) = server_with_big_object().await;
    for path in [
        "/object/authenticated/media/dir/big.bin",
        "/object/media/dir/big.bin",
    ] {
        let response = call(&server, Method::GET, path, Some(&key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, CONTENT_TYPE), "application/octet-stream");
        assert_eq!(header(&response, CONTENT_LENGTH), BIG.to_string());
        assert_eq!(header(&response, ETAG), format!("\"{}\"", md5_hex(&data)));
        assert_eq!(header(&response, CACHE_CONTROL), "max-age=120");
        assert_eq!(header(&response, ACCEPT_RANGES), "bytes");
        let modified = httpdate::parse_http_date(&header(&response, LAST_MODIFIED)).unwrap();
        let age = std::time::SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default();
        assert!(age < Duration::from_secs(60), "Last-Modified {modified:?}");
        let body = response.bytes().await.unwrap();
        assert!(body == data, "{path}: the body differs from the upload");
    }
}

#[tokio::test]
async fn a_range_request_gets_206_and_exactly_those_bytes() {
    let (server, key, data) = server_with_big_object().await;
    let ranged = |range: String| {
        call(
            &server,
            Method::GET,
            "/object/authenticated/media/dir/big.bin",
            Some(&key),
        )
        .header(RANGE, range)
        .send()
    };

    let response = ranged("bytes=10-19".into()).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        header(&response, CONTENT_RANGE),
        format!("bytes 10-19/{BIG}")
    );
    assert_eq!(header(&response, CONTENT_LENGTH), "10");
    assert_eq!(response.bytes().await.unwrap(), &data[10..20]);

    let response = ranged("bytes=-5".into()).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        header(&response, CONTENT_RANGE),
        format!("bytes {}-{}/{BIG}", BIG - 5, BIG - 1)
    );
    assert_eq!(response.bytes().await.unwrap(), &data[BIG - 5..]);

    let response = ranged(format!("bytes={BIG}-")).await.unwrap();
    assert_eq!(header(&response, CONTENT_RANGE), format!("bytes */{BIG}"));
    let (status, body) = json_of(response).await;
    assert_error(status, &body, 416, "InvalidRange");
}

#[tokio::test]
async fn a_current_etag_or_date_gets_304() {
    let (server, key, _) = server_with_big_object().await;
    let path = "/object/authenticated/media/dir/big.bin";
    let first = call(&server, Method::GET, path, Some(&key))
        .send()
        .await
        .unwrap();
    let etag = header(&first, ETAG);
    let modified = header(&first, LAST_MODIFIED);

    let response = call(&server, Method::GET, path, Some(&key))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(header(&response, ETAG), etag);
    assert!(response.bytes().await.unwrap().is_empty());

    let response = call(&server, Method::GET, path, Some(&key))
        .header(IF_MODIFIED_SINCE, &modified)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);

    // A stale validator gets the object.
    let response = call(&server, Method::GET, path, Some(&key))
        .header(IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = call(&server, Method::GET, path, Some(&key))
        .header(IF_MODIFIED_SINCE, "Mon, 01 Jan 2001 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_download_query_asks_for_an_attachment() {
    let (server, key, _) = server_with_big_object().await;
    let response = call(
        &server,
        Method::GET,
        "/object/authenticated/media/dir/big.bin?download",
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let disposition = header(&response, CONTENT_DISPOSITION);
    assert!(
        disposition.starts_with("attachment;") && disposition.contains("filename=\"big.bin\""),
        "{disposition}"
    );

    let response = call(
        &server,
        Method::GET,
        &format!(
            "/object/authenticated/media/dir/big.bin?download={}",
            enc("отчёт.pdf")
        ),
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    let disposition = header(&response, CONTENT_DISPOSITION);
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf"),
        "{disposition}"
    );

    // Without the query the browser may show it inline.
    let response = call(
        &server,
        Method::GET,
        "/object/authenticated/media/dir/big.bin",
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    assert!(response.headers().get(CONTENT_DISPOSITION).is_none());
}

#[tokio::test]
async fn head_answers_headers_only() {
    let (server, key, data) = server_with_big_object().await;
    for path in [
        "/object/authenticated/media/dir/big.bin",
        "/object/media/dir/big.bin",
    ] {
        let response = call(&server, Method::HEAD, path, Some(&key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, CONTENT_LENGTH), BIG.to_string(), "{path}");
        assert_eq!(header(&response, ETAG), format!("\"{}\"", md5_hex(&data)));
        assert_eq!(header(&response, CONTENT_TYPE), "application/octet-stream");
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let response = call(&server, Method::HEAD, "/object/media/nothing", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn info_describes_the_object_and_a_missing_one_is_404_no_such_key() {
    let (server, key) = server_with_bucket("docs").await;
    let (_, uploaded) = json_of(
        call(&server, Method::POST, "/object/docs/a/b.json", Some(&key))
            .header("x-metadata", b64(r#"{"color":"red"}"#))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    upload(&server, &key, "docs", "plain", "12345", false).await;

    let (status, body) = info(&server, &key, "docs", "a/b.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], uploaded["Id"]);
    assert_eq!(body["name"], "a/b.json");
    assert_eq!(body["bucket_id"], "docs");
    assert_eq!(body["size"], 2);
    assert_eq!(body["content_type"], "application/json");
    assert_eq!(body["etag"], format!("\"{}\"", md5_hex(b"{}")));
    assert_eq!(body["metadata"], json!({"color": "red"}));
    for field in ["last_modified", "created_at"] {
        let text = body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {body}"));
        text.parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap_or_else(|e| panic!("{field} {text}: {e}"));
    }

    let (_, body) = info(&server, &key, "docs", "plain").await;
    assert_eq!(
        body["metadata"],
        json!({}),
        "no user metadata reads as {{}}"
    );
    assert_eq!(body["size"], 5);

    let (status, body) = info(&server, &key, "docs", "missing").await;
    assert_error(status, &body, 404, "NoSuchKey");
    assert_eq!(body["error"], "not_found");
    let (status, body) = json_of(
        call(
            &server,
            Method::GET,
            "/object/authenticated/docs/missing",
            Some(&key),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_error(status, &body, 404, "NoSuchKey");
}

#[tokio::test]
async fn stored_html_is_served_sandboxed_as_an_attachment_that_must_not_be_sniffed() {
    let (server, key) = server_with_bucket("docs").await;
    let (status, _) = json_of(
        call(&server, Method::POST, "/object/docs/page.html", Some(&key))
            .header(CONTENT_TYPE, "text/html")
            .body("<script>alert(1)</script>")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        row(&server, "docs", "page.html").await.unwrap().metadata["mimetype"],
        "text/html",
        "the stored type is kept"
    );
    let response = call(
        &server,
        Method::GET,
        "/object/authenticated/docs/page.html",
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    // The type comes back as uploaded (clients read it); the browser gets a sandboxed download.
    assert_eq!(header(&response, CONTENT_TYPE), "text/html");
    assert_eq!(header(&response, "content-security-policy"), "sandbox");
    assert!(header(&response, CONTENT_DISPOSITION).starts_with("attachment"));
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
}

// ---------------------------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_an_object_makes_it_404() {
    let (server, key) = server_with_bucket("docs").await;
    upload(&server, &key, "docs", "a/b.txt", "x", false).await;
    let (status, body) = json_of(
        call(&server, Method::DELETE, "/object/docs/a/b.txt", Some(&key))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"message": "Successfully deleted"}));
    assert_eq!(download(&server, &key, "docs", "a/b.txt").await.0, 404);

    let (status, body) = json_of(
        call(&server, Method::DELETE, "/object/docs/a/b.txt", Some(&key))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 404, "NoSuchKey");
}

#[tokio::test]
async fn bulk_delete_returns_the_deleted_rows_and_skips_missing_names() {
    let (server, key) = server_with_bucket("docs").await;
    for name in ["a", "b", "keep"] {
        upload(&server, &key, "docs", name, name, false).await;
    }
    let (status, body) = json_of(
        call(&server, Method::DELETE, "/object/docs", Some(&key))
            .json(&json!({"prefixes": ["a", "b", "missing"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut deleted: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["a", "b"]);
    assert_eq!(body[0]["bucket_id"], "docs");
    assert_eq!(names(&server, "docs").await, ["keep"]);
}

#[tokio::test]
async fn bulk_delete_refuses_more_than_1000_names() {
    let (server, key) = server_with_bucket("docs").await;
    upload(&server, &key, "docs", "n0", "x", false).await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("n{i}")).collect();
    let (status, body) = json_of(
        call(&server, Method::DELETE, "/object/docs", Some(&key))
            .json(&json!({ "prefixes": too_many }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("1000"), "{body}");
    assert_eq!(names(&server, "docs").await, ["n0"]);

    let just_enough: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
    let (status, body) = json_of(
        call(&server, Method::DELETE, "/object/docs", Some(&key))
            .json(&json!({ "prefixes": just_enough }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Move and copy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn move_renames_the_row_and_leaves_the_bytes_where_they_are() {
    let (server, key) = server_with_bucket("docs").await;
    let data = random_bytes(10_000, 4);
    upload(&server, &key, "docs", "from/a.bin", data.clone(), false).await;
    let before = row(&server, "docs", "from/a.bin").await.unwrap();
    let files = stored_files(&server).await;

    let (status, body) = post_json(
        &server,
        &key,
        "/object/move",
        json!({"bucketId": "docs", "sourceKey": "from/a.bin", "destinationKey": "to/b.bin"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Successfully moved");

    assert!(row(&server, "docs", "from/a.bin").await.is_none());
    let after = row(&server, "docs", "to/b.bin").await.unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!(after.version, before.version, "the byte key is unchanged");
    assert_eq!(stored_files(&server).await, files, "no bytes were copied");
    assert!(journal(&server).await.is_empty());
    assert_eq!(download(&server, &key, "docs", "to/b.bin").await.1, data);
    assert_eq!(download(&server, &key, "docs", "from/a.bin").await.0, 404);
}

#[tokio::test]
async fn move_refuses_an_existing_destination_a_missing_source_and_a_bad_name() {
    let (server, key) = server_with_bucket("docs").await;
    upload(&server, &key, "docs", "a", "aaa", false).await;
    upload(&server, &key, "docs", "b", "bbb", false).await;
    let mv = |source: &'static str, destination: &'static str| {
        post_json(
            &server,
            &key,
            "/object/move",
            json!({"bucketId": "docs", "sourceKey": source, "destinationKey": destination}),
        )
    };

    let (status, body) = mv("a", "b").await;
    assert_error(status, &body, 409, "ResourceAlreadyExists");
    let (status, body) = mv("missing", "c").await;
    assert_error(status, &body, 404, "NoSuchKey");
    let (status, body) = mv("a", "x/../b").await;
    assert_error(status, &body, 400, "InvalidKey");
    assert!(body["message"].as_str().unwrap().contains("'..'"), "{body}");

    assert_eq!(names(&server, "docs").await, ["a", "b"]);
    assert_eq!(download(&server, &key, "docs", "a").await.1, b"aaa");
    assert_eq!(download(&server, &key, "docs", "b").await.1, b"bbb");
}

#[tokio::test]
async fn move_crosses_buckets_with_destination_bucket() {
    let (server, key) = server_with_bucket("one").await;
    server.create_bucket("two", false).await;
    upload(&server, &key, "one", "a.txt", "travels", false).await;
    let version = row(&server, "one", "a.txt").await.unwrap().version;

    let (status, body) = post_json(
        &server,
        &key,
        "/object/move",
        json!({"bucketId": "one", "sourceKey": "a.txt",
               "destinationBucket": "two", "destinationKey": "b.txt"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(names(&server, "one").await.is_empty());
    assert_eq!(row(&server, "two", "b.txt").await.unwrap().version, version);
    assert_eq!(download(&server, &key, "two", "b.txt").await.1, b"travels");

    let (status, body) = post_json(
        &server,
        &key,
        "/object/move",
        json!({"bucketId": "two", "sourceKey": "b.txt",
               "destinationBucket": "nowhere", "destinationKey": "b.txt"}),
    )
    .await;
    assert_error(status, &body, 404, "NoSuchBucket");
}

#[tokio::test]
async fn copy_writes_new_bytes_with_the_same_content_and_user_metadata() {
    let (server, key) = server_with_bucket("docs").await;
    server.create_bucket("other", false).await;
    let data = random_bytes(20_000, 5);
    call(&server, Method::POST, "/object/docs/src.bin", Some(&key))
        .header("x-metadata", b64(r#"{"tag":"original"}"#))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let source = row(&server, "docs", "src.bin").await.unwrap();

    let (status, body) = post_json(
        &server,
        &key,
        "/object/copy",
        json!({"bucketId": "docs", "sourceKey": "src.bin", "destinationKey": "dst.bin"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "docs/dst.bin");
    let copy = row(&server, "docs", "dst.bin").await.unwrap();
    assert_ne!(copy.id, source.id);
    assert_ne!(
        copy.version, source.version,
        "the copy has its own byte key"
    );
    assert_eq!(copy.user_metadata, Some(json!({"tag": "original"})));
    assert_eq!(copy.metadata["eTag"], source.metadata["eTag"]);
    assert_eq!(download(&server, &key, "docs", "dst.bin").await.1, data);
    assert!(journal(&server).await.is_empty());

    // Deleting the source leaves the copy whole, even after the collector ran.
    call(&server, Method::DELETE, "/object/docs/src.bin", Some(&key))
        .send()
        .await
        .unwrap();
    server
        .storage
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(download(&server, &key, "docs", "dst.bin").await.1, data);

    // Into another bucket.
    let (status, body) = post_json(
        &server,
        &key,
        "/object/copy",
        json!({"bucketId": "docs", "sourceKey": "dst.bin",
               "destinationBucket": "other", "destinationKey": "c.bin"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "other/c.bin");
    assert_eq!(download(&server, &key, "other", "c.bin").await.1, data);
}

#[tokio::test]
async fn copy_without_copy_metadata_takes_user_metadata_from_the_header() {
    let (server, key) = server_with_bucket("docs").await;
    call(&server, Method::POST, "/object/docs/src", Some(&key))
        .header("x-metadata", b64(r#"{"tag":"original"}"#))
        .body("x")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/copy", Some(&key))
            .header("x-metadata", b64(r#"{"tag":"fresh"}"#))
            .json(&json!({"bucketId": "docs", "sourceKey": "src",
                          "destinationKey": "dst", "copyMetadata": false}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        row(&server, "docs", "dst").await.unwrap().user_metadata,
        Some(json!({"tag": "fresh"}))
    );
    assert_eq!(
        row(&server, "docs", "src").await.unwrap().user_metadata,
        Some(json!({"tag": "original"}))
    );
}

#[tokio::test]
async fn copy_onto_an_existing_name_needs_x_upsert() {
    let (server, key) = server_with_bucket("docs").await;
    upload(&server, &key, "docs", "src", "new content", false).await;
    upload(&server, &key, "docs", "dst", "old content", false).await;
    let body = json!({"bucketId": "docs", "sourceKey": "src", "destinationKey": "dst"});

    let (status, answer) = post_json(&server, &key, "/object/copy", body.clone()).await;
    assert_error(status, &answer, 409, "ResourceAlreadyExists");
    assert_eq!(
        download(&server, &key, "docs", "dst").await.1,
        b"old content"
    );

    let (status, answer) = json_of(
        call(&server, Method::POST, "/object/copy", Some(&key))
            .header("x-upsert", "true")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        download(&server, &key, "docs", "dst").await.1,
        b"new content"
    );

    let (status, answer) = post_json(
        &server,
        &key,
        "/object/copy",
        json!({"bucketId": "docs", "sourceKey": "missing", "destinationKey": "z"}),
    )
    .await;
    assert_error(status, &answer, 404, "NoSuchKey");
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// Nothing of a refused upload survives: no row, no bytes, no journal entry.
async fn assert_nothing_stored(server: &TestServer, bucket: &str, name: &str) {
    assert!(
        row(server, bucket, name).await.is_none(),
        "a row for {name}"
    );
    assert_eq!(stored_files(server).await, 0, "bytes left for {name}");
    assert_eq!(journal(server).await, vec![], "journal entries for {name}");
}

/// POSTs `body` (e.g. a [`chunked`] one, sent without Content-Length) to `path`.
async fn post_body(
    server: &TestServer,
    key: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    json_of(
        call(server, Method::POST, path, Some(key))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn chunked(data: Vec<u8>, chunk: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn a_bucket_size_limit_refuses_larger_uploads_declared_or_streamed() {
    let server = TestServer::start().await;
    let key = server.service_key();
    create_bucket_with(&server, json!({"name": "small", "file_size_limit": 1000})).await;

    let (status, body) = upload(&server, &key, "small", "big", vec![7u8; 1001], false).await;
    assert_error(status, &body, 413, "EntityTooLarge");
    assert_nothing_stored(&server, "small", "big").await;

    // No Content-Length: the limit is found while streaming, and the staged key is discarded.
    let (status, body) = post_body(
        &server,
        &key,
        "/object/small/big",
        chunked(vec![7u8; 1001], 100),
    )
    .await;
    assert_error(status, &body, 413, "EntityTooLarge");
    assert_nothing_stored(&server, "small", "big").await;

    let (status, body) = post_body(
        &server,
        &key,
        "/object/small/exact",
        chunked(vec![7u8; 1000], 100),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        row(&server, "small", "exact").await.unwrap().metadata["size"],
        1000
    );
}

#[tokio::test]
async fn the_server_wide_max_file_size_refuses_larger_uploads() {
    let server = TestServer::start_with(Options {
        max_file_size: 4096,
        ..Options::default()
    })
    .await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();

    let (status, body) = upload(&server, &key, "docs", "big", vec![1u8; 4097], false).await;
    assert_error(status, &body, 413, "EntityTooLarge");
    let (status, body) = post_body(
        &server,
        &key,
        "/object/docs/big",
        chunked(vec![1u8; 5000], 1000),
    )
    .await;
    assert_error(status, &body, 413, "EntityTooLarge");
    assert_nothing_stored(&server, "docs", "big").await;

    let (status, body) = upload(&server, &key, "docs", "fits", vec![1u8; 4096], false).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn allowed_mime_types_refuse_other_types_with_415() {
    let server = TestServer::start().await;
    let key = server.service_key();
    create_bucket_with(
        &server,
        json!({"name": "images", "allowed_mime_types": ["image/*"]}),
    )
    .await;
    let send = |name: &'static str, content_type: &'static str| {
        call(
            &server,
            Method::POST,
            &format!("/object/images/{name}"),
            Some(&key),
        )
        .header(CONTENT_TYPE, content_type)
        .body("bytes")
        .send()
    };
    let (status, body) = json_of(send("notes.txt", "text/plain").await.unwrap()).await;
    assert_error(status, &body, 415, "InvalidMimeType");
    assert_nothing_stored(&server, "images", "notes.txt").await;

    let (status, body) = json_of(send("pic.png", "image/png").await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    // The extension counts when no type is sent.
    let (status, body) = upload(&server, &key, "images", "guess.txt", "x", false).await;
    assert_error(status, &body, 415, "InvalidMimeType");
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_names_are_refused_naming_the_rule_and_nothing_is_stored() {
    let (server, key) = server_with_bucket("docs").await;
    let long = "x".repeat(1025);
    let cases: [(&str, &str); 8] = [
        ("..", "'..'"),
        ("a/../b", "'..'"),
        ("./a", "'.'"),
        ("a//b", "'//'"),
        ("a/", "end with '/'"),
        ("a%00b", "U+0000"),
        ("a%01b", "U+0001"),
        (&long, "1024"),
    ];
    for (path, rule) in cases {
        // Sent raw: HTTP clients would resolve the dot segments before sending.
        let (status, text) = raw_request(
            &server,
            "POST",
            &format!("/object/docs/{path}"),
            Some(&key),
            b"hello",
        )
        .await;
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        assert_error(status, &body, 400, "InvalidKey");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(rule), "{path}: {message}");
    }
    assert!(names(&server, "docs").await.is_empty());
    assert_eq!(stored_files(&server).await, 0);
    assert!(journal(&server).await.is_empty());

    // The longest allowed name is fine.
    let (status, body) = upload(&server, &key, "docs", &"x".repeat(1024), "ok", false).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn unicode_names_work_end_to_end() {
    let (server, key) = server_with_bucket("docs").await;
    let name = "фото/снимок 😀.png";
    let (status, body) = upload(&server, &key, "docs", name, "pixels", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], format!("docs/{name}"));
    assert_eq!(names(&server, "docs").await, [name]);

    let (status, body) = info(&server, &key, "docs", name).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], name);
    assert_eq!(body["content_type"], "image/png");
    assert_eq!(download(&server, &key, "docs", name).await.1, b"pixels");

    let (status, body) = json_of(
        call(
            &server,
            Method::DELETE,
            &format!("/object/docs/{}", enc(name)),
            Some(&key),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(names(&server, "docs").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Bytes behind rows
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_emptied_bucket_can_be_deleted_and_the_collector_frees_every_byte() {
    let (server, key) = server_with_bucket("docs").await;
    for i in 0..5 {
        upload(
            &server,
            &key,
            "docs",
            &format!("f{i}"),
            random_bytes(1000, i),
            false,
        )
        .await;
    }
    assert_eq!(stored_files(&server).await, 5);

    let (status, body) = json_of(
        call(&server, Method::DELETE, "/bucket/docs", Some(&key))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409, "a bucket with objects is not deleted: {body}");

    let (status, body) = json_of(
        call(&server, Method::POST, "/bucket/docs/empty", Some(&key))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = json_of(
        call(&server, Method::DELETE, "/bucket/docs", Some(&key))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    if matches!(server.store, common::TestStore::Postgres { .. }) {
        // In the database the chunks went with their rows, in the same transaction: nothing is
        // left for the collector.
        assert_eq!(stored_files(&server).await, 0);
        assert!(journal(&server).await.is_empty());
        return;
    }
    let released = journal(&server).await;
    assert_eq!(released.len(), 5, "{released:?}");
    assert!(released.iter().all(|(_, state)| state == "released"));
    let report = server
        .storage
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.freed, 5);
    assert_eq!(stored_files(&server).await, 0);
    assert!(journal(&server).await.is_empty());
}

#[tokio::test]
async fn an_overwrite_releases_the_old_bytes_for_the_collector() {
    let (server, key) = server_with_bucket("docs").await;
    upload(&server, &key, "docs", "doc", "version one", false).await;
    let old = row(&server, "docs", "doc").await.unwrap().version.unwrap();
    upload(&server, &key, "docs", "doc", "version two", true).await;
    let new = row(&server, "docs", "doc").await.unwrap().version.unwrap();
    assert_ne!(old, new);

    assert_eq!(
        journal(&server).await,
        [(old.clone(), "released".to_string())]
    );
    assert!(server.key_exists(&old).await, "kept for in-flight readers");

    // A grace period keeps the old bytes.
    let report = server
        .storage
        .collect_garbage(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(report.freed, 0);
    assert!(server.key_exists(&old).await);

    server
        .storage
        .collect_garbage(Duration::ZERO)
        .await
        .unwrap();
    assert!(!server.key_exists(&old).await);
    assert!(server.key_exists(&new).await);
    assert_eq!(stored_files(&server).await, 1);
    assert!(journal(&server).await.is_empty());
    assert_eq!(
        download(&server, &key, "docs", "doc").await.1,
        b"version two"
    );
}

/// A refusal that comes before the body has been read (an existing key, a policy, a declared or
/// streamed size over the limit) reaches a client that is still sending a large body, rather
/// than the client seeing the connection close under it.
#[tokio::test]
async fn early_refusals_reach_a_client_still_sending_a_large_body() {
    let (server, key) = server_with_bucket("docs").await;
    create_bucket_with(&server, json!({"name": "small", "file_size_limit": 1000})).await;
    let (status, _) = upload(&server, &key, "docs", "taken", b"first".to_vec(), false).await;
    assert_eq!(status, 200);
    // Far more than loopback socket buffers hold, so the client is mid-send when refused.
    let big = vec![3u8; 16 << 20];

    let (status, body) = upload(&server, &key, "docs", "taken", big.clone(), false).await;
    assert_error(status, &body, 409, "KeyAlreadyExists");
    let (status, body) = upload(&server, &key, "small", "big", big.clone(), false).await;
    assert_error(status, &body, 413, "EntityTooLarge");
    let (status, body) = post_body(
        &server,
        &key,
        "/object/small/streamed",
        chunked(big.clone(), 64 << 10),
    )
    .await;
    assert_error(status, &body, 413, "EntityTooLarge");
    let anon = server.anon_key();
    let (status, body) = upload(&server, &anon, "docs", "denied", big, false).await;
    assert_eq!(status, 403, "{body}");

    assert!(row(&server, "docs", "denied").await.is_none());
    assert!(row(&server, "small", "big").await.is_none());
}

/// The same at the socket: a client that sends its whole body before reading (as many HTTP/1.1
/// clients do) can finish sending and then read the refusal, because the server reads the rest
/// of the body instead of closing the connection under it.
#[tokio::test]
async fn a_refused_body_is_read_to_the_end_so_the_client_can_finish_sending() {
    let (server, key) = server_with_bucket("docs").await;
    let (status, _) = upload(&server, &key, "docs", "taken", b"first".to_vec(), false).await;
    assert_eq!(status, 200);
    let address = server.url.trim_start_matches("http://").to_string();
    let response = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let size = 16 << 20;
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            socket,
            "POST /object/docs/taken HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        )
        .unwrap();
        let chunk = vec![5u8; 64 << 10];
        for _ in 0..size / chunk.len() {
            socket
                .write_all(&chunk)
                .expect("the server closed the connection before the body was sent");
        }
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("KeyAlreadyExists") {
            let n = socket.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 409"), "{response}");
    assert!(response.contains("KeyAlreadyExists"), "{response}");
}

/// A client that stops sending in the middle of an upload is refused with 408 once the idle
/// limit has passed, and nothing it sent is kept; a slow but steady one is not refused.
#[tokio::test]
async fn a_stalled_upload_is_refused_with_408_and_leaves_nothing() {
    use futures::StreamExt;
    let server = TestServer::start_with(Options {
        body_idle_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();

    let stalled = futures::stream::iter([Ok::<_, std::io::Error>(vec![1u8; 1000])]).chain(
        futures::stream::once(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(vec![2u8; 10])
        }),
    );
    let started = std::time::Instant::now();
    let (status, body) = post_body(
        &server,
        &key,
        "/object/docs/stalled",
        reqwest::Body::wrap_stream(stalled),
    )
    .await;
    assert_error(status, &body, 408, "RequestTimeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused only after {:?}",
        started.elapsed()
    );
    assert_nothing_stored(&server, "docs", "stalled").await;

    let steady = futures::stream::iter(0..6).then(|_| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, std::io::Error>(vec![3u8; 100])
    });
    let (status, body) = post_body(
        &server,
        &key,
        "/object/docs/steady",
        reqwest::Body::wrap_stream(steady),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        row(&server, "docs", "steady").await.unwrap().metadata["size"],
        600
    );
}

/// A client that promises more bytes than it sends and then hangs up leaves nothing behind: no
/// row, no bytes, no journal entry; and the answer, if it can still read one, is a 400.
#[tokio::test]
async fn a_truncated_upload_leaves_nothing() {
    let (server, key) = server_with_bucket("docs").await;
    let address = server.url.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            socket,
            "POST /object/docs/cut-short HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n"
        )
        .unwrap();
        socket.write_all(&[9u8; 150_000]).unwrap();
        // Half-close: the server sees the body end early but can still answer.
        socket.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 400") && answer.contains("did not complete")),
        "{answer}"
    );
    // The server notices the missing bytes on its own time; give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !journal(&server).await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_nothing_stored(&server, "docs", "cut-short").await;
}

/// A client that asked for `100 Continue` and was refused before it sent anything is not kept
/// waiting for a body nobody will read: the refusal comes at once and the connection closes.
#[tokio::test]
async fn a_refused_expect_continue_upload_is_answered_and_closed_at_once() {
    let (server, key) = server_with_bucket("docs").await;
    let (status, _) = upload(&server, &key, "docs", "taken", b"first".to_vec(), false).await;
    assert_eq!(status, 200);
    let address = server.url.trim_start_matches("http://").to_string();
    let (answer, waited) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            socket,
            "POST /object/docs/taken HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\
             Expect: 100-continue\r\nContent-Length: 16777216\r\n\r\n"
        )
        .unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(
        waited < Duration::from_secs(5),
        "the connection stayed open {waited:?}"
    );
}
