//! Coinbase Exchange feed against the fake exchange replaying the recorded ticker and
//! match messages, across a dropped connection.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use pricestream_bus::{InProcessBus, QuotePublisher, QuoteSource};
use pricestream_connectors::coinbase::{Channel, CoinbaseConfig};
use pricestream_connectors::runs::RunRecorder;
use pricestream_schemas::{Clock, QuoteKind, RunStatus, Side, Venue};
use pricestream_store::RunFilter;
use support::{FakeExchange, WsStep};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn recorded_tickers_and_matches_become_quotes_across_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let fx = FakeExchange::start(1_000, Duration::from_secs(1)).await;
    let tickers =
        support::recorded_ws_messages("coinbase/ws/coinbase_pro_ws_ticker_2021-04-17.ndjson");
    let matches = support::recorded_ws_messages(
        "coinbase/ws/coinbase_pro_ws_match_last_match_2021-04-17.ndjson",
    );
    assert_eq!((tickers.len(), matches.len()), (107, 107));
    let mut first: Vec<WsStep> = tickers.iter().cloned().map(WsStep::Send).collect();
    first.push(WsStep::Send(
        "<html><body>502 Bad Gateway</body></html>".into(),
    ));
    first.push(WsStep::Drop);
    let mut second: Vec<WsStep> = matches.iter().cloned().map(WsStep::Send).collect();
    second.push(WsStep::Hold);
    fx.script(first);
    fx.script(second);

    let products = [
        "BAND-GBP", "BAND-BTC", "YFI-BTC", "NU-GBP", "CRV-EUR", "SKL-GBP", "SKL-USD", "SKL-BTC",
        "NMR-EUR", "DASH-BTC",
    ];
    let cfg = CoinbaseConfig {
        enabled: true,
        ws_url: format!("{}/ws-feed", fx.ws_url()),
        symbols: products
            .iter()
            .map(|p| (p.to_string(), p.to_string()))
            .collect(),
        channels: vec![Channel::Ticker, Channel::Matches],
        heartbeat_timeout_secs: 30,
        reconnect_initial_delay_ms: 20,
        reconnect_max_delay_ms: 100,
        ..CoinbaseConfig::default()
    };
    let bus = InProcessBus::new(1, 10_000);
    let publisher: Arc<dyn QuotePublisher> = Arc::new(bus.publisher().unwrap());
    let clock: Arc<dyn Clock> = Arc::new(pricestream_schemas::SystemClock);
    let cancel = CancellationToken::new();
    let task = {
        let (store, clock, cancel) = (Arc::clone(&store), Arc::clone(&clock), cancel.clone());
        tokio::spawn(async move {
            let recorder = RunRecorder::new(Arc::clone(&store), Arc::clone(&clock));
            cfg.run(publisher, store, clock, recorder, cancel).await
        })
    };
    let mut source = bus.source(0, 1).unwrap();
    let mut got = Vec::new();
    // 107 tickers + 97 matches (the 10 last_match repeats are not trades of this session)
    for _ in 0..200 {
        source.poll(1_000, &mut got).unwrap();
        if got.len() >= 204 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    source.poll(1_000, &mut got).unwrap();
    cancel.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 204);
    let quotes: Vec<_> = got.into_iter().map(|p| p.quote.unwrap()).collect();
    assert_eq!(quotes.len(), 204);
    let trades: Vec<_> = quotes
        .iter()
        .filter(|q| q.kind == QuoteKind::Trade)
        .collect();
    assert_eq!(trades.len(), 97);
    assert!(quotes.iter().all(|q| q.venue == Venue::Coinbase));
    let t = quotes.iter().find(|q| q.kind == QuoteKind::Ticker).unwrap();
    assert_eq!(t.symbol.as_str(), "BAND-GBP");
    assert_eq!(
        (t.price, t.bid, t.ask),
        (14.7775, Some(14.755), Some(14.806))
    );
    // the first recorded match: maker side "sell", so the aggressor bought
    let first_match: serde_json::Value = serde_json::from_str(
        matches
            .iter()
            .find(|m| m.contains("\"type\":\"match\""))
            .unwrap(),
    )
    .unwrap();
    let q = trades[0];
    assert_eq!(q.trade_id, first_match["trade_id"].as_u64());
    let maker = first_match["side"].as_str().unwrap();
    assert_eq!(
        q.side,
        Some(if maker == "sell" {
            Side::Buy
        } else {
            Side::Sell
        })
    );

    let subs = fx.lock().counters.subscriptions.clone();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0], subs[1], "resubscribed after the drop");
    let mut runs = store
        .list_runs(&RunFilter {
            connector: Some("coinbase_ws".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    runs.sort_by_key(|r| r.started_at);
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].status, runs[0].quotes), (RunStatus::Failed, 107));
    assert_eq!((runs[1].status, runs[1].quotes), (RunStatus::Completed, 97));
}
