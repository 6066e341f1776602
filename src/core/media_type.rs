//! Media types (RFC 9110 §8.3.1): what an object's content type may be, and which types are
//! safe for a browser to show inline on the storage origin.
//!
//! Every front validates a client's content type here on the way in, so a stored type is always
//! exactly one `type/subtype` with optional parameters: no lists, no control characters, nothing
//! a header could be split on. Fronts read [`MediaType::inline_safe`] and
//! [`MediaType::sandboxable`] on the way out.

use std::fmt;

/// Longest content type accepted, in bytes (far above any real one).
pub const MAX_LEN: usize = 255;

/// A parsed media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, lowercased (the comparison key; parameters are not part of it).
    essence: String,
    /// The text as given, trimmed: what is stored and served back.
    text: String,
}

/// Why a content type was refused (the message names the rule, for a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl MediaType {
    /// Parses one media type: `type "/" subtype *( OWS ";" OWS [ name "=" value ] )`, where
    /// type, subtype and names are tokens and values tokens or quoted strings. Only visible
    /// ASCII, spaces and tabs are allowed.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let invalid = |why: &str| {
            Invalid(format!(
                "invalid content type {:?}: {why}; expected one media type such as \
                 \"image/png\" or \"text/plain; charset=utf-8\"",
                text.chars().take(80).collect::<String>()
            ))
        };
        let trimmed = text.trim_matches([' ', '\t']);
        if trimmed.len() > MAX_LEN {
            return Err(invalid(&format!("longer than {MAX_LEN} bytes")));
        }
        if let Some(c) = trimmed
            .chars()
            .find(|&c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))
        {
            return Err(invalid(&format!(
                "it contains the character U+{:04X}; only visible ASCII is allowed",
                c as u32
            )));
        }
        let mut rest = trimmed.as_bytes();
        let kind = token(&mut rest);
        if kind.is_empty() || !eat(&mut rest, b'/') {
            return Err(invalid("it does not start with type/subtype"));
        }
        let subtype = token(&mut rest);
        if subtype.is_empty() {
            return Err(invalid("the subtype is missing"));
        }
        loop {
            skip_ows(&mut rest);
            if rest.is_empty() {
                break;
            }
            if !eat(&mut rest, b';') {
                return Err(invalid(if rest[0] == b',' {
                    "a list of types is not allowed"
                } else {
                    "unexpected text after the type"
                }));
            }
            skip_ows(&mut rest);
            // RFC 9110 allows empty parameters (`text/plain;;charset=x`).
            if rest.is_empty() || rest[0] == b';' {
                continue;
            }
            if token(&mut rest).is_empty() || !eat(&mut rest, b'=') {
                return Err(invalid("a parameter is not name=value"));
            }
            let valid_value = if rest.first() == Some(&b'"') {
                quoted_string(&mut rest)
            } else {
                !token(&mut rest).is_empty()
            };
            if !valid_value {
                return Err(invalid("a parameter value is not a token or quoted string"));
            }
        }
        Ok(Self {
            essence: format!("{kind}/{subtype}").to_ascii_lowercase(),
            text: trimmed.to_string(),
        })
    }

    /// `application/octet-stream`: opaque bytes.
    pub fn octet_stream() -> Self {
        Self {
            essence: "application/octet-stream".into(),
            text: "application/octet-stream".into(),
        }
    }

    /// `type/subtype`, lowercased.
    pub fn essence(&self) -> &str {
        &self.essence
    }

    /// The top-level type, lowercased (`image` for `image/png`).
    pub fn kind(&self) -> &str {
        self.essence.split('/').next().unwrap_or("")
    }

    /// The type as the client gave it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `pattern` (`type/subtype`, `type/*` or `*/*`; parameters ignored; case
    /// insensitive) covers this type. A pattern that is not a media type covers nothing.
    pub fn matches(&self, pattern: &str) -> bool {
        let Ok(pattern) = MediaType::parse(pattern) else {
            return false;
        };
        let pattern = pattern.essence();
        pattern == "*/*"
            || pattern == self.essence
            || pattern
                .strip_suffix("/*")
                .is_some_and(|kind| kind == self.kind())
    }

    /// True when a browser shown this type inline cannot run script from it: images other than
    /// SVG, audio, video, fonts, plain text, CSV, JSON, PDF and opaque bytes. Everything else —
    /// HTML, XHTML, SVG, any XML, JavaScript, and every type not on this list — may be active
    /// content and is served as an attachment.
    pub fn inline_safe(&self) -> bool {
        const SAFE: &[&str] = &[
            "image/png",
            "image/jpeg",
            "image/pjpeg",
            "image/gif",
            "image/webp",
            "image/avif",
            "image/apng",
            "image/bmp",
            "image/tiff",
            "image/heic",
            "image/heif",
            "image/jxl",
            "image/x-icon",
            "image/vnd.microsoft.icon",
            "text/plain",
            "text/csv",
            "text/markdown",
            "text/css",
            "application/json",
            "application/pdf",
            "application/octet-stream",
            "application/zip",
            "application/gzip",
        ];
        matches!(self.kind(), "audio" | "video" | "font") || SAFE.contains(&self.essence())
    }

    /// True when an answer of this type can carry `Content-Security-Policy: sandbox` without
    /// breaking how browsers show it. Everything but PDF: Chromium refuses to start its PDF
    /// viewer in a sandboxed document (crbug.com/413851) and shows "blocked" instead. A PDF
    /// declared as such (and `nosniff`) is only ever shown by the viewer, which runs apart from
    /// the origin, so it needs no sandbox.
    pub fn sandboxable(&self) -> bool {
        self.essence != "application/pdf"
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token<'a>(rest: &mut &'a [u8]) -> &'a str {
    let end = rest
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(rest.len());
    let (token, tail) = rest.split_at(end);
    *rest = tail;
    // Only ASCII token characters were taken.
    std::str::from_utf8(token).unwrap_or("")
}

