//! Serving S3 under a path prefix, with signatures verified over the path the client signed.
//!
//! The outer `s3s` service sees the request as sent: its signature check (header auth,
//! presigned URLs with their expiry, `UNSIGNED-PAYLOAD`, signed and unsigned aws-chunked bodies
//! with trailers) covers the prefix. Its one custom route matches every request, so `s3s`'s
//! own routing, which would read the prefix as a bucket, never runs there. The route then
//! rewrites the verified request (prefix, signature and presign parameters removed, the decoded
//! body in place of the chunked one) and hands it to the inner service, which routes it to the
//! operation handlers with the caller in its extensions.
//!
//! An upload with a signed payload (`x-amz-content-sha256` holding the body's SHA-256) is
//! the exception to "the outer service sees the request as sent": `s3s` would hash the whole
//! body to check that header, and the core hashes it with SHA-256 anyway. So the body is held
//! back from `s3s` (see [`hold_signed_payload`]), which verifies the signature, header included,
//! over an empty stand-in it never reads; the route then hands the real body on with the
//! verified hash, which the core compares before it commits anything.

use std::sync::{Arc, Mutex};

use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING};
use axum::http::{HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::validation::NameValidation;
use s3s::{Body, S3Request, S3Response, S3Result, TrailingHeaders};

use super::PREFIXES;
use super::auth::{KeyStore, REQUEST_AUTH, S3Credentials};
use super::error::{internal, s3};
use crate::auth::Authenticator;
use crate::core::{Caller, Storage};

/// Builds the outer service: authentication by `s3s`, everything routed to [`Verified`].
pub(super) fn outer_service(
    inner: S3Service,
    storage: Storage,
    auth: Authenticator,
    credentials: Arc<S3Credentials>,
) -> S3Service {
    let mut builder = S3ServiceBuilder::new(Unrouted);
    builder.set_auth(KeyStore {
        storage,
        auth: auth.clone(),
        credentials,
    });
    builder.set_route(Verified { inner, auth });
    // The outer service parses the prefix (`s3`, `storage`) as a bucket name before the route
    // takes over; that parse must not refuse it.
    builder.set_validation(AnyName);
    builder.build()
}

/// The outer service's operations: never reached, every request takes the custom route.
struct Unrouted;

#[async_trait::async_trait]
impl s3s::S3 for Unrouted {}

/// Bucket names are checked by the core (its own rules, not AWS's DNS rules).
pub(super) struct AnyName;

impl NameValidation for AnyName {
    fn validate_bucket_name(&self, _name: &str) -> bool {
        true
    }
}

/// The request facts handlers need, put in the inner request's extensions.
#[derive(Clone)]
pub(super) struct Context {
    pub(super) caller: Caller,
    /// Trailing headers of an aws-chunked body (checksums sent after the data).
    pub(super) trailers: Option<TrailingHeaders>,
    /// The verified `x-amz-content-sha256` of a body held back from `s3s`: the handler must
    /// have the core check it.
    pub(super) payload_sha256: Option<[u8; 32]>,
}

/// The body of an upload held back from the outer service (see [`hold_signed_payload`]).
#[derive(Clone)]
pub(super) struct HeldBody(Arc<Mutex<Option<axum::body::Body>>>);

/// The SHA-256 a signed payload announces (`x-amz-content-sha256`: 64 hex digits).
fn signed_payload_sha256(headers: &HeaderMap) -> Option<[u8; 32]> {
    let value = headers.get("x-amz-content-sha256")?.to_str().ok()?;
    let mut raw = [0u8; 32];
    hex::decode_to_slice(value, &mut raw).ok()?;
    Some(raw)
}

/// Whether a request is a PutObject or UploadPart that `s3s` would hash: signed with SigV4
/// (header or presigned), a known length, and a hex `x-amz-content-sha256`. Anything else
/// (other operations, whose bodies the route does not hand to the core, copies, Signature V2,
/// streaming bodies, a different `x-amz-checksum-sha256`) keeps `s3s`'s own check.
fn holds_signed_payload(request: &axum::extract::Request) -> bool {
    if request.method() != Method::PUT {
        return false;
    }
    let headers = request.headers();
    let Some(sha256) = signed_payload_sha256(headers) else {
        return false;
    };
    let sigv4 = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "))
        || query_names(request.uri()).any(|name| name.eq_ignore_ascii_case("X-Amz-Signature"));
    // A differing checksum header makes the upload fail whatever its body: the order of
    // the checks then decides the error, which `s3s`'s check keeps as it was.
    let same_checksum = headers.get("x-amz-checksum-sha256").is_none_or(|v| {
        v.to_str().ok().and_then(|v| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.trim()).ok()
        }) == Some(sha256.to_vec())
    });
    let object = strip(request.uri().path())
        .and_then(|path| path.trim_start_matches('/').split_once('/'))
        .is_some_and(|(bucket, key)| !bucket.is_empty() && !key.is_empty());
    let put_or_part = query_names(request.uri())
        .all(|name| matches!(name, "partNumber" | "uploadId" | "x-id") || is_auth_parameter(name));
    sigv4
        && same_checksum
        && object
        && put_or_part
        && headers.contains_key(axum::http::header::CONTENT_LENGTH)
        && !headers.contains_key("x-amz-copy-source")
        && !signed_without_prefix(request)
}

