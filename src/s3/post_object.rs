//! POST object: browser-form uploads (`multipart/form-data` POSTed to a bucket), as AWS
//! defines them. The fields before the file (`key`, `policy`, the signature, `Content-Type`,
//! `x-amz-meta-*`, ...) are read and checked first; the `file` field, which must come last,
//! then streams into the core like a PutObject body, never held whole.
//!
//! A signed form resolves its access key like any signed request (static key, database keys,
//! or a session token in the `x-amz-security-token` field) and runs as that identity; an
//! unsigned one runs as `anon`. Either way RLS decides, under `storage.upload` /
//! `storage.overwrite`, with the bucket's size and type rules.
//!
//! These requests bypass the `s3s` services: their POST support reads the whole file into
//! memory, and a custom route cannot reach the form once `s3s` has parsed it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_TYPE, ETAG, HOST, LOCATION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use s3s::{S3Error, S3ErrorCode, S3Result};
use serde_json::{Map, Value};

use super::auth::{KeyStore, REQUEST_AUTH, RequestAuth};
use super::error::{internal, object_error, s3};
use super::post_policy::{Fields, Signature, check, parse_policy};
use super::prefix::{headers_json, strip_early};
use super::virtual_host::{SEGMENT, VirtualHost};
use crate::auth::Authenticator;
use crate::core::md5::Md5;
use crate::core::objects::{ContentHeaders, Upload};
use crate::core::{Caller, Storage};

/// Largest text field before the file, and all of them together.
const MAX_FIELD: usize = 64 * 1024;
const MAX_FIELDS: usize = 1024 * 1024;
/// Most text fields before the file.
const MAX_FIELD_COUNT: usize = 200;

/// What serving a form needs.
pub(super) struct PostForms {
    pub(super) storage: Storage,
    pub(super) auth: Authenticator,
    pub(super) keys: KeyStore,
}

/// The bucket a request posts a form to, when it is a browser-form upload: a
/// `multipart/form-data` POST to a bucket (`/s3/bucket`, `bucket.DOMAIN/`, `DOMAIN/bucket`).
pub(super) fn form_bucket(request: &Request, host: Option<&VirtualHost>) -> Option<String> {
    if request.method() != Method::POST {
        return None;
    }
    let form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !form {
        return None;
    }
    let path = match host {
        Some(host) => host.path_style(request.uri().path()),
        None => strip_early(request.uri())?.path().to_string(),
    };
    let bucket = path.strip_prefix('/')?;
    let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
    if bucket.is_empty() || bucket.contains('/') {
        return None;
    }
    Some(
        percent_encoding::percent_decode_str(bucket)
            .decode_utf8()
            .ok()?
            .into_owned(),
    )
}

impl PostForms {
    pub(super) async fn handle(&self, request: Request, bucket: String) -> Response {
        match self.post(request, &bucket).await {
            Ok(response) => response,
            Err(error) => error_response(error),
        }
    }

    async fn post(&self, request: Request, bucket: &str) -> S3Result<Response> {
        let (parts, body) = request.into_parts();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary = multer::parse_boundary(content_type).map_err(malformed)?;
        let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
        let mut fields = Fields::default();
        let mut total = 0;
        let file = loop {
            let Some(mut field) = form.next_field().await.map_err(malformed)? else {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    "POST requires exactly one file upload per request.",
                ));
            };
            let name = field.name().unwrap_or("").to_ascii_lowercase();
            if name == "file" {
                break field;
            }
            if fields.iter().count() >= MAX_FIELD_COUNT {
                return Err(too_much_before_file());
            }
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                total += chunk.len();
                if value.len() + chunk.len() > MAX_FIELD || total > MAX_FIELDS {
                    return Err(too_much_before_file());
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(value).map_err(|_| {
                s3(
                    S3ErrorCode::InvalidArgument,
                    format!("The form field '{name}' is not UTF-8 text."),
                )
            })?;
            fields.insert(name, value)?;
        };
        let filename = file.file_name().unwrap_or("").to_string();

