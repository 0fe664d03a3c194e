//! Binance REST against the fake exchange: paging, fault handling, rate limits, the
//! circuit breaker, backfill jobs.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_connectors::backfill;
use pricestream_connectors::binance::{BinanceConfig, BinanceRest};
use pricestream_connectors::candles::{CandleRollups, CandleSource};
use pricestream_connectors::http::{BreakerState, HttpConfig};
use pricestream_connectors::ErrorKind;
use pricestream_schemas::{Clock, Interval, Symbol, NANOS_PER_MILLI};
use pricestream_store::BackfillState;
use support::{FakeExchange, Fault, TestClock, JAN1_2020_MS};

const MIN_MS: i64 = 60_000;

fn http(max_retries: u32) -> HttpConfig {
    HttpConfig {
        timeout_ms: 300,
        connect_timeout_ms: 300,
        weight_per_window: 1_000,
        window_ms: 1_000,
        max_retries,
        retry_initial_delay_ms: 10,
        retry_max_delay_ms: 50,
        breaker_failure_threshold: 3,
        breaker_open_ms: 300,
    }
}

fn rest(fx: &FakeExchange, http: HttpConfig, clock: Arc<dyn Clock>) -> BinanceRest {
    let cfg = BinanceConfig {
        rest_url: fx.rest_url(),
        http,
        ..BinanceConfig::default()
    };
    cfg.rest(clock).unwrap()
}

fn btc() -> Symbol {
    Symbol::new("BTC-USDT").unwrap()
}

fn ns(ms: i64) -> i64 {
    ms * NANOS_PER_MILLI
}

fn later() -> Arc<dyn Clock> {
    TestClock::at_ms(JAN1_2020_MS + 10 * 86_400_000)
}

#[tokio::test]
async fn paging_covers_a_multi_day_range_exactly_once() {
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let client = rest(&fx, http(0), later());
    let rows = support::btcusdt_2020_rows();
    let (from, to) = (ns(JAN1_2020_MS), ns(JAN1_2020_MS + 3 * 86_400_000));
    let candles = client
        .candles(&btc(), Interval::M1, from, to)
        .await
        .unwrap();
    assert_eq!(candles.len(), 4_320);
    // 1,000 per call: 5 calls
    assert_eq!(fx.requests(), 5);
    let served = fx.lock().counters.served.clone();
    assert_eq!(served.len(), 4_320);
    assert!(
        served.values().all(|n| *n == 1),
        "a candle was fetched twice"
    );
    for (c, r) in candles.iter().zip(&rows) {
        assert_eq!(c.open_time, ns(r.open_time_ms));
        assert_eq!(
            (c.open, c.high, c.low, c.close, c.volume),
            (r.open(), r.high(), r.low(), r.close(), r.volume())
        );
        assert!(c.closed);
    }
    assert!(candles
        .windows(2)
        .all(|w| w[1].open_time - w[0].open_time == ns(MIN_MS)));

    // unaligned ends: the buckets that start inside [from, to)
    let from = ns(JAN1_2020_MS + 86_400_000 - 30_000);
    let to = ns(JAN1_2020_MS + 2 * 86_400_000 + 12 * 3_600_000 + 34 * MIN_MS + 56_000);
    let part = client
        .candles(&btc(), Interval::M1, from, to)
        .await
        .unwrap();
    assert_eq!(
        part.first().unwrap().open_time,
        ns(JAN1_2020_MS + 86_400_000)
    );
    assert_eq!(
        part.last().unwrap().open_time,
        ns(JAN1_2020_MS + 2 * 86_400_000 + 12 * 3_600_000 + 34 * MIN_MS)
    );
    assert_eq!(part.len(), 1_440 + 12 * 60 + 35);
}

