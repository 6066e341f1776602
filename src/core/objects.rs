//! Objects: upload, read, delete, move and copy, keeping rows and bytes consistent.
//!
//! A write follows one protocol (DESIGN §5):
//! 1. **check**: the caller's policies are evaluated on the row about to be written, in a
//!    transaction that is then rolled back, so a denied write never reaches the byte store;
//! 2. **stage**: a fresh opaque key is recorded in `storage.byte_journal` before the first byte
//!    is written (the lease is renewed while bytes stream);
//! 3. **stream**: bytes go to the store, measured and limited on the way, synced when done;
//! 4. **commit**: the row is inserted or switched to the new key in one transaction; the
//!    journal triggers adopt the new key and release the old one in that same transaction.
//!
//! A failure after step 2 leaves only a staged key, which is discarded at once or, if the
//! server died, collected when its lease runs out.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::media_type::MediaType;
use super::meter::{self, Measured};
use super::names::validate_object_name;
pub use super::signed_writes::SignedUse;
use super::{Caller, Error, Operation, Storage};
use futures::StreamExt;

use crate::bytes::postgres::Rechunker;
use crate::bytes::{ByteRange, ByteStream, StoreError, new_key};
use crate::db::Tx;

/// The server-written part of an object's row (`storage.objects.metadata`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMetadata {
    #[serde(rename = "eTag")]
    pub e_tag: Option<String>,
    pub size: Option<u64>,
    pub mimetype: Option<String>,
    pub cache_control: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
    pub content_length: Option<u64>,
    pub http_status_code: Option<u16>,
    pub sha256: Option<String>,
}

/// An object row as clients see it in listings and delete results.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectRow {
    pub id: Uuid,
    pub bucket_id: String,
    pub name: String,
    /// The creator's `sub`; `""` when none (clients type it as a string).
    pub owner: String,
    pub owner_id: String,
    pub version: Option<String>,
    pub metadata: Option<Value>,
    pub user_metadata: Option<Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub last_accessed_at: Option<DateTime<Utc>>,
}

pub(crate) const OBJECT_COLUMNS: &str = "id, bucket_id, name, owner_id, version, metadata, \
     user_metadata, created_at, updated_at, last_accessed_at";

impl ObjectRow {
    pub(crate) fn from_row(row: &Row) -> Self {
        let owner: Option<String> = row.get("owner_id");
        let owner = owner.unwrap_or_default();
        Self {
            id: row.get("id"),
            bucket_id: row.get("bucket_id"),
            name: row.get("name"),
            owner: owner.clone(),
            owner_id: owner,
            version: row.get("version"),
            metadata: row.get("metadata"),
            user_metadata: row.get("user_metadata"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            last_accessed_at: row.get("last_accessed_at"),
        }
    }

    /// The server-written metadata, typed (missing fields are `None`).
    pub fn system_metadata(&self) -> ObjectMetadata {
        self.metadata
            .clone()
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default()
    }

    /// The recorded size for display (listings, info); 0 when missing or malformed. A length
    /// sent ahead of bytes uses [`ObjectRow::measured_size`].
    pub fn size(&self) -> u64 {
        self.measured_size().unwrap_or(0)
    }

    /// The size the server measured when it wrote the bytes. A `metadata.size` that is missing
    /// or not a whole number of bytes was not written by the server (DESIGN §5 invariant 8):
    /// serving it would hang or truncate a download, so it is a fault, never a guess.
    pub fn measured_size(&self) -> Result<u64, Error> {
        self.metadata
            .as_ref()
            .and_then(|m| m.get("size"))
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "object {} has no valid size in its metadata",
                    self.id
                ))
            })
    }
}

/// An upload, as a front hands it to the core.
pub struct Upload {
    pub bucket: String,
    pub name: String,
    pub body: ByteStream,
    /// The length the client announced, if any: refused early when over the limit.
    pub declared_length: Option<u64>,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub user_metadata: Option<Value>,
    /// Replace an existing object instead of answering 409.
    pub upsert: bool,
    /// The new row's `owner_id` when it is not the caller's `sub` (an upload through a signed
    /// URL belongs to its signer); `None`: the caller's.
    pub owner: Option<String>,
}

/// Where a write landed.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: Uuid,
    pub bucket: String,
    pub name: String,
}

/// A copy request.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub bucket: String,
    pub source: String,
    pub destination_bucket: String,
    pub destination: String,
    /// Carry the source's user metadata over (default); otherwise use `user_metadata`.
    pub copy_metadata: bool,
    pub user_metadata: Option<Value>,
    pub upsert: bool,
}

/// The type of bytes whose type nobody recorded.
const UNKNOWN_TYPE: &str = "application/octet-stream";

/// How often an upsert re-decides between insert and overwrite when concurrent requests keep
/// creating and deleting its target.
const SETTLE_ATTEMPTS: u32 = 4;

/// Most names one bulk delete takes.
pub const MAX_BULK_DELETE: usize = 1000;

