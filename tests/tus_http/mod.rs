//! Raw-HTTP helpers shared by the resumable-upload (TUS) test files.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, Response};

use crate::common::TestServer;

pub const OCTETS: &str = "application/offset+octet-stream";

pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn metadata(bucket: &str, name: &str, extra: &[(&str, &str)]) -> String {
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
pub async fn create(
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
pub fn path_of(server: &TestServer, response: &Response) -> String {
    let location = response.headers()["location"].to_str().unwrap().to_string();
    location
        .strip_prefix(&server.url)
        .unwrap_or_else(|| panic!("Location {location} is not on {}", server.url))
        .to_string()
}

pub async fn created(
    server: &TestServer,
    key: Option<&str>,
    meta: &str,
    length: Option<u64>,
) -> String {
    let response = create(server, key, meta, length).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    path_of(server, &response)
}

pub fn patch(
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

pub async fn head(server: &TestServer, key: Option<&str>, path: &str) -> Response {
    server
        .request(Method::HEAD, path, key)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap()
}

pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

pub async fn download(server: &TestServer, bucket: &str, name: &str) -> (u16, Vec<u8>) {
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

pub async fn setup() -> TestServer {
    let server = TestServer::start().await;
    server.create_bucket("up", false).await;
    server
}
