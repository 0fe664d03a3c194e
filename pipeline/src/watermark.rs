//! Event-time watermarks per partition, combined per worker.
//!
//! Each partition's watermark is the largest event time it has delivered minus the
//! allowed out-of-orderness. A worker's watermark is the minimum over its partitions that
//! are active; a partition silent for `idle_timeout` stops holding it back. When every
//! partition of a worker is idle the worker follows the highest watermark of all workers,
//! and when the whole stream is idle the watermark moves on with processing time, so a
//! quiet market still gets its bars closed.
//!
//! Processing time is passed in by the caller (`now`): this module never reads a clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use pricestream_schemas::TimestampNs;

/// Progress shared by all workers of a process.
#[derive(Debug)]
pub struct SharedProgress {
    max_event: AtomicI64,
    last_event_at: AtomicI64,
}

impl SharedProgress {
    pub fn new(now: TimestampNs) -> Self {
        SharedProgress {
            max_event: AtomicI64::new(i64::MIN),
            last_event_at: AtomicI64::new(now),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PartitionWm {
    max_event: Option<TimestampNs>,
    last_active: TimestampNs,
}

/// One worker's watermark state.
#[derive(Debug)]
pub struct WatermarkTracker {
    delay: i64,
    idle_timeout: i64,
    parts: BTreeMap<u32, PartitionWm>,
    current: TimestampNs,
    /// Observed since the last [`WatermarkTracker::publish`]: newest event time and the
    /// processing time it was seen at.
    unpublished: Option<(TimestampNs, TimestampNs)>,
}

impl WatermarkTracker {
    /// `delay` is the allowed out-of-orderness; both arguments are nanoseconds.
    pub fn new(partitions: &[u32], delay: i64, idle_timeout: i64, now: TimestampNs) -> Self {
        let parts = partitions
            .iter()
            .map(|&p| {
                (
                    p,
                    PartitionWm {
                        max_event: None,
                        last_active: now,
                    },
                )
            })
            .collect();
        WatermarkTracker {
            delay,
            idle_timeout,
            parts,
            current: i64::MIN,
            unpublished: None,
        }
    }

    /// Adds a partition that has delivered nothing yet: it holds the watermark back until
    /// it delivers or goes idle.
    pub fn add_partition(&mut self, partition: u32, now: TimestampNs) {
        self.parts.entry(partition).or_insert(PartitionWm {
            max_event: None,
            last_active: now,
        });
    }

    /// Starts `partition` as if events up to `max_event` had been read (a source resuming
    /// after a restart), so its watermark continues where it was.
    pub fn seed(&mut self, partition: u32, max_event: TimestampNs, now: TimestampNs) {
        let p = self.parts.entry(partition).or_insert(PartitionWm {
            max_event: None,
            last_active: now,
        });
        p.max_event = Some(p.max_event.map_or(max_event, |m| m.max(max_event)));
    }

    /// Records an event of `partition`; returns that partition's watermark after it.
    pub fn observe(
        &mut self,
        partition: u32,
        ts_event: TimestampNs,
        now: TimestampNs,
        shared: &SharedProgress,
    ) -> TimestampNs {
        let wm = self.observe_local(partition, ts_event, now);
        self.publish(shared);
        wm
    }

    /// [`WatermarkTracker::observe`] without telling the other workers yet: a reader of a
    /// batch calls this per event and [`WatermarkTracker::publish`] once per batch, so the
    /// workers do not contend for the shared counters on every event.
    pub fn observe_local(
        &mut self,
        partition: u32,
        ts_event: TimestampNs,
        now: TimestampNs,
    ) -> TimestampNs {
        let p = self.parts.entry(partition).or_insert(PartitionWm {
            max_event: None,
            last_active: now,
        });
        let max = p.max_event.map_or(ts_event, |m| m.max(ts_event));
        p.max_event = Some(max);
        p.last_active = now;
        self.unpublished = Some(match self.unpublished {
            Some((e, at)) => (e.max(ts_event), at.max(now)),
            None => (ts_event, now),
        });
        max.saturating_sub(self.delay)
    }

    /// Shares what was observed since the last call with the other workers.
    pub fn publish(&mut self, shared: &SharedProgress) {
        if let Some((max_event, at)) = self.unpublished.take() {
            shared.max_event.fetch_max(max_event, Ordering::Relaxed);
            shared.last_event_at.fetch_max(at, Ordering::Relaxed);
        }
    }

    /// The worker's watermark at processing time `now` (never decreases).
    pub fn advance(&mut self, now: TimestampNs, shared: &SharedProgress) -> TimestampNs {
        self.advance_with(now, shared, |_| true)
    }

    /// [`WatermarkTracker::advance`] where only partitions for which `caught_up` holds may
    /// count as idle: a partition with unread input (a consumer catching up on a backlog,
    /// or one whose first fetch is slow) holds the watermark back however long it is quiet,
    /// so its events are not overtaken.
    pub fn advance_with(
        &mut self,
        now: TimestampNs,
        shared: &SharedProgress,
        caught_up: impl Fn(u32) -> bool,
    ) -> TimestampNs {
        let mut min_active: Option<TimestampNs> = None;
        let mut blocked = false;
        for (id, p) in &self.parts {
            let idle = now.saturating_sub(p.last_active) >= self.idle_timeout && caught_up(*id);
            match (p.max_event, idle) {
                (Some(m), false) => {
                    let wm = m.saturating_sub(self.delay);
                    min_active = Some(min_active.map_or(wm, |x| x.min(wm)));
                }
                // A partition that has not delivered anything yet holds the watermark
                // back until it is idle.
                (None, false) => blocked = true,
                (_, true) => {}
            }
        }
        let candidate = if blocked {
            self.current
        } else if let Some(m) = min_active {
            m
        } else {
            let global = shared.max_event.load(Ordering::Relaxed);
            if global == i64::MIN {
                self.current
            } else {
                let quiet_for = now.saturating_sub(shared.last_event_at.load(Ordering::Relaxed));
                let base = global.saturating_sub(self.delay);
                if quiet_for >= self.idle_timeout {
                    base.saturating_add(quiet_for)
                } else {
                    base
                }
            }
        };
        self.current = self.current.max(candidate);
        self.current
    }

    pub fn current(&self) -> TimestampNs {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_partition_with_unread_input_is_never_idle() {
        let shared = SharedProgress::new(0);
        let mut wm = WatermarkTracker::new(&[0, 1], 2 * S, 3 * S, 0);
        wm.observe_local(0, 100 * S, S);
        wm.observe_local(1, 50 * S, S);
        wm.publish(&shared);
        // partition 1 is quiet for long, but not at its end: it holds the watermark
        assert_eq!(wm.advance_with(10 * S, &shared, |p| p != 1), 48 * S);
        // once caught up, its quiet makes it idle (and with every partition quiet, the
        // watermark moves on with the clock)
        assert!(wm.advance_with(10 * S, &shared, |_| true) >= 98 * S);
    }

    #[test]
    fn watermark_is_min_of_active_partitions_minus_delay() {
        let shared = SharedProgress::new(0);
        let mut wm = WatermarkTracker::new(&[0, 1], 2 * S, 10 * S, 0);
        wm.observe(0, 100 * S, 0, &shared);
        // partition 1 has delivered nothing yet: held back
        assert_eq!(wm.advance(S, &shared), i64::MIN);
        wm.observe(1, 50 * S, S, &shared);
        assert_eq!(wm.advance(S, &shared), 48 * S);
        // out-of-order event does not move it back
        wm.observe(1, 40 * S, 2 * S, &shared);
        assert_eq!(wm.advance(2 * S, &shared), 48 * S);
        wm.observe(1, 70 * S, 3 * S, &shared);
        assert_eq!(wm.advance(3 * S, &shared), 68 * S);
    }

    #[test]
    fn idle_partition_stops_holding_back() {
        let shared = SharedProgress::new(0);
        let mut wm = WatermarkTracker::new(&[0, 1], 0, 10 * S, 0);
        wm.observe(0, 100 * S, 0, &shared);
        wm.observe(1, 10 * S, 0, &shared);
        assert_eq!(wm.advance(5 * S, &shared), 10 * S);
        wm.observe(0, 200 * S, 11 * S, &shared);
        // partition 1 silent for 11 s > idle timeout
        assert_eq!(wm.advance(11 * S, &shared), 200 * S);
    }

    #[test]
    fn idle_worker_follows_the_others_then_processing_time() {
        let shared = SharedProgress::new(0);
        let mut busy = WatermarkTracker::new(&[0], 0, 10 * S, 0);
        let mut idle = WatermarkTracker::new(&[1], 0, 10 * S, 0);
        busy.observe(0, 500 * S, 9 * S, &shared);
        assert_eq!(idle.advance(5 * S, &shared), i64::MIN, "not idle yet");
        assert_eq!(
            idle.advance(10 * S, &shared),
            500 * S,
            "follows the busy worker"
        );
        // everything quiet since t=9s: after the idle timeout, time moves on
        assert_eq!(idle.advance(19 * S, &shared), 510 * S);
        assert_eq!(busy.advance(25 * S, &shared), 516 * S);
    }
}
