//! Gap-filled 1m bars: a minute without quotes gets a bar that carries the series' last
//! close, with zero volume and no trades ([`Bar::is_filled`]), so charts and indicators
//! see a regular series.
//!
//! A minute is filled only once it is *final* (the frontier is past its end plus the
//! allowed lateness), so a late quote always makes a real bar first and a fill is never
//! revised. The fill travels at its finalisation time, the time the signal stage reads
//! final bars at, so signals see fills in order. A series stops being filled after
//! `max_minutes` filled minutes in a row (a delisted or idle symbol does not grow
//! forever) and starts again with its next real bar.

use std::collections::BTreeMap;

use pricestream_schemas::{Bar, Interval, Symbol, TimestampNs, Venue};

use crate::hash::FastMap;

const MIN: i64 = 60_000_000_000;

#[derive(Debug)]
struct Series {
    /// The newest final real bar: the close a fill carries.
    carry: Option<Bar>,
    /// Real bars not yet final, by bucket start (latest revision).
    pending: BTreeMap<TimestampNs, Bar>,
    /// Bucket start of the newest final minute accounted for (real or filled).
    done: TimestampNs,
    /// Filled minutes in a row since the last real bar.
    run: u32,
}

/// The gap-fill state of one worker.
#[derive(Debug)]
pub struct GapFill {
    max_minutes: u32,
    lateness: i64,
    series: FastMap<(Venue, Symbol), Series>,
    /// Bucket start of the newest final minute already processed.
    horizon: TimestampNs,
}

