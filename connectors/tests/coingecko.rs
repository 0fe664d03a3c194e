//! CoinGecko against the fake exchange serving the recorded `/simple/price` and
//! `market_chart/range` bodies.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use pricestream_bus::{InProcessBus, QuotePublisher, QuoteSource};
use pricestream_connectors::coingecko::CoinGeckoConfig;
use pricestream_connectors::http::HttpConfig;
use pricestream_connectors::runs::{run_scheduler, RunRecorder, Scheduled};
use pricestream_connectors::ErrorKind;
use pricestream_schemas::{Clock, QuoteKind, RunStatus, Symbol, Venue, NANOS_PER_MILLI};
use pricestream_store::RunFilter;
use support::{FakeExchange, Fault, TestClock};
use tokio_util::sync::CancellationToken;

fn config(fx: &FakeExchange) -> CoinGeckoConfig {
    CoinGeckoConfig {
        enabled: true,
        base_url: format!("{}/api/v3", fx.rest_url()),
        symbols: [("ethereum/usd", "ETH-USD"), ("bitcoin/usd", "BTC-USD")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into_iter()
            .collect(),
        poll_interval_secs: 3_600,
        http: HttpConfig {
            timeout_ms: 500,
            max_retries: 0,
            retry_initial_delay_ms: 10,
            retry_max_delay_ms: 20,
            ..CoinGeckoConfig::default().http
        },
        ..CoinGeckoConfig::default()
    }
}

#[tokio::test]
async fn polls_are_scheduled_published_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let clock = TestClock::at_ms(1_711_900_000_000);
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let bus = InProcessBus::new(1, 100);
    let publisher: Arc<dyn QuotePublisher> = Arc::new(bus.publisher().unwrap());
    // the first poll meets a Cloudflare-style HTML page: a failed run, no quote
    fx.inject([Fault::Html]);
    let job = Scheduled::new(Arc::new(
        config(&fx)
            .build(Arc::clone(&dyn_clock), Some(publisher))
            .unwrap(),
    ));
    let trigger = Arc::clone(&job.trigger);
    let cancel = CancellationToken::new();
    let recorder = RunRecorder::new(Arc::clone(&store), dyn_clock);
    let task = tokio::spawn(run_scheduler(vec![job], 2, recorder, cancel.clone()));
    let ended = || async {
        store
            .list_runs(&RunFilter {
                connector: Some("coingecko_poll".into()),
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.status != RunStatus::Running)
            .count()
    };
    for _ in 0..100 {
        if ended().await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.notify_one();
    for _ in 0..100 {
        if ended().await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    task.await.unwrap();
    let mut source = bus.source(0, 1).unwrap();
    let mut got = Vec::new();
    source.poll(100, &mut got).unwrap();
    assert_eq!(got.len(), 1);
    let q = got[0].quote.as_ref().unwrap();
    assert_eq!(
        (q.venue, q.symbol.as_str(), q.kind),
        (Venue::Coingecko, "ETH-USD", QuoteKind::Ticker)
    );
    assert_eq!(q.price, 1498.64);
    let mut runs = store
        .list_runs(&RunFilter {
            connector: Some("coingecko_poll".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    runs.sort_by_key(|r| r.started_at);
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(runs[0].error.as_deref().unwrap().contains("html"));
    assert_eq!((runs[1].status, runs[1].quotes), (RunStatus::Completed, 1));
}

#[tokio::test]
async fn market_chart_history_becomes_ticker_quotes_and_faults_are_errors() {
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let clock: Arc<dyn Clock> = TestClock::at_ms(1_712_000_000_000);
    let cg = config(&fx).build(clock, None).unwrap();
    let btc = Symbol::new("BTC-USD").unwrap();
    let from = 1_711_843_200_000 * NANOS_PER_MILLI;
    let to = 1_712_000_000_000 * NANOS_PER_MILLI;
    let h = cg.history(&btc, from, to).await.unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].ts_event, from);
    assert_eq!(h[0].price, 69702.3087473573);
    assert!(h
        .iter()
        .all(|q| q.kind == QuoteKind::Ticker && q.symbol == btc));
    // a narrower range keeps only its points
    let one = cg.history(&btc, from, from + 1).await.unwrap();
    assert_eq!(one.len(), 1);
    fx.inject([Fault::TooManyRequests {
        retry_after_secs: 0,
    }]);
    let e = cg.history(&btc, from, to).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::RateLimited));
    assert!(cg
        .history(&Symbol::new("SOL-USD").unwrap(), from, to)
        .await
        .is_err());
}
