//! Signals over final bars. A bar is final once the frontier is past its end plus the
//! allowed lateness (no revision can come after that); series are fed in time order, so
//! the signals equal a batch recomputation over the stored bars.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use pricestream_analytics::seasonality::Profile;
use pricestream_analytics::{SignalEngine, SignalParams};
use pricestream_schemas::{Bar, Interval, Signal, SignalKind, Symbol, TimestampNs, Venue};

use crate::hash::FastMap;

type SeriesKey = (Venue, Symbol, Interval);

/// Seasonality profiles per series, refreshed by a batch job while the pipeline runs.
/// Signals of kind `seasonal_deviation` depend on the profile in force when a bar becomes
/// final, so unlike the other signals they are not reproducible by a replay.
pub type SharedProfiles = Arc<RwLock<BTreeMap<SeriesKey, Profile>>>;

/// When a bar's return is far enough from its seasonal norm to be a signal.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeasonalParams {
    /// |z| of the bar's return against its hour-of-day norm.
    pub z_threshold: f64,
    /// Observations the hour needs before its norm is trusted.
    pub min_samples: u64,
}

impl Default for SeasonalParams {
    fn default() -> Self {
        SeasonalParams {
            z_threshold: 3.0,
            min_samples: 10,
        }
    }
}

#[derive(Debug)]
pub struct SignalStage {
    params: BTreeMap<Interval, SignalParams>,
    lateness: i64,
    pending: BTreeMap<TimestampNs, BTreeMap<(SeriesKey, TimestampNs), Bar>>,
    engines: FastMap<SeriesKey, SignalEngine>,
    profiles: Option<(SharedProfiles, SeasonalParams)>,
}

impl SignalStage {
    /// `params` names the intervals that get signals, with their parameters.
    pub fn new(params: BTreeMap<Interval, SignalParams>, allowed_lateness_ns: i64) -> Self {
        SignalStage {
            params,
            lateness: allowed_lateness_ns.max(0),
            pending: BTreeMap::new(),
            engines: FastMap::default(),
            profiles: None,
        }
    }

    /// Also emits seasonal-deviation signals from the shared profiles.
    pub fn with_profiles(mut self, profiles: SharedProfiles, params: SeasonalParams) -> Self {
        self.profiles = Some((profiles, params));
        self
    }

    fn seasonal(&self, series: &SeriesKey, bar: &Bar) -> Option<Signal> {
        let (profiles, p) = self.profiles.as_ref()?;
        let guard = profiles.read().ok()?;
        let z = guard.get(series)?.deviation(bar, p.min_samples)?;
        (z.abs() >= p.z_threshold).then(|| Signal {
            venue: bar.venue,
            symbol: bar.symbol.clone(),
            interval: bar.interval,
            kind: SignalKind::SeasonalDeviation,
            bucket_start: bar.bucket_start,
            value: z,
            ts_event: bar.ts_event,
            ts_ingest: bar.ts_ingest,
        })
    }

    /// Keeps the latest revision of a bar until it is final; returns the time at which it
    /// will be (the operator holds a capability for it), or None if the interval has no
    /// signals.
    pub fn offer(&mut self, bar: &Bar) -> Option<TimestampNs> {
        if !self.params.contains_key(&bar.interval) {
            return None;
        }
        let fin = bar.bucket_end().saturating_add(self.lateness);
        let key = (
            (bar.venue, bar.symbol.clone(), bar.interval),
            bar.bucket_start,
        );
        let slot = self.pending.entry(fin).or_default();
        match slot.get(&key) {
            Some(old) if old.revision > bar.revision => {}
            _ => {
                slot.insert(key, bar.clone());
            }
        }
        Some(fin)
    }

    /// Feeds a bar that was final before a restart to its series, emitting nothing: the
    /// series continues as if it had never stopped.
    pub fn warm(&mut self, bar: &Bar) {
        let Some(params) = self.params.get(&bar.interval) else {
            return;
        };
        let series = (bar.venue, bar.symbol.clone(), bar.interval);
        let params = params.clone();
        self.engines
            .entry(series)
            .or_insert_with(|| SignalEngine::new(params))
            .on_bar(bar);
    }

    /// Feeds every bar final at `frontier` (strictly past) to its series; returns the
    /// signals grouped by finalisation time.
    pub fn advance(&mut self, frontier: TimestampNs) -> Vec<(TimestampNs, Vec<Signal>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            let (fin, bars) = entry.remove_entry();
            let mut signals = Vec::new();
            for ((series, _), bar) in bars {
                let params = self.params.get(&series.2).cloned().unwrap_or_default();
                if let Some(s) = self.seasonal(&series, &bar) {
                    signals.push(s);
                }
                let engine = self
                    .engines
                    .entry(series)
                    .or_insert_with(|| SignalEngine::new(params));
                signals.extend(engine.on_bar(&bar));
            }
            out.push((fin, signals));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pricestream_analytics::seasonality::profiles;

    fn bar(hour: i64, open: f64, close: f64) -> Bar {
        Bar {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::H1,
            bucket_start: hour * 3_600_000_000_000,
            open,
            high: open.max(close),
            low: open.min(close),
            close,
            volume: 1.0,
            notional: open,
            vwap: open,
            trade_count: 1,
            revision: 0,
            ts_event: hour * 3_600_000_000_000 + 1,
            ts_ingest: hour * 3_600_000_000_000 + 1,
        }
    }

    #[test]
    fn final_bars_feed_signals_and_seasonal_deviation() {
        // history: hour 3 barely moves (alternating ±0.1 %)
        let history: Vec<Bar> = (0..20)
            .map(|d| bar(d * 24 + 3, 100.0, if d % 2 == 0 { 100.1 } else { 99.9 }))
            .collect();
        let shared: SharedProfiles = Arc::new(RwLock::new(
            profiles(&history)
                .into_iter()
                .map(|((v, s), p)| ((v, s, Interval::H1), p))
                .collect(),
        ));
        let params = [(Interval::H1, SignalParams::default())]
            .into_iter()
            .collect();
        let mut stage =
            SignalStage::new(params, 0).with_profiles(shared, SeasonalParams::default());
        let b = bar(30 * 24 + 3, 100.0, 105.0);
        let fin = stage.offer(&b).unwrap();
        assert_eq!(fin, b.bucket_end());
        assert!(stage.advance(fin).is_empty(), "final only strictly after");
        let out = stage.advance(fin + 1);
        let sig = &out[0].1[0];
        assert_eq!(sig.kind, SignalKind::SeasonalDeviation);
        assert!(sig.value > 3.0);
        // 1m bars get no signals when 1m is not configured
        let mut m1 = b.clone();
        m1.interval = Interval::M1;
        assert_eq!(stage.offer(&m1), None);
    }
}