/// What the server knows about a write's target, read with privilege (a bucket's limits apply
/// whatever the caller may see of it). None of it is told to the caller before its policies
/// have allowed the write: a missing bucket, the bucket's rules and an existing key come out of
/// the policy probe (or after it), never ahead of it.
pub(super) struct Target {
    pub(super) file_size_limit: Option<i64>,
    pub(super) allowed_mime_types: Option<Vec<String>>,
    pub(super) exists: bool,
}

/// The one answer to a write the caller's policies refuse, whether or not the key exists (and
/// whether or not the bucket does): anything else would tell a caller what it may not see.
pub(super) fn write_denied() -> Error {
    Error::Forbidden("new row violates row-level security policy".into())
}

/// True when `allowed` (a bucket's `allowed_mime_types`; empty allows all) covers `mime`. Both
/// sides are compared as parsed media types: `type/subtype`, case-insensitive, parameters
/// ignored; `type/*` and `*/*` are wildcards. A type that does not parse is never allowed.
pub(super) fn mime_allowed(allowed: &[String], mime: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Ok(mime) = MediaType::parse(mime) else {
        return false;
    };
    allowed.iter().any(|pattern| mime.matches(pattern))
}

/// Content type: what the client said (one valid media type, else an `InvalidInput` error),
/// else a guess from the name, else octet-stream.
pub fn content_type_for(given: Option<&str>, name: &str) -> Result<String, Error> {
    match given.filter(|t| !t.trim().is_empty()) {
        Some(t) => MediaType::parse(t)
            .map(|t| t.as_str().to_string())
            .map_err(|e| Error::InvalidInput(e.to_string())),
        None => Ok(mime_guess::from_path(name)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_string()),
    }
}