impl GapFill {
    /// `max_minutes == 0` turns filling off.
    pub fn new(max_minutes: u32, allowed_lateness_ns: i64) -> Self {
        GapFill {
            max_minutes,
            lateness: allowed_lateness_ns.max(0),
            series: FastMap::default(),
            horizon: i64::MIN,
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_minutes > 0
    }

    /// When the minute starting at `start` is final: the dataflow time its fill travels at.
    pub fn final_at(&self, start: TimestampNs) -> TimestampNs {
        start.saturating_add(MIN).saturating_add(self.lateness)
    }

    /// The finalisation time of the next minute that may need a fill, if any series is
    /// being filled: the operator holds a capability for it.
    pub fn next_final(&self) -> Option<TimestampNs> {
        if !self.enabled() || self.series.is_empty() {
            return None;
        }
        let next = if self.horizon == i64::MIN {
            self.series.values().map(|s| s.done).min()? + MIN
        } else {
            self.horizon + MIN
        };
        Some(self.final_at(next))
    }

    /// The state of `bar`'s series; a new series has accounted for minutes up to `done`.
    fn series_of(&mut self, bar: &Bar, done: TimestampNs) -> &mut Series {
        self.series
            .entry((bar.venue, bar.symbol.clone()))
            .or_insert_with(|| Series {
                carry: None,
                pending: BTreeMap::new(),
                done,
                run: 0,
            })
    }

    /// Makes a final real bar the series' carry, unless it already carries a newer one.
    fn carry(s: &mut Series, bar: &Bar) {
        if s.carry
            .as_ref()
            .is_none_or(|c| c.bucket_start <= bar.bucket_start)
        {
            s.carry = Some(bar.clone());
            s.run = 0;
        }
    }

    /// Observes a 1m bar on its way through (real bars only; fills are ours).
    pub fn observe(&mut self, bar: &Bar) {
        if !self.enabled() || bar.interval != Interval::M1 || bar.is_filled() {
            return;
        }
        let s = self.series_of(bar, bar.bucket_start - MIN);
        if bar.bucket_start <= s.done {
            // a minute already final: only its close matters
            Self::carry(s, bar);
            return;
        }
        match s.pending.get(&bar.bucket_start) {
            Some(old) if old.revision > bar.revision => {}
            _ => {
                s.pending.insert(bar.bucket_start, bar.clone());
            }
        }
    }

    /// Seeds a series from a bar final before a restart, so its gaps are filled exactly
    /// as before.
    pub fn warm(&mut self, bar: &Bar) {
        if !self.enabled() || bar.interval != Interval::M1 || bar.is_filled() {
            return;
        }
        let s = self.series_of(bar, bar.bucket_start);
        s.done = s.done.max(bar.bucket_start);
        Self::carry(s, bar);
    }

    /// Processes every minute final at `frontier` (strictly past its finalisation time),
    /// returning the fills grouped by finalisation time, oldest first. A frontier of
    /// `i64::MAX` (the input is closed) makes every pending bar final and fills the gaps
    /// between them, but nothing after a series' last bar; the state is then empty.
    pub fn advance(&mut self, frontier: TimestampNs) -> Vec<(TimestampNs, Vec<Bar>)> {
        let mut out = Vec::new();
        if !self.enabled() {
            return out;
        }
        let closed = frontier == i64::MAX;
        // the newest minute whose finalisation time the frontier is past
        let target = Interval::M1.bucket_start(frontier.saturating_sub(1 + self.lateness)) - MIN;
        if !closed && target <= self.horizon {
            return out;
        }
        let mut by_minute: BTreeMap<TimestampNs, Vec<Bar>> = BTreeMap::new();
        let max_minutes = self.max_minutes;
        self.series.retain(|_, s| {
            let until = if closed {
                s.pending.keys().next_back().copied().unwrap_or(s.done)
            } else {
                target
            };
            let mut minute = s.done + MIN;
            while minute <= until {
                // real bars up to this minute become final
                while let Some(entry) = s.pending.first_entry() {
                    if *entry.key() > minute {
                        break;
                    }
                    s.carry = Some(entry.remove());
                    s.run = 0;
                }
                let real = s.carry.as_ref().is_some_and(|c| c.bucket_start == minute);
                if !real && s.run >= max_minutes {
                    // idle too long: skip ahead to the next real bar, if it is final
                    match s.pending.keys().next() {
                        Some(&next) if next <= until => minute = next,
                        _ => minute = until + MIN,
                    }
                    continue;
                }
                if !real {
                    if let Some(c) = &s.carry {
                        by_minute.entry(minute).or_default().push(Bar::filled_after(
                            c,
                            Interval::M1,
                            minute,
                        ));
                        s.run += 1;
                    }
                }
                minute += MIN;
            }
            s.done = s.done.max(until);
            // a series idle past the fill limit with nothing pending is forgotten, and
            // every series once the input is closed
            let idle = s.pending.is_empty() && s.run >= max_minutes;
            !(closed || idle)
        });
        self.horizon = self.horizon.max(target);
        for (minute, mut bars) in by_minute {
            bars.sort_by(|a, b| (a.venue, &a.symbol).cmp(&(b.venue, &b.symbol)));
            out.push((self.final_at(minute), bars));
        }
        out
    }

    /// Series being tracked.
    pub fn series(&self) -> usize {
        self.series.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(minute: i64, close: f64, rev: u32) -> Bar {
        let start = minute * MIN;
        Bar {
            venue: Venue::Binance,
            symbol: Symbol::new("ETH-USDT").unwrap(),
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
            revision: rev,
            ts_event: start + 7,
            ts_ingest: start + 8,
        }
    }

    fn fills(out: &[(TimestampNs, Vec<Bar>)]) -> Vec<(i64, f64)> {
        out.iter()
            .flat_map(|(_, bs)| bs.iter().map(|b| (b.bucket_start / MIN, b.close)))
            .collect()
    }

    #[test]
    fn fills_final_gaps_with_the_last_close() {
        let lateness = 2 * MIN;
        let mut g = GapFill::new(60, lateness);
        g.observe(&bar(10, 100.0, 0));
        g.observe(&bar(14, 104.0, 0));
        // minute 11 is final once the frontier is past 12m + lateness
        assert!(g.advance(14 * MIN).is_empty());
        assert_eq!(g.next_final(), Some(12 * MIN + lateness));
        let out = g.advance(14 * MIN + 1);
        assert_eq!(out[0].0, 12 * MIN + lateness);
        assert_eq!(fills(&out), vec![(11, 100.0)]);
        // a late quote for minute 12 (within the lateness) makes a real bar: no fill
        g.observe(&bar(12, 102.0, 0));
        let out = g.advance(20 * MIN);
        // minutes 15.. are filled as the frontier passes them, up to the limit
        assert_eq!(fills(&out), vec![(13, 102.0), (15, 104.0), (16, 104.0)]);
        let f = &out[0].1[0];
        assert!(f.is_filled());
        assert_eq!((f.volume, f.trade_count, f.revision), (0.0, 0, 0));
        assert_eq!(f.ts_event, 12 * MIN + 7);
        assert_eq!(g.next_final(), Some(18 * MIN + lateness));
        // the closed input fills nothing after the last bar and releases everything
        assert!(g.advance(i64::MAX).is_empty());
        assert_eq!(g.next_final(), None);
    }

    #[test]
    fn stops_after_the_limit_and_resumes_with_the_next_bar() {
        let mut g = GapFill::new(3, 0);
        g.observe(&bar(0, 1.0, 0));
        g.observe(&bar(10, 2.0, 0));
        g.observe(&bar(12, 3.0, 0));
        let out = g.advance(14 * MIN);
        assert_eq!(fills(&out), vec![(1, 1.0), (2, 1.0), (3, 1.0), (11, 2.0)]);
        assert_eq!(g.series(), 1);
        let out = g.advance(100 * MIN);
        assert_eq!(fills(&out), vec![(13, 3.0), (14, 3.0), (15, 3.0)]);
        assert_eq!(g.series(), 0, "idle past the limit: forgotten");
        assert_eq!(g.next_final(), None);
    }

    #[test]
    fn a_warm_bar_carries_across_a_restart() {
        let mut g = GapFill::new(10, 0);
        g.warm(&bar(5, 50.0, 1));
        g.observe(&bar(8, 80.0, 0));
        let out = g.advance(i64::MAX);
        assert_eq!(fills(&out), vec![(6, 50.0), (7, 50.0)]);
    }

    #[test]
    fn disabled_does_nothing() {
        let mut g = GapFill::new(0, 0);
        g.observe(&bar(0, 1.0, 0));
        g.observe(&bar(5, 1.0, 0));
        assert!(g.advance(i64::MAX).is_empty());
        assert_eq!(g.next_final(), None);
    }
}
