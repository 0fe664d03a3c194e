//! Self-healing history: the completeness ledger per (venue, symbol, interval).
//!
//! A pass looks at the settled buckets after the ledger's `verified_to` (at first, from
//! `lookback_minutes` ago), finds those with neither a stored bar nor an "absent at the
//! venue" record, re-fetches them over REST in coalesced ranges, writes what the venue has
//! as bars and records what it does not have as absent — so an outage leaves no hole and a
//! bucket without trades is asked for once, not forever. `verified_to` then moves up to the
//! first bucket that could not be settled (a failed fetch), or to the end.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pricestream_schemas::{Bar, Clock, Interval, Symbol, TimestampNs, NANOS_PER_SEC};
use pricestream_store::{BarQuery, LedgerEntry, Store};
use serde::{Deserialize, Serialize};

use crate::candles::{candle_to_bar, CandleRollups, CandleSource};
use crate::error::Result;
use crate::metrics as m;
use crate::runs::PollJob;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealConfig {
    pub enabled: bool,
    /// How often the completeness check runs (it also runs at start and after every
    /// WebSocket reconnect).
    pub interval_secs: u64,
    /// How far back a series is made complete when it is first seen.
    pub lookback_minutes: u64,
    /// A bucket is checked only once it closed this long ago, so the pipeline's own bar
    /// has had time to land.
    pub settle_secs: u64,
}

impl Default for HealConfig {
    fn default() -> Self {
        HealConfig {
            enabled: true,
            interval_secs: 300,
            lookback_minutes: 1_440,
            settle_secs: 120,
        }
    }
}

/// What one pass over one series did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealReport {
    pub checked: u64,
    pub missing: u64,
    pub written: u64,
    pub absent: u64,
}

/// Bars read per store query while looking for gaps.
const SCAN_PAGE: u32 = 5_000;

pub struct Healer {
    name: &'static str,
    source: Arc<dyn CandleSource>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    symbols: Vec<Symbol>,
    interval: Interval,
    cfg: HealConfig,
    rollups: Option<Arc<CandleRollups>>,
}

impl Healer {
    pub fn new(
        name: &'static str,
        source: Arc<dyn CandleSource>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        symbols: Vec<Symbol>,
        cfg: HealConfig,
    ) -> Self {
        Healer {
            name,
            source,
            store,
            clock,
            symbols,
            interval: Interval::M1,
            cfg,
            rollups: None,
        }
    }

    /// Also brings the coarser bars of healed buckets up to date (see [`CandleRollups`]).
    pub fn with_rollups(mut self, rollups: Arc<CandleRollups>) -> Self {
        self.rollups = Some(rollups);
        self
    }

    /// Writes healed 1m bars (and, with rollups, the settled coarser bars they touch).
    async fn write(&self, bars: &[Bar], now: TimestampNs) -> Result<()> {
        match &self.rollups {
            Some(r) => {
                r.write(self.store.as_ref(), bars, now).await?;
            }
            None => self.store.upsert_bars(bars).await?,
        }
        Ok(())
    }

