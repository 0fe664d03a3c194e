//! The timely dataflow: sources → exchange by symbol → 1m windows → sink.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_bus::{Polled, QuoteSource, SourceState};
use pricestream_schemas::codec::topics;
use pricestream_schemas::{Bar, Clock, Interval, Quote, SystemClock, TimestampNs};
use pricestream_store::DeadLetter;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Input, Probe};

use timely::dataflow::operators::Capability;
use timely::dataflow::{InputHandle, ProbeHandle};
use tokio::sync::mpsc;

use crate::metrics as m;
use crate::progress::Progress;
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
}

/// A record leaving the window operator.
#[derive(Debug, Clone)]
pub enum Output {
    Bar(Bar),
    Dead(DeadLetter),
}

/// What a worker hands to the sinks: everything it produced below `frontier`.
#[derive(Debug, Default)]
pub struct SinkBatch {
    pub worker: usize,
    /// The worker's sink frontier after this batch (`None` once the input is closed).
    pub frontier: Option<u64>,
    pub bars: Vec<Bar>,
    pub dead: Vec<DeadLetter>,
    /// When the batch's first output left the window operator (processing time, read by
    /// the sink glue, never by window code): the start of the window-close → sink latency.
    pub emitted_at: Option<Instant>,
}

/// Creates the quote source of worker `index` of `peers`.
pub type SourceFactory =
    Arc<dyn Fn(usize, usize) -> pricestream_bus::Result<Box<dyn QuoteSource>> + Send + Sync>;

fn to_time(ts: TimestampNs) -> u64 {
    ts.max(0) as u64
}

fn to_ts(t: u64) -> TimestampNs {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn now_ns() -> TimestampNs {
    SystemClock.now_ns()
}

/// Runs the dataflow on `cfg.workers` threads until every source is finished (or `stop`
/// is set), then flushes every open window to the sink channel. Blocks.
pub fn run(
    cfg: &PipelineConfig,
    sources: SourceFactory,
    sink: mpsc::Sender<SinkBatch>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let progress = Arc::new(Progress::new(cfg.resolved_workers(), now_ns()));
    run_with_progress(cfg, sources, sink, stop, progress)
}

/// [`run`], recording the dataflow's progress into `progress` (made for
/// `cfg.resolved_workers()` workers) for readiness checks.
pub fn run_with_progress(
    cfg: &PipelineConfig,
    sources: SourceFactory,
    sink: mpsc::Sender<SinkBatch>,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Result<()> {
    let workers = cfg.resolved_workers();
    let delay = cfg.max_out_of_orderness_ms.saturating_mul(1_000_000);
    let lateness = cfg.allowed_lateness_ms.saturating_mul(1_000_000);
    let idle = cfg.idle_timeout_ms.saturating_mul(1_000_000);
    let batch = cfg.poll_batch.max(1);
    let shared = Arc::new(SharedProgress::new(now_ns()));
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let mut input: InputHandle<u64, _> = InputHandle::new();
        let probe = ProbeHandle::new();
        let sink = sink.clone();
        let progress = Arc::clone(&progress);
        let sink_done = Rc::new(Cell::new(false));
        let sink_done_w = Rc::clone(&sink_done);
        let mut pending = SinkBatch { worker: index, ..Default::default() };
        worker.dataflow::<u64, _, _>(|scope| {
            let exchange = Exchange::new(|r: &Record| match r {
                Record::Quote { quote, .. } => quote.symbol.stable_hash(),
                Record::Rejected { partition, .. } => u64::from(*partition),
            });
            scope
                .input_from(&mut input)
                .container::<Vec<Record>>()
                .unary_frontier(exchange, "BarWindows", move |cap, _info| {
                    drop(cap);
                    let mut windows = BarWindows::new(Interval::M1, lateness);
                    let mut caps: BTreeMap<TimestampNs, Capability<u64>> = BTreeMap::new();
                    move |(input, frontier), output| {
                        let f = frontier.frontier().first().map_or(i64::MAX, |t| to_ts(*t));
                        input.for_each_stamp(|cap, data| {
                            let Some(&t) = cap.least() else { return };
                            let mut now_out: Vec<Output> = Vec::new();
                            for batch in data {
                                for record in batch.drain(..) {
                                    match record {
                                        Record::Quote { quote, pwm } => {
                                            let eff = pwm.max(to_ts(t));
                                            match windows.offer(&quote, eff, f) {
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
                                                        topic: topics::QUOTES.to_string(),
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
                                        }
                                        Record::Rejected { reason, error, payload, partition, offset } => {
                                            now_out.push(Output::Dead(DeadLetter {
                                                topic: topics::QUOTES.to_string(),
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
                                output.session(&out_cap).give_iterator(now_out.into_iter());
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
                .container::<Vec<Output>>()
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
                                    Output::Dead(d) => pending.dead.push(d),
                                }
                            }
                        }
                    });
                    let f = frontier.frontier().first().copied();
                    let has_data = !pending.bars.is_empty() || !pending.dead.is_empty();
                    if has_data || (f.is_none() && !sink_done_w.get()) {
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
        loop {
            buf.clear();
            let state = source.poll(batch, &mut buf).map_err(|e| PipelineError::Bus(e.to_string()))?;
            let now = proc_now();
            let got = buf.len();
            for polled in buf.drain(..) {
                match polled.quote {
                    Ok(quote) => {
                        let pwm = wm.observe(polled.position.partition, quote.ts_event, now, &shared);
                        input.send(Record::Quote { quote, pwm });
                    }
                    Err(rej) => {
                        metrics::counter!(m::QUOTES_REJECTED, "reason" => rej.reason).increment(1);
                        input.send(Record::Rejected {
                            reason: rej.reason.to_string(),
                            error: rej.error,
                            payload: rej.payload,
                            partition: polled.position.partition,
                            offset: polled.position.offset,
                        });
                    }
                }
            }
            if got > 0 {
                metrics::counter!(m::QUOTES_INGESTED).increment(got as u64);
                progress.quotes_read(index, now);
            } else {
                progress.heartbeat(index, now);
            }
            let w = to_time(wm.advance(now, &shared));
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
            if got == 0 {
                worker.step_or_park(Some(Duration::from_millis(2)));
            } else {
                worker.step();
            }
        }
        progress.finish(index);
        drop(input);
        while !probe.done() || !sink_done.get() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        Ok(())
    })
    .map_err(PipelineError::Timely)?;
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(panic) => return Err(PipelineError::Timely(panic)),
        }
    }
    Ok(())
}
