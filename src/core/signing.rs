//! Authorising signed URLs. Signing is where Row Level Security decides: the caller's policies
//! are evaluated now, under `storage.sign` or `storage.sign_upload`; the token (made by the
//! front with `auth::signed_url`) then carries that decision, and its use runs with privilege.

use std::collections::HashSet;

use super::names::validate_object_name;
use super::objects::{ObjectRow, RowWrite};
use super::{Caller, Error, Operation, Storage};

/// Most paths one batch signing request takes.
pub const MAX_SIGN_BATCH: usize = 1000;

impl Storage {
    /// The object behind a signed download URL, if the caller may see it when signing
    /// (operation `storage.sign`). Missing and invisible are the same answer: not found.
    pub async fn authorize_sign(
        &self,
        caller: &Caller,
        bucket: &str,
        name: &str,
    ) -> Result<ObjectRow, Error> {
        signable_bucket(bucket)?;
        self.object(caller, Operation::Sign, bucket, name).await
    }

    /// For each of `names`, in order, whether the caller may sign it (it exists and is visible
    /// under `storage.sign`). One transaction for the whole batch.
    pub async fn authorize_sign_many(
        &self,
        caller: &Caller,
        bucket: &str,
        names: &[String],
    ) -> Result<Vec<bool>, Error> {
        signable_bucket(bucket)?;
        if names.is_empty() {
            return Err(Error::InvalidInput(
                "paths must name at least one object".into(),
            ));
        }
        if names.len() > MAX_SIGN_BATCH {
            return Err(Error::InvalidInput(format!(
                "at most {MAX_SIGN_BATCH} paths can be signed per request, got {}",
                names.len()
            )));
        }
        let tx = self.begin(caller, Operation::Sign).await?;
        let rows = tx
            .query_and_commit(
                "select name from storage.objects where bucket_id = $1 and name = any($2)",
                &[&bucket, &names],
            )
            .await?;
        let visible: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(names.iter().map(|n| visible.contains(n)).collect())
    }

    /// Checks that the caller may upload `bucket/name` (operation `storage.sign_upload`), with
    /// the probe the upload protocol itself runs: an INSERT (an UPDATE when `upsert` and the
    /// object exists) evaluated under the caller's policies and rolled back. An existing object
    /// without `upsert` is a conflict now rather than at upload time, told (as by an upload)
    /// only to a caller who may see the object or whose insert would be allowed.
    pub async fn authorize_sign_upload(
        &self,
        caller: &Caller,
        bucket: &str,
        name: &str,
        upsert: bool,
    ) -> Result<(), Error> {
        validate_object_name(name)?;
        signable_bucket(bucket)?;
        let target = self.write_target(bucket, name).await?;
        let write = RowWrite {
            bucket,
            name,
            owner: caller.owner(),
            user_metadata: None,
            signed: None,
        };
        self.check_write(
            caller,
            Operation::SignUpload,
            &write,
            target.exists && upsert,
        )
        .await
    }
}

/// A signed URL names its object as `<bucket>/<name>`, which is only unambiguous for a bucket id
/// without `/`. Such ids are refused everywhere (the API, and a check on `storage.buckets`); a
/// database may still hold one from before that check, and its objects cannot be signed.
fn signable_bucket(bucket: &str) -> Result<(), Error> {
    if bucket.contains('/') {
        return Err(Error::InvalidBucketName(
            "it contains '/', so a signed URL could not name its objects unambiguously".into(),
        ));
    }
    Ok(())
}
