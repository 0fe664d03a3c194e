//! The sink task: makes the dataflow's output durable in the store and the lake.
//!
//! Writes are idempotent (upserts by natural key, lake files rewritten from their key
//! set), so a retried or replayed batch converges to the same rows and files.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_schemas::{Bar, Quote, Signal};
use pricestream_store::{DeadLetter, Lake, Store, StoreError};
use tokio::sync::mpsc;

use crate::dataflow::SinkBatch;
use crate::live::{LiveEvent, LiveHub};
use crate::metrics as m;
use crate::{PipelineError, Result};

/// Totals of a finished sink.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SinkStats {
    pub batches: u64,
    pub bars: u64,
    pub signals: u64,
    pub quotes: u64,
    pub dead_letters: u64,
    /// Alert triggers newly stored (and queued for delivery).
    pub alerts: u64,
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

/// How the sink runs.
#[derive(Debug, Clone, Copy)]
pub struct SinkOptions {
    /// Number of dataflow workers (their frontiers together make the sink's watermark).
    pub workers: usize,
    /// Days are compacted in the lake once the watermark is this far past their end.
    pub allowed_lateness_ns: i64,
    /// Also write raw quotes to the store (for latest quotes and SQL users).
    pub store_quotes: bool,
}

/// Publishes the sink's results to a transport (Kafka's `bars.v1`, `signals.v1`,
/// `quotes.dlq`): each call returns once the transport holds the rows durably.
#[async_trait::async_trait]
pub trait ResultPublisher: Send + Sync {
    async fn bars(&self, bars: &[Bar]) -> std::result::Result<(), String>;
    async fn signals(&self, signals: &[Signal]) -> std::result::Result<(), String>;
    async fn dead_letters(&self, dead: &[DeadLetter]) -> std::result::Result<(), String>;
    async fn alerts(
        &self,
        alerts: &[pricestream_schemas::AlertEvent],
    ) -> std::result::Result<(), String>;
}

/// Optional parts of the sink beyond the store and the lake.
#[derive(Clone, Default)]
pub struct SinkHooks {
    /// Where results are published besides the store and the lake.
    pub publisher: Option<Arc<dyn ResultPublisher>>,
    /// Called with the sink's watermark (the least worker frontier) each time everything
    /// below it is durable in every sink: offsets may be committed up to there.
    pub on_durable: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// Set by the dataflow when it was dropped without flushing (partitions revoked):
    /// the sink then writes nothing more once its input ends (buffered raw quotes are
    /// rebuilt by the replay).
    pub aborted: Option<Arc<AtomicBool>>,
}

