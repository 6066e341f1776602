//! Measures an upload while it streams: size, MD5 (the eTag) and SHA-256, and stops the
//! stream the moment it crosses the size limit instead of reading the rest, when the client
//! has sent nothing for longer than the idle limit, or when it sends slower than the minimum
//! rate. Digests the caller expects are compared at the end of the stream, before the store
//! sees it end: a mismatch fails the stream, so nothing is committed.
//!
//! Large bodies are hashed on other threads than the one reading them (see [`hashing`]).
//!
//! The metered stream never passes on an empty chunk of the body, and yields one of its own,
//! [`END_OF_DATA`], when the body's last byte has passed but the hashers are still catching up:
//! a store may start making the bytes durable then (the local-disk store does), so that the
//! flush and the end of the hashing overlap instead of following each other. The body may
//! still fail after it (a digest that does not match), and then nothing is committed.

mod hashing;

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use self::hashing::Hashers;
use crate::bytes::ByteStream;
use crate::core::Error;

/// How an upload's body must keep flowing.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Longest pause between two pieces.
    pub idle: Duration,
    /// Least average rate in bytes per second over each `window` of time spent waiting for the
    /// client (time the server itself spends elsewhere, e.g. writing, does not count); 0: none.
    pub min_rate: u64,
    pub window: Duration,
}

impl From<Duration> for Pace {
    /// Only an idle limit.
    fn from(idle: Duration) -> Self {
        Self {
            idle,
            min_rate: 0,
            window: Duration::MAX,
        }
    }
}

/// A body being read, and how fast it has come in the current window.
struct Flow {
    body: ByteStream,
    /// Time spent waiting for the client in this window, and bytes received in it.
    waited: Duration,
    received: u64,
}

/// Why a read from the client ended the stream.
enum Fault {
    Stalled,
    TooSlow,
}

impl Flow {
    /// The next piece of the body, or the fault that ends it.
    async fn next(&mut self, pace: Pace) -> Result<Option<io::Result<bytes::Bytes>>, Fault> {
        let rated = pace.min_rate > 0;
        let mut paused = Duration::ZERO;
        loop {
            // Wake at the end of the window as well as at the idle limit, so a client that keeps
            // trickling is judged on time.
            let mut wait = pace.idle.saturating_sub(paused);
            if rated {
                wait = wait.min(pace.window.saturating_sub(self.waited));
            }
            let started = Instant::now();
            let next = tokio::time::timeout(wait, self.body.next()).await;
            let spent = started.elapsed();
            self.waited += spent;
            paused += spent;
            if let Ok(Some(Ok(chunk))) = &next {
                self.received += chunk.len() as u64;
            }
            if rated && self.waited >= pace.window {
                let expected = pace.min_rate as f64 * self.waited.as_secs_f64();
                if (self.received as f64) < expected {
                    return Err(Fault::TooSlow);
                }
                self.waited = Duration::ZERO;
                self.received = 0;
            }
            match next {
                Ok(next) => return Ok(next),
                Err(_) if paused >= pace.idle => return Err(Fault::Stalled),
                // Only the window ended: keep waiting.
                Err(_) => {}
            }
        }
    }
}

/// What an upload turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub size: u64,
    pub md5_hex: String,
    pub sha256_hex: String,
}

/// Which digest of a body did not match the one its caller expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    Md5,
    Sha256,
}

impl std::fmt::Display for DigestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        })
    }
}

/// A SHA-256 announced only once the body has been read (a chunked body's trailer): asked for
/// at the end of the stream; `None` from it means none was announced.
pub type LateSha256 = Box<dyn FnOnce() -> Option<[u8; 32]> + Send>;

/// Digests the caller expects an upload's body to have (e.g. from `Content-MD5`), compared
/// with what the meter measures before anything is committed. SHA-256 is compared first.
#[derive(Default)]
pub struct ExpectedDigests {
    pub md5: Option<[u8; 16]>,
    pub sha256: Option<[u8; 32]>,
    pub late_sha256: Option<LateSha256>,
}

impl std::fmt::Debug for ExpectedDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpectedDigests")
            .field("md5", &self.md5.map(hex::encode))
            .field("sha256", &self.sha256.map(hex::encode))
            .field("late_sha256", &self.late_sha256.is_some())
            .finish()
    }
}

