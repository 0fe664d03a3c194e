//! The published JSON Schemas accept what the codec writes and reject what it refuses.

#![allow(clippy::unwrap_used)]

use boon::{Compiler, Schemas};
use pricestream_schemas::codec::{self, WireEvent};
use pricestream_schemas::*;
use serde_json::Value;

fn check<T: WireEvent>(event: &T) {
    let mut schemas = Schemas::new();
    let mut compiler = Compiler::new();
    let doc: Value = serde_json::from_str(T::JSON_SCHEMA).unwrap();
    compiler.add_resource(T::TOPIC, doc).unwrap();
    let idx = compiler.compile(T::TOPIC, &mut schemas).unwrap();
    let bytes = codec::encode(event);
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    if let Err(e) = schemas.validate(&value, idx) {
        panic!(
            "{} payload does not match its schema: {e}\n{value}",
            T::TOPIC
        );
    }
    let back: T = codec::decode(&bytes).unwrap();
    assert_eq!(codec::encode(&back), bytes, "round trip changed the bytes");

    // A payload with an unknown version fails both the schema and the codec.
    let mut wrong = value.clone();
    wrong["v"] = Value::from(2);
    assert!(schemas.validate(&wrong, idx).is_err());
    let err = codec::decode::<T>(&serde_json::to_vec(&wrong).unwrap())
        .err()
        .unwrap();
    assert_eq!(err.reason(), "unsupported_version");
}

fn sym() -> Symbol {
    Symbol::new("BTC-USDT").unwrap()
}

#[test]
fn quote_matches_schema() {
    check(&Quote {
        venue: Venue::Binance,
        symbol: sym(),
        kind: QuoteKind::Trade,
        price: 65_000.1,
        size: 0.5,
        side: Some(Side::Buy),
        trade_id: Some(12),
        bid: Some(64_999.0),
        ask: Some(65_001.0),
        ts_event: 1_700_000_000_000_000_000,
        ts_ingest: 1_700_000_000_100_000_000,
    });
    check(&Quote {
        venue: Venue::Coingecko,
        symbol: sym(),
        kind: QuoteKind::Ticker,
        price: 1.0,
        size: 0.0,
        side: None,
        trade_id: None,
        bid: None,
        ask: None,
        ts_event: 1,
        ts_ingest: 1,
    });
}

#[test]
fn bar_signal_alert_match_schemas() {
    check(&Bar {
        venue: Venue::Synthetic,
        symbol: sym(),
        interval: Interval::M5,
        bucket_start: 1_700_000_100_000_000_000,
        open: 1.0,
        high: 2.0,
        low: 0.5,
        close: 1.5,
        volume: 3.0,
        notional: 4.0,
        vwap: 1.3333,
        trade_count: 3,
        revision: 1,
        ts_event: 1_700_000_110_000_000_000,
        ts_ingest: 1_700_000_110_000_000_001,
    });
    check(&Signal {
        venue: Venue::Binance,
        symbol: sym(),
        interval: Interval::H1,
        kind: SignalKind::GoldenCross,
        bucket_start: 1_700_000_000_000_000_000,
        value: -0.25,
        ts_event: 1_700_000_000_000_000_001,
        ts_ingest: 1_700_000_000_000_000_002,
    });
    check(&AlertEvent {
        alert_id: "a-1".into(),
        owner: "k1".into(),
        venue: Venue::Binance,
        symbol: sym(),
        condition: "price above 65000".into(),
        price: 65_000.5,
        value: None,
        ts_event: 5,
        ts_ingest: 6,
    });
    check(&AlertEvent {
        alert_id: "a-2".into(),
        owner: "k1".into(),
        venue: Venue::Synthetic,
        symbol: sym(),
        condition: "signal golden_cross on 1h".into(),
        price: 64_000.0,
        value: Some(-12.5),
        ts_event: 7,
        ts_ingest: 8,
    });
}

#[test]
fn external_producer_payload_decodes() {
    // What a producer that only follows the published schema would send.
    let raw = br#"{"v":1,"venue":"binance","symbol":"ETH-USDT","kind":"trade","price":3000.5,"size":2,"ts_event":1700000000000000000,"ts_ingest":1700000000000000000}"#;
    let q = codec::decode_quote(raw).unwrap();
    assert_eq!(q.symbol.as_str(), "ETH-USDT");
    for (bad, reason) in [
        (&b"{not json"[..], "malformed"),
        (br#"{"v":1,"venue":"binance","symbol":"ethusdt","kind":"trade","price":1,"size":1,"ts_event":1,"ts_ingest":1}"#, "schema"),
        (br#"{"v":1,"venue":"binance","symbol":"ETH-USDT","kind":"trade","price":-1,"size":1,"ts_event":1,"ts_ingest":1}"#, "invalid_price"),
    ] {
        assert_eq!(codec::decode_quote(bad).unwrap_err().reason(), reason);
    }
}

proptest::proptest! {
    /// Prices survive the wire codec bit for bit (correct to the last digit).
    #[test]
    fn floats_round_trip_exactly(price in 1e-8f64..1e7, size in 0f64..1e6) {
        let q = Quote {
            venue: Venue::Binance,
            symbol: sym(),
            kind: QuoteKind::Trade,
            price,
            size,
            side: None,
            trade_id: None,
            bid: None,
            ask: None,
            ts_event: 1,
            ts_ingest: 1,
        };
        let back: Quote = codec::decode(&codec::encode(&q)).unwrap();
        proptest::prop_assert_eq!(back.price.to_bits(), price.to_bits());
        proptest::prop_assert_eq!(back.size.to_bits(), size.to_bits());
    }
}
