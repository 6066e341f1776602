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

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::media_type::MediaType;
pub use super::signed_writes::SignedUse;
use super::{Caller, Error, Operation, Storage};
pub use read::READ_OBJECT;
pub use write_protocol::{INSERT_ROW, PROBE_INSERT, STAGE_KEY};

use crate::bytes::{ByteStream, StoreError};

mod copy_move;
mod read;
mod upload;
mod write_protocol;

pub(super) use write_protocol::{
    RowWrite, probe_row, probe_write, write_operation, write_row, write_row_settling,
};

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
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
}

/// An object row as clients see it in listings and delete results.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
        // Read from the borrowed value: no copy of the JSON tree per request.
        self.metadata
            .as_ref()
            .and_then(|m| serde::Deserialize::deserialize(m).ok())
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
    /// Representation headers kept with the object and served back (S3 keeps them).
    pub headers: ContentHeaders,
}

/// `Content-Disposition` and `Content-Encoding` as given at upload, kept in `metadata`
/// (`contentDisposition`, `contentEncoding`) when present.
#[derive(Debug, Clone, Default)]
pub struct ContentHeaders {
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
}

impl ContentHeaders {
    pub(super) fn add_to(&self, metadata: &mut Value) {
        if let Some(value) = &self.content_disposition {
            metadata["contentDisposition"] = serde_json::json!(value);
        }
        if let Some(value) = &self.content_encoding {
            metadata["contentEncoding"] = serde_json::json!(value);
        }
    }
}

/// Where a write landed.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: Uuid,
    pub bucket: String,
    pub name: String,
    /// What an upload's body measured (size and digests), so fronts need not hash it again;
    /// `None` for copies and moves.
    pub measured: Option<super::Measured>,
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
    /// The copy's representation headers: the source's, some of them given anew, or all.
    pub headers: CopyHeaders,
}

/// What a copy's representation headers (type, cache control, disposition, encoding) become.
/// A type given anew must be one valid media type; the copy's type, whichever it is, must be
/// one the destination bucket allows, as for an upload.
#[derive(Debug, Clone, Default)]
pub enum CopyHeaders {
    /// The source's, unchanged.
    #[default]
    Source,
    /// The source's, with the given ones in their place (Supabase's copy `metadata` field).
    Amend {
        cache_control: Option<String>,
        content_type: Option<String>,
    },
    /// All set anew, as an upload sets them (S3's REPLACE directive): an absent type is guessed
    /// from the destination's name, an absent cache control is `no-cache`, and disposition and
    /// encoding are kept only when given.
    Replace {
        content_type: Option<String>,
        cache_control: Option<String>,
        headers: ContentHeaders,
    },
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
