//! Per operation: the statements the core runs (for the verdict) and the checks PostgreSQL
//! makes for them (for the explanation).
//!
//! PostgreSQL's rules, for the core's statements (all of which read the table in a WHERE
//! clause, so SELECT policies join in): an INSERT checks the new row against the INSERT
//! policies' `WITH CHECK`; an UPDATE filters the existing row by the UPDATE and SELECT policies'
//! `USING`, then checks the new row against the UPDATE policies' `WITH CHECK` and the SELECT
//! policies' `USING`; a DELETE filters by the DELETE and SELECT policies' `USING`; a SELECT by
//! the SELECT policies' `USING`. A filtered-out row is no error: the statement finds nothing.

use chrono::Utc;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

mod buckets;

use super::CheckRequest;
use super::catalog::{Policy, Table};
use super::evaluate::{Check, Clause, Spec, evaluate};
use crate::core::names::validate_object_name;
use crate::core::objects::{
    ObjectMetadata, RowWrite, Target, content_type_for, mime_allowed, probe_write, write_denied,
    write_operation,
};
use crate::core::{Caller, Error, Operation, Storage};
use crate::db::Tx;

/// What one run found.
pub(super) struct Found {
    /// The core's own answer: `Ok` when the real request would go ahead.
    pub(super) verdict: Result<(), Error>,
    pub(super) checks: Vec<Check>,
    /// The operation really tested.
    pub(super) operation: Operation,
    pub(super) bucket_rule: Option<String>,
    /// Why there was no row to check, when there was none.
    pub(super) missing: Option<String>,
    pub(super) privilege_missing: Option<String>,
    pub(super) notes: Vec<String>,
}

impl Found {
    fn new(operation: Operation) -> Self {
        Self {
            verdict: Ok(()),
            checks: Vec::new(),
            operation,
            bucket_rule: None,
            missing: None,
            privilege_missing: None,
            notes: Vec::new(),
        }
    }

    /// Refused before any statement runs (a name the operation rejects).
    fn refused(operation: Operation, error: Error) -> Self {
        Self {
            verdict: Err(error),
            ..Self::new(operation)
        }
    }
}

pub(super) async fn run(
    storage: &Storage,
    caller: &Caller,
    request: &CheckRequest,
    policies: &[Policy],
    bypasses: bool,
) -> Result<Found, Error> {
    let run = Run {
        storage,
        caller,
        request,
        policies,
        bypasses,
    };
    use Operation as O;
    match request.operation {
        O::Upload | O::Overwrite => run.upload().await,
        O::Download | O::Info | O::List | O::Sign => run.read().await,
        O::Delete => run.delete().await,
        O::Move => run.move_object().await,
        O::Copy => run.copy().await,
        O::BucketCreate => run.bucket_create().await,
        O::BucketGet | O::BucketList => run.bucket_read().await,
        O::BucketUpdate => run.bucket_update().await,
        O::BucketDelete => run.bucket_delete().await,
        other => Err(Error::InvalidInput(format!(
            "the policy tester does not cover {other}; it covers storage.upload, overwrite, \
             download, info, list, sign, delete, move, copy and storage.bucket.create, get, \
             list, update, delete"
        ))),
    }
}

struct Run<'a> {
    storage: &'a Storage,
    caller: &'a Caller,
    request: &'a CheckRequest,
    policies: &'a [Policy],
    bypasses: bool,
}

