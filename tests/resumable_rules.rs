//! Resumable uploads (TUS 1.0) over raw HTTP: RLS at creation and again at completion, bucket
//! limits at creation and while bytes arrive, signed uploads, and termination and expiry
//! freeing the bytes (journal and store). On the store named by `PGSTORAGE_TEST_BACKEND`.

mod common;
mod tus_http;

use std::time::Duration;

use common::{TestServer, json_of};
use reqwest::Method;
use serde_json::json;
use tus_http::*;

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
    // Without the signature the upload is not reachable, nor through the unsigned route by
    // anyone but its signer (it runs as the signer, under the signer's policies).
    assert_eq!(
        patch(&server, None, &path, 0, vec![1; 3])
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let unsigned = path.replace("/sign/", "/");
    let bob = server.user_key("bob");
    assert_eq!(
        patch(&server, Some(&bob), &unsigned, 0, vec![1; 3])
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
