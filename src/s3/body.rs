//! Bodies between `s3s` and the core: streams both ways (nothing is buffered), and the
//! integrity checks S3 uploads carry (`Content-MD5`, `x-amz-content-sha256`, `x-amz-checksum-*`
//! as headers or as aws-chunked trailers).
//!
//! MD5 and SHA-256 are the core's: it measures both of every upload anyway, so the expected
//! values are handed to it ([`ExpectedDigests`]) and it compares them before committing. Only
//! the other checksums (CRC32, CRC32C, SHA-1, CRC64NVME) are computed here, and only when the
//! client announced one. Either way a mismatch ends the upload's stream with an error before
//! its end, so the core discards the staged bytes and commits no row; the [`Digests`] handle
//! tells the handler it was a bad digest rather than a broken connection.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::S3ErrorCode;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{Checksum, StreamingBlob};
use s3s::{S3Result, TrailingHeaders};

use super::error::{object_error, s3};
use crate::bytes::ByteStream;
use crate::core::{DigestKind, Error, ExpectedDigests};

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
    /// The verified `x-amz-content-sha256` of a signed payload that `s3s` left unhashed (see
    /// `prefix::hold_signed_payload`): the core checks it.
    pub payload_sha256: Option<[u8; 32]>,
}

impl Expected {
    /// The trailing checksum header's name, lowercase, if one was announced.
    fn trailer_name(&self) -> Option<String> {
        self.trailer
            .as_deref()
            .map(|t| t.trim().to_ascii_lowercase())
    }

    fn wants(&self, given: bool, name: &str) -> bool {
        given || self.trailer_name().as_deref() == Some(&format!("x-amz-checksum-{name}"))
    }

    /// Whether the client asked for a SHA-256 checksum (header or trailer).
    fn wants_sha256(&self) -> bool {
        self.wants(self.checksums.checksum_sha256.is_some(), "sha256")
    }
}

/// What the verifier measured, read by the handler once the core is done.
#[derive(Debug, Default)]
struct Measured {
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

fn payload_hash_mismatch() -> s3s::S3Error {
    let code =
        S3ErrorCode::from_bytes(b"XAmzContentSHA256Mismatch").unwrap_or(S3ErrorCode::BadDigest);
    let mut error = s3(
        code,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    );
    error.set_status_code(axum::http::StatusCode::BAD_REQUEST);
    error
}

const MD5_MISMATCH: &str = "The Content-MD5 you specified did not match what we received.";

fn checksum_mismatch(name: &str) -> String {
    format!("The {name} you specified did not match the calculated checksum.")
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
            Self::PayloadHashMismatch => payload_hash_mismatch(),
            Self::ChunkSignatureMismatch => s3(
                S3ErrorCode::SignatureDoesNotMatch,
                "The signature of a chunk of the body does not match.",
            ),
        }
    }
}

/// The handler's view of a verified body.
#[derive(Debug, Clone, Default)]
pub(super) struct Digests {
    measured: Arc<Mutex<Measured>>,
    /// The core's SHA-256 is checked against `x-amz-content-sha256`.
    payload_sha256: bool,
    wants_sha256: bool,
}

impl Digests {
    /// The S3 error for a failed upload: a checksum that did not match, a transfer check that
    /// failed, or else the core's error.
    pub(super) fn error(&self, error: Error) -> s3s::S3Error {
        if let Ok(measured) = self.measured.lock() {
            if let Some(transfer) = measured.transfer {
                return transfer.error();
            }
            if let Some(what) = &measured.mismatch {
                return s3(S3ErrorCode::BadDigest, what.clone());
            }
        }
        match error {
            Error::DigestMismatch {
                which: DigestKind::Sha256,
            } if self.payload_sha256 => payload_hash_mismatch(),
            Error::DigestMismatch {
                which: DigestKind::Sha256,
            } => s3(S3ErrorCode::BadDigest, checksum_mismatch("SHA256")),
            Error::DigestMismatch {
                which: DigestKind::Md5,
            } => s3(S3ErrorCode::BadDigest, MD5_MISMATCH),
            other => object_error(other),
        }
    }

    /// The checksums computed (those the client asked for), to echo back; SHA-256 is the
    /// core's, given in hex.
    pub(super) fn checksums(&self, sha256_hex: Option<&str>) -> Checksum {
        let mut checksums = self
            .measured
            .lock()
            .map(|m| m.checksums.clone())
            .unwrap_or_default();
        if self.wants_sha256 {
            checksums.checksum_sha256 = sha256_hex
                .and_then(|h| hex::decode(h).ok())
                .map(|raw| BASE64.encode(raw));
        }
        checksums
    }
}

/// The checksums other than MD5 and SHA-256 that the client asked for.
fn hasher_for(expected: &Expected) -> Option<ChecksumHasher> {
    let mut hasher = ChecksumHasher::default();
    let c = &expected.checksums;
    let mut any = false;
    if expected.wants(c.checksum_crc32.is_some(), "crc32") {
        hasher.crc32 = Some(s3s::crypto::Crc32::new());
        any = true;
    }
    if expected.wants(c.checksum_crc32c.is_some(), "crc32c") {
        hasher.crc32c = Some(s3s::crypto::Crc32c::new());
        any = true;
    }
    if expected.wants(c.checksum_sha1.is_some(), "sha1") {
        hasher.sha1 = Some(s3s::crypto::Sha1::new());
        any = true;
    }
    if expected.wants(c.checksum_crc64nvme.is_some(), "crc64nvme") {
        hasher.crc64nvme = Some(s3s::crypto::Crc64Nvme::new());
        any = true;
    }
    any.then_some(hasher)
}

