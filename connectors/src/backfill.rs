//! Backfill jobs: a venue's candles over `[from, to)` written as bars, page by page, with
//! the job's progress persisted after every page (so the CLI's progress bar and the API
//! read the same numbers, and a job can be followed from another process).

use std::sync::Arc;

use pricestream_schemas::{Clock, Interval, Symbol, TimestampNs, NANOS_PER_SEC};
use pricestream_store::{BackfillJob, BackfillState, Store};

use crate::binance::KLINES_PAGE;
use crate::candles::{candle_to_bar, CandleRollups, CandleSource};
use crate::error::{ConnectorError, Result};
use crate::metrics as m;

/// How long after a bucket closed a missing candle counts as absent at the venue.
pub const ABSENT_AFTER_NS: i64 = 120 * NANOS_PER_SEC;

/// A new job, queued.
pub fn new_job(
    source: &dyn CandleSource,
    symbol: Symbol,
    interval: Interval,
    from: TimestampNs,
    to: TimestampNs,
    now: TimestampNs,
) -> Result<BackfillJob> {
    if from >= to {
        return Err(ConnectorError::Config(format!(
            "backfill: from ({from}) must be before to ({to})"
        )));
    }
    Ok(BackfillJob {
        id: pricestream_schemas::ids::new_id(),
        venue: source.venue(),
        symbol,
        interval,
        from,
        to,
        state: BackfillState::Queued,
        cursor: from,
        candles: 0,
        absent: 0,
        error: None,
        created_at: now,
        updated_at: now,
    })
}

/// Runs (or resumes, from `job.cursor`) a job to its end; `progress` is called after
/// every page. With `rollups`, the coarser bars of the written buckets are brought up to
/// date too. On failure the job is stored as failed with its error, and the error is
/// returned.
pub async fn run_job(
    source: &dyn CandleSource,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    rollups: Option<&CandleRollups>,
    job: &mut BackfillJob,
    progress: &mut (dyn FnMut(&BackfillJob) + Send),
) -> Result<u64> {
    job.state = BackfillState::Running;
    job.updated_at = clock.now_ns();
    store.upsert_backfill(job).await?;
    progress(job);
    let step = job.interval.nanos();
    let chunk = step.saturating_mul(KLINES_PAGE as i64);
    while job.cursor < job.to {
        let chunk_to = job.cursor.saturating_add(chunk).min(job.to);
        match page(source, store, clock, rollups, job, chunk_to).await {
            Ok(()) => {}
            Err(e) => {
                if let Some(r) = rollups {
                    // what was written before the failure still gets its coarser bars
                    if let Err(re) = r.flush(store.as_ref(), clock.now_ns()).await {
                        tracing::warn!(error = %re, "rollups of the backfilled candles failed");
                    }
                }
                job.state = BackfillState::Failed;
                job.error = Some(e.to_string());
                job.updated_at = clock.now_ns();
                store.upsert_backfill(job).await?;
                progress(job);
                return Err(e);
            }
        }
        progress(job);
    }
    if let Some(r) = rollups {
        r.flush(store.as_ref(), clock.now_ns()).await?;
    }
    job.state = BackfillState::Completed;
    job.updated_at = clock.now_ns();
    store.upsert_backfill(job).await?;
    progress(job);
    Ok(job.candles)
}

async fn page(
    source: &dyn CandleSource,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    rollups: Option<&CandleRollups>,
    job: &mut BackfillJob,
    chunk_to: TimestampNs,
) -> Result<()> {
    let step = job.interval.nanos();
    let candles = source
        .candles(&job.symbol, job.interval, job.cursor, chunk_to)
        .await?;
    let bars: Vec<_> = candles.iter().map(candle_to_bar).collect();
    let now = clock.now_ns();
    store.upsert_bars(&bars).await?;
    if let Some(r) = rollups {
        r.note(&bars);
    }
    let got: std::collections::HashSet<TimestampNs> = bars.iter().map(|b| b.bucket_start).collect();
    let first = job.interval.bucket_start(job.cursor + step - 1);
    let lacking: Vec<TimestampNs> = (0..)
        .map(|i| first + i * step)
        .take_while(|b| *b < chunk_to && *b + step + ABSENT_AFTER_NS <= now)
        .filter(|b| !got.contains(b))
        .collect();
    store
        .record_absent_candles(job.venue, &job.symbol, job.interval, &lacking, now)
        .await?;
    metrics::counter!(m::CANDLES_WRITTEN, "venue" => job.venue.as_str(), "origin" => "backfill")
        .increment(bars.len() as u64);
    job.candles += bars.len() as u64;
    job.absent += lacking.len() as u64;
    job.cursor = chunk_to;
    job.updated_at = now;
    store.upsert_backfill(job).await?;
    Ok(())
}

/// Runs the backfill jobs queued through the API (`POST /v1/backfills`), one at a time,
/// as a scheduled pass: each pass takes queued jobs of the venues it has a source for
/// until none is left.
pub struct BackfillWorker {
    pub sources: Vec<Arc<dyn CandleSource>>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub poll_interval: std::time::Duration,
    /// Coarser bars of the backfilled buckets (see [`CandleRollups`]).
    pub rollups: Option<Arc<CandleRollups>>,
}

#[async_trait::async_trait]
impl crate::runs::PollJob for BackfillWorker {
    fn name(&self) -> &'static str {
        "backfill_worker"
    }

    fn interval(&self) -> std::time::Duration {
        self.poll_interval
    }

    async fn run_once(&self) -> Result<u64> {
        let venues: Vec<_> = self.sources.iter().map(|s| s.venue()).collect();
        let mut written = 0;
        let mut first_err = None;
        while let Some(mut job) = self
            .store
            .claim_backfill(&venues, self.clock.now_ns())
            .await?
        {
            let Some(source) = self.sources.iter().find(|s| s.venue() == job.venue) else {
                continue;
            };
            tracing::info!(job = %job.id, venue = %job.venue, symbol = %job.symbol, "backfill job started");
            match run_job(
                source.as_ref(),
                &self.store,
                &self.clock,
                self.rollups.as_deref(),
                &mut job,
                &mut |_| {},
            )
            .await
            {
                Ok(n) => written += n,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "backfill job failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }
}
