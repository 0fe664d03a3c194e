//! Venue candles and how they become bars.
//!
//! The pipeline builds bars from quotes. A venue's candle (REST klines, a closed
//! `kline_1m` message) describes the same bucket as the venue saw it, so it is written as a
//! 1m bar of that venue with revision 0 through the store's idempotent upsert: where the
//! pipeline already revised a bucket (revision ≥ 1) its bar stands; gap healing only ever
//! writes buckets that have no bar at all.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use pricestream_schemas::{Bar, Candle, Interval, Symbol, TimestampNs, Venue};
use pricestream_store::{BarQuery, Store};

use crate::error::Result;

/// A venue that serves candle history.
#[async_trait]
pub trait CandleSource: Send + Sync {
    fn venue(&self) -> Venue;
    /// Candles whose bucket starts in `[from, to)`, ascending, each at most once.
    async fn candles(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<Candle>>;
}

/// The bar a venue candle stands for.
pub fn candle_to_bar(c: &Candle) -> Bar {
    Bar {
        venue: c.venue,
        symbol: c.symbol.clone(),
        interval: c.interval,
        bucket_start: c.open_time,
        open: c.open,
        high: c.high,
        low: c.low,
        close: c.close,
        volume: c.volume,
        notional: c.notional,
        vwap: if c.volume > 0.0 {
            c.notional / c.volume
        } else {
            c.close
        },
        trade_count: c.trade_count,
        revision: 0,
        ts_event: c.ts_event,
        ts_ingest: c.ts_ingest,
    }
}

/// One rollup bucket of one series.
type RollupKey = (Venue, Symbol, Interval, TimestampNs);

/// Coarser bars for venue candles written outside the dataflow (healed and backfilled 1m
/// bars), so a healed stretch shows in every interval, not only in 1m. The buckets a write
/// touches at each rollup interval are recomputed from the stored 1m bars once settled:
/// past their end by more than `settle` (the pipeline's lateness), so that the dataflow,
/// which owns a bucket until then, will not revise it again. A recomputed bar that differs
/// from the stored one replaces it with the next revision.
pub struct CandleRollups {
    intervals: Vec<Interval>,
    settle_ns: i64,
    /// Touched buckets not settled yet (kept in memory: a restart forgets them).
    pending: Mutex<BTreeSet<RollupKey>>,
}

impl CandleRollups {
    /// `intervals`: the pipeline's rollups (1m itself is ignored).
    pub fn new(intervals: &[Interval], settle: Duration) -> Self {
        CandleRollups {
            intervals: intervals
                .iter()
                .copied()
                .filter(|iv| *iv != Interval::M1)
                .collect(),
            settle_ns: i64::try_from(settle.as_nanos()).unwrap_or(i64::MAX),
            pending: Mutex::new(BTreeSet::new()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<RollupKey>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes venue candle `bars` (1m) and then the settled rollups; returns the rollup
    /// bars written.
    pub async fn write(&self, store: &dyn Store, bars: &[Bar], now: TimestampNs) -> Result<u64> {
        store.upsert_bars(bars).await?;
        self.note(bars);
        self.flush(store, now).await
    }

    /// Notes the rollup buckets that stored 1m `bars` touch, for the next [`Self::flush`]
    /// (a multi-page backfill flushes once at the end, so no bucket is written half-done).
    pub fn note(&self, bars: &[Bar]) {
        let mut pending = self.pending();
        for b in bars.iter().filter(|b| b.interval == Interval::M1) {
            for iv in &self.intervals {
                pending.insert((
                    b.venue,
                    b.symbol.clone(),
                    *iv,
                    iv.bucket_start(b.bucket_start),
                ));
            }
        }
    }

    /// Recomputes every touched bucket that has settled by `now`; returns the rollup bars
    /// written. On a store error the buckets not done stay pending.
    pub async fn flush(&self, store: &dyn Store, now: TimestampNs) -> Result<u64> {
        let due: Vec<RollupKey> = {
            let mut pending = self.pending();
            let due: Vec<RollupKey> = pending
                .iter()
                .filter(|(_, _, iv, start)| {
                    start
                        .saturating_add(iv.nanos())
                        .saturating_add(self.settle_ns)
                        <= now
                })
                .cloned()
                .collect();
            for k in &due {
                pending.remove(k);
            }
            due
        };
        let mut written = 0;
        for (i, key) in due.iter().enumerate() {
            match refresh_rollup(store, key).await {
                Ok(w) => written += w,
                Err(e) => {
                    self.pending().extend(due[i..].iter().cloned());
                    return Err(e);
                }
            }
        }
        Ok(written)
    }
}

/// Recomputes one rollup bucket from the stored 1m bars; writes it when it differs from the
/// stored bar. Returns the bars written (0 or 1).
async fn refresh_rollup(store: &dyn Store, key: &RollupKey) -> Result<u64> {
    let (venue, symbol, iv, start) = key;
    let query = |interval: Interval, to: TimestampNs, limit: u32| BarQuery {
        venue: Some(*venue),
        symbol: symbol.clone(),
        interval,
        from: *start,
        to,
        limit,
        tail: false,
    };
    let minutes = u32::try_from(iv.nanos() / Interval::M1.nanos()).unwrap_or(u32::MAX);
    let m1 = store
        .query_bars(&query(
            Interval::M1,
            start + iv.nanos(),
            minutes.saturating_add(1),
        ))
        .await?;
    let Some(mut bar) = pricestream_analytics::rollup::rollup(&m1, *iv)
        .into_iter()
        .next()
    else {
        return Ok(0);
    };
    if let Some(stored) = store.query_bars(&query(*iv, start + 1, 1)).await?.pop() {
        let same = (stored.open, stored.high, stored.low, stored.close)
            == (bar.open, bar.high, bar.low, bar.close)
            && stored.volume == bar.volume
            && stored.notional == bar.notional
            && stored.trade_count == bar.trade_count;
        if same {
            return Ok(0);
        }
        bar.revision = bar.revision.max(stored.revision + 1);
    }
    store.upsert_bars(&[bar]).await?;
    Ok(1)
}
