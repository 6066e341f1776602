//! Completing an upload: the parts are checked, then ONE transaction as the caller locks the
//! upload, turns the chosen parts into the segments of a manifest key and writes the object's
//! row pointing at it (`storage.upload`, or `storage.overwrite` when it replaces an object).
//! No byte is read or copied.
//!
//! The object's metadata: `size` is the sum of the parts; `eTag` is S3's multipart ETag, the MD5
//! of the parts' binary MD5s followed by `-N` (N parts); `sha256` is left out, since the SHA-256
//! of the whole object cannot be known without reading its bytes; `sha256Parts` holds, in the
//! same `-N` form, the SHA-256 of the parts' binary SHA-256s (S3's composite checksum, in hex).

use std::collections::HashMap;

use chrono::Utc;
use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{MAX_PART_NUMBER, upload_error};
use crate::core::objects::{RowWrite, iso, write_operation, write_row_settling};
use crate::core::{Caller, Error, Storage};

/// A part named in a completion request.
#[derive(Debug, Clone)]
pub struct CompletePart {
    pub part_number: u32,
    /// The ETag the client got for the part (quotes optional); `None`: not checked.
    pub etag: Option<String>,
}

/// The object a completed upload became.
#[derive(Debug, Clone)]
pub struct CompletedUpload {
    pub id: Uuid,
    pub bucket: String,
    pub name: String,
    /// The quoted multipart ETag, `"<md5 of the part md5s>-<number of parts>"`.
    pub etag: String,
    pub size: u64,
    /// The object's `version` (its manifest key).
    pub version: String,
    pub metadata: Value,
}

/// A part as stored, as far as completion needs it.
struct Stored {
    size: i64,
    etag: String,
    sha256: Option<String>,
}

fn bare_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

/// Checks the requested list against the stored parts; returns the parts chosen, in order.
fn choose<'a>(
    requested: &[CompletePart],
    stored: &'a HashMap<i32, Stored>,
    min_part_size: u64,
) -> Result<Vec<&'a Stored>, Error> {
    let mut chosen = Vec::with_capacity(requested.len());
    for (i, part) in requested.iter().enumerate() {
        let found = stored.get(&(part.part_number as i32)).ok_or_else(|| {
            Error::InvalidPart(format!(
                "part {} was not uploaded (or was uploaded to another upload)",
                part.part_number
            ))
        })?;
        if let Some(etag) = &part.etag
            && bare_etag(etag) != bare_etag(&found.etag)
        {
            return Err(Error::InvalidPart(format!(
                "the ETag given for part {} does not match the uploaded part's",
                part.part_number
            )));
        }
        let last = i + 1 == requested.len();
        if !last && (found.size.max(0) as u64) < min_part_size {
            return Err(Error::EntityTooSmall(format!(
                "part {} has {} bytes; every part but the last must have at least {} bytes",
                part.part_number, found.size, min_part_size
            )));
        }
        chosen.push(found);
    }
    Ok(chosen)
}

/// `<hex of hash(binary part digests)>-N`.
fn composite<D: Digest>(parts: impl Iterator<Item = Option<Vec<u8>>>) -> Option<String> {
    let mut hash = D::new();
    let mut n = 0;
    for digest in parts {
        hash.update(digest?);
        n += 1;
    }
    Some(format!("{}-{n}", hex::encode(hash.finalize())))
}

/// The checks a client's part list must pass before anything is looked up.
fn check_requested(parts: &[CompletePart]) -> Result<(), Error> {
    if parts.is_empty() {
        return Err(Error::InvalidPart(
            "a multipart upload completes with at least one part".into(),
        ));
    }
    if parts
        .iter()
        .any(|p| !(1..=MAX_PART_NUMBER).contains(&p.part_number))
    {
        return Err(Error::InvalidPart(format!(
            "part numbers are between 1 and {MAX_PART_NUMBER}"
        )));
    }
    if parts
        .windows(2)
        .any(|w| w[0].part_number >= w[1].part_number)
    {
        return Err(Error::InvalidPartOrder);
    }
    Ok(())
}

impl Storage {
    /// Completes an upload with the configured minimum part size
    /// ([`crate::core::Limits::multipart_min_part_size`]).
    pub async fn complete_multipart(
        &self,
        caller: &Caller,
        upload_id: &str,
        parts: &[CompletePart],
    ) -> Result<CompletedUpload, Error> {
        let min = self.limits.multipart_min_part_size;
        self.complete_multipart_with(caller, upload_id, parts, min)
            .await
    }

    /// As [`Self::complete_multipart`], with the object's checksum (derived by the front from
    /// the parts' checksums) kept in its metadata as `checksum`.
    pub async fn complete_multipart_with_checksum(
        &self,
        caller: &Caller,
        upload_id: &str,
        parts: &[CompletePart],
        checksum: Option<Value>,
    ) -> Result<CompletedUpload, Error> {
        check_requested(parts)?;
        let min = self.limits.multipart_min_part_size;
        self.complete(caller, upload_id, Some(parts), min, checksum)
            .await
    }

    /// Completes an upload from `parts` (ascending part numbers), every part but the last at
    /// least `min_part_size` bytes. Parts uploaded but not named are released.
    pub async fn complete_multipart_with(
        &self,
        caller: &Caller,
        upload_id: &str,
        parts: &[CompletePart],
        min_part_size: u64,
    ) -> Result<CompletedUpload, Error> {
        check_requested(parts)?;
        self.complete(caller, upload_id, Some(parts), min_part_size, None)
            .await
    }

