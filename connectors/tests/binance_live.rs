//! Binance live streams, the gap healer and the scheduler against the fake exchange:
//! dropped connections, heartbeat timeouts, a 10-minute outage healed over REST, runs
//! recorded with the right statuses.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pricestream_bus::{InProcessBus, QuotePublisher, QuoteSource};
use pricestream_connectors::binance::{BinanceConfig, BinanceLive, StreamKind};
use pricestream_connectors::candles::CandleRollups;
use pricestream_connectors::heal::{HealConfig, Healer};
use pricestream_connectors::http::HttpConfig;
use pricestream_connectors::runs::{run_scheduler, PollJob, RunRecorder, Scheduled};
use pricestream_schemas::{
    Clock, IngestionRun, Interval, RunStatus, Symbol, Venue, NANOS_PER_MILLI,
};
use pricestream_store::{BarQuery, RunFilter, Store};
use support::{FakeExchange, Fault, TestClock, WsStep, JAN1_2020_MS};
use tokio_util::sync::CancellationToken;

const MIN_MS: i64 = 60_000;

fn ns(ms: i64) -> i64 {
    ms * NANOS_PER_MILLI
}

fn btc() -> Symbol {
    Symbol::new("BTC-USDT").unwrap()
}

fn http() -> HttpConfig {
    HttpConfig {
        timeout_ms: 500,
        connect_timeout_ms: 500,
        weight_per_window: 1_000,
        window_ms: 1_000,
        max_retries: 2,
        retry_initial_delay_ms: 10,
        retry_max_delay_ms: 50,
        breaker_failure_threshold: 50,
        breaker_open_ms: 100,
    }
}

fn config(fx: &FakeExchange, symbols: &[(&str, &str)], streams: Vec<StreamKind>) -> BinanceConfig {
    BinanceConfig {
        enabled: true,
        rest_url: fx.rest_url(),
        ws_url: fx.ws_url(),
        symbols: symbols
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<BTreeMap<_, _>>(),
        streams,
        heartbeat_timeout_secs: 1,
        connect_timeout_ms: 1_000,
        reconnect_initial_delay_ms: 20,
        reconnect_max_delay_ms: 100,
        http: http(),
        ..BinanceConfig::default()
    }
}