pub(super) fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Storage {
    /// Stores an object. See the module documentation for the protocol.
    pub async fn upload(&self, caller: &Caller, upload: Upload) -> Result<Stored, Error> {
        self.upload_as(caller, upload, None).await
    }

    /// Stores an object through a signed upload URL: `caller` is the server acting on the
    /// token, and `signed` what the token carries (see [`SignedUse`]).
    pub async fn upload_signed(
        &self,
        caller: &Caller,
        upload: Upload,
        signed: SignedUse,
    ) -> Result<Stored, Error> {
        let signed = self.recall_signer(signed).await?;
        self.upload_as(caller, upload, Some(&signed)).await
    }

    async fn upload_as(
        &self,
        caller: &Caller,
        upload: Upload,
        signed: Option<&SignedUse>,
    ) -> Result<Stored, Error> {
        validate_object_name(&upload.name)?;
        let mimetype = content_type_for(upload.content_type.as_deref(), &upload.name)?;
        let target = self.write_target(&upload.bucket, &upload.name).await?;
        // (On an existing key, a token without upsert meets its 409 in the probe.)
        if let Some(signed) = signed
            && !target.exists
        {
            super::signed_writes::check_token_unused(signed)?;
        }
        let limit = self.effective_limit(&target);
        // Told only once the policies allow the write (policy first, then the bucket's rules).
        let refusal = self.limit_refusal(&target, upload.declared_length, &mimetype);
        // An existing key without upsert is probed as an insert: the policy decides between
        // 403 and 409 (see `probe_write`).
        let overwrite = target.exists && upload.upsert;
        let operation = write_operation(overwrite);
        let cache_control = upload
            .cache_control
            .clone()
            .unwrap_or_else(|| "no-cache".to_string());
        let write = RowWrite {
            bucket: &upload.bucket,
            name: &upload.name,
            owner: upload.owner.clone().or_else(|| caller.owner()),
            user_metadata: upload.user_metadata.clone(),
            signed,
        };
        if self.bytes.in_database() {
            let (body, meter) = meter::metered(upload.body, limit, self.limits.body_idle_timeout);
            let id = self
                .upload_in_database(
                    caller,
                    operation,
                    &write,
                    overwrite,
                    upload.upsert,
                    refusal,
                    body,
                    &meter,
                    &mimetype,
                    &cache_control,
                )
                .await
                .map_err(|e| self.body_error(&meter, e))?;
            return Ok(Stored {
                id,
                bucket: upload.bucket,
                name: upload.name,
            });
        }
        let overwrite = self
            .check_settling(caller, &write, overwrite, upload.upsert)
            .await?;
        if let Some(refusal) = refusal {
            return Err(refusal);
        }

        let key = new_key();
        self.stage(&key).await?;
        let (body, meter) = meter::metered(upload.body, limit, self.limits.body_idle_timeout);
        if let Err(error) = self.stream_into(&key, body).await {
            self.discard_after(&key, &error).await;
            return Err(self.body_error(&meter, error));
        }
        let measured = meter::finish(&meter);
        let metadata = metadata_json(&measured, &mimetype, &cache_control);
        match self
            .commit_settling(
                caller,
                write_operation,
                &write,
                &key,
                &metadata,
                overwrite,
                upload.upsert,
            )
            .await
        {
            Ok(id) => Ok(Stored {
                id,
                bucket: upload.bucket,
                name: upload.name,
            }),
            Err(error) => {
                self.discard(&key).await;
                Err(error)
            }
        }
    }

    /// Reads the object row for a download or info, under the caller's policies.
    pub async fn object(
        &self,
        caller: &Caller,
        operation: Operation,
        bucket: &str,
        name: &str,
    ) -> Result<ObjectRow, Error> {
        let tx = self.begin(caller, operation).await?;
        let rows = tx
            .query_and_commit(
                &format!(
                    "select {OBJECT_COLUMNS} from storage.objects \
                     where bucket_id = $1 and name = $2"
                ),
                &[&bucket, &name],
            )
            .await?;
        rows.first()
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
        let expected = match range {
            Some(range) => range.len(),
            None => row.measured_size()?,
        };
        if super::multipart::is_manifest(key) {
            let stream = self.read_segmented(row, key, range).await?;
            return Ok(exactly(stream, expected, row.id));
        }
        match self.bytes.get(key, range).await {
            Ok(stream) => Ok(exactly(stream, expected, row.id)),
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

    /// Deletes one object. Its bytes are released by the same transaction.
    pub async fn delete_object(
        &self,
        caller: &Caller,
        bucket: &str,
        name: &str,
    ) -> Result<(), Error> {
        let tx = self.begin_deleting(caller, Operation::Delete).await?;
        let rows = tx
            .query_and_commit(
                "delete from storage.objects where bucket_id = $1 and name = $2 returning id",
                &[&bucket, &name],
            )
            .await?;
        if rows.is_empty() {
            return Err(Error::ObjectNotFound);
        }
        Ok(())
    }

    /// Deletes the named objects the caller may delete; the rest are skipped. Returns the
    /// deleted rows.
    pub async fn delete_objects(
        &self,
        caller: &Caller,
        bucket: &str,
        names: &[String],
    ) -> Result<Vec<ObjectRow>, Error> {
        if names.is_empty() {
            return Err(Error::InvalidInput(
                "prefixes must name at least one object".into(),
            ));
        }
        if names.len() > MAX_BULK_DELETE {
            return Err(Error::InvalidInput(format!(
                "at most {MAX_BULK_DELETE} objects can be deleted per request, got {}",
                names.len()
            )));
        }
        let tx = self.begin_deleting(caller, Operation::Delete).await?;
        let rows = tx
            .query_and_commit(
                &format!(
                    "delete from storage.objects where bucket_id = $1 and name = any($2) \
                     returning {OBJECT_COLUMNS}"
                ),
                &[&bucket, &names],
            )
            .await?;
        Ok(rows.iter().map(ObjectRow::from_row).collect())
    }

    /// Renames an object, possibly into another bucket. Only the row changes; bytes stay.
    pub async fn move_object(
        &self,
        caller: &Caller,
        bucket: &str,
        source: &str,
        destination_bucket: &str,
        destination: &str,
    ) -> Result<Stored, Error> {
        validate_object_name(destination)?;
        let tx = self.begin(caller, Operation::Move).await?;
        // The policies judge the move first (and, as PostgreSQL checks them before the unique
        // key, before an existing destination answers 409); the destination bucket's rules
        // after, so a caller who may not move there learns nothing of them.
        let rows = tx
            .query(
                "update storage.objects set bucket_id = $3, name = $4, last_accessed_at = now() \
                 where bucket_id = $1 and name = $2 \
                 returning id, metadata",
                &[&bucket, &source, &destination_bucket, &destination],
            )
            .await
            .map_err(|e| match e.code() {
                Some(&SqlState::FOREIGN_KEY_VIOLATION) => Error::BucketNotFound,
                Some(&SqlState::INSUFFICIENT_PRIVILEGE) => write_denied(),
                _ => Error::from(e),
            })?;
        let row = rows.first().ok_or(Error::ObjectNotFound)?;
        // Within a bucket a move changes nothing its rules look at (size, type); into another
        // bucket it must meet that bucket's rules, as an upload there would.
        if destination_bucket != bucket {
            let metadata: Option<Value> = row.get(1);
            let moved: ObjectMetadata = metadata
                .and_then(|m| serde_json::from_value(m).ok())
                .unwrap_or_default();
            let target = self.write_target(destination_bucket, destination).await?;
            let mimetype = moved.mimetype.as_deref().unwrap_or(UNKNOWN_TYPE);
            if let Some(refusal) = self.limit_refusal(&target, moved.size, mimetype) {
                // Dropping the transaction rolls the move back.
                return Err(refusal);
            }
        }
        tx.commit().await?;
        Ok(Stored {
            id: row.get(0),
            bucket: destination_bucket.to_string(),
            name: destination.to_string(),
        })
    }

    /// Copies an object into a new one with its own bytes.
    pub async fn copy_object(
        &self,
        caller: &Caller,
        copy: CopyRequest,
    ) -> Result<ObjectRow, Error> {
        validate_object_name(&copy.destination)?;
        let source = self
            .object(caller, Operation::Copy, &copy.bucket, &copy.source)
            .await?;
        let Some(source_key) = source.version.clone() else {
            return Err(Error::ObjectNotFound);
        };
        let target = self
            .write_target(&copy.destination_bucket, &copy.destination)
            .await?;
        // A copy lands in its destination bucket like an upload: the bucket's size limit and
        // types apply, told only once the policies allow the write.
        let source_meta = source.system_metadata();
        let mimetype = source_meta.mimetype.as_deref().unwrap_or(UNKNOWN_TYPE);
        let refusal = self.limit_refusal(&target, Some(source.size()), mimetype);
        let overwrite = target.exists && copy.upsert;
        let user_metadata = if copy.copy_metadata {
            source.user_metadata.clone()
        } else {
            copy.user_metadata.clone()
        };
        let write = RowWrite {
            bucket: &copy.destination_bucket,
            name: &copy.destination,
            owner: caller.owner(),
            user_metadata,
            signed: None,
        };
        let mut metadata = source.metadata.clone().unwrap_or_else(|| json!({}));
        let now = Utc::now();
        metadata["lastModified"] = json!(iso(now));
        // Whatever set the copy's type (the source, or a type given with the copy), it is stored
        // only if it is one valid media type, as for an upload.
        if let Some(mimetype) = metadata.get("mimetype").and_then(Value::as_str) {
            content_type_for(Some(mimetype), &copy.destination)?;
        }
        let (id, key) = if super::multipart::is_manifest(&source_key) {
            // Segments are immutable: the copy shares them, copying no bytes.
            self.copy_segmented(caller, &write, &source_key, &metadata, overwrite, refusal)
                .await?
        } else if self.bytes.in_database() {
            self.copy_in_database(caller, &write, &source_key, &metadata, overwrite, refusal)
                .await?
        } else {
            self.check_write(caller, Operation::Copy, &write, overwrite)
                .await?;
            if let Some(refusal) = refusal {
                return Err(refusal);
            }
            let key = new_key();
            self.stage(&key).await?;
            if let Err(error) = self.bytes.copy(&source_key, &key).await {
                let error = store_error(error);
                self.discard_after(&key, &error).await;
                return Err(error);
            }
            match self
                .commit_settling(
                    caller,
                    |_| Operation::Copy,
                    &write,
                    &key,
                    &metadata,
                    overwrite,
                    copy.upsert,
                )
                .await
            {
                Ok(id) => (id, key),
                Err(error) => {
                    self.discard(&key).await;
                    return Err(error);
                }
            }
        };
        // Answer from what was written: reading the row back would need a SELECT policy on the
        // destination, which a copy does not require.
        let owner = write.owner.clone().unwrap_or_default();
        Ok(ObjectRow {
            id,
            bucket_id: copy.destination_bucket.clone(),
            name: copy.destination.clone(),
            owner: owner.clone(),
            owner_id: owner,
            version: Some(key),
            metadata: Some(metadata),
            user_metadata: write.user_metadata,
            created_at: Some(now),
            updated_at: Some(now),
            last_accessed_at: Some(now),
        })
    }

    pub(super) fn effective_limit(&self, target: &Target) -> u64 {
        let bucket = target
            .file_size_limit
            .and_then(|l| u64::try_from(l).ok())
            .unwrap_or(u64::MAX);
        bucket.min(self.limits.max_file_size)
    }

    /// Why a write of `size` bytes of type `mimetype` may not land in the target's bucket, if
    /// it may not. Only to be told once the caller's policies have allowed the write.
    pub(super) fn limit_refusal(
        &self,
        target: &Target,
        size: Option<u64>,
        mimetype: &str,
    ) -> Option<Error> {
        if size.is_some_and(|size| size > self.effective_limit(target)) {
            return Some(too_large());
        }
        match &target.allowed_mime_types {
            Some(allowed) if !mime_allowed(allowed, mimetype) => Some(Error::UnsupportedMediaType(
                format!("mime type {mimetype} is not supported"),
            )),
            _ => None,
        }
    }

    /// The target's bucket rules and whether the key exists. A missing bucket reads as one
    /// without rules or objects: the write's own policy probe then answers 403 to a caller who
    /// may not write there, and 404 (its foreign key) to one who may.
    pub(super) async fn write_target(&self, bucket: &str, name: &str) -> Result<Target, Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "select b.file_size_limit, b.allowed_mime_types, \
                        exists (select 1 from storage.objects o \
                                where o.bucket_id = b.id and o.name = $2) \
                 from storage.buckets b where b.id = $1",
            )
            .await?;
        let Some(row) = conn.query_opt(&statement, &[&bucket, &name]).await? else {
            return Ok(Target {
                file_size_limit: None,
                allowed_mime_types: None,
                exists: false,
            });
        };
        Ok(Target {
            file_size_limit: row.get(0),
            allowed_mime_types: row.get(1),
            exists: row.get(2),
        })
    }

    /// Evaluates the caller's policies on the row about to be written, then rolls back.
    pub(super) async fn check_write(
        &self,
        caller: &Caller,
        operation: Operation,
        write: &RowWrite<'_>,
        overwrite: bool,
    ) -> Result<(), Error> {
        let tx = self.begin(caller, operation).await?;
        probe_write(&tx, write, overwrite).await
        // Dropping the transaction rolls the probe back.
    }

    /// The policy check of an upload; for an upsert whose target was created or deleted since
    /// it was looked up, checks the other mode instead. Returns whether the write overwrites.
    pub(super) async fn check_settling(
        &self,
        caller: &Caller,
        write: &RowWrite<'_>,
        mut overwrite: bool,
        upsert: bool,
    ) -> Result<bool, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let operation = write_operation(overwrite);
            match self.check_write(caller, operation, write, overwrite).await {
                Ok(()) => return Ok(overwrite),
                Err(error) if upsert && attempts < SETTLE_ATTEMPTS => {
                    match self.settles(&error, write, overwrite).await? {
                        Some(next) => overwrite = next,
                        None => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// [`probe_write`] inside a write's transaction (begun under `write_operation(overwrite)`);
    /// for an upsert whose target was created or deleted concurrently, probes the other mode
    /// instead, under that mode's operation name. Returns whether the write overwrites.
    pub(super) async fn probe_settling(
        &self,
        tx: &Tx,
        write: &RowWrite<'_>,
        mut overwrite: bool,
        upsert: bool,
    ) -> Result<bool, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match probe_write(tx, write, overwrite).await {
                Ok(()) => return Ok(overwrite),
                Err(error) => error,
            };
            let next = match upsert && attempts < SETTLE_ATTEMPTS {
                true => self.settles(&error, write, overwrite).await?,
                false => None,
            };
            let Some(next) = next else {
                return Err(error);
            };
            overwrite = next;
            switch_operation(tx, write_operation(overwrite)).await?;
        }
    }

    /// Whether a failed probe only means the target changed under a concurrent request, and
    /// if so the mode to probe next: an insert that collided becomes an overwrite; an overwrite
    /// refused because its row has gone since becomes an insert (one refused while the row is
    /// still there is final: 403).
    async fn settles(
        &self,
        error: &Error,
        write: &RowWrite<'_>,
        overwrite: bool,
    ) -> Result<Option<bool>, Error> {
        Ok(match error {
            Error::AlreadyExists if !overwrite => Some(true),
            // Refused while the row still exists: final. Gone since: insert it instead.
            Error::Forbidden(_) if overwrite => {
                match self.write_target(write.bucket, write.name).await?.exists {
                    true => None,
                    false => Some(false),
                }
            }
            _ => None,
        })
    }

    /// Commits like [`Storage::commit_write`]; for an upsert whose target changed since the
    /// check (created or deleted by a concurrent request), commits in the other mode instead,
    /// so an upsert never answers 409. Each attempt runs under its own operation name, so the
    /// policies judge what is really done.
    #[allow(clippy::too_many_arguments)]
    async fn commit_settling(
        &self,
        caller: &Caller,
        operation: impl Fn(bool) -> Operation,
        write: &RowWrite<'_>,
        key: &str,
        metadata: &Value,
        mut overwrite: bool,
        upsert: bool,
    ) -> Result<Uuid, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self
                .commit_write(
                    caller,
                    operation(overwrite),
                    write,
                    key,
                    metadata,
                    overwrite,
                )
                .await;
            match result {
                Err(Error::AlreadyExists) if upsert && !overwrite && attempts < 3 => {
                    overwrite = true
                }
                Err(Error::Conflict(_)) if upsert && overwrite && attempts < 3 => overwrite = false,
                other => return other,
            }
        }
    }

    /// Writes the row pointing at `key` and commits, in one round trip.
    async fn commit_write(
        &self,
        caller: &Caller,
        operation: Operation,
        write: &RowWrite<'_>,
        key: &str,
        metadata: &Value,
        overwrite: bool,
    ) -> Result<Uuid, Error> {
        let tx = self.begin(caller, operation).await?;
        if write.signed.is_some() {
            let id = write_row(&tx, write, key, metadata, overwrite).await?;
            tx.commit().await?;
            return Ok(id);
        }
        let id = Uuid::new_v4();
        let rows = tx
            .query_and_commit(row_sql(overwrite), &row_params(write, &key, metadata, &id))
            .await
            .map_err(write_error)?;
        written_id(overwrite, id, &rows)
    }

    /// The `postgres` store's write: probe, stage, chunks and row in ONE transaction as the
    /// caller, so the bytes commit (or vanish) together with the row.
    #[allow(clippy::too_many_arguments)]
    async fn upload_in_database(
        &self,
        caller: &Caller,
        operation: Operation,
        write: &RowWrite<'_>,
        overwrite: bool,
        upsert: bool,
        refusal: Option<Error>,
        mut body: ByteStream,
        meter: &meter::SharedMeter,
        mimetype: &str,
        cache_control: &str,
    ) -> Result<Uuid, Error> {
        let tx = self.begin(caller, operation).await?;
        // The policy check comes before any byte is written, as on every store.
        let overwrite = self.probe_settling(&tx, write, overwrite, upsert).await?;
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let key = new_key();
        let lease = self.limits.upload_lease.as_secs_f64();
        tx.execute("select storage.stage_key($1, $2)", &[&key, &lease])
            .await?;
        let mut chunks = Rechunker::default();
        let mut seq = 0i32;
        while let Some(data) = body.next().await {
            let data = data.map_err(|e| store_error(StoreError::Body(e)))?;
            for chunk in chunks.push(&data) {
                tx.execute(WRITE_CHUNK, &[&key, &seq, &chunk]).await?;
                seq += 1;
            }
        }
        match chunks.finish() {
            Some(last) => tx.execute(WRITE_CHUNK, &[&key, &seq, &last]).await?,
            // An empty object still has its chunk 0.
            None if seq == 0 => {
                tx.execute(WRITE_CHUNK, &[&key, &seq, &Vec::<u8>::new()])
                    .await?
            }
            None => 0,
        };
        let metadata = metadata_json(&meter::finish(meter), mimetype, cache_control);
        let id = write_row_settling(&tx, write, &key, &metadata, overwrite, upsert).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A copy on the `postgres` store, in one transaction as the caller.
    async fn copy_in_database(
        &self,
        caller: &Caller,
        write: &RowWrite<'_>,
        source_key: &str,
        metadata: &Value,
        overwrite: bool,
        refusal: Option<Error>,
    ) -> Result<(Uuid, String), Error> {
        let tx = self.begin(caller, Operation::Copy).await?;
        probe_write(&tx, write, overwrite).await?;
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let key = new_key();
        let lease = self.limits.upload_lease.as_secs_f64();
        tx.execute("select storage.stage_key($1, $2)", &[&key, &lease])
            .await?;
        let copied: i64 = tx
            .query_one("select storage.copy_chunks($1, $2)", &[&source_key, &key])
            .await?
            .get(0);
        if copied == 0 {
            return Err(Error::ObjectNotFound);
        }
        let id = write_row(&tx, write, &key, metadata, overwrite).await?;
        tx.commit().await?;
        Ok((id, key))
    }

    /// Records `key` as staged before any byte is written under it.
    pub(super) async fn stage(&self, key: &str) -> Result<(), Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "insert into storage.byte_journal (key, state, lease_until) \
                 values ($1, 'staged', now() + make_interval(secs => $2))",
            )
            .await?;
        conn.execute(&statement, &[&key, &self.limits.upload_lease.as_secs_f64()])
            .await?;
        Ok(())
    }

    /// Writes `body` under the staged `key`, renewing the key's lease while bytes flow.
    pub(super) async fn stream_into(&self, key: &str, body: ByteStream) -> Result<u64, Error> {
        let lease = self.limits.upload_lease;
        let renew = async {
            let period = (lease / 3).max(Duration::from_millis(200));
            loop {
                tokio::time::sleep(period).await;
                if let Err(error) = self.renew_lease(key).await {
                    tracing::warn!(key, %error, "could not renew an upload's lease");
                }
            }
        };
        tokio::select! {
            written = self.bytes.put(key, body) => written.map_err(store_error),
            () = renew => unreachable!("the renewal loop never ends"),
        }
    }

    async fn renew_lease(&self, key: &str) -> Result<(), Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "update storage.byte_journal set lease_until = now() + make_interval(secs => $2) \
                 where key = $1 and state = 'staged'",
            )
            .await?;
        conn.execute(&statement, &[&key, &self.limits.upload_lease.as_secs_f64()])
            .await?;
        Ok(())
    }

    /// Frees a staged key whose write to the store failed with `error`. When the store itself
    /// failed (unreachable, stalled, 5xx), asking it again would only keep the client waiting
    /// for a second timeout: the key stays staged and the collector frees it once its lease has
    /// run out.
    pub(super) async fn discard_after(&self, key: &str, error: &Error) {
        if let Error::Unavailable(reason) = error {
            tracing::warn!(key, %reason, "a write failed in the byte store; the collector will free its key");
            return;
        }
        self.discard(key).await;
    }

    /// Frees a staged key whose write failed: bytes first, then the journal entry. If either
    /// step fails, the entry stays and the collector finishes the job when the lease ends.
    pub(super) async fn discard(&self, key: &str) {
        if let Err(error) = self.bytes.delete(key).await {
            tracing::warn!(key, %error, "could not delete the bytes of a failed write; the collector will");
            return;
        }
        let result = async {
            let conn = self.db.admin().await?;
            conn.execute(
                "delete from storage.byte_journal where key = $1 and state = 'staged'",
                &[&key],
            )
            .await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(key, %error, "could not clear a discarded key from the journal");
        }
    }
}

