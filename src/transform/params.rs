//! Transformation parameters as Supabase Storage takes them (`width`, `height`, `resize`,
//! `quality`, `format`), validated and normalised into one canonical form: the same rendition
//! always has the same canonical string, which signed URLs carry and ETags derive from.

use std::collections::HashMap;

use serde_json::Value;

use super::TransformError;

/// Largest `width` / `height` (Supabase's limit).
pub const MAX_DIMENSION: u32 = 2500;
/// Quality when none is asked for (Supabase's default).
pub const DEFAULT_QUALITY: u8 = 80;

/// How the image is fitted into `width` × `height` when both are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resize {
    /// Fills the box, keeping the aspect ratio, cropping what overflows (centred).
    #[default]
    Cover,
    /// Fits inside the box, keeping the aspect ratio.
    Contain,
    /// Stretches to the box exactly.
    Fill,
}

impl Resize {
    fn as_str(self) -> &'static str {
        match self {
            Resize::Cover => "cover",
            Resize::Contain => "contain",
            Resize::Fill => "fill",
        }
    }
}

/// An encoding to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Avif,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Avif => "avif",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
        }
    }
}

/// What the client asked for as output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestedFormat {
    /// Nothing said: negotiated from `Accept` (see [`RequestedFormat::resolve`]).
    #[default]
    Auto,
    /// The source's own format.
    Origin,
    Exact(Format),
}

/// Validated parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub resize: Resize,
    pub quality: Option<u8>,
    pub format: RequestedFormat,
}

fn dimension(name: &str, value: &str) -> Result<u32, TransformError> {
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_DIMENSION).contains(&n) => Ok(n),
        _ => Err(TransformError::InvalidParams(format!(
            "{name} must be a whole number from 1 to {MAX_DIMENSION}, got {value:?}"
        ))),
    }
}

impl Params {
    /// From query parameters (`?width=200&resize=contain`); other parameters are ignored.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, TransformError> {
        let mut params = Params::default();
        if let Some(w) = query.get("width") {
            params.width = Some(dimension("width", w)?);
        }
        if let Some(h) = query.get("height") {
            params.height = Some(dimension("height", h)?);
        }
        if let Some(r) = query.get("resize") {
            params.resize = match r.as_str() {
                "cover" => Resize::Cover,
                "contain" => Resize::Contain,
                "fill" => Resize::Fill,
                other => {
                    return Err(TransformError::InvalidParams(format!(
                        "resize must be cover, contain or fill, got {other:?}"
                    )));
                }
            };
        }
        if let Some(q) = query.get("quality") {
            params.quality = match q.trim().parse::<u8>() {
                Ok(n) if (20..=100).contains(&n) => Some(n),
                _ => {
                    return Err(TransformError::InvalidParams(format!(
                        "quality must be a whole number from 20 to 100, got {q:?}"
                    )));
                }
            };
        }
        if let Some(f) = query.get("format") {
            params.format = match f.as_str() {
                "origin" => RequestedFormat::Origin,
                "webp" => RequestedFormat::Exact(Format::Webp),
                "avif" => RequestedFormat::Exact(Format::Avif),
                "jpeg" | "jpg" => RequestedFormat::Exact(Format::Jpeg),
                "png" => RequestedFormat::Exact(Format::Png),
                other => {
                    return Err(TransformError::InvalidParams(format!(
                        "format must be origin, webp, avif, jpeg or png, got {other:?}"
                    )));
                }
            };
        }
        Ok(params)
    }

    /// From the `transform` object of a sign request (storage-js sends numbers and strings).
    pub fn from_json(value: &Value) -> Result<Self, TransformError> {
        let Value::Object(fields) = value else {
            return Err(TransformError::InvalidParams(
                "transform must be an object".into(),
            ));
        };
        let mut query = HashMap::new();
        for (key, value) in fields {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(TransformError::InvalidParams(format!(
                        "transform.{key} must be a number or a string, got {other}"
                    )));
                }
            };
            query.insert(key.clone(), text);
        }
        Self::from_query(&query)
    }

    /// The canonical query string: fixed order, defaults written out, so equal requests are
    /// equal strings.
    pub fn canonical(&self) -> String {
        let mut out = Vec::new();
        if let Some(w) = self.width {
            out.push(format!("width={w}"));
        }
        if let Some(h) = self.height {
            out.push(format!("height={h}"));
        }
        out.push(format!("resize={}", self.resize.as_str()));
        out.push(format!(
            "quality={}",
            self.quality.unwrap_or(DEFAULT_QUALITY)
        ));
        match self.format {
            RequestedFormat::Auto => {}
            RequestedFormat::Origin => out.push("format=origin".into()),
            RequestedFormat::Exact(f) => out.push(format!("format={}", f.as_str())),
        }
        out.join("&")
    }

    /// Parses [`Params::canonical`] back (a signed URL's claim).
    pub fn from_canonical(text: &str) -> Result<Self, TransformError> {
        let query = text
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::from_query(&query)
    }

    pub fn quality(&self) -> u8 {
        self.quality.unwrap_or(DEFAULT_QUALITY)
    }
}

