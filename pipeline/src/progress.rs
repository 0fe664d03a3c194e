//! The pipeline's progress as other parts of the process see it (readiness, `/health/ready`).
//!
//! The dataflow's driver loop (not the window code) records, in processing time: that each
//! worker is still polling its source, when it last read quotes, and the dataflow's output
//! frontier (the event-time watermark that closes windows) with the time it last moved.
//! [`Progress::check`] turns that into a verdict: the pipeline is stuck when quotes were read
//! after the watermark last advanced and it has not advanced since for the stall timeout, or
//! when a worker has stopped polling (e.g. blocked behind a sink that does not drain).
//!
//! All times are Unix nanoseconds passed in by the caller; this module never reads a clock.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use pricestream_schemas::TimestampNs;

/// "Never" for the timestamps below.
const NEVER: i64 = i64::MIN;

#[derive(Debug)]
struct WorkerProgress {
    heartbeat_at: AtomicI64,
    last_quote_at: AtomicI64,
    finished: AtomicBool,
}

/// Progress of a running dataflow, shared between its workers and readers.
#[derive(Debug)]
pub struct Progress {
    workers: Vec<WorkerProgress>,
    /// The dataflow's output frontier (event time, ns); `NEVER` before it first moves.
    frontier: AtomicI64,
    /// When `frontier` last advanced (processing time); the start time before that.
    advanced_at: AtomicI64,
}

/// What [`Progress::check`] reports when the pipeline makes progress.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProgressReport {
    /// The event-time watermark at the sinks (Unix ns), once it has moved.
    pub watermark: Option<TimestampNs>,
    /// Seconds since the watermark last advanced (or since start).
    pub watermark_unchanged_secs: f64,
    /// Seconds since any worker last read a quote; `None` if none was read yet.
    pub last_quote_secs: Option<f64>,
    /// All workers have finished (their sources are exhausted or closed).
    pub finished: bool,
}

/// Why the pipeline is not making progress.
#[derive(Debug, Clone, PartialEq)]
pub enum Stall {
    /// Quotes keep arriving but the watermark does not move, so no window closes.
    WatermarkStuck {
        unchanged_secs: f64,
        last_quote_secs: f64,
    },
    /// A worker has not polled its source for this long.
    WorkerStalled { worker: usize, silent_secs: f64 },
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stall::WatermarkStuck {
                unchanged_secs,
                last_quote_secs,
            } => write!(
                f,
                "watermark has not advanced for {unchanged_secs:.1} s while quotes are arriving \
                 (last quote read {last_quote_secs:.1} s ago)"
            ),
            Stall::WorkerStalled {
                worker,
                silent_secs,
            } => write!(
                f,
                "pipeline worker {worker} has not polled its source for {silent_secs:.1} s \
                 (is the sink keeping up?)"
            ),
        }
    }
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

impl Progress {
    /// Progress of a dataflow with `workers` workers, started at `now`.
    pub fn new(workers: usize, now: TimestampNs) -> Self {
        Progress {
            workers: (0..workers.max(1))
                .map(|_| WorkerProgress {
                    heartbeat_at: AtomicI64::new(now),
                    last_quote_at: AtomicI64::new(NEVER),
                    finished: AtomicBool::new(false),
                })
                .collect(),
            frontier: AtomicI64::new(NEVER),
            advanced_at: AtomicI64::new(now),
        }
    }

    fn worker(&self, index: usize) -> Option<&WorkerProgress> {
        self.workers.get(index)
    }