const WRITE_CHUNK: &str = "select storage.write_chunk($1, $2, $3)";

/// Inserts the row (no RETURNING: it would check the new row against SELECT policies as well,
/// and an INSERT policy alone must be enough to upload) or switches it to new bytes.
fn row_sql(overwrite: bool) -> &'static str {
    if overwrite {
        "update storage.objects set owner_id = $3, version = $4, metadata = $5, \
             user_metadata = $6, last_accessed_at = now() \
         where bucket_id = $1 and name = $2 and $7::uuid is not null returning id"
    } else {
        "insert into storage.objects \
             (id, bucket_id, name, owner_id, version, metadata, user_metadata) \
         values ($7, $1, $2, $3, $4, $5, $6)"
    }
}

fn row_params<'a>(
    write: &'a RowWrite<'_>,
    key: &'a &'a str,
    metadata: &'a Value,
    id: &'a Uuid,
) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 7] {
    [
        &write.bucket,
        &write.name,
        &write.owner,
        key,
        metadata,
        &write.user_metadata,
        id,
    ]
}

fn written_id(overwrite: bool, id: Uuid, rows: &[Row]) -> Result<Uuid, Error> {
    if !overwrite {
        return Ok(id);
    }
    rows.first().map(|row| row.get(0)).ok_or_else(|| {
        Error::Conflict("the object was deleted or changed while uploading; retry".into())
    })
}

