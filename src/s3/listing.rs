//! Listings: ListObjects, ListObjectsV2 and ListObjectVersions (an unversioned bucket: every
//! object is its own latest version, "null"), all `storage.list` through the core's walk.

use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::buckets::owner_of;
use super::error::{bucket_error, s3};
use super::handlers::{Handlers, caller};
use super::objects::{etag_of, last_modified_of};
use crate::core::Caller;
use crate::core::listing::{Entry, ListS3, MAX_S3_KEYS, S3Page};

/// What `encoding-type=url` escapes: everything but unreserved characters and `/`.
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Applies `encoding-type=url` to a key or prefix when asked.
struct Encoding(bool);

impl Encoding {
    fn of(encoding: Option<&EncodingType>) -> S3Result<Self> {
        match encoding.map(|e| e.as_str()) {
            None => Ok(Self(false)),
            Some(e) if e.eq_ignore_ascii_case(EncodingType::URL) => Ok(Self(true)),
            Some(other) => Err(s3(
                S3ErrorCode::InvalidArgument,
                format!("Invalid Encoding Method specified in Request: {other}"),
            )),
        }
    }

    fn apply(&self, text: &str) -> String {
        match self.0 {
            true => utf8_percent_encode(text, KEY_ESCAPES).to_string(),
            false => text.to_string(),
        }
    }

    fn opt(&self, text: Option<&str>) -> Option<String> {
        text.map(|t| self.apply(t))
    }
}

fn delimited(delimiter: Option<&str>) -> S3Result<bool> {
    match delimiter {
        None | Some("") => Ok(false),
        Some("/") => Ok(true),
        Some(other) => Err(s3(
            S3ErrorCode::InvalidArgument,
            format!("only '/' is supported as a delimiter, not {other:?}"),
        )),
    }
}

fn max_keys(given: Option<i32>) -> S3Result<i64> {
    match given {
        None => Ok(MAX_S3_KEYS),
        Some(n) if n < 0 => Err(s3(
            S3ErrorCode::InvalidArgument,
            "max-keys must not be negative",
        )),
        Some(n) => Ok(i64::from(n).min(MAX_S3_KEYS)),
    }
}

/// A continuation token: where the next page starts, opaque to clients.
fn token_for(after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after)
}

fn after_token(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidArgument,
                "The continuation token provided is incorrect",
            )
        })
}

/// One page, or NoSuchBucket when it is empty because there is no bucket at all.
async fn page(
    handlers: &Handlers,
    caller: &Caller,
    bucket: &str,
    query: &ListS3,
) -> S3Result<S3Page> {
    let page = handlers
        .storage
        .list_s3(caller, bucket, query)
        .await
        .map_err(bucket_error)?;
    if page.entries.is_empty()
        && !handlers
            .storage
            .bucket_exists(bucket)
            .await
            .map_err(bucket_error)?
    {
        return Err(s3(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        ));
    }
    Ok(page)
}

fn size_of(entry: &Entry) -> i64 {
    entry
        .metadata
        .as_ref()
        .and_then(|m| m.get("size"))
        .and_then(|s| s.as_i64())
        .unwrap_or(0)
}

/// Splits a page into objects and common prefixes, keys encoded as asked, with each object's
/// owner (its `owner_id`) when `owners`.
fn split(page: &S3Page, encoding: &Encoding, owners: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for entry in &page.entries {
        if entry.folder {
            prefixes.push(CommonPrefix {
                prefix: Some(encoding.apply(&entry.path)),
            });
            continue;
        }
        objects.push(Object {
            key: Some(encoding.apply(&entry.path)),
            size: Some(size_of(entry)),
            e_tag: entry.metadata.as_ref().and_then(etag_of),
            last_modified: last_modified_of(entry.metadata.as_ref(), entry.updated_at),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            owner: owners.then(|| owner_of(entry.owner_id.as_deref().unwrap_or(""))),
            ..Default::default()
        });
    }
    (objects, prefixes)
}

