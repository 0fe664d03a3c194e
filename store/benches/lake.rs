//! Parquet encoding of bars for the lake: the encode alone (Arrow batch + Parquet with the
//! lake's settings, in memory) and a full `Lake::write_bars` (encode, write, fsync, rename).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pricestream_schemas::arrow::{bar_schema, bars_to_batch};
use pricestream_schemas::{Bar, Interval, Symbol, Venue};
use pricestream_store::lake::encode_parquet;
use pricestream_store::Lake;

const START: i64 = 1_763_683_200_000_000_000;

/// One hour of 1m bars for `symbols` symbols, in the lake's key order.
fn bars(symbols: usize) -> Vec<Bar> {
    let syms: Vec<Symbol> = (0..symbols)
        .map(|i| Symbol::new(&format!("S{i:05}-USDT")).unwrap())
        .collect();
    let mut out = Vec::new();
    for m in 0..60i64 {
        for (i, s) in syms.iter().enumerate() {
            let c = 100.0 + i as f64 * 0.01 + (m as f64 / 7.0).sin();
            out.push(Bar {
                venue: Venue::Synthetic,
                symbol: s.clone(),
                interval: Interval::M1,
                bucket_start: START + m * 60_000_000_000,
                open: c,
                high: c + 0.25,
                low: c - 0.25,
                close: c + 0.1,
                volume: 12.5,
                notional: 12.5 * c,
                vwap: c,
                trade_count: 60,
                revision: 0,
                ts_event: START + m * 60_000_000_000 + 59_000_000_000,
                ts_ingest: START + m * 60_000_000_000 + 59_100_000_000,
            });
        }
    }
    out
}

fn lake(c: &mut Criterion) {
    let rows = bars(100);
    let mut g = c.benchmark_group("lake");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("encode_bars_6000", |b| {
        b.iter(|| {
            let batch = bars_to_batch(black_box(&rows), false).unwrap();
            encode_parquet(bar_schema(false), &batch).unwrap().len()
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::new(dir.path());
    g.sample_size(20);
    g.bench_function("write_bars_6000", |b| {
        b.iter(|| lake.write_bars(black_box(&rows)).unwrap().len())
    });
    // An hour boundary's round over 1,000 symbols: the minute's 1m bars plus the 5m, 15m
    // and 1h bars that closed with it, each interval's hour file already holding 30
    // minutes: four files rewritten.
    let symbols = bars(1000);
    let mut round: Vec<Bar> = Vec::new();
    for (interval, minutes) in [
        (Interval::M1, 1),
        (Interval::M5, 5),
        (Interval::M15, 15),
        (Interval::H1, 60),
    ] {
        round.extend(
            symbols
                .iter()
                .filter(|b| (b.bucket_start - START) % (minutes * 60_000_000_000) == 0)
                .filter(|b| b.bucket_start < START + 30 * 60_000_000_000 || minutes == 60)
                .map(|b| Bar {
                    interval,
                    ..b.clone()
                }),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::new(dir.path());
    lake.write_bars(&round).unwrap();
    g.throughput(Throughput::Elements(round.len() as u64));
    g.bench_function("write_round_4_files", |b| {
        b.iter(|| lake.write_bars(black_box(&round)).unwrap().len())
    });
    g.finish();
}

criterion_group!(benches, lake);
criterion_main!(benches);