/// Writes the row inside `tx` (no commit). A signed upload first re-checks, in this same
/// transaction, what its token allows against what exists now (see `signed_writes`).
pub(super) async fn write_row(
    tx: &Tx,
    write: &RowWrite<'_>,
    key: &str,
    metadata: &Value,
    overwrite: bool,
) -> Result<Uuid, Error> {
    if let Some(signed) = write.signed {
        super::signed_writes::before_row(tx, signed, write, overwrite).await?;
    }
    let id = Uuid::new_v4();
    let rows = tx
        .query(row_sql(overwrite), &row_params(write, &key, metadata, &id))
        .await
        .map_err(write_error)?;
    written_id(overwrite, id, &rows)
}

/// The operation of a write: an overwrite of an existing object, or the upload of a new one.
pub(super) fn write_operation(overwrite: bool) -> Operation {
    if overwrite {
        Operation::Overwrite
    } else {
        Operation::Upload
    }
}

/// Switches the operation a transaction runs under (what `storage.operation()` answers), when a
/// write changes mode half-way.
async fn switch_operation(tx: &Tx, operation: Operation) -> Result<(), Error> {
    tx.execute(
        "select set_config('storage.operation', $1, true)",
        &[&operation.as_str()],
    )
    .await?;
    Ok(())
}