impl RequestedFormat {
    /// The encoding to send for a source in `source` format. Without `format`, AVIF goes to
    /// clients that accept it when the bucket asks for it (and AVIF is built in), else WebP to
    /// clients that accept it (as Supabase's hosted service does), else the source's format.
    pub fn resolve(
        self,
        source: Format,
        accept: Option<&str>,
        avif_autodetection: bool,
        avif_enabled: bool,
    ) -> Format {
        self.variant(accept, avif_autodetection, avif_enabled)
            .unwrap_or(source)
    }

    /// The output format as far as it is known without the source (`None`: the source's own).
    pub fn variant(
        self,
        accept: Option<&str>,
        avif_autodetection: bool,
        avif_enabled: bool,
    ) -> Option<Format> {
        match self {
            RequestedFormat::Exact(f) => Some(f),
            RequestedFormat::Origin => None,
            RequestedFormat::Auto => {
                if avif_enabled && avif_autodetection && accepts(accept, "image/avif") {
                    Some(Format::Avif)
                } else if accepts(accept, "image/webp") {
                    Some(Format::Webp)
                } else {
                    None
                }
            }
        }
    }

    /// Whether the answer depends on `Accept` (then it carries `Vary: Accept`).
    pub fn negotiated(self) -> bool {
        self == RequestedFormat::Auto
    }
}

/// Whether `accept` names `media` explicitly with a non-zero weight (a bare `*/*` does not
/// count: browsers send it for every image, including those that cannot decode WebP).
fn accepts(accept: Option<&str>, media: &str) -> bool {
    let Some(accept) = accept else { return false };
    accept.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        if !name.eq_ignore_ascii_case(media) {
            return false;
        }
        !parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validates_and_normalises() {
        let p = Params::from_query(&q(&[("height", "50"), ("width", "100")])).unwrap();
        assert_eq!(p.canonical(), "width=100&height=50&resize=cover&quality=80");
        assert_eq!(
            Params::from_canonical(&p.canonical()).unwrap().canonical(),
            p.canonical()
        );
        for bad in [
            ("width", "0"),
            ("width", "2501"),
            ("height", "-1"),
            ("width", "abc"),
            ("quality", "19"),
            ("quality", "101"),
            ("resize", "stretch"),
            ("format", "gif"),
        ] {
            assert!(Params::from_query(&q(&[bad])).is_err(), "{bad:?}");
        }
        let json = serde_json::json!({"width": 10, "format": "origin", "quality": "90"});
        let p = Params::from_json(&json).unwrap();
        assert_eq!(
            p.canonical(),
            "width=10&resize=cover&quality=90&format=origin"
        );
    }

    #[test]
    fn negotiates() {
        let auto = RequestedFormat::Auto;
        let chrome = Some("image/avif,image/webp,image/apng,*/*;q=0.8");
        assert_eq!(auto.resolve(Format::Png, chrome, true, true), Format::Avif);
        assert_eq!(auto.resolve(Format::Png, chrome, false, true), Format::Webp);
        assert_eq!(auto.resolve(Format::Png, chrome, true, false), Format::Webp);
        assert_eq!(
            auto.resolve(Format::Png, Some("*/*"), true, true),
            Format::Png
        );
        assert_eq!(
            auto.resolve(Format::Jpeg, Some("image/webp;q=0"), false, true),
            Format::Jpeg
        );
        assert_eq!(
            RequestedFormat::Origin.resolve(Format::Jpeg, chrome, true, true),
            Format::Jpeg
        );
    }
}
