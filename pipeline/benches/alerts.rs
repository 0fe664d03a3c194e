//! Alert evaluation cost per quote: 100,000 active rules over 1,000 symbols (100 per
//! symbol: above, below, crosses, percent moves over two windows, signals), recurring with
//! hysteresis and cooldown, fed a random walk per symbol. Criterion reports the time of a
//! batch of 10,000 quotes; divide by 10,000 (or read the throughput) for the cost per quote.
//!
//!   cargo bench -p pricestream-pipeline --bench alerts -- --quick

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pricestream_pipeline::alerts::{AlertIndex, Evaluator};
use pricestream_schemas::{Interval, Quote, QuoteKind, SignalKind, Symbol, Venue};
use pricestream_store::alerts::{AlertRule, MoveDirection, RuleCondition};

const START: i64 = 1_763_683_200_000_000_000;
const SYMBOLS: usize = 1_000;
const RULES_PER_SYMBOL: usize = 100;
const BATCH: usize = 10_000;

/// xorshift: fixtures need no extra crates
struct Rng(u64);
impl Rng {
    fn f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn symbols() -> Vec<Symbol> {
    (0..SYMBOLS)
        .map(|i| Symbol::new(&format!("S{i:05}-USDT")).unwrap())
        .collect()
}

fn rules(syms: &[Symbol]) -> Vec<AlertRule> {
    let mut rng = Rng(7);
    let mut out = Vec::with_capacity(SYMBOLS * RULES_PER_SYMBOL);
    for s in syms {
        for j in 0..RULES_PER_SYMBOL {
            // levels within ±5% of the starting price 100
            let level = 95.0 + rng.f64() * 10.0;
            let condition = match j % 20 {
                0..=5 => RuleCondition::Above { level },
                6..=11 => RuleCondition::Below { level },
                12..=15 => RuleCondition::Crosses { level },
                16 | 17 => RuleCondition::PercentMove {
                    percent: 0.2 + rng.f64() * 2.0,
                    window_secs: if j % 2 == 0 { 60 } else { 300 },
                    direction: MoveDirection::Either,
                },
                _ => RuleCondition::Signal {
                    interval: Interval::H1,
                    signal: SignalKind::GoldenCross,
                },
            };
            out.push(AlertRule {
                id: format!("{s}-{j}"),
                owner: format!("k{}", j % 10),
                venue: if j % 3 == 0 {
                    Some(Venue::Binance)
                } else {
                    None
                },
                symbol: s.clone(),
                condition,
                recurring: true,
                cooldown_secs: 60,
                hysteresis: 0.05,
                url: "https://hooks.example.com/x".into(),
                secret: String::new(),
                active: true,
                created_at: 0,
                updated_at: 0,
                fired_at: None,
            });
        }
    }
    out
}

/// A random walk per symbol (σ 0.02% per quote), quotes round-robin over the symbols,
/// 1 ms apart.
fn quotes(syms: &[Symbol], n: usize) -> Vec<Quote> {
    let mut rng = Rng(11);
    let mut price = vec![100.0; syms.len()];
    (0..n)
        .map(|i| {
            let s = i % syms.len();
            price[s] *= 1.0 + (rng.f64() - 0.5) * 0.0007;
            let t = START + i as i64 * 1_000_000;
            Quote {
                venue: Venue::Binance,
                symbol: syms[s].clone(),
                kind: QuoteKind::Trade,
                price: price[s],
                size: 1.0,
                side: None,
                trade_id: None,
                bid: None,
                ask: None,
                ts_event: t,
                ts_ingest: t,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let syms = symbols();
    let rules = rules(&syms);
    let index = Arc::new(AlertIndex::build(&rules));
    assert_eq!(index.len(), SYMBOLS * RULES_PER_SYMBOL);
    let mut g = c.benchmark_group("alert_evaluation");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, ix) in [
        ("100k_rules_1k_symbols", Arc::clone(&index)),
        ("no_rules", Arc::new(AlertIndex::default())),
    ] {
        let mut quotes = quotes(&syms, BATCH);
        let mut e = Evaluator::new(Arc::clone(&ix));
        let mut out = Vec::new();
        // warm the per-symbol state (first observations fire what already holds)
        for q in &quotes {
            e.on_quote(q, &mut out);
        }
        out.clear();
        let span = BATCH as i64 * 1_000_000;
        let mut fired = 0usize;
        let mut evaluated = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                for q in quotes.iter_mut() {
                    q.ts_event += span;
                    e.on_quote(q, &mut out);
                }
                evaluated += quotes.len();
                fired += out.len();
                black_box(out.len());
                out.clear();
            })
        });
        if evaluated > 0 {
            println!(
                "{name}: {} alerts fired over {} quotes ({:.4} per quote)",
                fired,
                evaluated,
                fired as f64 / evaluated as f64
            );
        }
    }
    g.finish();
    let mut b = c.benchmark_group("alert_index");
    b.sample_size(10);
    b.bench_function("build_100k_rules", |bch| {
        bch.iter(|| black_box(AlertIndex::build(&rules).len()))
    });
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