/// [`write_row`] inside an upload's transaction; for an upsert whose target was created or
/// deleted concurrently, writes in the other mode, under that mode's operation name.
pub(super) async fn write_row_settling(
    tx: &Tx,
    write: &RowWrite<'_>,
    key: &str,
    metadata: &Value,
    mut overwrite: bool,
    upsert: bool,
) -> Result<Uuid, Error> {
    if !upsert {
        return write_row(tx, write, key, metadata, overwrite).await;
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        tx.batch("savepoint row").await?;
        match write_row(tx, write, key, metadata, overwrite).await {
            Err(Error::AlreadyExists) if !overwrite && attempts < SETTLE_ATTEMPTS => {}
            Err(Error::Conflict(_)) if overwrite && attempts < SETTLE_ATTEMPTS => {}
            other => return other,
        }
        tx.batch("rollback to savepoint row").await?;
        overwrite = !overwrite;
        switch_operation(tx, write_operation(overwrite)).await?;
    }
}

/// Runs the caller's policies on the row about to be written, then rolls the probe back (the
/// transaction is left as it was). For a signed upload that overwrites, the signer's policies
/// must allow the overwrite too (see `signed_writes`).
///
/// Policy first, then existence: PostgreSQL checks an INSERT's policies before its unique key,
/// so an insert probe on an existing key answers 409 only to a caller whose insert would be
/// allowed; a refused one answers 409 if the caller may see the row, else the same 403 as for
/// a missing key. A refused overwrite is that 403 as well, whether the row is hidden from the
/// caller or only not theirs to change.
pub(super) async fn probe_write(
    tx: &Tx,
    write: &RowWrite<'_>,
    overwrite: bool,
) -> Result<(), Error> {
    tx.batch("savepoint write_probe").await?;
    let probed = probe_row(tx, write, overwrite).await;
    tx.batch("rollback to savepoint write_probe").await?;
    match probed {
        Err(Error::Forbidden(_)) => {
            if !overwrite && visible(tx, write).await? {
                Err(Error::AlreadyExists)
            } else {
                Err(write_denied())
            }
        }
        Ok(()) if overwrite => match write.signed {
            Some(signed) => super::signed_writes::probe_as_signer(tx, signed, write).await,
            None => Ok(()),
        },
        other => other,
    }
}

