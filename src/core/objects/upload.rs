//! Uploads: the write protocol of the module documentation, on every byte store (staging,
//! streaming and the row's commit; in the database store, one transaction).

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use super::write_protocol::{
    PROBE_INSERT, RowWrite, STAGE_KEY, write_operation, write_row_settling,
};
use super::{
    ContentHeaders, SignedUse, Stored, Upload, content_type_for, iso, store_error, too_large,
};
use crate::bytes::postgres::Rechunker;
use crate::bytes::{ByteStream, StoreError, new_key};
use crate::core::meter::{self, ExpectedDigests, Measured};
use crate::core::names::validate_object_name;
use crate::core::{Caller, Error, Operation, Storage};
use crate::db::DbError;
use tokio_postgres::types::ToSql;

impl Storage {
    /// Stores an object. See the module documentation for the protocol.
    pub async fn upload(&self, caller: &Caller, upload: Upload) -> Result<Stored, Error> {
        self.upload_as(caller, upload, None, ExpectedDigests::default())
            .await
    }

    /// Stores an object whose body must have the `expected` digests: a body that does not is
    /// refused with [`Error::DigestMismatch`] before anything is committed.
    pub async fn upload_checked(
        &self,
        caller: &Caller,
        upload: Upload,
        expected: ExpectedDigests,
    ) -> Result<Stored, Error> {
        self.upload_as(caller, upload, None, expected).await
    }

    /// Stores an object through a signed upload URL: `caller` is the server acting on the
    /// token, and `signed` what the token carries (see [`SignedUse`]).
    pub async fn upload_signed(
        &self,
        caller: &Caller,
        upload: Upload,
        signed: SignedUse,
    ) -> Result<Stored, Error> {
        let signed = self.recall_signer(signed).await?;
        self.upload_as(caller, upload, Some(&signed), ExpectedDigests::default())
            .await
    }

    async fn upload_as(
        &self,
        caller: &Caller,
        upload: Upload,
        signed: Option<&SignedUse>,
        expected: ExpectedDigests,
    ) -> Result<Stored, Error> {
        validate_object_name(&upload.name)?;
        let mimetype = content_type_for(upload.content_type.as_deref(), &upload.name)?;
        let write = RowWrite {
            bucket: &upload.bucket,
            name: &upload.name,
            owner: upload.owner.clone().or_else(|| caller.owner()),
            user_metadata: upload.user_metadata.clone(),
            signed,
        };
        let key = new_key();
        // A plain upload to a key (no upsert, no token) is an insert whatever exists: its check
        // and staging go in one round trip, alongside the lookup of the bucket's rules.
        let quick = !upload.upsert && signed.is_none() && !self.bytes.in_database();
        let (target, mut staged) = if quick {
            let (target, staged) = tokio::join!(
                self.write_target(&upload.bucket, &upload.name),
                self.check_and_stage(caller, &write, &key)
            );
            (target?, staged?)
        } else {
            (
                self.write_target(&upload.bucket, &upload.name).await?,
                false,
            )
        };
        // (On an existing key, a token without upsert meets its 409 in the probe.)
        if let Some(signed) = signed
            && !target.exists
        {
            crate::core::signed_writes::check_token_unused(signed)?;
        }
        let limit = self.effective_limit(&target);
        // Told only once the policies allow the write (policy first, then the bucket's rules).
        let refusal = self.limit_refusal(&target, upload.declared_length, &mimetype);
        // An existing key without upsert is probed as an insert: the policy decides between
        // 403 and 409 (see `probe_write`).
        let overwrite = target.exists && upload.upsert;
        let cache_control = upload
            .cache_control
            .clone()
            .unwrap_or_else(|| "no-cache".to_string());
        if self.bytes.in_database() {
            // The policies decide before the body is read, then again in the transaction
            // that writes it.
            let overwrite = self
                .check_settling(caller, &write, overwrite, upload.upsert)
                .await?;
            if let Some(refusal) = refusal {
                return Err(refusal);
            }
            let (body, meter) = meter::metered(upload.body, limit, self.limits.pace(), expected);
            let id = self
                .upload_in_database(
                    caller,
                    &write,
                    overwrite,
                    upload.upsert,
                    body,
                    &meter,
                    &mimetype,
                    &cache_control,
                    &upload.headers,
                )
                .await
                .map_err(|e| self.body_error(&meter, e))?;
            return Ok(Stored {
                id,
                bucket: upload.bucket,
                name: upload.name,
                measured: meter::finish(&meter).ok(),
            });
        }
        if !staged && !overwrite && signed.is_none() && !quick {
            staged = self.check_and_stage(caller, &write, &key).await?;
        }
        // The quick check passed, or the full one (which names a refusal precisely) runs.
        let overwrite = match staged {
            true => false,
            false => {
                self.check_settling(caller, &write, overwrite, upload.upsert)
                    .await?
            }
        };
        if let Some(refusal) = refusal {
            if staged {
                self.unstage(&key).await;
            }
            return Err(refusal);
        }
        if !staged {
            self.stage(&key).await?;
        }
        let (body, meter) = meter::metered(upload.body, limit, self.limits.pace(), expected);
        if let Err(error) = self.stream_into(&key, body).await {
            self.discard_after(&key, &error).await;
            return Err(self.body_error(&meter, error));
        }
        let measured = match meter::finish(&meter) {
            Ok(measured) => measured,
            Err(error) => {
                self.discard(&key).await;
                return Err(error);
            }
        };
        let mut metadata = metadata_json(&measured, &mimetype, &cache_control);
        upload.headers.add_to(&mut metadata);
        match self
            .commit_settling(
                caller,
                write_operation,
                &write,
                &key,
                &metadata,
                overwrite,
                upload.upsert,
            )
            .await
        {
            Ok(id) => Ok(Stored {
                id,
                bucket: upload.bucket,
                name: upload.name,
                measured: Some(measured),
            }),
            Err(error) => {
                self.discard_after_commit(&key, &error).await;
                Err(error)
            }
        }
    }

