//! Object operations: GetObject, HeadObject, GetObjectAttributes (`storage.download` /
//! `storage.info`) and PutObject (`storage.upload` / `storage.overwrite`), and the object view
//! the other object files share (CopyObject in [`super::copy`], deletes in [`super::delete`]).
//!
//! An object's S3 view comes from the same row the REST API serves: `metadata.eTag`, `size`,
//! `mimetype`, `cacheControl`, `lastModified`, and `x-amz-meta-*` as `user_metadata`, so an
//! object written by either front reads back the same by the other.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde_json::{Map, Value};

use super::body::{Expected, to_blob, verified};
use super::error::{bucket_error, object_error, s3};
use super::handlers::{Handlers, caller, context};
use super::inert::inert_headers;
use crate::bytes::ByteRange;
use crate::core::multipart::Segment;
use crate::core::objects::{ContentHeaders, ObjectRow, Upload};
use crate::core::{Caller, Error, Operation};

/// `metadata.eTag` (stored with its quotes) as an S3 ETag.
pub(super) fn etag_of(metadata: &Value) -> Option<ETag> {
    let text = metadata.get("eTag")?.as_str()?;
    let value = text.trim().trim_start_matches("W/").trim_matches('"');
    Some(ETag::Strong(value.to_string()))
}

pub(super) fn timestamp(time: DateTime<Utc>) -> Timestamp {
    let system: std::time::SystemTime = time.into();
    Timestamp::from(system)
}

/// `metadata.lastModified`, else the row's `updated_at`.
pub(super) fn last_modified_of(
    metadata: Option<&Value>,
    updated_at: Option<DateTime<Utc>>,
) -> Option<Timestamp> {
    metadata
        .and_then(|m| m.get("lastModified"))
        .and_then(|v| v.as_str())
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|t| t.with_timezone(&Utc))
        .or(updated_at)
        .map(timestamp)
}

/// Seconds since the epoch: HTTP dates have no finer resolution, so comparisons use whole
/// seconds.
fn seconds(time: &Timestamp) -> Option<i64> {
    let mut buf = Vec::new();
    time.format(TimestampFormat::EpochSeconds, &mut buf).ok()?;
    let text = String::from_utf8(buf).ok()?;
    text.split('.').next()?.parse().ok()
}

/// What the handlers read of a row.
pub(super) struct Info {
    size: u64,
    pub(super) etag: Option<ETag>,
    pub(super) last_modified: Option<Timestamp>,
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    metadata: Option<Metadata>,
}

impl Info {
    pub(super) fn of(row: &ObjectRow) -> Self {
        let system = row.system_metadata();
        Self {
            size: row.size(),
            etag: row.metadata.as_ref().and_then(etag_of),
            last_modified: last_modified_of(row.metadata.as_ref(), row.updated_at),
            content_type: system.mimetype,
            cache_control: system.cache_control,
            content_disposition: system.content_disposition,
            content_encoding: system.content_encoding,
            metadata: user_metadata_out(row.user_metadata.as_ref()),
        }
    }
}

/// `user_metadata` as `x-amz-meta-*`: strings as they are, other JSON as its text.
fn user_metadata_out(value: Option<&Value>) -> Option<Metadata> {
    let Value::Object(map) = value? else {
        return None;
    };
    let out: Metadata = map
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

/// `x-amz-meta-*` as `user_metadata` (`None` when there is none).
pub(super) fn user_metadata_in(metadata: Option<&Metadata>) -> Option<Value> {
    let metadata = metadata.filter(|m| !m.is_empty())?;
    let map: Map<String, Value> = metadata
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
        .collect();
    Some(Value::Object(map))
}

fn etag_matches(condition: &ETagCondition, etag: Option<&ETag>) -> bool {
    match (condition, etag) {
        (ETagCondition::Any, Some(_)) => true,
        (ETagCondition::ETag(wanted), Some(ours)) => wanted.value() == ours.value(),
        (_, None) => false,
    }
}

/// Request preconditions, checked in RFC 9110's order.
pub(super) struct Conditions<'a> {
    pub(super) if_match: Option<&'a ETagCondition>,
    pub(super) if_none_match: Option<&'a ETagCondition>,
    pub(super) if_modified_since: Option<&'a Timestamp>,
    pub(super) if_unmodified_since: Option<&'a Timestamp>,
}

