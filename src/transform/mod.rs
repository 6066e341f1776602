//! Image transformations: resized, re-encoded renditions of stored images (Supabase Storage's
//! `/render/image` routes). Like `core`, this knows nothing of HTTP: the REST front hands it an
//! object row it has read under the caller's policies and gets bytes or a typed error back.
//!
//! Decoding is CPU- and memory-heavy, so it runs on blocking threads, at most
//! [`TransformConfig::concurrency`] at once; up to [`TransformConfig::queue`] more requests wait
//! for a turn, and anything beyond is refused ([`TransformError::Busy`]) rather than queued
//! without bound. A request waits for its turn BEFORE reading the source, so waiting requests
//! hold no image bytes.

pub mod params;
pub mod pipeline;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::core::objects::ObjectRow;
use crate::core::{Error, Storage};
pub use params::{Format, Params};
pub use pipeline::Request;

const MIB: u64 = 1 << 20;

/// Limits and sizing of the transformer.
#[derive(Debug, Clone)]
pub struct TransformConfig {
    /// Largest source object transformed, in bytes (it is read whole into memory).
    pub max_source_bytes: u64,
    /// Most pixels (width × height, as the file declares them) a source may have.
    pub max_pixels: u64,
    /// How many transformations run at once.
    pub concurrency: usize,
    /// How many more may wait for a turn; beyond that, requests are refused.
    pub queue: usize,
    /// How long a request waits for its turn before it is refused.
    pub queue_timeout: Duration,
    /// Whether renditions are kept in the byte store and served from there next time
    /// ([`crate::core::renditions`]).
    pub cache: bool,
    /// Memory that transformations running at once may use together, in bytes, as estimated
    /// from each source's header ([`pipeline::inspect`]); work that would exceed it waits.
    pub memory: u64,
}

impl Default for TransformConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            max_source_bytes: 25 * 1000 * 1000,
            max_pixels: 25_000_000,
            concurrency: cores,
            queue: cores * 8,
            queue_timeout: Duration::from_secs(30),
            cache: true,
            memory: 160 * MIB,
        }
    }
}

/// A finished rendition.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub format: Format,
}

/// Why a transformation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("{0}")]
    InvalidParams(String),
    /// Not an image, truncated or corrupt.
    #[error("{0}")]
    InvalidImage(String),
    #[error("{0}")]
    Unsupported(String),
    /// Over the byte, pixel or memory limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("too many image transformations are in progress; try again shortly")]
    Busy,
    /// Reading the source failed (not found, store error): the core's error, mapped as usual.
    #[error(transparent)]
    Storage(#[from] Error),
    #[error("image transformation failed: {0}")]
    Internal(String),
}

/// Runs transformations with bounded concurrency. Cheap to clone; one per server process.
#[derive(Clone)]
pub struct Transformer {
    config: Arc<TransformConfig>,
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    /// The memory budget, in MiB.
    memory: Arc<Semaphore>,
}

impl Default for Transformer {
    fn default() -> Self {
        Self::new(TransformConfig::default())
    }
}

/// A turn to transform, held from reading the source to the end of encoding.
pub struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

impl Transformer {
    pub fn new(config: TransformConfig) -> Self {
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let memory = Arc::new(Semaphore::new(budget_units(config.memory)));
        Self {
            config: Arc::new(config),
            permits,
            waiting: Arc::new(AtomicUsize::new(0)),
            memory,
        }
    }

    pub fn config(&self) -> &TransformConfig {
        &self.config
    }

