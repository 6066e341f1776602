//! The bucket API (`/bucket`), as Supabase Storage clients call it: bodies, answers, error codes
//! with their real HTTP statuses, and the same routes under `/storage/v1`.

mod common;

use common::{TestServer, json_of};
use reqwest::Method;
use serde_json::{Value, json};

/// A request as service_role with an optional JSON body, answered as (status, body).
async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_as(server, &server.service_key(), method, path, body).await
}

async fn call_as(
    server: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server.request(method, path, Some(key));
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.unwrap()).await
}

async fn create(server: &TestServer, body: Value) -> (u16, Value) {
    call(server, Method::POST, "/bucket", Some(body)).await
}

async fn get(server: &TestServer, id: &str) -> (u16, Value) {
    call(server, Method::GET, &format!("/bucket/{id}"), None).await
}

/// GET /bucket with a query string; the ids in the order answered.
async fn list_ids(server: &TestServer, query: &str) -> Vec<String> {
    let (status, body) = call(server, Method::GET, &format!("/bucket{query}"), None).await;
    assert_eq!(status, 200, "{query}: {body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts an error answer: the status and `code` (and that `statusCode` repeats the status).
fn assert_error((status, body): &(u16, Value), expected: u16, code: &str) {
    assert_eq!(*status, expected, "{body}");
    assert_eq!(body["statusCode"], expected.to_string(), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Inserts an object row as superuser (version NULL: no bytes, so the byte journal has no say).
async fn insert_object(server: &TestServer, bucket: &str, name: &str) {
    server
        .db
        .sql(&format!(
            "insert into storage.objects (bucket_id, name) values ('{bucket}', '{name}')"
        ))
        .await;
}

async fn object_count(server: &TestServer, bucket: &str) -> i64 {
    server
        .db
        .admin_client()
        .await
        .query_one(
            "select count(*) from storage.objects where bucket_id = $1",
            &[&bucket],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn create_answers_the_name() {
    let server = TestServer::start().await;
    let (status, body) = create(&server, json!({ "name": "avatars" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "name": "avatars" }));
}

#[tokio::test]
async fn get_answers_every_field() {
    let server = TestServer::start().await;
    let (status, _) = create(
        &server,
        json!({
            "name": "avatars",
            "public": true,
            "file_size_limit": 1024,
            "allowed_mime_types": ["image/png"],
        }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, bucket) = get(&server, "avatars").await;
    assert_eq!(status, 200, "{bucket}");
    assert_eq!(bucket["id"], "avatars");
    assert_eq!(bucket["name"], "avatars");
    // Created with the service key, which has no sub.
    assert_eq!(bucket["owner"], "");
    assert_eq!(bucket["public"], true);
    assert_eq!(bucket["file_size_limit"], 1024);
    assert_eq!(bucket["allowed_mime_types"], json!(["image/png"]));
    for field in ["created_at", "updated_at"] {
        let text = bucket[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {bucket}"));
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{field} {text}: {e}"));
    }
}

#[tokio::test]
async fn a_bucket_without_limits_has_null_limits_and_is_private() {
    let server = TestServer::start().await;
    create(&server, json!({ "name": "plain" })).await;
    let (_, bucket) = get(&server, "plain").await;
    assert_eq!(bucket["public"], false);
    assert_eq!(bucket["file_size_limit"], Value::Null);
    assert_eq!(bucket["allowed_mime_types"], Value::Null);
}

#[tokio::test]
async fn owner_comes_from_the_token_sub_never_from_the_body() {
    let server = TestServer::start().await;
    server
        .db
        .sql(
            "create policy users_create on storage.buckets for insert to authenticated \
                 with check (true)",
        )
        .await;
    let (status, body) = call_as(
        &server,
        &server.user_key("user-1"),
        Method::POST,
        "/bucket",
        Some(json!({ "name": "mine", "owner": "someone-else", "owner_id": "someone-else" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, bucket) = get(&server, "mine").await;
    assert_eq!(bucket["owner"], "user-1");
    assert_eq!(bucket["owner_id"], "user-1");

    // Without a sub there is no owner, whatever the body says.
    create(
        &server,
        json!({ "name": "theirs", "owner_id": "someone-else" }),
    )
    .await;
    let (_, bucket) = get(&server, "theirs").await;
    assert_eq!(bucket["owner"], "");
    assert_eq!(bucket["owner_id"], Value::Null);
}

#[tokio::test]
async fn file_size_limit_is_a_number_or_a_size_with_a_unit() {
    let server = TestServer::start().await;
    for (id, limit, expected) in [
        ("bytes", json!(1048576), 1048576),
        ("megabytes", json!("10MB"), 10_000_000),
        ("mebibytes", json!("1MiB"), 1_048_576),
    ] {
        let (status, body) = create(&server, json!({ "name": id, "file_size_limit": limit })).await;
        assert_eq!(status, 200, "{id}: {body}");
        let (_, bucket) = get(&server, id).await;
        assert_eq!(bucket["file_size_limit"], expected, "{id}");
    }
}

#[tokio::test]
async fn an_invalid_file_size_limit_is_400() {
    let server = TestServer::start().await;
    for limit in [json!("ten"), json!(-1), json!(0), json!(1.5), json!(true)] {
        let result = create(&server, json!({ "name": "b", "file_size_limit": limit })).await;
        assert_error(&result, 400, "InvalidRequest");
    }
    assert_eq!(list_ids(&server, "").await, Vec::<String>::new());
}

#[tokio::test]
async fn allowed_mime_types_must_be_type_slash_subtype_or_wildcard() {
    let server = TestServer::start().await;
    let (status, body) = create(
        &server,
        json!({ "name": "images", "allowed_mime_types": ["image/png", "image/*"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, bucket) = get(&server, "images").await;
    assert_eq!(
        bucket["allowed_mime_types"],
        json!(["image/png", "image/*"])
    );

    for types in [
        json!(["png"]),
        json!(["image/png; charset=x"]),
        json!([""]),
        json!(["/png"]),
    ] {
        let result = create(
            &server,
            json!({ "name": "bad", "allowed_mime_types": types }),
        )
        .await;
        assert_error(&result, 400, "InvalidRequest");
        assert!(
            result.1["message"].as_str().unwrap().contains("mime type"),
            "{}",
            result.1
        );
    }
    assert_error(&get(&server, "bad").await, 404, "NoSuchBucket");
}

#[tokio::test]
async fn a_duplicate_bucket_is_409() {
    let server = TestServer::start().await;
    server.create_bucket("avatars", false).await;
    let result = create(&server, json!({ "name": "avatars", "public": true })).await;
    assert_error(&result, 409, "BucketAlreadyExists");
    assert_eq!(result.1["error"], "Duplicate");
    // The first one is untouched.
    assert_eq!(get(&server, "avatars").await.1["public"], false);
}

#[tokio::test]
async fn invalid_bucket_names_are_400() {
    let server = TestServer::start().await;
    for name in [
        String::new(),
        "a/b".into(),
        "a".repeat(101),
        "..".into(),
        ".".into(),
    ] {
        let result = create(&server, json!({ "name": name })).await;
        assert_error(&result, 400, "InvalidBucketName");
    }
    // 100 characters is still fine.
    let (status, body) = create(&server, json!({ "name": "a".repeat(100) })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(list_ids(&server, "").await, ["a".repeat(100)]);
}

#[tokio::test]
async fn a_body_without_a_name_is_400() {
    let server = TestServer::start().await;
    assert_error(
        &create(&server, json!({ "public": true })).await,
        400,
        "InvalidRequest",
    );
    let response = server
        .request(Method::POST, "/bucket", Some(&server.service_key()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(&json_of(response).await, 400, "InvalidRequest");
}

#[tokio::test]
async fn list_sorts_searches_and_pages() {
    let server = TestServer::start().await;
    for id in ["cats", "dogs", "cat-pics", "birds"] {
        server.create_bucket(id, false).await;
    }
    assert_eq!(
        list_ids(&server, "").await,
        ["birds", "cat-pics", "cats", "dogs"]
    );
    assert_eq!(
        list_ids(&server, "?sortColumn=name&sortOrder=desc").await,
        ["dogs", "cats", "cat-pics", "birds"]
    );
    assert_eq!(
        list_ids(&server, "?sortColumn=id&sortOrder=asc&limit=2&offset=1").await,
        ["cat-pics", "cats"]
    );
    assert_eq!(list_ids(&server, "?search=CAT").await, ["cat-pics", "cats"]);
    assert_eq!(list_ids(&server, "?search=cat&limit=1").await, ["cat-pics"]);
    assert_eq!(list_ids(&server, "?offset=10").await, Vec::<String>::new());
    // Creation order, newest first.
    assert_eq!(
        list_ids(&server, "?sortColumn=created_at&sortOrder=desc").await,
        ["birds", "cat-pics", "dogs", "cats"]
    );
}

#[tokio::test]
async fn an_unknown_sort_column_or_order_is_400() {
    let server = TestServer::start().await;
    for query in [
        "?sortColumn=owner_id",
        "?sortColumn=name;drop",
        "?sortOrder=sideways",
    ] {
        let result = call(&server, Method::GET, &format!("/bucket{query}"), None).await;
        assert_error(&result, 400, "InvalidRequest");
    }
}

#[tokio::test]
async fn update_changes_public_and_limits() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let (status, body) = call(
        &server,
        Method::PUT,
        "/bucket/docs",
        Some(json!({
            "public": true,
            "file_size_limit": "5MB",
            "allowed_mime_types": ["application/pdf"],
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "message": "Successfully updated" }));
    let (_, bucket) = get(&server, "docs").await;
    assert_eq!(bucket["public"], true);
    assert_eq!(bucket["file_size_limit"], 5_000_000);
    assert_eq!(bucket["allowed_mime_types"], json!(["application/pdf"]));
}

#[tokio::test]
async fn update_clears_a_limit_given_as_null_and_keeps_an_absent_one() {
    let server = TestServer::start().await;
    create(
        &server,
        json!({ "name": "docs", "file_size_limit": 100, "allowed_mime_types": ["text/plain"] }),
    )
    .await;

    // Absent fields stay as they were.
    let (status, body) = call(
        &server,
        Method::PUT,
        "/bucket/docs",
        Some(json!({ "public": true })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, bucket) = get(&server, "docs").await;
    assert_eq!(bucket["public"], true);
    assert_eq!(bucket["file_size_limit"], 100);
    assert_eq!(bucket["allowed_mime_types"], json!(["text/plain"]));

    // null clears the size limit only.
    call(
        &server,
        Method::PUT,
        "/bucket/docs",
        Some(json!({ "file_size_limit": null })),
    )
    .await;
    let (_, bucket) = get(&server, "docs").await;
    assert_eq!(bucket["file_size_limit"], Value::Null);
    assert_eq!(bucket["allowed_mime_types"], json!(["text/plain"]));
    assert_eq!(bucket["public"], true);

    call(
        &server,
        Method::PUT,
        "/bucket/docs",
        Some(json!({ "allowed_mime_types": null })),
    )
    .await;
    let (_, bucket) = get(&server, "docs").await;
    assert_eq!(bucket["allowed_mime_types"], Value::Null);
}

#[tokio::test]
async fn update_validates_like_create() {
    let server = TestServer::start().await;
    create(&server, json!({ "name": "docs", "file_size_limit": 100 })).await;
    for body in [
        json!({ "file_size_limit": "ten" }),
        json!({ "allowed_mime_types": ["png"] }),
    ] {
        let result = call(&server, Method::PUT, "/bucket/docs", Some(body)).await;
        assert_error(&result, 400, "InvalidRequest");
    }
    assert_eq!(get(&server, "docs").await.1["file_size_limit"], 100);
}

#[tokio::test]
async fn update_of_a_missing_bucket_is_404() {
    let server = TestServer::start().await;
    let result = call(
        &server,
        Method::PUT,
        "/bucket/nope",
        Some(json!({ "public": true })),
    )
    .await;
    assert_error(&result, 404, "NoSuchBucket");
}

#[tokio::test]
async fn get_of_a_missing_bucket_is_404() {
    let server = TestServer::start().await;
    let result = get(&server, "nope").await;
    assert_error(&result, 404, "NoSuchBucket");
}

#[tokio::test]
async fn delete_removes_the_bucket() {
    let server = TestServer::start().await;
    server.create_bucket("old", false).await;
    let (status, body) = call(&server, Method::DELETE, "/bucket/old", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "message": "Successfully deleted" }));
    assert_error(&get(&server, "old").await, 404, "NoSuchBucket");
    assert_error(
        &call(&server, Method::DELETE, "/bucket/old", None).await,
        404,
        "NoSuchBucket",
    );
}

#[tokio::test]
async fn delete_of_a_bucket_with_objects_is_409() {
    let server = TestServer::start().await;
    server.create_bucket("full", false).await;
    insert_object(&server, "full", "a.txt").await;
    let result = call(&server, Method::DELETE, "/bucket/full", None).await;
    assert_error(&result, 409, "ResourceNotEmpty");
    assert_eq!(get(&server, "full").await.0, 200);
    assert_eq!(object_count(&server, "full").await, 1);
}

#[tokio::test]
async fn empty_removes_the_objects_and_releases_their_bytes() {
    let server = TestServer::start().await;
    server.create_bucket("full", false).await;
    server.create_bucket("other", false).await;
    insert_object(&server, "full", "a.txt").await;
    insert_object(&server, "full", "dir/b.txt").await;
    insert_object(&server, "other", "keep.txt").await;
    // One object with bytes: its key is staged first, as the server would.
    server
        .db
        .sql(
            "insert into storage.byte_journal (key, state, lease_until) \
                 values ('k1', 'staged', now() + interval '1 hour'); \
             insert into storage.objects (bucket_id, name, version) values ('full', 'c.bin', 'k1')",
        )
        .await;

    let (status, body) = call(&server, Method::POST, "/bucket/full/empty", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "message": "Successfully emptied" }));
    assert_eq!(object_count(&server, "full").await, 0);
    assert_eq!(object_count(&server, "other").await, 1);
    let state: String = server
        .db
        .admin_client()
        .await
        .query_one(
            "select state from storage.byte_journal where key = 'k1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "released");

    // Now empty, it can be deleted.
    assert_eq!(
        call(&server, Method::DELETE, "/bucket/full", None).await.0,
        200
    );
}

#[tokio::test]
async fn empty_of_a_missing_bucket_is_404() {
    let server = TestServer::start().await;
    let result = call(&server, Method::POST, "/bucket/nope/empty", None).await;
    assert_error(&result, 404, "NoSuchBucket");
}

#[tokio::test]
async fn every_route_also_works_under_storage_v1() {
    let server = TestServer::start().await;
    let p = "/storage/v1";
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("{p}/bucket"),
        Some(json!({ "name": "b" })),
    )
    .await;
    assert_eq!((status, body), (200, json!({ "name": "b" })));
    assert_eq!(list_ids(&server, "").await, ["b"]);
    let (status, body) = call(&server, Method::GET, &format!("{p}/bucket"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body[0]["id"], "b");
    let (status, body) = call(&server, Method::GET, &format!("{p}/bucket/b"), None).await;
    assert_eq!((status, body["id"].clone()), (200, json!("b")));
    let (status, _) = call(
        &server,
        Method::PUT,
        &format!("{p}/bucket/b"),
        Some(json!({ "public": true })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(&server, "b").await.1["public"], true);
    insert_object(&server, "b", "x").await;
    let (status, _) = call(&server, Method::POST, &format!("{p}/bucket/b/empty"), None).await;
    assert_eq!(status, 200);
    assert_eq!(object_count(&server, "b").await, 0);
    let (status, _) = call(&server, Method::DELETE, &format!("{p}/bucket/b"), None).await;
    assert_eq!(status, 200);
    assert_error(&get(&server, "b").await, 404, "NoSuchBucket");
    for path in [format!("{p}/status"), format!("{p}/health")] {
        assert_eq!(
            call(&server, Method::GET, &path, None).await.0,
            200,
            "{path}"
        );
    }
    assert_error(
        &call(&server, Method::GET, &format!("{p}/bucket/nope"), None).await,
        404,
        "NoSuchBucket",
    );
}

#[tokio::test]
async fn status_and_health_answer_without_credentials() {
    let server = TestServer::start().await;
    let (status, _) = json_of(
        server
            .request(Method::GET, "/status", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = json_of(
        server
            .request(Method::GET, "/health", None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.is_object(), "health is JSON: {body}");
    assert_eq!(body["healthy"], true, "{body}");
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let server = TestServer::start().await;
    for path in ["/nope", "/storage/v1/nope", "/bucket/a/b/c"] {
        let response = server
            .request(Method::GET, path, None)
            .send()
            .await
            .unwrap();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
        let result = json_of(response).await;
        assert_error(&result, 404, "NotFound");
    }
}
