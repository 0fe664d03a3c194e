//! Binance payloads → PriceStream events. Numbers arrive as decimal strings; anything that
//! does not parse, or breaks a candle's invariants, is an error and never data.

use pricestream_schemas::{
    Candle, Interval, Quote, QuoteKind, Side, Symbol, TimestampNs, Venue, NANOS_PER_MILLI,
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ConnectorError, ErrorKind, Result};
use crate::symbols::SymbolMap;

const VENUE: &str = "binance";

fn bad(message: impl Into<String>) -> ConnectorError {
    ConnectorError::venue(VENUE, ErrorKind::Decode, message)
}

fn num(v: &Value, what: &str) -> Result<f64> {
    let x = match v {
        Value::String(s) => s.parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    x.filter(|x| x.is_finite())
        .ok_or_else(|| bad(format!("{what}: not a number: {v}")))
}

fn int(v: &Value, what: &str) -> Result<i64> {
    v.as_i64()
        .ok_or_else(|| bad(format!("{what}: not an integer: {v}")))
}

fn ms(v: i64) -> Result<TimestampNs> {
    v.checked_mul(NANOS_PER_MILLI)
        .filter(|t| *t > 0)
        .ok_or_else(|| bad(format!("timestamp {v} out of range")))
}

fn checked(c: Candle) -> Result<Candle> {
    let ok = [c.open, c.high, c.low, c.close].iter().all(|p| *p > 0.0)
        && c.low <= c.open.min(c.close)
        && c.high >= c.open.max(c.close)
        && c.volume >= 0.0
        && c.notional >= 0.0;
    if ok {
        Ok(c)
    } else {
        Err(bad(format!(
            "{} {} candle at {} breaks OHLC invariants",
            c.symbol, c.interval, c.open_time
        )))
    }
}

/// One row of `/api/v3/klines`: `[open_time, open, high, low, close, volume, close_time,
/// quote_volume, trades, taker_base, taker_quote, ignore]`.
pub fn kline_row(
    row: &Value,
    symbol: &Symbol,
    interval: Interval,
    now: TimestampNs,
) -> Result<Candle> {
    let a = row
        .as_array()
        .filter(|a| a.len() >= 9)
        .ok_or_else(|| bad("kline row is not an array of at least 9 fields"))?;
    let open_time = ms(int(&a[0], "open_time")?)?;
    if interval.bucket_start(open_time) != open_time {
        return Err(bad(format!(
            "kline open time {open_time} is not on a {interval} boundary"
        )));
    }
    let close_time = ms(int(&a[6], "close_time")?)?;
    checked(Candle {
        venue: Venue::Binance,
        symbol: symbol.clone(),
        interval,
        open_time,
        open: num(&a[1], "open")?,
        high: num(&a[2], "high")?,
        low: num(&a[3], "low")?,
        close: num(&a[4], "close")?,
        volume: num(&a[5], "volume")?,
        notional: num(&a[7], "quote_volume")?,
        trade_count: u64::try_from(int(&a[8], "trades")?).map_err(|_| bad("negative trades"))?,
        closed: close_time < now,
        ts_event: close_time,
        ts_ingest: now,
    })
}

/// An event of the live streams.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Trade(Quote),
    /// A kline update; only closed ones become bars.
    Candle(Candle),
    /// Subscription acknowledgements and stream kinds we do not read.
    Ignored,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    msg: Option<String>,
}

