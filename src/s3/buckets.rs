//! Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
//! GetBucketVersioning (buckets are unversioned), each under `storage.bucket.*`.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::error::{bucket_error, s3};
use super::handlers::{Handlers, caller};
use crate::core::Error;
use crate::core::buckets::{ListBuckets, NewBucket};

fn timestamp(time: chrono::DateTime<chrono::Utc>) -> Timestamp {
    let system: std::time::SystemTime = time.into();
    Timestamp::from(system)
}

/// The owner S3 shows: the caller's `sub` (or role) — buckets have no account.
pub(super) fn owner_of(id: &str) -> Owner {
    Owner {
        display_name: Some(id.to_string()),
        id: Some(id.to_string()),
    }
}

pub(super) async fn list_buckets(
    handlers: &Handlers,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let caller = caller(&req)?;
    let buckets = handlers
        .storage
        .list_buckets(caller, &ListBuckets::default())
        .await
        .map_err(bucket_error)?;
    let me = caller
        .owner()
        .unwrap_or_else(|| caller.identity.role.clone());
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(
            buckets
                .into_iter()
                .map(|b| Bucket {
                    name: Some(b.id),
                    creation_date: Some(timestamp(b.created_at)),
                    bucket_region: Some(handlers.region.clone()),
                })
                .collect(),
        ),
        owner: Some(owner_of(&me)),
        ..Default::default()
    }))
}

pub(super) async fn create_bucket(
    handlers: &Handlers,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let caller = caller(&req)?;
    let name = req.input.bucket.clone();
    let created = handlers
        .storage
        .create_bucket(
            caller,
            NewBucket {
                id: name.clone(),
                name: name.clone(),
                ..Default::default()
            },
        )
        .await;
    match created {
        Ok(_) => Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        })),
        Err(Error::AlreadyExists) => {
            // S3 tells the owner apart from everyone else.
            let mine = handlers
                .storage
                .get_bucket(caller, &name)
                .await
                .is_ok_and(|b| b.owner_id.is_some() && b.owner_id == caller.owner());
            Err(match mine {
                true => s3(
                    S3ErrorCode::BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it.",
                ),
                false => s3(
                    S3ErrorCode::BucketAlreadyExists,
                    "The requested bucket name is not available.",
                ),
            })
        }
        Err(error) => Err(bucket_error(error)),
    }
}

pub(super) async fn head_bucket(
    handlers: &Handlers,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    let caller = caller(&req)?;
    handlers
        .storage
        .get_bucket(caller, &req.input.bucket)
        .await
        .map_err(bucket_error)?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(handlers.region.clone()),
        ..Default::default()
    }))
}

pub(super) async fn delete_bucket(
    handlers: &Handlers,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    let caller = caller(&req)?;
    handlers
        .storage
        .delete_bucket(caller, &req.input.bucket)
        .await
        .map_err(bucket_error)?;
    Ok(S3Response::new(DeleteBucketOutput {}))
}

pub(super) async fn get_bucket_location(
    handlers: &Handlers,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    let caller = caller(&req)?;
    handlers
        .storage
        .get_bucket(caller, &req.input.bucket)
        .await
        .map_err(bucket_error)?;
    // S3 reports us-east-1 as no constraint at all.
    let location = (handlers.region != super::DEFAULT_REGION)
        .then(|| BucketLocationConstraint::from(handlers.region.clone()));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: location,
    }))
}

pub(super) async fn get_bucket_versioning(
    handlers: &Handlers,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let caller = caller(&req)?;
    handlers
        .storage
        .get_bucket(caller, &req.input.bucket)
        .await
        .map_err(bucket_error)?;
    // Never versioned: S3 answers an empty configuration.
    Ok(S3Response::new(GetBucketVersioningOutput::default()))
}
