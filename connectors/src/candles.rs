//! Venue candles and how they become bars.
//!
//! The pipeline builds bars from quotes. A venue's candle (REST klines, a closed
//! `kline_1m` message) describes the same bucket as the venue saw it, so it is written as a
//! 1m bar of that venue with revision 0 through the store's idempotent upsert: where the
//! pipeline already revised a bucket (revision ≥ 1) its bar stands; gap healing only ever
//! writes buckets that have no bar at all.

use async_trait::async_trait;
use pricestream_schemas::{Bar, Candle, Interval, Symbol, TimestampNs, Venue};

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
