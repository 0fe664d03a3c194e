//! CoinGecko: `/simple/price` polled on a schedule (ticker quotes), and price history from
//! `/coins/{id}/market_chart/range`.

pub mod config;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pricestream_bus::QuotePublisher;
use pricestream_schemas::{
    Clock, Quote, QuoteKind, Symbol, TimestampNs, Venue, NANOS_PER_MILLI, NANOS_PER_SEC,
};
use serde_json::Value;

pub use config::CoinGeckoConfig;

use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::VenueHttp;
use crate::metrics as m;
use crate::runs::PollJob;
use crate::symbols::SymbolMap;

pub const CONNECTOR: &str = "coingecko_poll";

fn bad(message: impl Into<String>) -> ConnectorError {
    ConnectorError::venue("coingecko", ErrorKind::Decode, message)
}

pub struct CoinGecko {
    http: VenueHttp,
    symbols: SymbolMap,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    publisher: Option<Arc<dyn QuotePublisher>>,
}

impl CoinGeckoConfig {
    pub fn build(
        &self,
        clock: Arc<dyn Clock>,
        publisher: Option<Arc<dyn QuotePublisher>>,
    ) -> Result<CoinGecko> {
        let symbols = SymbolMap::new("coingecko", &self.symbols)?;
        if let Some(bad) = self.symbols.keys().find(|k| k.split_once('/').is_none()) {
            return Err(ConnectorError::Config(format!(
                "coingecko: symbol {bad:?} must be \"coin id/vs currency\", e.g. \"bitcoin/usd\""
            )));
        }
        let mut http = VenueHttp::new("coingecko", &self.base_url, &self.http)?;
        if let Some(key) = &self.api_key {
            http = http.with_header("x-cg-demo-api-key", key)?;
        }
        Ok(CoinGecko {
            http,
            symbols,
            clock,
            poll_interval: Duration::from_secs(self.poll_interval_secs.max(1)),
            publisher,
        })
    }
}

impl CoinGecko {
    pub fn http(&self) -> &VenueHttp {
        &self.http
    }

    /// Current prices of every configured pair, as ticker quotes.
    pub async fn simple_price(&self) -> Result<Vec<Quote>> {
        let mut ids: Vec<&str> = Vec::new();
        let mut vs: Vec<&str> = Vec::new();
        for key in self.symbols.venue_symbols() {
            if let Some((id, cur)) = key.split_once('/') {
                if !ids.contains(&id) {
                    ids.push(id);
                }
                if !vs.contains(&cur) {
                    vs.push(cur);
                }
            }
        }
        let body: BTreeMap<String, BTreeMap<String, Value>> = self
            .http
            .get_json(
                "/simple/price",
                &[
                    ("ids", ids.join(",")),
                    ("vs_currencies", vs.join(",")),
                    ("include_last_updated_at", "true".into()),
                ],
                1,
            )
            .await?;
        let now = self.clock.now_ns();
        let mut out = Vec::new();
        for (id, prices) in &body {
            let updated = prices
                .get("last_updated_at")
                .and_then(Value::as_i64)
                .map(|s| s * NANOS_PER_SEC);
            for (cur, price) in prices {
                if cur == "last_updated_at" {
                    continue;
                }
                let Some(symbol) = self.symbols.canonical(&format!("{id}/{cur}")) else {
                    continue;
                };
                let price = price
                    .as_f64()
                    .ok_or_else(|| bad(format!("{id}/{cur}: price is not a number")))?;
                out.push(ticker(symbol, price, updated.unwrap_or(now), now)?);
            }
        }
        Ok(out)
    }

    /// Price history of `symbol` over `[from, to)` from `market_chart/range`, as ticker
    /// quotes at the venue's sample times (5-minute to daily, by range length).
    pub async fn history(
        &self,
        symbol: &Symbol,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<Quote>> {
        let key = self.symbols.venue_symbol(symbol).ok_or_else(|| {
            ConnectorError::Config(format!("coingecko: no coin id configured for {symbol}"))
        })?;
        let (id, cur) = key
            .split_once('/')
            .ok_or_else(|| ConnectorError::Config(format!("coingecko: bad symbol key {key}")))?;
        let body: BTreeMap<String, Value> = self
            .http
            .get_json(
                &format!("/coins/{id}/market_chart/range"),
                &[
                    ("vs_currency", cur.to_string()),
                    ("from", (from / NANOS_PER_SEC).to_string()),
                    ("to", (to / NANOS_PER_SEC).to_string()),
                ],
                1,
            )
            .await?;
        let points = body
            .get("prices")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("market_chart without prices"))?;
        let now = self.clock.now_ns();
        let mut out = Vec::with_capacity(points.len());
        for p in points {
            let (Some(ms), Some(price)) = (
                p.get(0).and_then(Value::as_i64),
                p.get(1).and_then(Value::as_f64),
            ) else {
                return Err(bad(format!("market_chart point {p} is not [ms, price]")));
            };
            let ts = ms * NANOS_PER_MILLI;
            if ts >= from && ts < to {
                out.push(ticker(symbol, price, ts, now)?);
            }
        }
        Ok(out)
    }
}

fn ticker(symbol: &Symbol, price: f64, ts_event: TimestampNs, now: TimestampNs) -> Result<Quote> {
    let q = Quote {
        venue: Venue::Coingecko,
        symbol: symbol.clone(),
        kind: QuoteKind::Ticker,
        price,
        size: 0.0,
        side: None,
        trade_id: None,
        bid: None,
        ask: None,
        ts_event,
        ts_ingest: now,
    };
    q.validate().map_err(|e| bad(e.to_string()))?;
    Ok(q)
}

#[async_trait]
impl PollJob for CoinGecko {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn interval(&self) -> Duration {
        self.poll_interval
    }

    /// One poll: the current prices, published.
    async fn run_once(&self) -> Result<u64> {
        let quotes = self.simple_price().await?;
        let n = quotes.len() as u64;
        if let Some(p) = &self.publisher {
            p.publish(quotes)
                .await
                .map_err(|e| ConnectorError::Publish(e.to_string()))?;
        }
        metrics::counter!(m::QUOTES_PUBLISHED, "connector" => CONNECTOR).increment(n);
        Ok(n)
    }
}
