//! Signed URLs over real HTTP: signing under Row Level Security (`storage.sign`,
//! `storage.sign_upload`), using a URL without credentials (bytes, Range, conditional requests,
//! `?download=`, uploads owned by the signer), and every way a token is refused.
//!
//! Anon (or anyone) signing an object no policy lets them see gets 404 NoSuchKey: missing and
//! invisible are the same answer, as for a download.

mod common;
mod object_helpers;

use std::time::Duration;

use common::{TestServer, json_of};
use object_helpers::{call, download, journal, random_bytes, row, stored_files, upload};
use reqwest::Method;
use reqwest::header::{
    CONTENT_DISPOSITION, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE,
};
use serde_json::{Map, Value, json};

/// A user may read and write under `<their sub>/...`.
const OWNER_FOLDER: &str = "
    create policy own_read on storage.objects for select to authenticated
        using ((storage.foldername(name))[1] = auth.uid());
    create policy own_insert on storage.objects for insert to authenticated
        with check ((storage.foldername(name))[1] = auth.uid());
    create policy own_update on storage.objects for update to authenticated
        using ((storage.foldername(name))[1] = auth.uid())
        with check ((storage.foldername(name))[1] = auth.uid());
";

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["statusCode"], want_status.to_string(), "{body}");
    assert_eq!(body["code"], want_code, "{body}");
}

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A server with bucket `docs` holding `name` = `body`, uploaded as service_role.
async fn server_with(name: &str, body: &[u8]) -> TestServer {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let (status, answer) = upload(&server, &server.service_key(), "docs", name, body, false).await;
    assert_eq!(status, 200, "{answer}");
    server
}

/// POST /object/sign/{bucket}/{name} with `expiresIn`.
async fn sign(
    server: &TestServer,
    key: Option<&str>,
    bucket: &str,
    name: &str,
    expires_in: Value,
) -> (u16, Value) {
    json_of(
        call(
            server,
            Method::POST,
            &format!("/object/sign/{bucket}/{name}"),
            key,
        )
        .json(&json!({ "expiresIn": expires_in }))
        .send()
        .await
        .unwrap(),
    )
    .await
}

/// Signs as service_role and returns the relative `signedURL`.
async fn signed_url(server: &TestServer, bucket: &str, name: &str) -> String {
    let (status, body) = sign(server, Some(&server.service_key()), bucket, name, json!(60)).await;
    assert_eq!(status, 200, "{body}");
    body["signedURL"].as_str().unwrap().to_string()
}

/// GET a relative URL (as the clients do: base URL + signedURL) without credentials.
async fn fetch(server: &TestServer, relative: &str) -> reqwest::Response {
    call(server, Method::GET, relative, None)
        .send()
        .await
        .unwrap()
}

fn token_of(url: &str) -> String {
    url.split_once("?token=").unwrap().1.to_string()
}

/// POST /object/upload/sign/{bucket}/{name} as `key`, with no body (as storage3 sends it).
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
        &format!("/object/upload/sign/{bucket}/{name}"),
        Some(key),
    );
    if upsert {
        request = request.header("x-upsert", "true");
    }
    json_of(request.send().await.unwrap()).await
}

/// PUT a raw body to a relative signed upload URL, without credentials.
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