async fn publish_results<F, Fut>(what: &'static str, f: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), String>>,
{
    let started = Instant::now();
    f().await
        .map_err(|e| PipelineError::Publish(format!("publishing {what}: {e}")))?;
    metrics::histogram!(m::SINK_WRITE_SECONDS, "sink" => what)
        .record(started.elapsed().as_secs_f64());
    Ok(())
}

fn publish<T: Clone>(live: Option<&LiveHub>, rows: &[T], wrap: fn(T) -> LiveEvent) {
    if let Some(hub) = live.filter(|h| h.subscribers() > 0) {
        for r in rows {
            hub.publish(wrap(r.clone()));
        }
    }
}

const HOUR_NS: i64 = 3_600 * 1_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

/// Writes `rows` to the store with retries and records the sink metrics.
async fn write_store<T, F, Fut>(
    sink: &'static str,
    store: &Arc<dyn Store>,
    rows: &Arc<Vec<T>>,
    write: F,
) -> std::result::Result<(), StoreError>
where
    F: Fn(Arc<dyn Store>, Arc<Vec<T>>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), StoreError>>,
{
    let started = Instant::now();
    with_retry(sink, || write(Arc::clone(store), Arc::clone(rows))).await?;
    record(sink, rows.len(), started);
    Ok(())
}

/// Runs blocking lake work on the blocking pool, handing the lake back afterwards.
async fn with_lake<T, F>(lake: &mut Option<Lake>, f: F) -> Result<Option<T>>
where
    T: Send + 'static,
    F: FnOnce(&mut Lake) -> std::result::Result<T, StoreError> + Send + 'static,
{
    let Some(mut l) = lake.take() else {
        return Ok(None);
    };
    let (l, res) = tokio::task::spawn_blocking(move || {
        let res = f(&mut l);
        (l, res)
    })
    .await
    .map_err(|e| PipelineError::Join(e.to_string()))?;
    *lake = Some(l);
    Ok(Some(res?))
}

/// Consumes batches until every worker has dropped its sender.
pub async fn run_sink(
    rx: mpsc::Receiver<SinkBatch>,
    store: Arc<dyn Store>,
    lake: Option<Lake>,
    opts: SinkOptions,
    live: Option<LiveHub>,
) -> Result<SinkStats> {
    run_sink_with(rx, store, lake, opts, live, SinkHooks::default()).await
}

/// [`run_sink`] with a result publisher, a durability callback and an abort flag.
pub async fn run_sink_with(
    mut rx: mpsc::Receiver<SinkBatch>,
    store: Arc<dyn Store>,
    lake: Option<Lake>,
    opts: SinkOptions,
    live: Option<LiveHub>,
    hooks: SinkHooks,
) -> Result<SinkStats> {
    let mut stats = SinkStats::default();
    let mut lake = lake;
    let mut compacted_before = i64::MIN;
    let mut newest_bar_end = i64::MIN;
    let mut quote_hours: BTreeMap<i64, Vec<Quote>> = BTreeMap::new();
    while let Some(batch) = rx.recv().await {
        stats.batches += 1;
        stats.quotes += batch.quotes.len() as u64;
        if !batch.quotes.is_empty() && opts.store_quotes {
            let quotes = Arc::new(batch.quotes.clone());
            write_store("store_quotes", &store, &quotes, |s, q| async move {
                s.insert_quotes(&q).await
            })
            .await?;
        }
        publish(live.as_ref(), &batch.quotes, LiveEvent::Quote);
        for q in batch.quotes {
            quote_hours
                .entry(q.ts_event - q.ts_event.rem_euclid(HOUR_NS))
                .or_default()
                .push(q);
        }
        if let Some(end) = batch
            .bars
            .iter()
            .filter(|b| b.interval == pricestream_schemas::Interval::M1)
            .map(|b| b.bucket_end())
            .max()
        {
            newest_bar_end = newest_bar_end.max(end);
        }
        if !batch.bars.is_empty() {
            let bars = Arc::new(batch.bars);
            write_store("store", &store, &bars, |s, b| async move {
                s.upsert_bars(&b).await
            })
            .await?;
            record_latency("store", bars.len(), batch.emitted_at);
            let started = Instant::now();
            let for_lake = Arc::clone(&bars);
            if with_lake(&mut lake, move |l| l.write_bars(&for_lake))
                .await?
                .is_some()
            {
                record("lake", bars.len(), started);
                record_latency("lake", bars.len(), batch.emitted_at);
            }
            if let Some(p) = &hooks.publisher {
                publish_results("publish_bars", || p.bars(&bars)).await?;
            }
            publish(live.as_ref(), &bars, LiveEvent::Bar);
            stats.bars += bars.len() as u64;
        }
        if !batch.signals.is_empty() {
            let signals = Arc::new(batch.signals);
            write_store("store_signals", &store, &signals, |s, x| async move {
                s.upsert_signals(&x).await
            })
            .await?;
            let started = Instant::now();
            let for_lake = Arc::clone(&signals);
            if with_lake(&mut lake, move |l| l.write_signals(&for_lake))
                .await?
                .is_some()
            {
                record("lake_signals", signals.len(), started);
            }
            if let Some(p) = &hooks.publisher {
                publish_results("publish_signals", || p.signals(&signals)).await?;
            }
            publish(live.as_ref(), &signals, LiveEvent::Signal);
            stats.signals += signals.len() as u64;
        }
        if !batch.dead.is_empty() {
            for d in &batch.dead {
                metrics::counter!(m::DEAD_LETTERS, "reason" => m::reason_label(&d.reason))
                    .increment(1);
            }
            let dead = Arc::new(batch.dead);
            write_store("dlq", &store, &dead, |s, d| async move {
                s.insert_dead_letters(&d).await
            })
            .await?;
            if let Some(p) = &hooks.publisher {
                publish_results("publish_dlq", || p.dead_letters(&dead)).await?;
            }
            stats.dead_letters += dead.len() as u64;
        }
        if !batch.alerts.is_empty() {
            // every trigger of the batch, replays included (consumers key on alert id +
            // time): a crash between the store and the topic must not lose one
            if let Some(p) = &hooks.publisher {
                publish_results("publish_alerts", || p.alerts(&batch.alerts)).await?;
            }
            let fresh = record_alerts(&store, batch.alerts).await?;
            metrics::counter!(m::ALERT_TRIGGERS).increment(fresh.len() as u64);
            stats.alerts += fresh.len() as u64;
            publish(live.as_ref(), &fresh, LiveEvent::Alert);
        }
        stats.frontiers.insert(batch.worker, batch.frontier);
        // The sink's watermark: the least frontier of all workers; once every input is
        // closed, the newest bar stands in for it.
        let mut wm: Option<i64> = None;
        if stats.frontiers.len() == opts.workers {
            let known: Vec<Option<u64>> = stats.frontiers.values().copied().collect();
            wm = if known.iter().all(Option::is_none) {
                Some(newest_bar_end)
            } else if known.iter().all(Option::is_some) {
                known.iter().flatten().map(|f| *f as i64).min()
            } else {
                None
            };
        }
        let Some(wm) = wm else { continue };
        let all_open = stats.frontiers.values().all(Option::is_some);
        let before = wm.saturating_sub(opts.allowed_lateness_ns);
        // raw quotes: an hour is written once no quote can still arrive for it
        let ready: Vec<i64> = quote_hours
            .range(..)
            .filter(|(h, _)| **h + HOUR_NS <= before)
            .map(|(h, _)| *h)
            .collect();
        if !ready.is_empty() {
            let quotes: Vec<Quote> = ready
                .iter()
                .filter_map(|h| quote_hours.remove(h))
                .flatten()
                .collect();
            let n = quotes.len();
            let started = Instant::now();
            if with_lake(&mut lake, move |l| l.write_quotes(&quotes))
                .await?
                .is_some()
            {
                record("lake_quotes", n, started);
            }
        }
        // compact finished days
        let day = before.saturating_sub(before.rem_euclid(DAY_NS));
        if day > compacted_before {
            compacted_before = day;
            if let Some(done) = with_lake(&mut lake, move |l| l.compact(before)).await? {
                for path in done {
                    tracing::info!(path = %path.display(), "lake day compacted");
                }
            }
        }
        // Only real frontiers count: the flush at the end of the input is not final.
        if let (true, Some(cb)) = (all_open, &hooks.on_durable) {
            cb(u64::try_from(wm).unwrap_or(0));
        }
    }
    if hooks
        .aborted
        .as_ref()
        .is_some_and(|a| a.load(Ordering::SeqCst))
    {
        tracing::info!(
            buffered_quotes = quote_hours.values().map(Vec::len).sum::<usize>(),
            "dataflow aborted; buffered raw quotes are left to the replay"
        );
        return Ok(stats);
    }
    // whatever quotes are left (the input is closed)
    let quotes: Vec<Quote> = std::mem::take(&mut quote_hours)
        .into_values()
        .flatten()
        .collect();
    if !quotes.is_empty() {
        let n = quotes.len();
        let started = Instant::now();
        if with_lake(&mut lake, move |l| l.write_quotes(&quotes))
            .await?
            .is_some()
        {
            record("lake_quotes", n, started);
        }
    }
    Ok(stats)
}

/// Stores alert triggers and queues their deliveries (one transaction, idempotent on
/// `(rule id, trigger time)`), with retries; returns the triggers that were new.
async fn record_alerts(
    store: &Arc<dyn Store>,
    alerts: Vec<pricestream_schemas::AlertEvent>,
) -> std::result::Result<Vec<pricestream_schemas::AlertEvent>, StoreError> {
    use pricestream_schemas::Clock;
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let now = pricestream_schemas::SystemClock.now_ns();
        match store.record_alert_triggers(&alerts, now).await {
            Ok(fresh) => {
                record("store_alerts", alerts.len(), started);
                return Ok(fresh);
            }
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                metrics::counter!(m::SINK_RETRIES, "sink" => "store_alerts").increment(1);
                tracing::warn!(attempt, error = %e, "storing alert triggers failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
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
