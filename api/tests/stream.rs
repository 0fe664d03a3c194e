//! The WebSocket stream: subscribe, unsubscribe, filtering, slow consumers, the limit.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pricestream_api::stream::LiveStream;
use pricestream_api::{router, ApiConfig, AppState};
use pricestream_pipeline::live::{LiveEvent, LiveHub};
use pricestream_schemas::{Bar, Interval, Symbol, Venue};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

fn bar(sym: &str, interval: Interval, minute: i64) -> Bar {
    Bar {
        venue: Venue::Synthetic,
        symbol: Symbol::new(sym).unwrap(),
        interval,
        bucket_start: minute * 60_000_000_000,
        open: 1.0,
        high: 2.0,
        low: 0.5,
        close: 1.5,
        volume: 1.0,
        notional: 1.5,
        vwap: 1.5,
        trade_count: 1,
        revision: 0,
        ts_event: 1,
        ts_ingest: 1,
    }
}

async fn serve(hub: LiveHub, max_connections: usize) -> (u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let state = AppState {
        store,
        metrics: None,
        lake_dir: None,
        pipeline: None,
        live: Some(LiveStream::new(hub, max_connections)),
        auth: pricestream_api::auth::Auth::new(Default::default()),
    };
    let app = router(state, &ApiConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, dir)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(port: u16) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/stream"))
        .await
        .unwrap()
        .0
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn command(ws: &mut Ws, cmd: &str) -> Value {
    ws.send(Message::Text(cmd.into())).await.unwrap();
    next_json(ws).await.unwrap()
}

/// Waits until the server-side session has subscribed to the hub.
async fn until_subscribed(hub: &LiveHub, n: usize) {
    for _ in 0..100 {
        if hub.subscribers() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session did not subscribe");
}

#[tokio::test]
async fn subscribe_filter_and_unsubscribe() {
    let hub = LiveHub::new(64);
    let (port, _dir) = serve(hub.clone(), 10).await;
    let mut ws = connect(port).await;
    until_subscribed(&hub, 1).await;

    let reply = command(
        &mut ws,
        r#"{"op":"subscribe","channels":["bars"],"symbols":["BTC-USDT"],"intervals":["1m"]}"#,
    )
    .await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["symbols"][0], "BTC-USDT");

    hub.publish(LiveEvent::Bar(bar("ETH-USDT", Interval::M1, 1)));
    hub.publish(LiveEvent::Bar(bar("BTC-USDT", Interval::M5, 2)));
    hub.publish(LiveEvent::Bar(bar("BTC-USDT", Interval::M1, 3)));
    let got = next_json(&mut ws).await.unwrap();
    assert_eq!(got["type"], "bar");
    assert_eq!(got["data"]["symbol"], "BTC-USDT");
    assert_eq!(got["data"]["interval"], "1m");
    assert_eq!(got["data"]["bucket_start"], 3 * 60_000_000_000i64);

    let reply = command(&mut ws, r#"{"op":"unsubscribe","symbols":["BTC-USDT"]}"#).await;
    assert_eq!(reply["type"], "unsubscribed");
    hub.publish(LiveEvent::Bar(bar("BTC-USDT", Interval::M1, 4)));
    assert!(
        next_json(&mut ws).await.is_none(),
        "received after unsubscribing"
    );

    // every symbol
    command(
        &mut ws,
        r#"{"op":"subscribe","channels":["bars"],"symbols":["*"]}"#,
    )
    .await;
    hub.publish(LiveEvent::Bar(bar("SOL-USDT", Interval::M1, 5)));
    assert_eq!(
        next_json(&mut ws).await.unwrap()["data"]["symbol"],
        "SOL-USDT"
    );

    // bad commands get an error reply, and the connection stays usable
    for bad in [
        r#"{"op":"dance"}"#,
        r#"{"op":"subscribe","channels":["bars"],"symbols":["btc"]}"#,
        "not json",
        r#"{"op":"subscribe","channels":["trades"],"symbols":["*"]}"#,
    ] {
        let reply = command(&mut ws, bad).await;
        assert_eq!(reply["type"], "error", "{bad}: {reply}");
    }
    hub.publish(LiveEvent::Bar(bar("SOL-USDT", Interval::M1, 6)));
    assert_eq!(
        next_json(&mut ws).await.unwrap()["data"]["bucket_start"],
        6 * 60_000_000_000i64
    );

    // alerts: only those of the caller's own rules (this connection is anonymous)
    command(&mut ws, r#"{"op":"unsubscribe","channels":["bars"]}"#).await;
    let reply = command(
        &mut ws,
        r#"{"op":"subscribe","channels":["alerts"],"symbols":["*"]}"#,
    )
    .await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    let alert = |owner: &str, price: f64| pricestream_schemas::AlertEvent {
        alert_id: "r1".into(),
        owner: owner.into(),
        venue: pricestream_schemas::Venue::Binance,
        symbol: pricestream_schemas::Symbol::new("BTC-USDT").unwrap(),
        condition: "price above 1".into(),
        price,
        value: None,
        ts_event: 1,
        ts_ingest: 1,
    };
    hub.publish(LiveEvent::Alert(alert("someone-else", 1.5)));
    hub.publish(LiveEvent::Alert(alert("anonymous", 2.5)));
    let got = next_json(&mut ws).await.unwrap();
    assert_eq!(got["type"], "alert");
    assert_eq!(got["data"]["price"], 2.5);
}

#[tokio::test]
async fn a_slow_client_loses_the_oldest_with_a_notice_and_never_blocks_publishing() {
    let hub = LiveHub::new(8);
    let (port, _dir) = serve(hub.clone(), 10).await;
    let mut ws = connect(port).await;
    until_subscribed(&hub, 1).await;
    command(
        &mut ws,
        r#"{"op":"subscribe","channels":["bars"],"symbols":["*"]}"#,
    )
    .await;
    // the client does not read while 10,000 events are published: publishing returns at once
    let started = std::time::Instant::now();
    for m in 0..10_000 {
        hub.publish(LiveEvent::Bar(bar("BTC-USDT", Interval::M1, m)));
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut lagged = 0u64;
    let mut last = -1i64;
    while let Some(v) = next_json(&mut ws).await {
        match v["type"].as_str().unwrap() {
            "lagged" => lagged += v["dropped"].as_u64().unwrap(),
            "bar" => last = v["data"]["bucket_start"].as_i64().unwrap() / 60_000_000_000,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(lagged > 0, "no lag notice");
    assert_eq!(last, 9_999, "the newest events are kept");
}

#[tokio::test]
async fn connection_limit() {
    let hub = LiveHub::new(8);
    let (port, _dir) = serve(hub.clone(), 1).await;
    let _first = connect(port).await;
    let second = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/stream")).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("second connection was not refused: {:?}", other.map(|_| ())),
    }
}
