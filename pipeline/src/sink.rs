//! The sink task: makes the dataflow's output durable in the store and the lake.
//!
//! Writes are idempotent (upserts by natural key, lake files rewritten from their key
//! set), so a retried or replayed batch converges to the same rows and files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_schemas::Bar;
use pricestream_store::{Lake, Store, StoreError};
use tokio::sync::mpsc;

use crate::dataflow::SinkBatch;
use crate::metrics as m;
use crate::{PipelineError, Result};

/// Totals of a finished sink.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SinkStats {
    pub batches: u64,
    pub bars: u64,
    pub dead_letters: u64,
    /// Per worker, the last frontier made durable (`None` = input closed, all flushed).
    pub frontiers: BTreeMap<usize, Option<u64>>,
}

const MAX_ATTEMPTS: u32 = 8;

async fn with_retry<F, Fut>(sink: &'static str, mut f: F) -> std::result::Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), StoreError>>,
{
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                metrics::counter!(m::SINK_RETRIES, "sink" => sink).increment(1);
                tracing::warn!(sink, attempt, error = %e, "sink write failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Consumes batches until every worker has dropped its sender.
pub async fn run_sink(
    mut rx: mpsc::Receiver<SinkBatch>,
    store: Arc<dyn Store>,
    lake: Option<Lake>,
) -> Result<SinkStats> {
    let mut stats = SinkStats::default();
    let mut lake = lake;
    while let Some(batch) = rx.recv().await {
        stats.batches += 1;
        if !batch.bars.is_empty() {
            let started = Instant::now();
            let bars = Arc::new(batch.bars);
            with_retry("store", || {
                let store = Arc::clone(&store);
                let bars = Arc::clone(&bars);
                async move { store.upsert_bars(&bars).await }
            })
            .await?;
            record("store", bars.len(), started);
            record_latency("store", bars.len(), batch.emitted_at);
            if let Some(l) = lake.take() {
                let started = Instant::now();
                let bars_for_lake: Vec<Bar> = bars.as_ref().clone();
                let (l, res) = tokio::task::spawn_blocking(move || {
                    let mut l = l;
                    let res = l.write_bars(&bars_for_lake);
                    (l, res)
                })
                .await
                .map_err(|e| PipelineError::Join(e.to_string()))?;
                lake = Some(l);
                res?;
                record("lake", bars.len(), started);
                record_latency("lake", bars.len(), batch.emitted_at);
            }
            stats.bars += bars.len() as u64;
        }
        if !batch.dead.is_empty() {
            for d in &batch.dead {
                metrics::counter!(m::DEAD_LETTERS, "reason" => m::reason_label(&d.reason))
                    .increment(1);
            }
            let dead = Arc::new(batch.dead);
            with_retry("dlq", || {
                let store = Arc::clone(&store);
                let dead = Arc::clone(&dead);
                async move { store.insert_dead_letters(&dead).await }
            })
            .await?;
            stats.dead_letters += dead.len() as u64;
        }
        stats.frontiers.insert(batch.worker, batch.frontier);
    }
    Ok(stats)
}

fn record(sink: &'static str, rows: usize, started: Instant) {
    metrics::histogram!(m::SINK_BATCH_ROWS, "sink" => sink).record(rows as f64);
    metrics::histogram!(m::SINK_WRITE_SECONDS, "sink" => sink)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(m::SINK_ROWS_WRITTEN, "sink" => sink).increment(rows as u64);
}

/// Window close → durable: one observation per bar, all bars of a batch share its time.
fn record_latency(sink: &'static str, bars: usize, emitted_at: Option<Instant>) {
    if let Some(at) = emitted_at {
        metrics::histogram!(m::BAR_SINK_LATENCY, "sink" => sink)
            .record_many(at.elapsed().as_secs_f64(), bars);
    }
}
