//! The sink task: makes the dataflow's output durable in the store and the lake.
//!
//! Writes are idempotent (upserts by natural key, lake files rewritten from their key
//! set), so a retried or replayed batch converges to the same rows and files.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_schemas::{Bar, Quote, Signal, TimestampNs};
use pricestream_store::lake::QUOTE_FILE_NS;
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

/// At most this many batches are written in one round of the sink.
const ROUND_MAX_BATCHES: usize = 256;
/// A round stops taking waiting batches once it holds this many rows.
const ROUND_MAX_ROWS: usize = 250_000;

/// The batches the sink writes together: everything the workers sent while the previous
/// round was being written, in arrival order.
#[derive(Default)]
struct Round {
    batches: u64,
    bars: Vec<Bar>,
    signals: Vec<Signal>,
    quotes: Vec<Quote>,
    dead: Vec<DeadLetter>,
    alerts: Vec<pricestream_schemas::AlertEvent>,
    /// Each batch's (worker, frontier), applied once the whole round is durable.
    frontiers: Vec<WorkerFrontier>,
    /// Each batch's window-close time and number of bars (for the latency histogram).
    emitted: Vec<(Instant, usize)>,
}

impl Round {
    fn add(&mut self, mut b: SinkBatch) {
        self.batches += 1;
        if let (Some(at), false) = (b.emitted_at, b.bars.is_empty()) {
            self.emitted.push((at, b.bars.len()));
        }
        append(&mut self.bars, &mut b.bars);
        append(&mut self.signals, &mut b.signals);
        append(&mut self.quotes, &mut b.quotes);
        append(&mut self.dead, &mut b.dead);
        append(&mut self.alerts, &mut b.alerts);
        self.frontiers.push((b.worker, b.frontier));
    }

    fn rows(&self) -> usize {
        self.bars.len() + self.signals.len() + self.quotes.len() + self.dead.len()
    }
}

/// Moves `from` to the end of `to` (without a copy when `to` is empty).
fn append<T>(to: &mut Vec<T>, from: &mut Vec<T>) {
    if to.is_empty() {
        std::mem::swap(to, from);
    } else {
        to.append(from);
    }
}

/// Waits for a batch, then takes every batch already waiting (up to the round's limits).
async fn next_round(rx: &mut mpsc::Receiver<SinkBatch>) -> Option<Round> {
    let mut round = Round::default();
    round.add(rx.recv().await?);
    while (round.batches as usize) < ROUND_MAX_BATCHES && round.rows() < ROUND_MAX_ROWS {
        match rx.try_recv() {
            Ok(b) => round.add(b),
            Err(_) => break,
        }
    }
    metrics::histogram!(m::SINK_ROUND_BATCHES).record(round.batches as f64);
    Some(round)
}

/// Bars, signals and dead letters to the store, one after the other.
async fn store_round(
    store: &Arc<dyn Store>,
    bars: &Arc<Vec<Bar>>,
    signals: &Arc<Vec<Signal>>,
    dead: &Arc<Vec<DeadLetter>>,
    round: &Round,
) -> Result<()> {
    if !bars.is_empty() {
        write_store("store", store, bars, |s, b| async move {
            s.upsert_bars(&b).await
        })
        .await?;
        record_latency("store", &round.emitted);
    }
    if !signals.is_empty() {
        write_store("store_signals", store, signals, |s, x| async move {
            s.upsert_signals(&x).await
        })
        .await?;
    }
    if !dead.is_empty() {
        write_store("dlq", store, dead, |s, d| async move {
            s.insert_dead_letters(&d).await
        })
        .await?;
    }
    Ok(())
}

/// A write for the lake lane.
enum LakeJob {
    /// A round's bars and signals, with its batches' window-close times.
    Round {
        bars: Arc<Vec<Bar>>,
        signals: Arc<Vec<Signal>>,
        emitted: Vec<(Instant, usize)>,
    },
    /// Raw quotes of finished hours.
    Quotes(Vec<Quote>),
    /// Compact the days that ended before this time.
    Compact(TimestampNs),
}

/// Writes that run on their own task, in order, so the sink's next round does not wait
/// for them: the lake (a file rewrite grows through the hour) and the store's raw quotes
/// (many small transactions touch the same index pages over and over). Jobs are
/// numbered; `done` holds the last one finished.
struct Lane<J> {
    tx: Option<mpsc::UnboundedSender<(u64, J)>>,
    done: tokio::sync::watch::Receiver<u64>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
    sent: u64,
}

