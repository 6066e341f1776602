//! The `postgres` store: bytes as chunks in `storage.byte_chunks`, in the same database as their
//! rows, so a backup or a branch of the database carries the files with it.
//!
//! The core writes chunks inside the row's own transaction (see `core::objects`), so a row and
//! its bytes commit together; the methods here serve reads, copies and the collector. Reads run
//! in one repeatable-read snapshot, so a delete that commits meanwhile does not cut them short,
//! and a ranged read fetches only the chunks it needs.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{ByteRange, ByteStore, ByteStream, StoreError, check_key};
use crate::db::{Database, DbError, Tx};

/// Bytes per chunk row. An empty object is one empty chunk, so every stored key has chunk 0.
pub const CHUNK_SIZE: usize = 1024 * 1024;

pub struct PgStore {
    db: Database,
}

impl PgStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A failure of the database under the bytes. Its own words go to the log, not to clients.
fn unavailable(error: impl std::fmt::Display) -> StoreError {
    tracing::warn!(%error, "the database byte store failed");
    StoreError::Unavailable("the database byte store is unavailable".into())
}

impl From<DbError> for StoreError {
    fn from(error: DbError) -> Self {
        unavailable(error)
    }
}

/// Cuts a stream into chunks of exactly [`CHUNK_SIZE`] bytes (the last may be shorter), holding
/// at most one chunk in memory.
pub struct Rechunker {
    buffer: Vec<u8>,
}

impl Default for Rechunker {
    fn default() -> Self {
        Self {
            buffer: Vec::with_capacity(CHUNK_SIZE),
        }
    }
}

impl Rechunker {
    /// Adds bytes; returns every chunk completed by them.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Vec<u8>> {
        let mut full = Vec::new();
        while !data.is_empty() {
            let take = (CHUNK_SIZE - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == CHUNK_SIZE {
                full.push(std::mem::replace(
                    &mut self.buffer,
                    Vec::with_capacity(CHUNK_SIZE),
                ));
            }
        }
        full
    }

    /// The last, partial chunk; `None` if empty (unless nothing at all was written, which the
    /// caller handles by writing one empty chunk).
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.buffer.is_empty()).then_some(self.buffer)
    }
}

const WRITE_CHUNK: &str = "insert into storage.byte_chunks (key, seq, data) values ($1, $2, $3)";

#[async_trait]
impl ByteStore for PgStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn in_database(&self) -> bool {
        true
    }

    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64, StoreError> {
        check_key(key)?;
        let tx = self.db.admin_tx().await?;
        let mut chunks = Rechunker::default();
        let (mut seq, mut written) = (0i32, 0u64);
        while let Some(data) = body.next().await {
            let data = match data {
                Ok(data) => data,
                Err(error) => {
                    // Gone before returning: nothing of this write is left for anyone to see.
                    let _ = tx.rollback().await;
                    return Err(StoreError::Body(error));
                }
            };
            written += data.len() as u64;
            for chunk in chunks.push(&data) {
                tx.execute(WRITE_CHUNK, &[&key, &seq, &chunk])
                    .await
                    .map_err(unavailable)?;
                seq += 1;
            }
        }
        match chunks.finish() {
            Some(last) => tx.execute(WRITE_CHUNK, &[&key, &seq, &last]).await,
            None if seq == 0 => {
                tx.execute(WRITE_CHUNK, &[&key, &seq, &Vec::<u8>::new()])
                    .await
            }
            None => Ok(0),
        }
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(written)
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StoreError> {
        check_key(key)?;
        let tx = self.db.snapshot().await?;
        // The probe for the key reads chunk 0 whole: a read from the start (most of them) then
        // needs no second query for it.
        let first = tx
            .query_opt(
                "select data from storage.byte_chunks where key = $1 and seq = 0",
                &[&key],
            )
            .await
            .map_err(unavailable)?;
        let Some(first) = first else {
            return Err(StoreError::NotFound(key.to_string()));
        };
        let chunk = CHUNK_SIZE as u64;
        let (first_seq, last_seq, skip, end_in_last) = match range {
            Some(r) => (
                (r.start / chunk) as i32,
                (r.end / chunk) as i32,
                (r.start % chunk) as usize,
                Some((r.end % chunk) as usize + 1),
            ),
            None => (0, i32::MAX, 0, None),
        };
        struct Reading {
            tx: Tx,
            key: String,
            seq: i32,
            /// Chunk 0, already read by the probe.
            probed: Option<Vec<u8>>,
            /// A chunk shorter than CHUNK_SIZE was the last one: no query to find the end.
            ended: bool,
        }
        let state = Reading {
            tx,
            key: key.to_string(),
            seq: first_seq,
            probed: (first_seq == 0).then(|| first.get(0)),
            ended: false,
        };
        let stream = futures::stream::try_unfold(state, move |mut state| async move {
            if state.seq > last_seq || state.ended {
                return Ok(None);
            }
            let data: Vec<u8> = match state.probed.take() {
                Some(data) => data,
                None => {
                    let row = state
                        .tx
                        .query_opt(
                            "select data from storage.byte_chunks where key = $1 and seq = $2",
                            &[&state.key, &state.seq],
                        )
                        .await
                        .map_err(std::io::Error::other)?;
                    let Some(row) = row else {
                        return Ok(None);
                    };
                    row.get(0)
                }
            };
            // Every chunk but the last is exactly CHUNK_SIZE (see `Rechunker`).
            state.ended = data.len() < CHUNK_SIZE;
            let mut slice = &data[..];
            if state.seq == last_seq
                && let Some(end) = end_in_last
            {
                slice = &slice[..end.min(slice.len())];
            }
            if state.seq == first_seq {
                slice = &slice[skip.min(slice.len())..];
            }
            let bytes = Bytes::copy_from_slice(slice);
            state.seq += 1;
            Ok(Some((bytes, state)))
        });
        Ok(stream.boxed())
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        check_key(from)?;
        check_key(to)?;
        let tx = self.db.admin_tx().await?;
        let copied = tx
            .execute(
                "insert into storage.byte_chunks (key, seq, data) \
                 select $2, seq, data from storage.byte_chunks where key = $1",
                &[&from, &to],
            )
            .await
            .map_err(unavailable)?;
        if copied == 0 {
            return Err(StoreError::NotFound(from.to_string()));
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let conn = self.db.admin().await?;
        conn.execute("delete from storage.byte_chunks where key = $1", &[&key])
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rechunking_keeps_every_byte_in_order() {
        let mut r = Rechunker::default();
        let mut out = Vec::new();
        for piece in [
            vec![1u8; 10],
            vec![2u8; CHUNK_SIZE],
            vec![3u8; CHUNK_SIZE + 5],
        ] {
            out.extend(r.push(&piece));
        }
        out.extend(r.finish());
        assert_eq!(out.len(), 3);
        assert!(out[..2].iter().all(|c| c.len() == CHUNK_SIZE));
        assert_eq!(out[2].len(), 15);
        let flat: Vec<u8> = out.concat();
        assert_eq!(flat.len(), 10 + CHUNK_SIZE + CHUNK_SIZE + 5);
        assert_eq!(flat[9], 1);
        assert_eq!(flat[10], 2);
        assert_eq!(flat[10 + CHUNK_SIZE], 3);
    }
}
