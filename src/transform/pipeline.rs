//! Decode, orient, resize, re-encode: one rendition, synchronously (run off the async runtime).
//!
//! Safety on hostile input comes from checking before allocating: the declared dimensions are
//! read from the header and refused over the pixel limit before any pixel buffer exists, and the
//! `image` crate's own allocation limit backs that up inside the decoders. Re-encoding writes
//! pixels only, so EXIF, XMP and ICC metadata never reach the output.

use std::io::Cursor;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat,
    ImageReader,
};

use super::params::{Format, Params, Resize};
use super::{Rendered, TransformConfig, TransformError};

/// What the caller asks for, beyond the parameters: what the client accepts and whether the
/// bucket wants AVIF when it can.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub params: Params,
    pub accept: Option<String>,
    pub avif_autodetection: bool,
}

/// Whether AVIF output is built in (rav1e, through the `image` crate's `avif` feature).
pub const AVIF_ENABLED: bool = true;

/// rav1e's speed, 1 (slowest, smallest) to 10: 8 keeps an on-the-fly rendition within a few
/// times a WebP's cost.
const AVIF_SPEED: u8 = 8;

fn decode_error(error: ImageError) -> TransformError {
    match error {
        ImageError::Limits(limit) => TransformError::TooLarge(format!(
            "the image needs more memory to decode than allowed ({limit})"
        )),
        ImageError::Unsupported(what) => TransformError::Unsupported(what.to_string()),
        other => TransformError::InvalidImage(format!("the image cannot be decoded: {other}")),
    }
}