impl<J: Send + 'static> Lane<J> {
    /// A lane with nothing behind it: every job counts as done at once.
    fn idle() -> Self {
        let (_, done) = tokio::sync::watch::channel(0);
        Lane {
            tx: None,
            done,
            task: None,
            sent: 0,
        }
    }

    fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(mpsc::UnboundedReceiver<(u64, J)>, tokio::sync::watch::Sender<u64>) -> Fut,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let (done_tx, done) = tokio::sync::watch::channel(0);
        let (tx, rx) = mpsc::unbounded_channel();
        Lane {
            tx: Some(tx),
            done,
            task: Some(tokio::spawn(run(rx, done_tx))),
            sent: 0,
        }
    }

    fn active(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a job; its number, or 0 for an idle lane (nothing to wait for). A job sent
    /// after the lane failed is dropped: the failure surfaces at the next wait.
    fn send(&mut self, job: J) -> u64 {
        let Some(tx) = &self.tx else { return 0 };
        self.sent += 1;
        let _ = tx.send((self.sent, job));
        self.sent
    }

    /// Waits while the lane has [`LANE_MAX_PENDING`] jobs queued, so a lane that falls
    /// behind slows the sink (and through its channel the workers) down instead of
    /// queueing without bound.
    async fn make_room(&mut self) -> Result<()> {
        while self.active() && self.sent.saturating_sub(self.done()) >= LANE_MAX_PENDING {
            self.changed().await?;
        }
        Ok(())
    }

    /// The last job finished (everything, for an idle lane).
    fn done(&self) -> u64 {
        if self.active() {
            *self.done.borrow()
        } else {
            u64::MAX
        }
    }

    /// Waits for the next finished job; the lane's error if it failed.
    async fn changed(&mut self) -> Result<()> {
        if self.done.changed().await.is_ok() {
            return Ok(());
        }
        self.tx = None;
        self.join().await?;
        Err(PipelineError::Join("a sink lane stopped".into()))
    }

    /// Lets the lane finish its queue and stop.
    async fn finish(mut self) -> Result<()> {
        self.tx = None;
        self.join().await
    }

    async fn join(&mut self) -> Result<()> {
        match self.task.take() {
            Some(t) => t.await.map_err(|e| PipelineError::Join(e.to_string()))?,
            None => Ok(()),
        }
    }
}

/// Jobs a lane may have queued before the sink waits for it.
const LANE_MAX_PENDING: u64 = 64;

/// Raw quotes written to the store together once this many wait…
const QUOTES_BATCH: usize = 20_000;
/// …or once the first of them has waited this long.
const QUOTES_LINGER: Duration = Duration::from_millis(100);

/// The raw-quotes lane's task: one transaction for up to [`QUOTES_BATCH`] quotes or
/// [`QUOTES_LINGER`] of them, whichever comes first.
async fn quotes_lane(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<(u64, Vec<Quote>)>,
    done: tokio::sync::watch::Sender<u64>,
) -> Result<()> {
    while let Some((mut id, mut quotes)) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + QUOTES_LINGER;
        while quotes.len() < QUOTES_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((next, more))) => {
                    id = next;
                    append(&mut quotes, &mut { more });
                }
                // closed (written below, then the loop ends) or waited long enough
                Ok(None) | Err(_) => break,
            }
        }
        let quotes = Arc::new(quotes);
        write_store("store_quotes", &store, &quotes, |s, q| async move {
            s.insert_quotes(&q).await
        })
        .await?;
        done.send_replace(id);
    }
    Ok(())
}

