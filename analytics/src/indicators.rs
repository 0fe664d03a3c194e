//! Streaming indicators: O(1) per value, numerically careful, no clocks.
//!
//! Conventions (those of TA-Lib, against which the tests check):
//! - SMA over the last `n` values.
//! - EMA with `alpha = 2 / (n + 1)`, seeded with the SMA of the first `n` values.
//! - Rolling mean and *population* standard deviation (ddof = 0) over `n` values, the
//!   Bollinger convention; z-score = (x − mean) / stdev.
//! - RSI after Wilder: the first average gain/loss is the mean of the first `n` changes,
//!   then `avg = (avg · (n − 1) + x) / n`; RSI = 100 when there is no loss.

use std::collections::VecDeque;

/// Neumaier-compensated running sum (add and subtract without drift).
#[derive(Debug, Clone, Default)]
struct CompensatedSum {
    sum: f64,
    c: f64,
}

impl CompensatedSum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.c += (self.sum - t) + x;
        } else {
            self.c += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.c
    }
}

/// Simple moving average.
#[derive(Debug, Clone)]
pub struct Sma {
    period: usize,
    window: VecDeque<f64>,
    sum: CompensatedSum,
}

impl Sma {
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Sma {
            period,
            window: VecDeque::with_capacity(period + 1),
            sum: CompensatedSum::default(),
        }
    }

    /// Adds a value; returns the average once `period` values were seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.window.push_back(x);
        self.sum.add(x);
        if self.window.len() > self.period {
            if let Some(old) = self.window.pop_front() {
                self.sum.add(-old);
            }
        }
        self.value()
    }

    pub fn value(&self) -> Option<f64> {
        (self.window.len() == self.period).then(|| self.sum.value() / self.period as f64)
    }
}

/// Exponential moving average.
#[derive(Debug, Clone)]
pub struct Ema {
    alpha: f64,
    seed: Sma,
    value: Option<f64>,
}

impl Ema {
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Ema {
            alpha: 2.0 / (period as f64 + 1.0),
            seed: Sma::new(period),
            value: None,
        }
    }

    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.value = match self.value {
            Some(prev) => Some(prev + self.alpha * (x - prev)),
            None => self.seed.update(x),
        };
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Rolling mean and *population* standard deviation over a window.
///
/// Keeps compensated sums of deviations from a pivot (a value of the window), re-anchored
/// from the window every `period` updates (amortised O(1)): a flat window gives exactly 0,
/// and cancellation is bounded by the spread of the window rather than by the price level.
#[derive(Debug, Clone)]
pub struct RollingStats {
    period: usize,
    window: VecDeque<f64>,
    pivot: f64,
    s1: CompensatedSum,
    s2: CompensatedSum,
    since_anchor: usize,
}

impl RollingStats {
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        RollingStats {
            period,
            window: VecDeque::with_capacity(period + 1),
            pivot: 0.0,
            s1: CompensatedSum::default(),
            s2: CompensatedSum::default(),
            since_anchor: 0,
        }
    }

    fn anchor(&mut self) {
        self.pivot = self.window.front().copied().unwrap_or(0.0);
        self.s1 = CompensatedSum::default();
        self.s2 = CompensatedSum::default();
        for &x in &self.window {
            let d = x - self.pivot;
            self.s1.add(d);
            self.s2.add(d * d);
        }
        self.since_anchor = 0;
    }

    /// Adds a value; returns `(mean, stdev)` once the window is full.
    pub fn update(&mut self, x: f64) -> Option<(f64, f64)> {
        if self.window.is_empty() {
            self.pivot = x;
        }
        self.window.push_back(x);
        let d = x - self.pivot;
        self.s1.add(d);
        self.s2.add(d * d);
        if self.window.len() > self.period {
            if let Some(old) = self.window.pop_front() {
                let d = old - self.pivot;
                self.s1.add(-d);
                self.s2.add(-(d * d));
            }
            self.since_anchor += 1;
            if self.since_anchor >= self.period {
                self.anchor();
            }
        }
        self.value()
    }

    pub fn value(&self) -> Option<(f64, f64)> {
        (self.window.len() == self.period).then(|| {
            let n = self.period as f64;
            let (s1, s2) = (self.s1.value(), self.s2.value());
            let var = ((s2 - s1 * s1 / n) / n).max(0.0);
            (self.pivot + s1 / n, var.sqrt())
        })
    }

    /// z-score of `x` against the window (None while filling or when flat).
    pub fn zscore(&self, x: f64) -> Option<f64> {
        let (mean, sd) = self.value()?;
        (sd > 0.0).then(|| (x - mean) / sd)
    }
}

