//! The TUS 1.0 wire format: the headers a request carries, Supabase's `Upload-Metadata` keys,
//! and the upload URL's id (`base64url(bucket/name/upload id)`, the form Supabase returns).

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::http::ApiError;

pub const TUS_VERSION: &str = "1.0.0";
pub const TUS_EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum";
pub const CHECKSUM_ALGORITHMS: &str = "sha1,md5,sha256";
/// The media type of every PATCH body (and of a POST that carries the first bytes).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// TUS's status for a checksum mismatch (the checksum extension).
pub const CHECKSUM_MISMATCH: u16 = 460;

pub fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| bad_request(format!("the {name} header is not valid text")))
        })
        .transpose()
}

/// Every request but OPTIONS names the protocol version; only 1.0.0 is spoken.
pub fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match text(headers, "tus-resumable")? {
        Some(TUS_VERSION) => Ok(()),
        Some(other) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "InvalidRequest",
            "InvalidRequest",
            format!("Tus-Resumable {other} is not supported; this server speaks {TUS_VERSION}"),
        )),
        None => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "InvalidRequest",
            "InvalidRequest",
            "the Tus-Resumable header is required",
        )),
    }
}

/// A non-negative integer header (`Upload-Length`, `Upload-Offset`).
pub fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    text(headers, name)?
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                bad_request(format!(
                    "the {name} header must be a non-negative integer, got {v:?}"
                ))
            })
        })
        .transpose()
}

/// `Upload-Defer-Length: 1`; any other value is an error.
pub fn defer_length(headers: &HeaderMap) -> Result<bool, ApiError> {
    match text(headers, "upload-defer-length")? {
        None => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(bad_request(format!(
            "Upload-Defer-Length must be 1, got {other:?}"
        ))),
    }
}

pub fn content_type_is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

pub fn upsert(headers: &HeaderMap) -> bool {
    headers
        .get("x-upsert")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Supabase's keys of `Upload-Metadata`.
#[derive(Debug, Default, Clone)]
pub struct Metadata {
    pub bucket: String,
    pub name: String,
    pub content_type: Option<String>,
    /// Already in header form: `max-age=N` from a number of seconds, else `no-cache`.
    pub cache_control: String,
    pub user_metadata: Option<Value>,
}

/// Parses `Upload-Metadata`: comma-separated `key base64(value)` pairs (a value may be absent).
pub fn parse_metadata(headers: &HeaderMap) -> Result<Metadata, ApiError> {
    let raw = text(headers, "upload-metadata")?
        .ok_or_else(|| bad_request("Upload-Metadata with bucketName and objectName is required"))?;
    let mut meta = Metadata {
        cache_control: "no-cache".into(),
        ..Metadata::default()
    };
    let (mut bucket, mut name) = (None, None);
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = pair.split(' ').filter(|w| !w.is_empty());
        let key = words.next().unwrap_or_default();
        let value = match words.next() {
            Some(encoded) => {
                let bytes = STANDARD.decode(encoded).map_err(|_| {
                    bad_request(format!("Upload-Metadata: the value of {key} is not base64"))
                })?;
                String::from_utf8(bytes).map_err(|_| {
                    bad_request(format!("Upload-Metadata: the value of {key} is not UTF-8"))
                })?
            }
            None => String::new(),
        };
        if words.next().is_some() {
            return Err(bad_request(format!(
                "Upload-Metadata: the pair {key:?} has more than a key and a value"
            )));
        }
        match key {
            "bucketName" => bucket = Some(value),
            "objectName" => name = Some(value),
            "contentType" if !value.is_empty() => meta.content_type = Some(value),
            "cacheControl" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                meta.cache_control = format!("max-age={value}");
            }
            "metadata" if !value.is_empty() => {
                let json: Value = serde_json::from_str(&value).map_err(|e| {
                    bad_request(format!("Upload-Metadata: metadata is not JSON: {e}"))
                })?;
                meta.user_metadata = Some(json);
            }
            _ => {}
        }
    }
    meta.bucket = bucket
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad_request("Upload-Metadata: bucketName is required"))?;
    meta.name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad_request("Upload-Metadata: objectName is required"))?;
    Ok(meta)
}

/// `Upload-Metadata` as HEAD answers it, from what the upload recorded.
pub fn render_metadata(
    bucket: &str,
    name: &str,
    content_type: &str,
    cache_control: &str,
    user_metadata: Option<&Value>,
) -> String {
    let mut pairs = vec![
        format!("bucketName {}", STANDARD.encode(bucket)),
        format!("objectName {}", STANDARD.encode(name)),
        format!("contentType {}", STANDARD.encode(content_type)),
    ];
    let seconds = cache_control
        .strip_prefix("max-age=")
        .unwrap_or(cache_control);
    pairs.push(format!("cacheControl {}", STANDARD.encode(seconds)));
    if let Some(meta) = user_metadata {
        pairs.push(format!("metadata {}", STANDARD.encode(meta.to_string())));
    }
    pairs.join(",")
}

/// The id in an upload URL: `base64url(bucket/name/upload id)`.
pub fn encode_id(bucket: &str, name: &str, upload_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{bucket}/{name}/{upload_id}"))
}

/// The parts of an upload URL's id.
#[derive(Debug, PartialEq, Eq)]
pub struct UploadRef {
    pub bucket: String,
    pub name: String,
    pub upload_id: String,
}

pub fn decode_id(id: &str) -> Result<UploadRef, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "not_found",
            "The upload does not exist",
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(id.trim_end_matches('='))
        .map_err(|_| not_found())?;
    let text = String::from_utf8(bytes).map_err(|_| not_found())?;
    let (bucket, rest) = text.split_once('/').ok_or_else(not_found)?;
    let (name, upload_id) = rest.rsplit_once('/').ok_or_else(not_found)?;
    if bucket.is_empty() || name.is_empty() || upload_id.is_empty() {
        return Err(not_found());
    }
    Ok(UploadRef {
        bucket: bucket.into(),
        name: name.into(),
        upload_id: upload_id.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_with_slashes_in_the_name() {
        let id = encode_id("photos", "a/b/c.png", "abc123");
        assert_eq!(
            decode_id(&id).unwrap(),
            UploadRef {
                bucket: "photos".into(),
                name: "a/b/c.png".into(),
                upload_id: "abc123".into()
            }
        );
        assert!(decode_id("not base64!").is_err());
    }

    #[test]
    fn supabase_metadata_keys() {
        let mut headers = HeaderMap::new();
        let value = format!(
            "bucketName {},objectName {},contentType {},cacheControl {},metadata {},filetype",
            STANDARD.encode("b"),
            STANDARD.encode("dir/x.bin"),
            STANDARD.encode("image/png"),
            STANDARD.encode("3600"),
            STANDARD.encode(r#"{"k":1}"#),
        );
        headers.insert("upload-metadata", value.parse().unwrap());
        let meta = parse_metadata(&headers).unwrap();
        assert_eq!(meta.bucket, "b");
        assert_eq!(meta.name, "dir/x.bin");
        assert_eq!(meta.content_type.as_deref(), Some("image/png"));
        assert_eq!(meta.cache_control, "max-age=3600");
        assert_eq!(meta.user_metadata, Some(serde_json::json!({"k": 1})));
    }

    #[test]
    fn metadata_without_an_object_name_is_refused() {
        let mut headers = HeaderMap::new();
        let value = format!("bucketName {}", STANDARD.encode("b"));
        headers.insert("upload-metadata", value.parse().unwrap());
        assert_eq!(
            parse_metadata(&headers).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
