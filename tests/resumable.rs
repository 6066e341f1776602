//! Resumable uploads (TUS 1.0) over raw HTTP against a live server, on the store named by
//! `PGSTORAGE_TEST_BACKEND`: the protocol's edge cases (offsets, checksums, content types,
//! versions, method override), Supabase's metadata and URL form, CORS, concurrent appends, and
//! two servers taking turns on one upload. Who may upload and what frees the bytes are in
//! `resumable_rules.rs`.

mod common;
mod tus_http;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Options, TestServer, json_of};
use reqwest::Method;
use sha2::{Digest, Sha256};
use tus_http::*;

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
    // Finished: HEAD reports the upload complete (as Supabase does), so a client that lost
    // the last PATCH's answer finishes instead of starting over.
    let done = head(&server, Some(&key), &path).await;
    assert_eq!(done.status(), 200);
    assert_eq!(header(&done, "upload-offset").as_deref(), Some("250000"));
    assert_eq!(header(&done, "upload-length").as_deref(), Some("250000"));
    // Only for that upload's id, and only while the object is still what it wrote.
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("up/dir/file.bin/{}", "0".repeat(64)));
    let forged = format!("/storage/v1/upload/resumable/{forged}");
    assert_eq!(head(&server, Some(&key), &forged).await.status(), 404);
    let overwrite = server
        .request(Method::POST, "/object/up/dir/file.bin", Some(&key))
        .header("x-upsert", "true")
        .body(vec![7u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(overwrite.status(), 200);
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
