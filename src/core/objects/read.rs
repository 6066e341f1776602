//! Reads: an object's bytes as of the row the caller read, exactly as long as measured.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use uuid::Uuid;

use super::{ObjectRow, store_error};
use crate::bytes::{ByteRange, ByteStream, StoreError};
use crate::core::{Caller, Error, Operation, Storage};

/// The statement a download or info runs, under the caller's policies, in the transaction that
/// [`crate::db::SET_IDENTITY`] began (`pgstorage bench-sql get` hands it to pgbench). Its columns
/// are [`super::OBJECT_COLUMNS`].
pub const READ_OBJECT: &str = "select id, bucket_id, name, owner_id, version, metadata, \
     user_metadata, created_at, updated_at, last_accessed_at from storage.objects \
     where bucket_id = $1 and name = $2";

impl Storage {
    /// Reads the object row for a download or info, under the caller's policies: identity,
    /// select and commit in one round trip.
    pub async fn object(
        &self,
        caller: &Caller,
        operation: Operation,
        bucket: &str,
        name: &str,
    ) -> Result<ObjectRow, Error> {
        let rows = self
            .once(caller, operation, &[(READ_OBJECT, &[&bucket, &name])])
            .await?;
        rows.first()
            .and_then(|rows| rows.first())
            .map(ObjectRow::from_row)
            .ok_or(Error::ObjectNotFound)
    }

    /// Streams an object's bytes (all, or `range`), as of the row the caller read: a
    /// concurrent overwrite does not change what this reader gets.
    pub async fn read(
        &self,
        row: &ObjectRow,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, Error> {
        let Some(key) = row.version.as_deref() else {
            // A row written by hand, with no bytes behind it.
            return Err(Error::ObjectNotFound);
        };
        let measured = row.measured_size()?;
        let expected = range.map_or(measured, |range| range.len());
        if crate::core::multipart::is_manifest(key) {
            let stream = self.read_segmented(row, key, range).await?;
            return Ok(exactly(stream, expected, row.id));
        }
        if let Some(small) = self.small_objects.as_deref()
            && small.holds(measured)
        {
            // A copy or a read that does not hold exactly the measured size is a fault: it
            // goes the streaming way below, which ends the transfer with an error.
            let kept = small
                .get(key)
                .filter(|whole| whole.len() as u64 == measured);
            let whole = match kept {
                Some(whole) => {
                    metrics::counter!("pgstorage_small_object_cache_total", "result" => "hit")
                        .increment(1);
                    Some(whole)
                }
                None => {
                    metrics::counter!("pgstorage_small_object_cache_total", "result" => "miss")
                        .increment(1);
                    let whole = self.read_whole(row, key, measured).await?;
                    if let Some(whole) = &whole {
                        small.insert(key, whole.clone());
                    }
                    whole
                }
            };
            let piece = match (whole, range) {
                (Some(whole), None) => Some(whole),
                (Some(whole), Some(range)) if range.start <= range.end && range.end < measured => {
                    Some(whole.slice(range.start as usize..=range.end as usize))
                }
                _ => None,
            };
            if let Some(piece) = piece {
                return Ok(futures::stream::once(async { Ok(piece) }).boxed());
            }
        }
        self.open_bytes(row, key, range)
            .await
            .map(|stream| exactly(stream, expected, row.id))
    }

    /// A small object's bytes, all of them, if the store holds exactly the size its row
    /// measured (None otherwise, or if the read fails on the way).
    async fn read_whole(
        &self,
        row: &ObjectRow,
        key: &str,
        measured: u64,
    ) -> Result<Option<Bytes>, Error> {
        let mut stream = self.open_bytes(row, key, None).await?;
        let mut whole = BytesMut::with_capacity(measured as usize);
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(piece) if (whole.len() + piece.len()) as u64 <= measured => {
                    whole.extend_from_slice(&piece)
                }
                _ => return Ok(None),
            }
        }
        Ok((whole.len() as u64 == measured).then(|| whole.freeze()))
    }

    /// The store's stream of `key`, or what its absence means: the object was deleted since
    /// the row was read (404), or its bytes are missing (a fault).
    async fn open_bytes(
        &self,
        row: &ObjectRow,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, Error> {
        match self.bytes.get(key, range).await {
            Ok(stream) => Ok(stream),
            Err(StoreError::NotFound(_)) => {
                // Deleted since the row was read (the postgres store removes chunks with their
                // row): the object is gone, which is a 404, not a fault.
                let conn = self.db.admin().await?;
                let current = conn
                    .query_opt(
                        "select 1 from storage.objects where id = $1 and version = $2",
                        &[&row.id, &key],
                    )
                    .await?;
                if current.is_none() {
                    return Err(Error::ObjectNotFound);
                }
                tracing::error!(object = %row.id, key, "an object's bytes are missing");
                Err(Error::Internal(anyhow::anyhow!(
                    "bytes missing for object {}",
                    row.id
                )))
            }
            Err(error) => Err(store_error(error)),
        }
    }
}

/// Passes on `stream` as long as it holds exactly `expected` bytes, the length the answer
/// announced; a store holding more or fewer bytes than the row measured ends the stream with an
/// error (the client sees an aborted transfer, never a hang or a silently short object).
fn exactly(stream: ByteStream, expected: u64, object: Uuid) -> ByteStream {
    let mismatch = move |seen: u64| {
        tracing::error!(%object, expected, seen, "an object's bytes do not match its measured size");
        std::io::Error::other(format!(
            "object {object}: the store holds a different length than was measured"
        ))
    };
    futures::stream::unfold(
        (stream, 0u64, false),
        move |(mut stream, seen, done)| async move {
            if done {
                return None;
            }
            match stream.next().await {
                Some(Ok(piece)) => {
                    let seen = seen + piece.len() as u64;
                    if seen > expected {
                        return Some((Err(mismatch(seen)), (stream, seen, true)));
                    }
                    Some((Ok(piece), (stream, seen, false)))
                }
                Some(Err(error)) => Some((Err(error), (stream, seen, true))),
                None if seen < expected => Some((Err(mismatch(seen)), (stream, seen, true))),
                None => None,
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_read_selects_the_object_columns() {
        assert!(super::READ_OBJECT.contains(super::super::OBJECT_COLUMNS));
    }
}
