//! Resumable uploads (TUS 1.0) over raw HTTP against a live server, on the store named by
//! `PGSTORAGE_TEST_BACKEND`: the protocol's edge cases (offsets, checksums, content types,
//! versions), Supabase's metadata and URL form, RLS at creation and again at completion, bucket
//! limits, signed uploads, termination and expiry freeing the bytes, and two servers taking
//! turns on one upload.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Options, TestServer, json_of};
use reqwest::{Method, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

const OCTETS: &str = "application/offset+octet-stream";

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn metadata(bucket: &str, name: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        format!("bucketName {}", STANDARD.encode(bucket)),
        format!("objectName {}", STANDARD.encode(name)),
    ];
    for (k, v) in extra {
        pairs.push(format!("{k} {}", STANDARD.encode(v)));
    }
    pairs.join(",")
}

/// POST creation; `length` None defers it.
async fn create(
    server: &TestServer,
    key: Option<&str>,
    meta: &str,
    length: Option<u64>,
) -> Response {
    let mut request = server
        .request(Method::POST, "/upload/resumable", key)
        .header("tus-resumable", "1.0.0")
        .header("upload-metadata", meta);
    request = match length {
        Some(l) => request.header("upload-length", l),
        None => request.header("upload-defer-length", "1"),
    };
    request.send().await.unwrap()
}

/// The path of a Location (the tests talk to the server by its own URL).
fn path_of(server: &TestServer, response: &Response) -> String {
    let location = response.headers()["location"].to_str().unwrap().to_string();
    location
        .strip_prefix(&server.url)
        .unwrap_or_else(|| panic!("Location {location} is not on {}", server.url))
        .to_string()
}

async fn created(
    server: &TestServer,
    key: Option<&str>,
    meta: &str,
    length: Option<u64>,
) -> String {
    let response = create(server, key, meta, length).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    path_of(server, &response)
}

fn patch(
    server: &TestServer,
    key: Option<&str>,
    path: &str,
    offset: u64,
    bytes: Vec<u8>,
) -> reqwest::RequestBuilder {
    server
        .request(Method::PATCH, path, key)
        .header("tus-resumable", "1.0.0")
        .header("content-type", OCTETS)
        .header("upload-offset", offset)
        .body(bytes)
}

async fn head(server: &TestServer, key: Option<&str>, path: &str) -> Response {
    server
        .request(Method::HEAD, path, key)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

async fn download(server: &TestServer, bucket: &str, name: &str) -> (u16, Vec<u8>) {
    let response = server
        .request(
            Method::GET,
            &format!("/object/authenticated/{bucket}/{name}"),
            Some(&server.service_key()),
        )
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.bytes().await.unwrap().to_vec(),
    )
}

async fn setup() -> TestServer {
    let server = TestServer::start().await;
    server.create_bucket("up", false).await;
    server
}