    /// Buckets in `[from, to)` that have a bar of this venue.
    async fn present(
        &self,
        symbol: &Symbol,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<HashSet<TimestampNs>> {
        let mut out = HashSet::new();
        let mut cursor = from;
        loop {
            let page = self
                .store
                .query_bars(&BarQuery {
                    venue: Some(self.source.venue()),
                    symbol: symbol.clone(),
                    interval: self.interval,
                    from: cursor,
                    to,
                    limit: SCAN_PAGE,
                    tail: false,
                })
                .await?;
            let full = page.len() as u32 >= SCAN_PAGE;
            match page.last() {
                Some(last) => cursor = last.bucket_start + 1,
                None => break,
            }
            out.extend(page.iter().map(|b| b.bucket_start));
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// One pass over one series.
    pub async fn heal_symbol(&self, symbol: &Symbol) -> Result<HealReport> {
        let venue = self.source.venue();
        let step = self.interval.nanos();
        let now = self.clock.now_ns();
        let settle = i64::try_from(self.cfg.settle_secs)
            .unwrap_or(i64::MAX / NANOS_PER_SEC)
            .saturating_mul(NANOS_PER_SEC);
        let end = self.interval.bucket_start(now.saturating_sub(settle));
        let mut entry = match self.store.ledger(venue, symbol, self.interval).await? {
            Some(e) => e,
            None => {
                // the series is tracked from here on, whether or not there is work yet
                let lookback = i64::try_from(self.cfg.lookback_minutes)
                    .unwrap_or(0)
                    .saturating_mul(60 * NANOS_PER_SEC);
                let start = self.interval.bucket_start(end.saturating_sub(lookback));
                let e = LedgerEntry {
                    venue,
                    symbol: symbol.clone(),
                    interval: self.interval,
                    tracked_from: start,
                    verified_to: start,
                    updated_at: now,
                };
                self.store.put_ledger(&e).await?;
                e
            }
        };
        let from = entry.verified_to.max(entry.tracked_from);
        let mut report = HealReport::default();
        if from >= end {
            return Ok(report);
        }
        let present = self.present(symbol, from, end).await?;
        let absent: HashSet<TimestampNs> = self
            .store
            .absent_candles(venue, symbol, self.interval, from, end)
            .await?
            .into_iter()
            .collect();
        let missing: Vec<TimestampNs> = (0..)
            .map(|i| from + i * step)
            .take_while(|b| *b < end)
            .filter(|b| !present.contains(b) && !absent.contains(b))
            .collect();
        report.checked = ((end - from) / step) as u64;
        report.missing = missing.len() as u64;
        if !missing.is_empty() {
            metrics::counter!(m::GAP_BUCKETS, "venue" => venue.as_str()).increment(report.missing);
            tracing::info!(%venue, %symbol, missing = report.missing, "gaps found; re-fetching");
        }
        for (r_from, r_to) in coalesce(&missing, step) {
            let fetched = self
                .source
                .candles(symbol, self.interval, r_from, r_to)
                .await;
            let candles = match fetched {
                Ok(c) => c,
                Err(e) => {
                    // everything before this range is settled
                    entry.verified_to = r_from;
                    entry.updated_at = now;
                    self.store.put_ledger(&entry).await?;
                    return Err(e);
                }
            };
            let wanted: BTreeSet<TimestampNs> = missing
                .iter()
                .copied()
                .filter(|b| *b >= r_from && *b < r_to)
                .collect();
            let bars: Vec<_> = candles
                .iter()
                .filter(|c| wanted.contains(&c.open_time))
                .map(candle_to_bar)
                .collect();
            let got: HashSet<TimestampNs> = bars.iter().map(|b| b.bucket_start).collect();
            let lacking: Vec<TimestampNs> = wanted
                .iter()
                .copied()
                .filter(|b| !got.contains(b))
                .collect();
            self.write(&bars, now).await?;
            self.store
                .record_absent_candles(venue, symbol, self.interval, &lacking, now)
                .await?;
            report.written += bars.len() as u64;
            report.absent += lacking.len() as u64;
            metrics::counter!(m::CANDLES_WRITTEN, "venue" => venue.as_str(), "origin" => "heal")
                .increment(bars.len() as u64);
            metrics::counter!(m::ABSENT_BUCKETS, "venue" => venue.as_str())
                .increment(lacking.len() as u64);
        }
        entry.verified_to = end;
        entry.updated_at = now;
        self.store.put_ledger(&entry).await?;
        Ok(report)
    }
}

/// Sorted buckets → half-open ranges of consecutive buckets.
pub fn coalesce(buckets: &[TimestampNs], step: i64) -> Vec<(TimestampNs, TimestampNs)> {
    let mut out: Vec<(TimestampNs, TimestampNs)> = Vec::new();
    for &b in buckets {
        match out.last_mut() {
            Some((_, to)) if *to == b => *to = b + step,
            _ => out.push((b, b + step)),
        }
    }
    out
}

#[async_trait]
impl PollJob for Healer {
    fn name(&self) -> &'static str {
        self.name
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.cfg.interval_secs.max(1))
    }

    /// Heals every series; one failing series does not keep the others from healing.
    async fn run_once(&self) -> Result<u64> {
        let mut written = 0;
        let mut first_err = None;
        // rollups of buckets healed earlier that have settled since
        if let Some(r) = &self.rollups {
            if let Err(e) = r.flush(self.store.as_ref(), self.clock.now_ns()).await {
                first_err = Some(e);
            }
        }
        for s in &self.symbols {
            match self.heal_symbol(s).await {
                Ok(r) => written += r.written,
                Err(e) => {
                    tracing::warn!(symbol = %s, error = %e, "healing failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_buckets_coalesce() {
        assert_eq!(coalesce(&[], 1), vec![]);
        assert_eq!(
            coalesce(&[0, 1, 2, 5, 7, 8], 1),
            vec![(0, 3), (5, 6), (7, 9)]
        );
    }
}
