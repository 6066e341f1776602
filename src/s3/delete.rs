//! DeleteObject and DeleteObjects (`storage.delete`), with S3's answers: a key that is not
//! there is deleted all the same; one the caller sees but may not delete is AccessDenied.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::error::{object_error, s3};
use super::handlers::{Handlers, caller};
use super::objects::bucket_exists;
use crate::core::{Caller, Error, Operation};

/// After a delete removed nothing: AccessDenied when the caller can see the object (so a
/// policy refused the delete), otherwise the key was simply not there, which S3 answers as
/// deleted.
async fn refused_delete(
    handlers: &Handlers,
    caller: &Caller,
    bucket: &str,
    key: &str,
) -> S3Result<bool> {
    match handlers
        .storage
        .object(caller, Operation::Info, bucket, key)
        .await
    {
        Ok(_) => Ok(true),
        Err(Error::ObjectNotFound) => Ok(false),
        Err(error) => Err(object_error(error)),
    }
}

pub(super) async fn delete_object(
    handlers: &Handlers,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    match handlers
        .storage
        .delete_object(caller, &input.bucket, &input.key)
        .await
    {
        Ok(()) => {}
        Err(Error::ObjectNotFound) => {
            if !bucket_exists(handlers, &input.bucket).await? {
                return Err(s3(
                    S3ErrorCode::NoSuchBucket,
                    "The specified bucket does not exist",
                ));
            }
            if refused_delete(handlers, caller, &input.bucket, &input.key).await? {
                return Err(s3(S3ErrorCode::AccessDenied, "Access Denied"));
            }
        }
        Err(error) => return Err(object_error(error)),
    }
    Ok(S3Response::with_status(
        DeleteObjectOutput::default(),
        axum::http::StatusCode::NO_CONTENT,
    ))
}

pub(super) async fn delete_objects(
    handlers: &Handlers,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let caller = caller(&req)?;
    let input = &req.input;
    let names: Vec<String> = input.delete.objects.iter().map(|o| o.key.clone()).collect();
    if names.is_empty() {
        return Err(s3(
            S3ErrorCode::MalformedXML,
            "The Delete request names no object",
        ));
    }
    let deleted = handlers
        .storage
        .delete_objects(caller, &input.bucket, &names)
        .await
        .map_err(object_error)?;
    if deleted.is_empty() && !bucket_exists(handlers, &input.bucket).await? {
        return Err(s3(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        ));
    }
    let gone: std::collections::HashSet<&str> = deleted.iter().map(|r| r.name.as_str()).collect();
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        if gone.contains(name.as_str())
            || !refused_delete(handlers, caller, &input.bucket, name).await?
        {
            done.push(DeletedObject {
                key: Some(name.clone()),
                ..Default::default()
            });
        } else {
            errors.push(s3s::dto::Error {
                code: Some("AccessDenied".into()),
                key: Some(name.clone()),
                message: Some("Access Denied".into()),
                version_id: None,
            });
        }
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: (!quiet).then_some(done),
        errors: Some(errors),
        ..Default::default()
    }))
}
