//! The inner `s3s` service: S3 operations dispatched to one handler each, by feature file.
//! Operations not listed here answer `NotImplemented` (the `S3` trait's default).

use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3, S3Request, S3Response, S3Result};

use super::prefix::{AnyName, Context};
use super::{buckets, copy, delete, error, listing, multipart, objects};
use crate::core::{Caller, Storage};

/// What every handler gets: the core and the server's S3 settings.
#[derive(Clone)]
pub(super) struct Handlers {
    pub(super) storage: Storage,
    pub(super) region: String,
}

/// The service that routes prefix-free, already verified requests (see [`super::prefix`]).
pub(super) fn inner_service(storage: Storage, region: String) -> S3Service {
    let mut builder = S3ServiceBuilder::new(Handlers { storage, region });
    builder.set_validation(AnyName);
    builder.build()
}

/// The verified request context the outer service attached.
pub(super) fn context<T>(req: &S3Request<T>) -> S3Result<&Context> {
    req.extensions
        .get::<Context>()
        .ok_or_else(|| error::internal("an S3 request reached a handler without its context"))
}

pub(super) fn caller<T>(req: &S3Request<T>) -> S3Result<&Caller> {
    Ok(&context(req)?.caller)
}

type Out<T> = S3Result<S3Response<T>>;

#[async_trait::async_trait]
impl S3 for Handlers {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> Out<ListBucketsOutput> {
        buckets::list_buckets(self, req).await
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> Out<CreateBucketOutput> {
        buckets::create_bucket(self, req).await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> Out<HeadBucketOutput> {
        buckets::head_bucket(self, req).await
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> Out<DeleteBucketOutput> {
        buckets::delete_bucket(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> Out<GetBucketLocationOutput> {
        buckets::get_bucket_location(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> Out<GetBucketVersioningOutput> {
        buckets::get_bucket_versioning(self, req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> Out<ListObjectsOutput> {
        listing::list_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> Out<ListObjectsV2Output> {
        listing::list_objects_v2(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> Out<ListObjectVersionsOutput> {
        listing::list_object_versions(self, req).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> Out<GetObjectOutput> {
        objects::get_object(self, req).await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> Out<HeadObjectOutput> {
        objects::head_object(self, req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> Out<GetObjectAttributesOutput> {
        objects::get_object_attributes(self, req).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> Out<PutObjectOutput> {
        objects::put_object(self, req).await
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> Out<CopyObjectOutput> {
        copy::copy_object(self, req).await
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> Out<DeleteObjectOutput> {
        delete::delete_object(self, req).await
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> Out<DeleteObjectsOutput> {
        delete::delete_objects(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> Out<CreateMultipartUploadOutput> {
        multipart::create_multipart_upload(self, req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> Out<UploadPartOutput> {
        multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> Out<UploadPartCopyOutput> {
        multipart::upload_part_copy(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> Out<CompleteMultipartUploadOutput> {
        multipart::complete_multipart_upload(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> Out<AbortMultipartUploadOutput> {
        multipart::abort_multipart_upload(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> Out<ListMultipartUploadsOutput> {
        multipart::list_multipart_uploads(self, req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> Out<ListPartsOutput> {
        multipart::list_parts(self, req).await
    }
}
