//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListMultipartUploads, ListParts.
//!
//! NOT WIRED YET: the core's multipart machinery (`Storage::create_multipart`, `upload_part`,
//! `complete_multipart`, `abort_multipart`, `list_multipart_uploads`, `list_parts`: parts
//! staged as segments, completion without copying bytes) is being built separately. Until it
//! lands every handler here answers `NotImplemented`, which makes the AWS CLI and boto3 fall
//! back to nothing: clients must upload below their multipart threshold (8 MiB by default).
//! Wiring one is a change to its function body only: translate the input, call the core under
//! `handlers::caller(&req)` (operation `storage.multipart`), map errors with
//! `error::object_error` (NoSuchUpload, InvalidPart and InvalidPartOrder come from the core's
//! typed errors).

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::error::s3;
use super::handlers::Handlers;

fn not_yet<T>() -> S3Result<S3Response<T>> {
    Err(s3(
        S3ErrorCode::NotImplemented,
        "multipart uploads are not implemented yet; upload objects in a single PUT",
    ))
}

pub(super) async fn create_multipart_upload(
    _handlers: &Handlers,
    _req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    not_yet()
}

pub(super) async fn upload_part(
    _handlers: &Handlers,
    _req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    not_yet()
}

pub(super) async fn upload_part_copy(
    _handlers: &Handlers,
    _req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    not_yet()
}

pub(super) async fn complete_multipart_upload(
    _handlers: &Handlers,
    _req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    not_yet()
}

pub(super) async fn abort_multipart_upload(
    _handlers: &Handlers,
    _req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    not_yet()
}

pub(super) async fn list_multipart_uploads(
    _handlers: &Handlers,
    _req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    not_yet()
}

pub(super) async fn list_parts(
    _handlers: &Handlers,
    _req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    not_yet()
}
