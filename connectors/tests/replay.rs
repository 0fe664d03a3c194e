//! Replay of recorded history: Binance kline dumps, NDJSON quotes and the lake's Parquet.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_bus::{InProcessBus, QuoteSource};
use pricestream_connectors::coinbase::parse;
use pricestream_connectors::replay::{ReplayConfig, ReplayFormat};
use pricestream_connectors::symbols::SymbolMap;
use pricestream_connectors::ws::FeedEvent;
use pricestream_schemas::{
    Clock, Interval, Quote, QuoteKind, Side, Symbol, Venue, NANOS_PER_MILLI,
};
use pricestream_store::BarQuery;
use tokio_util::sync::CancellationToken;

fn clock() -> Arc<dyn Clock> {
    Arc::new(pricestream_schemas::SystemClock)
}

/// Quotes of the recorded Coinbase matches, as PriceStream parses them.
fn recorded_quotes() -> Vec<Quote> {
    let table = [
        "SKL-USD", "DASH-BTC", "SKL-BTC", "NMR-EUR", "BAND-BTC", "BAND-GBP", "SKL-GBP", "NU-GBP",
    ]
    .iter()
    .map(|p| (p.to_string(), p.to_string()))
    .collect();
    let map = SymbolMap::new("coinbase", &table).unwrap();
    support::recorded_ws_messages("coinbase/ws/coinbase_pro_ws_match_last_match_2021-04-17.ndjson")
        .iter()
        .filter_map(
            |m| match parse::message(m, &map, 1_700_000_000_000_000_000).unwrap() {
                FeedEvent::Quote(q) => Some(q),
                _ => None,
            },
        )
        .collect()
}

/// Plays `cfg` as fast as it asks into `bus`, candles into `store`.
async fn play(
    cfg: &ReplayConfig,
    bus: &InProcessBus,
    store: &Arc<dyn pricestream_store::Store>,
) -> Result<u64, pricestream_connectors::ConnectorError> {
    cfg.run(
        Arc::new(bus.publisher().unwrap()),
        Arc::clone(store),
        clock(),
        CancellationToken::new(),
    )
    .await
}

async fn drain(bus: &InProcessBus, want: usize) -> Vec<Quote> {
    let mut source = bus.source(0, 1).unwrap();
    let mut got = Vec::new();
    for _ in 0..100 {
        source.poll(10_000, &mut got).unwrap();
        if got.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    got.into_iter().map(|p| p.quote.unwrap()).collect()
}

#[tokio::test]
async fn ndjson_and_lake_quotes_replay_as_fast_as_possible() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let quotes = recorded_quotes();
    assert_eq!(quotes.len(), 97);
    let ndjson = dir.path().join("quotes.ndjson");
    let text: String = quotes
        .iter()
        .map(|q| serde_json::to_string(q).unwrap() + "\n")
        .collect();
    std::fs::write(&ndjson, text).unwrap();
    let lake_dir = dir.path().join("lake");
    pricestream_store::Lake::new(&lake_dir)
        .write_quotes(&quotes)
        .unwrap();

    for (format, path) in [
        (ReplayFormat::QuotesNdjson, ndjson.clone()),
        (ReplayFormat::LakeParquet, lake_dir),
    ] {
        let bus = InProcessBus::new(1, 10_000);
        let cfg = ReplayConfig {
            enabled: true,
            format,
            paths: vec![path],
            speed: 0.0,
            ..ReplayConfig::default()
        };
        let n = play(&cfg, &bus, &store).await.unwrap();
        assert_eq!(n, 97, "{format:?}");
        let got = drain(&bus, 97).await;
        let mut a: Vec<_> = got
            .iter()
            .map(|q| (q.ts_event, q.trade_id, q.price.to_bits()))
            .collect();
        let mut b: Vec<_> = quotes
            .iter()
            .map(|q| (q.ts_event, q.trade_id, q.price.to_bits()))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{format:?}");
    }

    // a bad line is a clear error and nothing is sent
    std::fs::write(
        &ndjson,
        format!(
            "{}\n{{\"venue\":\"binance\"}}\n",
            serde_json::to_string(&quotes[0]).unwrap()
        ),
    )
    .unwrap();
    let bus = InProcessBus::new(1, 10);
    let cfg = ReplayConfig {
        enabled: true,
        format: ReplayFormat::QuotesNdjson,
        paths: vec![ndjson.clone()],
        speed: 0.0,
        ..ReplayConfig::default()
    };
    let e = play(&cfg, &bus, &store).await.unwrap_err();
    assert!(e.to_string().contains("quotes.ndjson:2"), "{e}");
    assert!(drain(&bus, 1).await.is_empty());
}