    /// The `postgres` store's write: probe, stage, chunks and row in ONE transaction as the
    /// caller, so the bytes commit (or vanish) together with the row.
    ///
    /// The first chunk is read before the transaction begins: a body that fits in it is written
    /// in a short transaction, and a client that trickles holds no connection until it has sent
    /// that much. A longer body holds one of the connections uploads may use (a bounded share
    /// of the pool), so however many clients trickle, reads still find a connection.
    #[allow(clippy::too_many_arguments)]
    async fn upload_in_database(
        &self,
        caller: &Caller,
        write: &RowWrite<'_>,
        overwrite: bool,
        upsert: bool,
        body: ByteStream,
        meter: &meter::SharedMeter,
        mimetype: &str,
        cache_control: &str,
        headers: &ContentHeaders,
    ) -> Result<Uuid, Error> {
        // Read in two loops: the second must not poll a body the first saw end.
        let mut body = body.fuse();
        let mut chunks = Rechunker::default();
        let mut first = Vec::new();
        let mut ended = false;
        while first.is_empty() {
            match body.next().await {
                Some(data) => {
                    first = chunks.push(&data.map_err(|e| store_error(StoreError::Body(e)))?)
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let operation = write_operation(overwrite);
        let tx = match ended {
            true => self.begin(caller, operation).await?,
            false => self.begin_upload(caller, operation).await?,
        };
        // The policy check comes before any byte is written, as on every store.
        let overwrite = self.probe_settling(&tx, write, overwrite, upsert).await?;
        let key = new_key();
        let lease = self.limits.upload_lease.as_secs_f64();
        tx.execute(STAGE_KEY, &[&key, &lease]).await?;
        let mut seq = 0i32;
        for chunk in first {
            tx.execute(WRITE_CHUNK, &[&key, &seq, &chunk]).await?;
            seq += 1;
        }
        while let Some(data) = body.next().await {
            let data = data.map_err(|e| store_error(StoreError::Body(e)))?;
            for chunk in chunks.push(&data) {
                tx.execute(WRITE_CHUNK, &[&key, &seq, &chunk]).await?;
                seq += 1;
            }
        }
        match chunks.finish() {
            Some(last) => tx.execute(WRITE_CHUNK, &[&key, &seq, &last]).await?,
            // An empty object still has its chunk 0.
            None if seq == 0 => {
                tx.execute(WRITE_CHUNK, &[&key, &seq, &Vec::<u8>::new()])
                    .await?
            }
            None => 0,
        };
        let mut metadata = metadata_json(&meter::finish(meter)?, mimetype, cache_control);
        headers.add_to(&mut metadata);
        let id = write_row_settling(&tx, write, &key, &metadata, overwrite, upsert).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Checks the caller's policies on the new row an upload is about to insert and, if they
    /// allow it, stages `key`: begin, identity, the probe inside a savepoint that is rolled
    /// back, the staging and commit, in one round trip (two without it, three more for the
    /// probe's savepoint, one for a separate staging). Returns false, with nothing left staged,
    /// when the probe did not pass; the caller then runs the full check, which tells a 403 from
    /// a 409 (see `probe_write`).
    async fn check_and_stage(
        &self,
        caller: &Caller,
        write: &RowWrite<'_>,
        key: &str,
    ) -> Result<bool, Error> {
        let placeholder = json!({});
        let probe: [&(dyn ToSql + Sync); 5] = [
            &write.bucket,
            &write.name,
            &write.owner,
            &placeholder,
            &write.user_metadata,
        ];
        let lease = self.limits.upload_lease.as_secs_f64();
        let result = self
            .once(
                caller,
                Operation::Upload,
                &[
                    ("savepoint write_probe", &[]),
                    (PROBE_INSERT, &probe),
                    // Also where a refused probe leaves the transaction able to go on: the
                    // staging after it then commits, and is undone below.
                    ("rollback to savepoint write_probe", &[]),
                    (STAGE_KEY, &[&key, &lease]),
                ],
            )
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(DbError::Unavailable(reason)) => Err(DbError::Unavailable(reason).into()),
            Err(_) => {
                self.unstage(key).await;
                Ok(false)
            }
        }
    }

    /// Removes a staged key under which no byte was written. If that fails, the collector
    /// removes it when its lease runs out.
    pub(in crate::core) async fn unstage(&self, key: &str) {
        let result = async {
            let conn = self.db.admin().await?;
            conn.execute(
                "delete from storage.byte_journal where key = $1 and state = 'staged'",
                &[&key],
            )
            .await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(key, %error, "could not clear an unused staged key from the journal");
        }
    }

    /// Records `key` as staged before any byte is written under it.
    pub(in crate::core) async fn stage(&self, key: &str) -> Result<(), Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "insert into storage.byte_journal (key, state, lease_until) \
                 values ($1, 'staged', now() + make_interval(secs => $2))",
            )
            .await?;
        conn.execute(&statement, &[&key, &self.limits.upload_lease.as_secs_f64()])
            .await?;
        Ok(())
    }

    /// Writes `body` under the staged `key`, renewing the key's lease while bytes flow.
    ///
    /// Every caller writes a fresh key that nothing reads before a row naming it commits (an
    /// object's version, a rendition), so the store may write it in place
    /// ([`ByteStore::put_staged`](crate::bytes::ByteStore::put_staged)): on the local disk the
    /// directory's fsync then runs while the bytes arrive instead of after them. A crash
    /// mid-write leaves a partial file under a staged key, which the collector frees with it.
    pub(in crate::core) async fn stream_into(
        &self,
        key: &str,
        body: ByteStream,
    ) -> Result<u64, Error> {
        self.renewing_lease(key, self.bytes.put_staged(key, body))
            .await
            .map_err(store_error)
    }

    /// Runs `write` (bytes flowing under the staged `key`), renewing the key's lease until it
    /// ends, so the collector never takes a key whose bytes are still arriving.
    pub(in crate::core) async fn renewing_lease<T>(
        &self,
        key: &str,
        write: impl std::future::Future<Output = T>,
    ) -> T {
        let period = (self.limits.upload_lease / 3).max(Duration::from_millis(200));
        let renew = async {
            loop {
                tokio::time::sleep(period).await;
                if let Err(error) = self.renew_lease(key).await {
                    tracing::warn!(key, %error, "could not renew a staged key's lease");
                }
            }
        };
        tokio::select! {
            done = write => done,
            () = renew => unreachable!("the renewal loop never ends"),
        }
    }

    pub(in crate::core) async fn renew_lease(&self, key: &str) -> Result<(), Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "update storage.byte_journal set lease_until = now() + make_interval(secs => $2) \
                 where key = $1 and state = 'staged'",
            )
            .await?;
        conn.execute(&statement, &[&key, &self.limits.upload_lease.as_secs_f64()])
            .await?;
        Ok(())
    }

    /// Frees a staged key whose write to the store failed with `error`. When the store itself
    /// failed (unreachable, stalled, 5xx), asking it again would only keep the client waiting
    /// for a second timeout: the key stays staged and the collector frees it once its lease has
    /// run out.
    pub(in crate::core) async fn discard_after(&self, key: &str, error: &Error) {
        if let Error::Unavailable(reason) = error {
            tracing::warn!(key, %reason, "a write failed in the byte store; the collector will free its key");
            return;
        }
        self.discard(key).await;
    }

    /// Frees a staged key after its row's commit failed with `error`, unless the commit may
    /// have happened: a connection lost while COMMIT was on its way (a primary stopped, then
    /// its synchronous standby promoted with the commit) answers Unavailable although the row
    /// exists and names the key. Then the key stays staged: a commit removed it from the
    /// journal and the collector never sees it; otherwise the collector frees it once its
    /// lease has run out.
    pub(in crate::core) async fn discard_after_commit(&self, key: &str, error: &Error) {
        if let Error::Unavailable(reason) = error {
            tracing::warn!(key, %reason, "a commit's outcome is unknown; its key stays staged for the collector");
            return;
        }
        self.discard(key).await;
    }

    /// Frees a staged key whose write failed: bytes first, then the journal entry. If either
    /// step fails, the entry stays and the collector finishes the job when the lease ends.
    pub(in crate::core) async fn discard(&self, key: &str) {
        if let Err(error) = self.bytes.delete(key).await {
            tracing::warn!(key, %error, "could not delete the bytes of a failed write; the collector will");
            return;
        }
        let result = async {
            let conn = self.db.admin().await?;
            conn.execute(
                "delete from storage.byte_journal where key = $1 and state = 'staged'",
                &[&key],
            )
            .await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(key, %error, "could not clear a discarded key from the journal");
        }
    }
}

