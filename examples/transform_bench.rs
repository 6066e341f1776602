//! Times one rendition, as docs/benchmarks.md records: a JPEG source resized and re-encoded by
//! `pgstorage::transform` (decode, orient, resize, encode), single-threaded, in-process.
//!
//! `cargo run --release --example transform_bench [runs]`

use std::collections::HashMap;
use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use pgstorage::transform::pipeline::{Request, render};
use pgstorage::transform::{Params, TransformConfig};

/// A photo-like source: smooth gradients with some texture, so the JPEG is not trivially small.
fn source(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        let t = ((x * 31 + y * 17) % 97) as u8;
        Rgb([
            (x * 255 / width) as u8 ^ (t & 7),
            (y * 255 / height) as u8 ^ (t & 3),
            ((x + y) % 256) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image)
        .write_to(&mut out, ImageFormat::Jpeg)
        .expect("encoding the source");
    out.into_inner()
}

fn time(label: &str, bytes: &[u8], query: &[(&str, &str)], runs: usize) {
    let query: HashMap<String, String> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let request = Request {
        params: Params::from_query(&query).expect("parameters"),
        ..Request::default()
    };
    let config = TransformConfig {
        max_pixels: 50_000_000,
        ..TransformConfig::default()
    };
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let out = render(bytes, &request, &config).expect("render");
            std::hint::black_box(out);
            start.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: source {} KiB, p50 {:.1} ms, min {:.1} ms, max {:.1} ms ({runs} runs)",
        bytes.len() / 1024,
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1]),
    );
}

fn main() {
    let runs = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(15);
    let big = source(4000, 3000);
    let square = source(2000, 2000);
    time(
        "4000x3000 JPEG -> 800w WebP q80",
        &big,
        &[("width", "800"), ("format", "webp")],
        runs,
    );
    time(
        "2000x2000 JPEG -> 400w WebP q80",
        &square,
        &[("width", "400"), ("format", "webp")],
        runs,
    );
    time(
        "2000x2000 JPEG -> 400w AVIF q80",
        &square,
        &[("width", "400"), ("format", "avif")],
        runs,
    );
    time(
        "2000x2000 JPEG -> 400w JPEG q80",
        &square,
        &[("width", "400"), ("format", "jpeg")],
        runs,
    );
}
