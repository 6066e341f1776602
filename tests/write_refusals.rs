//! What a refused write tells its caller, and the destination bucket's rules on copy and move.
//!
//! Policy first: a caller that may not write a key gets one and the same 403 whether the key
//! exists or not, whether the bucket exists or not, and whatever the bucket's size limit and
//! types — on POST, PUT, upload signing and copy. A 409 stays for callers who may see the
//! object or whose insert would be allowed; 413 and 415 come only after the policies allowed
//! the write. Copy and move into a bucket meet its `file_size_limit` and `allowed_mime_types`
//! as an upload does.

mod common;
mod object_helpers;

use common::{TestServer, json_of};
use object_helpers::{call, download, enc, row, stored_files, upload};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
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

/// POST or PUT a raw body with a content type, as `key` (None: no credentials at all).
async fn send(
    server: &TestServer,
    method: Method,
    key: Option<&str>,
    bucket: &str,
    name: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    json_of(
        call(
            server,
            method,
            &format!("/object/{bucket}/{}", enc(name)),
            key,
        )
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap(),
    )
    .await
}

async fn sign_upload(
    server: &TestServer,
    key: Option<&str>,
    bucket: &str,
    name: &str,
    upsert: bool,
) -> (u16, Value) {
    let mut request = call(
        server,
        Method::POST,
        &format!("/object/upload/sign/{bucket}/{}", enc(name)),
        key,
    );
    if upsert {
        request = request.header("x-upsert", "true");
    }
    json_of(request.send().await.unwrap()).await
}

/// POST /object/copy or /object/move between buckets.
async fn transfer(
    server: &TestServer,
    route: &str,
    key: Option<&str>,
    from: (&str, &str),
    to: (&str, &str),
    upsert: bool,
) -> (u16, Value) {
    let mut request = call(server, Method::POST, &format!("/object/{route}"), key).json(&json!({
        "bucketId": from.0,
        "sourceKey": from.1,
        "destinationBucket": to.0,
        "destinationKey": to.1,
    }));
    if upsert {
        request = request.header("x-upsert", "true");
    }
    json_of(request.send().await.unwrap()).await
}

/// Bucket `docs` without rules and bucket `small` (at most 1000 bytes, images only).
async fn two_buckets() -> TestServer {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    create_bucket_with(
        &server,
        json!({"name": "small", "file_size_limit": 1000, "allowed_mime_types": ["image/*"]}),
    )
    .await;
    server
}

