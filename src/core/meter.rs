//! Measures an upload while it streams: size, MD5 (the eTag) and SHA-256, and stops the
//! stream the moment it crosses the size limit instead of reading the rest, or when the client
//! has sent nothing for longer than the idle limit.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::bytes::ByteStream;

pub struct Meter {
    md5: Md5,
    sha256: Sha256,
    size: u64,
    limit: u64,
    exceeded: bool,
    stalled: bool,
}

/// What an upload turned out to be.
#[derive(Debug, Clone)]
pub struct Measured {
    pub size: u64,
    pub md5_hex: String,
    pub sha256_hex: String,
}

pub type SharedMeter = Arc<Mutex<Meter>>;

/// Wraps `body` so that every chunk is measured; past `limit` bytes, or after `idle` without a
/// chunk, the stream fails.
pub fn metered(body: ByteStream, limit: u64, idle: Duration) -> (ByteStream, SharedMeter) {
    let meter = Arc::new(Mutex::new(Meter {
        md5: Md5::new(),
        sha256: Sha256::new(),
        size: 0,
        limit,
        exceeded: false,
        stalled: false,
    }));
    let state = meter.clone();
    let stream = futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(body))),
            Ok(None) => None,
            // The error ends the stream: nothing is read after it.
            Err(_) => Some((Err(io::Error::from(io::ErrorKind::TimedOut)), None)),
        }
    });
    let stream = stream
        .map(move |chunk| {
            let mut m = state.lock().unwrap_or_else(PoisonError::into_inner);
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    m.stalled |= error.kind() == io::ErrorKind::TimedOut;
                    return Err(error);
                }
            };
            m.size += chunk.len() as u64;
            if m.size > m.limit {
                m.exceeded = true;
                return Err(io::Error::other(
                    "the object exceeded the maximum allowed size",
                ));
            }
            m.md5.update(&chunk);
            m.sha256.update(&chunk);
            Ok(chunk)
        })
        .boxed();
    (stream, meter)
}

pub fn exceeded(meter: &SharedMeter) -> bool {
    meter
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .exceeded
}

/// True when the stream failed because the client stopped sending.
pub fn stalled(meter: &SharedMeter) -> bool {
    meter.lock().unwrap_or_else(PoisonError::into_inner).stalled
}

pub fn finish(meter: &SharedMeter) -> Measured {
    let mut m = meter.lock().unwrap_or_else(PoisonError::into_inner);
    let md5 = std::mem::replace(&mut m.md5, Md5::new()).finalize();
    let sha256 = std::mem::replace(&mut m.sha256, Sha256::new()).finalize();
    Measured {
        size: m.size,
        md5_hex: hex::encode(md5),
        sha256_hex: hex::encode(sha256),
    }
}
