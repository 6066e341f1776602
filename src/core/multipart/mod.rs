//! Multipart uploads: the machinery S3's multipart API and TUS resumable uploads share.
//!
//! An upload is a row of `storage.s3_multipart_uploads`; each part is an immutable byte key,
//! staged in the journal before its bytes are written and named by a row of
//! `storage.s3_multipart_uploads_parts` once written. Completing an upload copies no bytes: the
//! object's row points at a *manifest* key whose `storage.object_segments` list the parts in
//! order, and reads stream them one after the other (see `segments`). Its cost grows with the
//! number of parts, never with their size.
//!
//! Who may do what:
//! - creating an upload is checked as the final write would be (`storage.upload`, or
//!   `storage.overwrite` when it replaces an object), so a caller who may not write the object
//!   may not start uploading it;
//! - the caller who created an upload (same role and `sub`) may continue, list, abort and
//!   complete it; anyone else needs an RLS policy on `storage.s3_multipart_uploads` that shows
//!   them its row under `storage.multipart` (service_role sees every row);
//! - completing writes the object's row as the caller, in one transaction, so the policies are
//!   evaluated again on what is really written.
//!
//! The upload tables are the server's bookkeeping: the server writes them with its own role.

mod complete;
mod list;
mod parts;
mod segments;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::names::validate_object_name;
use super::objects::{ContentHeaders, RowWrite, content_type_for, too_large, write_error};
use super::{Caller, Error, Operation, Storage};

pub use complete::{CompletePart, CompletedUpload};
pub use list::{ListUploads, UploadList};
pub use parts::{PartInfo, PartList, PartSource};
pub(super) use segments::EXPAND_MANIFESTS;
pub use segments::{Segment, is_manifest};

/// Highest part number (S3's limit).
pub const MAX_PART_NUMBER: u32 = 10_000;

/// A request to start a multipart upload.
#[derive(Debug, Clone, Default)]
pub struct CreateMultipart {
    pub bucket: String,
    pub name: String,
    /// The object's content type, validated at creation; absent: guessed from the name.
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub user_metadata: Option<Value>,
    /// May the completed upload replace an existing object (`storage.overwrite`)? S3 always
    /// replaces; TUS only with `x-upsert`.
    pub upsert: bool,
    /// The object's `owner_id` when it is not the caller's `sub` (a signed upload belongs to its
    /// signer); `None`: the caller's.
    pub owner: Option<String>,
    /// The total length when the client announces it (TUS `Upload-Length`): refused at once
    /// when over the limits, and no part may go past it.
    pub declared_length: Option<u64>,
    /// Content-Disposition and Content-Encoding for the object (S3 keeps them).
    pub headers: ContentHeaders,
    /// The algorithm of the parts' checksums (S3's `x-amz-checksum-algorithm`), kept with the
    /// upload for the front that asked for it.
    pub checksum_algorithm: Option<String>,
}

/// An upload in progress.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    pub id: String,
    pub bucket: String,
    pub name: String,
    /// The future object's `owner_id`.
    pub owner: Option<String>,
    pub content_type: String,
    pub cache_control: String,
    pub user_metadata: Option<Value>,
    pub upsert: bool,
    /// Bytes in the parts uploaded so far (the latest of each part number).
    pub size: u64,
    pub created_at: DateTime<Utc>,
    /// When the collector removes the upload if no part arrives before then.
    pub expires_at: Option<DateTime<Utc>>,
    /// The object's total length when the client announced it (TUS `Upload-Length`); appended
    /// parts may not go past it.
    pub declared_length: Option<u64>,
    /// Content-Disposition and Content-Encoding for the completed object.
    pub headers: ContentHeaders,
    /// The algorithm of the parts' checksums, when one was asked for at creation.
    pub checksum_algorithm: Option<String>,
    /// The manifest key the completed object will have.
    version: String,
    caller_role: Option<String>,
    caller_sub: Option<String>,
}

/// Creates an upload row; `$12` is the expiry in seconds.
const INSERT_UPLOAD: &str = "insert into storage.s3_multipart_uploads \
         (id, upload_signature, bucket_id, key, version, owner_id, user_metadata, caller_role, \
          caller_sub, content_type, cache_control, upsert, expires_at, declared_length, \
          content_disposition, content_encoding, checksum_algorithm) \
     values ($1, '', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             now() + make_interval(secs => $12), $13, $14, $15, $16) \
     returning id, bucket_id, key, version, owner_id, user_metadata, created_at, \
         in_progress_size, caller_role, caller_sub, content_type, cache_control, upsert, \
         expires_at, declared_length, content_disposition, content_encoding, checksum_algorithm";