impl Conditions<'_> {
    /// `Err` with PreconditionFailed (412), or NotModified (304) for reads; a copy's source
    /// conditions answer 412 for both, as S3 does.
    pub(super) fn check(&self, info: &Info, copy: bool) -> S3Result<()> {
        let modified = info.last_modified.as_ref().and_then(seconds);
        let failed = || {
            s3(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )
        };
        let not_modified = || match copy {
            true => failed(),
            false => S3Error::new(S3ErrorCode::NotModified),
        };
        match self.if_match {
            Some(condition) => {
                if !etag_matches(condition, info.etag.as_ref()) {
                    return Err(failed());
                }
            }
            None => {
                if let (Some(since), Some(modified)) =
                    (self.if_unmodified_since.and_then(seconds), modified)
                    && modified > since
                {
                    return Err(failed());
                }
            }
        }
        match self.if_none_match {
            Some(condition) => {
                if etag_matches(condition, info.etag.as_ref()) {
                    return Err(not_modified());
                }
            }
            None => {
                if let (Some(since), Some(modified)) =
                    (self.if_modified_since.and_then(seconds), modified)
                    && modified <= since
                {
                    return Err(not_modified());
                }
            }
        }
        Ok(())
    }
}

/// The byte range to serve, from `Range` or `partNumber`, and the object's part count when a
/// part was asked for. `segments`: the parts of a multipart object (`None`: one part).
fn byte_range(
    range: Option<&Range>,
    part_number: Option<i32>,
    size: u64,
    segments: Option<&[Segment]>,
) -> S3Result<(Option<ByteRange>, Option<i32>)> {
    if let Some(number) = part_number {
        if range.is_some() {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                "Cannot specify both Range header and partNumber query parameter",
            ));
        }
        let unsatisfiable = || {
            s3(
                S3ErrorCode::InvalidRange,
                "The requested partnumber is not satisfiable",
            )
        };
        let index = usize::try_from(number)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or_else(unsatisfiable)?;
        return match segments {
            None if index == 0 => Ok((None, Some(1))),
            None => Err(unsatisfiable()),
            Some(segments) => {
                let segment = segments.get(index).ok_or_else(unsatisfiable)?;
                let count = i32::try_from(segments.len()).ok();
                if segment.size == 0 {
                    return Ok((None, count));
                }
                Ok((
                    Some(ByteRange {
                        start: segment.offset,
                        end: segment.offset + segment.size - 1,
                    }),
                    count,
                ))
            }
        };
    }
    let Some(range) = range else {
        return Ok((None, None));
    };
    let span = range.check(size).map_err(|_| {
        s3(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        )
    })?;
    Ok((
        Some(ByteRange {
            start: span.start,
            end: span.end - 1,
        }),
        None,
    ))
}

/// The parts of `row` when it was uploaded in parts, read only when `wanted`.
async fn segments_of(
    handlers: &Handlers,
    row: &ObjectRow,
    wanted: bool,
) -> S3Result<Option<Vec<Segment>>> {
    if !wanted {
        return Ok(None);
    }
    handlers
        .storage
        .object_segments(row)
        .await
        .map_err(object_error)
}

fn content_range(range: &ByteRange, size: u64) -> String {
    format!("bytes {}-{}/{}", range.start, range.end, size)
}

pub(super) async fn read_row(
    handlers: &Handlers,
    caller: &Caller,
    operation: Operation,
    bucket: &str,
    key: &str,
) -> S3Result<ObjectRow> {
    match handlers
        .storage
        .object(caller, operation, bucket, key)
        .await
    {
        Ok(row) => Ok(row),
        // A missing bucket is NoSuchBucket, not NoSuchKey.
        Err(Error::ObjectNotFound) if !bucket_exists(handlers, bucket).await? => Err(s3(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        )),
        Err(error) => Err(object_error(error)),
    }
}

pub(super) async fn bucket_exists(handlers: &Handlers, bucket: &str) -> S3Result<bool> {
    handlers
        .storage
        .bucket_exists(bucket)
        .await
        .map_err(bucket_error)
}

