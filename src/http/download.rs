//! HTTP semantics of reading an object: Range, conditional requests, Content-Disposition.

use std::time::SystemTime;

use axum::http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, RANGE};
use axum::http::{HeaderMap, HeaderValue};

use crate::bytes::ByteRange;

/// What to do with a `Range` header for an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeDecision {
    /// No (usable) range: the whole object, 200.
    Full,
    /// One satisfiable range: 206.
    Partial(ByteRange),
    /// A range past the end: 416.
    Unsatisfiable,
}

/// Reads a single `bytes=` range. Several ranges, other units or malformed values are ignored
/// (the whole object is served), as RFC 9110 allows.
pub fn range(headers: &HeaderMap, size: u64) -> RangeDecision {
    let Some(value) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeDecision::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeDecision::Full;
    };
    if spec.contains(',') {
        return RangeDecision::Full;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return RangeDecision::Full;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match end.parse::<u64>() {
            Ok(0) => return RangeDecision::Unsatisfiable,
            Ok(n) if size == 0 => {
                let _ = n;
                return RangeDecision::Unsatisfiable;
            }
            Ok(n) => Some((size.saturating_sub(n), size - 1)),
            Err(_) => None,
        },
        (false, true) => start
            .parse::<u64>()
            .ok()
            .map(|s| (s, size.saturating_sub(1))),
        (false, false) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => Some((s, e.min(size.saturating_sub(1)))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeDecision::Full,
        Some((start, _)) if start >= size => RangeDecision::Unsatisfiable,
        Some((start, end)) => RangeDecision::Partial(ByteRange { start, end }),
    }
}

/// True when the client's cached copy is current (answer 304). `If-None-Match` wins over
/// `If-Modified-Since` when both are present.
pub fn not_modified(
    headers: &HeaderMap,
    etag: Option<&str>,
    last_modified: Option<SystemTime>,
) -> bool {
    if let Some(value) = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = etag else { return false };
        let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return value
            .split(',')
            .any(|candidate| candidate.trim() == "*" || bare(candidate) == bare(etag));
    }
    if let (Some(since), Some(modified)) = (
        headers
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok()),
        last_modified,
    ) {
        // HTTP dates have whole seconds.
        let modified =
            httpdate::parse_http_date(&httpdate::fmt_http_date(modified)).unwrap_or(modified);
        return modified <= since;
    }
    false
}

/// `attachment` with an RFC 6266 filename: an ASCII fallback plus the exact UTF-8 name.
pub fn attachment(filename: &str) -> HeaderValue {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in filename.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    let value = format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn ranges() {
        let r = |v: &str| range(&with(RANGE, v), 100);
        assert_eq!(
            r("bytes=0-9"),
            RangeDecision::Partial(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            r("bytes=90-"),
            RangeDecision::Partial(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            r("bytes=-10"),
            RangeDecision::Partial(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            r("bytes=-500"),
            RangeDecision::Partial(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            r("bytes=50-1000"),
            RangeDecision::Partial(ByteRange { start: 50, end: 99 })
        );
        assert_eq!(r("bytes=100-"), RangeDecision::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeDecision::Unsatisfiable);
        assert_eq!(r("bytes=5-1"), RangeDecision::Full);
        assert_eq!(r("bytes=0-1,5-6"), RangeDecision::Full);
        assert_eq!(r("items=0-1"), RangeDecision::Full);
        assert_eq!(range(&HeaderMap::new(), 100), RangeDecision::Full);
    }

    #[test]
    fn conditional() {
        let etag = Some("\"abc\"");
        assert!(not_modified(&with(IF_NONE_MATCH, "\"abc\""), etag, None));
        assert!(not_modified(
            &with(IF_NONE_MATCH, "W/\"abc\", \"x\""),
            etag,
            None
        ));
        assert!(not_modified(&with(IF_NONE_MATCH, "*"), etag, None));
        assert!(!not_modified(&with(IF_NONE_MATCH, "\"zzz\""), etag, None));
        let t = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").unwrap();
        assert!(not_modified(
            &with(IF_MODIFIED_SINCE, "Sun, 22 Nov 2026 10:00:00 GMT"),
            etag,
            Some(t)
        ));
        assert!(!not_modified(
            &with(IF_MODIFIED_SINCE, "Sun, 22 Nov 2026 09:59:59 GMT"),
            etag,
            Some(t)
        ));
    }

    #[test]
    fn attachment_names_are_encoded() {
        let v = attachment("отчёт 1.pdf");
        let v = v.to_str().unwrap();
        assert!(v.starts_with("attachment; filename=\""), "{v}");
        assert!(v.contains("filename*=UTF-8''%D0%BE"), "{v}");
        assert!(v.contains("%201.pdf"), "{v}");
    }
}