#[tokio::test]
async fn every_fault_is_an_error_of_its_kind_and_never_data() {
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let mut cfg = http(0);
    cfg.breaker_failure_threshold = 100;
    let client = rest(&fx, cfg, later());
    let (from, to) = (ns(JAN1_2020_MS), ns(JAN1_2020_MS + 10 * MIN_MS));
    let cases = [
        (Fault::Html, ErrorKind::Html),
        (Fault::Truncated, ErrorKind::Truncated),
        (Fault::ServerError, ErrorKind::Server),
        (Fault::Slow(Duration::from_millis(800)), ErrorKind::Timeout),
        (
            Fault::TooManyRequests {
                retry_after_secs: 0,
            },
            ErrorKind::RateLimited,
        ),
    ];
    for (fault, kind) in cases {
        fx.inject([fault.clone()]);
        let err = client
            .candles(&btc(), Interval::M1, from, to)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Some(kind), "{fault:?}: {err}");
    }
    // a truncated body was sent but never counted as served data
    assert!(fx.lock().counters.served.is_empty());
    // an unknown interval is the client's mistake: not retried
    let err = client
        .candles(&btc(), Interval::M5, from, to)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::Client));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn retries_ride_out_faults_and_honour_retry_after() {
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    // the breaker's own behaviour is tested below; here it stays out of the way
    let mut cfg = http(6);
    cfg.breaker_failure_threshold = 10;
    let client = rest(&fx, cfg, later());
    fx.inject([
        Fault::ServerError,
        Fault::Html,
        Fault::Truncated,
        Fault::Slow(Duration::from_millis(800)),
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    ]);
    let started = Instant::now();
    let (from, to) = (ns(JAN1_2020_MS), ns(JAN1_2020_MS + 10 * MIN_MS));
    let candles = client
        .candles(&btc(), Interval::M1, from, to)
        .await
        .unwrap();
    assert_eq!(candles.len(), 10);
    assert_eq!(fx.requests(), 6);
    // the 429 asked for 1 s
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_ban_keeps_every_request_away_until_it_ends() {
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let mut cfg = http(3);
    cfg.breaker_open_ms = 100;
    let client = rest(&fx, cfg, later());
    fx.inject([Fault::Banned {
        retry_after_secs: 1,
    }]);
    let started = Instant::now();
    let (from, to) = (ns(JAN1_2020_MS), ns(JAN1_2020_MS + 10 * MIN_MS));
    let candles = client
        .candles(&btc(), Interval::M1, from, to)
        .await
        .unwrap();
    assert_eq!(candles.len(), 10);
    assert!(started.elapsed() >= Duration::from_secs(1));
    let c = &fx.lock().counters;
    assert_eq!(c.during_ban, 0, "a request was sent during the ban");
    assert_eq!(c.requests, 2);
}

#[tokio::test]
async fn the_breaker_opens_on_a_5xx_burst_and_recovers() {
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let client = rest(&fx, http(0), later());
    let (from, to) = (ns(JAN1_2020_MS), ns(JAN1_2020_MS + 5 * MIN_MS));
    fx.inject(std::iter::repeat_n(Fault::ServerError, 4));
    for _ in 0..3 {
        let e = client
            .candles(&btc(), Interval::M1, from, to)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), Some(ErrorKind::Server));
    }
    assert_eq!(client.http().breaker().state(), BreakerState::Open);
    // open: calls fail fast and the venue sees nothing
    let before = fx.requests();
    let e = client
        .candles(&btc(), Interval::M1, from, to)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::BreakerOpen));
    assert_eq!(fx.requests(), before);
    // after the cool-down one probe goes through; it fails (the burst is not over): open again
    tokio::time::sleep(Duration::from_millis(350)).await;
    let e = client
        .candles(&btc(), Interval::M1, from, to)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Server));
    assert_eq!(fx.requests(), before + 1);
    assert_eq!(client.http().breaker().state(), BreakerState::Open);
    // the next probe succeeds and closes it
    tokio::time::sleep(Duration::from_millis(350)).await;
    let ok = client
        .candles(&btc(), Interval::M1, from, to)
        .await
        .unwrap();
    assert_eq!(ok.len(), 5);
    assert_eq!(client.http().breaker().state(), BreakerState::Closed);

    // with retries, a caller rides through an open breaker: it waits out the cool-down
    let retrying = rest(&fx, http(10), later());
    fx.inject(std::iter::repeat_n(Fault::ServerError, 3));
    let ok = retrying
        .candles(&btc(), Interval::M1, from, to)
        .await
        .unwrap();
    assert_eq!(ok.len(), 5);
    assert_eq!(retrying.http().breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn the_request_weight_budget_is_never_exceeded() {
    // the venue allows 20 weight per 500 ms window; klines cost 2
    let window = Duration::from_millis(500);
    let fx = FakeExchange::start(20, window).await;
    let mut cfg = http(0);
    cfg.weight_per_window = 20;
    cfg.window_ms = 500;
    let client = Arc::new(rest(&fx, cfg, later()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..4i64 {
        let client = Arc::clone(&client);
        tasks.spawn(async move {
            for i in 0..10i64 {
                let from = ns(JAN1_2020_MS + (t * 10 + i) * MIN_MS);
                client
                    .candles(&btc(), Interval::M1, from, from + ns(MIN_MS))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let elapsed = started.elapsed();
    let c = &fx.lock().counters;
    assert_eq!(c.requests, 40);
    assert_eq!(c.violations, 0, "windows: {:?}", c.window_weight);
    assert!(c.window_weight.values().all(|w| *w <= 20));
    // 80 weight at 20 per 500 ms needs at least ~1.5 s: the limiter really paced it
    assert!(elapsed >= Duration::from_millis(1_400), "{elapsed:?}");
}

#[tokio::test]
async fn the_venues_count_of_used_weight_holds_requests_back() {
    // the venue allows 40 weight per 500 ms window, and other clients behind our address
    // spend 34 of it at the start of every window: by our own limiter's count 10
    // requests of weight 2 could go at once, but only 3 fit what the venue has left
    let window = Duration::from_millis(500);
    let fx = FakeExchange::start(40, window).await;
    fx.lock().others_weight = 34;
    let mut cfg = http(0);
    cfg.weight_per_window = 40;
    cfg.window_ms = 500;
    let client = rest(&fx, cfg, later());
    let started = Instant::now();
    for i in 0..12i64 {
        let from = ns(JAN1_2020_MS + i * MIN_MS);
        client
            .candles(&btc(), Interval::M1, from, from + ns(MIN_MS))
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    let c = &fx.lock().counters;
    assert_eq!(c.requests, 12);
    assert_eq!(c.violations, 0, "windows: {:?}", c.window_weight);
    assert!(c.window_weight.values().all(|w| *w <= 40));
    // 3 requests per window: 12 need at least 3 window ends
    assert!(elapsed >= Duration::from_millis(1_000), "{elapsed:?}");
}

#[tokio::test]
async fn a_backfill_job_reports_progress_and_records_absent_candles() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    // the venue has no candle for two minutes of the range
    for m in [100, 101] {
        fx.lock()
            .omit
            .insert(("BTCUSDT".into(), JAN1_2020_MS + m * MIN_MS));
    }
    let clock = later();
    let client = rest(&fx, http(2), Arc::clone(&clock));
    let (from, to) = (ns(JAN1_2020_MS), ns(JAN1_2020_MS + 2 * 86_400_000));
    // the dataflow had made an hourly bar of the first hour from what it saw (a few
    // trades): the backfill's complete hour replaces it, with the next revision
    let partial = pricestream_schemas::Bar {
        venue: pricestream_schemas::Venue::Binance,
        symbol: btc(),
        interval: Interval::H1,
        bucket_start: from,
        open: 7_000.0,
        high: 7_001.0,
        low: 6_999.0,
        close: 7_000.5,
        volume: 1.0,
        notional: 7_000.0,
        vwap: 7_000.0,
        trade_count: 3,
        revision: 0,
        ts_event: from + 1,
        ts_ingest: from + 2,
    };
    store
        .upsert_bars(std::slice::from_ref(&partial))
        .await
        .unwrap();
    let rollups = CandleRollups::new(
        &[Interval::M5, Interval::H1, Interval::D1],
        Duration::from_secs(60),
    );
    let mut job =
        backfill::new_job(&client, btc(), Interval::M1, from, to, clock.now_ns()).unwrap();
    let mut seen: Vec<f64> = Vec::new();
    let n = backfill::run_job(
        &client,
        &store,
        &clock,
        Some(&rollups),
        &mut job,
        &mut |j| seen.push(j.progress_pct()),
    )
    .await
    .unwrap();
    assert_eq!(n, 2_880 - 2);
    assert!(seen.windows(2).all(|w| w[1] >= w[0]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 100.0);
    assert!(seen.len() >= 4, "progress after every page: {seen:?}");
    let stored = store.backfill(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.state, BackfillState::Completed);
    assert_eq!((stored.candles, stored.absent), (2_878, 2));
    let absent = store
        .absent_candles(
            pricestream_schemas::Venue::Binance,
            &btc(),
            Interval::M1,
            from,
            to,
        )
        .await
        .unwrap();
    assert_eq!(
        absent,
        vec![
            ns(JAN1_2020_MS + 100 * MIN_MS),
            ns(JAN1_2020_MS + 101 * MIN_MS)
        ]
    );
    let bars = store
        .query_bars(&pricestream_store::BarQuery {
            venue: Some(pricestream_schemas::Venue::Binance),
            symbol: btc(),
            interval: Interval::M1,
            from,
            to,
            limit: 10_000,
            tail: false,
        })
        .await
        .unwrap();
    assert_eq!(bars.len(), 2_878);

    // the coarser bars of the backfilled days equal the venue's rows aggregated directly
    let rows: Vec<_> = support::btcusdt_2020_rows()
        .into_iter()
        .filter(|r| r.open_time_ms < JAN1_2020_MS + 2 * 86_400_000)
        .filter(|r| ![100, 101].contains(&((r.open_time_ms - JAN1_2020_MS) / MIN_MS)))
        .collect();
    for (interval, minutes, buckets) in [
        (Interval::M5, 5, 576),
        (Interval::H1, 60, 48),
        (Interval::D1, 1_440, 2),
    ] {
        let got = store
            .query_bars(&pricestream_store::BarQuery {
                venue: Some(pricestream_schemas::Venue::Binance),
                symbol: btc(),
                interval,
                from,
                to,
                limit: 10_000,
                tail: false,
            })
            .await
            .unwrap();
        assert_eq!(got.len(), buckets, "{interval}");
        for b in &got {
            let inside: Vec<_> = rows
                .iter()
                .filter(|r| {
                    let start = ns(r.open_time_ms);
                    start >= b.bucket_start && start < b.bucket_start + ns(minutes * MIN_MS)
                })
                .collect();
            support::assert_aggregates(b, inside);
            let replaced = interval == Interval::H1 && b.bucket_start == from;
            assert_eq!(
                b.revision,
                u32::from(replaced),
                "{interval} {}",
                b.bucket_start
            );
        }
    }

    // a failing venue fails the job, with its error, where it stopped
    fx.inject(std::iter::repeat_n(Fault::ServerError, 10));
    let mut job =
        backfill::new_job(&client, btc(), Interval::M1, from, to, clock.now_ns()).unwrap();
    assert!(
        backfill::run_job(&client, &store, &clock, None, &mut job, &mut |_| {})
            .await
            .is_err()
    );
    let stored = store.backfill(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.state, BackfillState::Failed);
    assert!(stored.error.as_deref().unwrap().contains("server"));
    assert_eq!(stored.progress_pct(), 0.0);
}

#[tokio::test]
async fn queued_backfills_are_run_by_the_worker() {
    use pricestream_connectors::runs::PollJob;
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let clock = later();
    let client: Arc<dyn CandleSource> = Arc::new(rest(&fx, http(2), Arc::clone(&clock)));
    let (from, to) = (ns(JAN1_2020_MS), ns(JAN1_2020_MS + 86_400_000));
    let job = backfill::new_job(
        client.as_ref(),
        btc(),
        Interval::M1,
        from,
        to,
        clock.now_ns(),
    )
    .unwrap();
    store.upsert_backfill(&job).await.unwrap();
    let worker = backfill::BackfillWorker {
        sources: vec![client],
        store: Arc::clone(&store),
        clock,
        poll_interval: Duration::from_secs(1),
        rollups: None,
    };
    assert_eq!(worker.run_once().await.unwrap(), 1_440);
    let done = store.backfill(&job.id).await.unwrap().unwrap();
    assert_eq!(done.state, BackfillState::Completed);
    assert_eq!(done.progress_pct(), 100.0);
    // nothing left to do
    assert_eq!(worker.run_once().await.unwrap(), 0);
}
