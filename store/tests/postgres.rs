//! The PostgreSQL store against a real server: `PRICESTREAM_TEST_PG_URL` (started by
//! `scripts/services/postgres.sh`). Without it these tests fail under CI=true and print a
//! loud skip message elsewhere. Each test works in its own schema, so they run in parallel.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;

mod common;

use common::*;
use pricestream_schemas::{Bar, IngestionRun, Interval, RunStatus, SignalKind, Venue};
use pricestream_store::postgres::PgStore;
use pricestream_store::{
    BarQuery, DeadLetter, RunFilter, SignalQuery, Store, StoreError, StoreOptions,
};
use sqlx::{PgPool, Row};

struct Pg {
    store: PgStore,
    admin: PgPool,
    schema: String,
}

/// A store on a fresh, empty schema of the test database (not migrated).
async fn pg(test: &str) -> Option<Pg> {
    pg_with(test, &StoreOptions::default()).await
}

/// [`pg`] with these options.
async fn pg_with(test: &str, opts: &StoreOptions) -> Option<Pg> {
    let url = match std::env::var("PRICESTREAM_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PRICESTREAM_TEST_PG_URL is not set and CI=true: the PostgreSQL store tests must run (scripts/test starts a server)");
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED PostgreSQL store test `{test}`: PRICESTREAM_TEST_PG_URL is not set.\n\
                 !!!!!!!! Run: source scripts/services/postgres.sh; start_service_postgres\n"
            );
            return None;
        }
    };
    let admin = PgPool::connect(&url)
        .await
        .expect("connecting to the test database");
    let schema = format!("t_{test}_{}", std::process::id());
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}options[search_path]={schema}");
    let store = PgStore::open(&url, opts).await.unwrap();
    Some(Pg {
        store,
        admin,
        schema,
    })
}

async fn migrated(test: &str) -> Option<Pg> {
    let p = pg(test).await?;
    p.store.migrate().await.unwrap();
    Some(p)
}

impl Pg {
    async fn drop(self) {
        self.store.pool().close().await;
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.admin)
            .await
            .unwrap();
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    /// Every row of `bars` as text, in key order: a snapshot that shows any change.
    async fn bars_snapshot(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT b::text FROM bars b ORDER BY symbol, interval, bucket_start, venue",
        )
        .fetch_all(self.store.pool())
        .await
        .unwrap()
    }
}

fn all(symbol: &str, interval: Interval) -> BarQuery {
    BarQuery {
        venue: None,
        symbol: sym(symbol),
        interval,
        from: i64::MIN / 2,
        to: i64::MAX / 2,
        limit: 1_000_000,
        tail: false,
    }
}

#[tokio::test]
async fn migrations_run_from_empty_and_schema_check_refuses_unmigrated() {
    let Some(p) = pg("migrate").await else { return };
    match p.store.check_schema().await {
        Err(StoreError::Unmigrated {
            found: None,
            expected,
        }) => {
            assert_eq!(expected, PgStore::expected_version())
        }
        other => panic!("expected Unmigrated, got {other:?}"),
    }
    let msg = p.store.check_schema().await.unwrap_err().to_string();
    assert!(msg.contains("pricestream migrate"), "{msg}");

    p.store.migrate().await.unwrap();
    p.store.check_schema().await.unwrap();
    p.store.ping().await.unwrap();
    // running again is a no-op
    p.store.migrate().await.unwrap();
    p.store.check_schema().await.unwrap();

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%'
         ORDER BY 1",
    )
    .fetch_all(p.store.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "absent_candles",
            "alert_deliveries",
            "alert_delivery_attempts",
            "alert_rules",
            "alert_triggers",
            "api_keys",
            "backfill_jobs",
            "bars",
            "candle_ledger",
            "dead_letters",
            "ingestion_runs",
            "quotes",
            "quotes_latest",
            "signals",
            "stream_checkpoints"
        ]
    );
    // plain PostgreSQL: time columns are timestamptz, with BRIN indexes where they pay
    let ty: String = sqlx::query_scalar(
        "SELECT data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = 'bars' AND column_name = 'bucket_start'",
    )
    .fetch_one(p.store.pool())
    .await
    .unwrap();
    assert_eq!(ty, "timestamp with time zone");
    let brin: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexdef LIKE '%USING brin%'",
    )
    .fetch_one(p.store.pool())
    .await
    .unwrap();
    assert_eq!(brin, 3);
    assert!(!p.store.is_timescale().await.unwrap());
    p.drop().await;
}

