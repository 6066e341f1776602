//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListMultipartUploads, ListParts, over the
//! core's multipart machinery (parts staged as segments; completion copies no bytes).
//!
//! Creating an upload is checked as the final write would be (`storage.upload` or
//! `storage.overwrite`), so a caller who may not write the object may not start it; the other
//! calls need the upload to be the caller's own or shown to them by RLS (see
//! [`crate::core::multipart`]). Every call also names the bucket and key: an upload id given
//! with another bucket or key is `NoSuchUpload`, as on S3.

use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::body::{Expected, check_md5_header, verified};
use super::copy::copy_source;
use super::error::{bucket_error, object_error, s3};
use super::handlers::{Handlers, caller, context};
use super::multipart_checksums as checksums;
use super::objects::{Conditions, Info, read_row, timestamp, user_metadata_in};
use crate::bytes::ByteRange;
use crate::core::multipart::{CompletePart, CreateMultipart, ListUploads, PartSource};
use crate::core::objects::ContentHeaders;
use crate::core::{Caller, Error, Operation};

/// S3's `uploadId`, `partNumber` and `max-*` bounds.
const MAX_LISTED: usize = 1000;

/// The upload, checked to be one of `bucket`/`key` (else NoSuchUpload).
async fn upload_of(
    handlers: &Handlers,
    caller: &Caller,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<crate::core::multipart::MultipartUpload> {
    let upload = handlers
        .storage
        .multipart_upload(caller, upload_id)
        .await
        .map_err(object_error)?;
    if upload.bucket != bucket || upload.name != key {
        return Err(object_error(Error::NoSuchUpload));
    }
    Ok(upload)
}

fn part_number(number: i32) -> S3Result<u32> {
    u32::try_from(number)
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })
}

/// The core's quoted ETag as an S3 ETag.
fn etag(text: &str) -> ETag {
    ETag::Strong(text.trim().trim_matches('"').to_string())
}

pub(super) async fn create_multipart_upload(
    handlers: &Handlers,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let algorithm = checksums::algorithm_of(
        input.checksum_algorithm.as_ref(),
        input.checksum_type.as_ref(),
    )?;
    let upload = handlers
        .storage
        .create_multipart(
            caller,
            CreateMultipart {
                bucket: input.bucket.clone(),
                name: input.key.clone(),
                content_type: input.content_type.clone(),
                cache_control: input.cache_control.clone(),
                user_metadata: user_metadata_in(input.metadata.as_ref()),
                // S3 replaces an existing object.
                upsert: true,
                owner: None,
                declared_length: None,
                headers: ContentHeaders {
                    content_disposition: input.content_disposition.clone(),
                    content_encoding: input.content_encoding.clone(),
                },
                checksum_algorithm: algorithm.clone(),
            },
        )
        .await
        .map_err(object_error)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        upload_id: Some(upload.id),
        checksum_type: algorithm
            .is_some()
            .then(|| ChecksumType::from_static(ChecksumType::COMPOSITE)),
        checksum_algorithm: algorithm.map(ChecksumAlgorithm::from),
        ..Default::default()
    }))
}

pub(super) async fn upload_part(
    handlers: &Handlers,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let context = context(&req)?.clone();
    let trailer = req
        .headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let input = req.input;
    let number = part_number(input.part_number)?;
    check_md5_header(input.content_md5.as_deref())?;
    let upload = upload_of(
        handlers,
        &context.caller,
        &input.bucket,
        &input.key,
        &input.upload_id,
    )
    .await?;
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
    let declared = input.content_length.and_then(|l| u64::try_from(l).ok());
    let part = handlers
        .storage
        .upload_part_checked(
            &context.caller,
            &input.upload_id,
            number,
            body,
            declared,
            expected,
        )
        .await
        // A checksum mismatch ends the body with an error; name it for what it was.
        .map_err(|error| digests.error(error))?;
    let checksums = digests.checksums(part.sha256.as_deref());
    // The part's checksum of the upload's algorithm, verified against its bytes, for the
    // object's composite checksum.
    if let Some(value) = upload
        .checksum_algorithm
        .as_deref()
        .and_then(|algorithm| checksums::value_of(&checksums, algorithm))
    {
        handlers
            .storage
            .record_part_checksum(&input.upload_id, number, &part.etag, &value)
            .await
            .map_err(object_error)?;
    }
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(etag(&part.etag)),
        checksum_crc32: checksums.checksum_crc32,
        checksum_crc32c: checksums.checksum_crc32c,
        checksum_sha1: checksums.checksum_sha1,
        checksum_sha256: checksums.checksum_sha256,
        checksum_crc64nvme: checksums.checksum_crc64nvme,
        ..Default::default()
    }))
}