async fn runs(store: &Arc<dyn Store>, connector: &str) -> Vec<IngestionRun> {
    let mut r = store
        .list_runs(&RunFilter {
            connector: Some(connector.into()),
            limit: 100,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    r.sort_by_key(|r| r.started_at);
    r
}

async fn bars(store: &Arc<dyn Store>, from_ms: i64, to_ms: i64) -> Vec<pricestream_schemas::Bar> {
    bars_of(store, Interval::M1, from_ms, to_ms).await
}

/// BTC-USDT bars of `interval` from Binance starting in `[from_ms, to_ms)`.
async fn bars_of(
    store: &Arc<dyn Store>,
    interval: Interval,
    from_ms: i64,
    to_ms: i64,
) -> Vec<pricestream_schemas::Bar> {
    store
        .query_bars(&BarQuery {
            venue: Some(Venue::Binance),
            symbol: btc(),
            interval,
            from: ns(from_ms),
            to: ns(to_ms),
            limit: 10_000,
            tail: false,
        })
        .await
        .unwrap()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn recorded_trades_survive_a_dropped_connection_and_a_silent_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let msgs =
        support::recorded_ws_messages("binance/ws/binance_usdm_futures_aggTrade_2021-07-22.ndjson");
    assert_eq!(msgs.len(), 91);
    let mut first: Vec<WsStep> = msgs[..45].iter().cloned().map(WsStep::Send).collect();
    // a message cut short is rejected, never published
    first.insert(10, WsStep::Send(msgs[50][..40].to_string()));
    first.push(WsStep::Drop);
    let mut second: Vec<WsStep> = msgs[45..].iter().cloned().map(WsStep::Send).collect();
    // then silence: the heartbeat timeout (1 s) ends the session
    second.push(WsStep::Hold);
    fx.script(first);
    fx.script(second);

    let cfg = config(
        &fx,
        &[
            ("SUSHIUSDT", "SUSHI-USDT"),
            ("CTKUSDT", "CTK-USDT"),
            ("AKROUSDT", "AKRO-USDT"),
            ("KEEPUSDT", "KEEP-USDT"),
        ],
        vec![StreamKind::AggTrade],
    );
    let bus = InProcessBus::new(1, 10_000);
    let publisher: Arc<dyn QuotePublisher> = Arc::new(bus.publisher().unwrap());
    let clock: Arc<dyn Clock> = Arc::new(pricestream_schemas::SystemClock);
    let live = BinanceLive {
        symbols: cfg.symbol_map().unwrap(),
        cfg,
        publisher,
        store: Arc::clone(&store),
        clock: Arc::clone(&clock),
        recorder: RunRecorder::new(Arc::clone(&store), clock),
        on_reconnect: None,
        rollups: None,
    };
    let cancel = CancellationToken::new();
    let task = tokio::spawn(live.run(cancel.clone()));

    let mut source = bus.source(0, 1).unwrap();
    let mut got = Vec::new();
    for _ in 0..200 {
        source.poll(1_000, &mut got).unwrap();
        if got.len() >= 91 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.len(), 91);
    let quotes: Vec<_> = got.into_iter().map(|p| p.quote.unwrap()).collect();
    let ids: std::collections::BTreeSet<u64> = quotes.iter().filter_map(|q| q.trade_id).collect();
    assert_eq!(ids.len(), 91, "every recorded trade once");
    assert!(quotes
        .iter()
        .all(|q| q.venue == Venue::Binance && q.price > 0.0));

    // the silent second connection times out and a third one is made
    eventually("a third connection", || async {
        fx.lock().counters.ws_connections >= 3
    })
    .await;
    cancel.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 91);

    let subs = fx.lock().counters.subscriptions.clone();
    assert!(subs.len() >= 3);
    assert!(
        subs.iter().all(|s| *s == subs[0]),
        "resubscribed to the same streams"
    );
    assert_eq!(subs[0].len(), 4);
    let r = runs(&store, "binance_ws").await;
    assert!(r.len() >= 3, "{r:?}");
    assert_eq!(r[0].status, RunStatus::Failed);
    assert!(
        r[0].error.as_deref().unwrap().contains("dropped"),
        "{:?}",
        r[0].error
    );
    assert_eq!(r[0].quotes, 45);
    assert_eq!(r[1].status, RunStatus::Failed);
    assert!(
        r[1].error.as_deref().unwrap().contains("heartbeat"),
        "{:?}",
        r[1].error
    );
    assert_eq!(r[1].quotes, 46);
    let last = r.last().unwrap();
    assert_eq!(
        last.status,
        RunStatus::Completed,
        "cancelled session ends completed"
    );
    assert!(r.iter().all(|x| x.finished_at.is_some()));
}

#[tokio::test]
async fn a_ten_minute_outage_is_healed_with_no_missing_bar() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let rows = support::btcusdt_2020_rows();
    // minutes 0–29 live, then the connection drops; 30–39 are lost; 40–59 after reconnect
    let mut first: Vec<WsStep> = rows[..30]
        .iter()
        .map(|r| WsStep::Send(r.ws_message("BTCUSDT")))
        .collect();
    first.extend([WsStep::WaitForRelease, WsStep::Drop]);
    let mut second: Vec<WsStep> = rows[40..60]
        .iter()
        .map(|r| WsStep::Send(r.ws_message("BTCUSDT")))
        .collect();
    second.push(WsStep::Hold);
    fx.script(first);
    fx.script(second);

    let clock = TestClock::at_ms(JAN1_2020_MS + 2 * MIN_MS);
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let mut cfg = config(&fx, &[("BTCUSDT", "BTC-USDT")], vec![StreamKind::Kline1m]);
    cfg.heartbeat_timeout_secs = 30;
    cfg.heal = HealConfig {
        enabled: true,
        interval_secs: 3_600,
        lookback_minutes: 0,
        settle_secs: 120,
    };
    let recorder = RunRecorder::new(Arc::clone(&store), Arc::clone(&dyn_clock));
    let rest = Arc::new(cfg.rest(Arc::clone(&dyn_clock)).unwrap());
    // live and healed candles share the rollups, as `run` wires them
    let rollups = Arc::new(CandleRollups::new(
        &[Interval::M15, Interval::H1],
        Duration::from_secs(60),
    ));
    let healer = Scheduled::new(Arc::new(
        Healer::new(
            "binance_heal",
            rest,
            Arc::clone(&store),
            Arc::clone(&dyn_clock),
            vec![btc()],
            cfg.heal.clone(),
        )
        .with_rollups(Arc::clone(&rollups)),
    ));
    let trigger = Arc::clone(&healer.trigger);
    let bus = InProcessBus::new(1, 10_000);
    let live = BinanceLive {
        symbols: cfg.symbol_map().unwrap(),
        cfg,
        publisher: Arc::new(bus.publisher().unwrap()),
        store: Arc::clone(&store),
        clock: Arc::clone(&dyn_clock),
        recorder: recorder.clone(),
        on_reconnect: Some(trigger),
        rollups: Some(rollups),
    };
    let cancel = CancellationToken::new();
    let sched = tokio::spawn(run_scheduler(vec![healer], 2, recorder, cancel.clone()));
    let ws = tokio::spawn(live.run(cancel.clone()));

    // the first session writes minutes 0–29
    eventually("30 live bars", || async {
        bars(&store, JAN1_2020_MS, JAN1_2020_MS + 3_600_000)
            .await
            .len()
            == 30
    })
    .await;
    // an hour goes by; the connection drops, the client reconnects, the healer runs
    clock.set_ms(JAN1_2020_MS + 63 * MIN_MS);
    fx.release();
    // every settled minute up to 01:01 (end = bucket of now − settle)
    eventually("61 bars", || async {
        bars(&store, JAN1_2020_MS, JAN1_2020_MS + 61 * MIN_MS)
            .await
            .len()
            == 61
    })
    .await;
    // ... and the coarser bars over all of them (written after their last minutes)
    let trades = |from: usize, to: usize| -> u64 {
        rows[from..to]
            .iter()
            .map(|r| r.fields[8].parse::<u64>().unwrap())
            .sum()
    };
    let want: Vec<u64> = vec![
        trades(0, 15),
        trades(15, 30),
        trades(30, 45),
        trades(45, 60),
        trades(0, 60),
    ];
    eventually("the whole coarser bars", || async {
        let mut got = Vec::new();
        for interval in [Interval::M15, Interval::H1] {
            let coarse = bars_of(&store, interval, JAN1_2020_MS, JAN1_2020_MS + 60 * MIN_MS).await;
            got.extend(coarse.iter().map(|b| b.trade_count));
        }
        got == want
    })
    .await;
    cancel.cancel();
    ws.await.unwrap().unwrap();
    sched.await.unwrap();

    let got = bars(&store, JAN1_2020_MS, JAN1_2020_MS + 61 * MIN_MS).await;
    for (b, r) in got.iter().zip(&rows) {
        assert_eq!(b.bucket_start, ns(r.open_time_ms));
        assert_eq!(
            (b.open, b.high, b.low, b.close, b.volume),
            (r.open(), r.high(), r.low(), r.close(), r.volume())
        );
    }
    // the outage minutes came from REST
    let served = fx.lock().counters.served.clone();
    for m in 30..40 {
        assert_eq!(
            served.get(&("BTCUSDT".to_string(), JAN1_2020_MS + m * MIN_MS)),
            Some(&1)
        );
    }
    // minutes delivered live were not fetched again
    for m in 0..30 {
        assert!(!served.contains_key(&("BTCUSDT".to_string(), JAN1_2020_MS + m * MIN_MS)));
    }
    // the coarser buckets are whole, live and healed minutes together (they settled
    // once the clock passed their end by the settle time)
    for (interval, minutes, count) in [(Interval::M15, 15, 4), (Interval::H1, 60, 1)] {
        let coarse = bars_of(&store, interval, JAN1_2020_MS, JAN1_2020_MS + 60 * MIN_MS).await;
        assert_eq!(coarse.len(), count, "{interval}");
        for (i, b) in coarse.iter().enumerate() {
            let inside = &rows[i * minutes..(i + 1) * minutes];
            assert_eq!(b.bucket_start, ns(inside[0].open_time_ms));
            support::assert_aggregates(b, inside);
        }
    }
    let ledger = store
        .ledger(Venue::Binance, &btc(), Interval::M1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ledger.tracked_from, ns(JAN1_2020_MS));
    assert_eq!(ledger.verified_to, ns(JAN1_2020_MS + 61 * MIN_MS));
    let ws_runs = runs(&store, "binance_ws").await;
    assert_eq!(ws_runs[0].status, RunStatus::Failed);
    let heal_runs = runs(&store, "binance_heal").await;
    assert!(
        heal_runs.len() >= 2,
        "at start and after the reconnect: {heal_runs:?}"
    );
    assert!(heal_runs
        .iter()
        .filter(|r| r.error.as_deref() != Some("stopped by shutdown"))
        .all(|r| r.status == RunStatus::Completed));
}

