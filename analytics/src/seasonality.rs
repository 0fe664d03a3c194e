//! Seasonality profiles: hour-of-day and weekday statistics of bar returns per symbol, and
//! the deviation of a bar from its seasonal norm.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use pricestream_schemas::{Bar, Symbol, TimestampNs, Venue};

const HOUR_NS: i64 = 3_600 * 1_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

/// Which seasonal bucket a statistic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    /// 0–23, UTC.
    HourOfDay,
    /// 0 = Monday … 6 = Sunday, UTC.
    Weekday,
}

/// Statistics of log returns `ln(close / open)` in one seasonal bucket.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SeasonStats {
    pub count: u64,
    pub mean_return: f64,
    /// Population standard deviation of the returns (the bucket's volatility).
    pub stdev_return: f64,
    pub mean_abs_return: f64,
    #[serde(skip)]
    m2: f64,
}

impl SeasonStats {
    /// Statistics from their moments (as a batch job computes them); further returns
    /// fold in as if they had been added one by one.
    pub fn from_moments(count: u64, mean: f64, stdev: f64, mean_abs: f64) -> Self {
        SeasonStats {
            count,
            mean_return: mean,
            stdev_return: stdev,
            mean_abs_return: mean_abs,
            m2: stdev * stdev * count as f64,
        }
    }

    fn add(&mut self, r: f64) {
        self.count += 1;
        let n = self.count as f64;
        let d = r - self.mean_return;
        self.mean_return += d / n;
        self.m2 += d * (r - self.mean_return);
        self.stdev_return = (self.m2 / n).max(0.0).sqrt();
        self.mean_abs_return += (r.abs() - self.mean_abs_return) / n;
    }
}

/// The profile of one series.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Profile {
    pub hour_of_day: BTreeMap<u8, SeasonStats>,
    pub weekday: BTreeMap<u8, SeasonStats>,
}

/// UTC hour of day of a timestamp.
pub fn hour_of_day(ts: TimestampNs) -> u8 {
    (ts.rem_euclid(DAY_NS) / HOUR_NS) as u8
}

/// UTC weekday, 0 = Monday (1970-01-01 was a Thursday).
pub fn weekday(ts: TimestampNs) -> u8 {
    ((ts.div_euclid(DAY_NS) + 3).rem_euclid(7)) as u8
}

/// Log return of a bar, when defined (not for a gap-filled bar: no trading, no return).
pub fn bar_return(bar: &Bar) -> Option<f64> {
    (bar.open > 0.0 && bar.close > 0.0 && !bar.is_filled()).then(|| (bar.close / bar.open).ln())
}

/// Profiles per (venue, symbol) from bars of one interval, in any order.
pub fn profiles(bars: &[Bar]) -> BTreeMap<(Venue, Symbol), Profile> {
    let mut sorted: Vec<&Bar> = bars.iter().collect();
    sorted.sort_by(|a, b| {
        (a.venue, &a.symbol, a.bucket_start).cmp(&(b.venue, &b.symbol, b.bucket_start))
    });
    let mut out: BTreeMap<(Venue, Symbol), Profile> = BTreeMap::new();
    for b in sorted {
        let Some(r) = bar_return(b) else { continue };
        let p = out.entry((b.venue, b.symbol.clone())).or_default();
        p.hour_of_day
            .entry(hour_of_day(b.bucket_start))
            .or_default()
            .add(r);
        p.weekday.entry(weekday(b.bucket_start)).or_default().add(r);
    }
    out
}

impl Profile {
    /// z-score of the bar's return against its hour-of-day norm, when the hour has at
    /// least `min_samples` observations and some spread.
    pub fn deviation(&self, bar: &Bar, min_samples: u64) -> Option<f64> {
        let r = bar_return(bar)?;
        let s = self.hour_of_day.get(&hour_of_day(bar.bucket_start))?;
        (s.count >= min_samples && s.stdev_return > 0.0)
            .then(|| (r - s.mean_return) / s.stdev_return)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pricestream_schemas::Interval;

    fn bar(hour: i64, open: f64, close: f64) -> Bar {
        Bar {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::H1,
            bucket_start: hour * HOUR_NS,
            open,
            high: open.max(close),
            low: open.min(close),
            close,
            volume: 1.0,
            notional: open,
            vwap: open,
            trade_count: 1,
            revision: 0,
            ts_event: hour * HOUR_NS,
            ts_ingest: hour * HOUR_NS,
        }
    }

    #[test]
    fn calendar_helpers() {
        assert_eq!(weekday(0), 3, "1970-01-01 was a Thursday");
        assert_eq!(weekday(4 * DAY_NS), 0, "1970-01-05 was a Monday");
        assert_eq!(hour_of_day(25 * HOUR_NS + 5), 1);
    }

    #[test]
    fn hour_profile_finds_the_volatile_hour() {
        // 30 days; hour 14 moves ±2 %, other hours ±0.1 %
        let bars: Vec<Bar> = (0..30 * 24)
            .map(|h| {
                let sign = if (h / 24) % 2 == 0 { 1.0 } else { -1.0 };
                let size = if h % 24 == 14 { 0.02 } else { 0.001 };
                bar(h, 100.0, 100.0 * (1.0 + sign * size))
            })
            .collect();
        let p = &profiles(&bars)[&(Venue::Binance, Symbol::new("BTC-USDT").unwrap())];
        assert_eq!(p.hour_of_day.len(), 24);
        assert_eq!(p.weekday.len(), 7);
        let h14 = p.hour_of_day[&14];
        assert_eq!(h14.count, 30);
        assert!(h14.stdev_return > 10.0 * p.hour_of_day[&3].stdev_return);
        assert!((h14.mean_abs_return - 0.0199).abs() < 1e-3);
        // a 2 % move at 03:00 is far from that hour's norm, not at 14:00
        let z3 = p.deviation(&bar(30 * 24 + 3, 100.0, 102.0), 5).unwrap();
        let z14 = p.deviation(&bar(30 * 24 + 14, 100.0, 102.0), 5).unwrap();
        assert!(z3 > 10.0 && z14 < 2.0, "z3 {z3} z14 {z14}");
        assert_eq!(
            p.deviation(&bar(3, 100.0, 101.0), 31),
            None,
            "too few samples"
        );
    }
}