pub(super) async fn get_object(
    handlers: &Handlers,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let row = read_row(
        handlers,
        caller,
        Operation::Download,
        &input.bucket,
        &input.key,
    )
    .await?;
    let info = Info::of(&row);
    Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    }
    .check(&info, false)?;
    let segments = segments_of(handlers, &row, input.part_number.is_some()).await?;
    let (range, parts_count) = byte_range(
        input.range.as_ref(),
        input.part_number,
        info.size,
        segments.as_deref(),
    )?;
    let stream = handlers
        .storage
        .read(&row, range)
        .await
        .map_err(object_error)?;
    let length = range.map_or(info.size, |r| r.len());
    let checksum = super::multipart_checksums::of_object(
        row.metadata.as_ref(),
        input.checksum_mode.as_ref(),
        range.is_none(),
    );
    let inert = inert_headers(
        input
            .response_content_type
            .as_deref()
            .or(info.content_type.as_deref()),
        input
            .response_content_disposition
            .as_deref()
            .or(info.content_disposition.as_deref()),
        &input.key,
    );
    let mut response = S3Response::new(GetObjectOutput {
        body: Some(to_blob(stream)),
        content_length: Some(length as i64),
        content_range: range.map(|r| content_range(&r, info.size)),
        accept_ranges: Some("bytes".into()),
        e_tag: info.etag,
        last_modified: info.last_modified,
        content_type: info.content_type,
        cache_control: info.cache_control,
        content_disposition: info.content_disposition,
        content_encoding: info.content_encoding,
        metadata: info.metadata,
        parts_count,
        checksum_crc32: checksum.0.checksum_crc32,
        checksum_crc32c: checksum.0.checksum_crc32c,
        checksum_sha1: checksum.0.checksum_sha1,
        checksum_sha256: checksum.0.checksum_sha256,
        checksum_type: checksum.1,
        ..Default::default()
    });
    response.headers = inert;
    Ok(response)
}

pub(super) async fn head_object(
    handlers: &Handlers,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let row = read_row(handlers, caller, Operation::Info, &input.bucket, &input.key).await?;
    let info = Info::of(&row);
    Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    }
    .check(&info, false)?;
    let segments = segments_of(handlers, &row, input.part_number.is_some()).await?;
    let (range, parts_count) = byte_range(
        input.range.as_ref(),
        input.part_number,
        info.size,
        segments.as_deref(),
    )?;
    let checksum = super::multipart_checksums::of_object(
        row.metadata.as_ref(),
        input.checksum_mode.as_ref(),
        range.is_none(),
    );
    let inert = inert_headers(
        info.content_type.as_deref(),
        info.content_disposition.as_deref(),
        &input.key,
    );
    let mut response = S3Response::new(HeadObjectOutput {
        content_length: Some(range.map_or(info.size, |r| r.len()) as i64),
        content_range: range.map(|r| content_range(&r, info.size)),
        accept_ranges: Some("bytes".into()),
        e_tag: info.etag,
        last_modified: info.last_modified,
        content_type: info.content_type,
        cache_control: info.cache_control,
        content_disposition: info.content_disposition,
        content_encoding: info.content_encoding,
        metadata: info.metadata,
        parts_count,
        checksum_crc32: checksum.0.checksum_crc32,
        checksum_crc32c: checksum.0.checksum_crc32c,
        checksum_sha1: checksum.0.checksum_sha1,
        checksum_sha256: checksum.0.checksum_sha256,
        checksum_type: checksum.1,
        ..Default::default()
    });
    response.headers = inert;
    Ok(response)
}

pub(super) async fn get_object_attributes(
    handlers: &Handlers,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let row = read_row(handlers, caller, Operation::Info, &input.bucket, &input.key).await?;
    let info = Info::of(&row);
    // One header, `x-amz-object-attributes: ETag,ObjectSize`, may carry several names.
    let wants = |name: &str| {
        input
            .object_attributes
            .iter()
            .flat_map(|a| a.as_str().split(','))
            .any(|a| a.trim().eq_ignore_ascii_case(name))
    };
    // Only an object uploaded in parts has ObjectParts, as on S3.
    let object_parts = segments_of(handlers, &row, wants("ObjectParts"))
        .await?
        .map(|segments| {
            let marker = input.part_number_marker.unwrap_or(0).max(0) as usize;
            let max = input.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
            let page: Vec<ObjectPart> = segments
                .iter()
                .enumerate()
                .skip(marker)
                .take(max)
                .map(|(i, segment)| ObjectPart {
                    part_number: Some(i as i32 + 1),
                    size: Some(segment.size as i64),
                    ..Default::default()
                })
                .collect();
            let truncated = marker + page.len() < segments.len();
            GetObjectAttributesParts {
                total_parts_count: Some(segments.len() as i32),
                part_number_marker: input.part_number_marker,
                next_part_number_marker: page.last().and_then(|p| p.part_number),
                max_parts: Some(max as i32),
                is_truncated: Some(truncated),
                parts: Some(page),
            }
        });
    Ok(S3Response::new(GetObjectAttributesOutput {
        object_parts,
        e_tag: info.etag.filter(|_| wants("ETag")),
        object_size: wants("ObjectSize").then_some(info.size as i64),
        storage_class: wants("StorageClass")
            .then(|| StorageClass::from_static(StorageClass::STANDARD)),
        last_modified: info.last_modified,
        ..Default::default()
    }))
}