pub(super) async fn list_objects_v2(
    handlers: &Handlers,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let encoding = Encoding::of(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = delimited(input.delimiter.as_deref())?;
    let max = max_keys(input.max_keys)?;
    // The token wins over start-after: it resumes a listing that began after start-after.
    let after = match &input.continuation_token {
        Some(token) => Some(after_token(token)?),
        None => input.start_after.clone().filter(|s| !s.is_empty()),
    };
    let query = ListS3 {
        prefix: prefix.clone(),
        delimiter,
        after,
        max,
    };
    let page = page(handlers, caller, &input.bucket, &query).await?;
    let (contents, prefixes) = split(&page, &encoding, input.fetch_owner.unwrap_or(false));
    let next = page
        .truncated
        .then(|| page.entries.last().map(|e| token_for(&e.path)))
        .flatten();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket.clone()),
        prefix: Some(encoding.apply(&prefix)),
        delimiter: encoding.opt(input.delimiter.as_deref()),
        max_keys: Some(max as i32),
        key_count: Some((contents.len() + prefixes.len()) as i32),
        continuation_token: input.continuation_token.clone(),
        next_continuation_token: next,
        is_truncated: Some(page.truncated),
        start_after: encoding.opt(input.start_after.as_deref()),
        encoding_type: input.encoding_type.clone(),
        contents: Some(contents),
        common_prefixes: Some(prefixes),
        ..Default::default()
    }))
}

pub(super) async fn list_objects(
    handlers: &Handlers,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let encoding = Encoding::of(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = max_keys(input.max_keys)?;
    let query = ListS3 {
        prefix: prefix.clone(),
        delimiter: delimited(input.delimiter.as_deref())?,
        after: input.marker.clone().filter(|m| !m.is_empty()),
        max,
    };
    let page = page(handlers, caller, &input.bucket, &query).await?;
    // ListObjects (v1) always shows owners.
    let (contents, prefixes) = split(&page, &encoding, true);
    let next_marker = page
        .truncated
        .then(|| page.entries.last().map(|e| encoding.apply(&e.path)))
        .flatten();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket.clone()),
        prefix: Some(encoding.apply(&prefix)),
        marker: Some(encoding.apply(input.marker.as_deref().unwrap_or(""))),
        delimiter: encoding.opt(input.delimiter.as_deref()),
        max_keys: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_marker,
        encoding_type: input.encoding_type.clone(),
        contents: Some(contents),
        common_prefixes: Some(prefixes),
        ..Default::default()
    }))
}

pub(super) async fn list_object_versions(
    handlers: &Handlers,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let encoding = Encoding::of(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = max_keys(input.max_keys)?;
    let query = ListS3 {
        prefix: prefix.clone(),
        delimiter: delimited(input.delimiter.as_deref())?,
        after: input.key_marker.clone().filter(|m| !m.is_empty()),
        max,
    };
    let page = page(handlers, caller, &input.bucket, &query).await?;
    let (objects, prefixes) = split(&page, &encoding, true);
    let versions = objects
        .into_iter()
        .map(|o| ObjectVersion {
            key: o.key,
            size: o.size,
            e_tag: o.e_tag,
            last_modified: o.last_modified,
            is_latest: Some(true),
            version_id: Some("null".into()),
            storage_class: Some(ObjectVersionStorageClass::from_static(
                ObjectVersionStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect();
    let next = page
        .truncated
        .then(|| page.entries.last().map(|e| encoding.apply(&e.path)))
        .flatten();
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket.clone()),
        prefix: Some(encoding.apply(&prefix)),
        delimiter: encoding.opt(input.delimiter.as_deref()),
        key_marker: encoding.opt(input.key_marker.as_deref()),
        max_keys: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_version_id_marker: next.as_ref().map(|_| "null".to_string()),
        next_key_marker: next,
        encoding_type: input.encoding_type.clone(),
        versions: Some(versions),
        common_prefixes: Some(prefixes),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes() {
        assert_eq!(
            Encoding(true).apply("a b/ü+%.txt"),
            "a%20b/%C3%BC%2B%25.txt"
        );
        assert_eq!(Encoding(false).apply("a b"), "a b");
    }

    #[test]
    fn tokens_round_trip() {
        assert_eq!(after_token(&token_for("a/ü")).unwrap(), "a/ü");
        assert!(after_token("!!").is_err());
    }
}
