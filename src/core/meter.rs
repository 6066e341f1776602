//! Measures an upload while it streams: size, MD5 (the eTag) and SHA-256, and stops the
//! stream the moment it crosses the size limit instead of reading the rest.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

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
}

/// What an upload turned out to be.
#[derive(Debug, Clone)]
pub struct Measured {
    pub size: u64,
    pub md5_hex: String,
    pub sha256_hex: String,
}

pub type SharedMeter = Arc<Mutex<Meter>>;

/// Wraps `body` so that every chunk is measured; past `limit` bytes the stream fails.
pub fn metered(body: ByteStream, limit: u64) -> (ByteStream, SharedMeter) {
    let meter = Arc::new(Mutex::new(Meter {
        md5: Md5::new(),
        sha256: Sha256::new(),
        size: 0,
        limit,
        exceeded: false,
    }));
    let state = meter.clone();
    let stream = body
        .map(move |chunk| {
            let chunk = chunk?;
            let mut m = state.lock().unwrap_or_else(PoisonError::into_inner);
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
