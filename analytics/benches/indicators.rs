//! Indicator updates: one bar into a series' signal engine, and its building blocks.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pricestream_analytics::indicators::{RollingStats, Sma};
use pricestream_analytics::{SignalEngine, SignalParams};
use pricestream_schemas::{Bar, Interval, Symbol, Venue};

/// A deterministic wavy price series (no RNG needed).
fn closes(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let x = i as f64;
            100.0 + 5.0 * (x / 17.0).sin() + 2.0 * (x / 5.0).cos()
        })
        .collect()
}

fn bars(closes: &[f64]) -> Vec<Bar> {
    let sym = Symbol::new("BTC-USDT").unwrap();
    closes
        .iter()
        .enumerate()
        .map(|(i, &c)| Bar {
            venue: Venue::Synthetic,
            symbol: sym.clone(),
            interval: Interval::M1,
            bucket_start: i as i64 * 60_000_000_000,
            open: c,
            high: c + 0.5,
            low: c - 0.5,
            close: c,
            volume: 10.0,
            notional: 10.0 * c,
            vwap: c,
            trade_count: 10,
            revision: 0,
            ts_event: i as i64 * 60_000_000_000 + 59_000_000_000,
            ts_ingest: i as i64 * 60_000_000_000 + 59_500_000_000,
        })
        .collect()
}

fn indicators(c: &mut Criterion) {
    const N: usize = 10_000;
    let xs = closes(N);
    let series = bars(&xs);
    let mut g = c.benchmark_group("indicators");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("signal_engine_on_bar", |b| {
        b.iter(|| {
            let mut e = SignalEngine::new(SignalParams::default());
            let mut n = 0;
            for bar in &series {
                n += e.on_bar(black_box(bar)).len();
            }
            n
        })
    });
    g.bench_function("sma30_update", |b| {
        b.iter(|| {
            let mut s = Sma::new(30);
            let mut acc = 0.0;
            for &x in &xs {
                acc += s.update(black_box(x)).unwrap_or(0.0);
            }
            acc
        })
    });
    g.bench_function("rolling_stats20_update", |b| {
        b.iter(|| {
            let mut s = RollingStats::new(20);
            let mut acc = 0.0;
            for &x in &xs {
                acc += s.update(black_box(x)).map_or(0.0, |(m, sd)| m + sd);
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, indicators);
criterion_main!(benches);