/// The probe's statement: the row about to be written, with a placeholder for the metadata
/// and no bytes.
pub(super) async fn probe_row(tx: &Tx, write: &RowWrite<'_>, overwrite: bool) -> Result<(), Error> {
    let placeholder = json!({});
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &write.bucket,
        &write.name,
        &write.owner,
        &placeholder,
        &write.user_metadata,
    ];
    if overwrite {
        let updated = tx
            .execute(
                "update storage.objects set owner_id = $3, metadata = $4, user_metadata = $5 \
                 where bucket_id = $1 and name = $2",
                &params,
            )
            .await
            .map_err(write_error)?;
        if updated == 0 {
            return Err(write_denied());
        }
    } else {
        tx.execute(
            "insert into storage.objects (bucket_id, name, owner_id, metadata, user_metadata) \
             values ($1, $2, $3, $4, $5)",
            &params,
        )
        .await
        .map_err(write_error)?;
    }
    Ok(())
}

/// Whether the caller's policies let it see the row a write targets.
async fn visible(tx: &Tx, write: &RowWrite<'_>) -> Result<bool, Error> {
    Ok(tx
        .query_one(
            "select exists (select 1 from storage.objects where bucket_id = $1 and name = $2)",
            &[&write.bucket, &write.name],
        )
        .await?
        .get(0))
}

