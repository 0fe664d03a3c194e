//! Write throughput and read latency of the PostgreSQL store, printed as figures.
//!
//! ```sh
//! source scripts/services/postgres.sh; PRICESTREAM_TEST_PG_DURABLE=1 start_service_postgres
//! cargo bench -p pricestream-store --bench pg_store
//! stop_service_postgres
//! ```
//!
//! Uses `PRICESTREAM_BENCH_PG_URL`, else `PRICESTREAM_TEST_PG_URL`; works in a schema of
//! its own and drops it at the end. Sizes: `PRICESTREAM_BENCH_BARS` (default 200000),
//! `PRICESTREAM_BENCH_QUOTES` (default 1000000), `PRICESTREAM_BENCH_BATCH` (default 5000),
//! `PRICESTREAM_BENCH_WRITERS` (concurrent writers, default 2: the sink writes batches
//! concurrently, and the server is the bottleneck).
//!
//! Writes try a plain `INSERT` first and fall back to the upsert on a unique violation;
//! the "re-insert", "replay" and "10% duplicates" lines measure the fallback.

use std::time::{Duration, Instant};

use pricestream_schemas::{Bar, Interval, Quote, Symbol};
use pricestream_store::postgres::PgStore;
use pricestream_store::{BarQuery, Store, StoreOptions};

mod common;

use common::{bar, env_usize, trade, DAY0, MIN};

fn symbols(n: usize) -> Vec<Symbol> {
    (0..n)
        .map(|i| Symbol::new(&format!("S{i:03}-USDT")).expect("valid symbol"))
        .collect()
}

fn bars(n: usize) -> Vec<Bar> {
    let syms = symbols(100);
    let per_symbol = n.div_ceil(syms.len());
    let mut out = Vec::with_capacity(n);
    for minute in 0..per_symbol as i64 {
        for (i, s) in syms.iter().enumerate() {
            if out.len() == n {
                return out;
            }
            let p = 100.0 + i as f64 + (minute % 50) as f64 * 0.1;
            out.push(bar(s, Interval::M1, DAY0 + minute * MIN, p));
        }
    }
    out
}

fn quotes(n: usize) -> Vec<Quote> {
    quotes_from(0, n)
}

/// Trades `first..first + n` of one deterministic stream over 20 symbols.
fn quotes_from(first: usize, n: usize) -> Vec<Quote> {
    let syms = symbols(20);
    (first..first + n).map(|i| trade(&syms, i)).collect()
}

