//! Segmented objects: an object whose `version` is a manifest key (`mf-...`) has its bytes in
//! the segments `storage.object_segments` lists for that key, read one after the other.
//!
//! Segments are immutable byte keys and may be shared: a copy of a segmented object gets a new
//! manifest naming the same segments, copying no bytes. A manifest key lives in the journal like
//! any other version (staged, adopted by its row, released by a delete or an overwrite); when the
//! collector frees a released manifest, [`EXPAND_MANIFESTS`] releases its segments that no other
//! manifest names, with the manifest's own release time, so they are freed in the same pass.

use std::io;

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::bytes::{ByteRange, ByteStream, StoreError};
use crate::core::objects::{ObjectRow, RowWrite, probe_write, store_error, write_row};
use crate::core::{Caller, Error, Operation, Storage};

const MANIFEST_PREFIX: &str = "mf-";

/// Whether an object's `version` names a segment list rather than bytes.
pub fn is_manifest(version: &str) -> bool {
    version.starts_with(MANIFEST_PREFIX)
}

pub(super) fn new_manifest_key() -> String {
    format!("{MANIFEST_PREFIX}{}", Uuid::new_v4().simple())
}

/// The manifest key of the object a multipart upload completes into. It is derived from the
/// upload's id, so once the upload is gone its object still answers for it (a resumable client
/// that lost the last PATCH's answer asks), and it is a hash, so the `version` that readers of
/// the object see does not reveal the id.
pub(super) fn manifest_key_for_upload(upload_id: &str) -> String {
    let digest = Sha256::digest(format!("pgstorage multipart upload {upload_id}").as_bytes());
    format!("{MANIFEST_PREFIX}{}", &hex::encode(digest)[..32])
}

/// The segments holding bytes `$2..=$3` of manifest `$1`, in order.
const SEGMENTS_IN_RANGE: &str = "select key, byte_offset, size from storage.object_segments \
     where version = $1 and size > 0 and byte_offset <= $3 and byte_offset + size > $2 \
     order by seq";

/// Run by the collector in its batch transaction, before it picks keys (`$1` grace seconds,
/// `$2` most manifests): the segments of the manifests it is about to free that no other
/// manifest names are released, dated like their manifest.
pub const EXPAND_MANIFESTS: &str = "with manifests as ( \
         select j.key, j.recorded_at from storage.byte_journal j \
         where j.key like 'mf-%' \
           and ((j.state = 'released' and j.recorded_at < now() - make_interval(secs => $1)) \
                or (j.state = 'staged' and j.lease_until < now())) \
         limit $2 \
         for update skip locked \
     ), gone as ( \
         delete from storage.object_segments s using manifests m \
         where s.version = m.key \
         returning s.key, m.recorded_at \
     ) \
     insert into storage.byte_journal (key, state, recorded_at) \
     select g.key, 'released', min(g.recorded_at) from gone g \
     where not exists ( \
         select 1 from storage.object_segments o \
         where o.key = g.key and o.version not in (select key from manifests)) \
     group by g.key \
     on conflict (key) do nothing";

/// Where one segment of a segmented object lies in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub size: u64,
}

impl Storage {
    /// The segments of an object, in order (S3 GetObject `partNumber`, GetObjectAttributes);
    /// `None` for an object stored whole.
    pub async fn object_segments(&self, row: &ObjectRow) -> Result<Option<Vec<Segment>>, Error> {
        let Some(version) = row.version.as_deref().filter(|v| is_manifest(v)) else {
            return Ok(None);
        };
        let conn = self.db.admin().await?;
        let rows = conn
            .query(
                "select byte_offset, size from storage.object_segments \
                 where version = $1 order by seq",
                &[&version],
            )
            .await?;
        if rows.is_empty() {
            drop(conn);
            return Err(self.segments_missing(row, version).await);
        }
        Ok(Some(
            rows.iter()
                .map(|r| Segment {
                    offset: r.get::<_, i64>(0).max(0) as u64,
                    size: r.get::<_, i64>(1).max(0) as u64,
                })
                .collect(),
        ))
    }