    /// Waits for a turn, or refuses when the queue is full or the wait too long.
    pub async fn turn(&self) -> Result<Turn, TransformError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(Turn(permit));
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(TransformError::Busy);
        }
        let waited = tokio::time::timeout(
            self.config.queue_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match waited {
            Ok(Ok(permit)) => Ok(Turn(permit)),
            _ => Err(TransformError::Busy),
        }
    }

    /// Reads the object's bytes whole, refusing a source over the byte limit before reading
    /// and stopping should the store hold more than measured.
    pub async fn read_source(
        &self,
        storage: &Storage,
        row: &ObjectRow,
        _turn: &Turn,
    ) -> Result<Vec<u8>, TransformError> {
        let max = self.config.max_source_bytes;
        let too_large = |size: u64| {
            TransformError::TooLarge(format!(
                "the image is {size} bytes; at most {max} bytes are transformed"
            ))
        };
        let size = row.measured_size()?;
        if size > max {
            return Err(too_large(size));
        }
        // Bounded by the check above: `size` is at most `max`.
        let mut buffer = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut stream = storage.read(row, None).await?;
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
            if (buffer.len() + piece.len()) as u64 > max {
                return Err(too_large((buffer.len() + piece.len()) as u64));
            }
            buffer.extend_from_slice(&piece);
        }
        Ok(buffer)
    }

    /// Whether `bucket` asks for AVIF for clients that accept it (`avif_autodetection`). Read
    /// with privilege, like a bucket's limits: a rendering preference, not data the caller
    /// must be allowed to see (the object itself was read under the caller's policies).
    pub async fn avif_autodetection(
        &self,
        storage: &Storage,
        bucket: &str,
    ) -> Result<bool, TransformError> {
        let conn = storage.database().admin().await.map_err(Error::from)?;
        let statement = conn
            .prepare_cached("select avif_autodetection from storage.buckets where id = $1")
            .await
            .map_err(Error::from)?;
        let row = conn
            .query_opt(&statement, &[&bucket])
            .await
            .map_err(Error::from)?;
        Ok(row
            .and_then(|r| r.get::<_, Option<bool>>(0))
            .unwrap_or(false))
    }

    /// Renders `source` on a blocking thread, holding `turn` until done. The header is read
    /// first, and the work waits until its estimated memory fits the budget beside what is
    /// already running (a source bigger than the whole budget runs alone).
    pub async fn render(
        &self,
        turn: Turn,
        source: Vec<u8>,
        request: Request,
    ) -> Result<Rendered, TransformError> {
        let config = self.config.clone();
        let (source, request, inspected) = tokio::task::spawn_blocking(move || {
            let inspected = pipeline::inspect(&source, &request, &config);
            (source, request, inspected)
        })
        .await
        .map_err(panicked)?;
        let inspected = inspected?;
        let memory = self.admit(inspected.memory).await?;
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let _held = (turn, memory);
            pipeline::render_inspected(&source, &request, &config, &inspected)
        })
        .await
        .map_err(panicked)?
    }

    /// Waits until `bytes` fit in the memory budget (at most the queue timeout).
    async fn admit(&self, bytes: u64) -> Result<OwnedSemaphorePermit, TransformError> {
        let units = budget_units(bytes).min(budget_units(self.config.memory));
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        match tokio::time::timeout(
            self.config.queue_timeout,
            self.memory.clone().acquire_many_owned(units),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(TransformError::Busy),
        }
    }
}

/// Bytes in whole MiB, rounded up (at least one): the budget semaphore's units.
fn budget_units(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(MIB).clamp(1, u64::from(u32::MAX))).unwrap_or(1)
}

fn panicked(error: tokio::task::JoinError) -> TransformError {
    TransformError::Internal(format!("the transformation panicked: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn excess_requests_wait_then_are_refused() {
        let transformer = Transformer::new(TransformConfig {
            concurrency: 1,
            queue: 1,
            queue_timeout: Duration::from_millis(200),
            ..TransformConfig::default()
        });
        let held = transformer.turn().await.unwrap();
        // One may wait; it gets the turn once it is free.
        let waiter = tokio::spawn({
            let transformer = transformer.clone();
            async move { transformer.turn().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The queue is full: refused at once.
        assert!(matches!(
            transformer.turn().await,
            Err(TransformError::Busy)
        ));
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
        // A wait longer than the timeout is refused too.
        let held = transformer.turn().await.unwrap();
        assert!(matches!(
            transformer.turn().await,
            Err(TransformError::Busy)
        ));
        drop(held);
    }

    #[tokio::test]
    async fn work_over_the_memory_budget_waits() {
        let transformer = Transformer::new(TransformConfig {
            memory: 100 * MIB,
            queue_timeout: Duration::from_millis(200),
            ..TransformConfig::default()
        });
        let big = transformer.admit(70 * MIB).await.unwrap();
        // 70 + 40 > 100: waits, then is refused when the wait is over.
        assert!(matches!(
            transformer.admit(40 * MIB).await,
            Err(TransformError::Busy)
        ));
        // 70 + 30 fits.
        let small = transformer.admit(30 * MIB).await.unwrap();
        drop((big, small));
        // More than the whole budget runs, alone.
        let huge = transformer.admit(500 * MIB).await.unwrap();
        assert!(matches!(
            transformer.admit(MIB).await,
            Err(TransformError::Busy)
        ));
        drop(huge);
        assert!(transformer.admit(MIB).await.is_ok());
    }
}