impl ExpectedDigests {
    /// The first expected digest that `measured` does not have.
    fn mismatch(self, md5: &[u8; 16], sha256: &[u8; 32]) -> Option<DigestKind> {
        let late = self.late_sha256.and_then(|late| late());
        if [self.sha256, late]
            .iter()
            .flatten()
            .any(|want| want != sha256)
        {
            return Some(DigestKind::Sha256);
        }
        if self.md5.is_some_and(|want| &want != md5) {
            return Some(DigestKind::Md5);
        }
        None
    }
}

/// What the meter knows of the body it measures.
#[derive(Debug)]
pub struct Meter {
    size: u64,
    limit: u64,
    exceeded: bool,
    stalled: bool,
    too_slow: bool,
    mismatch: Option<DigestKind>,
    /// Set once the body has been read to its end.
    measured: Option<Measured>,
}

pub type SharedMeter = Arc<Mutex<Meter>>;

fn lock(meter: &SharedMeter) -> std::sync::MutexGuard<'_, Meter> {
    meter.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The empty chunk a metered stream yields once every byte of the body has passed (see the
/// module's documentation); only ever followed by the stream's end or an error.
pub const END_OF_DATA: Bytes = Bytes::new();

/// A body being measured.
struct Metering {
    flow: Flow,
    pace: Pace,
    hashers: Hashers,
    expected: ExpectedDigests,
    meter: SharedMeter,
    /// The body has ended; the digests are still to be checked.
    ended: bool,
}

/// What one step of the metered stream yields.
enum Step {
    Chunk(Bytes),
    End,
    Fail(io::Error),
}

impl Metering {
    async fn step(&mut self) -> Step {
        if self.ended {
            return self.end().await;
        }
        let chunk = loop {
            match self.flow.next(self.pace).await {
                // Empty chunks carry nothing; the only one passed on is `END_OF_DATA`.
                Ok(Some(Ok(chunk))) if chunk.is_empty() => {}
                Ok(Some(Ok(chunk))) => break chunk,
                Ok(Some(Err(error))) => return Step::Fail(error),
                Ok(None) if self.hashers.offloaded() => {
                    self.ended = true;
                    return Step::Chunk(END_OF_DATA);
                }
                Ok(None) => return self.end().await,
                Err(fault) => {
                    let mut m = lock(&self.meter);
                    match fault {
                        Fault::Stalled => m.stalled = true,
                        Fault::TooSlow => m.too_slow = true,
                    }
                    return Step::Fail(io::Error::from(io::ErrorKind::TimedOut));
                }
            }
        };
        {
            let mut m = lock(&self.meter);
            m.size += chunk.len() as u64;
            if m.size > m.limit {
                m.exceeded = true;
                return Step::Fail(io::Error::other(
                    "the object exceeded the maximum allowed size",
                ));
            }
        }
        match self.hashers.update(&chunk).await {
            Ok(()) => Step::Chunk(chunk),
            Err(error) => Step::Fail(error),
        }
    }

    /// The body ended: waits for its digests and compares them with the expected ones.
    async fn end(&mut self) -> Step {
        let hashers = std::mem::take(&mut self.hashers);
        let digests = match hashers.finish().await {
            Ok(digests) => digests,
            Err(error) => return Step::Fail(error),
        };
        let expected = std::mem::take(&mut self.expected);
        let mismatch = expected.mismatch(&digests.md5, &digests.sha256);
        let mut m = lock(&self.meter);
        m.measured = Some(Measured {
            size: m.size,
            md5_hex: hex::encode(digests.md5),
            sha256_hex: hex::encode(digests.sha256),
        });
        m.mismatch = mismatch;
        match mismatch {
            None => Step::End,
            Some(which) => Step::Fail(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the body's {which} did not match the one given"),
            )),
        }
    }
}

/// Wraps `body` so that every chunk is measured; past `limit` bytes, after `pace.idle` without
/// a chunk, or below `pace.min_rate`, the stream fails. At its end it fails too when a digest
/// differs from `expected`.
pub fn metered(
    body: ByteStream,
    limit: u64,
    pace: impl Into<Pace>,
    expected: ExpectedDigests,
) -> (ByteStream, SharedMeter) {
    let meter = Arc::new(Mutex::new(Meter {
        size: 0,
        limit,
        exceeded: false,
        stalled: false,
        too_slow: false,
        mismatch: None,
        measured: None,
    }));
    let metering = Metering {
        flow: Flow {
            body,
            waited: Duration::ZERO,
            received: 0,
        },
        pace: pace.into(),
        hashers: Hashers::default(),
        expected,
        meter: meter.clone(),
        ended: false,
    };
    let stream = futures::stream::unfold(Some(metering), |metering| async move {
        let mut metering = metering?;
        match metering.step().await {
            Step::Chunk(chunk) => Some((Ok(chunk), Some(metering))),
            Step::End => None,
            // The error ends the stream: nothing is read after it.
            Step::Fail(error) => Some((Err(error), None)),
        }
    });
    (stream.boxed(), meter)
}

