//! The SQLite store's quotes, signals and schema versions: the same behaviour the
//! PostgreSQL tests check, on the embedded store.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pricestream_schemas::{Interval, SignalKind, Venue};
use pricestream_store::sqlite::SqliteStore;
use pricestream_store::{SignalQuery, Store};

async fn store(dir: &tempfile::TempDir) -> SqliteStore {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let s = SqliteStore::open(&url, 2).await.unwrap();
    s.migrate().await.unwrap();
    s.check_schema().await.unwrap();
    s
}

#[test]
fn sqlite_and_postgres_migrations_are_in_step() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let versions = |sub: &str| {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(versions("sqlite"), versions("postgres"));
}

#[tokio::test]
async fn quotes_are_idempotent_and_latest_is_per_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let t = DAY0 + 123_456_789;
    let batch = vec![
        quote(
            Venue::Binance,
            "BTC-USDT",
            t + 2_000,
            101.0,
            Some(u64::MAX - 1),
        ),
        quote(Venue::Binance, "BTC-USDT", t, 100.0, Some(7)),
        quote(Venue::Binance, "ETH-USDT", t, 3000.0, None),
        quote(Venue::Coingecko, "BTC-USDT", t + 5_000, 99.0, None),
    ];
    s.insert_quotes(&batch).await.unwrap();
    let mut replay = batch.clone();
    replay.push(batch[2].clone());
    s.insert_quotes(&replay).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quotes")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        s.latest_quotes(None).await.unwrap(),
        [batch[0].clone(), batch[2].clone(), batch[3].clone()]
    );
    s.insert_quotes(&[quote(Venue::Binance, "BTC-USDT", t - 1, 90.0, Some(6))])
        .await
        .unwrap();
    assert_eq!(
        s.latest_quotes(Some(Venue::Binance)).await.unwrap()[0],
        batch[0]
    );
}

#[tokio::test]
async fn signals_upsert_by_key_and_query_by_filters_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let h = Interval::H1.nanos();
    let sig = vec![
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
    ];
    s.upsert_signals(&sig).await.unwrap();
    s.upsert_signals(&sig).await.unwrap();
    let q = SignalQuery {
        symbol: None,
        interval: None,
        kind: None,
        from: DAY0,
        to: DAY0 + 3 * h,
        limit: 100,
    };
    assert_eq!(s.query_signals(&q).await.unwrap(), sig);
    let window = SignalQuery {
        from: DAY0 + h,
        to: DAY0 + 2 * h,
        symbol: Some(sym("ETH-USDT")),
        ..q.clone()
    };
    assert_eq!(s.query_signals(&window).await.unwrap(), [sig[2].clone()]);
    let kind = SignalQuery {
        kind: Some(SignalKind::GoldenCross),
        ..q.clone()
    };
    assert_eq!(s.query_signals(&kind).await.unwrap(), [sig[0].clone()]);
    let mut again = sig[2].clone();
    again.value = -3.0;
    s.upsert_signals(&[again.clone()]).await.unwrap();
    assert_eq!(s.query_signals(&window).await.unwrap(), [again]);
}

#[tokio::test]
async fn alert_rules_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    common::alerts::rules_contract(&s).await;
}

#[tokio::test]
async fn alert_deliveries_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    common::alerts::deliveries_contract(&s).await;
}

/// Batches larger than one statement (several chunk sizes, duplicates across chunk
/// boundaries, revisions of a bar later in the same batch) end as row-by-row writes would.
#[tokio::test]
async fn large_batches_write_like_row_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    // 1,000 quotes of 3 symbols; every 100th repeats the previous quote (same trade id)
    let mut quotes = Vec::new();
    for i in 0..1_000i64 {
        let symbol = ["BTC-USDT", "ETH-USDT", "SOL-USDT"][(i % 3) as usize];
        if i % 100 == 99 {
            let prev: pricestream_schemas::Quote = quotes.last().cloned().unwrap();
            quotes.push(prev);
        } else {
            quotes.push(quote(
                Venue::Binance,
                symbol,
                DAY0 + i * 1_000,
                100.0 + i as f64,
                Some(i as u64),
            ));
        }
    }
    s.insert_quotes(&quotes).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quotes")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(n, 990);
    let latest = s.latest_quotes(None).await.unwrap();
    assert_eq!(latest.len(), 3);
    // the newest quote of each symbol, whichever chunk it was in
    for l in &latest {
        let newest = quotes
            .iter()
            .filter(|q| q.symbol == l.symbol)
            .max_by_key(|q| q.ts_event)
            .unwrap();
        assert_eq!(l, newest);
    }

    // about 600 bars, then revision 1 of bar 10 and a stale revision 0 of it, in one batch
    let mut bars = walk_1m(Venue::Binance, "BTC-USDT", DAY0, 600, 7);
    let n_bars = bars.len();
    assert!(n_bars > 512);
    let last = bars[n_bars - 1].clone();
    let mut revised = bars[10].clone();
    revised.revision = 1;
    revised.close += 1.0;
    let stale = bars[10].clone();
    bars.push(revised.clone());
    bars.push(stale);
    s.upsert_bars(&bars).await.unwrap();
    let stored = s
        .query_bars(&pricestream_store::BarQuery {
            venue: None,
            symbol: sym("BTC-USDT"),
            interval: Interval::M1,
            from: DAY0,
            to: DAY0 + 600 * MIN,
            limit: 1_000,
            tail: false,
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), n_bars);
    assert_eq!(stored[10], revised);
    assert_eq!(stored[n_bars - 1], last);
}

