//! The OHLCV fold: an order-insensitive, mergeable accumulator.
//!
//! `open` is the price of the earliest event-time observation and `close` of the latest
//! (ties keep the first and the last seen, respectively), so the result depends on event
//! time, not on arrival order, and two partial accumulators merge into the one a single
//! pass would give. Sums (`volume`, `notional`) are folded in arrival order.

use pricestream_schemas::{Bar, Interval, Symbol, TimestampNs, Venue};

/// Partial aggregate of one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct OhlcvAcc {
    pub open: f64,
    pub open_ts: TimestampNs,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub close_ts: TimestampNs,
    pub volume: f64,
    pub notional: f64,
    pub trade_count: u64,
    pub max_ingest: TimestampNs,
}

impl OhlcvAcc {
    /// Starts an accumulator with one observation.
    pub fn new(
        price: f64,
        size: f64,
        is_trade: bool,
        ts_event: TimestampNs,
        ts_ingest: TimestampNs,
    ) -> Self {
        OhlcvAcc {
            open: price,
            open_ts: ts_event,
            high: price,
            low: price,
            close: price,
            close_ts: ts_event,
            volume: size,
            notional: price * size,
            trade_count: u64::from(is_trade),
            max_ingest: ts_ingest,
        }
    }

    /// Folds in one observation.
    #[inline]
    pub fn add(
        &mut self,
        price: f64,
        size: f64,
        is_trade: bool,
        ts_event: TimestampNs,
        ts_ingest: TimestampNs,
    ) {
        if ts_event < self.open_ts {
            self.open = price;
            self.open_ts = ts_event;
        }
        if ts_event >= self.close_ts {
            self.close = price;
            self.close_ts = ts_event;
        }
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.volume += size;
        self.notional += price * size;
        self.trade_count += u64::from(is_trade);
        self.max_ingest = self.max_ingest.max(ts_ingest);
    }

    /// Merges a later-or-overlapping partial aggregate into this one.
    pub fn merge(&mut self, other: &OhlcvAcc) {
        if other.open_ts < self.open_ts {
            self.open = other.open;
            self.open_ts = other.open_ts;
        }
        if other.close_ts >= self.close_ts {
            self.close = other.close;
            self.close_ts = other.close_ts;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.volume += other.volume;
        self.notional += other.notional;
        self.trade_count += other.trade_count;
        self.max_ingest = self.max_ingest.max(other.max_ingest);
    }

    /// Volume-weighted average price; the close when there is no volume. Clamped to
    /// `[low, high]` so rounding in the sums never puts it outside the range.
    pub fn vwap(&self) -> f64 {
        if self.volume > 0.0 {
            (self.notional / self.volume).clamp(self.low, self.high)
        } else {
            self.close
        }
    }

    /// The bar for this bucket.
    pub fn to_bar(
        &self,
        venue: Venue,
        symbol: Symbol,
        interval: Interval,
        bucket_start: TimestampNs,
        revision: u32,
    ) -> Bar {
        Bar {
            venue,
            symbol,
            interval,
            bucket_start,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            notional: self.notional,
            vwap: self.vwap(),
            trade_count: self.trade_count,
            revision,
            ts_event: self.close_ts,
            ts_ingest: self.max_ingest,
        }
    }

    /// Rebuilds the accumulator state of a stored bar (for rollups and restarts).
    pub fn from_bar(bar: &Bar) -> Self {
        OhlcvAcc {
            open: bar.open,
            open_ts: bar.bucket_start,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            close_ts: bar.ts_event,
            volume: bar.volume,
            notional: bar.notional,
            trade_count: bar.trade_count,
            max_ingest: bar.ts_ingest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fold(obs: &[(f64, f64, i64)]) -> OhlcvAcc {
        let (p, s, t) = obs[0];
        let mut acc = OhlcvAcc::new(p, s, true, t, t);
        for &(p, s, t) in &obs[1..] {
            acc.add(p, s, true, t, t);
        }
        acc
    }

    proptest! {
        #[test]
        fn bar_invariants(obs in prop::collection::vec((1.0f64..100_000.0, 0.0f64..50.0, 0i64..60_000), 1..200)) {
            let acc = fold(&obs);
            prop_assert!(acc.low <= acc.open && acc.open <= acc.high);
            prop_assert!(acc.low <= acc.close && acc.close <= acc.high);
            let vol: f64 = obs.iter().map(|o| o.1).sum();
            prop_assert!((acc.volume - vol).abs() <= 1e-9 * vol.max(1.0));
            prop_assert!(acc.low <= acc.vwap() && acc.vwap() <= acc.high);
            prop_assert_eq!(acc.trade_count, obs.len() as u64);
            // open/close follow event time, whatever the arrival order
            let min_t = obs.iter().map(|o| o.2).min().unwrap();
            let first_min = obs.iter().find(|o| o.2 == min_t).unwrap();
            prop_assert_eq!(acc.open, first_min.0);
            let max_t = obs.iter().map(|o| o.2).max().unwrap();
            let last_max = obs.iter().rev().find(|o| o.2 == max_t).unwrap();
            prop_assert_eq!(acc.close, last_max.0);
        }

        #[test]
        fn merge_equals_single_pass(obs in prop::collection::vec((1.0f64..1000.0, 0.0f64..5.0, 0i64..1000), 2..100), cut in 1usize..99) {
            let cut = cut.min(obs.len() - 1);
            let whole = fold(&obs);
            let mut left = fold(&obs[..cut]);
            left.merge(&fold(&obs[cut..]));
            prop_assert_eq!(left.open, whole.open);
            prop_assert_eq!(left.close, whole.close);
            prop_assert_eq!(left.high, whole.high);
            prop_assert_eq!(left.low, whole.low);
            prop_assert_eq!(left.trade_count, whole.trade_count);
            prop_assert!((left.volume - whole.volume).abs() <= 1e-9 * whole.volume.max(1.0));
        }
    }

    #[test]
    fn zero_volume_vwap_is_close() {
        let mut acc = OhlcvAcc::new(10.0, 0.0, false, 1, 1);
        acc.add(12.0, 0.0, false, 2, 2);
        assert_eq!(acc.vwap(), 12.0);
        assert_eq!(acc.trade_count, 0);
    }
}