/// The lake lane's task: rounds queued behind a slow write are written together.
async fn lake_lane(
    lake: Lake,
    mut rx: mpsc::UnboundedReceiver<(u64, LakeJob)>,
    done: tokio::sync::watch::Sender<u64>,
) -> Result<()> {
    let mut lake = Some(lake);
    let mut next = None;
    loop {
        let Some((mut id, job)) = next.take().or(rx.recv().await) else {
            return Ok(());
        };
        match job {
            LakeJob::Round {
                bars,
                signals,
                mut emitted,
            } => {
                // rounds waiting behind this one are written with it
                let (mut bars, mut signals) = (vec![bars], vec![signals]);
                while let Ok((next_id, job)) = rx.try_recv() {
                    match job {
                        LakeJob::Round {
                            bars: b,
                            signals: s,
                            emitted: more,
                        } => {
                            bars.push(b);
                            signals.push(s);
                            emitted.extend(more);
                            id = next_id;
                        }
                        other => {
                            next = Some((next_id, other));
                            break;
                        }
                    }
                }
                let (bars, signals) = (concat(bars), concat(signals));
                write_lake_round(&mut lake, bars, signals, &emitted).await?;
            }
            LakeJob::Quotes(quotes) => {
                let n = quotes.len();
                let started = Instant::now();
                with_lake(&mut lake, move |l| l.write_quotes(&quotes)).await?;
                record("lake_quotes", n, started);
            }
            LakeJob::Compact(before) => {
                if let Some(paths) = with_lake(&mut lake, move |l| l.compact(before)).await? {
                    for path in paths {
                        tracing::info!(path = %path.display(), "lake day compacted");
                    }
                }
            }
        }
        done.send_replace(id);
    }
}

/// The rows of several rounds as one; a single round is passed on without a copy.
fn concat<T: Clone>(mut parts: Vec<Arc<Vec<T>>>) -> Arc<Vec<T>> {
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return only;
        }
    }
    Arc::new(parts.iter().flat_map(|p| p.iter().cloned()).collect())
}

/// Bars and signals to the lake.
async fn write_lake_round(
    lake: &mut Option<Lake>,
    bars: Arc<Vec<Bar>>,
    signals: Arc<Vec<Signal>>,
    emitted: &[(Instant, usize)],
) -> Result<()> {
    if !bars.is_empty() {
        let n = bars.len();
        let started = Instant::now();
        with_lake(lake, move |l| l.write_bars(&bars)).await?;
        record("lake", n, started);
        record_latency("lake", emitted);
    }
    if !signals.is_empty() {
        let n = signals.len();
        let started = Instant::now();
        with_lake(lake, move |l| l.write_signals(&signals)).await?;
        record("lake_signals", n, started);
    }
    Ok(())
}

/// Bars, signals and dead letters to the result topics, all at once.
async fn publish_round(
    publisher: Option<&Arc<dyn ResultPublisher>>,
    bars: &[Bar],
    signals: &[Signal],
    dead: &[DeadLetter],
) -> Result<()> {
    let Some(p) = publisher else { return Ok(()) };
    let bars = async {
        if bars.is_empty() {
            return Ok(());
        }
        publish_results("publish_bars", || p.bars(bars)).await
    };
    let signals = async {
        if signals.is_empty() {
            return Ok(());
        }
        publish_results("publish_signals", || p.signals(signals)).await
    };
    let dead = async {
        if dead.is_empty() {
            return Ok(());
        }
        publish_results("publish_dlq", || p.dead_letters(dead)).await
    };
    tokio::try_join!(bars, signals, dead)?;
    Ok(())
}

