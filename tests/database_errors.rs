//! PostgreSQL's own error text never reaches a client: input the database refuses answers a
//! clean 4xx with a message of ours, and the database's words go to the log with the request id.

mod common;
mod object_helpers;

use common::{JWT_SECRET, TestServer, json_of};
use object_helpers::{b64, call};
use pgstorage::auth::JwtKeys;
use reqwest::Method;
use serde_json::{Map, Value, json};

/// Bits of PostgreSQL's wording (and of the driver's) that must not show in an answer.
const DATABASE_WORDS: &[&str] = &[
    "invalid byte sequence",
    "UTF8",
    "0x00",
    "unsupported Unicode escape",
    "db error",
    "ERROR",
    "jsonb",
    "\\u0000",
    "storage.",
];

fn assert_clean(body: &Value) {
    let text = body.to_string();
    for word in DATABASE_WORDS {
        assert!(!text.contains(word), "{word:?} reached the client: {body}");
    }
}

fn token_with(claims: Value) -> String {
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    let claims: Map<String, Value> = claims;
    JwtKeys::new(JWT_SECRET.as_bytes())
        .sign(claims, None)
        .unwrap()
}

/// A token whose `sub` (or any claim) holds NUL cannot be turned into the policies' settings:
/// it is refused as a token, 401 with our own message, before any SQL runs.
#[tokio::test]
async fn a_token_with_nul_in_its_claims_is_a_clean_401() {
    let server = TestServer::start().await;
    server.create_bucket("docs", true).await;
    for claims in [
        json!({ "role": "authenticated", "sub": "user\u{0}1" }),
        json!({ "role": "authenticated", "sub": "u", "app_metadata": { "tags": ["a\u{0}"] } }),
        json!({ "role": "authenticated", "sub": "u", "odd\u{0}key": 1 }),
    ] {
        let token = token_with(claims.clone());
        for (method, path) in [
            (Method::GET, "/bucket"),
            (Method::POST, "/object/list/docs"),
            (Method::GET, "/object/authenticated/docs/a.txt"),
        ] {
            let mut request = call(&server, method.clone(), path, Some(&token));
            if method == Method::POST {
                request = request.json(&json!({ "prefix": "" }));
            }
            let (status, body) = json_of(request.send().await.unwrap()).await;
            assert_eq!(status, 401, "{claims} {path}: {body}");
            assert_eq!(body["code"], "InvalidJWT", "{body}");
            assert!(body["message"].as_str().unwrap().contains("NUL"), "{body}");
            assert_clean(&body);
        }
    }
}

/// Values the database cannot store (NUL in text or in JSON) answer 400 with our wording.
#[tokio::test]
async fn values_the_database_refuses_answer_in_our_words() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let key = server.service_key();

    // NUL inside the user metadata (jsonb cannot hold \u0000).
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/docs/meta.txt", Some(&key))
            .header("content-type", "text/plain")
            .header("x-metadata", b64(r#"{"k":"a\u0000b"}"#))
            .body("hello")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_clean(&body);
    let (status, _) = json_of(
        call(
            &server,
            Method::GET,
            "/object/info/docs/meta.txt",
            Some(&key),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "nothing is stored");

    // NUL in a listing's search text.
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/list/docs", Some(&key))
            .json(&json!({ "prefix": "", "search": "a\u{0}b" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(status == 400 || status == 200, "{status} {body}");
    assert_clean(&body);

    // NUL in a bucket's name.
    let (status, body) = json_of(
        call(&server, Method::POST, "/bucket", Some(&key))
            .json(&json!({ "name": "a\u{0}b" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_clean(&body);
}

/// A refusal by a policy reads as Supabase words it, without naming the table.
#[tokio::test]
async fn a_policy_refusal_does_not_name_the_table() {
    let server = TestServer::start().await;
    let (status, body) = json_of(
        call(&server, Method::POST, "/bucket", Some(&server.anon_key()))
            .json(&json!({ "name": "guestbook" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Supabase's wording first; then what was refused, for whom (see tests/policy_check.rs).
    assert_eq!(
        body["message"],
        "new row violates row-level security policy \
         (refused storage.bucket.create as role anon, no sub)",
        "{body}"
    );
}
