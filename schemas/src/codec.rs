//! The wire codec: JSON, one object per message, with a `"v"` schema-version field next to
//! the payload's own fields. The JSON Schema for each topic lives in `schemas/json/`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SchemaError};
use crate::events::{AlertEvent, Bar, Quote, QuoteKind, Side, Signal};
use crate::market::{Symbol, Venue};
use crate::time::TimestampNs;

/// The wire version this build writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// Topic names of the v1 wire format.
pub mod topics {
    pub const QUOTES: &str = "quotes.v1";
    pub const BARS: &str = "bars.v1";
    pub const SIGNALS: &str = "signals.v1";
    pub const ALERTS: &str = "alerts.v1";
    pub const QUOTES_DLQ: &str = "quotes.dlq";
}

#[derive(Serialize)]
struct Out<'a, T> {
    v: u32,
    #[serde(flatten)]
    payload: &'a T,
}

#[derive(Deserialize)]
struct In<T> {
    v: u32,
    #[serde(flatten)]
    payload: T,
}

/// A payload type that has a topic and a JSON Schema.
pub trait WireEvent: Serialize + DeserializeOwned {
    const TOPIC: &'static str;
    /// The JSON Schema document for this topic (draft 2020-12).
    const JSON_SCHEMA: &'static str;
}

impl WireEvent for Quote {
    const TOPIC: &'static str = topics::QUOTES;
    const JSON_SCHEMA: &'static str = include_str!("../json/quotes.v1.schema.json");
}
impl WireEvent for Bar {
    const TOPIC: &'static str = topics::BARS;
    const JSON_SCHEMA: &'static str = include_str!("../json/bars.v1.schema.json");
}
impl WireEvent for Signal {
    const TOPIC: &'static str = topics::SIGNALS;
    const JSON_SCHEMA: &'static str = include_str!("../json/signals.v1.schema.json");
}
impl WireEvent for AlertEvent {
    const TOPIC: &'static str = topics::ALERTS;
    const JSON_SCHEMA: &'static str = include_str!("../json/alerts.v1.schema.json");
}

/// Encodes an event as a v1 wire message.
pub fn encode<T: WireEvent>(event: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail: no maps with non-string keys,
    // no foreign Serialize impls that error.
    serde_json::to_vec(&Out {
        v: WIRE_VERSION,
        payload: event,
    })
    .unwrap_or_default()
}

/// Decodes a v1 wire message; the version must match.
pub fn decode<T: WireEvent>(bytes: &[u8]) -> Result<T> {
    let msg: In<T> = serde_json::from_slice(bytes)?;
    if msg.v != WIRE_VERSION {
        return Err(SchemaError::Version(msg.v, WIRE_VERSION));
    }
    Ok(msg.payload)
}

/// A `quotes.v1` message read in one pass: [`decode`] goes through `#[serde(flatten)]`,
/// which buffers every field before building the payload and costs several times more.
/// Field names, defaults and the handling of unknown fields are those of [`Quote`].
#[derive(Deserialize)]
struct QuoteV1 {
    v: u32,
    venue: Venue,
    symbol: Symbol,
    kind: QuoteKind,
    price: f64,
    size: f64,
    #[serde(default)]
    side: Option<Side>,
    #[serde(default)]
    trade_id: Option<u64>,
    #[serde(default)]
    bid: Option<f64>,
    #[serde(default)]
    ask: Option<f64>,
    ts_event: TimestampNs,
    ts_ingest: TimestampNs,
}

/// Decodes and validates a quote (the pipeline's entry check).
pub fn decode_quote(bytes: &[u8]) -> Result<Quote> {
    // Only a JSON object takes the one-pass path (a derived struct would also take an
    // array); anything it rejects is decoded again the generic way, so errors, and the
    // payloads accepted, are exactly [`decode`]'s.
    let object = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let fast = if object {
        serde_json::from_slice::<QuoteV1>(bytes).ok()
    } else {
        None
    };
    let Some(m) = fast else {
        let q: Quote = decode(bytes)?;
        q.validate()?;
        return Ok(q);
    };
    if m.v != WIRE_VERSION {
        return Err(SchemaError::Version(m.v, WIRE_VERSION));
    }
    let q = Quote {
        venue: m.venue,
        symbol: m.symbol,
        kind: m.kind,
        price: m.price,
        size: m.size,
        side: m.side,
        trade_id: m.trade_id,
        bid: m.bid,
        ask: m.ask,
        ts_event: m.ts_event,
        ts_ingest: m.ts_ingest,
    };
    q.validate()?;
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass decoder accepts and rejects exactly what the generic one does.
    #[test]
    fn decode_quote_agrees_with_the_generic_decoder() {
        let payloads: &[&str] = &[
            r#"{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":64000.5,"size":0.25,"side":"buy","trade_id":7,"ts_event":1000,"ts_ingest":2000}"#,
            r#"{"v":1,"venue":"coinbase","symbol":"ETH-USD","kind":"ticker","price":3000,"size":0,"bid":2999.5,"ask":3000.5,"ts_event":1,"ts_ingest":1}"#,
            r#"{"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":1.0,"size":1.0,"ts_event":1,"ts_ingest":1,"v":1,"extra":{"a":[1,2]}}"#,
            r#"{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":1.0,"size":1.0,"side":null,"trade_id":null,"ts_event":1,"ts_ingest":1}"#,
            r#"{"v":2,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":1.0,"size":1.0,"ts_event":1,"ts_ingest":1}"#,
            r#"{"v":1,"venue":"binance","symbol":"btc-usdt","kind":"trade","price":1.0,"size":1.0,"ts_event":1,"ts_ingest":1}"#,
            r#"{"v":1,"venue":"nasdaq","symbol":"BTC-USDT","kind":"trade","price":1.0,"size":1.0,"ts_event":1,"ts_ingest":1}"#,
            r#"{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","size":1.0,"ts_event":1,"ts_ingest":1}"#,
            r#"{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":-1.0,"size":1.0,"ts_event":1,"ts_ingest":1}"#,
            r#"{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":"1.0","size":1.0,"ts_event":1,"ts_ingest":1}"#,
            r#"{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":1.0,"size":1.0,"ts_event":0,"ts_ingest":1}"#,
            r#"{"v":1,"venue":"binance""#,
            r#"[1,2,3]"#,
            r#"[1,"binance","BTC-USDT","trade",1.0,1.0,null,null,null,null,1,1]"#,
            r#"{"v":1,"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":1.0,"size":1.0,"ts_event":1,"ts_ingest":1}"#,
            r#"  {"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":2.0,"price":1.0,"size":1.0,"ts_event":1,"ts_ingest":1}"#,
            r#"not json"#,
        ];
        for p in payloads {
            let generic = decode::<Quote>(p.as_bytes()).and_then(|q| q.validate().map(|()| q));
            let fast = decode_quote(p.as_bytes());
            match (&generic, &fast) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{p}"),
                (Err(a), Err(b)) => assert_eq!(a.reason(), b.reason(), "{p}: {a} / {b}"),
                _ => panic!("{p}: generic {generic:?}, one-pass {fast:?}"),
            }
        }
    }
}