#[tokio::test]
async fn absent_candles_are_asked_for_once_and_failures_never_stop_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    for m in [45, 46] {
        fx.lock()
            .omit
            .insert(("BTCUSDT".into(), JAN1_2020_MS + m * MIN_MS));
    }
    // the first pass meets a 5xx burst longer than its retries
    fx.inject(std::iter::repeat_n(Fault::ServerError, 3));
    let clock = TestClock::at_ms(JAN1_2020_MS + 122 * MIN_MS);
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let cfg = config(&fx, &[("BTCUSDT", "BTC-USDT")], vec![]);
    let heal = HealConfig {
        enabled: true,
        interval_secs: 3_600,
        lookback_minutes: 120,
        settle_secs: 120,
    };
    let healer = Scheduled::new(Arc::new(Healer::new(
        "binance_heal",
        Arc::new(cfg.rest(Arc::clone(&dyn_clock)).unwrap()),
        Arc::clone(&store),
        Arc::clone(&dyn_clock),
        vec![btc()],
        heal,
    )));
    let trigger = Arc::clone(&healer.trigger);
    let recorder = RunRecorder::new(Arc::clone(&store), Arc::clone(&dyn_clock));
    let cancel = CancellationToken::new();
    let sched = tokio::spawn(run_scheduler(vec![healer], 1, recorder, cancel.clone()));

    let finished = |n: usize| {
        let store = Arc::clone(&store);
        async move {
            runs(&store, "binance_heal")
                .await
                .iter()
                .filter(|r| r.status != RunStatus::Running)
                .count()
                >= n
        }
    };
    eventually("the failed first pass", || finished(1)).await;
    trigger.notify_one();
    eventually("the second pass", || finished(2)).await;
    assert_eq!(
        bars(&store, JAN1_2020_MS, JAN1_2020_MS + 120 * MIN_MS)
            .await
            .len(),
        118
    );
    let requests = fx.requests();
    // nothing new: no request at all, the absent minutes are not asked for again
    trigger.notify_one();
    eventually("the third pass", || finished(3)).await;
    assert_eq!(fx.requests(), requests);
    // ten minutes later: one request for the ten new minutes only
    clock.set_ms(JAN1_2020_MS + 132 * MIN_MS);
    trigger.notify_one();
    eventually("the fourth pass", || finished(4)).await;
    assert_eq!(fx.requests(), requests + 1);
    assert_eq!(
        bars(&store, JAN1_2020_MS, JAN1_2020_MS + 130 * MIN_MS)
            .await
            .len(),
        128
    );
    let served = fx.lock().counters.served.clone();
    assert!(served.values().all(|n| *n == 1));
    cancel.cancel();
    sched.await.unwrap();

    let r = runs(&store, "binance_heal").await;
    let statuses: Vec<RunStatus> = r.iter().map(|r| r.status).collect();
    assert_eq!(
        &statuses[..4],
        &[
            RunStatus::Failed,
            RunStatus::Completed,
            RunStatus::Completed,
            RunStatus::Completed
        ]
    );
    assert!(r[0].error.as_deref().unwrap().contains("server"));
    assert_eq!((r[1].quotes, r[2].quotes, r[3].quotes), (118, 0, 10));
    let absent = store
        .absent_candles(Venue::Binance, &btc(), Interval::M1, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        absent,
        vec![
            ns(JAN1_2020_MS + 45 * MIN_MS),
            ns(JAN1_2020_MS + 46 * MIN_MS)
        ]
    );
}