const WRITE_CHUNK: &str = "select storage.write_chunk($1, $2, $3)";

fn metadata_json(measured: &Measured, mimetype: &str, cache_control: &str) -> Value {
    json!({
        "eTag": format!("\"{}\"", measured.md5_hex),
        "size": measured.size,
        "mimetype": mimetype,
        "cacheControl": cache_control,
        "lastModified": iso(Utc::now()),
        "contentLength": measured.size,
        "httpStatusCode": 200,
        "sha256": measured.sha256_hex,
    })
}

impl Storage {
    /// Names the reason an upload's stream failed when the meter knows it better than the
    /// store's error does.
    pub(in crate::core) fn body_error(&self, meter: &meter::SharedMeter, error: Error) -> Error {
        if meter::exceeded(meter) {
            too_large()
        } else if let Some(which) = meter::mismatch(meter) {
            Error::DigestMismatch { which }
        } else if meter::stalled(meter) {
            Error::Timeout(format!(
                "no data was received for {} s; the upload was abandoned",
                self.limits.body_idle_timeout.as_secs_f64()
            ))
        } else if meter::too_slow(meter) {
            Error::Timeout(format!(
                "the upload arrived slower than {} bytes per second over {} s; it was abandoned",
                self.limits.min_body_rate,
                self.limits.body_rate_window.as_secs_f64()
            ))
        } else {
            error
        }
    }
}
