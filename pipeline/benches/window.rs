//! The 1m window fold: quotes offered to `BarWindows` as the window operator does, with
//! the frontier advancing behind them (bars emitted, state purged).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pricestream_connectors::synthetic::SyntheticMarket;
use pricestream_pipeline::window::BarWindows;
use pricestream_schemas::{Interval, Quote, Symbol};

const START: i64 = 1_763_683_200_000_000_000;
const DELAY: i64 = 2_000_000_000;
const LATENESS: i64 = 60_000_000_000;

fn stream(symbols: usize, n: usize) -> Vec<Quote> {
    let syms: Vec<Symbol> = (0..symbols)
        .map(|i| Symbol::new(&format!("S{i:05}-USDT")).unwrap())
        .collect();
    SyntheticMarket::new(42, &syms, START, 1.0, 0.6, 0.02, 1_500)
        .take(n)
        .collect()
}

fn fold(quotes: &[Quote]) -> usize {
    let mut w = BarWindows::new(Interval::M1, LATENESS);
    let mut max = i64::MIN;
    let mut bars = 0;
    for (i, q) in quotes.iter().enumerate() {
        max = max.max(q.ts_event);
        let wm = max - DELAY;
        black_box(w.offer(q, wm, wm));
        if i % 4_096 == 4_095 {
            bars += w.advance(wm).iter().map(|(_, b)| b.len()).sum::<usize>();
        }
    }
    bars + w.advance(i64::MAX).len()
}

fn window(c: &mut Criterion) {
    const N: usize = 200_000;
    let mut g = c.benchmark_group("window");
    g.throughput(Throughput::Elements(N as u64));
    for symbols in [10, 1_000] {
        let quotes = stream(symbols, N);
        g.bench_function(format!("offer_{symbols}_symbols"), |b| {
            b.iter_batched(|| (), |()| fold(&quotes), BatchSize::SmallInput)
        });
    }
    g.finish();
}

criterion_group!(benches, window);
criterion_main!(benches);
