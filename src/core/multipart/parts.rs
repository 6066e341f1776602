//! Parts: each one's bytes go under a fresh key, staged in the journal before the first byte is
//! written; the part's row then takes the key out of the journal in the transaction that records
//! it. A part uploaded again replaces the earlier one, whose key is released (freed after the
//! grace period).
//!
//! A part is answered only once its bytes are durable and its row committed, so the time after
//! its last byte is what a client that sends one part at a time (TUS) idles for on every part:
//! the store writes a staged key in place and starts its writeback while it streams
//! ([`ByteStore::put_staged`](crate::bytes::ByteStore::put_staged)), and an appended part is
//! recorded in three round trips and one commit.

use chrono::{DateTime, Utc};

use super::{MAX_PART_NUMBER, MultipartUpload};
use crate::bytes::{ByteRange, ByteStream, new_key};
use crate::core::meter::{self, ExpectedDigests, Measured};
use crate::core::objects::{store_error, too_large};
use crate::core::{Caller, Error, Operation, Storage};

/// A stored part.
#[derive(Debug, Clone)]
pub struct PartInfo {
    pub part_number: u32,
    /// The quoted MD5 of the part's bytes, in hex (S3's part ETag).
    pub etag: String,
    pub size: u64,
    /// SHA-256 of the part's bytes, in hex.
    pub sha256: Option<String>,
    /// The part's checksum of its upload's checksum algorithm, when recorded (see
    /// [`Storage::record_part_checksum`]).
    pub checksum: Option<String>,
    pub last_modified: DateTime<Utc>,
}

/// What [`Storage::upload_part_copy`] copies: an object, or a range of its bytes.
#[derive(Debug, Clone)]
pub struct PartSource {
    pub bucket: String,
    pub name: String,
    pub range: Option<ByteRange>,
}

/// One page of [`Storage::list_parts`].
#[derive(Debug, Clone)]
pub struct PartList {
    pub parts: Vec<PartInfo>,
    /// More parts follow the last one returned.
    pub truncated: bool,
}

/// Locks the upload while a part is recorded (completion and abort wait for it).
const LOCK_UPLOAD: &str = "select in_progress_size, declared_length \
     from storage.s3_multipart_uploads \
     where id = $1 and (expires_at is null or expires_at > now()) \
     for update";

const REMOVE_PART: &str = "delete from storage.s3_multipart_uploads_parts \
     where upload_id = $1 and part_number = $2 \
     returning version, size";

const RELEASE_KEYS: &str = "insert into storage.byte_journal (key, state) \
     select unnest($1::text[]), 'released' \
     on conflict (key) do nothing";

/// Records a part in one statement, run once the upload is locked: its key leaves the journal
/// (the part's row references it now), the row is inserted as part `$3`, or (null) as the part
/// after the last, and the upload's running size (`$10`) is set, every part renewing its expiry
/// (`$11` seconds). No row comes back when the key was no longer staged (its lease ran out and
/// the collector took it): then nothing else happens either. The last part number is read here,
/// not with the lock: this statement's snapshot is taken under the lock, so it sees every part
/// recorded before.
const RECORD_PART: &str = "with adopted as ( \
         delete from storage.byte_journal where key = $8 and state = 'staged' \
         returning key \
     ), part as ( \
         insert into storage.s3_multipart_uploads_parts \
             (upload_id, size, part_number, bucket_id, key, etag, owner_id, version, sha256) \
         select $1, $2, \
             coalesce($3::int, (select coalesce(max(p.part_number), 0) + 1 \
                                from storage.s3_multipart_uploads_parts p where p.upload_id = $1)), \
             $4, $5, $6, $7, adopted.key, $9 \
         from adopted \
         returning part_number, created_at \
     ), upload as ( \
         update storage.s3_multipart_uploads \
         set in_progress_size = $10, expires_at = now() + make_interval(secs => $11) \
         where id = $1 and exists (select 1 from part) \
     ) \
     select part_number, created_at from part";

const PART_SIZE: &str = "select size from storage.s3_multipart_uploads_parts \
     where upload_id = $1 and part_number = $2";

