//! Byte stores: where object bytes live. Narrow and stream-based, so that any store fits
//! without changes to the core: write a stream under a key, read a range as a stream, copy,
//! delete.
//!
//! Keys are opaque (chosen by the core, never an object name), so renames never touch bytes,
//! and bytes under a key are immutable: a key is written once and only ever deleted after that.

mod fs;
pub mod postgres;
mod s3;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;

use crate::db::Database;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

pub use fs::FsStore;
pub use postgres::PgStore;
pub use s3::{S3Config, S3Store};

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

    /// Writes `body` under `key` like [`ByteStore::put`], for a key that is staged in the
    /// journal and that nothing reads before this returns (an upload's new version, a
    /// rendition, a multipart or resumable part: each is read only through a row committed
    /// afterwards): a store may then write in place rather than atomically, since a crash
    /// mid-write leaves only a staged key, whose partial bytes the collector frees with it. The
    /// same guarantee once it returns: every byte durable, its name included; on error nothing
    /// is left under `key` (a crash aside).
    async fn put_staged(&self, key: &str, body: ByteStream) -> Result<u64, StoreError> {
        self.put(key, body).await
    }

    /// Reads the bytes under `key`, or only `range` of them.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StoreError>;

    /// Makes `to` hold the same bytes as `from`, durably.
    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// Deletes the bytes under `key`. Deleting a missing key succeeds (deletes are retried).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Deletes the bytes under each of `keys` (the collector's batches): one result per key, in
    /// order. Stores with a bulk delete override this; the default deletes a few keys at a time.
    async fn delete_many(&self, keys: &[String]) -> Vec<Result<(), StoreError>> {
        let deletes: Vec<_> = keys.iter().map(|key| self.delete(key)).collect();
        futures::stream::iter(deletes)
            .buffered(PARALLEL_DELETES)
            .collect()
            .await
    }
}

/// Single deletes in flight at once in the default [`ByteStore::delete_many`].
const PARALLEL_DELETES: usize = 16;

/// Refuses anything but plain alphanumeric text (and `-`) of at least 8 characters. Keys come
/// from the core, but every store turns a key into a path or a name: this keeps any key from
/// leaving the store's root or prefix.
fn check_key(key: &str) -> Result<(), StoreError> {
    if key.len() < 8 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(StoreError::NotFound(key.to_string()));
    }
    Ok(())
}

/// Which byte store to open, with its settings.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A directory on local disk.
    Fs { root: PathBuf },
    /// An S3-compatible object store.
    S3(S3Config),
    /// Chunks in the database the server uses.
    Postgres,
}

impl StoreConfig {
    /// Where the bytes are, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Fs { root } => format!("{} (local disk)", root.display()),
            Self::S3(config) => config.describe(),
            Self::Postgres => "the database (storage.byte_chunks)".into(),
        }
    }
}

/// Opens the configured byte store, checking that it can be reached (the one place where
/// `serve` and `gc` get their store).
pub async fn open(config: &StoreConfig, db: &Database) -> anyhow::Result<Arc<dyn ByteStore>> {
    match config {
        StoreConfig::Postgres => {
            tracing::info!("byte store: the database");
            Ok(Arc::new(PgStore::new(db.clone())))
        }
        StoreConfig::Fs { root } => {
            let store = FsStore::open(root)
                .await
                .with_context(|| format!("opening the byte store at {}", root.display()))?;
            tracing::info!(root = %root.display(), "byte store: local disk");
            Ok(Arc::new(store))
        }
        StoreConfig::S3(config) => {
            let store = S3Store::new(config)
                .with_context(|| format!("configuring the S3 store {}", config.describe()))?;
            store
                .check()
                .await
                .with_context(|| format!("reaching the S3 store {}", config.describe()))?;
            tracing::info!(store = %config.describe(), "byte store: S3");
            Ok(Arc::new(store))
        }
    }
}

/// A fresh opaque key.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
