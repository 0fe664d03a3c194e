//! Signals over final bars. A bar is final once the frontier is past its end plus the
//! allowed lateness (no revision can come after that); series are fed in time order, so
//! the signals equal a batch recomputation over the stored bars.

use std::collections::{BTreeMap, HashMap};

use pricestream_analytics::{SignalEngine, SignalParams};
use pricestream_schemas::{Bar, Interval, Signal, Symbol, TimestampNs, Venue};

type SeriesKey = (Venue, Symbol, Interval);

#[derive(Debug)]
pub struct SignalStage {
    params: BTreeMap<Interval, SignalParams>,
    lateness: i64,
    pending: BTreeMap<TimestampNs, BTreeMap<(SeriesKey, TimestampNs), Bar>>,
    engines: HashMap<SeriesKey, SignalEngine>,
}

impl SignalStage {
    /// `params` names the intervals that get signals, with their parameters.
    pub fn new(params: BTreeMap<Interval, SignalParams>, allowed_lateness_ns: i64) -> Self {
        SignalStage {
            params,
            lateness: allowed_lateness_ns.max(0),
            pending: BTreeMap::new(),
            engines: HashMap::new(),
        }
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