/// Checks a `Content-MD5` header's form up front (S3 answers InvalidDigest).
pub(super) fn check_md5_header(md5: Option<&str>) -> S3Result<()> {
    if let Some(md5) = md5 {
        let ok = BASE64.decode(md5.trim()).is_ok_and(|raw| raw.len() == 16);
        if !ok {
            return Err(s3(
                S3ErrorCode::InvalidDigest,
                "The Content-MD5 you specified is not valid.",
            ));
        }
    }
    Ok(())
}

/// A base64 SHA-256 as its 32 bytes.
fn sha256_of_base64(text: &str) -> Option<[u8; 32]> {
    BASE64.decode(text.trim()).ok()?.try_into().ok()
}

/// A trailing header's value, once the body has been read.
fn trailing(trailers: &TrailingHeaders, name: &str) -> Option<String> {
    trailers
        .read(|headers| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .flatten()
}

/// The upload body, verified as it streams, and the digests the core must check.
pub(super) fn verified(
    blob: StreamingBlob,
    expected: Expected,
) -> S3Result<(ByteStream, Digests, ExpectedDigests)> {
    let md5 = match &expected.md5 {
        Some(given) => {
            check_md5_header(Some(given))?;
            BASE64
                .decode(given.trim())
                .ok()
                .and_then(|raw| raw.try_into().ok())
        }
        None => None,
    };
    let header_sha256 = match &expected.checksums.checksum_sha256 {
        Some(given) => Some(sha256_of_base64(given).ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidRequest,
                "Value for x-amz-checksum-sha256 header is invalid.",
            )
        })?),
        None => None,
    };
    if let (Some(header), Some(payload)) = (header_sha256, expected.payload_sha256)
        && header != payload
    {
        // Both cannot hold; the payload hash is the transfer's own, checked first.
        return Err(payload_hash_mismatch());
    }
    let late_sha256 = match (&expected.trailers, expected.trailer_name()) {
        (Some(trailers), Some(name)) if name == "x-amz-checksum-sha256" => {
            let trailers = trailers.clone();
            Some(Box::new(move || {
                // An unreadable value was already refused by the verifier.
                trailing(&trailers, "x-amz-checksum-sha256").and_then(|v| sha256_of_base64(&v))
            }) as crate::core::LateSha256)
        }
        _ => None,
    };
    let digests = Digests {
        measured: Arc::default(),
        payload_sha256: expected.payload_sha256.is_some(),
        wants_sha256: expected.wants_sha256(),
    };
    let core = ExpectedDigests {
        md5,
        sha256: expected.payload_sha256.or(header_sha256),
        late_sha256,
    };
    let state = Verifier {
        blob,
        hasher: hasher_for(&expected),
        expected,
        digests: digests.clone(),
        done: false,
    };
    Ok((state.boxed(), digests, core))
}

struct Verifier {
    blob: StreamingBlob,
    hasher: Option<ChecksumHasher>,
    expected: Expected,
    digests: Digests,
    done: bool,
}

impl Verifier {
    /// Compares what was measured with what was announced; the first difference, if any.
    fn finish(&mut self) -> Option<String> {
        let computed = self
            .hasher
            .take()
            .map(ChecksumHasher::finalize)
            .unwrap_or_default();
        let mismatch = self.compare(&computed);
        if let Ok(mut measured) = self.digests.measured.lock() {
            measured.checksums = computed;
            measured.mismatch = mismatch.clone();
        }
        mismatch
    }

    fn compare(&self, computed: &Checksum) -> Option<String> {
        let mut announced = self.expected.checksums.clone();
        if let Some(trailers) = &self.expected.trailers {
            let get = |name: &str| trailing(trailers, name);
            announced.checksum_crc32 = announced
                .checksum_crc32
                .take()
                .or_else(|| get("x-amz-checksum-crc32"));
            announced.checksum_crc32c = announced
                .checksum_crc32c
                .take()
                .or_else(|| get("x-amz-checksum-crc32c"));
            announced.checksum_sha1 = announced
                .checksum_sha1
                .take()
                .or_else(|| get("x-amz-checksum-sha1"));
            announced.checksum_crc64nvme = announced
                .checksum_crc64nvme
                .take()
                .or_else(|| get("x-amz-checksum-crc64nvme"));
            // The core compares a trailing SHA-256; one it could not read is refused here.
            if let Some(sha256) = get("x-amz-checksum-sha256")
                && sha256_of_base64(&sha256).is_none()
            {
                return Some(checksum_mismatch("SHA256"));
            }
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
                "CRC64NVME",
                &announced.checksum_crc64nvme,
                &computed.checksum_crc64nvme,
            ),
        ];
        for (name, given, ours) in pairs {
            if let (Some(given), Some(ours)) = (given, ours)
                && given.trim() != ours
            {
                return Some(checksum_mismatch(name));
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
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&data);
                }
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                if let Some(transfer) = Transfer::of(error.as_ref())
                    && let Ok(mut measured) = self.digests.measured.lock()
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