    /// Completes an upload from every part uploaded, in part-number order (TUS, whose parts
    /// are its PATCHes), every part but the last at least `min_part_size` bytes.
    pub async fn complete_multipart_uploaded(
        &self,
        caller: &Caller,
        upload_id: &str,
        min_part_size: u64,
    ) -> Result<CompletedUpload, Error> {
        self.complete(caller, upload_id, None, min_part_size, None)
            .await
    }

    /// `parts`: the parts the client named (already checked); `None`: every part uploaded.
    async fn complete(
        &self,
        caller: &Caller,
        upload_id: &str,
        parts: Option<&[CompletePart]>,
        min_part_size: u64,
        checksum: Option<Value>,
    ) -> Result<CompletedUpload, Error> {
        let upload = self.multipart_upload(caller, upload_id).await?;
        let target = self.write_target(&upload.bucket, &upload.name).await?;
        let write = RowWrite {
            bucket: &upload.bucket,
            name: &upload.name,
            owner: upload.owner.clone(),
            user_metadata: upload.user_metadata.clone(),
            signed: None,
        };
        // Policy first, as for an upload: the policies may have changed since the upload was
        // created, and a caller they now refuse gets the one write-denied 403 whatever exists
        // or the bucket's rules say; an existing key without upsert is probed as an insert (409
        // only to a caller who may see or insert it). The bucket's rules come after.
        let tx = self
            .begin(caller, write_operation(target.exists && upload.upsert))
            .await?;
        let overwrite = self
            .probe_settling(&tx, &write, target.exists && upload.upsert, upload.upsert)
            .await?;
        if let Some(refusal) = self.limit_refusal(&target, None, &upload.content_type) {
            return Err(refusal);
        }
        let stored: HashMap<i32, Stored> = tx
            .query(
                "select part_number, size, etag, sha256 from storage.multipart_lock($1)",
                &[&upload_id],
            )
            .await
            .map_err(upload_error)?
            .iter()
            .map(|row| {
                let stored = Stored {
                    size: row.get(1),
                    etag: row.get(2),
                    sha256: row.get(3),
                };
                (row.get::<_, i32>(0), stored)
            })
            .collect();
        let all: Vec<CompletePart>;
        let parts = match parts {
            Some(parts) => parts,
            None => {
                let mut numbers: Vec<i32> = stored.keys().copied().collect();
                numbers.sort_unstable();
                all = numbers
                    .into_iter()
                    .map(|n| CompletePart {
                        part_number: n as u32,
                        etag: None,
                    })
                    .collect();
                if all.is_empty() {
                    return Err(Error::InvalidPart("the upload has no parts".into()));
                }
                &all
            }
        };
        let chosen = choose(parts, &stored, min_part_size)?;
        let size: u64 = chosen.iter().map(|p| p.size.max(0) as u64).sum();
        if let Some(refusal) = self.limit_refusal(&target, Some(size), &upload.content_type) {
            return Err(refusal);
        }
        let etag = composite::<Md5>(chosen.iter().map(|p| hex::decode(bare_etag(&p.etag)).ok()))
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a stored part ETag is not an MD5")))?;
        let sha256_parts = composite::<Sha256>(
            chosen
                .iter()
                .map(|p| p.sha256.as_deref().and_then(|h| hex::decode(h).ok())),
        );
        let mut metadata = json!({
            "eTag": format!("\"{etag}\""),
            "size": size,
            "mimetype": upload.content_type,
            "cacheControl": upload.cache_control,
            "lastModified": iso(Utc::now()),
            "contentLength": size,
            "httpStatusCode": 200,
            "sha256Parts": sha256_parts,
        });
        upload.headers.add_to(&mut metadata);
        if let Some(checksum) = checksum {
            metadata["checksum"] = checksum;
        }
        let numbers: Vec<i32> = parts.iter().map(|p| p.part_number as i32).collect();
        let lease = self.limits.upload_lease.as_secs_f64();
        tx.query_one(
            "select storage.multipart_finish($1, $2, $3, $4)",
            &[&upload_id, &upload.version, &numbers, &lease],
        )
        .await
        .map_err(upload_error)?;
        let id = write_row_settling(
            &tx,
            &write,
            &upload.version,
            &metadata,
            overwrite,
            upload.upsert,
        )
        .await?;
        tx.commit().await?;
        Ok(CompletedUpload {
            id,
            bucket: upload.bucket,
            name: upload.name,
            etag: format!("\"{etag}\""),
            size,
            version: upload.version,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_is_the_md5_of_the_part_md5s() {
        // Two parts "a" and "b": md5("a") = 0cc175b9..., md5("b") = 92eb5ffe...
        let a = Md5::digest(b"a").to_vec();
        let b = Md5::digest(b"b").to_vec();
        let mut both = a.clone();
        both.extend(&b);
        let expected = format!("{}-2", hex::encode(Md5::digest(&both)));
        assert_eq!(
            composite::<Md5>([Some(a), Some(b)].into_iter()).unwrap(),
            expected
        );
    }

    #[test]
    fn etags_compare_without_quotes_or_case() {
        assert_eq!(bare_etag("\"ABC\""), bare_etag("abc"));
    }
}
