//! Bodies between `s3s` and the core: streams both ways (nothing is buffered), and the
//! integrity checks S3 uploads carry (`Content-MD5`, `x-amz-checksum-*` as headers or as
//! aws-chunked trailers), verified as the bytes pass.
//!
//! A mismatch ends the upload's stream with an error before its end, so the core discards the
//! staged bytes and commits no row; the [`Digests`] handle tells the handler it was a bad
//! digest rather than a broken connection.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::S3ErrorCode;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{Checksum, StreamingBlob};
use s3s::{S3Result, TrailingHeaders};

use super::error::s3;
use crate::bytes::ByteStream;

/// A core stream as an `s3s` body. `s3s` wants `Sync` streams; the core's are only `Send`,
/// and a stream is only ever polled through `&mut`, so a mutex that is never contended makes
/// up the difference.
pub(super) fn to_blob(stream: ByteStream) -> StreamingBlob {
    StreamingBlob::wrap(SyncStream(Mutex::new(stream)))
}

struct SyncStream(Mutex<ByteStream>);

impl Stream for SyncStream {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(stream) => stream.poll_next_unpin(cx),
            Err(_) => Poll::Ready(Some(Err(io::Error::other("a body stream was poisoned")))),
        }
    }
}

/// The checksums an upload announced, to verify against its bytes.
#[derive(Debug, Default, Clone)]
pub(super) struct Expected {
    /// `Content-MD5` (base64 of the 16-byte digest).
    pub md5: Option<String>,
    /// `x-amz-checksum-*` given as headers.
    pub checksums: Checksum,
    /// `x-amz-trailer`: the checksum header that follows an aws-chunked body.
    pub trailer: Option<String>,
    pub trailers: Option<TrailingHeaders>,
}

/// What the verifier measured, read by the handler once the core is done.
#[derive(Debug, Default)]
struct Measured {
    md5_hex: Option<String>,
    mismatch: Option<String>,
    /// The transfer itself failed a check of `s3s` (payload hash, chunk signature).
    transfer: Option<Transfer>,
    checksums: Checksum,
}

#[derive(Debug, Clone, Copy)]
enum Transfer {
    PayloadHashMismatch,
    ChunkSignatureMismatch,
}

impl Transfer {
    /// `s3s` reports these through the body stream as errors of private types; their text is
    /// all there is to go by. Unrecognised failures stay plain broken uploads.
    fn of(error: &dyn std::error::Error) -> Option<Self> {
        let text = error.to_string();
        if text.contains("Sha256Mismatch") {
            Some(Self::PayloadHashMismatch)
        } else if text.contains("SignatureMismatch") {
            Some(Self::ChunkSignatureMismatch)
        } else {
            None
        }
    }

    fn error(self) -> s3s::S3Error {
        match self {
            Self::PayloadHashMismatch => {
                let code = S3ErrorCode::from_bytes(b"XAmzContentSHA256Mismatch")
                    .unwrap_or(S3ErrorCode::BadDigest);
                let mut error = s3(
                    code,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                );
                error.set_status_code(axum::http::StatusCode::BAD_REQUEST);
                error
            }
            Self::ChunkSignatureMismatch => s3(
                S3ErrorCode::SignatureDoesNotMatch,
                "The signature of a chunk of the body does not match.",
            ),
        }
    }
}

/// The handler's view of a verified body.
#[derive(Debug, Clone, Default)]
pub(super) struct Digests(Arc<Mutex<Measured>>);

impl Digests {
    /// The MD5 of the whole body (the object's ETag), once it has been read to its end.
    pub(super) fn md5_hex(&self) -> Option<String> {
        self.0.lock().ok().and_then(|m| m.md5_hex.clone())
    }

    /// `BadDigest` if a checksum did not match, or the error of a transfer check that failed.
    pub(super) fn mismatch(&self) -> Option<s3s::S3Error> {
        let measured = self.0.lock().ok()?;
        if let Some(transfer) = measured.transfer {
            return Some(transfer.error());
        }
        measured
            .mismatch
            .as_ref()
            .map(|what| s3(S3ErrorCode::BadDigest, what.clone()))
    }

    /// The checksums computed (those the client asked for), to echo back.
    pub(super) fn checksums(&self) -> Checksum {
        self.0
            .lock()
            .map(|m| m.checksums.clone())
            .unwrap_or_default()
    }
}