/// The row fields a write sets, whatever the operation, and the authority it runs on.
pub(super) struct RowWrite<'a> {
    pub(super) bucket: &'a str,
    pub(super) name: &'a str,
    pub(super) owner: Option<String>,
    pub(super) user_metadata: Option<Value>,
    /// Set when the write is done through a signed upload URL.
    pub(super) signed: Option<&'a SignedUse>,
}

fn metadata_json(measured: &Measured, mimetype: &str, cache_control: &str) -> Value {
    json!({
        "eTag": format!("\"{}\"", measured.md5_hex),
        "size": measured.size,
        "mimetype": mimetype,
        "cacheControl": cache_control,
        "lastModified": iso(Utc::now()),
        "contentLength": measured.size,
        "httpStatusCode": 200,
        "sha256": measured.sha256_hex,
    })
}

impl Storage {
    /// Names the reason an upload's stream failed when the meter knows it better than the
    /// store's error does.
    pub(super) fn body_error(&self, meter: &meter::SharedMeter, error: Error) -> Error {
        if meter::exceeded(meter) {
            too_large()
        } else if meter::stalled(meter) {
            Error::Timeout(format!(
                "no data was received for {} s; the upload was abandoned",
                self.limits.body_idle_timeout.as_secs_f64()
            ))
        } else {
            error
        }
    }
}

pub(super) fn too_large() -> Error {
    Error::PayloadTooLarge("The object exceeded the maximum allowed size".into())
}

/// Database errors of a write, read in the write's terms.
pub(super) fn write_error(error: tokio_postgres::Error) -> Error {
    match error.code() {
        Some(&SqlState::FOREIGN_KEY_VIOLATION) => Error::BucketNotFound,
        // The staged key's lease ran out before the row committed and the collector took it.
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) => Error::Unavailable(
            "the upload's staged bytes expired before it completed; retry".into(),
        ),
        _ => Error::from(error),
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

pub(super) fn store_error(error: StoreError) -> Error {
    match error {
        StoreError::NotFound(key) => Error::Internal(anyhow::anyhow!("bytes missing under {key}")),
        StoreError::Body(e) => Error::InvalidInput(format!("the upload did not complete: {e}")),
        StoreError::Unavailable(reason) => Error::Unavailable(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_rules() {
        let allowed = vec!["image/*".to_string(), "application/pdf".to_string()];
        assert!(mime_allowed(&allowed, "image/png"));
        assert!(mime_allowed(&allowed, "IMAGE/JPEG"));
        assert!(mime_allowed(&allowed, "application/pdf; charset=binary"));
        assert!(!mime_allowed(&allowed, "text/plain"));
        assert!(!mime_allowed(&allowed, "imagex/png"));
        assert!(!mime_allowed(&allowed, "image/png, text/html"));
        assert!(mime_allowed(&["IMAGE/PNG".to_string()], "image/png; a=b"));
        assert!(mime_allowed(&[], "anything/at-all"));
    }

    #[test]
    fn content_type_falls_back_to_the_extension() {
        assert_eq!(
            content_type_for(Some("text/csv"), "a.png").unwrap(),
            "text/csv"
        );
        assert_eq!(content_type_for(None, "a/b.png").unwrap(), "image/png");
        assert_eq!(
            content_type_for(Some(" "), "x.unknown-ext").unwrap(),
            "application/octet-stream"
        );
        assert!(matches!(
            content_type_for(Some("image/png, text/html"), "a.png"),
            Err(Error::InvalidInput(_))
        ));
    }
}
