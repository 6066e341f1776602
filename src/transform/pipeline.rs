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

/// What a source's header says, and how it will be decoded: enough to admit the work against
/// the memory budget before any pixel buffer exists.
#[derive(Debug, Clone)]
pub struct Inspected {
    guessed: ImageFormat,
    output: Format,
    /// For a JPEG much larger than its rendition: the dimensions (as stored) to ask the
    /// decoder for, which then decodes at a reduced DCT scale (1/2, 1/4 or 1/8).
    jpeg_target: Option<(u16, u16)>,
    /// Bytes this transformation may need at its peak, source included (an estimate).
    pub memory: u64,
}

/// Reads the source's header: its type, its declared dimensions against the pixel limit, the
/// output format, and the memory the work will take. Decodes no pixel.
pub fn inspect(
    source: &[u8],
    request: &Request,
    config: &TransformConfig,
) -> Result<Inspected, TransformError> {
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
    let mut decoder = reader(source, guessed, config)
        .into_decoder()
        .map_err(decode_error)?;
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
    let bytes_per_pixel = u64::from(decoder.color_type().bytes_per_pixel());
    let swapped = swaps_dimensions(orientation);
    let (ow, oh) = if swapped {
        (height, width)
    } else {
        (width, height)
    };
    let (crop, out_w, out_h) = plan(ow, oh, &request.params);
    let out_pixels = u64::from(out_w) * u64::from(out_h);

    let mut jpeg_target = None;
    let mut decoded_pixels = pixels;
    let mut coefficients = 0;
    if guessed == ImageFormat::Jpeg {
        let needed = (f64::from(out_w) / crop.2).max(f64::from(out_h) / crop.3);
        let mut jpeg = jpeg_decoder::Decoder::new(source);
        if jpeg.read_info().is_ok()
            && let Some(info) = jpeg.info()
        {
            if info.coding_process == jpeg_decoder::CodingProcess::DctProgressive {
                // A progressive JPEG's coefficients are kept whole until its last scan.
                coefficients = pixels * 3 * 2;
            }
            // Only where it pays, and only for the pixel formats converted here (the `image`
            // crate's decoder handles CMYK and the rest at full size).
            let plain = matches!(
                info.pixel_format,
                jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8
            );
            if plain && needed <= 0.5 {
                let (tw, th) = (
                    (f64::from(ow) * needed).ceil(),
                    (f64::from(oh) * needed).ceil(),
                );
                let (tw, th) = if swapped { (th, tw) } else { (tw, th) };
                let target = (tw.clamp(1.0, 65535.0) as u16, th.clamp(1.0, 65535.0) as u16);
                if let Ok((sw, sh)) = jpeg.scale(target.0, target.1) {
                    jpeg_target = Some(target);
                    decoded_pixels = u64::from(sw) * u64::from(sh);
                }
            }
        }
    }
    // The decoded buffer, a converted or turned copy of it, the resized pixels and the
    // encoder's working set, plus the source itself.
    let memory = source.len() as u64
        + coefficients
        + decoded_pixels * (bytes_per_pixel + 4)
        + out_pixels * 4 * 3;
    Ok(Inspected {
        guessed,
        output,
        jpeg_target,
        memory,
    })
}

fn reader<'a>(
    source: &'a [u8],
    format: ImageFormat,
    config: &TransformConfig,
) -> ImageReader<Cursor<&'a [u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(source), format);
    let mut limits = image::Limits::default();
    // Backs up the pixel check inside the decoders: 8 bytes a pixel covers 16-bit RGBA.
    limits.max_alloc = Some(config.max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(limits);
    reader
}

fn swaps_dimensions(orientation: image::metadata::Orientation) -> bool {
    use image::metadata::Orientation as O;
    matches!(
        orientation,
        O::Rotate90 | O::Rotate270 | O::Rotate90FlipH | O::Rotate270FlipH
    )
}

/// Renders `source` as `request` asks, within `config`'s limits.
pub fn render(
    source: &[u8],
    request: &Request,
    config: &TransformConfig,
) -> Result<Rendered, TransformError> {
    let inspected = inspect(source, request, config)?;
    render_inspected(source, request, config, &inspected)
}

/// Decodes a JPEG at a reduced DCT scale: the smallest of 1/8, 1/4, 1/2 that still covers
/// `target` pixels, so a large photo's full-size pixels never exist in memory.
fn decode_scaled_jpeg(
    source: &[u8],
    target: (u16, u16),
    config: &TransformConfig,
) -> Result<DynamicImage, TransformError> {
    let invalid = |e: jpeg_decoder::Error| {
        TransformError::InvalidImage(format!("the image cannot be decoded: {e}"))
    };
    let mut jpeg = jpeg_decoder::Decoder::new(source);
    jpeg.set_max_decoding_buffer_size(
        usize::try_from(config.max_pixels.saturating_mul(8)).unwrap_or(usize::MAX),
    );
    jpeg.read_info().map_err(invalid)?;
    let (width, height) = jpeg.scale(target.0, target.1).map_err(invalid)?;
    let pixels = jpeg.decode().map_err(invalid)?;
    let format = jpeg.info().map(|i| i.pixel_format);
    let (width, height) = (u32::from(width), u32::from(height));
    let image = match format {
        Some(jpeg_decoder::PixelFormat::RGB24) => {
            image::RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
        }
        Some(jpeg_decoder::PixelFormat::L8) => {
            image::GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
        }
        _ => None,
    };
    image.ok_or_else(|| TransformError::Internal("the scaled JPEG decode was not as read".into()))
}

/// [`render`] once [`inspect`] has read the header (and the work was admitted).
pub fn render_inspected(
    source: &[u8],
    request: &Request,
    config: &TransformConfig,
    inspected: &Inspected,
) -> Result<Rendered, TransformError> {
    let output = inspected.output;
    let mut decoder = reader(source, inspected.guessed, config)
        .into_decoder()
        .map_err(decode_error)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = match inspected.jpeg_target {
        Some(target) => {
            drop(decoder);
            decode_scaled_jpeg(source, target, config)?
        }
        None => DynamicImage::from_decoder(decoder).map_err(decode_error)?,
    };
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

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image =
            image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 99]));
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image)
            .write_to(&mut out, ImageFormat::Jpeg)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn small_renditions_of_large_jpegs_decode_scaled_and_cost_less() {
        let source = jpeg(2000, 2000);
        let config = TransformConfig::default();
        let request = |width| Request {
            params: p(Some(width), None, Resize::Cover),
            ..Request::default()
        };
        let small = inspect(&source, &request(400), &config).unwrap();
        assert_eq!(small.jpeg_target, Some((400, 400)));
        let full = inspect(&source, &request(1500), &config).unwrap();
        assert_eq!(full.jpeg_target, None);
        // 2000×2000 at 1/4 is 500×500: about a sixteenth of the pixels to hold.
        assert!(small.memory * 4 < full.memory, "{small:?} {full:?}");
        let rendered = render_inspected(&source, &request(400), &config, &small).unwrap();
        let image = image::load_from_memory(&rendered.bytes).unwrap();
        assert_eq!((image.width(), image.height()), (400, 400));
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
