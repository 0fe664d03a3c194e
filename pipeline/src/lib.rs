//! The stream processor: a timely dataflow that turns quotes into event-time bars, and
//! the sink that makes its output durable.

pub mod alerts;
pub mod dataflow;
pub mod gapfill;
pub mod hash;
pub mod live;
pub mod metrics;
pub mod progress;
pub mod rollups;
pub mod signals;
pub mod sink;
pub mod watermark;
pub mod window;

use std::collections::BTreeMap;

use pricestream_analytics::SignalParams;
use pricestream_schemas::Interval;
use serde::{Deserialize, Serialize};

pub use dataflow::{
    run, run_with_control, run_with_progress, Output, Record, SinkBatch, SourceFactory,
};
pub use progress::{Progress, ProgressReport, Stall};
pub use signals::SharedProfiles;

/// Pipeline settings (section `[pipeline]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Timely worker threads; 0 means one per core.
    pub workers: usize,
    /// How far behind the newest event time the watermark trails.
    pub max_out_of_orderness_ms: i64,
    /// How long after its end a window still accepts late quotes (as revisions).
    pub allowed_lateness_ms: i64,
    /// A partition silent this long stops holding the watermark back.
    pub idle_timeout_ms: i64,
    /// Records read from the source per step.
    pub poll_batch: usize,
    /// Rollup intervals built from 1m bars (each from the next finer one).
    pub rollups: Vec<Interval>,
    /// Intervals that get signals, with their parameters (`[pipeline.signals.1h]`).
    pub signals: BTreeMap<Interval, SignalParams>,
    /// Seasonal-deviation signals (from the seasonality profiles).
    pub seasonal: signals::SeasonalParams,
    /// Pass raw quotes on to the sinks (the lake's `quotes` dataset); set from
    /// `lake.quotes`, not configured here.
    #[serde(skip)]
    pub keep_quotes: bool,
    /// The alert rules the dataflow evaluates (kept in step with the store by
    /// [`alerts::refresh_rules`]); `None`: no alerts. Set by the process, not configured.
    #[serde(skip)]
    pub alert_rules: Option<alerts::SharedRules>,
    /// The topic dead letters name as their source (`quotes.v1` when empty); set by the
    /// process from the Kafka configuration, not configured here.
    #[serde(skip)]
    pub source_topic: String,
    /// Readiness fails when quotes keep arriving but the watermark has not advanced for
    /// this long, or when a worker has not polled its source for this long.
    pub stall_timeout_ms: i64,
    /// Final bars per series loaded into the signal state when a partition resumes from
    /// committed offsets (Kafka), so signals continue exactly where they were.
    pub signal_warmup_bars: u32,
    /// Gap-filled 1m bars: a final minute without quotes gets a bar carrying the last
    /// close (zero volume, no trades), for at most this many minutes in a row after a
    /// series' last real bar. 0 turns filling off.
    pub gap_fill_minutes: u32,
    /// Every worker's source yields only records the exchange would send to that worker
    /// (a quote's symbol hash modulo the worker count is the worker's index): the
    /// in-process bus when the worker count divides its partition count
    /// (`InProcessBus::colocates`). Records then stay on the worker that read them instead
    /// of going through the exchange, and a record that breaks the promise stops the
    /// dataflow with an error. Set by the process, not configured.
    #[serde(skip)]
    pub colocated_input: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 0,
            max_out_of_orderness_ms: 2_000,
            allowed_lateness_ms: 60_000,
            idle_timeout_ms: 5_000,
            poll_batch: 4_096,
            rollups: vec![Interval::M5, Interval::M15, Interval::H1, Interval::D1],
            signals: [Interval::M1, Interval::M5, Interval::H1]
                .into_iter()
                .map(|i| (i, SignalParams::default()))
                .collect(),
            seasonal: signals::SeasonalParams::default(),
            keep_quotes: true,
            alert_rules: None,
            source_topic: String::new(),
            stall_timeout_ms: 30_000,
            signal_warmup_bars: 5_000,
            gap_fill_minutes: 0,
            colocated_input: false,
        }
    }
}

impl PipelineConfig {
    /// The worker count with `0` resolved to the number of cores.
    pub fn resolved_workers(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.workers
        }
    }
}

/// Pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("timely dataflow failed: {0}")]
    Timely(String),
    #[error("source failed: {0}")]
    Bus(String),
    #[error("sink failed: {0}")]
    Sink(#[from] pricestream_store::StoreError),
    #[error("sink task failed: {0}")]
    Join(String),
    #[error("{0}")]
    Publish(String),
    #[error("partitions were revoked; the dataflow was dropped to be rebuilt")]
    Revoked,
}

pub type Result<T> = std::result::Result<T, PipelineError>;
