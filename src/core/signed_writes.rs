//! Writes through a signed upload URL. The token was granted under the signer's policies when it
//! was signed; its use runs with the server's privilege, but never beyond what the token still
//! stands for at the time of use:
//! - a write that turns out to overwrite an object (it may have been created since signing)
//!   needs the signer's right to overwrite *that* row, checked as the signer under Row Level
//!   Security (operation `storage.overwrite`), in the transaction that commits the write. The
//!   signer's role and claims are recorded in `storage.signed_upload_uses` when signing, under
//!   the token's id, rather than carried in the URL;
//! - a token that may not upsert uploads at most once, ever: its use is marked in that table in
//!   the transaction that commits the row (so a failed upload leaves the token usable), and a
//!   used token is refused even after the object is gone.

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

use super::objects::{RowWrite, probe_row, write_denied};
use super::{Caller, Error, Operation, Storage};
use crate::auth::Identity;
use crate::auth::signed_url::UploadGrant;
use crate::db::Tx;

/// What a signed upload URL carries into its use.
#[derive(Debug, Clone)]
pub struct SignedUse {
    /// The token's id.
    pub token_id: String,
    /// The signer as the token names them (role and `sub`); replaced by what the server
    /// recorded when signing, all the claims, when it has that record.
    pub signer: Caller,
    /// A token that may upload only once (one without upsert).
    pub once: bool,
    /// The token's expiry: after it the token is refused anyway, and its record may go.
    pub expires_at: DateTime<Utc>,
    /// Whether the token's use is already recorded (read before the upload starts).
    pub used: bool,
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
    if signed.once {
        let identity = &signed.signer.identity;
        let claims = serde_json::Value::Object(identity.claims.clone());
        tx.execute(
            "select storage.use_upload_token($1, $2, $3, $4)",
            &[
                &signed.token_id,
                &identity.role,
                &claims,
                &signed.expires_at,
            ],
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

/// Refuses a single-use token already used, before any byte is read (the mark made when the
/// row commits is what makes the rule hold under concurrency).
pub(super) fn check_token_unused(signed: &SignedUse) -> Result<(), Error> {
    if signed.once && signed.used {
        return Err(Error::Conflict(USED.into()));
    }
    Ok(())
}

impl Storage {
    /// Records who signed an upload URL (role and all claims) under the token's id, until
    /// `expires_at`, for the URL's use to be judged as the signer.
    pub async fn remember_upload_signer(
        &self,
        token_id: &str,
        signer: &Identity,
        expires_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "insert into storage.signed_upload_uses \
                     (token_id, signer_role, signer_claims, expires_at) \
                 values ($1, $2, $3, $4)",
            )
            .await?;
        let claims = serde_json::Value::Object(signer.claims.clone());
        conn.execute(&statement, &[&token_id, &signer.role, &claims, &expires_at])
            .await?;
        Ok(())
    }

    /// `signed` with the signer the server recorded when signing, and whether the token has
    /// been used. A token without a record (signed before records were kept) keeps what it
    /// says of its signer.
    pub(super) async fn recall_signer(&self, mut signed: SignedUse) -> Result<SignedUse, Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "select signer_role, signer_claims, used_at is not null \
                 from storage.signed_upload_uses where token_id = $1",
            )
            .await?;
        if let Some(row) = conn.query_opt(&statement, &[&signed.token_id]).await? {
            let claims: serde_json::Value = row.get(1);
            if let serde_json::Value::Object(claims) = claims {
                signed.signer.identity = Identity {
                    role: row.get(0),
                    claims,
                };
            }
            signed.used = row.get(2);
        }
        Ok(signed)
    }

    /// Who a signed upload URL acts as when a front runs the upload as its signer (resumable
    /// uploads): the role and claims recorded when it was signed, else what the token names.
    pub async fn upload_signer(&self, grant: &UploadGrant) -> Result<Identity, Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "select signer_role, signer_claims \
                 from storage.signed_upload_uses where token_id = $1",
            )
            .await?;
        if let Some(row) = conn.query_opt(&statement, &[&grant.id]).await?
            && let serde_json::Value::Object(claims) = row.get::<_, serde_json::Value>(1)
        {
            return Ok(Identity {
                role: row.get(0),
                claims,
            });
        }
        Ok(Identity {
            role: grant.role.clone().unwrap_or_else(|| Identity::ANON.into()),
            claims: grant.claims_in_token(),
        })
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
