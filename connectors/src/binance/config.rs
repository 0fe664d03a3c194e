//! Settings of the Binance connector (section `[connectors.binance]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::heal::HealConfig;
use crate::http::HttpConfig;

/// A Binance WebSocket stream kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Every trade (`<symbol>@trade`), published as trade quotes.
    Trade,
    /// Aggregated trades (`<symbol>@aggTrade`), published as trade quotes.
    AggTrade,
    /// 1-minute klines (`<symbol>@kline_1m`); closed candles are written as 1m bars.
    #[serde(rename = "kline_1m")]
    Kline1m,
}

impl StreamKind {
    pub fn suffix(self) -> &'static str {
        match self {
            StreamKind::Trade => "trade",
            StreamKind::AggTrade => "aggTrade",
            StreamKind::Kline1m => "kline_1m",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinanceConfig {
    pub enabled: bool,
    /// REST base URL (klines backfill and gap healing).
    pub rest_url: String,
    /// WebSocket base URL; combined streams are read from `<ws_url>/stream`.
    pub ws_url: String,
    /// Venue symbol → canonical symbol.
    pub symbols: BTreeMap<String, String>,
    /// Live streams per symbol; empty turns the WebSocket off.
    pub streams: Vec<StreamKind>,
    /// A session with no message (not even a ping) for this long is reconnected.
    pub heartbeat_timeout_secs: u64,
    pub connect_timeout_ms: u64,
    pub reconnect_initial_delay_ms: u64,
    pub reconnect_max_delay_ms: u64,
    /// Request weight of one `/api/v3/klines` call with limit 1000.
    pub klines_weight: u32,
    pub http: HttpConfig,
    pub heal: HealConfig,
}

impl Default for BinanceConfig {
    fn default() -> Self {
        BinanceConfig {
            enabled: false,
            rest_url: "https://api.binance.com".into(),
            ws_url: "wss://stream.binance.com:9443".into(),
            symbols: [("BTCUSDT", "BTC-USDT"), ("ETHUSDT", "ETH-USDT")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .into_iter()
                .collect(),
            streams: vec![StreamKind::Trade],
            heartbeat_timeout_secs: 60,
            connect_timeout_ms: 10_000,
            reconnect_initial_delay_ms: 500,
            reconnect_max_delay_ms: 30_000,
            klines_weight: 2,
            http: HttpConfig::default(),
            heal: HealConfig::default(),
        }
    }
}
