//! The TimescaleDB path: migrations make hypertables with compression and retention
//! policies, and the store reads and writes through them (also into a compressed chunk).
//! Runs against `PRICESTREAM_TEST_TIMESCALE_URL`, which `scripts/checks/timescale.sh` sets
//! (a PGlite build with timescaledb, one connection at a time); skipped loudly without it.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;

mod common;

use common::*;
use pricestream_schemas::{Interval, SignalKind, Venue};
use pricestream_store::postgres::PgStore;
use pricestream_store::{
    BarQuery, SignalQuery, Store, StoreOptions, TimescaleConfig, TimescaleMode,
};

#[tokio::test]
async fn hypertables_policies_and_queries() {
    let Ok(url) = std::env::var("PRICESTREAM_TEST_TIMESCALE_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPED TimescaleDB store test: PRICESTREAM_TEST_TIMESCALE_URL is not set.\n\
             !!!!!!!! Run: scripts/checks/timescale.sh\n"
        );
        return;
    };
    let opts = StoreOptions {
        max_connections: 1,
        // PGlite's socket server has no COPY FROM STDIN
        copy_quotes: false,
        timescale: TimescaleConfig {
            mode: TimescaleMode::On,
            compress_after_days: 3,
            retain_quotes_days: 14,
            retain_bars_days: 0,
            retain_signals_days: 400,
        },
        ..StoreOptions::default()
    };
    let store = PgStore::open(&url, &opts).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap(); // policies re-applied, not duplicated
    store.check_schema().await.unwrap();
    assert!(store.is_timescale().await.unwrap());

    let hypertables: Vec<String> = sqlx::query_scalar(
        "SELECT hypertable_name::text FROM timescaledb_information.hypertables ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(hypertables, ["bars", "quotes", "signals"]);
    let jobs: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT hypertable_name::text, proc_name::text, config::text
         FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY 1, 2",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let names: Vec<(&str, &str)> = jobs
        .iter()
        .map(|(h, p, _)| (h.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("bars", "policy_compression"),
            ("quotes", "policy_compression"),
            ("quotes", "policy_retention"),
            ("signals", "policy_compression"),
            ("signals", "policy_retention"),
        ]
    );
    assert!(jobs[2].2.contains("14 days"), "{:?}", jobs[2]);
    assert!(jobs[0].2.contains("3 days"), "{:?}", jobs[0]);

    // bars: 1m plus rollups, then a range query at the boundaries
    let m1 = walk_1m(Venue::Binance, "BTC-USDT", DAY0, 600, 21);
    store.upsert_bars(&m1).await.unwrap();
    store
        .upsert_bars(&pricestream_analytics::rollup(&m1, Interval::H1))
        .await
        .unwrap();
    let q = BarQuery {
        venue: None,
        symbol: sym("BTC-USDT"),
        interval: Interval::M1,
        from: m1[10].bucket_start,
        to: m1[20].bucket_start,
        limit: 1000,
        tail: false,
    };
    assert_eq!(store.query_bars(&q).await.unwrap(), m1[10..20]);
    let hourly = BarQuery {
        interval: Interval::H1,
        from: DAY0,
        to: DAY0 + 10 * Interval::H1.nanos(),
        ..q.clone()
    };
    assert_eq!(
        store.query_bars(&hourly).await.unwrap(),
        pricestream_analytics::rollup(&m1, Interval::H1)
    );

    // compress the chunk, then revise a bar in it: the revision rule still holds
    let compressed: i64 = sqlx::query_scalar(
        "SELECT COUNT(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('bars') c",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(compressed >= 1);
    let mut rev = m1[15].clone();
    rev.revision = 1;
    rev.close += 1.0;
    rev.high = rev.high.max(rev.close);
    store.upsert_bars(&[rev.clone()]).await.unwrap();
    store.upsert_bars(&[m1[15].clone()]).await.unwrap();
    let got = store.query_bars(&q).await.unwrap();
    assert_eq!(got[5], rev);
    store.upsert_bars(&m1).await.unwrap();
    assert_eq!(store.query_bars(&q).await.unwrap().len(), 10);

    // quotes and signals through their hypertables
    let t = DAY0 + 5;
    let quotes = [
        quote(Venue::Binance, "BTC-USDT", t, 100.0, Some(1)),
        quote(Venue::Binance, "BTC-USDT", t + 10, 101.0, Some(2)),
    ];
    store.insert_quotes(&quotes).await.unwrap();
    store.insert_quotes(&quotes).await.unwrap();
    assert_eq!(
        store.latest_quotes(None).await.unwrap(),
        [quotes[1].clone()]
    );
    let s = signal("BTC-USDT", Interval::H1, SignalKind::GoldenCross, DAY0, 1.0);
    store
        .upsert_signals(std::slice::from_ref(&s))
        .await
        .unwrap();
    let sq = SignalQuery {
        symbol: None,
        interval: None,
        kind: None,
        from: DAY0,
        to: DAY0 + 1,
        limit: 10,
    };
    assert_eq!(store.query_signals(&sq).await.unwrap(), [s]);
}