pub(super) async fn put_object(
    handlers: &Handlers,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let context = context(&req)?.clone();
    let trailer = req
        .headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let input = req.input;
    if input.if_match.is_some() {
        return Err(s3(
            S3ErrorCode::NotImplemented,
            "conditional overwrites (If-Match on PUT) are not implemented",
        ));
    }
    let expected = Expected {
        md5: input.content_md5.clone(),
        checksums: Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            ..Default::default()
        },
        trailer,
        trailers: context.trailers.clone(),
        payload_sha256: context.payload_sha256,
    };
    let blob = input.body.unwrap_or_else(|| {
        StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
    });
    let (body, digests, expected) = verified(blob, expected)?;
    // If-None-Match: * writes only a new key; otherwise S3 replaces.
    let upsert = !matches!(input.if_none_match, Some(ETagCondition::Any));
    let upload = Upload {
        bucket: input.bucket.clone(),
        name: input.key.clone(),
        body,
        declared_length: input.content_length.and_then(|l| u64::try_from(l).ok()),
        content_type: input.content_type.clone(),
        cache_control: input.cache_control.clone(),
        user_metadata: user_metadata_in(input.metadata.as_ref()),
        upsert,
        owner: None,
        headers: ContentHeaders {
            content_disposition: input.content_disposition.clone(),
            content_encoding: input.content_encoding.clone(),
        },
    };
    let stored = handlers
        .storage
        .upload_checked(&context.caller, upload, expected)
        .await
        // A checksum mismatch ends the body with an error; name it for what it was.
        .map_err(|error| digests.error(error))?;
    let measured = stored.measured;
    let checksums = digests.checksums(measured.as_ref().map(|m| m.sha256_hex.as_str()));
    Ok(S3Response::new(PutObjectOutput {
        e_tag: measured.map(|m| ETag::Strong(m.md5_hex)),
        checksum_crc32: checksums.checksum_crc32,
        checksum_crc32c: checksums.checksum_crc32c,
        checksum_sha1: checksums.checksum_sha1,
        checksum_sha256: checksums.checksum_sha256,
        checksum_crc64nvme: checksums.checksum_crc64nvme,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_lose_their_quotes() {
        let meta = serde_json::json!({"eTag": "\"abc\""});
        assert_eq!(etag_of(&meta), Some(ETag::Strong("abc".into())));
    }

    #[test]
    fn user_metadata_round_trips_as_strings() {
        let mut m = Metadata::new();
        m.insert("Color".into(), "blue".into());
        let json = user_metadata_in(Some(&m)).unwrap();
        assert_eq!(json, serde_json::json!({"color": "blue"}));
        let back = user_metadata_out(Some(&serde_json::json!({"n": 1, "s": "x"}))).unwrap();
        assert_eq!(back["n"], "1");
        assert_eq!(back["s"], "x");
    }

    #[test]
    fn ranges_and_parts() {
        let r = Range::Int {
            first: 2,
            last: Some(5),
        };
        let got = byte_range(Some(&r), None, 10, None).unwrap().0.unwrap();
        assert_eq!((got.start, got.end), (2, 5));
        assert!(byte_range(Some(&r), None, 0, None).is_err());
        assert!(byte_range(None, Some(2), 10, None).is_err());
        assert_eq!(
            byte_range(None, Some(1), 10, None).unwrap(),
            (None, Some(1))
        );
        assert!(byte_range(Some(&r), Some(1), 10, None).is_err());
        let segments = [
            Segment { offset: 0, size: 6 },
            Segment { offset: 6, size: 4 },
        ];
        let (got, count) = byte_range(None, Some(2), 10, Some(&segments)).unwrap();
        let got = got.unwrap();
        assert_eq!((got.start, got.end, count), (6, 9, Some(2)));
        assert!(byte_range(None, Some(3), 10, Some(&segments)).is_err());
        assert!(byte_range(None, Some(0), 10, Some(&segments)).is_err());
    }
}
