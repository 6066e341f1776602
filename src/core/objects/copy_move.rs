//! Copy and move: a copy writes new bytes (or shares segments) under a new row; a move is one
//! `UPDATE` as the caller. Both land in their destination bucket under its rules.

use chrono::Utc;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::write_protocol::{RowWrite, probe_write, write_row};
use super::{
    CopyHeaders, CopyRequest, ObjectMetadata, ObjectRow, Stored, UNKNOWN_TYPE, content_type_for,
    iso, store_error, write_denied,
};
use crate::bytes::new_key;
use crate::core::names::validate_object_name;
use crate::core::{Caller, Error, Operation, Storage};

impl Storage {
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
            measured: None,
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
        match &copy.headers {
            CopyHeaders::Source => {}
            CopyHeaders::Amend {
                cache_control,
                content_type,
            } => {
                if let Some(cache_control) = cache_control {
                    metadata["cacheControl"] = json!(cache_control);
                }
                if let Some(content_type) = content_type {
                    metadata["mimetype"] =
                        json!(content_type_for(Some(content_type), &copy.destination)?);
                }
            }
            CopyHeaders::Replace {
                content_type,
                cache_control,
                headers,
            } => {
                metadata["cacheControl"] = json!(cache_control.as_deref().unwrap_or("no-cache"));
                if let Some(map) = metadata.as_object_mut() {
                    map.remove("contentDisposition");
                    map.remove("contentEncoding");
                }
                headers.add_to(&mut metadata);
                metadata["mimetype"] = json!(content_type_for(
                    content_type.as_deref(),
                    &copy.destination
                )?);
            }
        }
        // Whatever set the copy's type (the source, or a type given with the copy), it is stored
        // only if it is one valid media type, as for an upload.
        let mimetype = match metadata.get("mimetype").and_then(Value::as_str) {
            Some(mimetype) => content_type_for(Some(mimetype), &copy.destination)?,
            None => UNKNOWN_TYPE.to_string(),
        };
        // A copy lands in its destination bucket like an upload: the bucket's size limit and
        // types (of the copy's own type) apply, told only once the policies allow the write.
        let refusal = self.limit_refusal(&target, Some(source.size()), &mimetype);
        let (id, key) = if crate::core::multipart::is_manifest(&source_key) {
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
                    self.discard_after_commit(&key, &error).await;
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
}
