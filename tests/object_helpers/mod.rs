//! Helpers shared by the object route tests: what is in the byte store, in the journal and in
//! the row.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TestServer, json_of};

/// Longest a single raw request may take.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// How many keys hold bytes in the server's byte store (whichever backend it runs on).
pub async fn stored_files(server: &TestServer) -> usize {
    server.stored_keys().await
}

/// The byte journal as (key, state), oldest first.
pub async fn journal(server: &TestServer) -> Vec<(String, String)> {
    server
        .db
        .admin_client()
        .await
        .query(
            "select key, state from storage.byte_journal order by recorded_at, key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// An object's row as superuser sees it.
pub struct Row {
    pub id: uuid::Uuid,
    pub version: Option<String>,
    pub owner_id: Option<String>,
    pub metadata: Value,
    pub user_metadata: Option<Value>,
}

pub async fn row(server: &TestServer, bucket: &str, name: &str) -> Option<Row> {
    server
        .db
        .admin_client()
        .await
        .query_opt(
            "select id, version, owner_id, metadata, user_metadata from storage.objects \
             where bucket_id = $1 and name = $2",
            &[&bucket, &name],
        )
        .await
        .unwrap()
        .map(|r| Row {
            id: r.get(0),
            version: r.get(1),
            owner_id: r.get(2),
            metadata: r.get::<_, Option<Value>>(3).unwrap_or(Value::Null),
            user_metadata: r.get(4),
        })
}

/// Object names in `bucket`, sorted.
pub async fn names(server: &TestServer, bucket: &str) -> Vec<String> {
    server
        .db
        .admin_client()
        .await
        .query(
            "select name from storage.objects where bucket_id = $1 order by name",
            &[&bucket],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Percent-encodes an object name for a URL path, keeping its `/` separators.
pub fn enc(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(md5::Md5::digest(bytes))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// How long any one HTTP exchange in these tests may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A request as `key`, bounded by [`HTTP_TIMEOUT`].
pub fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    key: Option<&str>,
) -> reqwest::RequestBuilder {
    server.request(method, path, key).timeout(HTTP_TIMEOUT)
}

/// POST (or with `upsert`, POST + `x-upsert: true`) a raw body as `key`.
pub async fn upload(
    server: &TestServer,
    key: &str,
    bucket: &str,
    name: &str,
    body: impl Into<Vec<u8>>,
    upsert: bool,
) -> (u16, Value) {
    let mut request = call(
        server,
        Method::POST,
        &format!("/object/{bucket}/{}", enc(name)),
        Some(key),
    )
    .body(body.into());
    if upsert {
        request = request.header("x-upsert", "true");
    }
    json_of(request.send().await.unwrap()).await
}

/// GET the object through the authenticated route: (status, body bytes).
pub async fn download(server: &TestServer, key: &str, bucket: &str, name: &str) -> (u16, Vec<u8>) {
    let response = call(
        server,
        Method::GET,
        &format!("/object/authenticated/{bucket}/{}", enc(name)),
        Some(key),
    )
    .send()
    .await
    .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// A raw HTTP/1.1 request, with the path sent exactly as given (reqwest normalises `.` and
/// `..` segments away). Returns the status and the body as text.
pub async fn raw_request(
    server: &TestServer,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let address = server.url.trim_start_matches("http://").to_string();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if let Some(key) = key {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(RAW_TIMEOUT, exchange)
        .await
        .expect("raw request timed out");
    let text = String::from_utf8_lossy(&response).to_string();
    let status_line = text.lines().next().unwrap_or_default().to_string();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
