//! Binance REST: `/api/v3/klines`, paged 1,000 candles per call.

use async_trait::async_trait;
use pricestream_schemas::{Candle, Clock, Interval, Symbol, TimestampNs, Venue, NANOS_PER_MILLI};
use serde_json::Value;
use std::sync::Arc;

use crate::candles::CandleSource;
use crate::error::{ConnectorError, Result};
use crate::http::VenueHttp;
use crate::symbols::SymbolMap;

use super::parse;

/// Most candles one klines call returns.
pub const KLINES_PAGE: usize = 1_000;

pub struct BinanceRest {
    http: VenueHttp,
    symbols: SymbolMap,
    klines_weight: u32,
    clock: Arc<dyn Clock>,
}

impl BinanceRest {
    pub fn new(
        http: VenueHttp,
        symbols: SymbolMap,
        klines_weight: u32,
        clock: Arc<dyn Clock>,
    ) -> Self {
        BinanceRest {
            http,
            symbols,
            klines_weight,
            clock,
        }
    }

    pub fn http(&self) -> &VenueHttp {
        &self.http
    }

    pub fn symbols(&self) -> &SymbolMap {
        &self.symbols
    }

    /// One klines call: candles with open time in `[start, end]` (milliseconds, inclusive
    /// as Binance defines them), at most `limit`.
    pub async fn klines(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Candle>> {
        let venue_symbol = self.symbols.venue_symbol(symbol).ok_or_else(|| {
            ConnectorError::Config(format!("binance: no venue symbol configured for {symbol}"))
        })?;
        let rows: Vec<Value> = self
            .http
            .get_json(
                "/api/v3/klines",
                &[
                    ("symbol", venue_symbol.to_ascii_uppercase()),
                    ("interval", interval.as_str().to_string()),
                    ("startTime", start_ms.to_string()),
                    ("endTime", end_ms.to_string()),
                    ("limit", limit.to_string()),
                ],
                self.klines_weight,
            )
            .await?;
        let now = self.clock.now_ns();
        rows.iter()
            .map(|r| parse::kline_row(r, symbol, interval, now))
            .collect()
    }
}

#[async_trait]
impl CandleSource for BinanceRest {
    fn venue(&self) -> Venue {
        Venue::Binance
    }

    async fn candles(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<Candle>> {
        let step = interval.nanos();
        // the first bucket that starts at or after `from`
        let mut next = interval.bucket_start(from + step - 1);
        let mut out: Vec<Candle> = Vec::new();
        while next < to {
            let start_ms = next / NANOS_PER_MILLI;
            let end_ms = (to - 1) / NANOS_PER_MILLI;
            let page = self
                .klines(symbol, interval, start_ms, end_ms, KLINES_PAGE)
                .await?;
            let full = page.len() >= KLINES_PAGE;
            let fresh: Vec<Candle> = page
                .into_iter()
                .filter(|c| c.open_time >= next && c.open_time < to)
                .collect();
            let Some(last) = fresh.last().map(|c| c.open_time) else {
                break;
            };
            next = last + step;
            if !full {
                next = to;
            }
            out.extend(fresh);
        }
        Ok(out)
    }
}
