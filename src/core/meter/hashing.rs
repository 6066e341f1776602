//! An upload's MD5 and SHA-256, computed beside its stream.
//!
//! A small body is hashed inline: handing it to other threads would cost more than hashing it.
//! Past [`OFFLOAD_AFTER`] bytes the two digests move to blocking threads of their own, one
//! each, so the task reading the socket, the two hashers and the store writer overlap instead
//! of taking turns on one core (one core does MD5 at about 620 MB/s, slower than the disk).
//! The chunks are shared, not copied; what the hashers have not yet read is bounded by
//! [`QUEUE_BYTES`], and the reader waits when they fall that far behind.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::core::md5::Md5;

/// Bytes hashed inline before the hashing moves to other threads.
pub(super) const OFFLOAD_AFTER: u64 = 1024 * 1024;

/// Most bytes waiting for the hashers of one upload.
pub(super) const QUEUE_BYTES: usize = 2 * 1024 * 1024;

/// Chunks are handed over in batches of about this many bytes: a socket's chunks are often a
/// few KiB, and waking a hasher for each would cost more than it saves.
const BATCH_BYTES: usize = 256 * 1024;

/// The digests of a finished body.
pub(super) struct Digests {
    pub(super) md5: [u8; 16],
    pub(super) sha256: [u8; 32],
}

pub(super) struct Hashers {
    state: State,
    /// Bytes at which hashing moves off the reading task.
    offload_after: u64,
}

enum State {
    Inline {
        md5: Md5,
        sha256: Sha256,
        seen: u64,
    },
    Offloaded {
        md5: Worker,
        sha256: Worker,
        room: Arc<Semaphore>,
        /// Chunks not yet handed over, and their size.
        batch: Vec<Bytes>,
        batched: usize,
    },
}

/// A digest being computed: AWS-LC's MD5 or RustCrypto's SHA-256.
trait Hasher: Send + 'static {
    fn add(&mut self, data: &[u8]);
    fn result(self) -> Vec<u8>;
}

impl Hasher for Md5 {
    fn add(&mut self, data: &[u8]) {
        self.update(data);
    }
    fn result(self) -> Vec<u8> {
        self.finalize().to_vec()
    }
}

impl Hasher for Sha256 {
    fn add(&mut self, data: &[u8]) {
        self.update(data);
    }
    fn result(self) -> Vec<u8> {
        self.finalize().to_vec()
    }
}

/// A hasher on a blocking thread, fed through a queue.
struct Worker {
    queue: mpsc::UnboundedSender<Arc<Piece>>,
    done: JoinHandle<Vec<u8>>,
}

/// Chunks on their way to both hashers; their room in the queue is freed when both are done.
struct Piece {
    data: Vec<Bytes>,
    _room: OwnedSemaphorePermit,
}

impl Worker {
    fn start<H: Hasher>(mut hasher: H) -> Self {
        let (queue, mut pieces) = mpsc::unbounded_channel::<Arc<Piece>>();
        let done = tokio::task::spawn_blocking(move || {
            while let Some(piece) = pieces.blocking_recv() {
                for data in &piece.data {
                    hasher.add(data);
                }
            }
            hasher.result()
        });
        Self { queue, done }
    }

    fn feed(&self, piece: Arc<Piece>) -> io::Result<()> {
        self.queue
            .send(piece)
            .map_err(|_| io::Error::other("an upload's hasher stopped"))
    }

    async fn finish(self) -> io::Result<Vec<u8>> {
        drop(self.queue);
        self.done
            .await
            .map_err(|e| io::Error::other(format!("an upload's hasher failed: {e}")))
    }
}

impl Default for Hashers {
    fn default() -> Self {
        Self::with_threshold(OFFLOAD_AFTER)
    }
}

impl Hashers {
    /// Hashers that move off the reading task once `offload_after` bytes have passed.
    pub(super) fn with_threshold(offload_after: u64) -> Self {
        Self {
            state: State::Inline {
                md5: Md5::new(),
                sha256: Sha256::new(),
                seen: 0,
            },
            offload_after,
        }
    }

