//! Core errors in S3's terms: the one place where [`crate::core::Error`] becomes an S3 code.

use s3s::{S3Error, S3ErrorCode};

use crate::core::Error;

/// What the core's error means on a bucket-level call.
pub(super) fn bucket_error(error: Error) -> S3Error {
    map(error, Target::Bucket)
}

/// What the core's error means on an object-level call.
pub(super) fn object_error(error: Error) -> S3Error {
    map(error, Target::Object)
}

#[derive(Clone, Copy)]
enum Target {
    Bucket,
    Object,
}

fn map(error: Error, target: Target) -> S3Error {
    let message = error.to_string();
    let code = match &error {
        Error::BucketNotFound => S3ErrorCode::NoSuchBucket,
        Error::ObjectNotFound => S3ErrorCode::NoSuchKey,
        Error::NotFound(_) => match target {
            Target::Bucket => S3ErrorCode::NoSuchBucket,
            Target::Object => S3ErrorCode::NoSuchKey,
        },
        Error::AlreadyExists => match target {
            Target::Bucket => S3ErrorCode::BucketAlreadyExists,
            // A conditional write (If-None-Match: *) that found the key taken.
            Target::Object => S3ErrorCode::PreconditionFailed,
        },
        Error::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
        Error::Conflict(_) => S3ErrorCode::OperationAborted,
        Error::Forbidden(_) => S3ErrorCode::AccessDenied,
        Error::InvalidInput(_) | Error::InvalidKey(_) => S3ErrorCode::InvalidArgument,
        Error::InvalidBucketName(_) => S3ErrorCode::InvalidBucketName,
        Error::PayloadTooLarge(_) => S3ErrorCode::EntityTooLarge,
        // The bucket's allowed_mime_types refused the Content-Type.
        Error::UnsupportedMediaType(_) => S3ErrorCode::InvalidArgument,
        Error::RangeNotSatisfiable(_) => S3ErrorCode::InvalidRange,
        Error::NoSuchUpload => S3ErrorCode::NoSuchUpload,
        Error::InvalidPart(_) => S3ErrorCode::InvalidPart,
        Error::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        Error::EntityTooSmall(_) => S3ErrorCode::EntityTooSmall,
        // The handlers name which header was wrong; this is the fallback.
        Error::DigestMismatch { .. } => S3ErrorCode::BadDigest,
        Error::Timeout(_) => S3ErrorCode::RequestTimeout,
        Error::Unavailable(_) => S3ErrorCode::ServiceUnavailable,
        Error::Internal(_) => return internal(error),
    };
    let message = match (&error, target) {
        // RLS answers "new row violates row-level security policy ..." : true, but S3 clients
        // print the message, and the policy's table is an implementation detail.
        (Error::Forbidden(_), _) => crate::core::refusal::explain("Access Denied"),
        (Error::BucketNotFound, _) => "The specified bucket does not exist".to_string(),
        (Error::ObjectNotFound, _) => "The specified key does not exist.".to_string(),
        _ => message,
    };
    S3Error::with_message(code, message)
}

/// A fault of ours: logged with its cause, answered as InternalError without details.
pub(super) fn internal(error: impl std::fmt::Display) -> S3Error {
    tracing::error!(%error, "S3 request failed");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        "We encountered an internal error",
    )
}

/// An S3 error with a message.
pub(super) fn s3(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
    S3Error::with_message(code, message.into())
}
