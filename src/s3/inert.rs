//! GetObject and HeadObject answers made as inert in a browser as the REST download's, by the
//! same rule ([`MediaType::inline_safe`], [`MediaType::sandboxable`]): a presigned URL is a
//! link anyone can open, so it must not serve active content from the API's origin.
//!
//! The headers here are applied by s3s after the output's and after the `response-content-*`
//! overrides, so an override can rename a type but cannot make it active.

use axum::http::HeaderMap;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue};

use crate::core::media_type::MediaType;
use crate::http::download::attachment;

/// `served_type` is what the answer would carry (the override, else the stored type);
/// `disposition` likewise; `name` the object's key.
pub(super) fn inert_headers(
    served_type: Option<&str>,
    disposition: Option<&str>,
    name: &str,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // A type that is not one valid media type is served as opaque bytes.
    let media = served_type
        .and_then(|t| MediaType::parse(t).ok())
        .unwrap_or_else(MediaType::octet_stream);
    if let Ok(value) = HeaderValue::from_str(media.as_str()) {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if media.sandboxable() {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    }
    let already_attachment = disposition.is_some_and(|d| {
        d.trim_start()
            .get(..10)
            .is_some_and(|head| head.eq_ignore_ascii_case("attachment"))
    });
    if !media.inline_safe() && !already_attachment {
        let filename = name.rsplit('/').next().unwrap_or(name);
        headers.insert(CONTENT_DISPOSITION, attachment(filename));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_types_are_sandboxed_attachments() {
        let h = inert_headers(Some("text/html"), Some("inline"), "a/page.html");
        assert_eq!(h[CONTENT_TYPE], "text/html");
        assert_eq!(h[CONTENT_SECURITY_POLICY], "sandbox");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(
            h[CONTENT_DISPOSITION]
                .to_str()
                .unwrap()
                .starts_with("attachment; filename=\"page.html\"")
        );
    }

    #[test]
    fn inert_types_stay_inline_and_bad_types_are_bytes() {
        let h = inert_headers(Some("image/png"), None, "x.png");
        assert!(h.get(CONTENT_DISPOSITION).is_none());
        let h = inert_headers(Some("application/pdf"), None, "x.pdf");
        assert!(h.get(CONTENT_SECURITY_POLICY).is_none());
        let h = inert_headers(Some("image/png, text/html"), None, "x");
        assert_eq!(h[CONTENT_TYPE], "application/octet-stream");
        let h = inert_headers(
            Some("image/svg+xml"),
            Some("attachment; filename=x.svg"),
            "x",
        );
        assert!(
            h.get(CONTENT_DISPOSITION).is_none(),
            "its own attachment kept"
        );
    }
}