fn eat(rest: &mut &[u8], byte: u8) -> bool {
    match rest.split_first() {
        Some((&b, tail)) if b == byte => {
            *rest = tail;
            true
        }
        _ => false,
    }
}

fn skip_ows(rest: &mut &[u8]) {
    while let Some((&(b' ' | b'\t'), tail)) = rest.split_first() {
        *rest = tail;
    }
}

/// Consumes `"..."` with `\`-escapes; false when unterminated.
fn quoted_string(rest: &mut &[u8]) -> bool {
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            b'"' => {
                *rest = &rest[i + 1..];
                return true;
            }
            b'\\' if i + 1 < rest.len() => i += 2,
            b'\\' => return false,
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_types() {
        for text in [
            "image/png",
            "text/plain; charset=utf-8",
            "text/plain;charset=UTF-8",
            "  application/json  ",
            "multipart/mixed; boundary=\"a b;c,d\"",
            "application/vnd.api+json",
            "text/plain;;charset=x",
            "text/plain; charset=\"a\\\"b\"",
            "image/*",
        ] {
            assert!(MediaType::parse(text).is_ok(), "{text:?}");
        }
        let t = MediaType::parse(" Text/HTML ; Charset=UTF-8").unwrap();
        assert_eq!(t.essence(), "text/html");
        assert_eq!(t.as_str(), "Text/HTML ; Charset=UTF-8");
    }

    #[test]
    fn invalid_types() {
        for text in [
            "",
            "png",
            "image/",
            "/png",
            "image/png, text/html",
            "image/png,text/html",
            "text/html\r\nx-injected: 1",
            "text/html\nx: 1",
            "text/plain\0",
            "image/png text/html",
            "text/plain; charset",
            "text/plain; charset=",
            "text/plain; charset=\"utf-8",
            "text/plain; =x",
            "téxt/plain",
            "text/plain; a=b c",
            "image/png; x=1, text/html",
            "te(xt/plain",
        ] {
            assert!(MediaType::parse(text).is_err(), "{text:?}");
        }
        assert!(MediaType::parse(&format!("text/{}", "x".repeat(300))).is_err());
        let message = MediaType::parse("image/png, text/html")
            .unwrap_err()
            .to_string();
        assert!(message.contains("list"), "{message}");
    }

    #[test]
    fn patterns() {
        let png = MediaType::parse("IMAGE/PNG; q=1").unwrap();
        assert!(png.matches("image/png"));
        assert!(png.matches("image/*"));
        assert!(png.matches("Image/PNG; charset=x"));
        assert!(png.matches("*/*"));
        assert!(!png.matches("image/jpeg"));
        assert!(!png.matches("imagex/*"));
        assert!(!png.matches("image/png, text/html"));
    }

    #[test]
    fn inline_safety() {
        for safe in [
            "image/png",
            "video/mp4",
            "text/plain; charset=utf-8",
            "application/pdf",
        ] {
            assert!(MediaType::parse(safe).unwrap().inline_safe(), "{safe}");
        }
        for active in [
            "text/html",
            "application/xhtml+xml",
            "image/svg+xml",
            "text/xml",
            "application/xml",
            "text/javascript",
            "application/javascript",
            "application/x-unknown",
            "text/xsl",
            "application/rss+xml",
        ] {
            assert!(!MediaType::parse(active).unwrap().inline_safe(), "{active}");
        }
    }
}