/// [`run_sink`] with a result publisher, a durability callback and an abort flag.
///
/// The sink works in rounds: it takes every batch waiting in its channel and writes their
/// rows together (one transaction, one lake write and one produce per kind of row). Alert
/// triggers go first; then the store and the result topics are written at the same time,
/// and the lake and the store's raw quotes on lanes of their own (see [`Lane`]). A
/// batch's frontier counts as durable once its round is in all of them. A slow round
/// lets the next one grow instead of costing one round trip per batch.
pub async fn run_sink_with(
    mut rx: mpsc::Receiver<SinkBatch>,
    store: Arc<dyn Store>,
    lake: Option<Lake>,
    opts: SinkOptions,
    live: Option<LiveHub>,
    hooks: SinkHooks,
) -> Result<SinkStats> {
    let mut sink = SinkState {
        stats: SinkStats::default(),
        lake: match lake {
            Some(lake) => Lane::spawn(move |rx, done| lake_lane(lake, rx, done)),
            None => Lane::idle(),
        },
        quotes: if opts.store_quotes {
            let store = Arc::clone(&store);
            Lane::spawn(move |rx, done| quotes_lane(store, rx, done))
        } else {
            Lane::idle()
        },
        opts,
        on_durable: hooks.on_durable.clone(),
        compacted_before: i64::MIN,
        newest_bar_end: i64::MIN,
        quote_spans: BTreeMap::new(),
        frontiers: std::collections::VecDeque::new(),
        durable: std::collections::VecDeque::new(),
    };
    loop {
        let waiting = sink.waiting();
        let round = tokio::select! {
            r = next_round(&mut rx) => r,
            r = sink.lake.changed(), if waiting && sink.lake.active() => {
                r?;
                sink.apply_durable();
                continue;
            }
            r = sink.quotes.changed(), if waiting && sink.quotes.active() => {
                r?;
                sink.apply_durable();
                continue;
            }
        };
        let Some(round) = round else { break };
        sink.write_round(round, &store, live.as_ref(), &hooks)
            .await?;
        sink.apply_durable();
    }
    // the input is closed: let the lanes catch up with every round
    while sink.waiting() {
        tokio::select! {
            r = sink.lake.changed(), if sink.lake.active() => r?,
            r = sink.quotes.changed(), if sink.quotes.active() => r?,
        }
        sink.apply_durable();
    }
    let SinkState {
        stats,
        mut lake,
        quotes,
        quote_spans,
        ..
    } = sink;
    quotes.finish().await?;
    if hooks
        .aborted
        .as_ref()
        .is_some_and(|a| a.load(Ordering::SeqCst))
    {
        tracing::info!(
            buffered_quotes = quote_spans.values().map(Vec::len).sum::<usize>(),
            "dataflow aborted; buffered raw quotes are left to the replay"
        );
        lake.finish().await?;
        return Ok(stats);
    }
    // whatever quotes are left
    let quotes: Vec<Quote> = quote_spans.into_values().flatten().collect();
    if !quotes.is_empty() {
        lake.send(LakeJob::Quotes(quotes));
    }
    lake.finish().await?;
    Ok(stats)
}

/// A worker and its frontier after a batch (`None`: its input is closed).
type WorkerFrontier = (usize, Option<u64>);

/// The sink's state between rounds.
struct SinkState {
    stats: SinkStats,
    lake: Lane<LakeJob>,
    quotes: Lane<Vec<Quote>>,
    opts: SinkOptions,
    on_durable: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    compacted_before: i64,
    newest_bar_end: i64,
    /// Raw quotes for the lake by the start of their ten-minute file, until no quote can
    /// still arrive for it.
    quote_spans: BTreeMap<i64, Vec<Quote>>,
    /// Rounds written to the store and topics, waiting for their lake and raw-quotes
    /// jobs: (lake job, quotes job, each batch's (worker, frontier)).
    frontiers: std::collections::VecDeque<(u64, u64, Vec<WorkerFrontier>)>,
    /// Watermarks waiting for the lake job that wrote the raw quotes below them.
    durable: std::collections::VecDeque<(u64, u64)>,
}

impl SinkState {
    /// Whether anything waits for the lake.
    fn waiting(&self) -> bool {
        !self.frontiers.is_empty() || !self.durable.is_empty()
    }

