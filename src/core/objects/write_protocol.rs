//! The policy side of every write: probing the row about to be written as the caller, settling
//! an upsert against concurrent changes, and writing the row.

use serde_json::{Value, json};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{SETTLE_ATTEMPTS, SignedUse, write_denied, write_error};
use crate::core::{Caller, Error, Operation, Storage};
use crate::db::Tx;

impl Storage {
    /// Evaluates the caller's policies on the row about to be written, then rolls back.
    pub(in crate::core) async fn check_write(
        &self,
        caller: &Caller,
        operation: Operation,
        write: &RowWrite<'_>,
        overwrite: bool,
    ) -> Result<(), Error> {
        let tx = self.begin(caller, operation).await?;
        probe_write(&tx, write, overwrite).await
        // Dropping the transaction rolls the probe back.
    }

    /// The policy check of an upload; for an upsert whose target was created or deleted since
    /// it was looked up, checks the other mode instead. Returns whether the write overwrites.
    pub(in crate::core) async fn check_settling(
        &self,
        caller: &Caller,
        write: &RowWrite<'_>,
        mut overwrite: bool,
        upsert: bool,
    ) -> Result<bool, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let operation = write_operation(overwrite);
            match self.check_write(caller, operation, write, overwrite).await {
                Ok(()) => return Ok(overwrite),
                Err(error) if upsert && attempts < SETTLE_ATTEMPTS => {
                    match self.settles(&error, write, overwrite).await? {
                        Some(next) => overwrite = next,
                        None => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// [`probe_write`] inside a write's transaction (begun under `write_operation(overwrite)`);
    /// for an upsert whose target was created or deleted concurrently, probes the other mode
    /// instead, under that mode's operation name. Returns whether the write overwrites.
    pub(in crate::core) async fn probe_settling(
        &self,
        tx: &Tx,
        write: &RowWrite<'_>,
        mut overwrite: bool,
        upsert: bool,
    ) -> Result<bool, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match probe_write(tx, write, overwrite).await {
                Ok(()) => return Ok(overwrite),
                Err(error) => error,
            };
            let next = match upsert && attempts < SETTLE_ATTEMPTS {
                true => self.settles(&error, write, overwrite).await?,
                false => None,
            };
            let Some(next) = next else {
                return Err(error);
            };
            overwrite = next;
            switch_operation(tx, write_operation(overwrite)).await?;
        }
    }

    /// Whether a failed probe only means the target changed under a concurrent request, and
    /// if so the mode to probe next: an insert that collided becomes an overwrite; an overwrite
    /// refused because its row has gone since becomes an insert (one refused while the row is
    /// still there is final: 403).
    async fn settles(
        &self,
        error: &Error,
        write: &RowWrite<'_>,
        overwrite: bool,
    ) -> Result<Option<bool>, Error> {
        Ok(match error {
            Error::AlreadyExists if !overwrite => Some(true),
            // Refused while the row still exists: final. Gone since: insert it instead.
            Error::Forbidden(_) if overwrite => {
                match self.write_target(write.bucket, write.name).await?.exists {
                    true => None,
                    false => Some(false),
                }
            }
            _ => None,
        })
    }

    /// Commits like [`Storage::commit_write`]; for an upsert whose target changed since the
    /// check (created or deleted by a concurrent request), commits in the other mode instead,
    /// so an upsert never answers 409. Each attempt runs under its own operation name, so the
    /// policies judge what is really done.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit_settling(
        &self,
        caller: &Caller,
        operation: impl Fn(bool) -> Operation,
        write: &RowWrite<'_>,
        key: &str,
        metadata: &Value,
        mut overwrite: bool,
        upsert: bool,
    ) -> Result<Uuid, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self
                .commit_write(
                    caller,
                    operation(overwrite),
                    write,
                    key,
                    metadata,
                    overwrite,
                )
                .await;
            match result {
                Err(Error::AlreadyExists) if upsert && !overwrite && attempts < 3 => {
                    overwrite = true
                }
                Err(Error::Conflict(_)) if upsert && overwrite && attempts < 3 => overwrite = false,
                other => return other,
            }
        }
    }

    /// Writes the row pointing at `key` and commits: begin, identity, the row and commit in one
    /// round trip (a signed write re-checks its token first, in the same transaction).
    async fn commit_write(
        &self,
        caller: &Caller,
        operation: Operation,
        write: &RowWrite<'_>,
        key: &str,
        metadata: &Value,
        overwrite: bool,
    ) -> Result<Uuid, Error> {
        if write.signed.is_some() {
            let tx = self.begin(caller, operation).await?;
            let id = write_row(&tx, write, key, metadata, overwrite).await?;
            tx.commit().await?;
            return Ok(id);
        }
        let id = Uuid::new_v4();
        let rows = self
            .once(
                caller,
                operation,
                &[(row_sql(overwrite), &row_params(write, &key, metadata, &id))],
            )
            .await
            .map_err(db_write_error)?;
        written_id(overwrite, id, rows.first().map_or(&[][..], Vec::as_slice))
    }
}

