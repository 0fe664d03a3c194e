//! Fixtures shared by the store tests.
#![allow(dead_code)]

pub mod alerts;

use pricestream_schemas::{
    Bar, Interval, Quote, QuoteKind, Side, Signal, SignalKind, Symbol, Venue,
};

pub const MIN: i64 = 60_000_000_000;
/// 2026-01-01T00:00:00Z in nanoseconds.
pub const DAY0: i64 = 1_767_225_600_000_000_000;

pub fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

/// A small deterministic generator (xorshift), so fixtures need no extra crates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 1m bars of a random walk for `symbol`, `minutes` long from `start`, skipping every
/// minute for which `skip(i)` holds (gaps, as in real data). Event and ingest times carry
/// sub-microsecond nanoseconds so round trips are tested.
pub fn walk_1m(venue: Venue, symbol: &str, start: i64, minutes: i64, seed: u64) -> Vec<Bar> {
    let mut rng = Rng::new(seed);
    let mut price = 100.0 + 50.0 * rng.next_f64();
    let mut out = Vec::new();
    for i in 0..minutes {
        let open = price;
        price *= 1.0 + (rng.next_f64() - 0.5) * 0.01;
        let close = price;
        let high = open.max(close) * (1.0 + rng.next_f64() * 0.002);
        let low = open.min(close) * (1.0 - rng.next_f64() * 0.002);
        if i % 97 == 13 {
            continue; // a quiet minute: no bar
        }
        let volume = 0.5 + rng.next_f64() * 10.0;
        let vwap = low + (high - low) * rng.next_f64();
        let bucket = start + i * MIN;
        out.push(Bar {
            venue,
            symbol: sym(symbol),
            interval: Interval::M1,
            bucket_start: bucket,
            open,
            high,
            low,
            close,
            volume,
            notional: vwap * volume,
            vwap,
            trade_count: 1 + (rng.next_f64() * 50.0) as u64,
            revision: 0,
            ts_event: bucket + 59_999_999_123 - (rng.next_f64() * 1e9) as i64,
            ts_ingest: bucket + MIN + 1_234_567 + (rng.next_f64() * 1e6) as i64,
        });
    }
    out
}

pub fn quote(venue: Venue, symbol: &str, ts: i64, price: f64, trade_id: Option<u64>) -> Quote {
    Quote {
        venue,
        symbol: sym(symbol),
        kind: if trade_id.is_some() {
            QuoteKind::Trade
        } else {
            QuoteKind::Ticker
        },
        price,
        size: 0.25,
        side: trade_id.map(|id| if id % 2 == 0 { Side::Buy } else { Side::Sell }),
        trade_id,
        bid: trade_id.is_none().then_some(price - 0.5),
        ask: trade_id.is_none().then_some(price + 0.5),
        ts_event: ts,
        ts_ingest: ts + 1_000_017,
    }
}

pub fn signal(
    symbol: &str,
    interval: Interval,
    kind: SignalKind,
    bucket: i64,
    value: f64,
) -> Signal {
    Signal {
        venue: Venue::Binance,
        symbol: sym(symbol),
        interval,
        kind,
        bucket_start: bucket,
        value,
        ts_event: bucket + interval.nanos() - 1,
        ts_ingest: bucket + interval.nanos() + 123,
    }
}