    async fn write_round(
        &mut self,
        mut round: Round,
        store: &Arc<dyn Store>,
        live: Option<&LiveHub>,
        hooks: &SinkHooks,
    ) -> Result<()> {
        self.lake.make_room().await?;
        self.quotes.make_room().await?;
        let stats = &mut self.stats;
        stats.batches += round.batches;
        stats.quotes += round.quotes.len() as u64;
        // Alerts first: a webhook waits for its trigger to be stored, not for the bars.
        let alerts = std::mem::take(&mut round.alerts);
        if !alerts.is_empty() {
            // every trigger of the round, replays included (consumers key on alert id +
            // time), so a crash between the store and the topic loses none
            let published = async {
                match &hooks.publisher {
                    Some(p) => publish_results("publish_alerts", || p.alerts(&alerts)).await,
                    None => Ok(()),
                }
            };
            let recorded = async { Ok(record_alerts(store, alerts.clone()).await?) };
            let ((), fresh) = tokio::try_join!(published, recorded)?;
            metrics::counter!(m::ALERT_TRIGGERS).increment(fresh.len() as u64);
            stats.alerts += fresh.len() as u64;
            publish(live, &fresh, LiveEvent::Alert);
        }
        let quotes = std::mem::take(&mut round.quotes);
        let quotes_job = if quotes.is_empty() || !self.quotes.active() {
            self.quotes.sent
        } else {
            self.quotes.send(quotes.clone())
        };
        if let Some(end) = round
            .bars
            .iter()
            .filter(|b| b.interval == pricestream_schemas::Interval::M1)
            .map(|b| b.bucket_end())
            .max()
        {
            self.newest_bar_end = self.newest_bar_end.max(end);
        }
        for d in &round.dead {
            metrics::counter!(m::DEAD_LETTERS, "reason" => m::reason_label(&d.reason)).increment(1);
        }
        let bars = Arc::new(std::mem::take(&mut round.bars));
        let signals = Arc::new(std::mem::take(&mut round.signals));
        let dead = Arc::new(std::mem::take(&mut round.dead));
        let job = if bars.is_empty() && signals.is_empty() {
            // nothing for the lake: wait only for what was sent to it before
            self.lake.sent
        } else {
            self.lake.send(LakeJob::Round {
                bars: Arc::clone(&bars),
                signals: Arc::clone(&signals),
                emitted: round.emitted.clone(),
            })
        };
        tokio::try_join!(
            store_round(store, &bars, &signals, &dead, &round),
            publish_round(hooks.publisher.as_ref(), &bars, &signals, &dead),
        )?;
        publish(live, &quotes, LiveEvent::Quote);
        for q in quotes {
            self.quote_spans
                .entry(q.ts_event - q.ts_event.rem_euclid(QUOTE_FILE_NS))
                .or_default()
                .push(q);
        }
        publish(live, &bars, LiveEvent::Bar);
        publish(live, &signals, LiveEvent::Signal);
        stats.bars += bars.len() as u64;
        stats.signals += signals.len() as u64;
        stats.dead_letters += dead.len() as u64;
        self.frontiers.push_back((job, quotes_job, round.frontiers));
        Ok(())
    }

    /// Counts the frontiers of every round the lake has caught up with, queues the raw
    /// quotes and compactions they make final, and reports watermarks whose lake writes
    /// are done.
    fn apply_durable(&mut self) {
        let (lake_done, quotes_done) = (self.lake.done(), self.quotes.done());
        while self
            .frontiers
            .front()
            .is_some_and(|(lake, quotes, _)| *lake <= lake_done && *quotes <= quotes_done)
        {
            let Some((_, _, frontiers)) = self.frontiers.pop_front() else {
                break;
            };
            for (worker, frontier) in frontiers {
                self.stats.frontiers.insert(worker, frontier);
            }
            self.advance();
        }
        let done = self.lake.done();
        while let Some(&(job, wm)) = self.durable.front() {
            if job > done {
                break;
            }
            self.durable.pop_front();
            if let Some(cb) = &self.on_durable {
                cb(wm);
            }
        }
    }

