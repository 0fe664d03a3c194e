//! The timely dataflow: sources → exchange by symbol → 1m windows → sink.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_bus::{Polled, QuoteSource, SourceState};
use pricestream_schemas::codec::topics;
use pricestream_schemas::{
    AlertEvent, Bar, Clock, Interval, Quote, Signal, SystemClock, TimestampNs,
};
use pricestream_store::DeadLetter;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Input, Probe};

use timely::dataflow::operators::Capability;
use timely::dataflow::{InputHandle, ProbeHandle};
use tokio::sync::mpsc;

use crate::alerts::operator::{evaluate_quotes, evaluate_signals, WorkerAlerts};
use crate::gapfill::GapFill;
use crate::metrics as m;
use crate::progress::Progress;
use crate::rollups::{self, RollupAdmit, RollupLevel};
use crate::signals::{SharedProfiles, SignalStage};
use crate::watermark::{SharedProgress, WatermarkTracker};
use crate::window::{Admit, BarWindows};
use crate::{PipelineConfig, PipelineError, Result};

/// A record entering the dataflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Record {
    /// A valid quote with its partition's watermark when it was read.
    Quote { quote: Quote, pwm: TimestampNs },
    /// A message rejected at the entry.
    Rejected {
        reason: String,
        error: String,
        payload: Vec<u8>,
        partition: u32,
        offset: u64,
    },
    /// A final bar from before a restart, for the signal state (never written again).
    Warm(Bar),
}

/// A record flowing from the window operator to the sinks.
#[derive(Debug, Clone)]
pub enum Output {
    /// A raw quote that reached its window (for the lake's quotes dataset).
    Quote(Quote),
    Bar(Bar),
    Signal(Signal),
    Dead(DeadLetter),
    /// See [`Record::Warm`]: passes the rollups untouched and ends at the signals.
    Warm(Bar),
}

/// What a worker hands to the sinks: everything it produced below `frontier`.
#[derive(Debug, Default)]
pub struct SinkBatch {
    pub worker: usize,
    /// The worker's sink frontier after this batch (`None` once the input is closed).
    pub frontier: Option<u64>,
    pub bars: Vec<Bar>,
    pub signals: Vec<Signal>,
    pub quotes: Vec<Quote>,
    pub dead: Vec<DeadLetter>,
    /// Alerts fired (by quotes or signals) below `frontier`: the payloads of `alerts.v1`.
    pub alerts: Vec<AlertEvent>,
    /// When the batch's first output left the window operator (processing time, read by
    /// the sink glue, never by window code): the start of the window-close → sink latency.
    pub emitted_at: Option<Instant>,
}

/// Creates the quote source of worker `index` of `peers`.
pub type SourceFactory =
    Arc<dyn Fn(usize, usize) -> pricestream_bus::Result<Box<dyn QuoteSource>> + Send + Sync>;

const MINUTE_NS: u64 = 60_000_000_000;

fn to_time(ts: TimestampNs) -> u64 {
    ts.max(0) as u64
}