/// Inserts the row (no RETURNING: it would check the new row against SELECT policies as well,
/// and an INSERT policy alone must be enough to upload). Parameters as in [`row_params`];
/// public for `pgstorage bench-sql`.
pub const INSERT_ROW: &str = "insert into storage.objects \
     (id, bucket_id, name, owner_id, version, metadata, user_metadata) \
     values ($7, $1, $2, $3, $4, $5, $6)";

/// Switches an existing row to new bytes.
pub const OVERWRITE_ROW: &str = "update storage.objects set owner_id = $3, version = $4, \
     metadata = $5, user_metadata = $6, last_accessed_at = now() \
     where bucket_id = $1 and name = $2 and $7::uuid is not null returning id";

/// The insert probe: the row about to be written, with a placeholder for the metadata and no
/// bytes (bucket, name, owner, metadata, user_metadata).
pub const PROBE_INSERT: &str = "insert into storage.objects \
     (bucket_id, name, owner_id, metadata, user_metadata) values ($1, $2, $3, $4, $5)";

/// Records a key as staged inside the caller's transaction (key, lease in seconds).
pub const STAGE_KEY: &str = "select storage.stage_key($1, $2)";

fn row_sql(overwrite: bool) -> &'static str {
    if overwrite { OVERWRITE_ROW } else { INSERT_ROW }
}

fn row_params<'a>(
    write: &'a RowWrite<'_>,
    key: &'a &'a str,
    metadata: &'a Value,
    id: &'a Uuid,
) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 7] {
    [
        &write.bucket,
        &write.name,
        &write.owner,
        key,
        metadata,
        &write.user_metadata,
        id,
    ]
}

fn written_id(overwrite: bool, id: Uuid, rows: &[Row]) -> Result<Uuid, Error> {
    if !overwrite {
        return Ok(id);
    }
    rows.first().map(|row| row.get(0)).ok_or_else(|| {
        Error::Conflict("the object was deleted or changed while uploading; retry".into())
    })
}

/// Writes the row inside `tx` (no commit). A signed upload first re-checks, in this same
/// transaction, what its token allows against what exists now (see `signed_writes`).
pub(in crate::core) async fn write_row(
    tx: &Tx,
    write: &RowWrite<'_>,
    key: &str,
    metadata: &Value,
    overwrite: bool,
) -> Result<Uuid, Error> {
    if let Some(signed) = write.signed {
        crate::core::signed_writes::before_row(tx, signed, write, overwrite).await?;
    }
    let id = Uuid::new_v4();
    let rows = tx
        .query(row_sql(overwrite), &row_params(write, &key, metadata, &id))
        .await
        .map_err(write_error)?;
    written_id(overwrite, id, &rows)
}

/// [`write_error`] for a failure of [`Storage::once`].
pub(super) fn db_write_error(error: crate::db::DbError) -> Error {
    match error {
        crate::db::DbError::Postgres(error) => write_error(error),
        other => Error::from(other),
    }
}

/// The operation of a write: an overwrite of an existing object, or the upload of a new one.
pub(in crate::core) fn write_operation(overwrite: bool) -> Operation {
    if overwrite {
        Operation::Overwrite
    } else {
        Operation::Upload
    }
}

/// Switches the operation a transaction runs under (what `storage.operation()` answers), when a
/// write changes mode half-way.
async fn switch_operation(tx: &Tx, operation: Operation) -> Result<(), Error> {
    tx.execute(
        "select set_config('storage.operation', $1, true)",
        &[&operation.as_str()],
    )
    .await?;
    Ok(())
}

