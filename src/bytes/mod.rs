//! Byte stores: where object bytes live. Narrow and stream-based, so that any store fits
//! without changes to the core: write a stream under a key, read a range as a stream, copy,
//! delete.
//!
//! Keys are opaque (chosen by the core, never an object name), so renames never touch bytes,
//! and bytes under a key are immutable: a key is written once and only ever deleted after that.

mod fs;
pub mod postgres;

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use fs::FsStore;
pub use postgres::PgStore;

/// Bytes flowing in or out of a store.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// An inclusive byte range within an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no bytes stored under key {0}")]
    NotFound(String),
    /// The incoming stream failed (client disconnected, a limit was crossed); the store kept
    /// nothing of it.
    #[error("the upload stream failed: {0}")]
    Body(io::Error),
    /// The store itself failed or is unreachable; the write left nothing behind.
    #[error("byte store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait ByteStore: Send + Sync + 'static {
    /// A short name for logs (`fs`, `postgres`, `s3`).
    fn name(&self) -> &'static str;

    /// True for the store whose bytes live in the database itself: the core then writes them
    /// inside the row's own transaction instead of staging them through the journal.
    fn in_database(&self) -> bool {
        false
    }

    /// Writes `body` under `key`. Returns only once every byte is durable; on error nothing is
    /// left under `key`. Never holds the whole body in memory.
    async fn put(&self, key: &str, body: ByteStream) -> Result<u64, StoreError>;

    /// Reads the bytes under `key`, or only `range` of them.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StoreError>;

    /// Makes `to` hold the same bytes as `from`, durably.
    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// Deletes the bytes under `key`. Deleting a missing key succeeds (deletes are retried).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// A fresh opaque key.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
