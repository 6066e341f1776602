//! Writes through a signed upload URL. The token was granted under the signer's policies when it
//! was signed; its use runs with the server's privilege, but never beyond what the token still
//! stands for at the time of use:
//! - a write that turns out to overwrite an object (it may have been created since signing)
//!   needs the signer's right to overwrite *that* row, checked as the signer under Row Level
//!   Security (operation `storage.overwrite`), in the transaction that commits the write;
//! - a token that may not upsert uploads at most once, ever: its use is recorded in
//!   `storage.signed_upload_uses` in the transaction that commits the row (so a failed upload
//!   leaves the token usable), and a recorded token is refused even after the object is gone.

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

use super::objects::{RowWrite, probe_row, write_denied};
use super::{Caller, Error, Operation, Storage};
use crate::db::Tx;

/// What a signed upload URL carries into its use.
#[derive(Debug, Clone)]
pub struct SignedUse {
    /// The signer, as they were when signing (role and claims).
    pub signer: Caller,
    /// Set for a token that may upload only once.
    pub once: Option<TokenUse>,
}

/// The identity of a single-use token, and when its record may be forgotten.
#[derive(Debug, Clone)]
pub struct TokenUse {
    pub id: String,
    /// The token's expiry: after it the token is refused anyway.
    pub expires_at: DateTime<Utc>,
}

const USED: &str = "this signed upload URL has already been used; ask for a new one";

/// Switches the transaction to the signer for a probe (undone by rolling back the savepoint,
/// which restores the settings too).
const AS_SIGNER: &str = "select set_config('role', $1, true), \
     set_config('request.jwt.claims', $2, true), \
     set_config('request.jwt.claim.sub', $3, true), \
     set_config('request.jwt.claim.role', $1, true), \
     set_config('storage.operation', $4, true)";

/// Checks, inside `tx`, that the signer may overwrite the row `write` targets: the overwrite
/// probe runs as the signer under `storage.overwrite`, then everything it did, the switch of
/// identity included, is rolled back.
pub(super) async fn probe_as_signer(
    tx: &Tx,
    signed: &SignedUse,
    write: &RowWrite<'_>,
) -> Result<(), Error> {
    let identity = &signed.signer.identity;
    let claims = serde_json::Value::Object(identity.claims.clone()).to_string();
    let sub = identity.sub().unwrap_or_default();
    tx.batch("savepoint signer_probe").await?;
    let probed = async {
        tx.execute(
            AS_SIGNER,
            &[
                &identity.role,
                &claims,
                &sub,
                &Operation::Overwrite.as_str(),
            ],
        )
        .await?;
        probe_row(tx, write, true).await
    }
    .await;
    tx.batch("rollback to savepoint signer_probe").await?;
    match probed {
        Err(Error::Forbidden(_)) => Err(write_denied()),
        other => other,
    }
}

/// What a signed write checks in the transaction that writes its row: the token's single use,
/// and the signer's right to overwrite when it overwrites.
pub(super) async fn before_row(
    tx: &Tx,
    signed: &SignedUse,
    write: &RowWrite<'_>,
    overwrite: bool,
) -> Result<(), Error> {
    if let Some(once) = &signed.once {
        tx.execute(
            "select storage.use_upload_token($1, $2)",
            &[&once.id, &once.expires_at],
        )
        .await
        .map_err(|e| match e.code() {
            Some(&SqlState::UNIQUE_VIOLATION) => Error::Conflict(USED.into()),
            _ => Error::from(e),
        })?;
    }
    if overwrite {
        probe_as_signer(tx, signed, write).await?;
    }
    Ok(())
}

impl Storage {
    /// Refuses a single-use token already used, before any byte is read (the record made when
    /// the row commits is what makes the rule hold under concurrency).
    pub(super) async fn check_token_unused(&self, signed: &SignedUse) -> Result<(), Error> {
        let Some(once) = &signed.once else {
            return Ok(());
        };
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "select exists (select 1 from storage.signed_upload_uses where token_id = $1)",
            )
            .await?;
        let used: bool = conn.query_one(&statement, &[&once.id]).await?.get(0);
        if used {
            return Err(Error::Conflict(USED.into()));
        }
        Ok(())
    }

    /// Forgets the uses of tokens that expired long enough ago that no server, whatever its
    /// clock, still accepts them. Returns how many were forgotten.
    pub async fn forget_expired_token_uses(&self) -> Result<u64, Error> {
        let conn = self.db.admin().await?;
        Ok(conn
            .execute(
                "delete from storage.signed_upload_uses \
                 where expires_at < now() - interval '1 hour'",
                &[],
            )
            .await?)
    }
}
