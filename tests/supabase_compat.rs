//! Supabase Storage behaviours that clients rely on beyond the common calls: `/version`, the
//! headers of the info routes, and copy with its own `metadata`.

mod common;
mod object_helpers;

use common::{TestServer, json_of};
use object_helpers::{b64, call, download, row, upload};
use reqwest::Method;
use reqwest::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use serde_json::{Value, json};

#[tokio::test]
async fn version_answers_the_servers_version_as_text() {
    let server = TestServer::start().await;
    for path in ["/version", "/storage/v1/version"] {
        let response = call(&server, Method::GET, path, None).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(response.text().await.unwrap(), env!("CARGO_PKG_VERSION"));
    }
}

/// A header of a response as text ("" when absent).
fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn info_routes_send_the_objects_headers_on_get_and_head() {
    let server = TestServer::start().await;
    server.create_bucket("pub", true).await;
    server
        .db
        .sql(
            "create policy anyone_reads on storage.objects for select to anon \
             using (bucket_id = 'pub')",
        )
        .await;
    let key = server.service_key();
    let response = call(&server, Method::POST, "/object/pub/docs/a.csv", Some(&key))
        .header(CONTENT_TYPE, "text/csv")
        .header(CACHE_CONTROL, "max-age=120")
        .body("x,y\n1,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let download = call(
        &server,
        Method::HEAD,
        "/object/authenticated/pub/docs/a.csv",
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(header(&download, "x-robots-tag".parse().unwrap()), "none");
    let etag = header(&download, ETAG);
    let modified = header(&download, LAST_MODIFIED);
    assert!(!etag.is_empty() && !modified.is_empty());

    for path in [
        "/object/info/authenticated/pub/docs/a.csv",
        "/object/info/public/pub/docs/a.csv",
        "/object/info/pub/docs/a.csv",
        "/storage/v1/object/info/authenticated/pub/docs/a.csv",
    ] {
        // GET: the JSON, with the object's validators and cache control.
        let response = call(&server, Method::GET, path, Some(&key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, ETAG), etag, "{path}");
        assert_eq!(header(&response, LAST_MODIFIED), modified, "{path}");
        assert_eq!(header(&response, CACHE_CONTROL), "max-age=120", "{path}");
        assert!(header(&response, CONTENT_TYPE).starts_with("application/json"));
        let length: usize = header(&response, CONTENT_LENGTH).parse().unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(length, body.to_string().len(), "{path}");
        assert_eq!(body["size"], 8);
        assert_eq!(body["etag"].as_str(), Some(etag.as_str()));

        // HEAD: the object's headers, as HEAD on the download route sends them.
        let response = call(&server, Method::HEAD, path, Some(&key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, ETAG), etag, "{path}");
        assert_eq!(header(&response, LAST_MODIFIED), modified, "{path}");
        assert_eq!(header(&response, CACHE_CONTROL), "max-age=120", "{path}");
        assert_eq!(header(&response, CONTENT_TYPE), "text/csv", "{path}");
        assert_eq!(header(&response, CONTENT_LENGTH), "8", "{path}");
    }

    // Missing objects answer 404 on both methods.
    let missing = "/object/info/authenticated/pub/docs/none.csv";
    let (status, body) = json_of(
        call(&server, Method::GET, missing, Some(&key))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (404, json!("NoSuchKey")));
    let response = call(&server, Method::HEAD, missing, Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

async fn copy(server: &TestServer, key: &str, body: Value) -> (u16, Value) {
    json_of(
        call(server, Method::POST, "/object/copy", Some(key))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn copy_with_metadata_sets_the_copys_cache_control_and_content_type() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();
    let response = call(&server, Method::POST, "/object/docs/src.txt", Some(&key))
        .header(CONTENT_TYPE, "text/plain")
        .header(CACHE_CONTROL, "max-age=10")
        .header("x-metadata", b64(r#"{"tag":"original"}"#))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (status, body) = copy(
        &server,
        &key,
        json!({
            "bucketId": "docs",
            "sourceKey": "src.txt",
            "destinationKey": "dst.md",
            "copyMetadata": false,
            "metadata": {"cacheControl": "max-age=3600", "mimetype": "text/markdown"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "docs/dst.md");
    assert_eq!(body["metadata"]["mimetype"], "text/markdown");
    let copied = row(&server, "docs", "dst.md").await.unwrap();
    assert_eq!(copied.metadata["cacheControl"], "max-age=3600");
    assert_eq!(copied.metadata["mimetype"], "text/markdown");
    assert_eq!(
        copied.user_metadata, None,
        "copyMetadata: false drops the user metadata"
    );
    let response = call(
        &server,
        Method::GET,
        "/object/authenticated/docs/dst.md",
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(header(&response, CACHE_CONTROL), "max-age=3600");
    assert_eq!(header(&response, CONTENT_TYPE), "text/markdown");
    assert_eq!(response.text().await.unwrap(), "hello");
    // The source is untouched.
    let source = row(&server, "docs", "src.txt").await.unwrap();
    assert_eq!(source.metadata["cacheControl"], "max-age=10");
    assert_eq!(source.metadata["mimetype"], "text/plain");

    // Only one of the two: the other is the source's. Whole seconds become max-age.
    let (status, body) = copy(
        &server,
        &key,
        json!({
            "bucketId": "docs",
            "sourceKey": "src.txt",
            "destinationKey": "dst2.txt",
            "copyMetadata": false,
            "metadata": {"cacheControl": "60"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let copied = row(&server, "docs", "dst2.txt").await.unwrap();
    assert_eq!(copied.metadata["cacheControl"], "max-age=60");
    assert_eq!(copied.metadata["mimetype"], "text/plain");

    // A type given with the copy must be one the bucket allows, as for an upload.
    server
        .db
        .sql("update storage.buckets set allowed_mime_types = '{text/*}' where id = 'docs'")
        .await;
    let (status, body) = copy(
        &server,
        &key,
        json!({
            "bucketId": "docs",
            "sourceKey": "src.txt",
            "destinationKey": "dst3.png",
            "copyMetadata": false,
            "metadata": {"mimetype": "image/png"},
        }),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert!(row(&server, "docs", "dst3.png").await.is_none());
}

#[tokio::test]
async fn copy_refuses_what_it_would_not_apply() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();
    assert_eq!(
        upload(&server, &key, "docs", "src.txt", "hello", false)
            .await
            .0,
        200
    );
    let base = json!({"bucketId": "docs", "sourceKey": "src.txt", "destinationKey": "dst.txt"});
    let with = |extra: Value| {
        let mut body = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, needle) in [
        (with(json!({"sourceVersionId": "v1"})), "sourceVersionId"),
        (with(json!({"destinationkey": "x"})), "destinationkey"),
        (
            with(json!({"copyMetadata": false, "metadata": {"contentEncoding": "gzip"}})),
            "contentEncoding",
        ),
        (
            with(json!({"metadata": {"cacheControl": "no-store"}})),
            "copyMetadata: false",
        ),
        (
            with(json!({"copyMetadata": false, "metadata": {"mimetype": "text/plain\nx: y"}})),
            "metadata.mimetype",
        ),
        (
            with(json!({"copyMetadata": false, "metadata": {"cacheControl": ""}})),
            "metadata.cacheControl",
        ),
    ] {
        let (status, answer) = copy(&server, &key, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{body} -> {answer}"
        );
    }
    assert!(row(&server, "docs", "dst.txt").await.is_none());
    assert_eq!(
        download(&server, &key, "docs", "src.txt").await,
        (200, b"hello".to_vec())
    );
}

#[tokio::test]
async fn names_with_empty_segments_are_refused_on_every_route() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();
    let (status, body) = upload(&server, &key, "docs", "a///child.txt", "x", false).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "InvalidKey", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("empty segments"),
        "{body}"
    );
    assert_eq!(
        upload(&server, &key, "docs", "a/child.txt", "x", false)
            .await
            .0,
        200
    );
    for route in ["/object/copy", "/object/move"] {
        let (status, body) = json_of(
            call(&server, Method::POST, route, Some(&key))
                .json(&json!({
                    "bucketId": "docs",
                    "sourceKey": "a/child.txt",
                    "destinationKey": "a///child.txt",
                }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["code"].clone()),
            (400, json!("InvalidKey")),
            "{route}: {body}"
        );
    }
    assert!(row(&server, "docs", "a///child.txt").await.is_none());
    assert!(row(&server, "docs", "a/child.txt").await.is_some());
}