fn to_ts(t: u64) -> TimestampNs {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn now_ns() -> TimestampNs {
    SystemClock.now_ns()
}

/// What the exchange routes a record by: its symbol's hash, or a rejected payload's
/// partition. The record goes to worker `key % peers`.
fn route_key(r: &Record) -> u64 {
    match r {
        Record::Quote { quote, .. } => quote.symbol.stable_hash(),
        Record::Warm(bar) => bar.symbol.stable_hash(),
        Record::Rejected { partition, .. } => u64::from(*partition),
    }
}

/// Runs the dataflow on `cfg.workers` threads until every source is finished (or `stop`
/// is set), then flushes every open window to the sink channel. Blocks.
pub fn run(
    cfg: &PipelineConfig,
    sources: SourceFactory,
    sink: mpsc::Sender<SinkBatch>,
    stop: Arc<AtomicBool>,
    profiles: SharedProfiles,
) -> Result<()> {
    let progress = Arc::new(Progress::new(cfg.resolved_workers(), now_ns()));
    run_with_progress(cfg, sources, sink, stop, profiles, progress)
}

/// [`run`], recording the dataflow's progress into `progress` (made for
/// `cfg.resolved_workers()` workers) for readiness checks.
pub fn run_with_progress(
    cfg: &PipelineConfig,
    sources: SourceFactory,
    sink: mpsc::Sender<SinkBatch>,
    stop: Arc<AtomicBool>,
    profiles: SharedProfiles,
    progress: Arc<Progress>,
) -> Result<()> {
    run_with_control(cfg, sources, sink, stop, Arc::default(), profiles, progress)
}

/// [`run_with_progress`] that can also be *aborted*: when a source reports its partitions
/// revoked (or `abort` is set from outside), every worker drops the dataflow without
/// flushing open windows (their state belongs to whoever owns the partitions next, who
/// rebuilds it from the committed offsets), sets `abort` (the sink reads it) and the call
/// returns [`PipelineError::Revoked`].
pub fn run_with_control(
    cfg: &PipelineConfig,
    sources: SourceFactory,
    sink: mpsc::Sender<SinkBatch>,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    profiles: SharedProfiles,
    progress: Arc<Progress>,
) -> Result<()> {
    let workers = cfg.resolved_workers();
    let delay = cfg.max_out_of_orderness_ms.saturating_mul(1_000_000);
    let lateness = cfg.allowed_lateness_ms.saturating_mul(1_000_000);
    let idle = cfg.idle_timeout_ms.saturating_mul(1_000_000);
    let batch = cfg.poll_batch.max(1);
    let shared = Arc::new(SharedProgress::new(now_ns()));
    let rollup_intervals = cfg.rollups.clone();
    let signal_params = cfg.signals.clone();
    let seasonal = cfg.seasonal;
    let keep_quotes = cfg.keep_quotes;
    let gap_fill_minutes = cfg.gap_fill_minutes;
    let source_topic = if cfg.source_topic.is_empty() {
        topics::QUOTES.to_string()
    } else {
        cfg.source_topic.clone()
    };
    let alert_rules = cfg.alert_rules.clone().unwrap_or_default();
    let colocated = cfg.colocated_input;
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let mut input: InputHandle<u64, _> = InputHandle::new();
        let probe = ProbeHandle::new();
        let sink = sink.clone();
        let progress = Arc::clone(&progress);
        let abort = Arc::clone(&abort);
        let sink_done = Rc::new(Cell::new(false));
        let sink_done_w = Rc::clone(&sink_done);
        let mut pending = SinkBatch { worker: index, ..Default::default() };
        // Raw quotes for the sinks skip the rollup and signal operators: the window
        // operator appends them here and the sink operator of the same worker takes them
        // before it reads its frontier. A quote at time `t` is appended while the window
        // operator still holds `t`, so it is taken no later than the batch whose frontier
        // passes `t`, exactly as if it had flowed through the dataflow.
        let raw_quotes: Rc<RefCell<Vec<Quote>>> = Rc::default();
        let raw_quotes_w = Rc::clone(&raw_quotes);
        let mut last_reported_minute: Option<u64> = Some(0);
        let rollup_intervals = rollup_intervals.clone();
        let signal_params = signal_params.clone();
        let source_topic = source_topic.clone();
        let profiles = Arc::clone(&profiles);
        // Alerts fired on this worker, taken by its sink operator like `raw_quotes`.
        let worker_alerts = Rc::new(RefCell::new(WorkerAlerts::new(alert_rules.clone())));
        let sink_alerts = Rc::clone(&worker_alerts);
        worker.dataflow::<u64, _, _>(|scope| {
            let records = scope.input_from(&mut input).container::<Vec<Record>>();
            // Alert evaluation sees every quote of its symbols, before the windows. Input
            // that is already on its symbol's worker skips the exchange: with 2 workers
            // its pushers cost about 6 % of the workers' time for records that all stayed
            // where they were.
            let records = if colocated {
                evaluate_quotes(records, Pipeline, Rc::clone(&worker_alerts))
            } else {
                evaluate_quotes(records, Exchange::new(route_key), Rc::clone(&worker_alerts))
            };
            let outputs = records
                .unary_frontier(Pipeline, "BarWindows", move |cap, _info| {
                    drop(cap);
                    let mut windows = BarWindows::new(Interval::M1, lateness);
                    let mut caps: BTreeMap<TimestampNs, Capability<u64>> = BTreeMap::new();
                    let mut now_out: Vec<Output> = Vec::new();
                    move |(input, frontier), output| {
                        let f = frontier.frontier().first().map_or(i64::MAX, |t| to_ts(*t));
                        input.for_each_stamp(|cap, data| {
                            let Some(&t) = cap.least() else { return };
                            let mut raw = raw_quotes_w.borrow_mut();
                            for batch in data {
                                for record in batch.drain(..) {
                                    match record {
                                        Record::Quote { quote, pwm } => {
                                            let eff = pwm.max(to_ts(t));
                                            let admitted = windows.offer(&quote, eff, f);
                                            let late = admitted == Admit::Late;
                                            match admitted {
                                                Admit::Pending { end } => {
                                                    caps.entry(end).or_insert_with(|| {
                                                        cap.delayed(&to_time(end).max(t), 0)
                                                    });
                                                }
                                                Admit::Revised(bar) | Admit::New(bar) => {
                                                    if bar.revision > 0 {
                                                        metrics::counter!(m::BAR_REVISIONS).increment(1);
                                                    }
                                                    now_out.push(Output::Bar(bar));
                                                }
                                                Admit::Late => {
                                                    metrics::counter!(m::LATE_EVENTS).increment(1);
                                                    now_out.push(Output::Dead(DeadLetter {
                                                        topic: source_topic.clone(),
                                                        reason: "late".into(),
                                                        error: format!(
                                                            "event time {} is past the allowed lateness (watermark {})",
                                                            quote.ts_event, eff
                                                        ),
                                                        payload: pricestream_schemas::codec::encode(&quote),
                                                        partition: 0,
                                                        offset: 0,
                                                        ts_ingest: quote.ts_ingest,
                                                    }));
                                                }
                                            }
                                            if keep_quotes && !late {
                                                raw.push(quote);
                                            }
                                        }
                                        Record::Warm(bar) => now_out.push(Output::Warm(bar)),
                                        Record::Rejected { reason, error, payload, partition, offset } => {
                                            now_out.push(Output::Dead(DeadLetter {
                                                topic: source_topic.clone(),
                                                reason,
                                                error,
                                                payload,
                                                partition,
                                                offset,
                                                ts_ingest: now_ns(),
                                            }));
                                        }
                                    }
                                }
                            }
                            if !now_out.is_empty() {
                                let out_cap = cap.delayed(&t, 0);
                                output.session(&out_cap).give_iterator(now_out.drain(..));
                            }
                        });
                        for (end, bars) in windows.advance(f) {
                            if let Some(c) = caps.remove(&end) {
                                metrics::counter!(m::BARS_EMITTED, "interval" => "1m").increment(bars.len() as u64);
                                output.session(&c).give_iterator(bars.into_iter().map(Output::Bar));
                            }
                        }
                        // Capabilities for windows that closed with no bar (all state was
                        // already emitted) are released too.
                        caps.retain(|end, _| *end > f);
                    }
                })
                .container::<Vec<Output>>();
            let outputs = if gap_fill_minutes > 0 {
                gap_fill(outputs, gap_fill_minutes, lateness)
            } else {
                outputs
            };
            let outputs = outputs
                .unary_frontier(Pipeline, "Rollups", move |cap, _info| {
                    drop(cap);
                    let mut levels = rollups::levels(&rollup_intervals, lateness);
                    let mut caps: Vec<BTreeMap<TimestampNs, Capability<u64>>> =
                        (0..levels.len()).map(|_| BTreeMap::new()).collect();
                    let mut out: Vec<Output> = Vec::new();
                    move |(input, frontier), output| {
                        let f = frontier.frontier().first().map_or(i64::MAX, |t| to_ts(*t));
                        input.for_each_stamp(|cap, data| {
                            let Some(&t) = cap.least() else { return };
                            let out_cap = cap.delayed(&t, 0);
                            for batch in data {
                                for o in batch.drain(..) {
                                    if let Output::Bar(b) = &o {
                                        feed_rollups(&mut levels, &mut caps, 0, b, &out_cap, f, &mut out);
                                    }
                                    out.push(o);
                                }
                            }
                            output.session(&out_cap).give_iterator(out.drain(..));
                        });
                        for li in 0..levels.len() {
                            for (end, bars) in levels[li].advance(f) {
                                let Some(c) = caps[li].remove(&end) else { continue };
                                let mut out: Vec<Output> = Vec::with_capacity(bars.len());
                                for b in bars {
                                    feed_rollups(&mut levels, &mut caps, li + 1, &b, &c, f, &mut out);
                                    metrics::counter!(m::BARS_EMITTED, "interval" => b.interval.as_str()).increment(1);
                                    out.push(Output::Bar(b));
                                }
                                output.session(&c).give_iterator(out.into_iter());
                            }
                            caps[li].retain(|end, _| *end >= f);
                        }
                    }
                })
                .container::<Vec<Output>>()
                .unary_frontier(Pipeline, "Signals", move |cap, _info| {
                    drop(cap);
                    let mut stage = SignalStage::new(signal_params.clone(), lateness)
                        .with_profiles(Arc::clone(&profiles), seasonal);
                    let mut caps: BTreeMap<TimestampNs, Capability<u64>> = BTreeMap::new();
                    let mut out: Vec<Output> = Vec::new();
                    move |(input, frontier), output| {
                        let f = frontier.frontier().first().map_or(i64::MAX, |t| to_ts(*t));
                        input.for_each_stamp(|cap, data| {
                            let Some(&t) = cap.least() else { return };
                            let out_cap = cap.delayed(&t, 0);
                            for batch in data {
                                for o in batch.drain(..) {
                                    if let Output::Warm(b) = &o {
                                        stage.warm(b);
                                        continue;
                                    }
                                    if let Output::Bar(b) = &o {
                                        if let Some(fin) = stage.offer(b) {
                                            caps.entry(fin).or_insert_with(|| {
                                                out_cap.delayed(&to_time(fin).max(t))
                                            });
                                        }
                                    }
                                    out.push(o);
                                }
                            }
                            output.session(&out_cap).give_iterator(out.drain(..));
                        });
                        for (fin, signals) in stage.advance(f) {
                            let Some(c) = caps.remove(&fin) else { continue };
                            if !signals.is_empty() {
                                metrics::counter!(m::SIGNALS_EMITTED).increment(signals.len() as u64);
                                output.session(&c).give_iterator(signals.into_iter().map(Output::Signal));
                            }
                        }
                    }
                })
                .container::<Vec<Output>>();
            evaluate_signals(outputs, Rc::clone(&worker_alerts))
                .probe_with(&probe)
                .sink(Pipeline, "Sink", move |(input, frontier)| {
                    input.for_each_stamp(|_cap, data| {
                        if pending.emitted_at.is_none() {
                            pending.emitted_at = Some(Instant::now());
                        }
                        for batch in data {
                            for o in batch.drain(..) {
                                match o {
                                    Output::Bar(b) => pending.bars.push(b),
                                    Output::Signal(x) => pending.signals.push(x),
                                    Output::Quote(q) => pending.quotes.push(q),
                                    Output::Dead(d) => pending.dead.push(d),
                                    Output::Warm(_) => {}
                                }
                            }
                        }
                    });
                    // before the frontier is read (see `raw_quotes`)
                    {
                        let mut fired = sink_alerts.borrow_mut();
                        pending.alerts.append(&mut fired.fired);
                    }
                    {
                        let mut raw = raw_quotes.borrow_mut();
                        if pending.quotes.is_empty() {
                            std::mem::swap(&mut pending.quotes, &mut raw);
                        } else {
                            pending.quotes.append(&mut raw);
                        }
                    }
                    let f = frontier.frontier().first().copied();
                    let has_data = !pending.bars.is_empty()
                        || !pending.quotes.is_empty()
                        || !pending.signals.is_empty()
                        || !pending.dead.is_empty()
                        || !pending.alerts.is_empty();
                    // Report progress with data, at the end, and at least once per minute
                    // of event time (so the sink knows every worker's frontier).
                    let minute = f.map(|t| t / MINUTE_NS);
                    let progressed = minute != last_reported_minute;
                    if has_data || progressed || (f.is_none() && !sink_done_w.get()) {
                        last_reported_minute = minute;
                        pending.frontier = f;
                        let msg = std::mem::replace(
                            &mut pending,
                            SinkBatch { worker: index, ..Default::default() },
                        );
                        // Blocking send: a slow sink slows the dataflow down.
                        if sink.blocking_send(msg).is_err() {
                            tracing::error!("sink channel closed; output is lost");
                        }
                    }
                    if f.is_none() {
                        sink_done_w.set(true);
                    }
                });
        });

        let source = (sources)(index, peers);
        let mut source = match source {
            Ok(s) => s,
            Err(e) => return Err(PipelineError::Bus(e.to_string())),
        };
        let started = Instant::now();
        let wall0 = now_ns();
        let proc_now = || wall0 + started.elapsed().as_nanos() as i64;
        let mut wm = WatermarkTracker::new(&source.partitions(), delay, idle, proc_now());
        let mut buf: Vec<Polled> = Vec::with_capacity(batch);
        let mut last_metrics = Instant::now();
        // With `colocated`, a record that belongs to another worker stops the dataflow
        // (see `PipelineConfig::colocated_input`).
        let misrouted = |r: &Record| {
            let owner = route_key(r) % peers as u64;
            if !colocated || owner == index as u64 {
                return None;
            }
            let what = match r {
                Record::Quote { quote, .. } => format!("a quote of {}", quote.symbol),
                Record::Warm(bar) => format!("a warm-up bar of {}", bar.symbol),
                Record::Rejected { partition, .. } => format!("a rejected record of partition {partition}"),
            };
            Some(PipelineError::Bus(format!(
                "worker {index} of {peers} read {what}, which belongs to worker {owner}: the \
                 source does not keep each symbol on one worker as `colocated_input` says"
            )))
        };
        // Stops this worker's dataflow without flushing, and through `abort` the others'.
        let stop_with = |worker: &mut timely::worker::Worker, e: PipelineError| {
            abort.store(true, Ordering::SeqCst);
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
            Err(e)
        };
        let aborted = |worker: &mut timely::worker::Worker| stop_with(worker, PipelineError::Revoked);
        loop {
            buf.clear();
            source.set_input_time(*input.time());
            let state = source.poll(batch, &mut buf).map_err(|e| PipelineError::Bus(e.to_string()))?;
            if state == SourceState::Revoked || abort.load(Ordering::SeqCst) {
                return aborted(worker);
            }
            let now = proc_now();
            for p in source.take_new_partitions() {
                wm.add_partition(p, now);
            }
            for (p, max_event) in source.take_resumed() {
                wm.seed(p, max_event, now);
            }
            for bar in source.take_warmup() {
                let record = Record::Warm(bar);
                if let Some(e) = misrouted(&record) {
                    return stop_with(worker, e);
                }
                input.send(record);
            }
            let got = buf.len();
            for polled in buf.drain(..) {
                match polled.quote {
                    Ok(quote) => {
                        let pwm = wm.observe_local(polled.position.partition, quote.ts_event, now);
                        let record = Record::Quote { quote, pwm };
                        if let Some(e) = misrouted(&record) {
                            return stop_with(worker, e);
                        }
                        input.send(record);
                    }
                    Err(rej) => {
                        metrics::counter!(m::QUOTES_REJECTED, "reason" => rej.reason).increment(1);
                        let record = Record::Rejected {
                            reason: rej.reason.to_string(),
                            error: rej.error,
                            payload: rej.payload,
                            partition: polled.position.partition,
                            offset: polled.position.offset,
                        };
                        if let Some(e) = misrouted(&record) {
                            return stop_with(worker, e);
                        }
                        input.send(record);
                    }
                }
            }
            if got > 0 {
                metrics::counter!(m::QUOTES_INGESTED).increment(got as u64);
                progress.quotes_read(index, now);
            } else {
                progress.heartbeat(index, now);
            }
            wm.publish(&shared);
            let w = to_time(wm.advance_with(now, &shared, |p| source.caught_up(p)));
            if w > *input.time() {
                input.advance_to(w);
            }
            if let Some(f) = probe.with_frontier(|f| f.first().copied()) {
                progress.observe_frontier(to_ts(f), now);
            }
            if index == 0 && last_metrics.elapsed() >= Duration::from_millis(500) {
                last_metrics = Instant::now();
                let cur = wm.current();
                if cur > 0 {
                    metrics::gauge!(m::WATERMARK).set(cur as f64 / 1e9);
                    metrics::gauge!(m::WATERMARK_LAG).set((now_ns() - cur) as f64 / 1e9);
                }
            }
            if state == SourceState::Finished || stop.load(Ordering::Relaxed) {
                break;
            }
            if abort.load(Ordering::SeqCst) {
                return aborted(worker);
            }
            if got == 0 && !source.waits_when_idle() {
                worker.step_or_park(Some(Duration::from_millis(2)));
            } else {
                worker.step();
            }
        }
        progress.finish(index);
        drop(input);
        while !probe.done() || !sink_done.get() {
            if abort.load(Ordering::SeqCst) {
                return aborted(worker);
            }
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        Ok(())
    })
    .map_err(PipelineError::Timely)?;
    // A worker that failed sets `abort`, and the others then stop with `Revoked`: the
    // failure is what the caller hears of.
    let mut failed: Option<PipelineError> = None;
    for result in guards.join() {
        let e = match result {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => PipelineError::Timely(panic),
        };
        if failed
            .as_ref()
            .is_none_or(|f| matches!(f, PipelineError::Revoked))
        {
            failed = Some(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The gap-fill operator (see [`GapFill`]): passes everything through and adds a filled
/// 1m bar for every final minute a series had no quote in.
fn gap_fill<'s>(
    outputs: timely::dataflow::Stream<'s, u64, Vec<Output>>,
    max_minutes: u32,
    lateness: i64,
) -> timely::dataflow::Stream<'s, u64, Vec<Output>> {
    outputs.unary_frontier(Pipeline, "GapFill", move |cap, _info| {
        drop(cap);
        let mut fill = GapFill::new(max_minutes, lateness);
        // a capability for the next minute that may need a fill
        let mut held: Option<Capability<u64>> = None;
        move |(input, frontier), output| {
            let f = frontier.frontier().first().map_or(i64::MAX, |t| to_ts(*t));
            input.for_each_stamp(|cap, data| {
                let Some(&t) = cap.least() else { return };
                let out_cap = cap.delayed(&t, 0);
                let mut session = output.session(&out_cap);
                for batch in data {
                    for o in batch.drain(..) {
                        match &o {
                            Output::Bar(b) => fill.observe(b),
                            Output::Warm(b) => fill.warm(b),
                            _ => {}
                        }
                        session.give(o);
                    }
                }
                drop(session);
                if let Some(next) = fill.next_final() {
                    let next = to_time(next).max(t);
                    if held.as_ref().is_none_or(|h| *h.time() > next) {
                        held = Some(out_cap.delayed(&next));
                    }
                }
            });
            let fills = fill.advance(f);
            if let Some(h) = held.as_ref() {
                for (at, bars) in fills {
                    metrics::counter!(m::BARS_FILLED).increment(bars.len() as u64);
                    let c = h.delayed(&to_time(at).max(*h.time()));
                    output
                        .session(&c)
                        .give_iterator(bars.into_iter().map(Output::Bar));
                }
            }
            match fill.next_final() {
                Some(next) if f != i64::MAX => {
                    if let Some(h) = held.as_mut() {
                        let next = to_time(next);
                        if next > *h.time() {
                            h.downgrade(&next);
                        }
                    }
                }
                _ => held = None,
            }
        }
    })
}

/// Offers a bar to rollup level `level` and, for every parent it emits at once, to the
/// levels above; holds a capability for parents that close later.
#[allow(clippy::too_many_arguments)]
fn feed_rollups(
    levels: &mut [RollupLevel],
    caps: &mut [BTreeMap<TimestampNs, Capability<u64>>],
    level: usize,
    bar: &Bar,
    cap: &Capability<u64>,
    frontier: TimestampNs,
    out: &mut Vec<Output>,
) {
    if level >= levels.len() {
        return;
    }
    match levels[level].offer(bar, frontier) {
        Some(RollupAdmit::Pending { end }) => {
            caps[level]
                .entry(end)
                .or_insert_with(|| cap.delayed(&to_time(end).max(*cap.time())));
        }
        Some(RollupAdmit::Emit(parent)) => {
            if parent.revision > 0 {
                metrics::counter!(m::BAR_REVISIONS).increment(1);
            }
            feed_rollups(levels, caps, level + 1, &parent, cap, frontier, out);
            out.push(Output::Bar(parent));
        }
        None => {}
    }
}