/// Renders `source` as `request` asks, within `config`'s limits.
pub fn render(
    source: &[u8],
    request: &Request,
    config: &TransformConfig,
) -> Result<Rendered, TransformError> {
    let guessed = image::guess_format(source).map_err(|_| {
        TransformError::InvalidImage(
            "the object is not an image of a supported type (PNG, JPEG, GIF, WebP)".into(),
        )
    })?;
    // A GIF's first frame is re-encoded as PNG when its own format is asked for.
    let source_format = match guessed {
        ImageFormat::Png => Format::Png,
        ImageFormat::Jpeg => Format::Jpeg,
        ImageFormat::Gif => Format::Png,
        ImageFormat::WebP => Format::Webp,
        other => {
            return Err(TransformError::Unsupported(format!(
                "{other:?} images cannot be transformed (PNG, JPEG, GIF and WebP can)"
            )));
        }
    };
    if guessed == ImageFormat::Jpeg && !jpeg_is_complete(source) {
        return Err(TransformError::InvalidImage(
            "the JPEG is truncated (its image data does not end)".into(),
        ));
    }
    let output = request.params.format.resolve(
        source_format,
        request.accept.as_deref(),
        request.avif_autodetection,
        AVIF_ENABLED,
    );

    let mut reader = ImageReader::with_format(Cursor::new(source), guessed);
    let mut limits = image::Limits::default();
    // Backs up the pixel check below inside the decoders: 8 bytes a pixel covers 16-bit RGBA.
    limits.max_alloc = Some(config.max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > config.max_pixels {
        return Err(TransformError::TooLarge(format!(
            "the image is {width}×{height} ({pixels} pixels); at most {} are transformed",
            config.max_pixels
        )));
    }
    if pixels == 0 {
        return Err(TransformError::InvalidImage(
            "the image has no pixels".into(),
        ));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);

    // Dimensions as oriented (a quarter turn swaps them).
    let (width, height) = (image.width(), image.height());
    // JPEG has no alpha: transparent pixels are laid on white rather than going black.
    let alpha = image.color().has_alpha() && output != Format::Jpeg;
    let (pixels, pixel_type, color) = if alpha {
        (
            image.into_rgba8().into_raw(),
            PixelType::U8x4,
            ExtendedColorType::Rgba8,
        )
    } else if image.color().has_alpha() {
        (
            flatten_on_white(image),
            PixelType::U8x3,
            ExtendedColorType::Rgb8,
        )
    } else {
        (
            image.into_rgb8().into_raw(),
            PixelType::U8x3,
            ExtendedColorType::Rgb8,
        )
    };
    let source_image = Image::from_vec_u8(width, height, pixels, pixel_type)
        .map_err(|e| TransformError::Internal(format!("pixel buffer: {e}")))?;
    let resized = resize(source_image, &request.params)?;
    let bytes = encode(
        resized.buffer(),
        resized.width(),
        resized.height(),
        color,
        output,
        request.params.quality(),
    )?;
    Ok(Rendered {
        bytes,
        format: output,
    })
}

/// Whether a JPEG's last scan is followed by its end marker. The JPEG decoder fills a cut-off
/// scan with grey rather than failing, which would serve a half-grey image as if whole. Markers
/// cannot appear inside entropy-coded data (0xFF is stuffed there), so the last start-of-scan
/// is the main image's (an EXIF thumbnail's comes earlier).
fn jpeg_is_complete(source: &[u8]) -> bool {
    let Some(last_scan) = source.windows(2).rposition(|w| w == [0xff, 0xda]) else {
        return false;
    };
    source[last_scan..].windows(2).any(|w| w == [0xff, 0xd9])
}

fn flatten_on_white(image: DynamicImage) -> Vec<u8> {
    let rgba = image.into_rgba8();
    let mut out = Vec::with_capacity(rgba.as_raw().len() / 4 * 3);
    for px in rgba.as_raw().chunks_exact(4) {
        let a = u32::from(px[3]);
        for &c in &px[..3] {
            out.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    out
}

/// Where to crop the source and how big the result is. Nothing is enlarged (as imgproxy's
/// default): a box larger than the source shrinks to fit it, keeping its aspect ratio.
pub fn plan(src_w: u32, src_h: u32, params: &Params) -> ((f64, f64, f64, f64), u32, u32) {
    let (sw, sh) = (f64::from(src_w), f64::from(src_h));
    let full = (0.0, 0.0, sw, sh);
    let round = |v: f64| (v.round() as u32).max(1);
    match (params.width, params.height) {
        (None, None) => (full, src_w, src_h),
        (Some(w), None) => {
            let s = (f64::from(w) / sw).min(1.0);
            (full, round(sw * s), round(sh * s))
        }
        (None, Some(h)) => {
            let s = (f64::from(h) / sh).min(1.0);
            (full, round(sw * s), round(sh * s))
        }
        (Some(w), Some(h)) => {
            let (bw, bh) = (f64::from(w), f64::from(h));
            match params.resize {
                Resize::Fill => (full, w.min(src_w), h.min(src_h)),
                Resize::Contain => {
                    let s = (bw / sw).min(bh / sh).min(1.0);
                    (full, round(sw * s), round(sh * s))
                }
                Resize::Cover => {
                    let s = (bw / sw).max(bh / sh);
                    // The part of the source that the box shows, centred.
                    let (cw, ch) = ((bw / s).min(sw), (bh / s).min(sh));
                    let crop = ((sw - cw) / 2.0, (sh - ch) / 2.0, cw, ch);
                    if s > 1.0 {
                        (crop, round(cw), round(ch))
                    } else {
                        (crop, w, h)
                    }
                }
            }
        }
    }
}

fn resize(source: Image<'static>, params: &Params) -> Result<Image<'static>, TransformError> {
    let (crop, w, h) = plan(source.width(), source.height(), params);
    if (w, h) == (source.width(), source.height()) && crop == (0.0, 0.0, f64::from(w), f64::from(h))
    {
        return Ok(source);
    }
    let mut target = Image::new(w, h, source.pixel_type());
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(crop.0, crop.1, crop.2, crop.3);
    Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|e| TransformError::Internal(format!("resize: {e}")))?;
    Ok(target)
}

fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
    format: Format,
    quality: u8,
) -> Result<Vec<u8>, TransformError> {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        TransformError::Internal(format!("{what} encoding failed: {e}"))
    };
    let mut out = Vec::new();
    match format {
        Format::Jpeg => JpegEncoder::new_with_quality(&mut out, quality)
            .write_image(pixels, width, height, color)
            .map_err(|e| internal("JPEG", &e))?,
        Format::Png => PngEncoder::new(&mut out)
            .write_image(pixels, width, height, color)
            .map_err(|e| internal("PNG", &e))?,
        Format::Webp => {
            let layout = if color == ExtendedColorType::Rgba8 {
                webp::PixelLayout::Rgba
            } else {
                webp::PixelLayout::Rgb
            };
            let mut config =
                webp::WebPConfig::new().map_err(|()| internal("WebP", &"configuration"))?;
            config.quality = f32::from(quality);
            config.method = 4;
            let encoded = webp::Encoder::new(pixels, layout, width, height)
                .encode_advanced(&config)
                .map_err(|e| internal("WebP", &format!("{e:?}")))?;
            out.extend_from_slice(&encoded);
        }
        Format::Avif => {
            image::codecs::avif::AvifEncoder::new_with_speed_quality(&mut out, AVIF_SPEED, quality)
                .write_image(pixels, width, height, color)
                .map_err(|e| internal("AVIF", &e))?
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(w: Option<u32>, h: Option<u32>, resize: Resize) -> Params {
        Params {
            width: w,
            height: h,
            resize,
            ..Params::default()
        }
    }

    #[test]
    fn plans_geometry() {
        let full = (0.0, 0.0, 400.0, 200.0);
        assert_eq!(
            plan(400, 200, &p(Some(100), None, Resize::Cover)),
            (full, 100, 50)
        );
        assert_eq!(
            plan(400, 200, &p(None, Some(100), Resize::Cover)),
            (full, 200, 100)
        );
        assert_eq!(
            plan(400, 200, &p(Some(800), None, Resize::Cover)),
            (full, 400, 200)
        );
        assert_eq!(
            plan(400, 200, &p(Some(100), Some(100), Resize::Contain)),
            (full, 100, 50)
        );
        assert_eq!(
            plan(400, 200, &p(Some(100), Some(100), Resize::Fill)),
            (full, 100, 100)
        );
        assert_eq!(
            plan(400, 200, &p(Some(100), Some(100), Resize::Cover)),
            ((100.0, 0.0, 200.0, 200.0), 100, 100)
        );
        // A box bigger than the source: the box's shape, at the source's scale.
        assert_eq!(
            plan(400, 200, &p(Some(1000), Some(1000), Resize::Cover)),
            ((100.0, 0.0, 200.0, 200.0), 200, 200)
        );
    }
}