/// An upload that has not expired.
const SELECT_UPLOAD: &str = "select id, bucket_id, key, version, owner_id, user_metadata, \
         created_at, in_progress_size, caller_role, caller_sub, content_type, cache_control, \
         upsert, expires_at, declared_length, content_disposition, content_encoding, \
         checksum_algorithm \
     from storage.s3_multipart_uploads \
     where id = $1 and (expires_at is null or expires_at > now())";

/// Releases the keys of every part of a locked upload.
const RELEASE_PARTS: &str = "insert into storage.byte_journal (key, state) \
     select version, 'released' from storage.s3_multipart_uploads_parts where upload_id = $1 \
     on conflict (key) do nothing";

impl MultipartUpload {
    fn from_row(row: &Row) -> Self {
        let key: String = row.get("key");
        let content_type: Option<String> = row.get("content_type");
        let cache_control: Option<String> = row.get("cache_control");
        let size: i64 = row.get("in_progress_size");
        Self {
            id: row.get("id"),
            bucket: row.get("bucket_id"),
            // Validated (or guessed from the name) when the upload was created.
            content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
            name: key,
            owner: row.get("owner_id"),
            cache_control: cache_control.unwrap_or_else(|| "no-cache".into()),
            user_metadata: row.get("user_metadata"),
            upsert: row.get("upsert"),
            size: u64::try_from(size).unwrap_or(0),
            created_at: row.get("created_at"),
            expires_at: row.get("expires_at"),
            declared_length: row
                .get::<_, Option<i64>>("declared_length")
                .map(|l| l.max(0) as u64),
            // Not every query of uploads (the listing) reads these.
            headers: ContentHeaders {
                content_disposition: row.try_get("content_disposition").ok().flatten(),
                content_encoding: row.try_get("content_encoding").ok().flatten(),
            },
            checksum_algorithm: row.try_get("checksum_algorithm").ok().flatten(),
            version: row.get("version"),
            caller_role: row.get("caller_role"),
            caller_sub: row.get("caller_sub"),
        }
    }

    /// Whether `caller` is who started the upload.
    fn started_by(&self, caller: &Caller) -> bool {
        self.caller_role.as_deref() == Some(caller.identity.role.as_str())
            && self.caller_sub == caller.identity.sub()
    }
}

fn upload_id() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// Database errors of the upload functions (SQLSTATE P0002: the upload is gone).
fn upload_error(error: tokio_postgres::Error) -> Error {
    match error.code() {
        Some(&tokio_postgres::error::SqlState::NO_DATA_FOUND) => Error::NoSuchUpload,
        _ => write_error(error),
    }
}

impl Storage {
    /// Starts a multipart upload of `create.bucket`/`create.name`, refused unless the caller
    /// could write that object now. Nothing is written to the byte store.
    pub async fn create_multipart(
        &self,
        caller: &Caller,
        create: CreateMultipart,
    ) -> Result<MultipartUpload, Error> {
        validate_object_name(&create.name)?;
        let mimetype = content_type_for(create.content_type.as_deref(), &create.name)?;
        let target = self.write_target(&create.bucket, &create.name).await?;
        // Policy first, as for an upload: the bucket's rules (an announced length over its
        // limit, a type it refuses) are told only to a caller its policies allow, and an
        // existing key is probed as an insert, so it answers 409 only to a caller who may see
        // or insert it (see `probe_write`); everyone else gets the one write-denied 403.
        let refusal = self.limit_refusal(&target, create.declared_length, &mimetype);
        let write = RowWrite {
            bucket: &create.bucket,
            name: &create.name,
            owner: create.owner.clone().or_else(|| caller.owner()),
            user_metadata: create.user_metadata.clone(),
            signed: None,
        };
        let overwrite = target.exists && create.upsert;
        self.check_settling(caller, &write, overwrite, create.upsert)
            .await?;
        if let Some(refusal) = refusal {
            return Err(refusal);
        }

        let declared = create
            .declared_length
            .map(|l| i64::try_from(l).map_err(|_| too_large()))
            .transpose()?;
        let id = upload_id();
        let conn = self.db.admin().await?;
        let statement = conn.prepare_cached(INSERT_UPLOAD).await?;
        let expiry = self.limits.multipart_expiry.as_secs_f64();
        let row = conn
            .query_one(
                &statement,
                &[
                    &id,
                    &create.bucket,
                    &create.name,
                    &segments::manifest_key_for_upload(&id),
                    &write.owner,
                    &create.user_metadata,
                    &caller.identity.role,
                    &caller.identity.sub(),
                    &mimetype,
                    &create.cache_control,
                    &create.upsert,
                    &expiry,
                    &declared,
                    &create.headers.content_disposition,
                    &create.headers.content_encoding,
                    &create.checksum_algorithm,
                ],
            )
            .await
            .map_err(write_error)?;
        Ok(MultipartUpload::from_row(&row))
    }

