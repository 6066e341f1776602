//! Virtual-host style addressing under a configured domain (`--s3-api-virtual-host-domain`):
//! `Host: bucket.DOMAIN[:port]` names the bucket and the path is the key, with no prefix;
//! `Host: DOMAIN[:port]` is path-style at the root (`/bucket/key`).
//!
//! A request whose host is the domain or one of its subdomains belongs to the S3 front
//! whatever its path (the REST routes are not served on that host). Its signature is verified
//! over the path as sent; only the verified request is rewritten to the path-style form the
//! inner service routes (see [`super::prefix`]).

use axum::http::header::HOST;
use axum::http::{HeaderMap, Uri};
use s3s::S3Result;

use super::error::s3;

/// The configured domain, lower-cased, without a trailing dot.
#[derive(Clone, Debug)]
pub(super) struct Domain(String);

impl Domain {
    /// `None` unless `domain` is a host name (no scheme, port or path).
    pub(super) fn new(domain: &str) -> Option<Self> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        valid.then_some(Self(domain))
    }

    /// The addressing a request's host asks for, or `None` when the host is not ours.
    pub(super) fn of(&self, headers: &HeaderMap, uri: &Uri) -> Option<VirtualHost> {
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))?;
        self.of_host(host)
    }

    fn of_host(&self, host: &str) -> Option<VirtualHost> {
        let name = without_port(host)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if name == self.0 {
            return Some(VirtualHost { bucket: None });
        }
        let bucket = name.strip_suffix(&self.0)?.strip_suffix('.')?;
        (!bucket.is_empty()).then(|| VirtualHost {
            bucket: Some(bucket.to_string()),
        })
    }
}

/// `host[:port]` without the port (IPv6 literals keep their brackets).
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// How a request under the domain addresses its bucket: kept in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct VirtualHost {
    /// From the host (`bucket.DOMAIN`); `None`: path-style at the root.
    pub(super) bucket: Option<String>,
}

impl VirtualHost {
    /// The path-style path (`/bucket/key`) of `path` as sent.
    pub(super) fn path_style(&self, path: &str) -> String {
        match &self.bucket {
            None => path.to_string(),
            Some(bucket) => {
                let bucket = percent_encoding::utf8_percent_encode(bucket, SEGMENT);
                match path {
                    // Signature V2 signs a bucket's own resource as `/bucket/`.
                    "" | "/" => format!("/{bucket}/"),
                    key => format!("/{bucket}{key}"),
                }
            }
        }
    }

    /// `uri` with its path in path-style form and its query as sent.
    pub(super) fn path_style_uri(&self, uri: &Uri) -> Option<Uri> {
        let path = self.path_style(uri.path());
        let text = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        text.parse().ok()
    }

    /// The verified request's URI for the inner service: path-style, credentials removed.
    pub(super) fn inner_uri(&self, uri: &Uri) -> S3Result<Uri> {
        let uri = self.path_style_uri(uri).ok_or_else(|| {
            s3(
                s3s::S3ErrorCode::InvalidURI,
                "the request path is not valid",
            )
        })?;
        super::prefix::inner_uri(&uri, true)
    }
}

/// What a name needs escaped to be one path segment or query value (all but unreserved).
pub(super) const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        Domain::new("S3.Example.test.").unwrap()
    }

    #[test]
    fn reads_the_bucket_from_the_host() {
        let d = domain();
        assert_eq!(
            d.of_host("photos.s3.example.test:9000"),
            Some(VirtualHost {
                bucket: Some("photos".into())
            })
        );
        assert_eq!(
            d.of_host("a.b.S3.example.test"),
            Some(VirtualHost {
                bucket: Some("a.b".into())
            })
        );
        assert_eq!(
            d.of_host("s3.example.test:9000"),
            Some(VirtualHost { bucket: None })
        );
        assert_eq!(d.of_host("xs3.example.test"), None);
        assert_eq!(d.of_host(".s3.example.test"), None);
        assert_eq!(d.of_host("127.0.0.1:9000"), None);
        assert_eq!(d.of_host("example.test"), None);
        assert!(Domain::new(" ").is_none());
        assert!(Domain::new("localhost:9000").is_none());
        assert!(Domain::new("http://s3.example.test").is_none());
    }

    #[test]
    fn rewrites_to_path_style() {
        let bucket = VirtualHost {
            bucket: Some("photos".into()),
        };
        assert_eq!(bucket.path_style("/"), "/photos/");
        assert_eq!(bucket.path_style("/a/b%20c"), "/photos/a/b%20c");
        let root = VirtualHost { bucket: None };
        assert_eq!(root.path_style("/photos/a"), "/photos/a");
        let uri: Uri = "/k?list-type=2".parse().unwrap();
        assert_eq!(
            bucket.path_style_uri(&uri).unwrap().to_string(),
            "/photos/k?list-type=2"
        );
    }

    #[test]
    fn ports_and_literals() {
        assert_eq!(without_port("h:80"), "h");
        assert_eq!(without_port("h"), "h");
        assert_eq!(without_port("[::1]:80"), "[::1]");
    }
}