const LIST_PARTS: &str = "select part_number, etag, size, sha256, checksum, created_at \
     from storage.s3_multipart_uploads_parts \
     where upload_id = $1 and part_number > $2 \
     order by part_number \
     limit $3";

fn check_part_number(part_number: u32) -> Result<i32, Error> {
    if !(1..=MAX_PART_NUMBER).contains(&part_number) {
        return Err(Error::InvalidInput(format!(
            "part number must be an integer between 1 and {MAX_PART_NUMBER}, got {part_number}"
        )));
    }
    Ok(part_number as i32)
}

fn offset_conflict(offset: u64, current: u64) -> Error {
    Error::Conflict(format!(
        "the upload is at offset {current}, not {offset}: another request changed it"
    ))
}

/// A part's checksum, on the part that has the ETag it was verified with (a part uploaded again
/// in between keeps its own).
const SET_PART_CHECKSUM: &str = "update storage.s3_multipart_uploads_parts set checksum = $4 \
     where upload_id = $1 and part_number = $2 and etag = $3";

impl Storage {
    /// Records the checksum (of the upload's checksum algorithm) of a part just stored with
    /// `etag`, as the front verified it against the part's bytes.
    pub async fn record_part_checksum(
        &self,
        upload_id: &str,
        part_number: u32,
        etag: &str,
        checksum: &str,
    ) -> Result<(), Error> {
        let number = check_part_number(part_number)?;
        let conn = self.db.admin().await?;
        conn.execute(SET_PART_CHECKSUM, &[&upload_id, &number, &etag, &checksum])
            .await?;
        Ok(())
    }

    /// Stores one part of an upload, replacing an earlier part with the same number. The
    /// bucket's size limit applies to the running total of the upload's parts.
    pub async fn upload_part(
        &self,
        caller: &Caller,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        declared_length: Option<u64>,
    ) -> Result<PartInfo, Error> {
        self.upload_part_checked(
            caller,
            upload_id,
            part_number,
            body,
            declared_length,
            ExpectedDigests::default(),
        )
        .await
    }

    /// [`Storage::upload_part`] for a body that must have the `expected` digests: one that
    /// does not is refused with [`Error::DigestMismatch`] and records no part.
    pub async fn upload_part_checked(
        &self,
        caller: &Caller,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        declared_length: Option<u64>,
        expected: ExpectedDigests,
    ) -> Result<PartInfo, Error> {
        let number = check_part_number(part_number)?;
        let upload = self.multipart_upload(caller, upload_id).await?;
        self.write_part(upload, Some(number), None, body, declared_length, expected)
            .await
    }

    /// Appends a part at `offset` (TUS: `Upload-Offset`): refused with [`Error::Conflict`]
    /// unless `offset` is the upload's size when the part starts and still is when it is
    /// recorded, so of two clients appending at once exactly one succeeds. Parts appended this
    /// way are numbered 1, 2, ... in order.
    pub async fn append_part(
        &self,
        caller: &Caller,
        upload_id: &str,
        offset: u64,
        body: ByteStream,
        declared_length: Option<u64>,
    ) -> Result<PartInfo, Error> {
        let upload = self.multipart_upload(caller, upload_id).await?;
        self.append_part_to(&upload, offset, body, declared_length)
            .await
    }

    /// [`Storage::append_part`] to an upload the front has just looked up for the caller with
    /// [`Storage::multipart_upload`] (a TUS PATCH checks its offset first), saving a second
    /// look-up on every part.
    pub async fn append_part_to(
        &self,
        upload: &MultipartUpload,
        offset: u64,
        body: ByteStream,
        declared_length: Option<u64>,
    ) -> Result<PartInfo, Error> {
        if upload.size != offset {
            return Err(offset_conflict(offset, upload.size));
        }
        self.write_part(
            upload.clone(),
            None,
            Some(offset),
            body,
            declared_length,
            ExpectedDigests::default(),
        )
        .await
    }