struct Probe {
    name: &'static str,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    passes: AtomicUsize,
}

#[async_trait]
impl PollJob for Probe {
    fn name(&self) -> &'static str {
        self.name
    }
    fn interval(&self) -> Duration {
        Duration::from_millis(10)
    }
    async fn run_once(&self) -> pricestream_connectors::Result<u64> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        let n = self.passes.fetch_add(1, Ordering::SeqCst);
        if n.is_multiple_of(2) {
            Err(pricestream_connectors::ConnectorError::Config(
                "odd pass".into(),
            ))
        } else {
            Ok(1)
        }
    }
}

#[tokio::test]
async fn the_scheduler_bounds_concurrency_and_keeps_going_after_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let (active, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let jobs: Vec<Scheduled> = ["probe_a", "probe_b", "probe_c"]
        .into_iter()
        .map(|name| {
            Scheduled::new(Arc::new(Probe {
                name,
                active: Arc::clone(&active),
                peak: Arc::clone(&peak),
                passes: AtomicUsize::new(0),
            }))
        })
        .collect();
    let clock: Arc<dyn Clock> = Arc::new(pricestream_schemas::SystemClock);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_scheduler(
        jobs,
        2,
        RunRecorder::new(Arc::clone(&store), clock),
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 2, "bounded at 2, and reached");
    for name in ["probe_a", "probe_b", "probe_c"] {
        let r = runs(&store, name).await;
        let failed = r.iter().filter(|r| r.status == RunStatus::Failed).count();
        let completed = r
            .iter()
            .filter(|r| r.status == RunStatus::Completed)
            .count();
        assert!(completed >= 2 && failed >= 2, "{name}: {r:?}");
        assert!(r.iter().all(|r| r.status != RunStatus::Running));
    }
}