/// Wilder's RSI.
#[derive(Debug, Clone)]
pub struct Rsi {
    period: usize,
    prev: Option<f64>,
    seen: usize,
    gain: f64,
    loss: f64,
    value: Option<f64>,
}

impl Rsi {
    pub fn new(period: usize) -> Self {
        Rsi {
            period: period.max(1),
            prev: None,
            seen: 0,
            gain: 0.0,
            loss: 0.0,
            value: None,
        }
    }

    pub fn update(&mut self, x: f64) -> Option<f64> {
        let prev = self.prev.replace(x)?;
        let change = x - prev;
        let (g, l) = (change.max(0.0), (-change).max(0.0));
        let n = self.period as f64;
        self.seen += 1;
        if self.seen <= self.period {
            self.gain += g;
            self.loss += l;
            if self.seen < self.period {
                return None;
            }
            self.gain /= n;
            self.loss /= n;
        } else {
            self.gain = (self.gain * (n - 1.0) + g) / n;
            self.loss = (self.loss * (n - 1.0) + l) / n;
        }
        let total = self.gain + self.loss;
        self.value = Some(if total == 0.0 {
            50.0
        } else {
            100.0 * self.gain / total
        });
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Direction of a crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cross {
    Up,
    Down,
}

/// Detects sign changes of a series (e.g. fast − slow): `Up` when it goes from ≤ 0 to
/// > 0, `Down` from ≥ 0 to < 0.
#[derive(Debug, Clone, Default)]
pub struct CrossDetector {
    prev: Option<f64>,
}

impl CrossDetector {
    pub fn update(&mut self, x: f64) -> Option<Cross> {
        let prev = self.prev.replace(x)?;
        if prev <= 0.0 && x > 0.0 {
            Some(Cross::Up)
        } else if prev >= 0.0 && x < 0.0 {
            Some(Cross::Down)
        } else {
            None
        }
    }
}

/// Batch versions, written independently of the streaming ones (direct definitions,
/// O(n·w)), used by the recompute job and to check the streaming code.
pub mod batch {
    pub fn sma(xs: &[f64], n: usize) -> Vec<Option<f64>> {
        (0..xs.len())
            .map(|i| (i + 1 >= n).then(|| xs[i + 1 - n..=i].iter().sum::<f64>() / n as f64))
            .collect()
    }

    pub fn ema(xs: &[f64], n: usize) -> Vec<Option<f64>> {
        let alpha = 2.0 / (n as f64 + 1.0);
        let mut out = vec![None; xs.len()];
        if xs.len() < n {
            return out;
        }
        let mut v = xs[..n].iter().sum::<f64>() / n as f64;
        out[n - 1] = Some(v);
        for i in n..xs.len() {
            v = alpha * xs[i] + (1.0 - alpha) * v;
            out[i] = Some(v);
        }
        out
    }

    /// (mean, population stdev) per full window.
    pub fn rolling_stats(xs: &[f64], n: usize) -> Vec<Option<(f64, f64)>> {
        (0..xs.len())
            .map(|i| {
                (i + 1 >= n).then(|| {
                    let w = &xs[i + 1 - n..=i];
                    let mean = w.iter().sum::<f64>() / n as f64;
                    let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
                    (mean, var.sqrt())
                })
            })
            .collect()
    }

    pub fn rsi(xs: &[f64], n: usize) -> Vec<Option<f64>> {
        let mut out = vec![None; xs.len()];
        if xs.len() <= n {
            return out;
        }
        let changes: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
        let mut gain = changes[..n].iter().map(|c| c.max(0.0)).sum::<f64>() / n as f64;
        let mut loss = changes[..n].iter().map(|c| (-c).max(0.0)).sum::<f64>() / n as f64;
        let rsi = |g: f64, l: f64| {
            if g + l == 0.0 {
                50.0
            } else {
                100.0 * g / (g + l)
            }
        };
        out[n] = Some(rsi(gain, loss));
        for i in n..changes.len() {
            gain = (gain * (n as f64 - 1.0) + changes[i].max(0.0)) / n as f64;
            loss = (loss * (n as f64 - 1.0) + (-changes[i]).max(0.0)) / n as f64;
            out[i + 1] = Some(rsi(gain, loss));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
    }

    fn stream<T>(xs: &[f64], mut f: impl FnMut(f64) -> Option<T>) -> Vec<Option<T>> {
        xs.iter().map(|&x| f(x)).collect()
    }

    proptest! {
        /// Streaming indicators equal their batch definitions (≤ 1e-9 relative).
        #[test]
        fn streaming_equals_batch(xs in prop::collection::vec(1.0f64..100_000.0, 1..600), n in 1usize..40) {
            let mut sma = Sma::new(n);
            for (s, b) in stream(&xs, |x| sma.update(x)).iter().zip(batch::sma(&xs, n)) {
                prop_assert_eq!(s.is_some(), b.is_some());
                if let (Some(s), Some(b)) = (s, b) { prop_assert!(close(*s, b), "sma {} vs {}", s, b); }
            }
            let mut ema = Ema::new(n);
            for (s, b) in stream(&xs, |x| ema.update(x)).iter().zip(batch::ema(&xs, n)) {
                prop_assert_eq!(s.is_some(), b.is_some());
                if let (Some(s), Some(b)) = (s, b) { prop_assert!(close(*s, b), "ema {} vs {}", s, b); }
            }
            let mut st = RollingStats::new(n);
            for (s, b) in stream(&xs, |x| st.update(x)).iter().zip(batch::rolling_stats(&xs, n)) {
                prop_assert_eq!(s.is_some(), b.is_some());
                if let (Some(s), Some(b)) = (s, b) {
                    prop_assert!(close(s.0, b.0), "mean {} vs {}", s.0, b.0);
                    // stdev: relative to the data's scale (it can be ~0 in a flat window)
                    prop_assert!((s.1 - b.1).abs() <= 1e-9 * b.0.abs().max(1.0), "sd {} vs {}", s.1, b.1);
                }
            }
            let mut rsi = Rsi::new(n);
            for (s, b) in stream(&xs, |x| rsi.update(x)).iter().zip(batch::rsi(&xs, n)) {
                prop_assert_eq!(s.is_some(), b.is_some());
                if let (Some(s), Some(b)) = (s, b) { prop_assert!((s - b).abs() <= 1e-9, "rsi {} vs {}", s, b); }
            }
        }
    }

    #[test]
    fn rolling_stats_stay_accurate_over_long_runs() {
        let mut st = RollingStats::new(20);
        let mut x = 50_000.0;
        let mut xs = Vec::new();
        for i in 0..200_000u64 {
            x += ((i * 7919) % 13) as f64 - 6.0 + 0.001 * (i % 7) as f64;
            xs.push(x);
            st.update(x);
        }
        let (m, s) = st.value().unwrap();
        let b = batch::rolling_stats(&xs[xs.len() - 20..], 20)[19].unwrap();
        assert!(close(m, b.0));
        assert!((s - b.1).abs() <= 1e-9 * b.0);
    }

    #[test]
    fn crossings() {
        let mut c = CrossDetector::default();
        let got: Vec<_> = [-1.0, -0.5, 0.5, 1.0, 0.0, -1.0, 2.0]
            .iter()
            .map(|&x| c.update(x))
            .collect();
        assert_eq!(
            got,
            vec![
                None,
                None,
                Some(Cross::Up),
                None,
                None,
                Some(Cross::Down),
                Some(Cross::Up)
            ]
        );
    }

    #[test]
    fn rsi_extremes() {
        let mut r = Rsi::new(3);
        let v: Vec<_> = [1.0, 2.0, 3.0, 4.0, 5.0]
            .iter()
            .filter_map(|&x| r.update(x))
            .collect();
        assert_eq!(v, vec![100.0, 100.0]);
    }
}