/// Runs the embedded store's migrations up to and including `version` on `url`.
async fn migrate_to(url: &str, version: i64) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    migrator.migrations = std::borrow::Cow::Owned(
        migrator
            .migrations
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect(),
    );
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    migrator.run(&pool).await.unwrap();
    pool.close().await;
}

/// The query plan's lines of `sql` (bound with placeholder values).
async fn plan(s: &SqliteStore, sql: &str, binds: usize) -> String {
    let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(Box::leak(
        format!("EXPLAIN QUERY PLAN {sql}").into_boxed_str(),
    ));
    for _ in 0..binds {
        q = q.bind("x");
    }
    q.fetch_all(s.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.3)
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn the_append_friendly_keys_keep_rows_and_serve_history_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    // a store made by the previous version, with a bar and a quote in it
    migrate_to(&url, 20261121000008).await;
    {
        let s = SqliteStore::open(&url, 1).await.unwrap();
        let bars = walk_1m(Venue::Binance, "BTC-USDT", DAY0, 3, 1);
        s.upsert_bars(&bars).await.unwrap();
        s.insert_quotes(&[quote(Venue::Binance, "BTC-USDT", DAY0, 100.0, Some(7))])
            .await
            .unwrap();
    }
    let s = store(&dir).await;
    let q = |venue| pricestream_store::BarQuery {
        venue,
        symbol: sym("BTC-USDT"),
        interval: Interval::M1,
        from: DAY0,
        to: DAY0 + 3 * 60_000_000_000,
        limit: 100,
        tail: false,
    };
    let kept = s.query_bars(&q(None)).await.unwrap();
    assert_eq!(kept, walk_1m(Venue::Binance, "BTC-USDT", DAY0, 3, 1));
    // the natural keys still decide: a lower revision loses, an equal one replaces, a
    // replayed quote is kept once
    let mut older = kept[1].clone();
    older.close += 1.0;
    older.revision = kept[1].revision.saturating_sub(1);
    let mut newer = kept[2].clone();
    newer.close += 2.0;
    newer.revision += 1;
    if kept[1].revision > 0 {
        s.upsert_bars(&[older]).await.unwrap();
    }
    s.upsert_bars(&[newer.clone()]).await.unwrap();
    let after = s.query_bars(&q(Some(Venue::Binance))).await.unwrap();
    assert_eq!(after, vec![kept[0].clone(), kept[1].clone(), newer]);
    s.insert_quotes(&[quote(Venue::Binance, "BTC-USDT", DAY0, 100.0, Some(7))])
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quotes")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);
    // one index on bars, and the history read uses it for both orders
    let indexes: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_index_list('bars')")
        .fetch_all(s.pool())
        .await
        .unwrap();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    for order in ["bucket_start, venue", "bucket_start DESC, venue DESC"] {
        let p = plan(
            &s,
            &format!(
                "SELECT * FROM bars WHERE symbol = ? AND interval = ? AND bucket_start >= ?
                 AND bucket_start < ? AND (? IS NULL OR venue = ?) ORDER BY {order} LIMIT 10"
            ),
            6,
        )
        .await;
        assert!(p.contains(&format!("USING INDEX {}", indexes[0].0)), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }
}

#[tokio::test]
async fn the_wal_reaches_the_database_file_without_automatic_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let db = dir.path().join("t.db");
    let before = std::fs::metadata(&db).unwrap().len();
    let mut bars = Vec::new();
    for i in 0..200 {
        bars.extend(walk_1m(
            Venue::Binance,
            &format!("S{i:03}-USDT"),
            DAY0,
            10,
            i,
        ));
    }
    s.upsert_bars(&bars).await.unwrap();
    // Commits no longer copy WAL pages into the database file (the automatic checkpoint
    // is off); the checkpointer does, without another write.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&db).unwrap().len();
        if now > before + 100_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {now} bytes ({before} before the write)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
