//! The connectors' metrics as Prometheus sees them: breaker state, requests and errors by
//! kind, rate-limit waits. One test in its own process (the recorder is global).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use pricestream_connectors::binance::BinanceConfig;
use pricestream_connectors::candles::CandleSource;
use pricestream_connectors::http::HttpConfig;
use pricestream_schemas::{Clock, Interval, Symbol, NANOS_PER_MILLI};
use support::{FakeExchange, Fault, TestClock, JAN1_2020_MS};

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn breaker_state_requests_errors_and_waits_are_exported() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    pricestream_connectors::metrics::describe();
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let clock: Arc<dyn Clock> = TestClock::at_ms(JAN1_2020_MS + 86_400_000);
    let cfg = BinanceConfig {
        rest_url: fx.rest_url(),
        http: HttpConfig {
            timeout_ms: 300,
            weight_per_window: 4,
            window_ms: 400,
            max_retries: 0,
            breaker_failure_threshold: 2,
            breaker_open_ms: 200,
            ..HttpConfig::default()
        },
        ..BinanceConfig::default()
    };
    let rest = cfg.rest(clock).unwrap();
    let btc = Symbol::new("BTC-USDT").unwrap();
    let from = JAN1_2020_MS * NANOS_PER_MILLI;
    let to = from + 5 * 60_000 * NANOS_PER_MILLI;
    let state = |h: &metrics_exporter_prometheus::PrometheusHandle| {
        value(
            &h.render(),
            "pricestream_connector_breaker_state{venue=\"binance\"}",
        )
    };
    assert_eq!(state(&handle), Some(0.0));
    fx.inject([Fault::ServerError, Fault::Html]);
    assert!(rest.candles(&btc, Interval::M1, from, to).await.is_err());
    assert!(rest.candles(&btc, Interval::M1, from, to).await.is_err());
    assert_eq!(state(&handle), Some(2.0), "open");
    tokio::time::sleep(Duration::from_millis(250)).await;
    // the probe succeeds; the limiter (2 weight burst) makes the next calls wait
    for _ in 0..3 {
        rest.candles(&btc, Interval::M1, from, to).await.unwrap();
    }
    assert_eq!(state(&handle), Some(0.0), "closed again");
    let text = handle.render();
    assert_eq!(
        value(
            &text,
            "pricestream_connector_http_errors_total{venue=\"binance\",kind=\"server\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "pricestream_connector_http_errors_total{venue=\"binance\",kind=\"html\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "pricestream_connector_http_requests_total{venue=\"binance\",outcome=\"ok\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "pricestream_connector_breaker_opened_total{venue=\"binance\"}"
        ),
        Some(1.0)
    );
    assert!(
        value(
            &text,
            "pricestream_connector_rate_limit_waits_total{venue=\"binance\"}"
        )
        .unwrap()
            >= 1.0
    );
}