    /// Stores a part whose bytes are those of an existing object, or a range of them (S3
    /// UploadPartCopy). The source is read as the caller under `storage.copy`. The bytes are
    /// copied: a part is a key of its own.
    pub async fn upload_part_copy(
        &self,
        caller: &Caller,
        upload_id: &str,
        part_number: u32,
        source: PartSource,
    ) -> Result<PartInfo, Error> {
        let number = check_part_number(part_number)?;
        let upload = self.multipart_upload(caller, upload_id).await?;
        let row = self
            .object(caller, Operation::Copy, &source.bucket, &source.name)
            .await?;
        let size = row.measured_size()?;
        if let Some(range) = source.range
            && (range.end < range.start || range.end >= size)
        {
            return Err(Error::RangeNotSatisfiable(format!(
                "the range {}-{} is not within the source's {size} bytes",
                range.start, range.end
            )));
        }
        let length = source.range.map_or(size, |r| r.len());
        let body = self.read(&row, source.range).await?;
        self.write_part(
            upload,
            Some(number),
            None,
            body,
            Some(length),
            ExpectedDigests::default(),
        )
        .await
    }

    /// Streams a part under a fresh staged key and records it, as part `number`, or (`None`)
    /// appended after the last one.
    async fn write_part(
        &self,
        upload: MultipartUpload,
        number: Option<i32>,
        expected_offset: Option<u64>,
        body: ByteStream,
        declared_length: Option<u64>,
        expected: ExpectedDigests,
    ) -> Result<PartInfo, Error> {
        let upload_id = upload.id.as_str();
        let key = new_key();
        let lookups = async {
            let target = self.write_target(&upload.bucket, &upload.name).await?;
            // An appended part replaces nothing.
            let replaced = match number {
                Some(number) => {
                    let conn = self.db.admin().await?;
                    let statement = conn.prepare_cached(PART_SIZE).await?;
                    let row = conn.query_opt(&statement, &[&upload_id, &number]).await?;
                    row.map_or(0, |row| row.get::<_, i64>(0)).max(0) as u64
                }
                None => 0,
            };
            Ok::<_, Error>((target, replaced))
        };
        // The key is staged (a commit) while the bucket's rules are read, on two connections:
        // a client sending one part at a time (TUS) waits for both on every part. The key
        // is still in the journal before the first byte is written.
        let (looked_up, staged) = tokio::join!(lookups, self.stage(&key));
        staged?;
        let (target, replaced) = match looked_up {
            Ok(looked_up) => looked_up,
            Err(error) => {
                self.unstage(&key).await;
                return Err(error);
            }
        };
        let limit = self.effective_limit(&target);
        // What the other parts leave of the limit: exact unless parts arrive concurrently,
        // which the recording transaction checks again.
        let others = upload.size.saturating_sub(replaced);
        let mut room = limit.saturating_sub(others);
        if let Some(declared) = upload.declared_length {
            room = room.min(declared.saturating_sub(others));
        }
        if declared_length.is_some_and(|len| len > room) {
            self.unstage(&key).await;
            return Err(too_large());
        }

        let (body, meter) = meter::metered(body, room, self.limits.pace(), expected);
        if let Err(error) = self.stream_part(&key, body).await {
            self.discard_after(&key, &error).await;
            return Err(self.body_error(&meter, error));
        }
        let recorded = match meter::finish(&meter) {
            Ok(measured) => {
                self.record_part(&upload, number, expected_offset, &key, &measured, limit)
                    .await
            }
            Err(error) => Err(error),
        };
        match recorded {
            Ok(part) => Ok(part),
            Err(error) => {
                self.discard_after_commit(&key, &error).await;
                Err(error)
            }
        }
    }

    /// Writes a part's bytes under its staged `key` (in place: nothing reads a part before
    /// its row exists), renewing the key's lease while they flow.
    async fn stream_part(&self, key: &str, body: ByteStream) -> Result<u64, Error> {
        self.renewing_lease(key, self.bytes.put_staged(key, body))
            .await
            .map_err(store_error)
    }