#[tokio::test]
async fn binance_kline_dumps_become_bars_at_the_asked_pace() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    let fx = support::fixtures().join("binance/klines_dump");
    // spot (no header): a whole day as fast as possible
    let cfg = ReplayConfig {
        enabled: true,
        format: ReplayFormat::BinanceKlinesCsv,
        paths: vec![fx.join("spot/BTCUSDT-1m-2020-01-01.csv")],
        symbol: "BTC-USDT".into(),
        venue: Venue::Binance,
        speed: 0.0,
    };
    let bus = InProcessBus::new(1, 10);
    let n = play(&cfg, &bus, &store).await.unwrap();
    assert_eq!(n, 1_440);
    let day = support::JAN1_2020_MS * NANOS_PER_MILLI;
    let bars = store
        .query_bars(&BarQuery {
            venue: Some(Venue::Binance),
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::M1,
            from: day,
            to: day + 86_400 * 1_000_000_000,
            limit: 5_000,
            tail: false,
        })
        .await
        .unwrap();
    assert_eq!(bars.len(), 1_440);
    assert_eq!(
        (bars[0].open, bars[0].close, bars[0].trade_count),
        (7195.24, 7186.68, 493)
    );

    // futures dump (with a header), 1h candles; 3,600× faster: 24 h of candles in ~23 s
    // is too long for a test, so 36,000×: the 23 h between first and last take ~2.3 s
    let cfg = ReplayConfig {
        format: ReplayFormat::BinanceKlinesCsv,
        paths: vec![fx.join("um_futures/ETHUSDT-1h-2022-08-24.csv")],
        symbol: "ETH-USDT".into(),
        speed: 36_000.0,
        ..cfg
    };
    let started = Instant::now();
    let n = play(&cfg, &bus, &store).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(n, 24);
    assert!(
        elapsed >= Duration::from_millis(2_200) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
}

/// The recorded `GET /api/v3/trades` answer (real BTCUSDT trades) laid out as a
/// data.binance.vision trade dump: `id,price,qty,quote_qty,time,is_buyer_maker,
/// is_best_match`, the numbers byte for byte as Binance sent them. `micros` writes the time
/// in microseconds (the dumps since 2025), `header` adds the futures dumps' header row.
fn recorded_trades_as_dump(micros: bool, header: bool) -> (String, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(support::fixtures().join("binance/rest/api_v3_trades.json"))
        .unwrap();
    let trades: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut csv = String::new();
    if header {
        csv.push_str("id,price,qty,quote_qty,time,is_buyer_maker\n");
    }
    for t in &trades {
        let time = t["time"].as_i64().unwrap() * if micros { 1_000 } else { 1 };
        csv.push_str(&format!(
            "{},{},{},{},{},{}",
            t["id"],
            t["price"].as_str().unwrap(),
            t["qty"].as_str().unwrap(),
            t["quoteQty"].as_str().unwrap(),
            time,
            if t["isBuyerMaker"].as_bool().unwrap() {
                "True"
            } else {
                "False"
            },
        ));
        if !header {
            csv.push_str(&format!(
                ",{}",
                if t["isBestMatch"].as_bool().unwrap() {
                    "True"
                } else {
                    "False"
                }
            ));
        }
        csv.push('\n');
    }
    (csv, trades)
}

#[tokio::test]
async fn binance_trade_dumps_replay_as_the_recorded_trades() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(&dir).await;
    for (micros, header) in [(false, false), (true, true)] {
        let (csv, trades) = recorded_trades_as_dump(micros, header);
        assert_eq!(trades.len(), 10);
        let path = dir.path().join("BTCUSDT-trades-2021-10-22.csv");
        std::fs::write(&path, csv).unwrap();
        let bus = InProcessBus::new(1, 100);
        let cfg = ReplayConfig {
            enabled: true,
            format: ReplayFormat::BinanceTradesCsv,
            paths: vec![path.clone()],
            symbol: "BTC-USDT".into(),
            venue: Venue::Binance,
            speed: 0.0,
        };
        let n = play(&cfg, &bus, &store).await.unwrap();
        assert_eq!(n, 10);
        let got = drain(&bus, 10).await;
        let want: Vec<_> = trades
            .iter()
            .map(|t| {
                (
                    t["id"].as_u64().unwrap(),
                    t["price"].as_str().unwrap().parse::<f64>().unwrap(),
                    t["qty"].as_str().unwrap().parse::<f64>().unwrap(),
                    t["time"].as_i64().unwrap() * NANOS_PER_MILLI,
                    // the buyer was the maker: the aggressor sold
                    if t["isBuyerMaker"].as_bool().unwrap() {
                        Side::Sell
                    } else {
                        Side::Buy
                    },
                )
            })
            .collect();
        let got: Vec<_> = got
            .iter()
            .map(|q| {
                assert_eq!(
                    (q.venue, q.symbol.as_str(), q.kind),
                    (Venue::Binance, "BTC-USDT", QuoteKind::Trade)
                );
                (
                    q.trade_id.unwrap(),
                    q.price,
                    q.size,
                    q.ts_event,
                    q.side.unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "micros {micros} header {header}");
    }

    // a bad row is a clear error naming file and line, and nothing is sent
    let (csv, _) = recorded_trades_as_dump(false, false);
    let mut lines: Vec<&str> = csv.lines().collect();
    lines[3] = "1111468876,60650.01000000,-0.5,1.0,1634942949583,False,True";
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let bus = InProcessBus::new(1, 100);
    let cfg = ReplayConfig {
        enabled: true,
        format: ReplayFormat::BinanceTradesCsv,
        paths: vec![path],
        speed: 0.0,
        ..ReplayConfig::default()
    };
    let e = play(&cfg, &bus, &store).await.unwrap_err();
    assert!(e.to_string().contains("bad.csv:4"), "{e}");
    assert!(drain(&bus, 1).await.is_empty());
}
