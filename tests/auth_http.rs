//! Credentials over HTTP: how a request's token becomes its database role, and every way a token
//! is refused (401 for a token that cannot be trusted, 403 for a role that may not be assumed,
//! 400 for a header that is not a bearer token). A refused request does nothing.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{JWT_SECRET, TestServer, json_of};
use pgstorage::auth::JwtKeys;
use reqwest::Method;
use serde_json::{Map, Value, json};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `role`, plus `extra` (e.g. `exp`, `nbf`).
fn claims(role: &str, extra: Value) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("role".into(), role.into());
    if let Value::Object(extra) = extra {
        claims.extend(extra);
    }
    claims
}

/// A token signed with the server's own secret.
fn signed(claims: Map<String, Value>) -> String {
    JwtKeys::new(JWT_SECRET.as_bytes())
        .sign(claims, None)
        .unwrap()
}

/// An unsigned token (`alg: none`), as an attacker would hand-build it.
fn unsigned(claims: Value) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// GET /bucket with the given headers, as (status, body).
async fn list_buckets(server: &TestServer, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = server.request(Method::GET, "/bucket", None);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    json_of(request.send().await.unwrap()).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Bucket ids in a GET /bucket answer.
fn ids(body: &Value) -> Vec<&str> {
    body.as_array()
        .unwrap_or_else(|| panic!("expected a list of buckets, got {body}"))
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect()
}

/// Asserts a 401 InvalidJWT answer whose message contains `why`.
fn assert_invalid_jwt((status, body): (u16, Value), why: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["statusCode"], "401", "{body}");
    assert_eq!(body["code"], "InvalidJWT", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(why), "expected {why:?} in {message:?}");
}

#[tokio::test]
async fn no_token_is_anon() {
    let server = TestServer::start().await;
    server.create_bucket("photos", false).await;

    // No policy: anon sees nothing, and that is not an error.
    let (status, body) = list_buckets(&server, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]));

    // A policy for anon alone makes the bucket visible to a request without credentials.
    server
        .db
        .sql("create policy anon_reads on storage.buckets for select to anon using (true)")
        .await;
    let (status, body) = list_buckets(&server, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["photos"]);
}

#[tokio::test]
async fn the_apikey_header_alone_is_enough() {
    let server = TestServer::start().await;
    server.create_bucket("photos", false).await;
    let (status, body) = list_buckets(&server, &[("apikey", &server.service_key())]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["photos"]);
}

#[tokio::test]
async fn authorization_wins_over_apikey() {
    let server = TestServer::start().await;
    server.create_bucket("photos", false).await;

    // The anon key as apikey, the service key as bearer: service_role.
    let (status, body) = list_buckets(
        &server,
        &[
            ("apikey", &server.anon_key()),
            ("authorization", &bearer(&server.service_key())),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["photos"]);

    // The other way round: anon, which sees nothing without a policy.
    let (status, body) = list_buckets(
        &server,
        &[
            ("apikey", &server.service_key()),
            ("authorization", &bearer(&server.anon_key())),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]));

    // An invalid bearer is not rescued by a valid apikey.
    let result = list_buckets(
        &server,
        &[
            ("apikey", &server.service_key()),
            ("authorization", "Bearer abc"),
        ],
    )
    .await;
    assert_invalid_jwt(result, "malformed");
}

#[tokio::test]
async fn malformed_tokens_are_401() {
    let server = TestServer::start().await;
    for token in ["abc", "a.b.c"] {
        let result = list_buckets(&server, &[("authorization", &bearer(token))]).await;
        assert_invalid_jwt(result, "malformed");
        let result = list_buckets(&server, &[("apikey", token)]).await;
        assert_invalid_jwt(result, "malformed");
    }
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let server = TestServer::start().await;
    let token = signed(claims("service_role", json!({ "exp": now() - 3600 })));
    let result = list_buckets(&server, &[("authorization", &bearer(&token))]).await;
    assert_invalid_jwt(result, "expired");
}

#[tokio::test]
async fn a_token_not_valid_yet_is_401() {
    let server = TestServer::start().await;
    let token = signed(claims(
        "service_role",
        json!({ "nbf": now() + 3600, "exp": now() + 7200 }),
    ));
    let result = list_buckets(&server, &[("authorization", &bearer(&token))]).await;
    assert_invalid_jwt(result, "not valid yet");
}

#[tokio::test]
async fn an_unsigned_token_is_401() {
    let server = TestServer::start().await;
    let token = unsigned(json!({ "role": "service_role" }));
    let result = list_buckets(&server, &[("authorization", &bearer(&token))]).await;
    assert_invalid_jwt(result, "algorithm");
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_401() {
    let server = TestServer::start().await;
    let token = JwtKeys::new(b"some-other-secret-some-other-secret")
        .sign(claims("service_role", json!({})), None)
        .unwrap();
    let result = list_buckets(&server, &[("authorization", &bearer(&token))]).await;
    assert_invalid_jwt(result, "signature");
}

#[tokio::test]
async fn a_valid_token_for_a_role_outside_the_allow_list_is_403() {
    let server = TestServer::start().await;
    for role in ["postgres", "supabase_admin", "pgstorage_authenticator"] {
        let token = signed(claims(role, json!({ "exp": now() + 3600 })));
        let (status, body) = list_buckets(&server, &[("authorization", &bearer(&token))]).await;
        assert_eq!(status, 403, "{role}: {body}");
        assert_eq!(body["statusCode"], "403", "{body}");
        assert_eq!(body["code"], "AccessDenied", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(role), "{message}");
    }
}

#[tokio::test]
async fn a_non_bearer_authorization_header_is_400() {
    let server = TestServer::start().await;
    for header in ["Basic x", "Bearer ", "abc"] {
        let (status, body) = list_buckets(&server, &[("authorization", header)]).await;
        assert_eq!(status, 400, "{header:?}: {body}");
        assert_eq!(body["statusCode"], "400", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("Bearer"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_refused_token_creates_nothing() {
    let server = TestServer::start().await;
    let forged = JwtKeys::new(b"some-other-secret-some-other-secret")
        .sign(claims("service_role", json!({})), None)
        .unwrap();
    let (status, body) = json_of(
        server
            .request(Method::POST, "/bucket", Some(&forged))
            .json(&json!({ "name": "forged" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = list_buckets(
        &server,
        &[("authorization", &bearer(&server.service_key()))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]));
}