    /// The size of the object upload `upload_id` completed into, if that object is still the
    /// one it wrote and the caller may see it (operation `storage.info`); `None` otherwise.
    pub async fn completed_upload_size(
        &self,
        caller: &Caller,
        bucket: &str,
        name: &str,
        upload_id: &str,
    ) -> Result<Option<u64>, Error> {
        let row = match self.object(caller, Operation::Info, bucket, name).await {
            Ok(row) => row,
            Err(Error::ObjectNotFound) => return Ok(None),
            Err(error) => return Err(error),
        };
        let completed =
            row.version.as_deref() == Some(segments::manifest_key_for_upload(upload_id).as_str());
        Ok(completed.then(|| row.size()))
    }

    /// An upload in progress, if the caller may use it (see the module documentation).
    pub async fn multipart_upload(
        &self,
        caller: &Caller,
        upload_id: &str,
    ) -> Result<MultipartUpload, Error> {
        let conn = self.db.admin().await?;
        let statement = conn.prepare_cached(SELECT_UPLOAD).await?;
        let row = conn
            .query_opt(&statement, &[&upload_id])
            .await?
            .ok_or(Error::NoSuchUpload)?;
        drop(conn);
        let upload = MultipartUpload::from_row(&row);
        if upload.started_by(caller) {
            return Ok(upload);
        }
        // Someone else's upload: only if the policies show its row to the caller.
        let tx = self.begin(caller, Operation::Multipart).await?;
        let visible = tx
            .query_and_commit(
                "select 1 from storage.s3_multipart_uploads where id = $1",
                &[&upload_id],
            )
            .await?;
        if visible.is_empty() {
            return Err(Error::Forbidden(
                "the multipart upload was started by another caller".into(),
            ));
        }
        Ok(upload)
    }

    /// Abandons an upload and frees its parts (after the grace period, like replaced bytes).
    pub async fn abort_multipart(&self, caller: &Caller, upload_id: &str) -> Result<(), Error> {
        self.multipart_upload(caller, upload_id).await?;
        let tx = self.db.admin_tx().await?;
        let locked = tx
            .query_opt(
                "select 1 from storage.s3_multipart_uploads where id = $1 for update",
                &[&upload_id],
            )
            .await?;
        if locked.is_none() {
            return Err(Error::NoSuchUpload);
        }
        tx.execute(RELEASE_PARTS, &[&upload_id]).await?;
        // The parts go with it (on delete cascade).
        tx.execute(
            "delete from storage.s3_multipart_uploads where id = $1",
            &[&upload_id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets the total length of an upload created without one (TUS `Upload-Defer-Length`):
    /// refused when over the limits, below what was already uploaded, or when a length is set
    /// already ([`Error::Conflict`]).
    pub async fn declare_multipart_length(
        &self,
        caller: &Caller,
        upload_id: &str,
        length: u64,
    ) -> Result<MultipartUpload, Error> {
        let upload = self.multipart_upload(caller, upload_id).await?;
        let target = self.write_target(&upload.bucket, &upload.name).await?;
        if length > self.effective_limit(&target) {
            return Err(too_large());
        }
        let length = i64::try_from(length).map_err(|_| too_large())?;
        let conn = self.db.admin().await?;
        let row = conn
            .query_opt(
                "update storage.s3_multipart_uploads set declared_length = $2 \
                 where id = $1 and declared_length is null and in_progress_size <= $2 \
                 returning id, bucket_id, key, version, owner_id, user_metadata, created_at, \
                     in_progress_size, caller_role, caller_sub, content_type, cache_control, \
                     upsert, expires_at, declared_length",
                &[&upload_id, &length],
            )
            .await?
            .ok_or_else(|| {
                Error::Conflict(
                    "the upload's length is already set, or is below what was uploaded".into(),
                )
            })?;
        Ok(MultipartUpload::from_row(&row))
    }

    /// Removes uploads past their expiry, releasing their parts. Returns how many went.
    pub(super) async fn expire_multipart_uploads(&self) -> Result<u64, Error> {
        const BATCH: i64 = 100;
        let mut expired = 0;
        loop {
            let tx = self.db.admin_tx().await?;
            let ids: Vec<String> = tx
                .query(
                    "select id from storage.s3_multipart_uploads \
                     where expires_at < now() \
                     order by expires_at \
                     limit $1 \
                     for update skip locked",
                    &[&BATCH],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if ids.is_empty() {
                return Ok(expired);
            }
            tx.execute(
                "insert into storage.byte_journal (key, state) \
                 select version, 'released' from storage.s3_multipart_uploads_parts \
                 where upload_id = any($1) \
                 on conflict (key) do nothing",
                &[&ids],
            )
            .await?;
            tx.execute(
                "delete from storage.s3_multipart_uploads where id = any($1)",
                &[&ids],
            )
            .await?;
            tx.commit().await?;
            expired += ids.len() as u64;
            if (ids.len() as i64) < BATCH {
                return Ok(expired);
            }
        }
    }
}