fn query_names(uri: &Uri) -> impl Iterator<Item = &str> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split('=').next().unwrap_or(""))
}

/// Holds back the body of an upload with a signed payload, so that `s3s` does not hash it: the
/// core does, and compares it with the header `s3s` verifies. The stand-in body is empty and
/// never read (the route drops it).
pub(super) fn hold_signed_payload(request: &mut axum::extract::Request) {
    if holds_signed_payload(request) {
        let body = std::mem::take(request.body_mut());
        request
            .extensions_mut()
            .insert(HeldBody(Arc::new(Mutex::new(Some(body)))));
    }
}

struct Verified {
    inner: S3Service,
    auth: Authenticator,
}

/// Query parameters that carry a presigned URL's credentials: spent once verified.
fn is_auth_parameter(name: &str) -> bool {
    name.len() > 6 && name[..6].eq_ignore_ascii_case("x-amz-") && {
        let rest = name[6..].to_ascii_lowercase();
        matches!(
            rest.as_str(),
            "algorithm"
                | "credential"
                | "date"
                | "expires"
                | "signedheaders"
                | "signature"
                | "security-token"
        )
    }
}

/// Marks a request whose prefix was removed before verification (Signature V2).
#[derive(Clone, Copy)]
pub(super) struct Stripped;

/// Whether the request is signed with Signature V2 (header `AWS id:sig`, or a presigned URL
/// with `Signature`), whose string to sign holds `/bucket/key` without the endpoint's path.
pub(super) fn signed_without_prefix<B>(request: &axum::http::Request<B>) -> bool {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS "));
    let query = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("AWSAccessKeyId"))
    });
    header || query
}

/// The request URI with the prefix removed and the query kept as sent.
pub(super) fn strip_early(uri: &Uri) -> Option<Uri> {
    let path = strip(uri.path())?;
    let text = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    text.parse().ok()
}

/// The path without the front's prefix (`/` at least), or `None` when not under one.
fn strip(path: &str) -> Option<&str> {
    PREFIXES.iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        match rest {
            "" => Some("/"),
            rest if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    })
}

pub(super) fn inner_uri(uri: &Uri, stripped: bool) -> S3Result<Uri> {
    let path = match stripped {
        true => Some(uri.path()),
        false => strip(uri.path()),
    }
    .ok_or_else(|| s3(s3s::S3ErrorCode::InvalidURI, "not an S3 path"))?;
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !is_auth_parameter(pair.split('=').next().unwrap_or("")))
        .filter(|pair| {
            // Signature V2's presign parameters.
            let name = pair.split('=').next().unwrap_or("");
            !(stripped && matches!(name, "AWSAccessKeyId" | "Signature" | "Expires"))
        })
        .collect();
    let text = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    };
    text.parse().map_err(|_| {
        s3(
            s3s::S3ErrorCode::InvalidURI,
            "the request path is not valid",
        )
    })
}

/// Headers of the verified request minus what only the signature check needed.
fn inner_headers(mut headers: HeaderMap) -> HeaderMap {
    headers.remove(AUTHORIZATION);
    headers.remove("x-amz-security-token");
    headers.remove("x-amz-content-sha256");
    headers.remove("x-amz-decoded-content-length");
    // `aws-chunked` described the transfer, which the outer service has undone; any other
    // coding (gzip, ...) is the object's own and is kept.
    if let Some(value) = headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        let kept: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
            .collect();
        match kept.is_empty() {
            true => {
                headers.remove(CONTENT_ENCODING);
            }
            false => {
                if let Ok(value) = kept.join(", ").parse() {
                    headers.insert(CONTENT_ENCODING, value);
                }
            }
        }
    }
    headers
}

/// Request headers as JSON for `request.headers`, credentials left out.
pub(super) fn headers_json(headers: &HeaderMap) -> String {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        if matches!(
            name.as_str(),
            "authorization" | "x-amz-security-token" | "cookie" | "apikey"
        ) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            map.insert(name.as_str().to_string(), value.into());
        }
    }
    serde_json::Value::Object(map).to_string()
}

#[async_trait::async_trait]
impl S3Route for Verified {
    fn is_match(
        &self,
        _method: &Method,
        _uri: &Uri,
        _headers: &HeaderMap,
        _extensions: &mut axum::http::Extensions,
    ) -> bool {
        true
    }

