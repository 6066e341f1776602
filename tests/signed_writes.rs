//! Signed URLs that outlive nothing: an upload URL is checked at use time against what exists
//! then (an overwrite needs the signer's right to overwrite, as the signer under Row Level
//! Security), a URL without upsert uploads once ever, URLs work for names with `?`, `#` and
//! `%` as they are handed out, and a token names one object only (bucket ids hold no `/`).

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

/// POST /object/upload/sign/... as `key`; returns (status, body).
async fn sign_upload(
    server: &TestServer,
    key: &str,
    bucket: &str,
    name: &str,
    upsert: bool,
) -> (u16, Value) {
    let mut request = call(
        server,
        Method::POST,
        &format!("/object/upload/sign/{bucket}/{}", enc(name)),
        Some(key),
    );
    if upsert {
        request = request.header("x-upsert", "true");
    }
    json_of(request.send().await.unwrap()).await
}

/// Signs as `key` and returns the relative upload URL.
async fn upload_url(server: &TestServer, key: &str, name: &str, upsert: bool) -> String {
    let (status, body) = sign_upload(server, key, "docs", name, upsert).await;
    assert_eq!(status, 200, "{body}");
    body["url"].as_str().unwrap().to_string()
}

/// PUT a body to a relative signed upload URL, as given, without credentials.
async fn put(server: &TestServer, relative: &str, body: &[u8]) -> (u16, Value) {
    json_of(
        call(server, Method::PUT, relative, None)
            .header(CONTENT_TYPE, "text/plain")
            .body(body.to_vec())
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Users write objects they own: insert anything they own, read and change only their own.
const OWNERS: &str = "
    create policy owners_insert on storage.objects for insert to authenticated
        with check (owner_id = auth.uid());
    create policy owners_read on storage.objects for select to authenticated
        using (owner_id = auth.uid());
    create policy owners_update on storage.objects for update to authenticated
        using (owner_id = auth.uid()) with check (owner_id = auth.uid());
";

async fn server_with_policies(policies: &str) -> TestServer {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server.db.sql(policies).await;
    server
}

// ---------------------------------------------------------------------------------------------
// Upload URLs are judged when used
// ---------------------------------------------------------------------------------------------

/// u1 signs an upsert URL for a key nobody has yet; u2 then creates that object. The URL must
/// not overwrite u2's object (nor take its owner): u1 may not overwrite it directly either.
#[tokio::test]
async fn a_signed_upsert_url_cannot_overwrite_what_the_signer_may_not() {
    let server = server_with_policies(OWNERS).await;
    let u1 = server.user_key("u1");
    let u2 = server.user_key("u2");
    let url = upload_url(&server, &u1, "shared.txt", true).await;

    let (status, body) = upload(&server, &u2, "docs", "shared.txt", "u2's", false).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload(&server, &u1, "docs", "shared.txt", "u1's", true).await;
    assert_error(status, &body, 403, "AccessDenied");
    let files = stored_files(&server).await;

    let (status, body) = put(&server, &url, b"through the URL").await;
    assert_error(status, &body, 403, "AccessDenied");
    let stored = row(&server, "docs", "shared.txt").await.unwrap();
    assert_eq!(stored.owner_id.as_deref(), Some("u2"));
    assert_eq!(
        download(&server, &u2, "docs", "shared.txt").await.1,
        b"u2's"
    );
    assert_eq!(stored_files(&server).await, files);

    // The same URL on a key the signer may overwrite does: u1's own object.
    let url = upload_url(&server, &u1, "mine.txt", true).await;
    let (status, body) = put(&server, &url, b"v1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put(&server, &url, b"v2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(download(&server, &u1, "docs", "mine.txt").await.1, b"v2");
}

/// The object may also appear while the URL's body is still streaming: the commit re-checks
/// the signer's right to overwrite in the transaction that would write the row.
#[tokio::test]
async fn an_object_created_during_a_signed_upload_is_not_overwritten() {
    let server = server_with_policies(OWNERS).await;
    let u1 = server.user_key("u1");
    let u2 = server.user_key("u2");
    let url = upload_url(&server, &u1, "race.txt", true).await;

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let pending = tokio::spawn(
        call(&server, Method::PUT, &url, None)
            .header(CONTENT_TYPE, "text/plain")
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    tx.send(Ok(bytes::Bytes::from_static(b"through the URL, ")))
        .await
        .unwrap();
    // The server has checked the write (a new object then) and is streaming it.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (status, body) = upload(&server, &u2, "docs", "race.txt", "u2's", false).await;
    assert_eq!(status, 200, "{body}");
    tx.send(Ok(bytes::Bytes::from_static(b"slowly")))
        .await
        .unwrap();
    drop(tx);
    let (status, body) = json_of(pending.await.unwrap().unwrap()).await;
    assert_error(status, &body, 403, "AccessDenied");
    let stored = row(&server, "docs", "race.txt").await.unwrap();
    assert_eq!(stored.owner_id.as_deref(), Some("u2"));
    assert_eq!(download(&server, &u2, "docs", "race.txt").await.1, b"u2's");
}

/// The overwrite is judged as the signer, with all the claims the signer had and under the
/// operation `storage.overwrite`: a policy may read any claim, and tell an overwrite apart.
#[tokio::test]
async fn the_signers_claims_and_the_overwrite_operation_decide() {
    let server = server_with_policies(
        "create policy anyone_inserts on storage.objects for insert to authenticated
             with check (true);
         create policy editors_read on storage.objects for select to authenticated
             using (auth.jwt() ->> 'team' = 'editors');
         create policy editors_overwrite on storage.objects for update to authenticated
             using (auth.jwt() ->> 'team' = 'editors')
             with check (storage.allow_only_operation('storage.overwrite'));",
    )
    .await;
    let service = server.service_key();
    upload(&server, &service, "docs", "a.txt", "original", false).await;
    let mut claims = serde_json::Map::new();
    claims.insert("team".into(), "editors".into());
    let editor = common::keys()
        .mint(
            "authenticated",
            Some("e1"),
            Some(std::time::Duration::from_secs(3600)),
            claims,
        )
        .unwrap();
    let outsider = server.user_key("o1");

    let denied = upload_url(&server, &outsider, "b.txt", true).await;
    let allowed = upload_url(&server, &editor, "b.txt", true).await;
    // The claims stay with the server: the URL, which may be handed to anyone, does not show
    // them.
    let token = allowed.split_once("?token=").unwrap().1;
    let payload = token.split('.').nth(1).unwrap();
    let payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap()
    };
    let payload = String::from_utf8(payload).unwrap();
    assert!(!payload.contains("editors"), "{payload}");
    upload(&server, &service, "docs", "b.txt", "created since", false).await;
    let (status, body) = put(&server, &denied, b"outsider").await;
    assert_error(status, &body, 403, "AccessDenied");
    let (status, body) = put(&server, &allowed, b"editor").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        download(&server, &service, "docs", "b.txt").await.1,
        b"editor"
    );
}

#[tokio::test]
async fn an_upload_url_without_upsert_uploads_once_ever() {
    let server = TestServer::start().await;
    server
        .db
        .sql(
            "create policy anyone_inserts on storage.objects for insert to authenticated
                 with check (true);",
        )
        .await;
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/bucket",
            Some(&server.service_key()),
        )
        .json(&json!({"name": "docs", "file_size_limit": 10}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let u1 = server.user_key("u1");
    let service = server.service_key();
    let url = upload_url(&server, &u1, "once.txt", false).await;

    // A use that fails writes nothing and leaves the URL usable.
    let (status, body) = put(&server, &url, b"far too long for the bucket").await;
    assert_error(status, &body, 413, "EntityTooLarge");
    let (status, body) = put(&server, &url, b"first").await;
    assert_eq!(status, 200, "{body}");

    // Deleted since: the URL still does not upload again.
    let (status, body) = json_of(
        call(
            &server,
            Method::DELETE,
            "/object/docs/once.txt",
            Some(&service),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let files = stored_files(&server).await;
    let (status, body) = put(&server, &url, b"second").await;
    assert_error(status, &body, 409, "Conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already been used"),
        "{body}"
    );
    assert!(row(&server, "docs", "once.txt").await.is_none());
    assert_eq!(stored_files(&server).await, files);

    // The record is the server's own: no API role may read or change it.
    let admin = server.db.admin_client().await;
    for role in ["anon", "authenticated", "service_role"] {
        let visible: bool = admin
            .query_one(
                "select has_table_privilege($1, 'storage.signed_upload_uses', \
                 'select, insert, update, delete')",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!visible, "{role}");
    }
    // Forgotten once the token has long expired, by the collector.
    admin
        .execute(
            "update storage.signed_upload_uses set expires_at = now() - interval '2 hours'",
            &[],
        )
        .await
        .unwrap();
    server
        .storage
        .collect_garbage(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let left: i64 = admin
        .query_one("select count(*) from storage.signed_upload_uses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

// ---------------------------------------------------------------------------------------------
// Names that break URLs, and bucket ids
// ---------------------------------------------------------------------------------------------

/// What storage-js does with a signed URL before using it (`encodeURI`).
fn encode_uri(url: &str) -> String {
    const KEEP: &[u8] = b";,/?:@&=+$-_.!~*'()#";
    let mut out = String::new();
    for byte in url.bytes() {
        if byte.is_ascii_alphanumeric() || KEEP.contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn signed_urls_work_for_names_with_question_marks_hashes_and_percents() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let service = server.service_key();
    for (i, name) in [
        "what?.txt",
        "a#b.txt",
        "100%.txt",
        "50%25 off.txt",
        "dir?x=1&y=2/z#frag%20 ü\\.txt",
    ]
    .into_iter()
    .enumerate()
    {
        let data = format!("object {i}");
        let (status, body) = upload(&server, &service, "docs", name, data.clone(), false).await;
        assert_eq!(status, 200, "{name}: {body}");

        let (status, body) = json_of(
            call(
                &server,
                Method::POST,
                &format!("/object/sign/docs/{}", enc(name)),
                Some(&service),
            )
            .json(&json!({"expiresIn": 60}))
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
        let signed = body["signedURL"].as_str().unwrap().to_string();
        for url in [signed.clone(), encode_uri(&signed)] {
            let response = call(&server, Method::GET, &url, None).send().await.unwrap();
            assert_eq!(response.status(), 200, "{name}: {url}");
            assert_eq!(response.text().await.unwrap(), data, "{name}: {url}");
        }

        let upload_name = format!("{name}.new");
        let url = upload_url(&server, &service, &upload_name, false).await;
        let (status, body) = put(&server, &url, b"uploaded").await;
        assert_eq!(status, 200, "{upload_name}: {url}: {body}");
        assert_eq!(body["Key"], format!("docs/{upload_name}"));
        assert_eq!(
            download(&server, &service, "docs", &upload_name).await.1,
            b"uploaded"
        );
        // storage-js's spelling of the upload URL reaches the same object.
        let url = upload_url(&server, &service, &upload_name, true).await;
        let (status, body) = put(&server, &encode_uri(&url), b"again").await;
        assert_eq!(status, 200, "{upload_name}: {body}");
        assert_eq!(
            download(&server, &service, "docs", &upload_name).await.1,
            b"again"
        );
    }
}

/// A signed URL names `<bucket>/<name>`; with `/` in a bucket id that would be ambiguous, so
/// such ids are refused everywhere: by the API and by the database itself.
#[tokio::test]
async fn bucket_ids_with_a_slash_are_refused_everywhere() {
    let server = TestServer::start().await;
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/bucket",
            Some(&server.service_key()),
        )
        .json(&json!({"name": "a/b"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_error(status, &body, 400, "InvalidBucketName");
    let admin = server.db.admin_client().await;
    let error = admin
        .execute(
            "insert into storage.buckets (id, name) values ('a/b', 'a/b')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "{error}"
    );

    // A token for a/"b/c" does not serve the path a%2Fb/c (bucket "a/b", name "c").
    server.create_bucket("a", false).await;
    let service = server.service_key();
    upload(&server, &service, "a", "b/c", "x", false).await;
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/sign/a/b/c", Some(&service))
            .json(&json!({"expiresIn": 60}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["signedURL"]
        .as_str()
        .unwrap()
        .split_once("?token=")
        .unwrap()
        .1
        .to_string();
    let (status, body) = json_of(
        call(
            &server,
            Method::GET,
            &format!("/object/sign/a%2Fb/c?token={token}"),
            None,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_error(status, &body, 400, "InvalidSignature");
}
