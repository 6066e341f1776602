//! Measures an upload while it streams: size, MD5 (the eTag) and SHA-256, and stops the
//! stream the moment it crosses the size limit instead of reading the rest, when the client
//! has sent nothing for longer than the idle limit, or when it sends slower than the minimum
//! rate.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    too_slow: bool,
}

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
#[derive(Debug, Clone)]
pub struct Measured {
    pub size: u64,
    pub md5_hex: String,
    pub sha256_hex: String,
}

pub type SharedMeter = Arc<Mutex<Meter>>;

/// Wraps `body` so that every chunk is measured; past `limit` bytes, after `pace.idle` without
/// a chunk, or below `pace.min_rate`, the stream fails.
pub fn metered(body: ByteStream, limit: u64, pace: impl Into<Pace>) -> (ByteStream, SharedMeter) {
    let pace = pace.into();
    let meter = Arc::new(Mutex::new(Meter {
        md5: Md5::new(),
        sha256: Sha256::new(),
        size: 0,
        limit,
        exceeded: false,
        stalled: false,
        too_slow: false,
    }));
    let faults = meter.clone();
    let flow = Flow {
        body,
        waited: Duration::ZERO,
        received: 0,
    };
    let stream = futures::stream::unfold(Some(flow), move |flow| {
        let faults = faults.clone();
        async move {
            let mut flow = flow?;
            match flow.next(pace).await {
                Ok(Some(chunk)) => Some((chunk, Some(flow))),
                Ok(None) => None,
                // The error ends the stream: nothing is read after it.
                Err(fault) => {
                    let mut m = faults.lock().unwrap_or_else(PoisonError::into_inner);
                    match fault {
                        Fault::Stalled => m.stalled = true,
                        Fault::TooSlow => m.too_slow = true,
                    }
                    Some((Err(io::Error::from(io::ErrorKind::TimedOut)), None))
                }
            }
        }
    });
    let state = meter.clone();
    let stream = stream
        .map(move |chunk| {
            let mut m = state.lock().unwrap_or_else(PoisonError::into_inner);
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => return Err(error),
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

/// True when the stream failed because the client sent slower than the minimum rate.
pub fn too_slow(meter: &SharedMeter) -> bool {
    meter
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .too_slow
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
