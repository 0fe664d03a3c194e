//! Coinbase Exchange feed messages → quotes. Decimals arrive as strings, times as RFC 3339.

use pricestream_schemas::time::parse_time;
use pricestream_schemas::{Quote, QuoteKind, Side, TimestampNs, Venue};
use serde_json::Value;

use crate::error::{ConnectorError, ErrorKind, Result};
use crate::symbols::SymbolMap;
use crate::ws::FeedEvent;

const VENUE: &str = "coinbase";

fn bad(message: impl Into<String>) -> ConnectorError {
    ConnectorError::venue(VENUE, ErrorKind::Decode, message)
}

fn num(v: &Value, what: &str) -> Result<f64> {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|x| x.is_finite())
        .ok_or_else(|| bad(format!("{what}: not a decimal string: {v}")))
}

/// Parses one feed message. `last_match` (a repeat of the latest trade, sent on
/// subscribe) is ignored so a reconnect does not count a trade twice.
pub fn message(text: &str, symbols: &SymbolMap, now: TimestampNs) -> Result<FeedEvent> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        ConnectorError::venue(
            VENUE,
            if e.is_eof() {
                ErrorKind::Truncated
            } else {
                ErrorKind::Decode
            },
            format!("feed message: {e}"),
        )
    })?;
    let kind = v["type"].as_str().unwrap_or("");
    if kind == "error" {
        return Err(ConnectorError::venue(
            VENUE,
            ErrorKind::WebSocket,
            format!(
                "venue error: {} {}",
                v["message"].as_str().unwrap_or(""),
                v["reason"].as_str().unwrap_or("")
            ),
        ));
    }
    if kind != "match" && kind != "ticker" {
        return Ok(FeedEvent::Ignored);
    }
    let product = v["product_id"]
        .as_str()
        .ok_or_else(|| bad(format!("{kind} without product_id")))?;
    let symbol = symbols
        .canonical(product)
        .cloned()
        .ok_or_else(|| bad(format!("product {product} is not configured")))?;
    let ts_event = v["time"]
        .as_str()
        .and_then(parse_time)
        .ok_or_else(|| bad(format!("{kind}: bad time {}", v["time"])))?;
    let side = match v["side"].as_str() {
        Some("buy") => Some(Side::Buy),
        Some("sell") => Some(Side::Sell),
        _ => None,
    };
    let q = if kind == "match" {
        Quote {
            venue: Venue::Coinbase,
            symbol,
            kind: QuoteKind::Trade,
            price: num(&v["price"], "price")?,
            size: num(&v["size"], "size")?,
            // a match names the maker's side; the aggressor took the other one
            side: side.map(|s| match s {
                Side::Buy => Side::Sell,
                Side::Sell => Side::Buy,
            }),
            trade_id: v["trade_id"].as_u64(),
            bid: None,
            ask: None,
            ts_event,
            ts_ingest: now,
        }
    } else {
        Quote {
            venue: Venue::Coinbase,
            symbol,
            kind: QuoteKind::Ticker,
            price: num(&v["price"], "price")?,
            size: if v["last_size"].is_null() {
                0.0
            } else {
                num(&v["last_size"], "last_size")?
            },
            side,
            trade_id: v["trade_id"].as_u64(),
            bid: v["best_bid"].as_str().and_then(|s| s.parse().ok()),
            ask: v["best_ask"].as_str().and_then(|s| s.parse().ok()),
            ts_event,
            ts_ingest: now,
        }
    };
    q.validate().map_err(|e| bad(e.to_string()))?;
    Ok(FeedEvent::Quote(q))
}