// ---------------------------------------------------------------------------------------------
// Signed downloads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_signed_url_serves_the_bytes_without_credentials() {
    let data = random_bytes(10_000, 7);
    let name = "folder/my file ü.bin";
    let server = server_with(name, &data).await;

    let url = signed_url(&server, "docs", name).await;
    assert!(
        url.starts_with(&format!("/object/sign/docs/{name}?token=")),
        "relative, unencoded, already carrying the token: {url}"
    );
    let response = fetch(&server, &url).await;
    assert_eq!(response.status(), 200);
    let etag = header(&response, ETAG);
    assert_eq!(header(&response, CONTENT_TYPE), "application/octet-stream");
    assert_eq!(response.bytes().await.unwrap().as_ref(), data.as_slice());

    // The same headers as a normal download.
    let normal = call(
        &server,
        Method::GET,
        "/object/authenticated/docs/folder/my%20file%20%C3%BC.bin",
        Some(&server.service_key()),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(header(&normal, ETAG), etag);

    // Clients put the signed URL under their /storage/v1 base.
    let response = fetch(&server, &format!("/storage/v1{url}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), data.as_slice());
}

#[tokio::test]
async fn range_and_conditional_requests_work_on_a_signed_url() {
    let server = server_with("a.txt", b"0123456789").await;
    let url = signed_url(&server, "docs", "a.txt").await;

    let response = call(&server, Method::GET, &url, None)
        .header(RANGE, "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(header(&response, CONTENT_RANGE), "bytes 2-5/10");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"2345");

    let etag = header(&fetch(&server, &url).await, ETAG);
    assert!(!etag.is_empty());
    let response = call(&server, Method::GET, &url, None)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
}

#[tokio::test]
async fn the_download_query_makes_an_attachment() {
    let server = server_with("dir/report.pdf", b"%PDF").await;
    let url = signed_url(&server, "docs", "dir/report.pdf").await;

    let response = fetch(&server, &url).await;
    assert_eq!(header(&response, CONTENT_DISPOSITION), "");

    let response = fetch(&server, &format!("{url}&download=")).await;
    assert_eq!(response.status(), 200);
    let disposition = header(&response, CONTENT_DISPOSITION);
    assert!(
        disposition.starts_with("attachment") && disposition.contains("report.pdf"),
        "{disposition}"
    );

    let response = fetch(&server, &format!("{url}&download=other.pdf")).await;
    let disposition = header(&response, CONTENT_DISPOSITION);
    assert!(disposition.contains("other.pdf"), "{disposition}");
}

#[tokio::test]
async fn batch_signing_answers_each_path_in_order() {
    let server = server_with("u1/a.txt", b"mine").await;
    let service = server.service_key();
    upload(&server, &service, "docs", "u2/b.txt", "theirs", false).await;
    server.db.sql(OWNER_FOLDER).await;
    let u1 = server.user_key("u1");

    let (status, body) = json_of(
        call(&server, Method::POST, "/object/sign/docs", Some(&u1))
            .json(&json!({
                "expiresIn": 60,
                "paths": ["u1/a.txt", "u1/missing.txt", "u2/b.txt"],
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let entries = body.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{body}");
    assert_eq!(entries[0]["path"], "u1/a.txt");
    assert_eq!(entries[0]["error"], Value::Null);
    let url = entries[0]["signedURL"].as_str().unwrap();
    assert!(
        url.starts_with("/object/sign/docs/u1/a.txt?token="),
        "{url}"
    );
    let response = fetch(&server, url).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"mine");
    for (entry, path) in entries[1..].iter().zip(["u1/missing.txt", "u2/b.txt"]) {
        assert_eq!(entry["path"], path, "{body}");
        assert_eq!(entry["signedURL"], Value::Null, "{body}");
        assert_eq!(
            entry["error"],
            "Either the object does not exist or you do not have access to it"
        );
    }

    // An empty batch is a bad request.
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/sign/docs", Some(&u1))
            .json(&json!({ "expiresIn": 60, "paths": [] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 400, "InvalidRequest");
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let server = server_with("a.txt", b"secret").await;
    let url = signed_url(&server, "docs", "a.txt").await;
    let token = token_of(&url);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let signature = parts[2];
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{}.{}.{flipped}{}", parts[0], parts[1], &signature[1..]);

    let (status, body) = json_of(
        fetch(
            &server,
            &format!("/object/sign/docs/a.txt?token={tampered}"),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 400, "InvalidJWT");
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );

    // A token whose payload was edited (another object's name) fails the same way.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
    assert!(payload.contains("docs/a.txt"), "{payload}");
    let payload = b64.encode(payload.replace("docs/a.txt", "docs/b.txt"));
    let forged = format!("{}.{payload}.{signature}", parts[0]);
    let (status, body) =
        json_of(fetch(&server, &format!("/object/sign/docs/b.txt?token={forged}")).await).await;
    assert_error(status, &body, 400, "InvalidJWT");
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );

    let (status, body) = json_of(fetch(&server, "/object/sign/docs/a.txt").await).await;
    assert_error(status, &body, 400, "InvalidJWT");
    assert!(
        body["message"].as_str().unwrap().contains("token"),
        "{body}"
    );
    let (status, body) =
        json_of(fetch(&server, "/object/sign/docs/a.txt?token=not-a-jwt").await).await;
    assert_error(status, &body, 400, "InvalidJWT");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let server = server_with("a.txt", b"soon gone").await;
    let (status, body) = sign(
        &server,
        Some(&server.service_key()),
        "docs",
        "a.txt",
        json!(1),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = body["signedURL"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = json_of(fetch(&server, &url).await).await;
    assert_error(status, &body, 400, "InvalidJWT");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // A token minted with the server's key but long expired: the same answer.
    let mut claims = Map::new();
    claims.insert("url".into(), "docs/a.txt".into());
    claims.insert("scope".into(), "download".into());
    claims.insert("aud".into(), "pgstorage:signed-url".into());
    claims.insert("exp".into(), 1_000_000_000.into());
    let old = common::keys().sign(claims, None).unwrap();
    let (status, body) =
        json_of(fetch(&server, &format!("/object/sign/docs/a.txt?token={old}")).await).await;
    assert_error(status, &body, 400, "InvalidJWT");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn a_token_is_bound_to_its_bucket_and_path() {
    let server = server_with("a.txt", b"a").await;
    let service = server.service_key();
    upload(&server, &service, "docs", "b.txt", "b", false).await;
    server.create_bucket("other", false).await;
    upload(&server, &service, "other", "a.txt", "other a", false).await;
    let token = token_of(&signed_url(&server, "docs", "a.txt").await);

    for path in ["/object/sign/docs/b.txt", "/object/sign/other/a.txt"] {
        let (status, body) = json_of(fetch(&server, &format!("{path}?token={token}")).await).await;
        assert_error(status, &body, 400, "InvalidSignature");
        assert_eq!(body["message"], "the token is not valid for this object");
    }
    let response = fetch(&server, &format!("/object/sign/docs/a.txt?token={token}")).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"a");
}

#[tokio::test]
async fn a_signed_url_of_a_deleted_object_is_404() {
    let server = server_with("a.txt", b"a").await;
    let url = signed_url(&server, "docs", "a.txt").await;
    let (status, body) = json_of(
        call(
            &server,
            Method::DELETE,
            "/object/docs/a.txt",
            Some(&server.service_key()),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = json_of(fetch(&server, &url).await).await;
    assert_error(status, &body, 404, "NoSuchKey");
}

#[tokio::test]
async fn scopes_do_not_cross() {
    let server = server_with("a.txt", b"original").await;
    server.db.sql(OWNER_FOLDER).await;

    // A download token on the upload PUT.
    let token = token_of(&signed_url(&server, "docs", "a.txt").await);
    let files = stored_files(&server).await;
    let (status, body) = put(
        &server,
        &format!("/object/upload/sign/docs/a.txt?token={token}"),
        b"overwritten",
    )
    .await;
    assert_error(status, &body, 400, "InvalidSignature");
    assert!(
        body["message"].as_str().unwrap().contains("download"),
        "{body}"
    );
    assert_eq!(stored_files(&server).await, files);
    let service = server.service_key();
    assert_eq!(
        download(&server, &service, "docs", "a.txt").await.1,
        b"original"
    );

    // An upload token on the download GET.
    let u1 = server.user_key("u1");
    let (status, body) = sign_upload(&server, &u1, "docs", "u1/new.txt", false).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let (status, body) = json_of(
        fetch(
            &server,
            &format!("/object/sign/docs/u1/new.txt?token={token}"),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 400, "InvalidSignature");
    assert!(
        body["message"].as_str().unwrap().contains("upload"),
        "{body}"
    );
}

#[tokio::test]
async fn a_signed_url_token_is_not_an_api_credential() {
    let server = server_with("a.txt", b"a").await;
    // Anyone may list buckets: a token that counted as anon would get 200.
    server
        .db
        .sql("create policy anyone_lists on storage.buckets for select using (true)")
        .await;
    let (status, _) = json_of(
        call(&server, Method::GET, "/bucket", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);

    let download_token = token_of(&signed_url(&server, "docs", "a.txt").await);
    let (_, body) = sign_upload(&server, &server.service_key(), "docs", "b.txt", true).await;
    let upload_token = body["token"].as_str().unwrap().to_string();
    for token in [&download_token, &upload_token] {
        let (status, body) = json_of(
            call(&server, Method::GET, "/bucket", Some(token))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(status, &body, 401, "InvalidJWT");
        assert!(
            body["message"].as_str().unwrap().contains("signed-URL"),
            "{body}"
        );
        // Nor as the apikey header.
        let status = call(&server, Method::GET, "/bucket", None)
            .header("apikey", token.as_str())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    // An API key is not a signed-URL token either.
    let service = server.service_key();
    let (status, body) =
        json_of(fetch(&server, &format!("/object/sign/docs/a.txt?token={service}")).await).await;
    assert_error(status, &body, 400, "InvalidJWT");
}

// ---------------------------------------------------------------------------------------------
// Who may sign
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_a_policy_nobody_but_service_role_can_sign() {
    let server = server_with("a.txt", b"a").await;
    let (status, body) = sign(&server, None, "docs", "a.txt", json!(60)).await;
    assert_error(status, &body, 404, "NoSuchKey");
    let user = server.user_key("u1");
    let (status, body) = sign(&server, Some(&user), "docs", "a.txt", json!(60)).await;
    assert_error(status, &body, 404, "NoSuchKey");
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/sign/docs", None)
            .json(&json!({ "expiresIn": "60", "paths": ["a.txt"] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["signedURL"], Value::Null, "{body}");
    // A missing object is the same answer for service_role.
    let (status, body) = sign(
        &server,
        Some(&server.service_key()),
        "docs",
        "nope.txt",
        json!(60),
    )
    .await;
    assert_error(status, &body, 404, "NoSuchKey");
}

#[tokio::test]
async fn a_policy_can_allow_signing_but_not_downloading() {
    let server = server_with("a.txt", b"by signed URL only").await;
    server
        .db
        .sql(
            "create policy sign_only on storage.objects for select to authenticated \
             using (storage.allow_only_operation('storage.sign'));",
        )
        .await;
    let user = server.user_key("u1");

    let (status, body) = download(&server, &user, "docs", "a.txt").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, body) = sign(&server, Some(&user), "docs", "a.txt", json!(60)).await;
    assert_eq!(status, 200, "{body}");
    let response = fetch(&server, body["signedURL"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        b"by signed URL only"
    );
}

#[tokio::test]
async fn a_policy_can_allow_downloading_but_not_signing() {
    let server = server_with("a.txt", b"direct only").await;
    server
        .db
        .sql(
            "create policy download_only on storage.objects for select to authenticated \
             using (storage.allow_only_operation('storage.download'));",
        )
        .await;
    let user = server.user_key("u1");

    let (status, body) = download(&server, &user, "docs", "a.txt").await;
    assert_eq!(status, 200);
    assert_eq!(body, b"direct only");
    let (status, body) = sign(&server, Some(&user), "docs", "a.txt", json!(60)).await;
    assert_error(status, &body, 404, "NoSuchKey");
}

#[tokio::test]
async fn expires_in_is_whole_seconds_as_a_number_or_a_numeric_string() {
    let server = server_with("a.txt", b"a").await;
    let service = server.service_key();
    for good in [json!("60"), json!(60), json!(" 3600 ")] {
        let (status, body) = sign(&server, Some(&service), "docs", "a.txt", good.clone()).await;
        assert_eq!(status, 200, "{good}: {body}");
        let response = fetch(&server, body["signedURL"].as_str().unwrap()).await;
        assert_eq!(response.status(), 200, "{good}");
    }
    for bad in [
        json!("abc"),
        json!(0),
        json!("0"),
        json!(-5),
        json!(1.5),
        json!(null),
        json!(""),
    ] {
        let (status, body) = sign(&server, Some(&service), "docs", "a.txt", bad.clone()).await;
        assert_error(status, &body, 400, "InvalidRequest");
        assert!(
            body["message"].as_str().unwrap().contains("expiresIn"),
            "{bad}: {body}"
        );
    }
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/object/sign/docs/a.txt",
            Some(&service),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_error(status, &body, 400, "InvalidRequest");
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/sign/docs", Some(&service))
            .json(&json!({ "expiresIn": "abc", "paths": ["a.txt"] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 400, "InvalidRequest");
}

// ---------------------------------------------------------------------------------------------
// Signed uploads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_signed_upload_is_owned_by_its_signer_and_happens_once() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server
        .db
        .sql(
            "create policy own_insert on storage.objects for insert to authenticated \
             with check ((storage.foldername(name))[1] = auth.uid());",
        )
        .await;
    let u1 = server.user_key("u1");

    let (status, body) = sign_upload(&server, &u1, "docs", "u1/x", false).await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("/object/upload/sign/docs/u1/x?token="),
        "{url}"
    );
    assert_eq!(token_of(&url), body["token"].as_str().unwrap());
    assert!(
        row(&server, "docs", "u1/x").await.is_none(),
        "signing writes nothing"
    );

    // Through the /storage/v1 prefix, as the clients send it; no Authorization header.
    let (status, body) = put(&server, &format!("/storage/v1{url}"), b"from the link").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "docs/u1/x");
    let stored = row(&server, "docs", "u1/x").await.unwrap();
    assert_eq!(body["Id"], stored.id.to_string());
    assert_eq!(stored.owner_id.as_deref(), Some("u1"));
    assert_eq!(stored.metadata["mimetype"], "text/plain");
    let service = server.service_key();
    assert_eq!(
        download(&server, &service, "docs", "u1/x").await.1,
        b"from the link"
    );

    // The token is not an upsert token: a second PUT conflicts, whatever x-upsert says.
    let files = stored_files(&server).await;
    let (status, body) = json_of(
        call(&server, Method::PUT, &url, None)
            .header("x-upsert", "true")
            .body("again")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 409, "ResourceAlreadyExists");
    assert_eq!(stored_files(&server).await, files);
    assert_eq!(
        download(&server, &service, "docs", "u1/x").await.1,
        b"from the link"
    );

    // Signing again for an existing object, without upsert: 409 at signing time.
    let (status, body) = sign_upload(&server, &u1, "docs", "u1/x", false).await;
    assert_error(status, &body, 409, "ResourceAlreadyExists");
}

#[tokio::test]
async fn signing_an_upload_the_policy_refuses_is_403_and_writes_nothing() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server.db.sql(OWNER_FOLDER).await;
    let u1 = server.user_key("u1");

    let (status, body) = sign_upload(&server, &u1, "docs", "u2/x", false).await;
    assert_error(status, &body, 403, "AccessDenied");
    let (status, body) = sign_upload(&server, &server.anon_key(), "docs", "u1/x", false).await;
    assert_error(status, &body, 403, "AccessDenied");
    assert!(row(&server, "docs", "u2/x").await.is_none());
    assert_eq!(stored_files(&server).await, 0);
    assert!(journal(&server).await.is_empty());

    let (status, body) = sign_upload(&server, &u1, "nope", "u1/x", false).await;
    assert_error(status, &body, 404, "NoSuchBucket");

    // A token for u1/x does not upload u2/x.
    let (status, body) = sign_upload(&server, &u1, "docs", "u1/x", false).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let (status, body) = put(
        &server,
        &format!("/object/upload/sign/docs/u2/x?token={token}"),
        b"sneaky",
    )
    .await;
    assert_error(status, &body, 400, "InvalidSignature");
    let (status, body) = put(&server, "/object/upload/sign/docs/u1/x", b"no token").await;
    assert_error(status, &body, 400, "InvalidJWT");
    assert!(row(&server, "docs", "u2/x").await.is_none());
    assert!(row(&server, "docs", "u1/x").await.is_none());
    assert_eq!(stored_files(&server).await, 0);
}

#[tokio::test]
async fn an_upsert_token_replaces_the_object() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server.db.sql(OWNER_FOLDER).await;
    let u1 = server.user_key("u1");
    let (status, body) = upload(&server, &u1, "docs", "u1/x", "v1", false).await;
    assert_eq!(status, 200, "{body}");
    let before = row(&server, "docs", "u1/x").await.unwrap();

    let (status, body) = sign_upload(&server, &u1, "docs", "u1/x", true).await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_string();
    for version in ["v2", "v3"] {
        let (status, body) = put(&server, &url, version.as_bytes()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["Id"], before.id.to_string(), "an upsert keeps the row");
        assert_eq!(
            download(&server, &u1, "docs", "u1/x").await.1,
            version.as_bytes()
        );
    }
    assert_eq!(
        row(&server, "docs", "u1/x")
            .await
            .unwrap()
            .owner_id
            .as_deref(),
        Some("u1")
    );

    // Without an UPDATE policy, signing an upsert of an existing object is refused.
    server
        .db
        .sql("drop policy own_update on storage.objects")
        .await;
    let (status, body) = sign_upload(&server, &u1, "docs", "u1/x", true).await;
    assert_error(status, &body, 403, "AccessDenied");
}

#[tokio::test]
async fn a_signed_upload_takes_a_multipart_form_and_a_json_signing_body() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server.db.sql(OWNER_FOLDER).await;
    let u1 = server.user_key("u1");

    // storage-js signs with a `{}` JSON body.
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/object/upload/sign/docs/u1/pic.png",
            Some(&u1),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_string();

    // storage3 uploads a multipart form with a `file` part.
    let data = random_bytes(20_000, 3);
    let form = reqwest::multipart::Form::new()
        .text("cacheControl", "120")
        .text("metadata", r#"{"from":"form"}"#)
        .part(
            "file",
            reqwest::multipart::Part::bytes(data.clone())
                .file_name("pic.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let (status, body) = json_of(
        call(&server, Method::PUT, &url, None)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "docs/u1/pic.png");
    let stored = row(&server, "docs", "u1/pic.png").await.unwrap();
    assert_eq!(stored.owner_id.as_deref(), Some("u1"));
    assert_eq!(stored.metadata["mimetype"], "image/png");
    assert_eq!(stored.metadata["cacheControl"], "max-age=120");
    assert_eq!(stored.metadata["size"], 20_000);
    assert_eq!(stored.user_metadata, Some(json!({"from": "form"})));
    assert_eq!(download(&server, &u1, "docs", "u1/pic.png").await.1, data);
}