impl Run<'_> {
    fn path(&self) -> Result<&str, Error> {
        self.request.path.as_deref().ok_or_else(|| {
            Error::InvalidInput(format!(
                "{} needs the object's path",
                self.request.operation
            ))
        })
    }

    fn bucket(&self) -> &str {
        &self.request.bucket
    }

    /// Runs the checks as the caller in `tx` (none for a role that bypasses RLS).
    async fn explain(&self, tx: &Tx, specs: Vec<Spec>) -> Result<Vec<Check>, Error> {
        let mut checks = Vec::new();
        if self.bypasses {
            return Ok(checks);
        }
        for spec in specs {
            checks.push(evaluate(tx, &spec, self.policies).await?);
        }
        Ok(checks)
    }

    /// The first table privilege the statements need and the role lacks, in words.
    async fn privileges(&self, needs: &[(Table, &str)]) -> Result<Option<String>, Error> {
        let role = &self.request.identity.role;
        for (table, privilege) in needs {
            if !self
                .storage
                .has_privilege(role, table.qualified(), privilege)
                .await?
            {
                return Ok(Some(format!(
                    "denied: role {role} has no {} privilege on {} (privileges come before \
                     policies)",
                    privilege.to_uppercase(),
                    table.qualified()
                )));
            }
        }
        Ok(None)
    }

    /// Begins the caller's transaction, bounded in time (a policy may run any query).
    async fn begin(&self, operation: Operation, deleting: bool) -> Result<Tx, Error> {
        let tx = match deleting {
            true => self.storage.begin_deleting(self.caller, operation).await?,
            false => self.storage.begin(self.caller, operation).await?,
        };
        tx.batch("set local statement_timeout = '10s'").await?;
        Ok(tx)
    }

    /// Why there is no existing object to check, in words.
    async fn absence(&self, name: &str) -> Result<String, Error> {
        let bucket = self.bucket();
        Ok(match self.storage.bucket_exists(bucket).await? {
            false => format!("bucket {bucket} does not exist"),
            true => format!("no object {name} in bucket {bucket}"),
        })
    }

    async fn upload(&self) -> Result<Found, Error> {
        let name = self.path()?;
        let bucket = self.bucket();
        let target = self.storage.write_target(bucket, name).await?;
        let overwrite = self.request.operation == Operation::Overwrite && target.exists;
        let operation = write_operation(overwrite);
        let mut found = Found::new(operation);
        if self.request.operation == Operation::Overwrite && !target.exists {
            found.notes.push(
                "no object at this key: an upsert of a new key is an upload (storage.upload)"
                    .into(),
            );
        }
        if let Err(error) = validate_object_name(name) {
            return Ok(Found::refused(operation, error));
        }
        let mime = match content_type_for(self.request.mime.as_deref(), name) {
            Ok(mime) => mime,
            Err(error) => return Ok(Found::refused(operation, error)),
        };
        let needs: &[(Table, &str)] = match overwrite {
            true => &[(Table::Objects, "update"), (Table::Objects, "select")],
            false => &[(Table::Objects, "insert")],
        };
        found.privilege_missing = self.privileges(needs).await?;
        let write = RowWrite {
            bucket,
            name,
            owner: self.caller.owner(),
            user_metadata: None,
            signed: None,
        };
        let tx = self.begin(operation, false).await?;
        let probed = probe_write(&tx, &write, overwrite).await;
        let specs = match (
            overwrite,
            self.storage.existing_row(bucket, Some(name)).await?,
        ) {
            (true, Some(old)) => {
                let mut new = old.clone();
                new["owner_id"] = json!(write.owner);
                // The probe's placeholder: the server fills the metadata once the bytes are in.
                new["metadata"] = json!({});
                new["user_metadata"] = Value::Null;
                update_specs(Table::Objects, old, new)
            }
            _ => vec![insert_spec(new_object(
                bucket,
                name,
                write.owner.as_deref(),
            ))],
        };
        found.checks = self.explain(&tx, specs).await?;
        tx.rollback().await?;
        found.bucket_rule = self
            .bucket_rule(&target, bucket, self.request.size, &mime)
            .await?;
        found.verdict = probed.and_then(|()| {
            match self
                .storage
                .limit_refusal(&target, self.request.size, &mime)
            {
                Some(refusal) => Err(refusal),
                None => Ok(()),
            }
        });
        Ok(found)
    }

    async fn read(&self) -> Result<Found, Error> {
        let name = self.path()?;
        let bucket = self.bucket();
        let mut found = Found::new(self.request.operation);
        found.privilege_missing = self.privileges(&[(Table::Objects, "select")]).await?;
        let existing = self.storage.existing_row(bucket, Some(name)).await?;
        let tx = self.begin(self.request.operation, false).await?;
        found.verdict = match tx
            .query_opt(
                "select 1 from storage.objects where bucket_id = $1 and name = $2",
                &[&bucket, &name],
            )
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::ObjectNotFound),
            Err(error) => Err(error.into()),
        };
        match existing {
            Some(row) => found.checks = self.explain(&tx, vec![select_spec(row)]).await?,
            None => found.missing = Some(self.absence(name).await?),
        }
        tx.rollback().await?;
        Ok(found)
    }

    async fn delete(&self) -> Result<Found, Error> {
        let name = self.path()?;
        let bucket = self.bucket();
        let mut found = Found::new(Operation::Delete);
        found.privilege_missing = self
            .privileges(&[(Table::Objects, "delete"), (Table::Objects, "select")])
            .await?;
        let existing = self.storage.existing_row(bucket, Some(name)).await?;
        let tx = self.begin(Operation::Delete, true).await?;
        tx.batch("savepoint verdict").await?;
        found.verdict = match tx
            .query(
                "delete from storage.objects where bucket_id = $1 and name = $2 returning id",
                &[&bucket, &name],
            )
            .await
        {
            Ok(rows) if rows.is_empty() => Err(Error::ObjectNotFound),
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        };
        tx.batch("rollback to savepoint verdict").await?;
        match existing {
            Some(row) => {
                found.checks = self
                    .explain(
                        &tx,
                        vec![
                            using_spec(Table::Objects, "DELETE", row.clone()),
                            select_spec(row),
                        ],
                    )
                    .await?
            }
            None => found.missing = Some(self.absence(name).await?),
        }
        tx.rollback().await?;
        Ok(found)
    }

    fn destination(&self) -> Result<(&str, &str), Error> {
        let bucket = self
            .request
            .destination_bucket
            .as_deref()
            .unwrap_or(self.bucket());
        let path = self.request.destination_path.as_deref().ok_or_else(|| {
            Error::InvalidInput(format!(
                "{} needs the destination path",
                self.request.operation
            ))
        })?;
        Ok((bucket, path))
    }

    async fn move_object(&self) -> Result<Found, Error> {
        let name = self.path()?;
        let bucket = self.bucket();
        let (to_bucket, to_name) = self.destination()?;
        if let Err(error) = validate_object_name(to_name) {
            return Ok(Found::refused(Operation::Move, error));
        }
        let mut found = Found::new(Operation::Move);
        found.privilege_missing = self
            .privileges(&[(Table::Objects, "update"), (Table::Objects, "select")])
            .await?;
        let existing = self.storage.existing_row(bucket, Some(name)).await?;
        let tx = self.begin(Operation::Move, false).await?;
        tx.batch("savepoint verdict").await?;
        let moved = tx
            .query(
                "update storage.objects set bucket_id = $3, name = $4, last_accessed_at = now() \
                 where bucket_id = $1 and name = $2 \
                 returning metadata",
                &[&bucket, &name, &to_bucket, &to_name],
            )
            .await;
        tx.batch("rollback to savepoint verdict").await?;
        let mut verdict = match moved {
            Ok(rows) => match rows.first() {
                Some(row) => Ok(row.get::<_, Option<Value>>(0)),
                None => Err(Error::ObjectNotFound),
            },
            Err(error) => Err(match error.code() {
                Some(&SqlState::FOREIGN_KEY_VIOLATION) => Error::BucketNotFound,
                Some(&SqlState::INSUFFICIENT_PRIVILEGE) => write_denied(),
                _ => Error::from(error),
            }),
        };
        // Into another bucket, a move meets that bucket's rules (as the core checks them).
        if let Ok(metadata) = &verdict
            && to_bucket != bucket
        {
            let moved: ObjectMetadata = metadata
                .clone()
                .and_then(|m| serde_json::from_value(m).ok())
                .unwrap_or_default();
            let target = self.storage.write_target(to_bucket, to_name).await?;
            let mime = moved
                .mimetype
                .unwrap_or_else(|| "application/octet-stream".into());
            found.bucket_rule = self
                .bucket_rule(&target, to_bucket, moved.size, &mime)
                .await?;
            if let Some(refusal) = self.storage.limit_refusal(&target, moved.size, &mime) {
                verdict = Err(refusal);
            }
        }
        found.verdict = verdict.map(|_| ());
        match existing {
            Some(old) => {
                let mut new = old.clone();
                new["bucket_id"] = json!(to_bucket);
                new["name"] = json!(to_name);
                new["path_tokens"] = json!(to_name.split('/').collect::<Vec<_>>());
                found.checks = self
                    .explain(&tx, update_specs(Table::Objects, old, new))
                    .await?;
            }
            None => found.missing = Some(self.absence(name).await?),
        }
        tx.rollback().await?;
        Ok(found)
    }

    async fn copy(&self) -> Result<Found, Error> {
        let name = self.path()?;
        let bucket = self.bucket();
        let (to_bucket, to_name) = self.destination()?;
        if let Err(error) = validate_object_name(to_name) {
            return Ok(Found::refused(Operation::Copy, error));
        }
        let mut found = Found::new(Operation::Copy);
        found.privilege_missing = self
            .privileges(&[(Table::Objects, "select"), (Table::Objects, "insert")])
            .await?;
        let existing = self.storage.existing_row(bucket, Some(name)).await?;
        let tx = self.begin(Operation::Copy, false).await?;
        let source = tx
            .query_opt(
                "select metadata, user_metadata from storage.objects \
                 where bucket_id = $1 and name = $2",
                &[&bucket, &name],
            )
            .await;
        let owner = self.caller.owner();
        let mut specs = Vec::new();
        if let Some(row) = existing {
            specs.push(select_spec(row));
        } else {
            found.missing = Some(self.absence(name).await?);
        }
        specs.push(insert_spec(new_object(
            to_bucket,
            to_name,
            owner.as_deref(),
        )));
        found.verdict = match source {
            Err(error) => Err(error.into()),
            Ok(None) => Err(Error::ObjectNotFound),
            Ok(Some(row)) => {
                let metadata: ObjectMetadata = row
                    .get::<_, Option<Value>>(0)
                    .and_then(|m| serde_json::from_value(m).ok())
                    .unwrap_or_default();
                let write = RowWrite {
                    bucket: to_bucket,
                    name: to_name,
                    owner: owner.clone(),
                    user_metadata: row.get(1),
                    signed: None,
                };
                let target = self.storage.write_target(to_bucket, to_name).await?;
                let mime = metadata
                    .mimetype
                    .unwrap_or_else(|| "application/octet-stream".into());
                let size = Some(metadata.size.unwrap_or(0));
                found.bucket_rule = self.bucket_rule(&target, to_bucket, size, &mime).await?;
                match probe_write(&tx, &write, false).await {
                    Ok(()) => match self.storage.limit_refusal(&target, size, &mime) {
                        Some(refusal) => Err(refusal),
                        None => Ok(()),
                    },
                    Err(error) => Err(error),
                }
            }
        };
        found.checks = self.explain(&tx, specs).await?;
        tx.rollback().await?;
        Ok(found)
    }

    /// The bucket rule a write of `size` bytes of type `mime` breaks, in words (the core's
    /// rules: [`Storage::limit_refusal`]).
    async fn bucket_rule(
        &self,
        target: &Target,
        bucket: &str,
        size: Option<u64>,
        mime: &str,
    ) -> Result<Option<String>, Error> {
        if !self.storage.bucket_exists(bucket).await? {
            return Ok(Some(format!("bucket {bucket} does not exist")));
        }
        let limit = self.storage.effective_limit(target);
        if let Some(size) = size
            && size > limit
        {
            let whose = match target.file_size_limit {
                Some(bucket_limit) if u64::try_from(bucket_limit).ok() == Some(limit) => {
                    "the bucket's file_size_limit"
                }
                _ => "the server's --max-file-size",
            };
            return Ok(Some(format!(
                "{size} bytes is over {whose} of {limit} bytes"
            )));
        }
        if let Some(allowed) = &target.allowed_mime_types
            && !mime_allowed(allowed, mime)
        {
            return Ok(Some(format!(
                "type {mime} is not among the bucket's allowed_mime_types ({})",
                allowed.join(", ")
            )));
        }
        Ok(None)
    }
}

