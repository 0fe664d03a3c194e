//! Settings of the Coinbase Exchange connector (section `[connectors.coinbase]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Coinbase Exchange WebSocket channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Every trade, published as trade quotes.
    Matches,
    /// Ticker updates (last price, best bid/ask), published as ticker quotes.
    Ticker,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Matches => "matches",
            Channel::Ticker => "ticker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoinbaseConfig {
    pub enabled: bool,
    pub ws_url: String,
    /// Venue product id → canonical symbol.
    pub symbols: BTreeMap<String, String>,
    pub channels: Vec<Channel>,
    pub heartbeat_timeout_secs: u64,
    pub connect_timeout_ms: u64,
    pub reconnect_initial_delay_ms: u64,
    pub reconnect_max_delay_ms: u64,
}

impl Default for CoinbaseConfig {
    fn default() -> Self {
        CoinbaseConfig {
            enabled: false,
            ws_url: "wss://ws-feed.exchange.coinbase.com".into(),
            symbols: [("BTC-USD", "BTC-USD"), ("ETH-USD", "ETH-USD")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .into_iter()
                .collect(),
            channels: vec![Channel::Matches],
            heartbeat_timeout_secs: 30,
            connect_timeout_ms: 10_000,
            reconnect_initial_delay_ms: 500,
            reconnect_max_delay_ms: 30_000,
        }
    }
}