/// `x-amz-copy-source-range: bytes=first-last` (both inclusive, both required).
fn source_range(text: &str) -> S3Result<ByteRange> {
    let bad = || {
        s3(
            S3ErrorCode::InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first \
             and last are the zero-based offsets of the first and last bytes to copy",
        )
    };
    let (first, last) = text
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let start: u64 = first.trim().parse().map_err(|_| bad())?;
    let end: u64 = last.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(ByteRange { start, end })
}

pub(super) async fn upload_part_copy(
    handlers: &Handlers,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let number = part_number(input.part_number)?;
    let (source_bucket, source_key) = copy_source(&input.copy_source)?;
    let range = input
        .copy_source_range
        .as_deref()
        .map(source_range)
        .transpose()?;
    upload_of(
        handlers,
        caller,
        &input.bucket,
        &input.key,
        &input.upload_id,
    )
    .await?;
    let conditions = Conditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    };
    if conditions.if_match.is_some()
        || conditions.if_none_match.is_some()
        || conditions.if_modified_since.is_some()
        || conditions.if_unmodified_since.is_some()
    {
        let source = read_row(
            handlers,
            caller,
            Operation::Copy,
            &source_bucket,
            &source_key,
        )
        .await?;
        conditions.check(&Info::of(&source), true)?;
    }
    let part = handlers
        .storage
        .upload_part_copy(
            caller,
            &input.upload_id,
            number,
            PartSource {
                bucket: source_bucket,
                name: source_key,
                range,
            },
        )
        .await
        .map_err(object_error)?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag(&part.etag)),
            last_modified: Some(timestamp(part.last_modified)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub(super) async fn complete_multipart_upload(
    handlers: &Handlers,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let requested = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.as_ref())
        .filter(|parts| !parts.is_empty())
        .ok_or_else(|| {
            s3(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our \
                 published schema",
            )
        })?;
    let mut parts = Vec::with_capacity(requested.len());
    for part in requested {
        let number = part.part_number.ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidPart,
                "Every part must name its PartNumber",
            )
        })?;
        parts.push(CompletePart {
            part_number: part_number(number)?,
            etag: part.e_tag.as_ref().map(|e| e.value().to_string()),
        });
    }
    let upload = upload_of(
        handlers,
        caller,
        &input.bucket,
        &input.key,
        &input.upload_id,
    )
    .await?;
    let checksum = match upload.checksum_algorithm.as_deref() {
        Some(algorithm) => {
            checksums::for_completion(handlers, caller, &input.upload_id, algorithm, requested)
                .await?
                .map(|value| (algorithm, value))
        }
        None => None,
    };
    let done = handlers
        .storage
        .complete_multipart_with_checksum(
            caller,
            &input.upload_id,
            &parts,
            checksum
                .as_ref()
                .map(|(algorithm, value)| checksums::metadata(algorithm, value)),
        )
        .await
        .map_err(object_error)?;
    let output = CompleteMultipartUploadOutput {
        bucket: Some(done.bucket.clone()),
        key: Some(done.name.clone()),
        e_tag: Some(etag(&done.etag)),
        location: Some(format!("/{}/{}", done.bucket, done.name)),
        ..Default::default()
    };
    Ok(S3Response::new(match checksum {
        Some((algorithm, value)) => checksums::completed(output, algorithm, value),
        None => output,
    }))
}