/// An object row as an upload's probe inserts it (the server fills the metadata and the byte
/// key once the bytes are in).
fn new_object(bucket: &str, name: &str, owner: Option<&str>) -> Value {
    let now = Utc::now().to_rfc3339();
    json!({
        "id": Uuid::new_v4(), "bucket_id": bucket, "name": name, "owner_id": owner,
        "version": null, "metadata": {}, "user_metadata": null,
        "path_tokens": name.split('/').collect::<Vec<_>>(),
        "last_accessed_at": now, "created_at": now, "updated_at": now,
    })
}

fn insert_spec(row: Value) -> Spec {
    Spec {
        table: Table::Objects,
        command: "INSERT",
        clause: Clause::WithCheck,
        row: "the new row",
        values: row,
    }
}

fn select_spec(row: Value) -> Spec {
    using_spec(Table::Objects, "SELECT", row)
}

fn using_spec(table: Table, command: &'static str, row: Value) -> Spec {
    Spec {
        table,
        command,
        clause: Clause::Using,
        row: "the existing row",
        values: row,
    }
}

/// An UPDATE's four checks (see the module documentation).
fn update_specs(table: Table, old: Value, new: Value) -> Vec<Spec> {
    vec![
        using_spec(table, "UPDATE", old.clone()),
        using_spec(table, "SELECT", old),
        Spec {
            table,
            command: "UPDATE",
            clause: Clause::WithCheck,
            row: "the new row",
            values: new.clone(),
        },
        Spec {
            table,
            command: "SELECT",
            clause: Clause::SelectOnNewRow,
            row: "the new row",
            values: new,
        },
    ]
}
