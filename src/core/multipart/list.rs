//! ListMultipartUploads: the uploads in progress in a bucket, as the caller's policies show them
//! (under `storage.multipart`; a shipped policy shows callers with a `sub` their own uploads),
//! in (name, creation) order, optionally rolled up into common prefixes at a delimiter.

use super::MultipartUpload;
use crate::core::{Caller, Error, Operation, Storage};

/// Which uploads [`Storage::list_multipart_uploads`] returns: those of `bucket` whose name
/// starts with `prefix`, after (`key_marker`, `upload_id_marker`).
#[derive(Debug, Clone, Default)]
pub struct ListUploads {
    pub bucket: String,
    pub prefix: Option<String>,
    /// Names that continue past the prefix with this text are returned once, as the common
    /// prefix up to and including it, instead of one by one.
    pub delimiter: Option<String>,
    /// Start after this name (or, with `upload_id_marker`, after that upload of this name). A
    /// marker that is a common prefix skips every name under it.
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    /// Most entries (uploads plus common prefixes), 1..=1000.
    pub max: usize,
}

/// One page of [`Storage::list_multipart_uploads`].
#[derive(Debug, Clone, Default)]
pub struct UploadList {
    pub uploads: Vec<MultipartUpload>,
    /// With a delimiter: the rolled-up prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// More entries follow; the next page starts after `next_key_marker` and
    /// `next_upload_id_marker`.
    pub truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// The uploads of a bucket in (name, creation) order, as RLS shows them to the caller.
const LIST_UPLOADS: &str = "select u.id, u.bucket_id, u.key, u.version, u.owner_id, \
         u.user_metadata, u.created_at, u.in_progress_size, u.caller_role, u.caller_sub, \
         u.content_type, u.cache_control, u.upsert, u.expires_at, u.declared_length \
     from storage.s3_multipart_uploads u \
     where u.bucket_id = $1 \
       and starts_with(u.key, $2) \
       and (u.expires_at is null or u.expires_at > now()) \
       and ($3::text is null \
            or u.key > $3 \
            or (u.key = $3 and $4::text is not null \
                and (u.created_at, u.id) > (select m.created_at, m.id \
                                            from storage.s3_multipart_uploads m \
                                            where m.id = $4))) \
     order by u.key, u.created_at, u.id \
     limit $5";

/// A marker past every name that starts with `prefix` (names compare bytewise).
fn past(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

impl Storage {
    /// The uploads in progress in a bucket that the caller's policies show it.
    pub async fn list_multipart_uploads(
        &self,
        caller: &Caller,
        list: &ListUploads,
    ) -> Result<UploadList, Error> {
        let conn = self.db.admin().await?;
        let bucket = conn
            .query_opt(
                "select 1 from storage.buckets where id = $1",
                &[&list.bucket],
            )
            .await?;
        drop(conn);
        if bucket.is_none() {
            return Err(Error::BucketNotFound);
        }
        let max = list.max.clamp(1, 1000);
        let prefix = list.prefix.clone().unwrap_or_default();
        let delimiter = list.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut marker = list.key_marker.clone();
        let mut id_marker = list.upload_id_marker.clone().filter(|_| marker.is_some());
        if let (Some(d), Some(m)) = (delimiter, &marker)
            && m.starts_with(&prefix)
            && m.ends_with(d)
            && m.len() > prefix.len()
        {
            marker = Some(past(m));
            id_marker = None;
        }
        let mut page = UploadList::default();
        // One query per run of uploads; a common prefix ends a run and the next query starts
        // past it, so a prefix holding many uploads costs one row, not all of them.
        'runs: loop {
            let limit = (max - page.uploads.len() - page.common_prefixes.len()) as i64 + 1;
            let tx = self.begin(caller, Operation::Multipart).await?;
            let rows = tx
                .query_and_commit(
                    LIST_UPLOADS,
                    &[&list.bucket, &prefix, &marker, &id_marker, &limit],
                )
                .await?;
            let exhausted = (rows.len() as i64) < limit;
            for row in &rows {
                let upload = MultipartUpload::from_row(row);
                if page.uploads.len() + page.common_prefixes.len() == max {
                    page.truncated = true;
                    break 'runs;
                }
                let rolled = delimiter.and_then(|d| {
                    let rest = upload.name.get(prefix.len()..)?;
                    let at = rest.find(d)?;
                    Some(upload.name[..prefix.len() + at + d.len()].to_string())
                });
                if let Some(common) = rolled {
                    marker = Some(past(&common));
                    id_marker = None;
                    page.next_key_marker = Some(common.clone());
                    page.next_upload_id_marker = None;
                    page.common_prefixes.push(common);
                    continue 'runs;
                }
                marker = Some(upload.name.clone());
                id_marker = Some(upload.id.clone());
                page.next_key_marker = marker.clone();
                page.next_upload_id_marker = id_marker.clone();
                page.uploads.push(upload);
            }
            if exhausted {
                break;
            }
        }
        if !page.truncated {
            page.next_key_marker = None;
            page.next_upload_id_marker = None;
        }
        Ok(page)
    }
}
