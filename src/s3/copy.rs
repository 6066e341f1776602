//! CopyObject (`storage.copy`): the metadata directive (COPY, or REPLACE with new user metadata
//! and representation headers), the `x-amz-copy-source-if-*` preconditions, and same-key copies
//! that change metadata.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::error::{object_error, s3};
use super::handlers::{Handlers, caller};
use super::objects::{Conditions, Info, read_row, user_metadata_in};
use crate::core::Operation;
use crate::core::objects::{ContentHeaders, CopyHeaders, CopyRequest};

/// The bucket and key of `x-amz-copy-source` (only its unversioned "null" version exists).
pub(super) fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if version_id.as_deref().is_some_and(|v| v != "null") {
                return Err(s3(
                    S3ErrorCode::NoSuchVersion,
                    "The specified version does not exist.",
                ));
            }
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(s3(
            S3ErrorCode::NotImplemented,
            "access-point copy sources are not supported",
        )),
    }
}

pub(super) async fn copy_object(
    handlers: &Handlers,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let (source_bucket, source_key) = copy_source(&input.copy_source)?;
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str().eq_ignore_ascii_case(MetadataDirective::REPLACE));
    if source_bucket == input.bucket && source_key == input.key && !replace {
        return Err(s3(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself \
             without changing the object's metadata, storage class, website redirect location \
             or encryption attributes.",
        ));
    }
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
    let row = handlers
        .storage
        .copy_object(
            caller,
            CopyRequest {
                bucket: source_bucket,
                source: source_key,
                destination_bucket: input.bucket.clone(),
                destination: input.key.clone(),
                copy_metadata: !replace,
                user_metadata: user_metadata_in(input.metadata.as_ref()),
                upsert: true,
                headers: match replace {
                    true => CopyHeaders::Replace {
                        content_type: input.content_type.clone(),
                        cache_control: input.cache_control.clone(),
                        headers: ContentHeaders {
                            content_disposition: input.content_disposition.clone(),
                            content_encoding: input.content_encoding.clone(),
                        },
                    },
                    false => CopyHeaders::Source,
                },
            },
        )
        .await
        .map_err(object_error)?;
    let info = Info::of(&row);
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: info.etag,
            last_modified: info.last_modified,
            ..Default::default()
        }),
        ..Default::default()
    }))
}
