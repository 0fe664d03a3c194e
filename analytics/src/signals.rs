//! Signal rules over a series of final bars: SMA crossover, mean reversion (Bollinger
//! breach and return on the rolling z-score) and RSI thresholds. O(1) per bar.

use serde::{Deserialize, Serialize};

use pricestream_schemas::{Bar, Signal, SignalKind};

use crate::indicators::{batch, Cross, CrossDetector, Ema, RollingStats, Rsi, Sma};

/// The moving average the crossover rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaKind {
    #[default]
    Sma,
    Ema,
}

/// Parameters of the signal rules (per interval in configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalParams {
    /// Moving average of the crossover rule: `sma` or `ema`.
    pub ma: MaKind,
    /// Periods of the fast and slow moving averages.
    pub sma_fast: usize,
    pub sma_slow: usize,
    pub zscore_window: usize,
    /// |z| above this is a band breach.
    pub zscore_threshold: f64,
    pub rsi_period: usize,
    pub rsi_overbought: f64,
    pub rsi_oversold: f64,
}

impl Default for SignalParams {
    fn default() -> Self {
        SignalParams {
            ma: MaKind::Sma,
            sma_fast: 10,
            sma_slow: 30,
            zscore_window: 20,
            zscore_threshold: 2.0,
            rsi_period: 14,
            rsi_overbought: 70.0,
            rsi_oversold: 30.0,
        }
    }
}

/// `fast − slow`, with a difference below rounding noise (1e-9 of the averages) taken as
/// exactly 0: on a flat stretch (e.g. gap-filled minutes) both averages converge to the
/// same price, and the sign of what is left is an artifact of how the sums were rounded,
/// not a crossing.
pub fn ma_spread(fast: f64, slow: f64) -> f64 {
    let d = fast - slow;
    if d.abs() <= 1e-9 * fast.abs().max(slow.abs()) {
        0.0
    } else {
        d
    }
}

fn up_through(prev: f64, cur: f64, level: f64) -> bool {
    prev <= level && cur > level
}

fn down_through(prev: f64, cur: f64, level: f64) -> bool {
    prev >= level && cur < level
}

/// Turns indicator values of one bar into signal kinds, given the previous values.
fn rules(
    p: &SignalParams,
    cross: Option<Cross>,
    spread: Option<f64>,
    z: (Option<f64>, Option<f64>),
    rsi: (Option<f64>, Option<f64>),
) -> Vec<(SignalKind, f64)> {
    let mut out = Vec::new();
    match (cross, spread) {
        (Some(Cross::Up), Some(s)) => out.push((SignalKind::GoldenCross, s)),
        (Some(Cross::Down), Some(s)) => out.push((SignalKind::DeathCross, s)),
        _ => {}
    }
    if let (Some(prev), Some(cur)) = z {
        let k = p.zscore_threshold;
        if up_through(prev, cur, k) {
            out.push((SignalKind::MeanReversionHigh, cur));
        } else if down_through(prev, cur, -k) {
            out.push((SignalKind::MeanReversionLow, cur));
        } else if (prev > k && cur <= k) || (prev < -k && cur >= -k) {
            out.push((SignalKind::BandReturn, cur));
        }
    }
    if let (Some(prev), Some(cur)) = rsi {
        if up_through(prev, cur, p.rsi_overbought) {
            out.push((SignalKind::RsiOverbought, cur));
        } else if down_through(prev, cur, p.rsi_oversold) {
            out.push((SignalKind::RsiOversold, cur));
        }
    }
    out
}

fn signal(bar: &Bar, kind: SignalKind, value: f64) -> Signal {
    Signal {
        venue: bar.venue,
        symbol: bar.symbol.clone(),
        interval: bar.interval,
        kind,
        bucket_start: bar.bucket_start,
        value,
        ts_event: bar.ts_event,
        ts_ingest: bar.ts_ingest,
    }
}

/// A moving average of either kind.
#[derive(Debug, Clone)]
enum Ma {
    Sma(Sma),
    Ema(Ema),
}

