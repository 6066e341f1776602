//! Buckets: create, read, list, update, empty and delete, each through Row Level Security.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::{Caller, Error, Operation, Storage};

/// A bucket as clients see it (the Supabase Storage shape).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    pub id: String,
    pub name: String,
    /// The creator's `sub`; `""` when none (clients type it as a non-null string).
    pub owner: String,
    pub owner_id: Option<String>,
    pub public: bool,
    /// Always `STANDARD`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub file_size_limit: Option<i64>,
    pub allowed_mime_types: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const BUCKET_COLUMNS: &str =
    "id, name, owner_id, public, file_size_limit, allowed_mime_types, created_at, updated_at";

impl Bucket {
    fn from_row(row: &Row) -> Self {
        let owner: Option<String> = row.get("owner_id");
        Self {
            id: row.get("id"),
            name: row.get("name"),
            owner: owner.clone().unwrap_or_default(),
            owner_id: owner,
            public: row.get::<_, Option<bool>>("public").unwrap_or(false),
            kind: "STANDARD",
            file_size_limit: row.get("file_size_limit"),
            allowed_mime_types: row.get("allowed_mime_types"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

/// A bucket to create.
#[derive(Debug, Clone, Default)]
pub struct NewBucket {
    pub id: String,
    pub name: String,
    pub public: bool,
    pub file_size_limit: Option<u64>,
    pub allowed_mime_types: Option<Vec<String>>,
}

/// Changes to a bucket: `None` leaves a field as it is; `Some(None)` clears a limit.
#[derive(Debug, Clone, Default)]
pub struct BucketChanges {
    pub public: Option<bool>,
    pub file_size_limit: Option<Option<u64>>,
    pub allowed_mime_types: Option<Option<Vec<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(Debug, Clone, Default)]
pub struct ListBuckets {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Case-insensitive substring of the bucket name.
    pub search: Option<String>,
    pub sort: Option<SortColumn>,
    pub descending: bool,
}

/// Bucket ids become path segments and policy inputs: keep them plain.
pub fn validate_bucket_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::InvalidBucketName("it must not be empty".into()));
    }
    if id.chars().count() > 100 {
        return Err(Error::InvalidBucketName(
            "it must be at most 100 characters".into(),
        ));
    }
    if id == "." || id == ".." {
        return Err(Error::InvalidBucketName(
            "it must not be '.' or '..'".into(),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| c.is_control() || *c == '/' || *c == '\\')
    {
        return Err(Error::InvalidBucketName(format!(
            "it must not contain {c:?} (no slashes or control characters)"
        )));
    }
    Ok(())
}

/// Accepts `type/subtype` and `type/*` (parameters such as `; charset=utf-8` are not allowed).
pub fn validate_mime_types(types: &[String]) -> Result<(), Error> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    for mime in types {
        let valid = match mime.split_once('/') {
            Some((kind, "*")) => token(kind),
            Some((kind, sub)) => token(kind) && token(sub),
            None => false,
        };
        if !valid {
            return Err(Error::InvalidInput(format!(
                "invalid mime type '{mime}': expected type/subtype or type/*"
            )));
        }
    }
    Ok(())
}

fn limit_to_db(limit: Option<u64>) -> Result<Option<i64>, Error> {
    limit
        .map(|l| match i64::try_from(l) {
            Ok(l) if l > 0 => Ok(l),
            _ => Err(Error::InvalidInput(
                "file_size_limit must be a positive number of bytes".into(),
            )),
        })
        .transpose()
}

impl Storage {
    /// Creates a bucket owned by the caller's `sub`. Returns its name.
    pub async fn create_bucket(&self, caller: &Caller, bucket: NewBucket) -> Result<String, Error> {
        validate_bucket_id(&bucket.id)?;
        validate_bucket_id(&bucket.name)?;
        let limit = limit_to_db(bucket.file_size_limit)?;
        if let Some(types) = &bucket.allowed_mime_types {
            validate_mime_types(types)?;
        }
        let tx = self.begin(caller, Operation::BucketCreate).await?;
        let rows = tx
            .query_and_commit(
                "insert into storage.buckets \
                     (id, name, owner_id, public, file_size_limit, allowed_mime_types) \
                 values ($1, $2, $3, $4, $5, $6)",
                &[
                    &bucket.id,
                    &bucket.name,
                    &caller.owner(),
                    &bucket.public,
                    &limit,
                    &bucket.allowed_mime_types,
                ],
            )
            .await;
        match rows {
            Ok(_) => Ok(bucket.name),
            Err(e) => Err(e.into()),
        }
    }

    /// One bucket the caller may see (under RLS an invisible bucket does not exist).
    /// Whether a bucket exists, whoever may see it: lets a front tell "no such bucket" from
    /// "nothing you may see" (S3's NoSuchBucket on a listing).
    pub async fn bucket_exists(&self, id: &str) -> Result<bool, Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached("select 1 from storage.buckets where id = $1")
            .await?;
        Ok(conn.query_opt(&statement, &[&id]).await?.is_some())
    }

    pub async fn get_bucket(&self, caller: &Caller, id: &str) -> Result<Bucket, Error> {
        let tx = self.begin(caller, Operation::BucketGet).await?;
        let rows = tx
            .query_and_commit(
                &format!("select {BUCKET_COLUMNS} from storage.buckets where id = $1"),
                &[&id],
            )
            .await?;
        rows.first()
            .map(Bucket::from_row)
            .ok_or(Error::BucketNotFound)
    }

    /// The buckets the caller may see.
    pub async fn list_buckets(
        &self,
        caller: &Caller,
        query: &ListBuckets,
    ) -> Result<Vec<Bucket>, Error> {
        let column = match query.sort.unwrap_or(SortColumn::Name) {
            SortColumn::Id => "id",
            SortColumn::Name => "name",
            SortColumn::CreatedAt => "created_at",
            SortColumn::UpdatedAt => "updated_at",
        };
        let direction = if query.descending { "desc" } else { "asc" };
        // Column and direction come from the closed sets above, never from the client's text.
        let sql = format!(
            "select {BUCKET_COLUMNS} from storage.buckets \
             where $1::text is null or strpos(lower(name), lower($1)) > 0 \
             order by {column} {direction}, id \
             limit $2 offset $3"
        );
        let limit = query.limit.unwrap_or(i64::MAX).max(0);
        let offset = query.offset.unwrap_or(0).max(0);
        let tx = self.begin(caller, Operation::BucketList).await?;
        let rows = tx
            .query_and_commit(&sql, &[&query.search, &limit, &offset])
            .await?;
        Ok(rows.iter().map(Bucket::from_row).collect())
    }

    /// Changes a bucket's flag and limits.
    pub async fn update_bucket(
        &self,
        caller: &Caller,
        id: &str,
        changes: BucketChanges,
    ) -> Result<(), Error> {
        let set_limit = changes.file_size_limit.is_some();
        let limit = limit_to_db(changes.file_size_limit.flatten())?;
        let set_types = changes.allowed_mime_types.is_some();
        let types = changes.allowed_mime_types.flatten();
        if let Some(types) = &types {
            validate_mime_types(types)?;
        }
        let tx = self.begin(caller, Operation::BucketUpdate).await?;
        let rows = tx
            .query_and_commit(
                "update storage.buckets set \
                     public = coalesce($2, public), \
                     file_size_limit = case when $3 then $4 else file_size_limit end, \
                     allowed_mime_types = case when $5 then $6 else allowed_mime_types end \
                 where id = $1 \
                 returning id",
                &[&id, &changes.public, &set_limit, &limit, &set_types, &types],
            )
            .await?;
        if rows.is_empty() {
            return Err(Error::BucketNotFound);
        }
        Ok(())
    }

    /// Deletes an empty bucket. A bucket that still holds objects (even ones the caller cannot
    /// see) is refused with a conflict.
    pub async fn delete_bucket(&self, caller: &Caller, id: &str) -> Result<(), Error> {
        let tx = self.begin_deleting(caller, Operation::BucketDelete).await?;
        let rows = tx
            .query_and_commit(
                "delete from storage.buckets where id = $1 returning id",
                &[&id],
            )
            .await;
        match rows {
            Ok(rows) if rows.is_empty() => Err(Error::BucketNotFound),
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(Error::BucketNotEmpty)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Storage {
    /// Deletes every object in the bucket that the caller may delete (RLS decides; the rest
    /// stay). Their bytes are released to the collector by the same transaction. Returns how
    /// many objects were removed.
    pub async fn empty_bucket(&self, caller: &Caller, id: &str) -> Result<u64, Error> {
        let tx = self.begin_deleting(caller, Operation::BucketEmpty).await?;
        if tx
            .query_opt("select 1 from storage.buckets where id = $1", &[&id])
            .await?
            .is_none()
        {
            return Err(Error::BucketNotFound);
        }
        let removed = tx
            .execute("delete from storage.objects where bucket_id = $1", &[&id])
            .await?;
        tx.commit().await?;
        Ok(removed)
    }
}