    /// Records a written part in one transaction: the upload is locked, an earlier part with
    /// the same number released, the new key adopted from the journal. An appended part
    /// (`number` `None`) takes the number after the last, and only if the upload is still at
    /// `expected_offset`.
    async fn record_part(
        &self,
        upload: &MultipartUpload,
        number: Option<i32>,
        expected_offset: Option<u64>,
        key: &str,
        measured: &Measured,
        limit: u64,
    ) -> Result<PartInfo, Error> {
        let tx = self.db.admin_tx().await?;
        let locked = tx
            .query_opt(LOCK_UPLOAD, &[&upload.id])
            .await?
            .ok_or(Error::NoSuchUpload)?;
        let current: i64 = locked.get(0);
        let declared: Option<i64> = locked.get(1);
        if let Some(offset) = expected_offset {
            // Another client got there first.
            let current = current.max(0) as u64;
            if current != offset {
                return Err(offset_conflict(offset, current));
            }
        }
        // An appended part replaces nothing.
        let old = match number {
            Some(number) => tx.query(REMOVE_PART, &[&upload.id, &number]).await?,
            None => Vec::new(),
        };
        let old_keys: Vec<String> = old.iter().map(|row| row.get(0)).collect();
        let old_size: i64 = old.iter().map(|row| row.get::<_, i64>(1)).sum();
        if !old_keys.is_empty() {
            tx.execute(RELEASE_KEYS, &[&old_keys]).await?;
        }
        let size = i64::try_from(measured.size).map_err(|_| too_large())?;
        let total = current - old_size + size;
        if total as u64 > limit {
            return Err(too_large());
        }
        if declared.is_some_and(|declared| total > declared) {
            return Err(Error::PayloadTooLarge(
                "the parts exceed the upload's declared length".into(),
            ));
        }
        let etag = format!("\"{}\"", measured.md5_hex);
        let expiry = self.limits.multipart_expiry.as_secs_f64();
        let recorded = tx
            .query_opt(
                RECORD_PART,
                &[
                    &upload.id,
                    &size,
                    &number,
                    &upload.bucket,
                    &upload.name,
                    &etag,
                    &upload.owner,
                    &key,
                    &measured.sha256_hex,
                    &total,
                    &expiry,
                ],
            )
            .await?;
        let Some(recorded) = recorded else {
            // The lease ran out and the collector took the key.
            return Err(Error::Unavailable(
                "the part's staged bytes expired before it was recorded; retry".into(),
            ));
        };
        let number: i32 = recorded.get(0);
        // An appended part past the last number: not committed, so nothing was recorded.
        check_part_number(number.max(0) as u32)?;
        let created: DateTime<Utc> = recorded.get(1);
        tx.commit().await?;
        Ok(PartInfo {
            part_number: number as u32,
            etag,
            size: measured.size,
            sha256: Some(measured.sha256_hex.clone()),
            checksum: None,
            last_modified: created,
        })
    }

    /// The parts of an upload after `part_number_marker`, in order, at most `max` (1..=1000).
    pub async fn list_parts(
        &self,
        caller: &Caller,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max: usize,
    ) -> Result<PartList, Error> {
        self.multipart_upload(caller, upload_id).await?;
        let max = max.clamp(1, 1000);
        let marker = part_number_marker.unwrap_or(0).min(MAX_PART_NUMBER) as i32;
        let limit = max as i64 + 1;
        let conn = self.db.admin().await?;
        let statement = conn.prepare_cached(LIST_PARTS).await?;
        let rows = conn
            .query(&statement, &[&upload_id, &marker, &limit])
            .await?;
        let truncated = rows.len() > max;
        let parts = rows
            .iter()
            .take(max)
            .map(|row| PartInfo {
                part_number: row.get::<_, i32>("part_number") as u32,
                etag: row.get("etag"),
                size: row.get::<_, i64>("size").max(0) as u64,
                sha256: row.get("sha256"),
                checksum: row.get("checksum"),
                last_modified: row.get("created_at"),
            })
            .collect();
        Ok(PartList { parts, truncated })
    }
}