impl Ma {
    fn new(kind: MaKind, period: usize) -> Self {
        match kind {
            MaKind::Sma => Ma::Sma(Sma::new(period)),
            MaKind::Ema => Ma::Ema(Ema::new(period)),
        }
    }

    fn update(&mut self, x: f64) -> Option<f64> {
        match self {
            Ma::Sma(m) => m.update(x),
            Ma::Ema(m) => m.update(x),
        }
    }
}

/// Streaming signal state of one series (venue, symbol, interval).
#[derive(Debug, Clone)]
pub struct SignalEngine {
    params: SignalParams,
    fast: Ma,
    slow: Ma,
    cross: CrossDetector,
    stats: RollingStats,
    rsi: Rsi,
    prev_z: Option<f64>,
    prev_rsi: Option<f64>,
}

impl SignalEngine {
    pub fn new(params: SignalParams) -> Self {
        SignalEngine {
            fast: Ma::new(params.ma, params.sma_fast),
            slow: Ma::new(params.ma, params.sma_slow),
            cross: CrossDetector::default(),
            stats: RollingStats::new(params.zscore_window),
            rsi: Rsi::new(params.rsi_period),
            prev_z: None,
            prev_rsi: None,
            params,
        }
    }

    /// Feeds the next final bar of the series (in time order); returns its signals.
    pub fn on_bar(&mut self, bar: &Bar) -> Vec<Signal> {
        let c = bar.close;
        let spread = match (self.fast.update(c), self.slow.update(c)) {
            (Some(f), Some(s)) => Some(ma_spread(f, s)),
            _ => None,
        };
        let cross = spread.and_then(|s| self.cross.update(s));
        self.stats.update(c);
        let z = self.stats.zscore(c);
        let rsi = self.rsi.update(c);
        let kinds = rules(
            &self.params,
            cross,
            spread,
            (self.prev_z, z),
            (self.prev_rsi, rsi),
        );
        self.prev_z = z;
        self.prev_rsi = rsi;
        kinds.into_iter().map(|(k, v)| signal(bar, k, v)).collect()
    }
}