#[tokio::test]
async fn options_announce_the_protocol() {
    let server = setup().await;
    let response = server
        .request(Method::OPTIONS, "/storage/v1/upload/resumable", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "tus-version").as_deref(), Some("1.0.0"));
    assert_eq!(header(&response, "tus-resumable").as_deref(), Some("1.0.0"));
    let extensions = header(&response, "tus-extension").unwrap();
    for ext in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(
            extensions.split(',').any(|e| e == ext),
            "{ext} missing from {extensions}"
        );
    }
    assert_eq!(
        header(&response, "tus-checksum-algorithm").as_deref(),
        Some("sha1,md5,sha256")
    );
    assert!(
        header(&response, "tus-max-size")
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );

    // A browser's preflight, and the headers its script may read.
    let preflight = server
        .request(Method::OPTIONS, "/upload/resumable", None)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "upload-offset,tus-resumable,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let create = server
        .request(
            Method::POST,
            "/upload/resumable",
            Some(&server.service_key()),
        )
        .header("origin", "https://app.example")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "3")
        .header("upload-metadata", metadata("up", "cors.bin", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    let exposed = header(&create, "access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    for name in [
        "location",
        "upload-offset",
        "upload-length",
        "tus-resumable",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}

#[tokio::test]
async fn an_upload_in_chunks_becomes_the_object_with_supabase_metadata() {
    let server = setup().await;
    let key = server.service_key();
    let all = data(250_000, 3);
    let meta = metadata(
        "up",
        "dir/file.bin",
        &[
            ("contentType", "image/png"),
            ("cacheControl", "3600"),
            ("metadata", r#"{"k":"v"}"#),
        ],
    );
    let response = server
        .request(Method::POST, "/storage/v1/upload/resumable", Some(&key))
        .header("tus-resumable", "1.0.0")
        .header("upload-metadata", &meta)
        .header("upload-length", all.len())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(header(&response, "upload-expires").is_some());
    // Supabase's form: the creation path plus base64url(bucket/name/id).
    let location = header(&response, "location").unwrap();
    let prefix = format!("{}/storage/v1/upload/resumable/", server.url);
    let id = location
        .strip_prefix(&prefix)
        .expect("Location under the creation path");
    let decoded = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id)
            .unwrap(),
    )
    .unwrap();
    assert!(decoded.starts_with("up/dir/file.bin/"), "{decoded}");
    let path = path_of(&server, &response);

    let head0 = head(&server, Some(&key), &path).await;
    assert_eq!(head0.status(), 200);
    assert_eq!(header(&head0, "upload-offset").as_deref(), Some("0"));
    assert_eq!(header(&head0, "upload-length").as_deref(), Some("250000"));
    assert_eq!(header(&head0, "cache-control").as_deref(), Some("no-store"));
    let echoed = header(&head0, "upload-metadata").unwrap();
    assert!(
        echoed.contains(&format!("bucketName {}", STANDARD.encode("up"))),
        "{echoed}"
    );

    let mut offset = 0;
    for chunk in all.chunks(100_000) {
        let r = patch(&server, Some(&key), &path, offset, chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{:?}", r.text().await);
        offset += chunk.len() as u64;
        assert_eq!(header(&r, "upload-offset"), Some(offset.to_string()));
    }
    let (status, bytes) = download(&server, "up", "dir/file.bin").await;
    assert_eq!(status, 200);
    assert_eq!(Sha256::digest(&bytes), Sha256::digest(&all));
    let info = server
        .request(
            Method::GET,
            "/object/info/authenticated/up/dir/file.bin",
            Some(&key),
        )
        .send()
        .await
        .unwrap();
    let (_, info) = json_of(info).await;
    let text = info.to_string();
    assert!(text.contains("image/png"), "{text}");
    assert!(text.contains("max-age=3600"), "{text}");
    assert!(text.contains(r#""k":"v""#), "{text}");
    // Finished: the upload is gone.
    assert_eq!(head(&server, Some(&key), &path).await.status(), 404);
}

#[tokio::test]
async fn protocol_errors_have_their_statuses_and_lose_nothing() {
    let server = setup().await;
    let key = server.service_key();
    let path = created(&server, Some(&key), &metadata("up", "e.bin", &[]), Some(10)).await;
    assert_eq!(
        patch(&server, Some(&key), &path, 0, vec![1; 4])
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    // Offset mismatch.
    let r = patch(&server, Some(&key), &path, 0, vec![2; 4])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // Wrong content type.
    let r = server
        .request(Method::PATCH, &path, Some(&key))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/octet-stream")
        .header("upload-offset", "4")
        .body(vec![3; 2])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // No Upload-Offset.
    let r = server
        .request(Method::PATCH, &path, Some(&key))
        .header("tus-resumable", "1.0.0")
        .header("content-type", OCTETS)
        .body(vec![3; 2])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Wrong or missing protocol version.
    let r = server
        .request(Method::HEAD, &path, Some(&key))
        .header("tus-resumable", "0.2.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(header(&r, "tus-resumable").as_deref(), Some("1.0.0"));
    // Past the declared length.
    let r = patch(&server, Some(&key), &path, 4, vec![3; 7])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Nothing changed.
    assert_eq!(
        header(&head(&server, Some(&key), &path).await, "upload-offset").as_deref(),
        Some("4")
    );
    // Unknown uploads.
    let unknown = format!(
        "/upload/resumable/{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("up/e.bin/nope")
    );
    assert_eq!(head(&server, Some(&key), &unknown).await.status(), 404);
    assert_eq!(
        head(&server, Some(&key), "/upload/resumable/%%%")
            .await
            .status(),
        404
    );
    // An upload's id under another object's name.
    let id = path.rsplit('/').next().unwrap();
    let real = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id)
            .unwrap(),
    )
    .unwrap();
    let upload_id = real.rsplit('/').next().unwrap();
    let other = format!(
        "/upload/resumable/{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("up/other.bin/{upload_id}"))
    );
    assert_eq!(head(&server, Some(&key), &other).await.status(), 404);
    // Creation without metadata or length.
    let r = server
        .request(Method::POST, "/upload/resumable", Some(&key))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = server
        .request(Method::POST, "/upload/resumable", Some(&key))
        .header("tus-resumable", "1.0.0")
        .header("upload-metadata", metadata("up", "x.bin", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // POST with a method override, as tus-js-client's overridePatchMethod sends it.
    let r = server
        .request(Method::POST, &path, Some(&key))
        .header("tus-resumable", "1.0.0")
        .header("x-http-method-override", "PATCH")
        .header("content-type", OCTETS)
        .header("upload-offset", "4")
        .body(vec![5; 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "upload-offset").as_deref(), Some("5"));
    let r = server
        .request(Method::POST, &path, Some(&key))
        .header("tus-resumable", "1.0.0")
        .body(vec![5; 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // The rest completes it.
    assert_eq!(
        patch(&server, Some(&key), &path, 5, vec![5; 5])
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let (_, bytes) = download(&server, "up", "e.bin").await;
    assert_eq!(bytes, [vec![1; 4], vec![5; 6]].concat());
}

#[tokio::test]
async fn a_checksum_mismatch_is_460_and_the_bytes_are_discarded() {
    let server = setup().await;
    let key = server.service_key();
    let path = created(&server, Some(&key), &metadata("up", "c.bin", &[]), Some(8)).await;
    let wrong = format!(
        "sha256 {}",
        STANDARD.encode(Sha256::digest(b"something else"))
    );
    let r = patch(&server, Some(&key), &path, 0, vec![7; 4])
        .header("upload-checksum", wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 460);
    assert_eq!(
        header(&head(&server, Some(&key), &path).await, "upload-offset").as_deref(),
        Some("0")
    );
    let r = patch(&server, Some(&key), &path, 0, vec![7; 4])
        .header("upload-checksum", "crc32 AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for (i, algorithm) in ["sha1", "md5"].iter().enumerate() {
        let chunk = vec![7u8; 4];
        let digest = match *algorithm {
            "sha1" => sha1::Sha1::digest(&chunk).to_vec(),
            _ => md5::Md5::digest(&chunk).to_vec(),
        };
        let r = patch(&server, Some(&key), &path, 4 * i as u64, chunk)
            .header(
                "upload-checksum",
                format!("{algorithm} {}", STANDARD.encode(digest)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{algorithm}");
    }
    assert_eq!(download(&server, "up", "c.bin").await.1, vec![7; 8]);
}

#[tokio::test]
async fn deferred_length_and_creation_with_upload() {
    let server = setup().await;
    let key = server.service_key();
    // creation-with-upload, length deferred.
    let r = server
        .request(Method::POST, "/upload/resumable", Some(&key))
        .header("tus-resumable", "1.0.0")
        .header("upload-metadata", metadata("up", "d.bin", &[]))
        .header("upload-defer-length", "1")
        .header("content-type", OCTETS)
        .body(vec![1u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "upload-offset").as_deref(), Some("5"));
    let path = path_of(&server, &r);
    let h = head(&server, Some(&key), &path).await;
    assert_eq!(header(&h, "upload-defer-length").as_deref(), Some("1"));
    assert!(header(&h, "upload-length").is_none());
    // The length arrives with the last bytes.
    let r = patch(&server, Some(&key), &path, 5, vec![2u8; 3])
        .header("upload-length", "8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        download(&server, "up", "d.bin").await.1,
        [vec![1; 5], vec![2; 3]].concat()
    );

    // An empty file completes at creation.
    let r = create(
        &server,
        Some(&key),
        &metadata("up", "empty.txt", &[]),
        Some(0),
    )
    .await;
    assert_eq!(r.status(), 201);
    let (status, bytes) = download(&server, "up", "empty.txt").await;
    assert_eq!((status, bytes.len()), (200, 0));
}

#[tokio::test]
async fn two_appends_at_one_offset_one_wins() {
    let server = setup().await;
    let key = server.service_key();
    let path = created(
        &server,
        Some(&key),
        &metadata("up", "race.bin", &[]),
        Some(2_000_000),
    )
    .await;
    let a = patch(&server, Some(&key), &path, 0, data(500_000, 1)).send();
    let b = patch(&server, Some(&key), &path, 0, data(500_000, 2)).send();
    let (a, b) = tokio::join!(a, b);
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [204, 409]);
    assert_eq!(
        header(&head(&server, Some(&key), &path).await, "upload-offset").as_deref(),
        Some("500000")
    );
}

/// Users may write under their own folder; anon may do nothing.
const OWNER_FOLDER: &str = "
    create policy own_read on storage.objects for select to authenticated
        using ((storage.foldername(name))[1] = auth.uid());
    create policy own_insert on storage.objects for insert to authenticated
        with check ((storage.foldername(name))[1] = auth.uid());
";

#[tokio::test]
async fn rls_decides_at_creation_and_again_at_completion() {
    let server = setup().await;
    server.db.sql(OWNER_FOLDER).await;
    let alice = server.user_key("alice");
    // Someone else's folder, and anon: refused before any byte.
    let r = create(
        &server,
        Some(&alice),
        &metadata("up", "bob/x.bin", &[]),
        Some(4),
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = create(&server, None, &metadata("up", "alice/x.bin", &[]), Some(4)).await;
    assert_eq!(r.status(), 403);
    // Her own: allowed, and only she may continue it.
    let path = created(
        &server,
        Some(&alice),
        &metadata("up", "alice/x.bin", &[]),
        Some(8),
    )
    .await;
    let bob = server.user_key("bob");
    assert_eq!(
        patch(&server, Some(&bob), &path, 0, vec![1; 4])
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        patch(&server, Some(&alice), &path, 0, vec![1; 4])
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    // The policy goes before the last PATCH: the object is not written.
    server
        .db
        .sql("drop policy own_insert on storage.objects")
        .await;
    let r = patch(&server, Some(&alice), &path, 4, vec![2; 4])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{:?}", r.text().await);
    assert_eq!(download(&server, "up", "alice/x.bin").await.0, 404);
    // x-upsert over an existing object needs the overwrite (update) policy.
    server
        .db
        .sql(
            "create policy own_insert on storage.objects for insert to authenticated
             with check ((storage.foldername(name))[1] = auth.uid());",
        )
        .await;
    let done = created(
        &server,
        Some(&alice),
        &metadata("up", "alice/y.bin", &[]),
        Some(2),
    )
    .await;
    assert_eq!(
        patch(&server, Some(&alice), &done, 0, vec![1; 2])
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let again = create(
        &server,
        Some(&alice),
        &metadata("up", "alice/y.bin", &[]),
        Some(2),
    )
    .await;
    assert_eq!(again.status(), 409);
    let upsert = server
        .request(Method::POST, "/upload/resumable", Some(&alice))
        .header("tus-resumable", "1.0.0")
        .header("x-upsert", "true")
        .header("upload-length", "2")
        .header("upload-metadata", metadata("up", "alice/y.bin", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(upsert.status(), 403);
}

#[tokio::test]
async fn bucket_limits_apply_at_creation_and_while_bytes_arrive() {
    let server = setup().await;
    let key = server.service_key();
    let r = server
        .request(Method::POST, "/bucket", Some(&key))
        .json(
            &json!({"name": "small", "file_size_limit": 1000, "allowed_mime_types": ["image/png"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let png = [("contentType", "image/png")];
    let r = create(
        &server,
        Some(&key),
        &metadata("small", "big.png", &png),
        Some(1001),
    )
    .await;
    assert_eq!(r.status(), 413);
    let r = create(
        &server,
        Some(&key),
        &metadata("small", "x.txt", &[("contentType", "text/plain")]),
        Some(10),
    )
    .await;
    assert_eq!(r.status(), 415);
    // Deferred length: the limit stops the bytes.
    let path = created(&server, Some(&key), &metadata("small", "d.png", &png), None).await;
    assert_eq!(
        patch(&server, Some(&key), &path, 0, vec![0; 600])
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let r = patch(&server, Some(&key), &path, 600, vec![0; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        header(&head(&server, Some(&key), &path).await, "upload-offset").as_deref(),
        Some("600")
    );
    // A length over the limit cannot be declared later either.
    let r = patch(&server, Some(&key), &path, 600, vec![0; 1])
        .header("upload-length", "5000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

async fn journal(server: &TestServer) -> Vec<(String, String)> {
    server
        .db
        .admin_client()
        .await
        .query(
            "select key, state from storage.byte_journal order by key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn termination_and_expiry_free_the_bytes() {
    let server = setup().await;
    let key = server.service_key();
    for (name, how) in [("t.bin", "terminate"), ("x.bin", "expire")] {
        let path = created(
            &server,
            Some(&key),
            &metadata("up", name, &[]),
            Some(100_000),
        )
        .await;
        assert_eq!(
            patch(&server, Some(&key), &path, 0, data(30_000, 1))
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        assert_eq!(
            patch(&server, Some(&key), &path, 30_000, data(30_000, 2))
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        assert_eq!(server.stored_keys().await, 2, "{how}: two parts stored");
        assert!(
            journal(&server).await.is_empty(),
            "{how}: parts are out of the journal"
        );
        if how == "terminate" {
            let r = server
                .request(Method::DELETE, &path, Some(&key))
                .header("tus-resumable", "1.0.0")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        } else {
            server
                .db
                .sql("update storage.s3_multipart_uploads set expires_at = now() - interval '1 second'")
                .await;
        }
        assert_eq!(
            head(&server, Some(&key), &path).await.status(),
            404,
            "{how}"
        );
        assert_eq!(
            patch(&server, Some(&key), &path, 60_000, vec![1])
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{how}"
        );
        let report = server
            .storage
            .collect_garbage(Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.failed, 0);
        assert_eq!(server.stored_keys().await, 0, "{how}: the bytes are freed");
        assert!(
            journal(&server).await.is_empty(),
            "{how}: the journal is empty again"
        );
    }
}

#[tokio::test]
async fn signed_resumable_uploads_belong_to_the_signer_and_stay_on_their_path() {
    let server = setup().await;
    server.db.sql(OWNER_FOLDER).await;
    let alice = server.user_key("alice");
    let signed = server
        .request(
            Method::POST,
            "/object/upload/sign/up/alice/s.bin",
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(signed).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();

    // Another path with this token: refused.
    let r = server
        .request(Method::POST, "/upload/resumable/sign", None)
        .header("tus-resumable", "1.0.0")
        .header("x-signature", &token)
        .header("upload-length", "6")
        .header("upload-metadata", metadata("up", "alice/other.bin", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // No token.
    let r = server
        .request(Method::POST, "/upload/resumable/sign", None)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "6")
        .header("upload-metadata", metadata("up", "alice/s.bin", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = server
        .request(Method::POST, "/upload/resumable/sign", None)
        .header("tus-resumable", "1.0.0")
        .header("x-signature", &token)
        .header("upload-length", "6")
        .header("upload-metadata", metadata("up", "alice/s.bin", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let path = path_of(&server, &r);
    assert!(path.starts_with("/upload/resumable/sign/"), "{path}");
    // Without the signature the upload is not reachable, nor through the unsigned route.
    assert_eq!(
        patch(&server, None, &path, 0, vec![1; 3])
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let unsigned = path.replace("/sign/", "/");
    assert_eq!(
        patch(&server, Some(&alice), &unsigned, 0, vec![1; 3])
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    for (offset, bytes) in [(0u64, vec![1u8; 3]), (3, vec![2u8; 3])] {
        let r = patch(&server, None, &path, offset, bytes)
            .header("x-signature", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{:?}", r.text().await);
    }
    let owner: Option<String> = server
        .db
        .admin_client()
        .await
        .query_one(
            "select owner_id from storage.objects where name = 'alice/s.bin'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner.as_deref(), Some("alice"));
}

#[tokio::test]
async fn two_servers_take_turns_on_one_upload() {
    let first = setup().await;
    let second =
        TestServer::start_with_store(first.db.clone(), first.store.clone(), Options::default())
            .await;
    let key = first.service_key();
    let all = data(600_000, 9);
    let path = created(
        &first,
        Some(&key),
        &metadata("up", "turns.bin", &[]),
        Some(all.len() as u64),
    )
    .await;
    let mut offset = 0;
    for (i, chunk) in all.chunks(100_000).enumerate() {
        let server = if i % 2 == 0 { &second } else { &first };
        let h = head(server, Some(&key), &path).await;
        assert_eq!(header(&h, "upload-offset"), Some(offset.to_string()));
        let r = patch(server, Some(&key), &path, offset, chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        offset += chunk.len() as u64;
    }
    let (status, bytes) = download(&second, "up", "turns.bin").await;
    assert_eq!(status, 200);
    assert_eq!(bytes, all);
}

#[tokio::test]
async fn behind_a_proxy_the_location_is_the_public_url() {
    let server = setup().await;
    let response = server
        .request(
            Method::POST,
            "/storage/v1/upload/resumable/",
            Some(&server.service_key()),
        )
        .header("tus-resumable", "1.0.0")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "files.example.com")
        .header("upload-length", "1")
        .header("upload-metadata", metadata("up", "p.bin", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = header(&response, "location").unwrap();
    assert!(
        location.starts_with("https://files.example.com/storage/v1/upload/resumable/"),
        "{location}"
    );
}