#[tokio::test]
async fn schema_check_and_migrate_refuse_a_newer_schema() {
    let Some(p) = migrated("newer").await else {
        return;
    };
    let expected = PgStore::expected_version();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES ($1, 'from the future', true, '\\x00', 0)",
    )
    .bind(expected + 1)
    .execute(p.store.pool())
    .await
    .unwrap();
    for result in [p.store.check_schema().await, p.store.migrate().await] {
        match result {
            Err(e @ StoreError::TooNew { .. }) => {
                assert!(e.to_string().contains("newer than this build"), "{e}")
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
    }
    p.drop().await;
}

#[tokio::test]
async fn bars_round_trip_exactly_and_reinserting_changes_nothing() {
    let Some(p) = migrated("idempotent").await else {
        return;
    };
    let mut bars = walk_1m(Venue::Binance, "BTC-USDT", DAY0, 300, 1);
    bars.extend(walk_1m(Venue::Coinbase, "BTC-USDT", DAY0, 300, 2));
    p.store.upsert_bars(&bars).await.unwrap();
    let before = p.bars_snapshot().await;
    assert_eq!(before.len(), bars.len());

    // the same bars again, whole and in shuffled batches with duplicates inside a batch
    p.store.upsert_bars(&bars).await.unwrap();
    let mut again: Vec<Bar> = bars.iter().rev().cloned().collect();
    again.extend(bars[..50].iter().cloned());
    for chunk in again.chunks(77) {
        p.store.upsert_bars(chunk).await.unwrap();
    }
    assert_eq!(p.bars_snapshot().await, before);

    let mut expected = bars.clone();
    expected.sort_by_key(|b| (b.bucket_start, b.venue));
    assert_eq!(
        p.store
            .query_bars(&all("BTC-USDT", Interval::M1))
            .await
            .unwrap(),
        expected
    );
    let syms = p.store.symbols().await.unwrap();
    assert_eq!(syms.len(), 2);
    assert_eq!(syms[0].first_bucket, DAY0);
    assert_eq!(syms[0].bars_1m, (bars.len() / 2) as u64);
    p.drop().await;
}

#[tokio::test]
async fn a_revision_replaces_a_bar_and_an_older_one_does_not() {
    let Some(p) = migrated("revision").await else {
        return;
    };
    let base = walk_1m(Venue::Binance, "ETH-USDT", DAY0, 3, 3);
    p.store.upsert_bars(&base).await.unwrap();

    let mut rev1 = base[1].clone();
    rev1.revision = 1;
    rev1.close += 1.0;
    rev1.high = rev1.high.max(rev1.close);
    rev1.volume += 2.0;
    rev1.trade_count += 3;
    p.store.upsert_bars(&[rev1.clone()]).await.unwrap();
    let got = p
        .store
        .query_bars(&all("ETH-USDT", Interval::M1))
        .await
        .unwrap();
    assert_eq!(got, [base[0].clone(), rev1.clone(), base[2].clone()]);

    // a replayed older revision, alone or in the same batch, never wins
    p.store.upsert_bars(&[base[1].clone()]).await.unwrap();
    p.store
        .upsert_bars(&[rev1.clone(), base[1].clone()])
        .await
        .unwrap();
    let got = p
        .store
        .query_bars(&all("ETH-USDT", Interval::M1))
        .await
        .unwrap();
    assert_eq!(got[1], rev1);

    // a newer revision still does
    let mut rev2 = rev1.clone();
    rev2.revision = 2;
    rev2.low -= 1.0;
    p.store
        .upsert_bars(&[rev2.clone(), base[1].clone()])
        .await
        .unwrap();
    let got = p
        .store
        .query_bars(&all("ETH-USDT", Interval::M1))
        .await
        .unwrap();
    assert_eq!(got[1], rev2);
    assert_eq!(p.count("bars").await, 3);
    p.drop().await;
}

#[tokio::test]
async fn stored_rollups_equal_bars_aggregated_directly_from_1m() {
    let Some(p) = migrated("rollups").await else {
        return;
    };
    // two days and a bit, starting mid-day so day boundaries fall inside
    let start = DAY0 - 7 * 60 * MIN + 3 * MIN;
    let mut m1 = walk_1m(Venue::Binance, "BTC-USDT", start, 3000, 11);
    m1.extend(walk_1m(Venue::Binance, "SOL-USDT", start, 3000, 12));
    m1.extend(walk_1m(Venue::Kraken, "BTC-USDT", start, 1000, 13));
    p.store.upsert_bars(&m1).await.unwrap();
    let targets = [Interval::M5, Interval::M15, Interval::H1, Interval::D1];
    for target in targets {
        p.store
            .upsert_bars(&pricestream_analytics::rollup(&m1, target))
            .await
            .unwrap();
    }

    let direct_sql = "
        SELECT symbol, venue, (extract(epoch FROM b) * 1000000)::int8 * 1000 AS bucket,
               (array_agg(open ORDER BY bucket_start))[1] AS open,
               max(high) AS high, min(low) AS low,
               (array_agg(close ORDER BY bucket_start DESC))[1] AS close,
               sum(volume) AS volume, sum(notional) AS notional,
               sum(trade_count)::int8 AS trades, max(ts_event) AS ts_event
        FROM (SELECT *, date_bin($1::interval, bucket_start, timestamptz '1970-01-01 00:00:00+00') AS b
              FROM bars WHERE interval = '1m') m
        GROUP BY symbol, venue, b
        ORDER BY symbol, b, venue";
    for (target, pg_interval) in targets
        .iter()
        .zip(["5 minutes", "15 minutes", "1 hour", "1 day"])
    {
        let direct = sqlx::query(direct_sql)
            .bind(pg_interval)
            .fetch_all(p.store.pool())
            .await
            .unwrap();
        let mut stored = p.store.query_bars(&all("BTC-USDT", *target)).await.unwrap();
        stored.extend(p.store.query_bars(&all("SOL-USDT", *target)).await.unwrap());
        assert_eq!(stored.len(), direct.len(), "{target}");
        assert!(!stored.is_empty());
        for (s, d) in stored.iter().zip(&direct) {
            let ctx = format!("{target} {} {}", s.symbol, s.bucket_start);
            assert_eq!(s.symbol.as_str(), d.get::<&str, _>("symbol"), "{ctx}");
            assert_eq!(s.venue.as_str(), d.get::<&str, _>("venue"), "{ctx}");
            assert_eq!(s.bucket_start, d.get::<i64, _>("bucket"), "{ctx}");
            assert_eq!(s.open, d.get::<f64, _>("open"), "{ctx}");
            assert_eq!(s.high, d.get::<f64, _>("high"), "{ctx}");
            assert_eq!(s.low, d.get::<f64, _>("low"), "{ctx}");
            assert_eq!(s.close, d.get::<f64, _>("close"), "{ctx}");
            assert_eq!(s.trade_count, d.get::<i64, _>("trades") as u64, "{ctx}");
            assert_eq!(s.ts_event, d.get::<i64, _>("ts_event"), "{ctx}");
            let (v, n) = (d.get::<f64, _>("volume"), d.get::<f64, _>("notional"));
            assert!(
                (s.volume - v).abs() <= 1e-9 * v,
                "{ctx}: {} vs {v}",
                s.volume
            );
            assert!(
                (s.notional - n).abs() <= 1e-9 * n,
                "{ctx}: {} vs {n}",
                s.notional
            );
        }
    }
    p.drop().await;
}

#[tokio::test]
async fn range_queries_include_from_and_exclude_to() {
    let Some(p) = migrated("range").await else {
        return;
    };
    let bars: Vec<Bar> = walk_1m(Venue::Binance, "XRP-USDT", DAY0, 20, 5)
        .into_iter()
        .chain(walk_1m(Venue::Coinbase, "XRP-USDT", DAY0, 20, 6))
        .collect();
    p.store.upsert_bars(&bars).await.unwrap();
    let q = |from: i64, to: i64, venue: Option<Venue>, limit: u32, tail: bool| BarQuery {
        venue,
        symbol: sym("XRP-USDT"),
        interval: Interval::M1,
        from,
        to,
        limit,
        tail,
    };
    let starts = |bars: Vec<Bar>| -> Vec<i64> {
        bars.iter().map(|b| (b.bucket_start - DAY0) / MIN).collect()
    };

    let got = p
        .store
        .query_bars(&q(
            DAY0 + 2 * MIN,
            DAY0 + 5 * MIN,
            Some(Venue::Binance),
            100,
            false,
        ))
        .await
        .unwrap();
    assert_eq!(starts(got), [2, 3, 4]);
    // one nanosecond either side moves the edges
    let got = p
        .store
        .query_bars(&q(
            DAY0 + 2 * MIN + 1,
            DAY0 + 5 * MIN + 1,
            Some(Venue::Binance),
            100,
            false,
        ))
        .await
        .unwrap();
    assert_eq!(starts(got), [3, 4, 5]);
    // both venues, interleaved by time then venue
    let got = p
        .store
        .query_bars(&q(DAY0 + 2 * MIN, DAY0 + 4 * MIN, None, 100, false))
        .await
        .unwrap();
    assert_eq!(
        got.iter()
            .map(|b| ((b.bucket_start - DAY0) / MIN, b.venue))
            .collect::<Vec<_>>(),
        [
            (2, Venue::Binance),
            (2, Venue::Coinbase),
            (3, Venue::Binance),
            (3, Venue::Coinbase)
        ]
    );
    // limit takes the first rows, tail the last ones, both ascending
    let got = p
        .store
        .query_bars(&q(DAY0, DAY0 + 20 * MIN, Some(Venue::Coinbase), 3, false))
        .await
        .unwrap();
    assert_eq!(starts(got), [0, 1, 2]);
    let got = p
        .store
        .query_bars(&q(DAY0, DAY0 + 20 * MIN, Some(Venue::Coinbase), 3, true))
        .await
        .unwrap();
    assert_eq!(starts(got), [17, 18, 19]);
    // empty and other-interval ranges
    assert!(p
        .store
        .query_bars(&q(DAY0 + 5 * MIN, DAY0 + 5 * MIN, None, 100, false))
        .await
        .unwrap()
        .is_empty());
    assert!(p
        .store
        .query_bars(&all("XRP-USDT", Interval::M5))
        .await
        .unwrap()
        .is_empty());
    p.drop().await;
}

#[tokio::test]
async fn ingestion_runs_go_from_running_to_completed_or_failed() {
    let Some(p) = migrated("runs").await else {
        return;
    };
    let mut a = IngestionRun {
        id: "run-a".into(),
        connector: "binance".into(),
        status: RunStatus::Running,
        started_at: DAY0 + 1,
        finished_at: None,
        quotes: 0,
        error: None,
    };
    let mut b = IngestionRun {
        id: "run-b".into(),
        connector: "coingecko".into(),
        started_at: DAY0 + 2,
        ..a.clone()
    };
    p.store.upsert_run(&a).await.unwrap();
    p.store.upsert_run(&b).await.unwrap();
    let filter = RunFilter {
        limit: 10,
        ..RunFilter::default()
    };
    assert_eq!(
        p.store.list_runs(&filter).await.unwrap(),
        [b.clone(), a.clone()]
    );

    a.status = RunStatus::Completed;
    a.finished_at = Some(DAY0 + 5_000_000_001);
    a.quotes = 12_345;
    p.store.upsert_run(&a).await.unwrap();
    b.status = RunStatus::Failed;
    b.finished_at = Some(DAY0 + 7);
    b.quotes = 3;
    b.error = Some("HTTP 429: rate limited; gave up after 5 retries".into());
    p.store.upsert_run(&b).await.unwrap();

    assert_eq!(
        p.store.list_runs(&filter).await.unwrap(),
        [b.clone(), a.clone()]
    );
    let failed = RunFilter {
        status: Some(RunStatus::Failed),
        limit: 10,
        ..RunFilter::default()
    };
    assert_eq!(p.store.list_runs(&failed).await.unwrap(), [b.clone()]);
    let binance = RunFilter {
        connector: Some("binance".into()),
        limit: 10,
        ..RunFilter::default()
    };
    assert_eq!(p.store.list_runs(&binance).await.unwrap(), [a.clone()]);
    let one = RunFilter {
        limit: 1,
        ..RunFilter::default()
    };
    assert_eq!(p.store.list_runs(&one).await.unwrap(), [b]);
    p.drop().await;
}

#[tokio::test]
async fn quotes_are_idempotent_and_latest_is_per_symbol() {
    let Some(p) = migrated("quotes").await else {
        return;
    };
    let t = DAY0 + 123_456_789; // not a whole microsecond
    let batch = vec![
        quote(
            Venue::Binance,
            "BTC-USDT",
            t + 2_000,
            101.0,
            Some(u64::MAX - 1),
        ),
        quote(Venue::Binance, "BTC-USDT", t, 100.0, Some(7)),
        quote(Venue::Binance, "BTC-USDT", t + 1_000, 100.5, Some(8)),
        quote(Venue::Binance, "ETH-USDT", t, 3000.0, None),
        quote(Venue::Coingecko, "BTC-USDT", t + 5_000, 99.0, None),
    ];
    p.store.insert_quotes(&batch).await.unwrap();
    // a replay, with a duplicate inside the batch, stores nothing new
    let mut replay = batch.clone();
    replay.push(batch[3].clone());
    p.store.insert_quotes(&replay).await.unwrap();
    assert_eq!(p.count("quotes").await, 5);

    let latest = p.store.latest_quotes(None).await.unwrap();
    assert_eq!(
        latest,
        [batch[0].clone(), batch[3].clone(), batch[4].clone()]
    );
    let latest = p.store.latest_quotes(Some(Venue::Coingecko)).await.unwrap();
    assert_eq!(latest, [batch[4].clone()]);

    // an older quote arriving later is stored but is not the latest
    let old = quote(Venue::Binance, "BTC-USDT", t - 1, 90.0, Some(6));
    p.store.insert_quotes(&[old]).await.unwrap();
    assert_eq!(p.count("quotes").await, 6);
    assert_eq!(
        p.store.latest_quotes(Some(Venue::Binance)).await.unwrap()[0],
        batch[0]
    );
    // a newer one is
    let new = quote(Venue::Binance, "BTC-USDT", t + 10_000, 102.0, Some(9));
    p.store
        .insert_quotes(std::slice::from_ref(&new))
        .await
        .unwrap();
    assert_eq!(
        p.store.latest_quotes(Some(Venue::Binance)).await.unwrap()[0],
        new
    );

    // the time column is the event time truncated to microseconds; the exact value is kept
    let (ts, ns): (i64, i64) = sqlx::query_as(
        "SELECT (extract(epoch FROM ts_event) * 1000000)::int8, ts_event_ns FROM quotes WHERE trade_id = 7",
    )
    .fetch_one(p.store.pool())
    .await
    .unwrap();
    assert_eq!((ts, ns), (t / 1000, t));
    p.drop().await;
}

/// Every row of `quotes` as (venue, symbol, kind, price, size, side, trade_id, bid, ask,
/// ts_event µs, ts_event_ns, ts_ingest), in time order.
type QuoteRow = (
    String,
    String,
    String,
    f64,
    f64,
    Option<String>,
    Option<i64>,
    Option<f64>,
    Option<f64>,
    i64,
    i64,
    i64,
);

async fn quote_rows(p: &Pg) -> Vec<QuoteRow> {
    sqlx::query_as(
        "SELECT venue, symbol, kind, price, size, side, trade_id, bid, ask,
                (extract(epoch FROM ts_event) * 1000000)::int8, ts_event_ns, ts_ingest
         FROM quotes ORDER BY ts_event_ns, venue, symbol",
    )
    .fetch_all(p.store.pool())
    .await
    .unwrap()
}

fn quote_row(q: &pricestream_schemas::Quote) -> QuoteRow {
    (
        q.venue.as_str().to_owned(),
        q.symbol.as_str().to_owned(),
        if q.trade_id.is_some() {
            "trade"
        } else {
            "ticker"
        }
        .to_owned(),
        q.price,
        q.size,
        q.side.map(|s| format!("{s:?}").to_lowercase()),
        q.trade_id.map(|id| id as i64),
        q.bid,
        q.ask,
        q.ts_event.div_euclid(1000),
        q.ts_event,
        q.ts_ingest,
    )
}

#[tokio::test]
async fn bulk_quotes_store_every_column_exactly_once_across_overlapping_batches() {
    // by COPY, and by INSERT for servers without COPY
    for copy_quotes in [true, false] {
        let opts = StoreOptions {
            copy_quotes,
            ..StoreOptions::default()
        };
        let Some(p) = pg_with(&format!("bulkquotes_{copy_quotes}"), &opts).await else {
            return;
        };
        p.store.migrate().await.unwrap();
        bulk_writes(p).await;
    }
}

async fn bulk_writes(p: Pg) {
    // 30,000 quotes: trades and tickers, NULL side/bid/ask/trade id, ids above 2^63,
    // event times before 1970 and not on whole microseconds
    let stream: Vec<_> = (0..30_000i64)
        .map(|i| {
            let ts = DAY0 - 40 * 365 * 86_400_000_000_000 + i * 1_000_333 + 7;
            let id = (i % 3 != 0).then_some(if i % 5 == 0 {
                u64::MAX - i as u64
            } else {
                i as u64
            });
            quote(
                if i % 2 == 0 {
                    Venue::Binance
                } else {
                    Venue::Coinbase
                },
                ["BTC-USDT", "ETH-USDT", "SOL-USD"][(i % 3) as usize],
                ts,
                100.0 + (i as f64) / 7.0,
                id,
            )
        })
        .collect();
    p.store.insert_quotes(&stream[..15_000]).await.unwrap();
    assert_eq!(p.count("quotes").await, 15_000);
    // a batch whose first 10,000-row chunk is new and whose next chunks were stored before
    let mut overlap = stream[15_000..25_000].to_vec();
    overlap.extend_from_slice(&stream[..15_000]);
    p.store.insert_quotes(&overlap).await.unwrap();
    assert_eq!(p.count("quotes").await, 25_000);
    // the next batches, after a conflict: new rows with one duplicate among them
    let mut tail = stream[25_000..].to_vec();
    tail.insert(1_000, stream[17].clone());
    p.store.insert_quotes(&tail).await.unwrap();
    assert_eq!(p.count("quotes").await, 30_000);
    let mut expected: Vec<QuoteRow> = stream.iter().map(quote_row).collect();
    expected.sort_by(|a, b| (a.10, &a.0, &a.1).cmp(&(b.10, &b.0, &b.1)));
    assert_eq!(quote_rows(&p).await, expected);

    // bars: a batch whose second chunk conflicts, and revisions within a batch of new rows
    let bars = walk_1m(Venue::Binance, "BTC-USDT", DAY0, 12_000, 3);
    p.store.upsert_bars(&bars[..5_000]).await.unwrap();
    let mut mixed = bars[5_000..].to_vec();
    mixed.extend(bars[..5_000].iter().cloned());
    mixed.push(Bar {
        revision: 1,
        close: bars[3].close + 1.0,
        ..bars[3].clone()
    });
    p.store.upsert_bars(&mixed).await.unwrap();
    let mut expected = bars.clone();
    expected[3].revision = 1;
    expected[3].close += 1.0;
    assert_eq!(
        p.store
            .query_bars(&all("BTC-USDT", Interval::M1))
            .await
            .unwrap(),
        expected
    );
    p.drop().await;
}

#[tokio::test]
async fn signals_upsert_by_key_and_query_by_filters_and_range() {
    let Some(p) = migrated("signals").await else {
        return;
    };
    let h = Interval::H1.nanos();
    let s = vec![
        signal("BTC-USDT", Interval::H1, SignalKind::GoldenCross, DAY0, 1.5),
        signal(
            "BTC-USDT",
            Interval::H1,
            SignalKind::RsiOverbought,
            DAY0 + h,
            71.0,
        ),
        signal(
            "ETH-USDT",
            Interval::H1,
            SignalKind::MeanReversionLow,
            DAY0 + h,
            -2.1,
        ),
        signal(
            "BTC-USDT",
            Interval::M5,
            SignalKind::DeathCross,
            DAY0 + 2 * h,
            -0.3,
        ),
    ];
    p.store.upsert_signals(&s).await.unwrap();
    p.store.upsert_signals(&s).await.unwrap();
    assert_eq!(p.count("signals").await, 4);

    let q = SignalQuery {
        symbol: None,
        interval: None,
        kind: None,
        from: DAY0,
        to: DAY0 + 3 * h,
        limit: 100,
    };
    assert_eq!(p.store.query_signals(&q).await.unwrap(), s);
    let btc = SignalQuery {
        symbol: Some(sym("BTC-USDT")),
        ..q.clone()
    };
    assert_eq!(
        p.store.query_signals(&btc).await.unwrap(),
        [s[0].clone(), s[1].clone(), s[3].clone()]
    );
    let hourly_rsi = SignalQuery {
        interval: Some(Interval::H1),
        kind: Some(SignalKind::RsiOverbought),
        ..q.clone()
    };
    assert_eq!(
        p.store.query_signals(&hourly_rsi).await.unwrap(),
        [s[1].clone()]
    );
    // from inclusive, to exclusive
    let window = SignalQuery {
        from: DAY0 + h,
        to: DAY0 + 2 * h,
        ..q.clone()
    };
    assert_eq!(
        p.store.query_signals(&window).await.unwrap(),
        [s[1].clone(), s[2].clone()]
    );
    let limited = SignalQuery {
        limit: 1,
        ..q.clone()
    };
    assert_eq!(
        p.store.query_signals(&limited).await.unwrap(),
        [s[0].clone()]
    );

    // a recomputed signal replaces the stored one
    let mut again = s[2].clone();
    again.value = -2.5;
    p.store.upsert_signals(&[again.clone()]).await.unwrap();
    assert_eq!(p.store.query_signals(&window).await.unwrap()[1], again);
    p.drop().await;
}

#[tokio::test]
async fn dead_letters_are_counted_by_reason() {
    let Some(p) = migrated("dead").await else {
        return;
    };
    let letter = |reason: &str, offset: u64| DeadLetter {
        topic: "quotes.v1".into(),
        reason: reason.into(),
        error: "something".into(),
        payload: vec![0, 159, 146, 150, b'{'],
        partition: 3,
        offset,
        ts_ingest: DAY0 + offset as i64,
    };
    p.store
        .insert_dead_letters(&[letter("late", 1), letter("late", 2), letter("malformed", 3)])
        .await
        .unwrap();
    assert_eq!(
        p.store.dead_letter_counts().await.unwrap(),
        [("late".to_string(), 2), ("malformed".to_string(), 1)]
    );
    let payload: Vec<u8> =
        sqlx::query_scalar("SELECT payload FROM dead_letters WHERE \"offset\" = 3")
            .fetch_one(p.store.pool())
            .await
            .unwrap();
    assert_eq!(payload, [0, 159, 146, 150, b'{']);
    p.drop().await;
}

#[tokio::test]
async fn open_dispatches_postgres_urls_and_sets_the_statement_timeout() {
    let Some(p) = pg("open").await else { return };
    let url = std::env::var("PRICESTREAM_TEST_PG_URL").unwrap();
    let opts = StoreOptions {
        statement_timeout_ms: 1234,
        ..StoreOptions::default()
    };
    let store = PgStore::open(&url, &opts).await.unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(timeout, "1234ms");
    // a statement over the limit fails, and is not retryable as a connection problem
    let slow = sqlx::query("SELECT pg_sleep(2)")
        .execute(store.pool())
        .await;
    let err = StoreError::from(slow.unwrap_err());
    assert!(err.to_string().contains("statement timeout"), "{err}");

    let dyn_store =
        pricestream_store::open_with(&url.replacen("postgres://", "postgresql://", 1), &opts)
            .await
            .unwrap();
    dyn_store.ping().await.unwrap();
    p.drop().await;
}

#[tokio::test]
async fn api_keys_are_found_by_hash_and_revoked_once() {
    let Some(p) = migrated("apikeys").await else {
        return;
    };
    let key = pricestream_store::ApiKeyRecord {
        id: "abc123".into(),
        name: "notebook".into(),
        secret_hash: "f00d".into(),
        scopes: "read alerts:write".into(),
        tier: "basic".into(),
        created_at: DAY0,
        revoked_at: None,
    };
    p.store.create_api_key(&key).await.unwrap();
    assert!(
        p.store.create_api_key(&key).await.is_err(),
        "duplicate id accepted"
    );
    assert_eq!(
        p.store.find_api_key("f00d").await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(p.store.find_api_key("beef").await.unwrap(), None);
    assert!(p.store.revoke_api_key("abc123", DAY0 + 1).await.unwrap());
    assert!(!p.store.revoke_api_key("abc123", DAY0 + 2).await.unwrap());
    let listed = p.store.list_api_keys().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(DAY0 + 1));
    p.drop().await;
}

#[tokio::test]
async fn alert_rules_contract() {
    let Some(p) = migrated("alert_rules").await else {
        return;
    };
    common::alerts::rules_contract(&p.store).await;
    p.drop().await;
}

#[tokio::test]
async fn alert_deliveries_contract() {
    let Some(p) = migrated("alert_deliveries").await else {
        return;
    };
    common::alerts::deliveries_contract(&p.store).await;
    p.drop().await;
}
