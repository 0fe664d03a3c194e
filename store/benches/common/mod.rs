//! Rows and settings shared by the store's figure-printing benches.

#![allow(dead_code)]

use pricestream_schemas::{Bar, Interval, Quote, QuoteKind, Side, Symbol, Venue};

pub const MIN: i64 = 60_000_000_000;
pub const DAY0: i64 = 1_767_225_600_000_000_000;

/// A size from the environment, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A bar of `symbol` priced around `p`, final one second before its minute ends.
pub fn bar(symbol: &Symbol, interval: Interval, start: i64, p: f64) -> Bar {
    Bar {
        venue: Venue::Binance,
        symbol: symbol.clone(),
        interval,
        bucket_start: start,
        open: p,
        high: p + 1.0,
        low: p - 1.0,
        close: p + 0.5,
        volume: 10.0,
        notional: 10.0 * p,
        vwap: p,
        trade_count: 42,
        revision: 0,
        ts_event: start + 59_000_000_001,
        ts_ingest: start + 60_000_000_017,
    }
}

/// Trade `i` of one deterministic stream, round robin over `symbols`, about 1 ms apart.
pub fn trade(symbols: &[Symbol], i: usize) -> Quote {
    let t = DAY0 + i as i64 * 1_000_003;
    Quote {
        venue: Venue::Binance,
        symbol: symbols[i % symbols.len()].clone(),
        kind: QuoteKind::Trade,
        price: 100.0 + (i % 1000) as f64 * 0.01,
        size: 0.5,
        side: Some(if i.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        }),
        trade_id: Some(i as u64),
        bid: None,
        ask: None,
        ts_event: t,
        ts_ingest: t + 1_500_000,
    }
}
