//! The checksum extension: `Upload-Checksum: <algorithm> <base64 digest>` covers one request's
//! bytes. The body is hashed as it streams; when its digest differs, the stream ends in an error
//! instead of ending cleanly, so the core discards the part as it discards any broken body, and
//! the handler answers 460.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::protocol::bad_request;
use crate::bytes::ByteStream;
use crate::http::ApiError;

enum Hasher {
    Sha1(Sha1),
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// A checksum a request announced.
pub struct Expected {
    hasher: Hasher,
    digest: Vec<u8>,
}

/// Reads `Upload-Checksum`; an algorithm other than sha1, md5, sha256 is a 400.
pub fn expected(headers: &HeaderMap) -> Result<Option<Expected>, ApiError> {
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| bad_request("the Upload-Checksum header is not valid text"))?;
    let (algorithm, encoded) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad_request("Upload-Checksum must be '<algorithm> <base64 digest>'"))?;
    let hasher = match algorithm.to_ascii_lowercase().as_str() {
        "sha1" => Hasher::Sha1(Sha1::new()),
        "md5" => Hasher::Md5(Md5::new()),
        "sha256" => Hasher::Sha256(Sha256::new()),
        other => {
            return Err(bad_request(format!(
                "checksum algorithm {other} is not supported (sha1, md5, sha256 are)"
            )));
        }
    };
    let digest = STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad_request("the Upload-Checksum digest is not base64"))?;
    Ok(Some(Expected { hasher, digest }))
}

/// Wraps `body` so that it fails at its end when its digest is not `expected`'s; the flag says
/// whether that happened.
pub fn verified(body: ByteStream, expected: Expected) -> (ByteStream, Arc<AtomicBool>) {
    let mismatch = Arc::new(AtomicBool::new(false));
    let flag = mismatch.clone();
    let state = (body, Some(expected));
    let stream = futures::stream::unfold(state, move |(mut body, expected)| {
        let flag = flag.clone();
        async move {
            let mut expected = expected?;
            match body.next().await {
                Some(Ok(chunk)) => {
                    expected.hasher.update(&chunk);
                    Some((Ok(chunk), (body, Some(expected))))
                }
                Some(Err(error)) => Some((Err(error), (body, None))),
                None => {
                    if expected.hasher.finish() == expected.digest {
                        None
                    } else {
                        flag.store(true, Ordering::SeqCst);
                        let error = io::Error::other("the body does not match Upload-Checksum");
                        Some((Err(error), (body, None)))
                    }
                }
            }
        }
    });
    (stream.boxed(), mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn run(data: &'static [u8], header: &str) -> (bool, bool) {
        let mut headers = HeaderMap::new();
        headers.insert("upload-checksum", header.parse().unwrap());
        let expected = expected(&headers).unwrap().unwrap();
        let body = futures::stream::iter([Ok(Bytes::from_static(data))]).boxed();
        let (stream, flag) = verified(body, expected);
        let results: Vec<_> = stream.collect().await;
        (
            results.iter().all(Result::is_ok),
            flag.load(Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn a_matching_digest_passes_and_a_wrong_one_fails_at_the_end() {
        let good = format!("sha1 {}", STANDARD.encode(Sha1::digest(b"hello")));
        assert_eq!(run(b"hello", &good).await, (true, false));
        let bad = format!("sha256 {}", STANDARD.encode(Sha256::digest(b"other")));
        assert_eq!(run(b"hello", &bad).await, (false, true));
    }
}