/// The same rules over a whole series at once, from the batch indicator definitions.
pub fn batch_signals(bars: &[Bar], params: &SignalParams) -> Vec<Signal> {
    let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
    let ma = |n: usize| match params.ma {
        MaKind::Sma => batch::sma(&closes, n.max(1)),
        MaKind::Ema => batch::ema(&closes, n.max(1)),
    };
    let (fast, slow) = (ma(params.sma_fast), ma(params.sma_slow));
    let stats = batch::rolling_stats(&closes, params.zscore_window.max(1));
    let rsi = batch::rsi(&closes, params.rsi_period.max(1));
    let spread: Vec<Option<f64>> = fast
        .iter()
        .zip(&slow)
        .map(|(f, s)| Some(ma_spread((*f)?, (*s)?)))
        .collect();
    let z: Vec<Option<f64>> = stats
        .iter()
        .zip(&closes)
        .map(|(st, c)| st.and_then(|(m, sd)| (sd > 0.0).then(|| (c - m) / sd)))
        .collect();
    let mut out = Vec::new();
    let mut prev_spread: Option<f64> = None;
    for i in 0..bars.len() {
        let cross = match (prev_spread, spread[i]) {
            (Some(p), Some(c)) if p <= 0.0 && c > 0.0 => Some(Cross::Up),
            (Some(p), Some(c)) if p >= 0.0 && c < 0.0 => Some(Cross::Down),
            _ => None,
        };
        if spread[i].is_some() {
            prev_spread = spread[i];
        }
        let prev = |v: &[Option<f64>]| if i == 0 { None } else { v[i - 1] };
        let kinds = rules(
            params,
            cross,
            spread[i],
            (prev(&z), z[i]),
            (prev(&rsi), rsi[i]),
        );
        out.extend(kinds.into_iter().map(|(k, v)| signal(&bars[i], k, v)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_stretch_is_no_crossing() {
        // after a rise, 40 equal closes (a gap filled with the last close): the averages
        // meet, and rounding must not turn that into a golden or death cross
        let mut closes: Vec<f64> = (0..40).map(|i| 90_000.0 + 7.3 * f64::from(i)).collect();
        closes.extend(std::iter::repeat_n(90_284.7, 40));
        let p = SignalParams::default();
        let mut engine = SignalEngine::new(p.clone());
        let stream: Vec<Signal> = bars(&closes)
            .iter()
            .flat_map(|b| engine.on_bar(b))
            .collect();
        let crosses = |v: &[Signal]| {
            v.iter()
                .filter(|s| matches!(s.kind, SignalKind::GoldenCross | SignalKind::DeathCross))
                .count()
        };
        assert_eq!(crosses(&stream), 0, "{stream:?}");
        assert_eq!(crosses(&batch_signals(&bars(&closes), &p)), 0);
        assert_eq!(ma_spread(100.0, 100.0 + 1e-8), 0.0);
        assert!(ma_spread(100.0, 100.001) < 0.0);
    }
    use pricestream_schemas::{Interval, Symbol, Venue};
    use proptest::prelude::*;

    fn bars(closes: &[f64]) -> Vec<Bar> {
        closes
            .iter()
            .enumerate()
            .map(|(i, &c)| Bar {
                venue: Venue::Synthetic,
                symbol: Symbol::new("BTC-USDT").unwrap(),
                interval: Interval::M1,
                bucket_start: i as i64 * 60_000_000_000,
                open: c,
                high: c,
                low: c,
                close: c,
                volume: 1.0,
                notional: c,
                vwap: c,
                trade_count: 1,
                revision: 0,
                ts_event: i as i64,
                ts_ingest: i as i64,
            })
            .collect()
    }

    fn same(a: &[Signal], b: &[Signal]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.kind == y.kind
                    && x.bucket_start == y.bucket_start
                    && (x.value - y.value).abs() <= 1e-9 * x.value.abs().max(1.0)
            })
    }

    proptest! {
        /// Streaming signals equal the batch recomputation over the same bars.
        #[test]
        fn streaming_signals_equal_batch(steps in prop::collection::vec(-1.0f64..1.0, 50..400)) {
            let mut price = 100.0;
            let closes: Vec<f64> = steps.iter().map(|s| { price *= 1.0 + s * 0.02; price }).collect();
            let series = bars(&closes);
            for ma in [MaKind::Sma, MaKind::Ema] {
                let params = SignalParams { ma, sma_fast: 3, sma_slow: 8, zscore_window: 10, rsi_period: 5, ..SignalParams::default() };
                let mut engine = SignalEngine::new(params.clone());
                let streamed: Vec<Signal> = series.iter().flat_map(|b| engine.on_bar(b)).collect();
                let batch = batch_signals(&series, &params);
                prop_assert!(same(&streamed, &batch), "{:?}: stream {:?}\nbatch {:?}", ma, streamed, batch);
            }
        }
    }

    #[test]
    fn golden_and_death_cross_fire_once_each() {
        // down, then a strong rally, then a slump
        let mut closes: Vec<f64> = (0..40).map(|i| 100.0 - i as f64 * 0.5).collect();
        closes.extend((0..40).map(|i| 80.0 + i as f64 * 2.0));
        closes.extend((0..40).map(|i| 160.0 - i as f64 * 3.0));
        let params = SignalParams::default();
        let mut engine = SignalEngine::new(params);
        let sigs: Vec<Signal> = bars(&closes)
            .iter()
            .flat_map(|b| engine.on_bar(b))
            .collect();
        let golden = sigs
            .iter()
            .filter(|s| s.kind == SignalKind::GoldenCross)
            .count();
        let death = sigs
            .iter()
            .filter(|s| s.kind == SignalKind::DeathCross)
            .count();
        assert_eq!((golden, death), (1, 1), "{sigs:?}");
        assert!(sigs.iter().any(|s| s.kind == SignalKind::RsiOverbought));
        assert!(sigs.iter().any(|s| s.kind == SignalKind::RsiOversold));
        assert!(sigs
            .iter()
            .any(|s| s.kind == SignalKind::MeanReversionHigh
                || s.kind == SignalKind::MeanReversionLow));
    }
}