    /// Unsigned requests run as `anon`: RLS decides, as on the REST front.
    async fn check_access(&self, _req: &mut S3Request<Body>) -> S3Result<()> {
        Ok(())
    }

    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let identity = match &req.credentials {
            None => self.auth.identify(None).map_err(internal)?,
            Some(_) => REQUEST_AUTH
                .try_with(|auth| auth.identity())
                .ok()
                .flatten()
                .ok_or_else(|| internal("a verified request without a resolved identity"))?,
        };
        if req.method == Method::POST
            && req
                .headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
        {
            // Forms posted to a bucket never get here (see `post_object`).
            return Err(s3(
                s3s::S3ErrorCode::MethodNotAllowed,
                "browser-form uploads (POST object) are posted to a bucket, not to a key",
            ));
        }
        let caller = Caller {
            identity,
            method: req.method.to_string(),
            path: req.uri.path().to_string(),
            headers: headers_json(&req.headers),
        };
        let uri = match req.extensions.get::<super::virtual_host::VirtualHost>() {
            Some(host) => host.inner_uri(&req.uri)?,
            None => inner_uri(&req.uri, req.extensions.get::<Stripped>().is_some())?,
        };
        // A held body replaces the stand-in `s3s` saw; the hash it was signed with goes along.
        let held = req
            .extensions
            .remove::<HeldBody>()
            .and_then(|held| held.0.lock().ok()?.take());
        let (body, payload_sha256) = match held {
            Some(body) => {
                let sha256 = signed_payload_sha256(&req.headers)
                    .ok_or_else(|| internal("a held body without its payload hash"))?;
                (s3s::Body::http_body_unsync(body), Some(sha256))
            }
            None => (req.input, None),
        };
        let mut inner = axum::http::Request::new(body);
        *inner.method_mut() = req.method;
        *inner.uri_mut() = uri;
        *inner.headers_mut() = inner_headers(req.headers);
        *inner.extensions_mut() = req.extensions;
        inner.extensions_mut().insert(Context {
            caller,
            trailers: req.trailing_headers,
            payload_sha256,
        });
        let response = self.inner.call(inner).await.map_err(|e| {
            let error: Box<dyn std::error::Error + Send + Sync> = e.into();
            internal(error)
        })?;
        let (parts, body) = response.into_parts();
        let mut out = S3Response::with_headers(body, parts.headers);
        out.status = Some(parts.status);
        out.extensions = parts.extensions;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_both_prefixes() {
        assert_eq!(strip("/s3"), Some("/"));
        assert_eq!(strip("/s3/"), Some("/"));
        assert_eq!(strip("/s3/b/k"), Some("/b/k"));
        assert_eq!(strip("/storage/v1/s3/b"), Some("/b"));
        assert_eq!(strip("/s3x/b"), None);
    }

    #[test]
    fn removes_presign_parameters_only() {
        let uri: Uri =
            "/s3/b/k?X-Amz-Signature=abc&x-id=GetObject&X-Amz-Credential=a%2Fb&list-type=2"
                .parse()
                .unwrap();
        assert_eq!(
            inner_uri(&uri, false).unwrap().to_string(),
            "/b/k?x-id=GetObject&list-type=2"
        );
    }

    fn put(uri: &str, headers: &[(&str, &str)]) -> axum::extract::Request {
        let mut request = axum::http::Request::builder().method(Method::PUT).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn holds_only_signed_payloads_of_uploads() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let signed = [
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x",
            ),
            ("x-amz-content-sha256", sha),
            ("content-length", "4"),
        ];
        assert!(holds_signed_payload(&put("/s3/b/k", &signed)));
        assert!(holds_signed_payload(&put(
            "/storage/v1/s3/b/dir/k?partNumber=2&uploadId=abc",
            &signed
        )));
        assert!(holds_signed_payload(&put(
            "/s3/b/k?X-Amz-Signature=s&X-Amz-Credential=c",
            &signed[1..]
        )));
        // Not uploads of an object's bytes, or not hashed by `s3s`.
        assert!(!holds_signed_payload(&put("/s3/b", &signed)));
        assert!(!holds_signed_payload(&put("/s3/b/k?tagging", &signed)));
        assert!(!holds_signed_payload(&put("/s3/b/k", &signed[1..])));
        assert!(!holds_signed_payload(&put(
            "/s3/b/k",
            &[signed[0], signed[1]]
        )));
        let mut copy = signed.to_vec();
        copy.push(("x-amz-copy-source", "/b/other"));
        assert!(!holds_signed_payload(&put("/s3/b/k", &copy)));
        let mut unsigned = signed.to_vec();
        unsigned[1] = ("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
        assert!(!holds_signed_payload(&put("/s3/b/k", &unsigned)));
        let mut differing = signed.to_vec();
        differing.push((
            "x-amz-checksum-sha256",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ));
        assert!(!holds_signed_payload(&put("/s3/b/k", &differing)));
        let mut post = put("/s3/b/k", &signed);
        *post.method_mut() = Method::POST;
        assert!(!holds_signed_payload(&post));
    }

    #[test]
    fn drops_aws_chunked_coding() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, "aws-chunked,gzip".parse().unwrap());
        assert_eq!(inner_headers(headers.clone())[CONTENT_ENCODING], "gzip");
        headers.insert(CONTENT_ENCODING, "aws-chunked".parse().unwrap());
        assert!(inner_headers(headers).get(CONTENT_ENCODING).is_none());
    }
}