    /// After new frontiers: the sink's watermark, what it makes final in the lake, and
    /// the watermark to report once that is written.
    fn advance(&mut self) {
        // The least frontier of all workers; once every input is closed, the newest bar
        // stands in for it.
        let frontiers = &self.stats.frontiers;
        if frontiers.len() != self.opts.workers {
            return;
        }
        let known: Vec<Option<u64>> = frontiers.values().copied().collect();
        let wm = if known.iter().all(Option::is_none) {
            self.newest_bar_end
        } else if known.iter().all(Option::is_some) {
            match known.iter().flatten().map(|f| *f as i64).min() {
                Some(wm) => wm,
                None => return,
            }
        } else {
            return;
        };
        let all_open = known.iter().all(Option::is_some);
        let before = wm.saturating_sub(self.opts.allowed_lateness_ns);
        let mut job = self.lake.sent;
        // raw quotes: a ten-minute span is written once no quote can still arrive for it
        let ready: Vec<i64> = self
            .quote_spans
            .keys()
            .copied()
            .filter(|h| *h + QUOTE_FILE_NS <= before)
            .collect();
        if !ready.is_empty() {
            let quotes: Vec<Quote> = ready
                .iter()
                .filter_map(|h| self.quote_spans.remove(h))
                .flatten()
                .collect();
            job = self.lake.send(LakeJob::Quotes(quotes));
        }
        // compact finished days
        let day = before.saturating_sub(before.rem_euclid(DAY_NS));
        if day > self.compacted_before {
            self.compacted_before = day;
            job = self.lake.send(LakeJob::Compact(before));
        }
        // Only real frontiers count: the flush at the end of the input is not final.
        if all_open {
            self.durable
                .push_back((job, u64::try_from(wm).unwrap_or(0)));
        }
    }
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

/// Window close → durable: one observation per bar; the bars of a batch share its
/// window-close time (`emitted` holds each batch's time and number of bars).
fn record_latency(sink: &'static str, emitted: &[(Instant, usize)]) {
    for (at, bars) in emitted {
        metrics::histogram!(m::BAR_SINK_LATENCY, "sink" => sink)
            .record_many(at.elapsed().as_secs_f64(), *bars);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use pricestream_schemas::{AlertEvent, Interval, Symbol, Venue};
    use pricestream_store::BarQuery;

    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn bar(symbol: &str, minute: i64, close: f64, revision: u32) -> Bar {
        let start = minute * MIN;
        Bar {
            venue: Venue::Binance,
            symbol: Symbol::new(symbol).unwrap(),
            interval: Interval::M1,
            bucket_start: start,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
            notional: close,
            vwap: close,
            trade_count: 1,
            revision,
            ts_event: start + 1,
            ts_ingest: start + 2,
        }
    }

    fn quote(symbol: &str, ts: i64, price: f64) -> Quote {
        Quote {
            venue: Venue::Binance,
            symbol: Symbol::new(symbol).unwrap(),
            kind: pricestream_schemas::QuoteKind::Trade,
            price,
            size: 1.0,
            side: None,
            trade_id: Some(ts as u64),
            bid: None,
            ask: None,
            ts_event: ts,
            ts_ingest: ts + 1,
        }
    }

    /// Remembers every publish call.
    #[derive(Default)]
    struct Calls(Mutex<Vec<(&'static str, usize)>>);

    #[async_trait::async_trait]
    impl ResultPublisher for Calls {
        async fn bars(&self, bars: &[Bar]) -> std::result::Result<(), String> {
            self.0.lock().unwrap().push(("bars", bars.len()));
            Ok(())
        }
        async fn signals(&self, s: &[Signal]) -> std::result::Result<(), String> {
            self.0.lock().unwrap().push(("signals", s.len()));
            Ok(())
        }
        async fn dead_letters(&self, d: &[DeadLetter]) -> std::result::Result<(), String> {
            self.0.lock().unwrap().push(("dlq", d.len()));
            Ok(())
        }
        async fn alerts(&self, a: &[AlertEvent]) -> std::result::Result<(), String> {
            self.0.lock().unwrap().push(("alerts", a.len()));
            Ok(())
        }
    }

    /// Batches waiting together are written in one round, in order (a later revision of
    /// a bar wins), and their frontiers count only once the round is durable in the store
    /// and the lake.
    #[tokio::test]
    async fn waiting_batches_are_written_in_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = pricestream_store::open(&url, 2).await.unwrap();
        store.migrate().await.unwrap();
        let calls = Arc::new(Calls::default());
        // each durable watermark, with the 1m bars the lake held when it was reported
        let durable = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&durable);
        let lake_dir = dir.path().join("lake");
        let reader = Lake::new(lake_dir.clone());
        let hooks = SinkHooks {
            publisher: Some(calls.clone() as Arc<dyn ResultPublisher>),
            on_durable: Some(Arc::new(move |wm| {
                let in_lake = reader.read_bars(Interval::M1).unwrap().len();
                seen.lock().unwrap().push((wm, in_lake));
            })),
            aborted: None,
        };
        let (tx, rx) = mpsc::channel(16);
        let batch = |worker, frontier: u64, bars| SinkBatch {
            worker,
            frontier: Some(frontier),
            bars,
            emitted_at: Some(Instant::now()),
            ..Default::default()
        };
        let mut first = batch(0, 2 * MIN as u64, vec![bar("BTC-USDT", 0, 10.0, 0)]);
        first.quotes = vec![quote("BTC-USDT", 7, 10.0), quote("BTC-USDT", 8, 10.5)];
        tx.send(first).await.unwrap();
        tx.send(batch(1, MIN as u64, vec![bar("ETH-USDT", 0, 5.0, 0)]))
            .await
            .unwrap();
        tx.send(batch(0, 3 * MIN as u64, vec![bar("BTC-USDT", 0, 11.0, 1)]))
            .await
            .unwrap();
        // the sink starts only now: all three are waiting
        let opts = SinkOptions {
            workers: 2,
            allowed_lateness_ns: 0,
            store_quotes: true,
        };
        let lake = Some(Lake::new(lake_dir));
        let sink = tokio::spawn(run_sink_with(
            rx,
            Arc::clone(&store),
            lake,
            opts,
            None,
            hooks,
        ));
        tokio::time::timeout(Duration::from_secs(10), async {
            while durable.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the round became durable");
        drop(tx);
        let stats = sink.await.unwrap().unwrap();
        assert_eq!(stats.batches, 3);
        assert_eq!(stats.bars, 3);
        assert_eq!(
            *calls.0.lock().unwrap(),
            vec![("bars", 3)],
            "one publish for the round"
        );
        // worker 1's frontier holds the watermark back, reported once the whole round is
        // in the store and in the lake
        assert_eq!(*durable.lock().unwrap(), vec![(MIN as u64, 2)]);
        let q = |s: &str| BarQuery {
            venue: None,
            symbol: Symbol::new(s).unwrap(),
            interval: Interval::M1,
            from: 0,
            to: 10 * MIN,
            limit: 10,
            tail: false,
        };
        let btc = store.query_bars(&q("BTC-USDT")).await.unwrap();
        assert_eq!((btc.len(), btc[0].close, btc[0].revision), (1, 11.0, 1));
        assert_eq!(store.query_bars(&q("ETH-USDT")).await.unwrap().len(), 1);
        // the raw quotes went to the store on their own lane, the newest is the latest
        let latest = store.latest_quotes(None).await.unwrap();
        assert_eq!((latest.len(), latest[0].price), (1, 10.5));
    }
    /// The raw quotes of a ten-minute span reach the lake once the span is final, not at
    /// the end of its hour: what the sink holds in memory is bounded by the span (plus
    /// the allowed lateness), whatever the symbol count.
    #[tokio::test]
    async fn raw_quotes_reach_the_lake_once_their_ten_minutes_are_final() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = pricestream_store::open(&url, 2).await.unwrap();
        store.migrate().await.unwrap();
        let lake_dir = dir.path().join("lake");
        let reader = Lake::new(lake_dir.clone());
        // each durable watermark, with the newest raw quote the lake held then
        let durable = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&durable);
        let hooks = SinkHooks {
            publisher: None,
            on_durable: Some(Arc::new(move |wm| {
                let newest = reader
                    .read_quotes()
                    .unwrap()
                    .iter()
                    .map(|q| q.ts_event)
                    .max();
                seen.lock().unwrap().push((wm, newest));
            })),
            aborted: None,
        };
        let (tx, rx) = mpsc::channel(64);
        let lateness = MIN;
        let opts = SinkOptions {
            workers: 1,
            allowed_lateness_ns: lateness,
            store_quotes: false,
        };
        let sink = tokio::spawn(run_sink_with(
            rx,
            Arc::clone(&store),
            Some(Lake::new(lake_dir)),
            opts,
            None,
            hooks,
        ));
        // one quote a minute for 25 minutes; the frontier follows a minute behind
        for m in 0..25 {
            let batch = SinkBatch {
                worker: 0,
                frontier: Some((m * MIN) as u64),
                quotes: vec![quote("BTC-USDT", m * MIN + 1, 10.0)],
                ..Default::default()
            };
            tx.send(batch).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while durable.lock().unwrap().last().map(|(wm, _)| *wm) != Some((24 * MIN) as u64) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("every watermark became durable");
        for &(wm, newest) in durable.lock().unwrap().iter() {
            let wm = wm as i64;
            // the spans that ended by the watermark less the lateness are written, and
            // nothing of a later span
            let final_end = (wm - lateness) - (wm - lateness).rem_euclid(10 * MIN);
            let want = (final_end > 0).then(|| final_end - MIN + 1);
            assert_eq!(newest, want, "at watermark minute {}", wm / MIN);
        }
        drop(tx);
        sink.await.unwrap().unwrap();
    }
}