fn hasher_for(expected: &Expected) -> ChecksumHasher {
    let mut hasher = ChecksumHasher::default();
    let c = &expected.checksums;
    let trailer = expected
        .trailer
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    let wants = |given: bool, name: &str| given || trailer == format!("x-amz-checksum-{name}");
    if wants(c.checksum_crc32.is_some(), "crc32") {
        hasher.crc32 = Some(s3s::crypto::Crc32::new());
    }
    if wants(c.checksum_crc32c.is_some(), "crc32c") {
        hasher.crc32c = Some(s3s::crypto::Crc32c::new());
    }
    if wants(c.checksum_sha1.is_some(), "sha1") {
        hasher.sha1 = Some(s3s::crypto::Sha1::new());
    }
    if wants(c.checksum_sha256.is_some(), "sha256") {
        hasher.sha256 = Some(s3s::crypto::Sha256::new());
    }
    if wants(c.checksum_crc64nvme.is_some(), "crc64nvme") {
        hasher.crc64nvme = Some(s3s::crypto::Crc64Nvme::new());
    }
    hasher
}

/// Checks a `Content-MD5` header's form up front (S3 answers InvalidDigest).
pub(super) fn check_md5_header(md5: Option<&str>) -> S3Result<()> {
    if let Some(md5) = md5 {
        let ok = base64::engine::general_purpose::STANDARD
            .decode(md5.trim())
            .is_ok_and(|raw| raw.len() == 16);
        if !ok {
            return Err(s3(
                S3ErrorCode::InvalidDigest,
                "The Content-MD5 you specified is not valid.",
            ));
        }
    }
    Ok(())
}

/// The upload body, verified as it streams.
pub(super) fn verified(blob: StreamingBlob, expected: Expected) -> (ByteStream, Digests) {
    let digests = Digests::default();
    let state = Verifier {
        blob,
        md5: Md5::new(),
        hasher: Some(hasher_for(&expected)),
        expected,
        digests: digests.clone(),
        done: false,
    };
    (state.boxed(), digests)
}

struct Verifier {
    blob: StreamingBlob,
    md5: Md5,
    hasher: Option<ChecksumHasher>,
    expected: Expected,
    digests: Digests,
    done: bool,
}

impl Verifier {
    /// Compares what was measured with what was announced; the first difference, if any.
    fn finish(&mut self) -> Option<String> {
        let md5 = std::mem::take(&mut self.md5).finalize();
        let computed = self.hasher.take().unwrap_or_default().finalize();
        let mismatch = self.compare(&md5, &computed);
        if let Ok(mut measured) = self.digests.0.lock() {
            measured.md5_hex = Some(hex::encode(md5));
            measured.checksums = computed;
            measured.mismatch = mismatch.clone();
        }
        mismatch
    }

    fn compare(&self, md5: &[u8], computed: &Checksum) -> Option<String> {
        if let Some(given) = &self.expected.md5 {
            let given = base64::engine::general_purpose::STANDARD
                .decode(given.trim())
                .unwrap_or_default();
            if given != md5 {
                return Some(
                    "The Content-MD5 you specified did not match what we received.".into(),
                );
            }
        }
        let mut announced = self.expected.checksums.clone();
        if let Some(trailers) = &self.expected.trailers {
            trailers.read(|headers| {
                let get = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                announced.checksum_crc32 = announced
                    .checksum_crc32
                    .take()
                    .or(get("x-amz-checksum-crc32"));
                announced.checksum_crc32c = announced
                    .checksum_crc32c
                    .take()
                    .or(get("x-amz-checksum-crc32c"));
                announced.checksum_sha1 = announced
                    .checksum_sha1
                    .take()
                    .or(get("x-amz-checksum-sha1"));
                announced.checksum_sha256 = announced
                    .checksum_sha256
                    .take()
                    .or(get("x-amz-checksum-sha256"));
                announced.checksum_crc64nvme = announced
                    .checksum_crc64nvme
                    .take()
                    .or(get("x-amz-checksum-crc64nvme"));
            });
        }
        let pairs = [
            ("CRC32", &announced.checksum_crc32, &computed.checksum_crc32),
            (
                "CRC32C",
                &announced.checksum_crc32c,
                &computed.checksum_crc32c,
            ),
            ("SHA1", &announced.checksum_sha1, &computed.checksum_sha1),
            (
                "SHA256",
                &announced.checksum_sha256,
                &computed.checksum_sha256,
            ),
            (
                "CRC64NVME",
                &announced.checksum_crc64nvme,
                &computed.checksum_crc64nvme,
            ),
        ];
        for (name, given, ours) in pairs {
            if let (Some(given), Some(ours)) = (given, ours)
                && given.trim() != ours
            {
                return Some(format!(
                    "The {name} you specified did not match the calculated checksum."
                ));
            }
        }
        None
    }
}

impl Stream for Verifier {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.blob.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(data))) => {
                self.md5.update(&data);
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&data);
                }
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                if let Some(transfer) = Transfer::of(error.as_ref())
                    && let Ok(mut measured) = self.digests.0.lock()
                {
                    measured.transfer = Some(transfer);
                }
                Poll::Ready(Some(Err(io::Error::other(error))))
            }
            Poll::Ready(None) => {
                self.done = true;
                match self.finish() {
                    None => Poll::Ready(None),
                    Some(what) => {
                        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, what))))
                    }
                }
            }
        }
    }
}