pub fn exceeded(meter: &SharedMeter) -> bool {
    lock(meter).exceeded
}

/// True when the stream failed because the client stopped sending.
pub fn stalled(meter: &SharedMeter) -> bool {
    lock(meter).stalled
}

/// True when the stream failed because the client sent slower than the minimum rate.
pub fn too_slow(meter: &SharedMeter) -> bool {
    lock(meter).too_slow
}

/// The expected digest the body did not have, if that is why the stream failed.
pub fn mismatch(meter: &SharedMeter) -> Option<DigestKind> {
    lock(meter).mismatch
}

/// What the body measured. Only a body read to its end (and matching what was expected) has
/// been measured: anything else is a bug in the caller, which must not commit.
pub fn finish(meter: &SharedMeter) -> Result<Measured, Error> {
    let m = lock(meter);
    match (&m.measured, m.mismatch) {
        (Some(measured), None) => Ok(measured.clone()),
        (_, Some(which)) => Err(Error::DigestMismatch { which }),
        (None, None) => Err(Error::Internal(anyhow::anyhow!(
            "an upload was committed before its body was read to its end"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use md5::Md5;
    use sha2::{Digest, Sha256};

    use super::*;

    /// A body of `len` bytes in chunks of `chunk` bytes.
    fn body(len: usize, chunk: usize) -> (Vec<u8>, ByteStream) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<io::Result<Bytes>> = data
            .chunks(chunk.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        (data, futures::stream::iter(chunks).boxed())
    }

    /// Drains the metered stream: the bytes it passed and its error, if any.
    async fn drain(stream: ByteStream) -> (usize, Option<io::Error>) {
        let mut stream = stream;
        let mut passed = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => passed += chunk.len(),
                Err(error) => return (passed, Some(error)),
            }
        }
        (passed, None)
    }

    fn idle() -> Pace {
        Duration::from_secs(30).into()
    }

    fn digests(data: &[u8]) -> ([u8; 16], [u8; 32]) {
        (Md5::digest(data).into(), Sha256::digest(data).into())
    }

    #[tokio::test]
    async fn measures_small_and_large_bodies() {
        for (len, chunk) in [(0, 1), (1024, 100), (3 * 1024 * 1024 + 7, 65_536)] {
            let (data, stream) = body(len, chunk);
            let (md5, sha256) = digests(&data);
            let (stream, meter) = metered(stream, u64::MAX, idle(), ExpectedDigests::default());
            let (passed, error) = drain(stream).await;
            assert_eq!(passed, len);
            assert!(error.is_none(), "{error:?}");
            let measured = finish(&meter).unwrap();
            assert_eq!(measured.size, len as u64);
            assert_eq!(measured.md5_hex, hex::encode(md5));
            assert_eq!(measured.sha256_hex, hex::encode(sha256));
        }
    }

    #[tokio::test]
    async fn expected_digests_that_match_pass() {
        for len in [10, 2 * 1024 * 1024] {
            let (data, stream) = body(len, 50_000);
            let (md5, sha256) = digests(&data);
            let expected = ExpectedDigests {
                md5: Some(md5),
                sha256: Some(sha256),
                late_sha256: Some(Box::new(move || Some(sha256))),
            };
            let (stream, meter) = metered(stream, u64::MAX, idle(), expected);
            let (passed, error) = drain(stream).await;
            assert_eq!(passed, len);
            assert!(error.is_none(), "{error:?}");
            assert_eq!(mismatch(&meter), None);
            assert!(finish(&meter).is_ok());
        }
    }

    #[tokio::test]
    async fn a_wrong_digest_fails_the_stream_at_its_end() {
        let wrong_md5 = [0u8; 16];
        let wrong_sha256 = [1u8; 32];
        for len in [10, 2 * 1024 * 1024] {
            let (data, _) = body(len, 1);
            let (md5, sha256) = digests(&data);
            let cases: [(ExpectedDigests, DigestKind); 4] = [
                (
                    ExpectedDigests {
                        md5: Some(wrong_md5),
                        ..Default::default()
                    },
                    DigestKind::Md5,
                ),
                (
                    ExpectedDigests {
                        sha256: Some(wrong_sha256),
                        md5: Some(md5),
                        ..Default::default()
                    },
                    DigestKind::Sha256,
                ),
                (
                    ExpectedDigests {
                        sha256: Some(sha256),
                        late_sha256: Some(Box::new(move || Some(wrong_sha256))),
                        ..Default::default()
                    },
                    DigestKind::Sha256,
                ),
                // SHA-256 is compared first.
                (
                    ExpectedDigests {
                        md5: Some(wrong_md5),
                        sha256: Some(wrong_sha256),
                        ..Default::default()
                    },
                    DigestKind::Sha256,
                ),
            ];
            for (expected, which) in cases {
                let (_, stream) = body(len, 40_000);
                let (stream, meter) = metered(stream, u64::MAX, idle(), expected);
                let (passed, error) = drain(stream).await;
                // Every byte passed, and the end of the stream is an error instead.
                assert_eq!(passed, len);
                let error = error.expect("a mismatch fails the stream");
                assert_eq!(error.kind(), io::ErrorKind::InvalidData);
                assert_eq!(mismatch(&meter), Some(which));
                assert!(matches!(
                    finish(&meter),
                    Err(Error::DigestMismatch { which: w }) if w == which
                ));
            }
        }
    }

    #[tokio::test]
    async fn nothing_is_measured_before_the_end() {
        let (_, stream) = body(5 * 1024 * 1024, 65_536);
        let (mut stream, meter) = metered(stream, u64::MAX, idle(), ExpectedDigests::default());
        for _ in 0..40 {
            stream.next().await.unwrap().unwrap();
        }
        assert!(matches!(finish(&meter), Err(Error::Internal(_))));
    }

    /// Sizes of what a metered stream yields, up to its end or first error.
    async fn pieces(stream: ByteStream) -> (Vec<usize>, Option<io::Error>) {
        let mut stream = stream;
        let mut sizes = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => sizes.push(chunk.len()),
                Err(error) => return (sizes, Some(error)),
            }
        }
        (sizes, None)
    }

    /// A body with an empty chunk after every piece of `chunk` bytes.
    fn with_empty_chunks(len: usize, chunk: usize) -> (Vec<u8>, ByteStream) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<io::Result<Bytes>> = data
            .chunks(chunk)
            .flat_map(|c| [Ok(Bytes::copy_from_slice(c)), Ok(Bytes::new())])
            .collect();
        (data, futures::stream::iter(chunks).boxed())
    }

    #[tokio::test]
    async fn the_end_of_a_large_body_is_announced_once_before_the_digests() {
        // Large: hashed off the reading task, so its end is announced with one empty chunk.
        let (data, stream) = with_empty_chunks(3 * 1024 * 1024, 65_536);
        let (stream, meter) = metered(stream, u64::MAX, idle(), ExpectedDigests::default());
        let (sizes, error) = pieces(stream).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(sizes.iter().filter(|&&n| n == 0).count(), 1, "{sizes:?}");
        assert_eq!(sizes.last(), Some(&0));
        assert_eq!(sizes.iter().sum::<usize>(), data.len());
        assert_eq!(
            finish(&meter).unwrap().md5_hex,
            hex::encode(digests(&data).0)
        );
        // A mismatch still fails the stream after the announcement, so nothing is committed.
        let (_, stream) = with_empty_chunks(3 * 1024 * 1024, 65_536);
        let expected = ExpectedDigests {
            md5: Some([0; 16]),
            ..Default::default()
        };
        let (stream, meter) = metered(stream, u64::MAX, idle(), expected);
        let (sizes, error) = pieces(stream).await;
        assert_eq!(sizes.last(), Some(&0));
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        assert_eq!(mismatch(&meter), Some(DigestKind::Md5));
        // Small: hashed inline, nothing to wait for, no announcement; empty chunks dropped.
        let (_, stream) = with_empty_chunks(1000, 100);
        let (stream, _) = metered(stream, u64::MAX, idle(), ExpectedDigests::default());
        let (sizes, error) = pieces(stream).await;
        assert!(error.is_none());
        assert_eq!(sizes, vec![100; 10]);
    }

    #[tokio::test]
    async fn the_limit_still_stops_the_stream() {
        let (_, stream) = body(3 * 1024 * 1024, 65_536);
        let (stream, meter) = metered(stream, 2 * 1024 * 1024, idle(), ExpectedDigests::default());
        let (passed, error) = drain(stream).await;
        assert!(error.is_some());
        assert_eq!(passed, 2 * 1024 * 1024);
        assert!(exceeded(&meter));
    }
}