pub(super) async fn abort_multipart_upload(
    handlers: &Handlers,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    upload_of(
        handlers,
        caller,
        &input.bucket,
        &input.key,
        &input.upload_id,
    )
    .await?;
    handlers
        .storage
        .abort_multipart(caller, &input.upload_id)
        .await
        .map_err(object_error)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

fn max_listed(max: Option<i32>) -> S3Result<usize> {
    match max {
        None => Ok(MAX_LISTED),
        Some(n) if n < 0 => Err(s3(
            S3ErrorCode::InvalidArgument,
            "max-uploads and max-parts must not be negative",
        )),
        Some(n) => Ok((n as usize).clamp(1, MAX_LISTED)),
    }
}

pub(super) async fn list_multipart_uploads(
    handlers: &Handlers,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let max = max_listed(input.max_uploads)?;
    let list = handlers
        .storage
        .list_multipart_uploads(
            caller,
            &ListUploads {
                bucket: input.bucket.clone(),
                prefix: input.prefix.clone().filter(|p| !p.is_empty()),
                delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
                key_marker: input.key_marker.clone().filter(|m| !m.is_empty()),
                upload_id_marker: input.upload_id_marker.clone().filter(|m| !m.is_empty()),
                max,
            },
        )
        .await
        .map_err(bucket_error)?;
    let uploads = list
        .uploads
        .into_iter()
        .map(|u| MultipartUpload {
            key: Some(u.name),
            upload_id: Some(u.id),
            initiated: Some(timestamp(u.created_at)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    let common_prefixes = list
        .common_prefixes
        .into_iter()
        .map(|p| CommonPrefix { prefix: Some(p) })
        .collect::<Vec<_>>();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket.clone()),
        prefix: input.prefix.clone(),
        delimiter: input.delimiter.clone(),
        key_marker: input.key_marker.clone(),
        upload_id_marker: input.upload_id_marker.clone(),
        max_uploads: Some(max as i32),
        is_truncated: Some(list.truncated),
        next_key_marker: list.next_key_marker,
        next_upload_id_marker: list.next_upload_id_marker,
        uploads: Some(uploads),
        common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
        ..Default::default()
    }))
}

pub(super) async fn list_parts(
    handlers: &Handlers,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let max = max_listed(input.max_parts)?;
    let marker = match input.part_number_marker {
        Some(n) if n < 0 => {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                "part-number-marker must not be negative",
            ));
        }
        Some(n) => Some(n as u32),
        None => None,
    };
    let upload = upload_of(
        handlers,
        caller,
        &input.bucket,
        &input.key,
        &input.upload_id,
    )
    .await?;
    let algorithm = upload.checksum_algorithm;
    let list = handlers
        .storage
        .list_parts(caller, &input.upload_id, marker, max)
        .await
        .map_err(object_error)?;
    let next = list.parts.last().map(|p| p.part_number as i32);
    let parts = list
        .parts
        .into_iter()
        .map(|p| {
            let part = Part {
                part_number: Some(p.part_number as i32),
                e_tag: Some(etag(&p.etag)),
                size: Some(p.size as i64),
                last_modified: Some(timestamp(p.last_modified)),
                ..Default::default()
            };
            match &algorithm {
                Some(algorithm) => checksums::with_part_checksum(part, algorithm, p.checksum),
                None => part,
            }
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        upload_id: Some(input.upload_id.clone()),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        max_parts: Some(max as i32),
        is_truncated: Some(list.truncated),
        parts: Some(parts),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        checksum_type: algorithm
            .is_some()
            .then(|| ChecksumType::from_static(ChecksumType::COMPOSITE)),
        checksum_algorithm: algorithm.map(ChecksumAlgorithm::from),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_ranges() {
        let r = source_range("bytes=5-9").unwrap();
        assert_eq!((r.start, r.end), (5, 9));
        assert!(source_range("bytes=9-5").is_err());
        assert!(source_range("bytes=5-").is_err());
        assert!(source_range("5-9").is_err());
    }

    #[test]
    fn part_numbers_are_1_to_10000() {
        assert!(part_number(0).is_err());
        assert_eq!(part_number(1).unwrap(), 1);
        assert!(part_number(10_001).is_err());
    }
}
