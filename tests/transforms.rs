//! Image transformations over real HTTP (`/render/image/...`): parameters, the download rules
//! (RLS, the public route as anon, signed URLs, ETag/304, headers), and hostile sources, each
//! generated here: a PNG declaring 30000×30000 pixels, a small file decoding to many pixels, a
//! truncated JPEG, a non-image, an animated GIF, a 16-bit PNG, an EXIF-rotated JPEG.

mod common;
mod object_helpers;

use std::io::Cursor;

use common::{Options, TestServer, json_of};
use image::codecs::gif::GifEncoder;
use image::{
    Delay, DynamicImage, Frame, GenericImageView, ImageBuffer, ImageFormat, Rgb, RgbImage, Rgba,
    RgbaImage,
};
use object_helpers::{call, journal, row, upload};
use pgstorage::transform::TransformConfig;
use reqwest::Method;
use reqwest::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY, X_CONTENT_TYPE_OPTIONS,
};
use serde_json::{Value, json};

const OBJECTS_PUBLIC_READ: &str = "
    create policy objects_public_read on storage.objects for select to anon, authenticated
    using (exists (select 1 from storage.buckets b where b.id = storage.objects.bucket_id and b.public));
";

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A 400×200 PNG: left half red, right half blue.
fn two_tone_png() -> Vec<u8> {
    let image = RgbImage::from_fn(400, 200, |x, _| {
        if x < 200 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png)
}

fn decoded(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn get(
    server: &TestServer,
    key: Option<&str>,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = call(server, Method::GET, path, key).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn error_of(status: u16, body: &[u8]) -> (u16, Value) {
    (
        status,
        serde_json::from_slice(body).unwrap_or(Value::String(String::from_utf8_lossy(body).into())),
    )
}

/// A server with a private bucket `img` holding `name` = `body` (uploaded as service_role).
async fn server_with(options: Options, name: &str, body: Vec<u8>) -> TestServer {
    let server = TestServer::start_with(options).await;
    server.create_bucket("img", false).await;
    let (status, answer) = upload(&server, &server.service_key(), "img", name, body, false).await;
    assert_eq!(status, 200, "{answer}");
    server
}

#[tokio::test]
async fn parameters_resize_and_reencode() {
    let server = server_with(Options::default(), "a/two.png", two_tone_png()).await;
    let key = server.service_key();
    let path = |q: &str| format!("/render/image/authenticated/img/a/two.png?{q}");

    // Width alone keeps the aspect ratio; without `format` and without WebP in Accept the
    // source's format is kept.
    let (status, headers, body) = get(&server, Some(&key), &path("width=100")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[CONTENT_TYPE], "image/png");
    assert_eq!(decoded(&body).dimensions(), (100, 50));

    // Both dimensions: cover crops the middle, contain fits inside, fill stretches.
    for (resize, want) in [
        ("cover", (100, 100)),
        ("contain", (100, 50)),
        ("fill", (100, 100)),
    ] {
        let (status, _, body) = get(
            &server,
            Some(&key),
            &path(&format!("width=100&height=100&resize={resize}")),
        )
        .await;
        assert_eq!(status, 200, "{resize}");
        let image = decoded(&body);
        assert_eq!(image.dimensions(), want, "{resize}");
        if resize == "cover" {
            // The centred crop shows both halves: red on the left, blue on the right.
            assert!(image.to_rgb8().get_pixel(5, 50)[0] > 200);
            assert!(image.to_rgb8().get_pixel(95, 50)[2] > 200);
        }
    }

    // format=webp is real WebP; format=jpeg a JPEG; quality changes the bytes.
    let (status, headers, webp) = get(&server, Some(&key), &path("width=100&format=webp")).await;
    assert_eq!(status, 200);
    assert_eq!(headers[CONTENT_TYPE], "image/webp");
    assert_eq!(image::guess_format(&webp).unwrap(), ImageFormat::WebP);
    assert_eq!(decoded(&webp).dimensions(), (100, 50));
    let (_, headers, low) = get(
        &server,
        Some(&key),
        &path("width=100&format=jpeg&quality=20"),
    )
    .await;
    assert_eq!(headers[CONTENT_TYPE], "image/jpeg");
    let (_, _, high) = get(
        &server,
        Some(&key),
        &path("width=100&format=jpeg&quality=100"),
    )
    .await;
    assert_ne!(low, high);

    // Without `format`, a client that accepts WebP gets WebP.
    let response = call(&server, Method::GET, &path("width=50"), Some(&key))
        .header(ACCEPT, "image/avif,image/webp,*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, CONTENT_TYPE), "image/webp");
    assert_eq!(header(&response, VARY), "Accept");

    // Out-of-range or unknown parameters: 400 with the reason.
    for bad in [
        "width=0",
        "width=2501",
        "height=abc",
        "quality=10",
        "resize=stretch",
        "format=gif",
    ] {
        let (status, _, body) = get(&server, Some(&key), &path(bad)).await;
        let (status, body) = error_of(status, &body);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "InvalidRequest", "{bad}");
    }
    // AVIF when asked for by name.
    let (status, headers, avif) = get(&server, Some(&key), &path("width=40&format=avif")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&avif));
    assert_eq!(headers[CONTENT_TYPE], "image/avif");
    assert_eq!(&avif[4..12], b"ftypavif");

    // Without `format`, AVIF only for a bucket with avif_autodetection and a client that
    // accepts it; WebP otherwise.
    let negotiate = async |accept: &str| {
        let response = call(&server, Method::GET, &path("width=30"), Some(&key))
            .header(ACCEPT, accept)
            .send()
            .await
            .unwrap();
        header(&response, CONTENT_TYPE)
    };
    let chrome = "image/avif,image/webp,image/apng,*/*;q=0.8";
    assert_eq!(negotiate(chrome).await, "image/webp");
    server
        .db
        .sql("update storage.buckets set avif_autodetection = true where id = 'img'")
        .await;
    assert_eq!(negotiate(chrome).await, "image/avif");
    assert_eq!(negotiate("image/webp,*/*").await, "image/webp");
    assert_eq!(negotiate("*/*").await, "image/png");

    // Also under /storage/v1.
    let (status, _, body) = get(
        &server,
        Some(&key),
        "/storage/v1/render/image/authenticated/img/a/two.png?height=20",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(decoded(&body).dimensions(), (40, 20));
}

#[tokio::test]
async fn same_rules_as_a_download() {
    let server = TestServer::start().await;
    server.create_bucket("pub", true).await;
    server.create_bucket("priv", false).await;
    let service = server.service_key();
    for bucket in ["pub", "priv"] {
        let response = call(
            &server,
            Method::POST,
            &format!("/object/{bucket}/p.png"),
            Some(&service),
        )
        .header(CACHE_CONTROL, "max-age=600")
        .header(CONTENT_TYPE, "image/png")
        .body(two_tone_png())
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
    }
    let user = server.user_key("u1");

    // No policy: invisible, as for a download (404, never the image).
    let (status, _, _) = get(
        &server,
        Some(&user),
        "/render/image/authenticated/priv/p.png",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&server, None, "/render/image/public/pub/p.png?width=10").await;
    assert_eq!(status, 404);

    // The seed's public-read policy: the public route serves public buckets as anon, even with
    // a service key attached, and still not the private bucket.
    server.db.sql(OBJECTS_PUBLIC_READ).await;
    for key in [None, Some(service.as_str())] {
        let (status, headers, body) =
            get(&server, key, "/render/image/public/pub/p.png?width=10").await;
        assert_eq!(status, 200);
        assert_eq!(decoded(&body).dimensions(), (10, 5));
        assert_eq!(headers[CACHE_CONTROL], "max-age=600");
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[VARY], "Accept");
        let (status, _, _) = get(&server, key, "/render/image/public/priv/p.png?width=10").await;
        assert_eq!(status, 404);
    }
    // A policy on storage.download decides for the authenticated route.
    server
        .db
        .sql(
            "create policy dl on storage.objects for select to authenticated
             using (bucket_id = 'priv' and storage.allow_only_operation('download'))",
        )
        .await;
    let (status, _, _) = get(
        &server,
        Some(&user),
        "/render/image/authenticated/priv/p.png?width=8",
    )
    .await;
    assert_eq!(status, 200);

    // ETag/304: the rendition has its own tag, stable for the same parameters, other for others.
    let path = "/render/image/authenticated/priv/p.png?width=8";
    let (_, first, _) = get(&server, Some(&user), path).await;
    let etag = first[ETAG].to_str().unwrap().to_string();
    let (_, again, _) = get(&server, Some(&user), path).await;
    assert_eq!(again[ETAG], etag.as_str());
    let (_, other, _) = get(&server, Some(&user), &format!("{path}&format=webp")).await;
    assert_ne!(other[ETAG], etag.as_str());
    let (_, object, _) = get(&server, Some(&user), "/object/authenticated/priv/p.png").await;
    assert_ne!(object[ETAG], etag.as_str());
    let response = call(&server, Method::GET, path, Some(&user))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert!(response.bytes().await.unwrap().is_empty());
    // An overwrite changes the tag.
    let (status, body) = upload(&server, &service, "priv", "p.png", two_tone_png(), true).await;
    assert_eq!(status, 200, "{body}");
    let response = call(&server, Method::GET, path, Some(&user))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn signed_urls_carry_their_transformation() {
    let server = server_with(Options::default(), "s.png", two_tone_png()).await;
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/object/sign/img/s.png",
            Some(&server.service_key()),
        )
        .json(&json!({"expiresIn": 60, "transform": {"width": 40, "format": "origin"}}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = body["signedURL"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("/render/image/sign/img/s.png?token="),
        "{url}"
    );
    // The signed parameters win over the query's.
    let (status, headers, image) = get(&server, None, &format!("{url}&width=300")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&image));
    assert_eq!(headers[CONTENT_TYPE], "image/png");
    assert_eq!(decoded(&image).dimensions(), (40, 20));
    // A wrong token is refused.
    let (status, _, _) = get(&server, None, "/render/image/sign/img/s.png?token=nope").await;
    assert_eq!(status, 400);
    // Bad parameters are refused when signing.
    let (status, body) = json_of(
        call(
            &server,
            Method::POST,
            "/object/sign/img/s.png",
            Some(&server.service_key()),
        )
        .json(&json!({"expiresIn": 60, "transform": {"width": 9000}}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

/// A PNG chunk: length, type, data, CRC-32 of type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut checked = kind.to_vec();
    checked.extend_from_slice(data);
    out.extend_from_slice(&crc32(&checked).to_be_bytes());
    out
}

/// A valid-looking PNG header declaring `width`×`height` RGB, with a few bytes of image data.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    // A zlib stream holding one stored block of zeros (a row's start).
    let mut idat = vec![0x78, 0x01, 0x01, 0x10, 0x00, 0xef, 0xff];
    idat.extend_from_slice(&[0; 16]);
    idat.extend_from_slice(&16u32.to_be_bytes()); // not a valid Adler-32 for the real data
    out.extend(chunk(b"IDAT", &idat));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (orientation 6).
fn rotated_jpeg() -> Vec<u8> {
    let image = RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let jpeg = encode(&DynamicImage::ImageRgb8(image), ImageFormat::Jpeg);
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&[0, 6, 0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A large photo rendered small is decoded at a reduced DCT scale: same geometry and colours
/// as a full decode (a baseline and a progressive JPEG, colour and grey).
#[tokio::test]
async fn large_jpegs_render_small_from_a_scaled_decode() {
    let server = TestServer::start().await;
    server.create_bucket("img", false).await;
    let key = server.service_key();
    let photo = RgbImage::from_fn(1600, 1000, |x, _| {
        if x < 800 {
            Rgb([230, 20, 20])
        } else {
            Rgb([20, 20, 230])
        }
    });
    let jpeg = encode(&DynamicImage::ImageRgb8(photo.clone()), ImageFormat::Jpeg);
    let grey = encode(
        &DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(photo).to_luma8()),
        ImageFormat::Jpeg,
    );
    for (name, body) in [("photo.jpg", jpeg), ("grey.jpg", grey)] {
        let (status, answer) = upload(&server, &key, "img", name, body, false).await;
        assert_eq!(status, 200, "{answer}");
        for (query, want) in [
            ("width=200", (200, 125)),
            ("width=150&height=150", (150, 150)),
            ("height=100&width=400&resize=fill", (400, 100)),
            ("width=700", (700, 438)),
        ] {
            let (status, _, body) = get(
                &server,
                Some(&key),
                &format!("/render/image/authenticated/img/{name}?{query}&format=png"),
            )
            .await;
            assert_eq!(status, 200, "{name} {query}");
            let image = decoded(&body).to_rgb8();
            assert_eq!(image.dimensions(), want, "{name} {query}");
            let (w, h) = want;
            let (left, right) = (
                image.get_pixel(w / 8, h / 2),
                image.get_pixel(w - w / 8, h / 2),
            );
            if name == "photo.jpg" {
                assert!(left[0] > 200 && left[2] < 60, "{name} {query} {left:?}");
                assert!(right[2] > 200 && right[0] < 60, "{name} {query} {right:?}");
            } else {
                assert!(left[0].abs_diff(right[0]) < 80, "{name} {query}");
            }
        }
    }
}

#[tokio::test]
async fn hostile_and_unusual_sources() {
    let options = Options {
        transform: TransformConfig {
            max_pixels: 4_000_000,
            max_source_bytes: 2_000_000,
            ..TransformConfig::default()
        },
        ..Options::default()
    };
    let server = TestServer::start_with(options).await;
    server.create_bucket("img", false).await;
    let key = server.service_key();
    let put = |name: &'static str, body: Vec<u8>| {
        let server = &server;
        let key = key.clone();
        async move {
            let (status, answer) = upload(server, &key, "img", name, body, false).await;
            assert_eq!(status, 200, "{answer}");
        }
    };
    let render =
        |name: &str, query: &str| format!("/render/image/authenticated/img/{name}?{query}");
    let expect_422 = async |name: &str, code: &str| {
        let (status, _, body) = get(&server, Some(&key), &render(name, "width=10")).await;
        let (status, body) = error_of(status, &body);
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["code"], code, "{name}: {body}");
        assert!(!body["message"].as_str().unwrap_or("").is_empty());
    };

    // Declares 30000×30000 (900 megapixels) in 80 bytes: refused from the header alone.
    put("huge.png", png_declaring(30_000, 30_000)).await;
    expect_422("huge.png", "ImageTooLarge").await;

    // A real, valid PNG of 5000×5000 black pixels: ~25 megapixels from a few KiB (a
    // decompression bomb against this server's 4-megapixel limit).
    let bomb = encode(
        &DynamicImage::ImageLuma8(ImageBuffer::new(5000, 5000)),
        ImageFormat::Png,
    );
    assert!(bomb.len() < 200_000, "{}", bomb.len());
    put("bomb.png", bomb).await;
    expect_422("bomb.png", "ImageTooLarge").await;

    // Over the source byte limit.
    let noisy = RgbImage::from_fn(1000, 1000, |x, y| {
        Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, (x ^ y) as u8])
    });
    let big = encode(&DynamicImage::ImageRgb8(noisy), ImageFormat::Png);
    assert!(big.len() > 2_000_000, "{}", big.len());
    put("big.png", big).await;
    expect_422("big.png", "ImageTooLarge").await;

    // A truncated JPEG, a non-image, a PNG whose data is cut off.
    let photo = RgbImage::from_fn(300, 300, |x, y| Rgb([x as u8, y as u8, 128]));
    let jpeg = encode(&DynamicImage::ImageRgb8(photo), ImageFormat::Jpeg);
    put("cut.jpg", jpeg[..jpeg.len() / 3].to_vec()).await;
    expect_422("cut.jpg", "InvalidImage").await;
    put("notes.png", b"these are not pixels".to_vec()).await;
    expect_422("notes.png", "InvalidImage").await;
    put("small-lie.png", png_declaring(100, 100)).await;
    expect_422("small-lie.png", "InvalidImage").await;

    // An animated GIF: the first frame (green), not the second (magenta).
    let mut gif = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut gif);
        for color in [[0, 255, 0, 255], [255, 0, 255, 255]] {
            let frame = RgbaImage::from_pixel(20, 20, Rgba(color));
            encoder
                .encode_frame(Frame::from_parts(
                    frame,
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                ))
                .unwrap();
        }
    }
    put("anim.gif", gif).await;
    let (status, headers, body) = get(&server, Some(&key), &render("anim.gif", "width=10")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[CONTENT_TYPE], "image/png");
    let first = decoded(&body).to_rgba8();
    assert_eq!(first.dimensions(), (10, 10));
    assert_eq!(first.get_pixel(5, 5).0, [0, 255, 0, 255]);

    // A 16-bit PNG with alpha.
    let deep: ImageBuffer<Rgba<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(64, 32, Rgba([65535, 0, 0, 65535]));
    put(
        "deep.png",
        encode(&DynamicImage::ImageRgba16(deep), ImageFormat::Png),
    )
    .await;
    let (status, _, body) = get(
        &server,
        Some(&key),
        &render("deep.png", "width=32&format=webp"),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let image = decoded(&body);
    assert_eq!(image.dimensions(), (32, 16));
    assert!(image.to_rgb8().get_pixel(16, 8)[0] > 240);

    // EXIF orientation is applied (40×20 stored, shown 20×40), and the EXIF is not passed on.
    put("turned.jpg", rotated_jpeg()).await;
    let (status, _, body) = get(&server, Some(&key), &render("turned.jpg", "format=jpeg")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(decoded(&body).dimensions(), (20, 40));
    assert!(!body.windows(4).any(|w| w == b"Exif"));
    // Also when the JPEG is decoded at a reduced scale (the output is half its size or less).
    let (status, _, body) = get(&server, Some(&key), &render("turned.jpg", "width=10")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(decoded(&body).dimensions(), (10, 20));
}

/// A CMYK JPEG (and its YCCK form), as Photoshop writes them (Adobe marker, inverted values):
/// rendered in RGB with the right colours. Left half white (no ink), right half cyan.
#[tokio::test]
async fn cmyk_and_ycck_jpegs_render_in_rgb() {
    let server = TestServer::start().await;
    server.create_bucket("img", false).await;
    let key = server.service_key();
    let (width, height) = (64u16, 32u16);
    let mut cmyk = Vec::new();
    for _ in 0..height {
        for x in 0..width {
            cmyk.extend_from_slice(if x < width / 2 {
                &[0, 0, 0, 0]
            } else {
                &[255, 0, 0, 0]
            });
        }
    }
    for (name, color) in [
        ("cmyk.jpg", jpeg_encoder::ColorType::Cmyk),
        ("ycck.jpg", jpeg_encoder::ColorType::CmykAsYcck),
    ] {
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95)
            .encode(&cmyk, width, height, color)
            .unwrap();
        assert!(jpeg.windows(5).any(|w| w == b"Adobe"));
        let (status, answer) = upload(&server, &key, "img", name, jpeg, false).await;
        assert_eq!(status, 200, "{answer}");
        for query in ["width=32&format=png", "width=16&format=png"] {
            let (status, headers, body) = get(
                &server,
                Some(&key),
                &format!("/render/image/authenticated/img/{name}?{query}"),
            )
            .await;
            assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
            assert_eq!(headers[CONTENT_TYPE], "image/png");
            let image = decoded(&body).to_rgb8();
            let (w, h) = image.dimensions();
            assert_eq!(w * 2, h * 4, "{name} {query}");
            let white = image.get_pixel(w / 8, h / 2);
            let cyan = image.get_pixel(w - w / 8, h / 2);
            assert!(
                white.0.iter().all(|&c| c > 220),
                "{name} {query}: {white:?}"
            );
            assert!(
                cyan[0] < 60 && cyan[1] > 180 && cyan[2] > 180,
                "{name} {query}: {cyan:?}"
            );
        }
    }
}

// ---- The rendition cache (docs/transforms.md, "Caching") ----

/// The cached renditions, as (key, variant), from the server's own table.
async fn renditions(server: &TestServer) -> Vec<(String, String)> {
    server
        .db
        .admin_client()
        .await
        .query(
            "select key, variant from storage.renditions order by created_at, key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Waits until `count` renditions are recorded and no key is staged (the cache is written
/// after the response, off its path), then returns them.
async fn settled_renditions(server: &TestServer, count: usize) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = renditions(server).await;
        let staged = journal(server)
            .await
            .iter()
            .filter(|(_, state)| state == "staged")
            .count();
        if found.len() == count && staged == 0 {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "renditions {found:?}, {staged} staged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn collect(server: &TestServer) {
    server
        .storage
        .collect_garbage(std::time::Duration::ZERO)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rendition_is_cached_then_freed_by_an_overwrite() {
    // The source is removed behind the server's back below: keep no copy of it in memory.
    let options = Options {
        small_object_cache: 0,
        ..Options::default()
    };
    let server = server_with(options, "two.png", two_tone_png()).await;
    let key = server.service_key();
    let path = "/render/image/authenticated/img/two.png?width=100&format=webp";
    let (status, first_headers, first) = get(&server, Some(&key), path).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&first));
    let cached = settled_renditions(&server, 1).await;
    let (rendition_key, variant) = &cached[0];
    assert_eq!(
        variant,
        "width=100&resize=cover&quality=80&format=webp|webp"
    );
    assert!(server.key_exists(rendition_key).await);
    assert_eq!(server.stored_keys().await, 2);

    // The next request is served from the cache, without the source: remove the source's
    // bytes from the store behind the server's back, and the rendition still comes, byte for
    // byte, with the same headers (a render would now fail).
    let source = row(&server, "img", "two.png")
        .await
        .unwrap()
        .version
        .unwrap();
    server.store.open().await.delete(&source).await.unwrap();
    let (status, headers, second) = get(&server, Some(&key), path).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&second));
    assert_eq!(second, first);
    for name in [CONTENT_TYPE, ETAG, CACHE_CONTROL, VARY] {
        assert_eq!(headers[&name], first_headers[&name], "{name}");
    }
    assert_eq!(headers["content-length"], first.len().to_string().as_str());
    // 304 still answers from the tag alone.
    let response = call(&server, Method::GET, path, Some(&key))
        .header(IF_NONE_MATCH, &first_headers[ETAG])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    // Another variant is not in the cache: it needs the (now missing) source.
    let (status, _, _) = get(
        &server,
        Some(&key),
        "/render/image/authenticated/img/two.png?width=50&format=webp",
    )
    .await;
    assert_eq!(status, 500);

    // An overwrite releases the rendition with the old bytes; the collector frees both.
    let (status, answer) = upload(&server, &key, "img", "two.png", two_tone_png(), true).await;
    assert_eq!(status, 200, "{answer}");
    assert!(renditions(&server).await.is_empty());
    assert!(
        journal(&server)
            .await
            .contains(&(rendition_key.clone(), "released".into()))
    );
    collect(&server).await;
    assert!(!server.key_exists(rendition_key).await);
    assert_eq!(server.stored_keys().await, 1);
    // The new version renders (and caches) afresh, under a new tag.
    let (status, headers, _) = get(&server, Some(&key), path).await;
    assert_eq!(status, 200);
    assert_ne!(headers[ETAG], first_headers[ETAG]);
    assert_ne!(settled_renditions(&server, 1).await[0].0, *rendition_key);
}

#[tokio::test]
async fn deleting_the_object_frees_its_renditions() {
    let server = server_with(Options::default(), "two.png", two_tone_png()).await;
    let key = server.service_key();
    for query in [
        "width=100",
        "width=100&format=webp",
        "height=20&format=jpeg",
    ] {
        let (status, _, _) = get(
            &server,
            Some(&key),
            &format!("/render/image/authenticated/img/two.png?{query}"),
        )
        .await;
        assert_eq!(status, 200, "{query}");
    }
    let cached = settled_renditions(&server, 3).await;
    assert_eq!(server.stored_keys().await, 4);

    let response = call(&server, Method::DELETE, "/object/img/two.png", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(renditions(&server).await.is_empty());
    collect(&server).await;
    for (rendition_key, _) in &cached {
        assert!(!server.key_exists(rendition_key).await);
    }
    assert_eq!(server.stored_keys().await, 0);
    assert!(journal(&server).await.is_empty());
}

#[tokio::test]
async fn with_the_cache_off_nothing_is_written() {
    let options = Options {
        transform: TransformConfig {
            cache: false,
            ..TransformConfig::default()
        },
        ..Options::default()
    };
    let server = server_with(options, "two.png", two_tone_png()).await;
    let key = server.service_key();
    for _ in 0..3 {
        let (status, _, _) = get(
            &server,
            Some(&key),
            "/render/image/authenticated/img/two.png?width=100",
        )
        .await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(renditions(&server).await.is_empty());
    assert!(journal(&server).await.is_empty());
    assert_eq!(server.stored_keys().await, 1);
}

#[tokio::test]
async fn the_cache_never_bypasses_the_read_policy() {
    let server = TestServer::start().await;
    server.create_bucket("img", true).await;
    server
        .db
        .sql(
            "create policy own_read on storage.objects for select to authenticated \
               using (owner_id = auth.uid());
             create policy own_insert on storage.objects for insert to authenticated \
               with check (owner_id = auth.uid());",
        )
        .await;
    let owner = server.user_key("u1");
    let (status, answer) = upload(&server, &owner, "img", "mine.png", two_tone_png(), false).await;
    assert_eq!(status, 200, "{answer}");
    let path = "/render/image/authenticated/img/mine.png?width=100";
    let (status, _, _) = get(&server, Some(&owner), path).await;
    assert_eq!(status, 200);
    settled_renditions(&server, 1).await;
    // Cached, yet another user, anon and the public route (as anon) get 404, as before.
    let other = server.user_key("u2");
    let anon = server.anon_key();
    for (key, path) in [
        (Some(other.as_str()), path),
        (Some(anon.as_str()), path),
        (None, "/render/image/public/img/mine.png?width=100"),
    ] {
        for method in [Method::GET, Method::HEAD] {
            let response = call(&server, method.clone(), path, key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{method} {path}");
        }
    }
    let (status, _, _) = get(&server, Some(&owner), path).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn concurrent_first_requests_leave_one_rendition() {
    let server = server_with(Options::default(), "two.png", two_tone_png()).await;
    let key = server.service_key();
    let path = "/render/image/authenticated/img/two.png?width=120&format=png";
    let answers = futures::future::join_all((0..8).map(|_| get(&server, Some(&key), path))).await;
    for (status, _, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(body, &answers[0].2);
    }
    let cached = settled_renditions(&server, 1).await;
    // The losers' bytes are released to the collector, which frees them.
    collect(&server).await;
    assert!(journal(&server).await.is_empty());
    let mut keys = vec![
        cached[0].0.clone(),
        row(&server, "img", "two.png")
            .await
            .unwrap()
            .version
            .unwrap(),
    ];
    keys.sort();
    assert_eq!(server.store.stored_key_names().await, keys);
    let (status, _, body) = get(&server, Some(&key), path).await;
    assert_eq!(status, 200);
    assert_eq!(body, answers[0].2);
}

#[tokio::test]
async fn head_never_renders() {
    let server = server_with(Options::default(), "two.png", two_tone_png()).await;
    let key = server.service_key();
    let path = "/render/image/authenticated/img/two.png?width=100&format=webp";
    // Uncached: headers from the object's row alone, no rendition made.
    let response = call(&server, Method::HEAD, path, Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, CONTENT_TYPE), "image/webp");
    assert!(
        response
            .headers()
            .get("content-length")
            .is_none_or(|v| v == "0")
    );
    let etag = header(&response, ETAG);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(renditions(&server).await.is_empty());
    // A non-image source is not decoded by HEAD either (the GET says 422).
    let (status, answer) = upload(&server, &key, "img", "notes.png", b"text".to_vec(), false).await;
    assert_eq!(status, 200, "{answer}");
    let response = call(
        &server,
        Method::HEAD,
        "/render/image/authenticated/img/notes.png?width=10",
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);

    // Cached: the rendition's type and length.
    let (status, _, body) = get(&server, Some(&key), path).await;
    assert_eq!(status, 200);
    settled_renditions(&server, 1).await;
    let response = call(&server, Method::HEAD, path, Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, ETAG), etag);
    assert_eq!(header(&response, "content-length"), body.len().to_string());
}

#[tokio::test]
async fn cache_hits_and_misses_are_counted_in_metrics() {
    use pgstorage::http::{self, AppOptions, AppState};
    let db = common::TestDb::new().await;
    let storage = db.storage(4).await;
    let auth = pgstorage::auth::Authenticator::new(
        common::keys(),
        ["anon", "authenticated", "service_role"]
            .map(String::from)
            .to_vec(),
    );
    let exporter = http::metrics::Exporter::install(storage.clone());
    let s3 = pgstorage::s3::S3Front::new(storage.clone(), auth.clone(), common::s3_credentials());
    let app = http::app_with(
        AppState {
            storage: storage.clone(),
            auth,
            s3: Some(s3),
            transform: Default::default(),
        },
        AppOptions {
            metrics: Some(exporter),
            metrics_route: true,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(http::serve(
        listener,
        app,
        http::ServeOptions::default(),
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let service = common::token("service_role", None);
    let send = |method: Method, path: &str| {
        client
            .request(method, format!("{url}{path}"))
            .bearer_auth(&service)
    };
    let response = send(Method::POST, "/bucket")
        .json(&json!({"name": "img"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = send(Method::POST, "/object/img/two.png")
        .body(two_tone_png())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let counts = async || {
        let text = send(Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sample = |series: &str| {
            text.lines()
                .find(|line| line.starts_with(series))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            sample("pgstorage_transform_cache_total{result=\"hit\"}"),
            sample("pgstorage_transform_cache_total{result=\"miss\"}"),
        )
    };
    let path = "/render/image/authenticated/img/two.png?width=64";
    let response = send(Method::GET, path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(counts().await, (0.0, 1.0));
    // Wait for the rendition to be recorded, then hit it twice.
    let admin = db.admin_client().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while admin
        .query_one("select count(*) from storage.renditions", &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for _ in 0..2 {
        let response = send(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(counts().await, (2.0, 1.0));
}