async fn put_as_service(server: &TestServer, bucket: &str, name: &str, kind: &str, len: usize) {
    let key = server.service_key();
    let (status, body) = send(
        server,
        Method::POST,
        Some(&key),
        bucket,
        name,
        kind,
        vec![7u8; len],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------------------------------------
// Copy and move obey the destination bucket
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn copy_and_move_into_a_bucket_meet_its_size_limit_and_types() {
    let server = two_buckets().await;
    put_as_service(&server, "docs", "page.html", "text/html", 5000).await;
    put_as_service(&server, "docs", "note.html", "text/html", 10).await;
    put_as_service(&server, "docs", "photo.png", "image/png", 5000).await;
    put_as_service(&server, "docs", "icon.png", "image/png", 100).await;
    put_as_service(&server, "docs", "logo.png", "image/png", 100).await;
    put_as_service(&server, "small", "taken.png", "image/png", 5).await;
    let service = server.service_key();
    let me = Some(service.as_str());
    let files = stored_files(&server).await;

    for route in ["copy", "move"] {
        let (status, body) = transfer(
            &server,
            route,
            me,
            ("docs", "page.html"),
            ("small", "x"),
            false,
        )
        .await;
        assert_error(status, &body, 413, "EntityTooLarge");
        let (status, body) = transfer(
            &server,
            route,
            me,
            ("docs", "photo.png"),
            ("small", "x"),
            false,
        )
        .await;
        assert_error(status, &body, 413, "EntityTooLarge");
        let (status, body) = transfer(
            &server,
            route,
            me,
            ("docs", "note.html"),
            ("small", "x"),
            false,
        )
        .await;
        assert_error(status, &body, 415, "InvalidMimeType");
        // A copy onto an existing object too (a move never replaces one).
        if route == "copy" {
            let (status, body) = transfer(
                &server,
                route,
                me,
                ("docs", "page.html"),
                ("small", "taken.png"),
                true,
            )
            .await;
            assert_error(status, &body, 413, "EntityTooLarge");
        }
        assert!(row(&server, "small", "x").await.is_none(), "{route}");
    }
    assert_eq!(
        download(&server, &service, "small", "taken.png").await.1,
        vec![7u8; 5]
    );
    // Every refused copy and move left the sources where they were and stored nothing.
    for name in ["page.html", "photo.png", "note.html"] {
        assert!(row(&server, "docs", name).await.is_some(), "{name}");
    }
    assert_eq!(
        download(&server, &service, "docs", "note.html")
            .await
            .1
            .len(),
        10
    );

    // What fits the rules lands.
    let (status, body) = transfer(
        &server,
        "copy",
        me,
        ("docs", "logo.png"),
        ("small", "a.png"),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = transfer(
        &server,
        "move",
        me,
        ("docs", "logo.png"),
        ("small", "b.png"),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        download(&server, &service, "small", "b.png").await.1,
        vec![7u8; 100]
    );
    assert!(row(&server, "docs", "logo.png").await.is_none());
    // One copy; the move took its bytes along.
    assert_eq!(stored_files(&server).await, files + 1);
}

// ---------------------------------------------------------------------------------------------
// Refusals that tell nothing
// ---------------------------------------------------------------------------------------------

/// `denied` as a refusal of `operation` names it (see docs/policies.md).
fn denied_for(denied: &Value, operation: &str) -> Value {
    let mut body = denied.clone();
    body["message"] = json!(format!(
        "new row violates row-level security policy (refused {operation} as role anon, no sub)"
    ));
    body
}

/// Anon may read `public/...`, nothing else, and write nothing.
const ANON_READS_PUBLIC: &str = "
    create policy anon_reads_public on storage.objects for select to anon
        using ((storage.foldername(name))[1] = 'public');
";

#[tokio::test]
async fn without_credentials_an_existing_and_a_missing_key_get_the_same_403() {
    let server = two_buckets().await;
    server.db.sql(ANON_READS_PUBLIC).await;
    put_as_service(&server, "docs", "taken.txt", "text/plain", 5).await;
    put_as_service(&server, "docs", "public/src.txt", "text/plain", 5).await;
    put_as_service(&server, "small", "taken.png", "image/png", 5).await;
    let files = stored_files(&server).await;

    let (status, denied) = send(
        &server,
        Method::POST,
        None,
        "docs",
        "missing.txt",
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_error(status, &denied, 403, "AccessDenied");
    // Each route names its operation (and a write both of its own: which one it is would
    // depend on whether the key exists); nothing else may differ.
    assert_eq!(
        denied["message"],
        "new row violates row-level security policy \
         (refused storage.upload or storage.overwrite as role anon, no sub)"
    );

    for (bucket, name) in [
        ("docs", "taken.txt"),
        ("docs", "missing.txt"),
        ("small", "taken.png"),
    ] {
        for method in [Method::POST, Method::PUT] {
            let (status, body) = send(
                &server,
                method.clone(),
                None,
                bucket,
                name,
                "text/plain",
                b"x".to_vec(),
            )
            .await;
            assert_eq!((status, &body), (403, &denied), "{method} {bucket}/{name}");
        }
        for upsert in [false, true] {
            let (status, body) = sign_upload(&server, None, bucket, name, upsert).await;
            assert_eq!(
                (status, &body),
                (403, &denied_for(&denied, "storage.sign_upload")),
                "sign {bucket}/{name} {upsert}"
            );
        }
        for upsert in [false, true] {
            let (status, body) = transfer(
                &server,
                "copy",
                None,
                ("docs", "public/src.txt"),
                (bucket, name),
                upsert,
            )
            .await;
            assert_eq!(
                (status, &body),
                (403, &denied_for(&denied, "storage.copy")),
                "copy to {bucket}/{name} {upsert}"
            );
        }
    }
    // Nor are the bucket's rules told: not by a body over the limit, nor by a declared length,
    // nor by a type the bucket refuses; nor whether the bucket exists.
    for (bucket, name, kind, len) in [
        ("small", "big.png", "image/png", 5000),
        ("small", "page.html", "text/html", 10),
        ("nope", "a.txt", "text/plain", 10),
    ] {
        for method in [Method::POST, Method::PUT] {
            let (status, body) = send(
                &server,
                method.clone(),
                None,
                bucket,
                name,
                kind,
                vec![1u8; len],
            )
            .await;
            assert_eq!((status, &body), (403, &denied), "{method} {bucket}/{name}");
        }
        let (status, body) = transfer(
            &server,
            "copy",
            None,
            ("docs", "public/src.txt"),
            (bucket, name),
            false,
        )
        .await;
        assert_eq!(
            (status, &body),
            (403, &denied_for(&denied, "storage.copy")),
            "copy to {bucket}/{name}"
        );
    }
    // A move out of public/ (which anon may change) is the same 403 wherever it goes.
    server
        .db
        .sql(
            "create policy anon_moves_public on storage.objects for update to anon
                 using ((storage.foldername(name))[1] = 'public')
                 with check ((storage.foldername(name))[1] = 'public');",
        )
        .await;
    for (bucket, name) in [
        ("docs", "taken.txt"),
        ("docs", "missing.txt"),
        ("nope", "a.txt"),
    ] {
        let (status, body) = transfer(
            &server,
            "move",
            None,
            ("docs", "public/src.txt"),
            (bucket, name),
            false,
        )
        .await;
        assert_eq!(
            (status, &body),
            (403, &denied_for(&denied, "storage.move")),
            "move to {bucket}/{name}"
        );
    }
    assert_eq!(stored_files(&server).await, files);
    assert_eq!(
        download(&server, &server.service_key(), "docs", "taken.txt")
            .await
            .1,
        vec![7u8; 5]
    );
    assert!(row(&server, "docs", "public/src.txt").await.is_some());
}

/// A declared Content-Length over the bucket's limit is not answered 413 before the policy:
/// the refusal is the same 403 as for a small body, and comes before the body is read.
#[tokio::test]
async fn a_declared_length_over_the_limit_is_403_to_a_caller_who_may_not_write() {
    let server = two_buckets().await;
    let anon = server.anon_key();
    let (status, small) = upload(&server, &anon, "small", "a.png", vec![1u8; 10], false).await;
    assert_error(status, &small, 403, "AccessDenied");
    // 16 MiB declared; far more than the server reads before answering.
    let (status, body) = upload(&server, &anon, "small", "a.png", vec![1u8; 16 << 20], false).await;
    assert_eq!((status, &body), (403, &small));
    // Once the policy allows the write, the limit is told.
    server
        .db
        .sql("create policy anon_writes on storage.objects for insert to anon with check (true)")
        .await;
    let (status, body) = upload(&server, &anon, "small", "a.png", vec![1u8; 5000], false).await;
    assert_error(status, &body, 413, "EntityTooLarge");
}

/// 409 stays for callers who may see the object, or whose insert would be allowed.
#[tokio::test]
async fn a_caller_who_may_see_or_insert_the_key_gets_409() {
    let server = two_buckets().await;
    server
        .db
        .sql(
            "create policy read_all on storage.objects for select to authenticated
                 using (auth.uid() = 'reader');
             create policy write_own on storage.objects for insert to authenticated
                 with check ((storage.foldername(name))[1] = auth.uid());",
        )
        .await;
    put_as_service(&server, "docs", "writer/a.txt", "text/plain", 5).await;
    put_as_service(&server, "docs", "src.txt", "text/plain", 5).await;
    let reader = server.user_key("reader");
    let writer = server.user_key("writer");
    let stranger = server.user_key("stranger");

    // The reader sees the object and may write nothing: 409 for it.
    let (status, body) = upload(&server, &reader, "docs", "writer/a.txt", "x", false).await;
    assert_error(status, &body, 409, "KeyAlreadyExists");
    let (status, body) = sign_upload(&server, Some(&reader), "docs", "writer/a.txt", false).await;
    assert_error(status, &body, 409, "ResourceAlreadyExists");
    let (status, body) = transfer(
        &server,
        "copy",
        Some(&reader),
        ("docs", "src.txt"),
        ("docs", "writer/a.txt"),
        false,
    )
    .await;
    assert_error(status, &body, 409, "ResourceAlreadyExists");
    // But may not overwrite it: 403, as for a key it could not see.
    let (status, body) = upload(&server, &reader, "docs", "writer/a.txt", "x", true).await;
    assert_error(status, &body, 403, "AccessDenied");

    // The writer cannot see it, but its insert would be allowed: 409.
    let (status, body) = upload(&server, &writer, "docs", "writer/a.txt", "x", false).await;
    assert_error(status, &body, 409, "KeyAlreadyExists");
    let (status, body) = sign_upload(&server, Some(&writer), "docs", "writer/a.txt", false).await;
    assert_error(status, &body, 409, "ResourceAlreadyExists");

    // A stranger may neither: the 403 every refused write gets.
    let (status, on_existing) =
        upload(&server, &stranger, "docs", "writer/a.txt", "x", false).await;
    assert_error(status, &on_existing, 403, "AccessDenied");
    let (status, on_missing) = upload(&server, &stranger, "docs", "writer/b.txt", "x", false).await;
    assert_eq!((status, on_existing), (403, on_missing));
    assert_eq!(
        download(&server, &server.service_key(), "docs", "writer/a.txt")
            .await
            .1,
        vec![7u8; 5]
    );
}