        let identity = self.identify(&fields).await?;
        let range = match parse_policy(&fields)? {
            Some(policy) => check(&policy, &fields, bucket, now())?,
            None => None,
        };
        let key = fields
            .get("key")
            .ok_or_else(|| {
                s3(
                    S3ErrorCode::InvalidArgument,
                    "Bucket POST must contain a field named 'key'.  If it is specified, please \
                     check the order of the fields.",
                )
            })?
            .replace("${filename}", &filename);
        if key.is_empty() {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                "User key must have a length greater than 0.",
            ));
        }

        let caller = Caller {
            identity,
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers: headers_json(&parts.headers),
        };
        let (min, max) = range.unwrap_or((0, u64::MAX));
        let (body, metered) =
            Metered::wrap(file.map(|r| r.map_err(io::Error::other)).boxed(), min, max);
        let text = |name: &str| fields.get(name).map(str::to_string);
        let upload = Upload {
            bucket: bucket.to_string(),
            name: key.clone(),
            body,
            declared_length: None,
            content_type: text("content-type"),
            cache_control: text("cache-control"),
            user_metadata: user_metadata(&fields),
            // S3 replaces an existing object.
            upsert: true,
            owner: None,
            headers: ContentHeaders {
                content_disposition: text("content-disposition"),
                content_encoding: text("content-encoding"),
            },
        };
        if let Err(error) = self.storage.upload(&caller, upload).await {
            return Err(metered.refusal().unwrap_or_else(|| object_error(error)));
        }
        let etag = format!("\"{}\"", metered.md5_hex().unwrap_or_default());
        Ok(success(
            &parts.headers,
            &parts.uri,
            &fields,
            bucket,
            &key,
            &etag,
        ))
    }

    /// The identity a form's signature stands for; `anon` for an unsigned form.
    async fn identify(&self, fields: &Fields) -> S3Result<crate::auth::Identity> {
        let Some(signature) = Signature::of(fields)? else {
            return self.auth.identify(None).map_err(internal);
        };
        let policy = fields.get("policy").ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidArgument,
                "Bucket POST must contain a field named 'policy'.",
            )
        })?;
        let scope = RequestAuth::with_session_token(fields.get("x-amz-security-token"));
        let secret = REQUEST_AUTH
            .scope(
                scope.clone(),
                s3s::auth::S3Auth::get_secret_key(&self.keys, signature.access_key()),
            )
            .await?;
        signature.verify(secret.expose(), policy)?;
        scope
            .identity()
            .ok_or_else(|| internal("a verified form without a resolved identity"))
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn malformed(error: multer::Error) -> S3Error {
    s3(
        S3ErrorCode::MalformedPOSTRequest,
        format!("The body of your POST request is not well-formed multipart/form-data: {error}"),
    )
}

fn too_much_before_file() -> S3Error {
    s3(
        S3ErrorCode::MaxPostPreDataLengthExceededError,
        "Your POST request fields preceding the upload file were too large.",
    )
}

/// `x-amz-meta-*` fields as `user_metadata`.
fn user_metadata(fields: &Fields) -> Option<Value> {
    let map: Map<String, Value> = fields
        .iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("x-amz-meta-")?;
            (!key.is_empty()).then(|| (key.to_string(), Value::from(value)))
        })
        .collect();
    (!map.is_empty()).then_some(Value::Object(map))
}

/// The answer to a stored form: a redirect, or the status the form asked for (204 by default;
/// 201 with a `PostResponse` document).
fn success(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    fields: &Fields,
    bucket: &str,
    key: &str,
    etag: &str,
) -> Response {
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
    let redirect = fields
        .get("success_action_redirect")
        .or_else(|| fields.get("redirect"))
        .filter(|url| url.starts_with("http://") || url.starts_with("https://"));
    if let Some(url) = redirect {
        let separator = if url.contains('?') { '&' } else { '?' };
        let target = format!(
            "{url}{separator}bucket={}&key={}&etag={}",
            encode(bucket),
            encode(key),
            encode(etag)
        );
        if let Ok(location) = HeaderValue::from_str(&target) {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(LOCATION, location);
            add_etag(&mut response, etag);
            return response;
        }
    }
    let location = object_url(headers, uri, key);
    let mut response = match fields.get("success_action_status") {
        Some("200") => StatusCode::OK.into_response(),
        Some("201") => {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location>\
                 <Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                escape(&location),
                escape(bucket),
                escape(key),
                escape(etag)
            );
            (
                StatusCode::CREATED,
                [(CONTENT_TYPE, HeaderValue::from_static("application/xml"))],
                xml,
            )
                .into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    add_etag(&mut response, etag);
    response
}

fn add_etag(response: &mut Response, etag: &str) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(ETAG, value);
    }
}