    /// Worker `index` is alive and polling at `now`.
    pub fn heartbeat(&self, index: usize, now: TimestampNs) {
        if let Some(w) = self.worker(index) {
            w.heartbeat_at.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Worker `index` read at least one quote at `now`.
    pub fn quotes_read(&self, index: usize, now: TimestampNs) {
        if let Some(w) = self.worker(index) {
            w.last_quote_at.fetch_max(now, Ordering::Relaxed);
            w.heartbeat_at.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// The dataflow's output frontier is `frontier` (event time) at `now`.
    pub fn observe_frontier(&self, frontier: TimestampNs, now: TimestampNs) {
        let before = self.frontier.fetch_max(frontier, Ordering::Relaxed);
        if frontier > before {
            self.advanced_at.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Worker `index` has left its polling loop.
    pub fn finish(&self, index: usize) {
        if let Some(w) = self.worker(index) {
            w.finished.store(true, Ordering::Relaxed);
        }
    }

    /// The verdict at `now`, with `stall_after` nanoseconds of patience.
    pub fn check(
        &self,
        now: TimestampNs,
        stall_after: i64,
    ) -> std::result::Result<ProgressReport, Stall> {
        let frontier = self.frontier.load(Ordering::Relaxed);
        let advanced_at = self.advanced_at.load(Ordering::Relaxed);
        let last_quote = self
            .workers
            .iter()
            .map(|w| w.last_quote_at.load(Ordering::Relaxed))
            .max()
            .unwrap_or(NEVER);
        let finished = self
            .workers
            .iter()
            .all(|w| w.finished.load(Ordering::Relaxed));
        let report = ProgressReport {
            watermark: (frontier != NEVER).then_some(frontier),
            watermark_unchanged_secs: secs(now.saturating_sub(advanced_at)),
            last_quote_secs: (last_quote != NEVER).then(|| secs(now.saturating_sub(last_quote))),
            finished,
        };
        if finished {
            return Ok(report);
        }
        for (worker, w) in self.workers.iter().enumerate() {
            if w.finished.load(Ordering::Relaxed) {
                continue;
            }
            let silent = now.saturating_sub(w.heartbeat_at.load(Ordering::Relaxed));
            if silent >= stall_after {
                return Err(Stall::WorkerStalled {
                    worker,
                    silent_secs: secs(silent),
                });
            }
        }
        let unchanged = now.saturating_sub(advanced_at);
        if last_quote != NEVER && last_quote > advanced_at && unchanged >= stall_after {
            return Err(Stall::WatermarkStuck {
                unchanged_secs: secs(unchanged),
                last_quote_secs: secs(now.saturating_sub(last_quote)),
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_fresh_pipeline_without_quotes_is_ready() {
        let p = Progress::new(2, 0);
        p.heartbeat(0, 100 * S);
        p.heartbeat(1, 100 * S);
        let r = p.check(100 * S, 30 * S).unwrap();
        assert_eq!(r.watermark, None);
        assert_eq!(r.last_quote_secs, None);
        assert!(!r.finished);
    }

    #[test]
    fn watermark_that_follows_the_quotes_is_ready() {
        let p = Progress::new(1, 0);
        for t in 1..100 {
            p.quotes_read(0, t * S);
            p.observe_frontier(t * 1_000 * S, t * S);
        }
        let r = p.check(100 * S, 30 * S).unwrap();
        assert_eq!(r.watermark, Some(99_000 * S));
        assert_eq!(r.watermark_unchanged_secs, 1.0);
    }

    #[test]
    fn quotes_arriving_while_the_watermark_stands_still_is_a_stall() {
        let p = Progress::new(1, 0);
        p.observe_frontier(500 * S, S);
        // the same frontier again is no advance
        p.observe_frontier(500 * S, 10 * S);
        for t in 2..=40 {
            p.quotes_read(0, t * S);
        }
        // 29 s since the last advance: still within patience
        assert!(p.check(30 * S, 30 * S).is_ok());
        let err = p.check(40 * S, 30 * S).unwrap_err();
        assert_eq!(
            err,
            Stall::WatermarkStuck {
                unchanged_secs: 39.0,
                last_quote_secs: 0.0
            }
        );
        assert!(err.to_string().contains("has not advanced for 39.0 s"));
        // it moves again: ready
        p.observe_frontier(501 * S, 41 * S);
        assert!(p.check(41 * S, 30 * S).is_ok());
    }

    #[test]
    fn a_quiet_market_is_not_a_stall() {
        let p = Progress::new(1, 0);
        p.quotes_read(0, 5 * S);
        p.observe_frontier(100 * S, 6 * S);
        p.heartbeat(0, 100 * S);
        // no quote since the last advance: nothing to close, nothing stuck
        assert!(p.check(100 * S, 30 * S).is_ok());
    }

    #[test]
    fn a_worker_that_stops_polling_is_a_stall_until_it_finishes() {
        let p = Progress::new(2, 0);
        p.heartbeat(0, 50 * S);
        p.heartbeat(1, 10 * S);
        let err = p.check(50 * S, 30 * S).unwrap_err();
        assert_eq!(
            err,
            Stall::WorkerStalled {
                worker: 1,
                silent_secs: 40.0
            }
        );
        p.finish(1);
        assert!(p.check(50 * S, 30 * S).is_ok());
        p.finish(0);
        assert!(p.check(500 * S, 30 * S).unwrap().finished);
    }
}
