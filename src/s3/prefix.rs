//! Serving S3 under a path prefix, with signatures verified over the path the client signed.
//!
//! The outer `s3s` service sees the request as sent: its signature check (header auth,
//! presigned URLs with their expiry, `UNSIGNED-PAYLOAD`, signed and unsigned aws-chunked bodies
//! with trailers) covers the prefix. Its one custom route matches every request, so `s3s`'s
//! own routing, which would read the prefix as a bucket, never runs there. The route then
//! rewrites the verified request (prefix, signature and presign parameters removed, the decoded
//! body in place of the chunked one) and hands it to the inner service, which routes it to the
//! operation handlers with the caller in its extensions.

use std::sync::Arc;

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

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
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
        let mut inner = axum::http::Request::new(req.input);
        *inner.method_mut() = req.method;
        *inner.uri_mut() = uri;
        *inner.headers_mut() = inner_headers(req.headers);
        *inner.extensions_mut() = req.extensions;
        inner.extensions_mut().insert(Context {
            caller,
            trailers: req.trailing_headers,
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

    #[test]
    fn drops_aws_chunked_coding() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, "aws-chunked,gzip".parse().unwrap());
        assert_eq!(inner_headers(headers.clone())[CONTENT_ENCODING], "gzip");
        headers.insert(CONTENT_ENCODING, "aws-chunked".parse().unwrap());
        assert!(inner_headers(headers).get(CONTENT_ENCODING).is_none());
    }
}