/// Parses one message of a combined stream (`{"stream": …, "data": …}`), or a raw event.
/// A symbol that is not configured is an error (the venue sent what we did not ask for).
pub fn ws_message(text: &str, symbols: &SymbolMap, now: TimestampNs) -> Result<WsEvent> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| {
        ConnectorError::venue(
            VENUE,
            if e.is_eof() {
                ErrorKind::Truncated
            } else {
                ErrorKind::Decode
            },
            format!("WebSocket message: {e}"),
        )
    })?;
    if let (Some(code), Some(msg)) = (&env.code, &env.msg) {
        return Err(ConnectorError::venue(
            VENUE,
            ErrorKind::WebSocket,
            format!("venue error {code}: {msg}"),
        ));
    }
    if env.id.is_some() && env.stream.is_none() {
        let _ = env.result;
        return Ok(WsEvent::Ignored);
    }
    let data = match env.data {
        Some(d) => d,
        None => serde_json::from_str::<Value>(text).map_err(|e| bad(e.to_string()))?,
    };
    let kind = data.get("e").and_then(Value::as_str).unwrap_or("");
    let venue_symbol = data
        .get("s")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{kind} event without a symbol")))?;
    let symbol = || {
        symbols
            .canonical(venue_symbol)
            .cloned()
            .ok_or_else(|| bad(format!("symbol {venue_symbol} is not configured")))
    };
    let field = |k: &str| data.get(k).unwrap_or(&Value::Null);
    match kind {
        "trade" | "aggTrade" => {
            let id_key = if kind == "trade" { "t" } else { "a" };
            let maker_is_buyer = field("m").as_bool().unwrap_or(false);
            let q = Quote {
                venue: Venue::Binance,
                symbol: symbol()?,
                kind: QuoteKind::Trade,
                price: num(field("p"), "price")?,
                size: num(field("q"), "quantity")?,
                // the buyer was the maker: the aggressor sold
                side: Some(if maker_is_buyer {
                    Side::Sell
                } else {
                    Side::Buy
                }),
                trade_id: field(id_key).as_u64(),
                bid: None,
                ask: None,
                ts_event: ms(int(field("T"), "trade time")?)?,
                ts_ingest: now,
            };
            q.validate().map_err(|e| bad(e.to_string()))?;
            Ok(WsEvent::Trade(q))
        }
        "kline" => {
            let k = field("k");
            let kf = |key: &str| k.get(key).unwrap_or(&Value::Null);
            let interval: Interval = kf("i")
                .as_str()
                .unwrap_or("")
                .parse()
                .map_err(|e: pricestream_schemas::SchemaError| bad(e.to_string()))?;
            let c = checked(Candle {
                venue: Venue::Binance,
                symbol: symbol()?,
                interval,
                open_time: ms(int(kf("t"), "open time")?)?,
                open: num(kf("o"), "open")?,
                high: num(kf("h"), "high")?,
                low: num(kf("l"), "low")?,
                close: num(kf("c"), "close")?,
                volume: num(kf("v"), "volume")?,
                notional: num(kf("q"), "quote volume")?,
                trade_count: kf("n").as_u64().unwrap_or(0),
                closed: kf("x").as_bool().unwrap_or(false),
                ts_event: ms(int(field("E"), "event time")?)?,
                ts_ingest: now,
            })?;
            Ok(WsEvent::Candle(c))
        }
        _ => Ok(WsEvent::Ignored),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    fn fixture(rel: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures")
            .join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn map(pairs: &[(&str, &str)]) -> SymbolMap {
        let t: BTreeMap<String, String> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        SymbolMap::new("binance", &t).unwrap()
    }

    #[test]
    fn recorded_rest_klines_parse() {
        let rows: Vec<Value> =
            serde_json::from_str(&fixture("binance/rest/api_v3_klines_BTCUSDT_1m.json")).unwrap();
        let s = Symbol::new("BTC-USDT").unwrap();
        let c: Vec<Candle> = rows
            .iter()
            .map(|r| kline_row(r, &s, Interval::M1, i64::MAX).unwrap())
            .collect();
        assert_eq!(c.len(), 10);
        assert_eq!(c[0].open_time, 1_634_943_780_000 * NANOS_PER_MILLI);
        assert_eq!(c[0].open, 60_685.22);
        assert_eq!(c[0].trade_count, 617);
        assert!(c.iter().all(|c| c.closed));
        assert!(kline_row(&serde_json::json!([1, "x"]), &s, Interval::M1, 0).is_err());
    }

    #[test]
    fn recorded_ws_trades_and_klines_parse() {
        let m = map(&[
            ("ETHUSDT", "ETH-USDT"),
            ("NKNUSDT", "NKN-USDT"),
            ("LRCBTC", "LRC-BTC"),
        ]);
        let now = 1_700_000_000_000 * NANOS_PER_MILLI;
        let t = fixture("binance/ws/ws_spot_trade_ETHUSDT.json");
        let WsEvent::Trade(q) = ws_message(&t, &m, now).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(q.symbol.as_str(), "ETH-USDT");
        assert_eq!(q.price, 4149.74);
        assert_eq!(q.trade_id, Some(705_291_099));
        assert_eq!(q.side, Some(Side::Sell));
        let mut klines = 0;
        for line in fixture("binance/ws/binance_spot_combined_stream_2021-10-12.ndjson").lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let msg = v["msg"].to_string();
            match ws_message(&msg, &m, now) {
                Ok(WsEvent::Candle(c)) => {
                    klines += 1;
                    assert!(c.high >= c.low);
                }
                Ok(_) => {}
                Err(e) => assert!(e.to_string().contains("not configured"), "{e}"),
            }
        }
        assert!(klines > 0);
        let cut = &t[..t.len() / 2];
        assert_eq!(
            ws_message(cut, &m, now).unwrap_err().kind(),
            Some(ErrorKind::Truncated)
        );
    }
}
