//! The bucket operations' statements and checks (see the parent module).

use chrono::Utc;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use super::{Found, Run, update_specs, using_spec};
use crate::core::buckets::validate_bucket_id;
use crate::core::policy::catalog::Table;
use crate::core::policy::evaluate::{Clause, Spec};
use crate::core::{Error, Operation};
use crate::db::Tx;

impl Run<'_> {
    pub(super) async fn bucket_create(&self) -> Result<Found, Error> {
        let bucket = self.bucket();
        if let Err(error) = validate_bucket_id(bucket) {
            return Ok(Found::refused(Operation::BucketCreate, error));
        }
        let mut found = Found::new(Operation::BucketCreate);
        found.privilege_missing = self.privileges(&[(Table::Buckets, "insert")]).await?;
        let owner = self.caller.owner();
        let tx = self.begin(Operation::BucketCreate, false).await?;
        tx.batch("savepoint verdict").await?;
        found.verdict = tx
            .execute(
                "insert into storage.buckets \
                     (id, name, owner_id, public, file_size_limit, allowed_mime_types) \
                 values ($1, $1, $2, false, null, null)",
                &[&bucket, &owner],
            )
            .await
            .map(|_| ())
            .map_err(Error::from);
        tx.batch("rollback to savepoint verdict").await?;
        let now = Utc::now().to_rfc3339();
        let row = json!({
            "id": bucket, "name": bucket, "owner_id": owner, "public": false,
            "avif_autodetection": false, "file_size_limit": null, "allowed_mime_types": null,
            "created_at": now, "updated_at": now,
        });
        found.checks = self
            .explain(
                &tx,
                vec![Spec {
                    table: Table::Buckets,
                    command: "INSERT",
                    clause: Clause::WithCheck,
                    row: "the new row",
                    values: row,
                }],
            )
            .await?;
        tx.rollback().await?;
        Ok(found)
    }

    pub(super) async fn bucket_read(&self) -> Result<Found, Error> {
        let bucket = self.bucket();
        let mut found = Found::new(self.request.operation);
        found.privilege_missing = self.privileges(&[(Table::Buckets, "select")]).await?;
        let existing = self.storage.existing_row(bucket, None).await?;
        let tx = self.begin(self.request.operation, false).await?;
        found.verdict = match tx
            .query_opt("select 1 from storage.buckets where id = $1", &[&bucket])
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::BucketNotFound),
            Err(error) => Err(error.into()),
        };
        self.explain_bucket(&tx, &mut found, existing, |row| {
            vec![using_spec(Table::Buckets, "SELECT", row)]
        })
        .await?;
        tx.rollback().await?;
        Ok(found)
    }

    pub(super) async fn bucket_update(&self) -> Result<Found, Error> {
        let bucket = self.bucket();
        let mut found = Found::new(Operation::BucketUpdate);
        found.privilege_missing = self
            .privileges(&[(Table::Buckets, "update"), (Table::Buckets, "select")])
            .await?;
        let existing = self.storage.existing_row(bucket, None).await?;
        let tx = self.begin(Operation::BucketUpdate, false).await?;
        tx.batch("savepoint verdict").await?;
        found.verdict = match tx
            .query(
                "update storage.buckets set public = public where id = $1 returning id",
                &[&bucket],
            )
            .await
        {
            Ok(rows) if rows.is_empty() => Err(Error::BucketNotFound),
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        };
        tx.batch("rollback to savepoint verdict").await?;
        self.explain_bucket(&tx, &mut found, existing, |row| {
            update_specs(Table::Buckets, row.clone(), row)
        })
        .await?;
        tx.rollback().await?;
        Ok(found)
    }

    pub(super) async fn bucket_delete(&self) -> Result<Found, Error> {
        let bucket = self.bucket();
        let mut found = Found::new(Operation::BucketDelete);
        found.privilege_missing = self
            .privileges(&[(Table::Buckets, "delete"), (Table::Buckets, "select")])
            .await?;
        let existing = self.storage.existing_row(bucket, None).await?;
        let tx = self.begin(Operation::BucketDelete, true).await?;
        tx.batch("savepoint verdict").await?;
        found.verdict = match tx
            .query(
                "delete from storage.buckets where id = $1 returning id",
                &[&bucket],
            )
            .await
        {
            Ok(rows) if rows.is_empty() => Err(Error::BucketNotFound),
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(Error::BucketNotEmpty)
            }
            Err(error) => Err(error.into()),
        };
        tx.batch("rollback to savepoint verdict").await?;
        self.explain_bucket(&tx, &mut found, existing, |row| {
            vec![
                using_spec(Table::Buckets, "DELETE", row.clone()),
                using_spec(Table::Buckets, "SELECT", row),
            ]
        })
        .await?;
        tx.rollback().await?;
        Ok(found)
    }

    async fn explain_bucket(
        &self,
        tx: &Tx,
        found: &mut Found,
        existing: Option<Value>,
        specs: impl FnOnce(Value) -> Vec<Spec>,
    ) -> Result<(), Error> {
        match existing {
            Some(row) => found.checks = self.explain(tx, specs(row)).await?,
            None => found.missing = Some(format!("bucket {} does not exist", self.bucket())),
        }
        Ok(())
    }
}
