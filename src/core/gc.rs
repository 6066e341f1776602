//! The garbage collector: frees bytes the journal says no row references any more.
//!
//! Eligible: `released` keys older than the grace period (readers of the old version have had
//! time to finish) and `staged` keys whose lease ran out (their uploader is gone). Bytes are
//! deleted before their journal rows, with the rows locked, so a crash mid-pass only means the
//! next pass retries (deleting is idempotent). Across servers, one collects at a time.

use std::time::Duration;

use super::multipart::EXPAND_MANIFESTS;
use super::{Error, Storage};

/// Advisory lock key of the collector ("pgs-gc").
pub const GC_LOCK: i64 = 0x7067_732d_6763;
/// Keys freed per transaction.
const BATCH: i64 = 500;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    /// Keys whose bytes were deleted and whose journal entries were cleared.
    pub freed: u64,
    /// Keys the store failed to delete; they stay in the journal for the next pass.
    pub failed: u64,
    /// False when another server held the collector lock, so this pass did nothing.
    pub ran: bool,
}

impl Storage {
    /// Runs one collection pass: batches until nothing eligible is left (or a batch fails
    /// entirely).
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GcReport, Error> {
        self.collect_garbage_with(grace, &|_| {}).await
    }

    /// [`Storage::collect_garbage`], telling `progress` the running totals after each batch
    /// (for a progress display).
    pub async fn collect_garbage_with(
        &self,
        grace: Duration,
        progress: &(dyn Fn(&GcReport) + Sync),
    ) -> Result<GcReport, Error> {
        // Records of single-use upload tokens are kept until the tokens have expired.
        self.forget_expired_token_uses().await?;
        let mut report = GcReport::default();
        // Abandoned multipart uploads release their parts first, to be freed below.
        self.expire_multipart_uploads().await?;
        loop {
            let batch = self.collect_batch(grace).await?;
            report.ran |= batch.ran;
            report.freed += batch.freed;
            report.failed += batch.failed;
            progress(&report);
            if !batch.ran || batch.freed == 0 || batch.freed + batch.failed < BATCH as u64 {
                if report.ran {
                    // For /metrics (a no-op unless the server exports them).
                    metrics::counter!("pgstorage_gc_runs_total").increment(1);
                    metrics::counter!("pgstorage_gc_freed_keys_total").increment(report.freed);
                    metrics::counter!("pgstorage_gc_failed_keys_total").increment(report.failed);
                }
                return Ok(report);
            }
        }
    }

    async fn collect_batch(&self, grace: Duration) -> Result<GcReport, Error> {
        let mut conn = self.db.admin().await?;
        let tx = conn.transaction().await?;
        let leader: bool = tx
            .query_one("select pg_try_advisory_xact_lock($1)", &[&GC_LOCK])
            .await?
            .get(0);
        if !leader {
            return Ok(GcReport::default());
        }
        // Freeing a segmented object's manifest frees the segments only it names.
        tx.execute(EXPAND_MANIFESTS, &[&grace.as_secs_f64(), &BATCH])
            .await?;
        let keys: Vec<String> = tx
            .query(
                "select key from storage.byte_journal \
                 where (state = 'released' and recorded_at < now() - make_interval(secs => $1)) \
                    or (state = 'staged' and lease_until < now()) \
                 order by recorded_at \
                 limit $2 \
                 for update skip locked",
                &[&grace.as_secs_f64(), &BATCH],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        // One batched delete (a single request per 1,000 keys on S3); a key whose bytes could
        // not be deleted keeps its journal row for the next pass.
        let results = self.bytes.delete_many(&keys).await;
        let mut freed: Vec<&String> = Vec::with_capacity(keys.len());
        for (key, result) in keys.iter().zip(&results) {
            match result {
                Ok(()) => freed.push(key),
                Err(error) => tracing::warn!(key, %error, "collector could not delete bytes"),
            }
        }
        tx.execute(
            "delete from storage.byte_journal where key = any($1)",
            &[&freed],
        )
        .await?;
        tx.commit().await?;
        Ok(GcReport {
            freed: freed.len() as u64,
            failed: (keys.len() - freed.len()) as u64,
            ran: true,
        })
    }

    /// Runs the collector every `interval` until the process ends.
    pub fn spawn_collector(
        &self,
        grace: Duration,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let storage = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match storage.collect_garbage(grace).await {
                    Ok(report) if report.freed > 0 || report.failed > 0 => {
                        tracing::info!(
                            freed = report.freed,
                            failed = report.failed,
                            "garbage collected"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "garbage collection pass failed"),
                }
            }
        })
    }
}