/// Writes `rows` in batches with `writers` concurrent writers (batch i goes to writer
/// i mod writers).
async fn write_all<'a, T, F, Fut>(
    rows: &'a [T],
    batch: usize,
    writers: usize,
    write: F,
) -> pricestream_store::Result<()>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: std::future::Future<Output = pricestream_store::Result<()>>,
{
    let chunks: Vec<&'a [T]> = rows.chunks(batch).collect();
    let lanes = (0..writers).map(|w| {
        let mine: Vec<&'a [T]> = chunks.iter().skip(w).step_by(writers).copied().collect();
        let write = &write;
        async move {
            for c in mine {
                write(c).await?;
            }
            Ok::<(), pricestream_store::StoreError>(())
        }
    });
    for r in futures_lite_join_all(lanes).await {
        r?;
    }
    Ok(())
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_lite_join_all<F: std::future::Future>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

async fn timed<F, Fut>(label: &str, rows: usize, mut f: F) -> anyhow_free::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = pricestream_store::Result<()>>,
{
    let t = Instant::now();
    f().await?;
    let secs = t.elapsed().as_secs_f64();
    let rate = rows as f64 / secs;
    println!("{label:<44} {rows:>9} rows  {secs:>7.3} s  {rate:>10.0} rows/s");
    Ok(rate)
}

/// The bench's own tiny error type (no extra dependencies).
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn run() -> anyhow_free::Result<()> {
    let Some(url) = std::env::var("PRICESTREAM_BENCH_PG_URL")
        .or_else(|_| std::env::var("PRICESTREAM_TEST_PG_URL"))
        .ok()
    else {
        eprintln!("pg_store bench: set PRICESTREAM_BENCH_PG_URL (or PRICESTREAM_TEST_PG_URL); nothing measured");
        return Ok(());
    };
    let n_bars = env_usize("PRICESTREAM_BENCH_BARS", 200_000);
    let n_quotes = env_usize("PRICESTREAM_BENCH_QUOTES", 1_000_000);
    let batch = env_usize("PRICESTREAM_BENCH_BATCH", 5_000).max(1);
    let writers = env_usize("PRICESTREAM_BENCH_WRITERS", 2).max(1);

    let schema = format!("bench_{}", std::process::id());
    let admin = PgStore::open(&url, &StoreOptions::default()).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(admin.pool())
        .await?;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'server_version') ORDER BY name",
    )
    .fetch_all(admin.pool())
    .await?;
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = PgStore::open(
        &format!("{url}{sep}options[search_path]={schema}"),
        &StoreOptions::default(),
    )
    .await?;
    store.migrate().await?;
    println!(
        "PostgreSQL store bench: {n_bars} bars, {n_quotes} quotes, batches of {batch}, {writers} writer(s); server {}",
        settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let bars = bars(n_bars);
    timed("bars: insert (new rows)", bars.len(), || {
        write_all(&bars, batch, writers, |c| store.upsert_bars(c))
    })
    .await?;
    timed("bars: re-insert same rows (idempotent)", bars.len(), || {
        write_all(&bars, batch, writers, |c| store.upsert_bars(c))
    })
    .await?;
    let revised: Vec<Bar> = bars
        .iter()
        .map(|b| Bar {
            revision: 1,
            close: b.close + 0.25,
            ..b.clone()
        })
        .collect();
    timed(
        "bars: revision 1 of every row (update)",
        revised.len(),
        || write_all(&revised, batch, writers, |c| store.upsert_bars(c)),
    )
    .await?;

    let quotes = quotes(n_quotes);
    timed("quotes: insert raw trades", quotes.len(), || {
        write_all(&quotes, batch, writers, |c| store.insert_quotes(c))
    })
    .await?;
    let replay: &[Quote] = &quotes[..quotes.len().min(200_000)];
    timed("quotes: replay (all duplicates)", replay.len(), || {
        write_all(replay, batch, writers, |c| store.insert_quotes(c))
    })
    .await?;

    // a replay that overlaps the stored stream: new quotes, every 10th one already stored
    let fresh = quotes_from(n_quotes, 200_000);
    let mixed: Vec<Quote> = fresh
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            if i % 10 == 0 {
                quotes[i % quotes.len()].clone()
            } else {
                q
            }
        })
        .collect();
    timed("quotes: 10% duplicates in every batch", mixed.len(), || {
        write_all(&mixed, batch, writers, |c| store.insert_quotes(c))
    })
    .await?;

    // what autovacuum does on a live table: statistics and the visibility map
    sqlx::query("VACUUM ANALYZE").execute(store.pool()).await?;
    let sym = Symbol::new("S042-USDT")?;
    let mut lat = Vec::new();
    let mut rows = 0;
    for i in 0..300 {
        let from = DAY0 + (i % 30) * MIN;
        let q = BarQuery {
            venue: None,
            symbol: sym.clone(),
            interval: Interval::M1,
            from,
            to: from + 1440 * MIN,
            limit: 10_000,
            tail: false,
        };
        let t = Instant::now();
        rows = store.query_bars(&q).await?.len();
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "bars: 1-day range of 1m bars ({rows} rows)      p50 {:.2} ms  p95 {:.2} ms  max {:.2} ms  (300 queries)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        percentile(&lat, 1.0)
    );
    let mut lat = Vec::new();
    let mut n = 0;
    for _ in 0..300 {
        let t = Instant::now();
        n = store.latest_quotes(None).await?.len();
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "quotes: latest per symbol ({n} symbols)          p50 {:.2} ms  p95 {:.2} ms  max {:.2} ms  (300 queries)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        percentile(&lat, 1.0)
    );

    store.pool().close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(admin.pool())
        .await?;
    Ok(())
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pg_store bench: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run()) {
        eprintln!("pg_store bench failed: {e}");
        std::process::exit(1);
    }
}