/// The new object's URL: the form's own URL with the key appended.
fn object_url(headers: &HeaderMap, uri: &axum::http::Uri, key: &str) -> String {
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let base = uri.path().trim_end_matches('/');
    let key: Vec<String> = key
        .split('/')
        .map(|segment| percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string())
        .collect();
    format!("{scheme}://{host}{base}/{}", key.join("/"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// An S3 error as its XML response.
fn error_response(error: S3Error) -> Response {
    match error.to_http_response() {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            tracing::error!(?error, "could not render an S3 error");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Why the file's stream was cut short by the policy's content-length range.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    TooLarge,
    TooSmall,
}

#[derive(Debug, Default)]
struct Outcome {
    md5_hex: Option<String>,
    refusal: Option<Refusal>,
}

/// The file's stream, measured as it passes: its MD5 (the ETag) and the policy's
/// `content-length-range`. A file over the range ends with an error as soon as it goes past;
/// one under it ends with an error instead of its end, so the core commits nothing.
struct Metered {
    inner: BoxStream<'static, io::Result<Bytes>>,
    seen: u64,
    min: u64,
    max: u64,
    md5: Md5,
    done: bool,
    outcome: Arc<Mutex<Outcome>>,
}

/// The handler's view of a [`Metered`] stream.
#[derive(Clone)]
struct Measured(Arc<Mutex<Outcome>>);

impl Measured {
    fn md5_hex(&self) -> Option<String> {
        self.0.lock().ok().and_then(|o| o.md5_hex.clone())
    }

    fn refusal(&self) -> Option<S3Error> {
        let refusal = self.0.lock().ok().and_then(|o| o.refusal)?;
        Some(match refusal {
            Refusal::TooLarge => s3(
                S3ErrorCode::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size",
            ),
            Refusal::TooSmall => s3(
                S3ErrorCode::EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed size",
            ),
        })
    }
}

impl Metered {
    fn wrap(
        inner: BoxStream<'static, io::Result<Bytes>>,
        min: u64,
        max: u64,
    ) -> (crate::bytes::ByteStream, Measured) {
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let stream = Self {
            inner,
            seen: 0,
            min,
            max,
            md5: Md5::new(),
            done: false,
            outcome: outcome.clone(),
        };
        (stream.boxed(), Measured(outcome))
    }

    fn refuse(&mut self, refusal: Refusal) -> Poll<Option<io::Result<Bytes>>> {
        self.done = true;
        if let Ok(mut outcome) = self.outcome.lock() {
            outcome.refusal = Some(refusal);
        }
        Poll::Ready(Some(Err(io::Error::other(
            "the file is outside the policy's content-length-range",
        ))))
    }
}

impl Stream for Metered {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => {
                self.seen += bytes.len() as u64;
                if self.seen > self.max {
                    return self.refuse(Refusal::TooLarge);
                }
                self.md5.update(&bytes);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                if self.seen < self.min {
                    return self.refuse(Refusal::TooSmall);
                }
                self.done = true;
                let digest = hex::encode(std::mem::take(&mut self.md5).finalize());
                if let Ok(mut outcome) = self.outcome.lock() {
                    outcome.md5_hex = Some(digest);
                }
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str, content_type: &str) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(CONTENT_TYPE, content_type)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn finds_the_bucket_posted_to() {
        let form = "multipart/form-data; boundary=x";
        let post = |uri| request(Method::POST, uri, form);
        assert_eq!(
            form_bucket(&post("/s3/photos"), None),
            Some("photos".into())
        );
        assert_eq!(
            form_bucket(&post("/storage/v1/s3/photos/"), None),
            Some("photos".into())
        );
        assert_eq!(form_bucket(&post("/s3/photos/key"), None), None);
        assert_eq!(form_bucket(&post("/s3"), None), None);
        assert_eq!(
            form_bucket(&request(Method::POST, "/s3/photos", "text/plain"), None),
            None
        );
        assert_eq!(
            form_bucket(&request(Method::PUT, "/s3/photos", form), None),
            None
        );
        let host = VirtualHost {
            bucket: Some("photos".into()),
        };
        assert_eq!(form_bucket(&post("/"), Some(&host)), Some("photos".into()));
        assert_eq!(form_bucket(&post("/k"), Some(&host)), None);
        let root = VirtualHost { bucket: None };
        assert_eq!(
            form_bucket(&post("/photos"), Some(&root)),
            Some("photos".into())
        );
    }

    #[tokio::test]
    async fn meters_the_file() {
        let chunks = |n: usize| {
            futures::stream::iter((0..n).map(|_| Ok(Bytes::from_static(b"abcd")))).boxed()
        };
        let (stream, measured) = Metered::wrap(chunks(2), 0, 8);
        let read: Vec<_> = stream.collect().await;
        assert!(read.iter().all(|r| r.is_ok()));
        assert_eq!(
            measured.md5_hex().unwrap(),
            hex::encode(Md5::digest(b"abcdabcd"))
        );
        let (stream, measured) = Metered::wrap(chunks(3), 0, 8);
        let read: Vec<_> = stream.collect().await;
        assert!(read.last().unwrap().is_err());
        assert_eq!(
            measured.refusal().unwrap().code(),
            &S3ErrorCode::EntityTooLarge
        );
        let (stream, measured) = Metered::wrap(chunks(1), 5, 8);
        let read: Vec<_> = stream.collect().await;
        assert!(read.last().unwrap().is_err());
        assert_eq!(
            measured.refusal().unwrap().code(),
            &S3ErrorCode::EntityTooSmall
        );
    }

    #[test]
    fn object_urls() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("h:1"));
        let uri: axum::http::Uri = "/s3/b/".parse().unwrap();
        assert_eq!(
            object_url(&headers, &uri, "a b/c"),
            "http://h:1/s3/b/a%20b/c"
        );
    }
}