    /// Streams a segmented object (all, or `range`), fetching only the segments the range
    /// touches, one at a time.
    pub(in crate::core) async fn read_segmented(
        &self,
        row: &ObjectRow,
        manifest: &str,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, Error> {
        let (start, end) = match range {
            Some(r) => (
                i64::try_from(r.start).unwrap_or(i64::MAX),
                i64::try_from(r.end).unwrap_or(i64::MAX),
            ),
            None => (0, i64::MAX),
        };
        let conn = self.db.admin().await?;
        let statement = conn.prepare_cached(SEGMENTS_IN_RANGE).await?;
        let rows = conn.query(&statement, &[&manifest, &start, &end]).await?;
        if rows.is_empty() {
            let known = conn
                .query_opt(
                    "select 1 from storage.object_segments where version = $1 limit 1",
                    &[&manifest],
                )
                .await?;
            drop(conn);
            if known.is_some() {
                // Only empty segments (an empty object): nothing to send.
                return Ok(futures::stream::empty().boxed());
            }
            return Err(self.segments_missing(row, manifest).await);
        }
        drop(conn);
        let mut pieces = rows.iter().map(|row| {
            let key: String = row.get(0);
            let offset = row.get::<_, i64>(1) as u64;
            let size = row.get::<_, i64>(2) as u64;
            let last = offset + size - 1;
            let (from, to) = (
                (start as u64).max(offset) - offset,
                (end as u64).min(last) - offset,
            );
            let whole = from == 0 && to == size - 1;
            (
                key,
                (!whole).then_some(ByteRange {
                    start: from,
                    end: to,
                }),
            )
        });
        let Some((first_key, first_range)) = pieces.next() else {
            return Ok(futures::stream::empty().boxed());
        };
        let rest: Vec<_> = pieces.collect();
        // The first segment is opened now, so a vanished object is a clean 404 rather than a
        // response cut short.
        let first = match self.bytes.get(&first_key, first_range).await {
            Ok(stream) => stream,
            Err(StoreError::NotFound(_)) => return Err(self.segments_missing(row, manifest).await),
            Err(error) => return Err(store_error(error)),
        };
        let store = self.bytes.clone();
        let rest = futures::stream::iter(rest)
            .then(move |(key, range)| {
                let store = store.clone();
                async move { store.get(&key, range).await.map_err(io::Error::other) }
            })
            .try_flatten();
        Ok(first.chain(rest).boxed())
    }

    /// The error for a segmented object whose segments are not there: gone with a row deleted
    /// since it was read (404), or a fault.
    async fn segments_missing(&self, row: &ObjectRow, manifest: &str) -> Error {
        let current = async {
            let conn = self.db.admin().await?;
            let found = conn
                .query_opt(
                    "select 1 from storage.objects where id = $1 and version = $2",
                    &[&row.id, &manifest],
                )
                .await?;
            Ok::<_, Error>(found.is_some())
        }
        .await;
        match current {
            Ok(false) => Error::ObjectNotFound,
            Ok(true) => {
                tracing::error!(object = %row.id, manifest, "a segmented object's bytes are missing");
                Error::Internal(anyhow::anyhow!("segments missing for object {}", row.id))
            }
            Err(error) => error,
        }
    }

    /// Copies a segmented object in one transaction as the caller: a new manifest naming the
    /// same immutable segments, and the destination row pointing at it. Returns the new row's
    /// id and version. As for every copy, the policies judge the write first; `refusal` (the
    /// destination bucket's rules) is told only to a caller they allow.
    pub(in crate::core) async fn copy_segmented(
        &self,
        caller: &Caller,
        write: &RowWrite<'_>,
        source: &str,
        metadata: &Value,
        overwrite: bool,
        refusal: Option<Error>,
    ) -> Result<(Uuid, String), Error> {
        let tx = self.begin(caller, Operation::Copy).await?;
        probe_write(&tx, write, overwrite).await?;
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let key = new_manifest_key();
        let lease = self.limits.upload_lease.as_secs_f64();
        let shared: i64 = tx
            .query_one(
                "select storage.share_segments($1, $2, $3)",
                &[&source, &key, &lease],
            )
            .await?
            .get(0);
        if shared == 0 {
            return Err(Error::ObjectNotFound);
        }
        let id = write_row(&tx, write, &key, metadata, overwrite).await?;
        tx.commit().await?;
        Ok((id, key))
    }
}
