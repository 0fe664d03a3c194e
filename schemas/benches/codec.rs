//! Wire codec: decoding (and validating) a `quotes.v1` message, the pipeline's entry.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pricestream_schemas::codec::{decode_quote, encode};
use pricestream_schemas::{Quote, QuoteKind, Side, Symbol, Venue};

fn quote() -> Quote {
    Quote {
        venue: Venue::Binance,
        symbol: Symbol::new("BTC-USDT").unwrap(),
        kind: QuoteKind::Trade,
        price: 64_987.42,
        size: 0.031_25,
        side: Some(Side::Buy),
        trade_id: Some(3_141_592_653),
        bid: None,
        ask: None,
        ts_event: 1_763_683_200_123_000_000,
        ts_ingest: 1_763_683_200_125_000_000,
    }
}

fn codec(c: &mut Criterion) {
    let q = quote();
    let bytes = encode(&q);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_quote", |b| {
        b.iter(|| decode_quote(black_box(&bytes)).unwrap())
    });
    g.bench_function("encode_quote", |b| b.iter(|| encode(black_box(&q))));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