    /// Whether the hashing has moved to other threads (and may lag behind the body).
    pub(super) fn offloaded(&self) -> bool {
        matches!(self.state, State::Offloaded { .. })
    }

    /// Adds `data`; waits while the hashers are [`QUEUE_BYTES`] behind.
    pub(super) async fn update(&mut self, data: &Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.state {
            State::Inline { md5, sha256, seen } => {
                md5.update(data);
                sha256.update(data);
                *seen += data.len() as u64;
                if *seen >= self.offload_after {
                    let md5 = std::mem::take(md5);
                    let sha256 = std::mem::take(sha256);
                    self.state = State::Offloaded {
                        md5: Worker::start(md5),
                        sha256: Worker::start(sha256),
                        room: Arc::new(Semaphore::new(QUEUE_BYTES)),
                        batch: Vec::new(),
                        batched: 0,
                    };
                }
                Ok(())
            }
            State::Offloaded { batch, batched, .. } => {
                batch.push(data.clone());
                *batched += data.len();
                if *batched >= BATCH_BYTES {
                    self.hand_over().await?;
                }
                Ok(())
            }
        }
    }

    /// Hands the batched chunks to both hashers, once the queue has room for them.
    async fn hand_over(&mut self) -> io::Result<()> {
        let State::Offloaded {
            md5,
            sha256,
            room,
            batch,
            batched,
        } = &mut self.state
        else {
            return Ok(());
        };
        if batch.is_empty() {
            return Ok(());
        }
        // A batch larger than the whole queue takes all of it.
        let wanted = (*batched).min(QUEUE_BYTES) as u32;
        let permit = room
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| io::Error::other("an upload's hashing queue closed"))?;
        let piece = Arc::new(Piece {
            data: std::mem::take(batch),
            _room: permit,
        });
        *batched = 0;
        md5.feed(piece.clone())?;
        sha256.feed(piece)
    }

    /// The digests of everything added, once the hashers have caught up.
    pub(super) async fn finish(mut self) -> io::Result<Digests> {
        self.hand_over().await?;
        let (md5, sha256) = match self.state {
            State::Inline { md5, sha256, .. } => {
                (md5.finalize().to_vec(), sha256.finalize().to_vec())
            }
            State::Offloaded { md5, sha256, .. } => {
                let (md5, sha256) = tokio::join!(md5.finish(), sha256.finish());
                (md5?, sha256?)
            }
        };
        let wrong = |_| io::Error::other("a digest of an unexpected length");
        Ok(Digests {
            md5: md5.try_into().map_err(wrong)?,
            sha256: sha256.try_into().map_err(wrong)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8]) -> ([u8; 16], [u8; 32]) {
        use ::md5::Digest as _;
        (::md5::Md5::digest(data).into(), Sha256::digest(data).into())
    }

    async fn hash(chunks: &[Bytes], threshold: u64) -> Digests {
        let mut hashers = Hashers::with_threshold(threshold);
        for chunk in chunks {
            hashers.update(chunk).await.unwrap();
        }
        hashers.finish().await.unwrap()
    }

    #[tokio::test]
    async fn inline_and_offloaded_digests_agree() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        // Chunks of uneven sizes, one larger than the whole queue.
        let mut chunks = Vec::new();
        let mut at = 0;
        for size in [0, 1, 4095, 65536, QUEUE_BYTES + 5, 17].into_iter().cycle() {
            if at >= data.len() {
                break;
            }
            let end = (at + size).min(data.len());
            chunks.push(Bytes::copy_from_slice(&data[at..end]));
            at = end;
        }
        let (md5, sha256) = reference(&data);
        for threshold in [0, 1, 70_000, OFFLOAD_AFTER, u64::MAX] {
            let got = hash(&chunks, threshold).await;
            assert_eq!(got.md5, md5, "threshold {threshold}");
            assert_eq!(got.sha256, sha256, "threshold {threshold}");
        }
    }

    #[tokio::test]
    async fn an_empty_body_has_the_empty_digests() {
        let (md5, sha256) = reference(b"");
        for threshold in [0, OFFLOAD_AFTER] {
            let got = hash(&[], threshold).await;
            assert_eq!((got.md5, got.sha256), (md5, sha256));
        }
    }
}