/// [`write_row`] inside an upload's transaction; for an upsert whose target was created or
/// deleted concurrently, writes in the other mode, under that mode's operation name.
pub(in crate::core) async fn write_row_settling(
    tx: &Tx,
    write: &RowWrite<'_>,
    key: &str,
    metadata: &Value,
    mut overwrite: bool,
    upsert: bool,
) -> Result<Uuid, Error> {
    if !upsert {
        return write_row(tx, write, key, metadata, overwrite).await;
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        tx.batch("savepoint row").await?;
        match write_row(tx, write, key, metadata, overwrite).await {
            Err(Error::AlreadyExists) if !overwrite && attempts < SETTLE_ATTEMPTS => {}
            Err(Error::Conflict(_)) if overwrite && attempts < SETTLE_ATTEMPTS => {}
            other => return other,
        }
        tx.batch("rollback to savepoint row").await?;
        overwrite = !overwrite;
        switch_operation(tx, write_operation(overwrite)).await?;
    }
}

/// Runs the caller's policies on the row about to be written, then rolls the probe back (the
/// transaction is left as it was). For a signed upload that overwrites, the signer's policies
/// must allow the overwrite too (see `signed_writes`).
///
/// Policy first, then existence: PostgreSQL checks an INSERT's policies before its unique key,
/// so an insert probe on an existing key answers 409 only to a caller whose insert would be
/// allowed; a refused one answers 409 if the caller may see the row, else the same 403 as for
/// a missing key. A refused overwrite is that 403 as well, whether the row is hidden from the
/// caller or only not theirs to change.
pub(in crate::core) async fn probe_write(
    tx: &Tx,
    write: &RowWrite<'_>,
    overwrite: bool,
) -> Result<(), Error> {
    tx.batch("savepoint write_probe").await?;
    let probed = probe_row(tx, write, overwrite).await;
    tx.batch("rollback to savepoint write_probe").await?;
    match probed {
        Err(Error::Forbidden(_)) => {
            if !overwrite && visible(tx, write).await? {
                Err(Error::AlreadyExists)
            } else {
                Err(write_denied())
            }
        }
        Ok(()) if overwrite => match write.signed {
            Some(signed) => crate::core::signed_writes::probe_as_signer(tx, signed, write).await,
            None => Ok(()),
        },
        other => other,
    }
}

/// The probe's statement: the row about to be written, with a placeholder for the metadata
/// and no bytes.
pub(in crate::core) async fn probe_row(
    tx: &Tx,
    write: &RowWrite<'_>,
    overwrite: bool,
) -> Result<(), Error> {
    let placeholder = json!({});
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &write.bucket,
        &write.name,
        &write.owner,
        &placeholder,
        &write.user_metadata,
    ];
    if overwrite {
        // An update that waited for a row a concurrent request deleted follows that row and
        // finds it gone, even when the request wrote the name anew in the same transaction:
        // the new row is not in the statement's snapshot. A second statement takes a fresh
        // snapshot and judges the row that exists now; refused twice is refused.
        for _ in 0..2 {
            let updated = tx
                .execute(
                    "update storage.objects set owner_id = $3, metadata = $4, user_metadata = $5 \
                     where bucket_id = $1 and name = $2",
                    &params,
                )
                .await
                .map_err(write_error)?;
            if updated > 0 {
                return Ok(());
            }
        }
        return Err(write_denied());
    } else {
        tx.execute(PROBE_INSERT, &params)
            .await
            .map_err(write_error)?;
    }
    Ok(())
}

/// Whether the caller's policies let it see the row a write targets.
async fn visible(tx: &Tx, write: &RowWrite<'_>) -> Result<bool, Error> {
    Ok(tx
        .query_one(
            "select exists (select 1 from storage.objects where bucket_id = $1 and name = $2)",
            &[&write.bucket, &write.name],
        )
        .await?
        .get(0))
}

/// The row fields a write sets, whatever the operation, and the authority it runs on.
pub(in crate::core) struct RowWrite<'a> {
    pub(in crate::core) bucket: &'a str,
    pub(in crate::core) name: &'a str,
    pub(in crate::core) owner: Option<String>,
    pub(in crate::core) user_metadata: Option<Value>,
    /// Set when the write is done through a signed upload URL.
    pub(in crate::core) signed: Option<&'a SignedUse>,
}
