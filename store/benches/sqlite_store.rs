//! Bar rounds and raw quotes through the embedded SQLite store, printed as figures.
//!
//! ```sh
//! cargo bench -p pricestream-store --bench sqlite_store
//! ```
//!
//! A "round" is what the sink writes when a minute closes: one bar per symbol and
//! interval that ended (1m every minute; 5m, 15m and 1h on their boundaries), in one
//! `upsert_bars` call, into a store that already holds the earlier minutes. Sizes:
//! `PRICESTREAM_BENCH_SYMBOLS` (default 1000), `PRICESTREAM_BENCH_MINUTES` (default 120),
//! `PRICESTREAM_BENCH_QUOTES` (default 200000, written 2,000 per transaction).

use std::time::{Duration, Instant};

mod common;

use common::{bar, env_usize, trade, DAY0, MIN};
use pricestream_schemas::{Bar, Interval, Quote, Symbol};
use pricestream_store::sqlite::SqliteStore;
use pricestream_store::Store;

/// The bars that close at the end of `minute` (counted from DAY0).
fn round(symbols: &[Symbol], minute: i64) -> Vec<Bar> {
    let end = minute + 1;
    let mut out = Vec::new();
    for (interval, len) in [
        (Interval::M1, 1),
        (Interval::M5, 5),
        (Interval::M15, 15),
        (Interval::H1, 60),
    ] {
        if end % len == 0 {
            let start = DAY0 + (end - len) * MIN;
            out.extend(
                symbols
                    .iter()
                    .enumerate()
                    .map(|(i, s)| bar(s, interval, start, 100.0 + i as f64 * 0.01)),
            );
        }
    }
    out
}

fn quotes(symbols: &[Symbol], n: usize) -> Vec<Quote> {
    (0..n).map(|i| trade(symbols, i)).collect()
}

fn ms(sorted: &[(Duration, usize)], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].0.as_secs_f64() * 1e3
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let n_symbols = env_usize("PRICESTREAM_BENCH_SYMBOLS", 1000);
    let minutes = env_usize("PRICESTREAM_BENCH_MINUTES", 120) as i64;
    let n_quotes = env_usize("PRICESTREAM_BENCH_QUOTES", 200_000);
    let dir = std::env::temp_dir().join(format!("pricestream-sqlite-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store =
        SqliteStore::open(&format!("sqlite://{}", dir.join("bench.db").display()), 4).await?;
    store.migrate().await?;
    let symbols: Vec<Symbol> = (0..n_symbols)
        .map(|i| Symbol::new(&format!("S{i:05}-USDT")))
        .collect::<Result<_, _>>()?;

    let mut rounds: Vec<(Duration, usize)> = Vec::new();
    let mut total = 0usize;
    let started = Instant::now();
    for minute in 0..minutes {
        let bars = round(&symbols, minute);
        let t = Instant::now();
        store.upsert_bars(&bars).await?;
        rounds.push((t.elapsed(), bars.len()));
        total += bars.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "bars: {minutes} rounds over {n_symbols} symbols, {total} bars in {secs:.2} s ({:.1} µs/bar)",
        secs * 1e6 / total as f64
    );
    for size in [n_symbols, 2 * n_symbols, 3 * n_symbols, 4 * n_symbols] {
        let mut of: Vec<(Duration, usize)> =
            rounds.iter().copied().filter(|r| r.1 == size).collect();
        if of.is_empty() {
            continue;
        }
        of.sort();
        println!(
            "  rounds of {size:>5} bars: {:>3}  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            of.len(),
            ms(&of, 0.5),
            ms(&of, 0.99),
            of.last().map_or(0.0, |r| r.0.as_secs_f64() * 1e3)
        );
    }

    if n_quotes > 0 {
        let qs = quotes(&symbols, n_quotes);
        let t = Instant::now();
        for chunk in qs.chunks(2_000) {
            store.insert_quotes(chunk).await?;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "quotes: {n_quotes} in transactions of 2,000: {secs:.2} s ({:.0} quotes/s)",
            n_quotes as f64 / secs
        );
    }
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("sqlite_store bench: {e}");
        std::process::exit(1);
    }
}
