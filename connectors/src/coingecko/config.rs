//! Settings of the CoinGecko connector (section `[connectors.coingecko]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::http::HttpConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoinGeckoConfig {
    pub enabled: bool,
    pub base_url: String,
    /// Sent as `x-cg-demo-api-key` when set.
    pub api_key: Option<String>,
    /// `coin id/vs currency` → canonical symbol, e.g. `"bitcoin/usd" = "BTC-USD"`.
    pub symbols: BTreeMap<String, String>,
    /// `/simple/price` is polled this often (and once at start).
    pub poll_interval_secs: u64,
    pub http: HttpConfig,
}

impl Default for CoinGeckoConfig {
    fn default() -> Self {
        CoinGeckoConfig {
            enabled: false,
            base_url: "https://api.coingecko.com/api/v3".into(),
            api_key: None,
            symbols: [("bitcoin/usd", "BTC-USD"), ("ethereum/usd", "ETH-USD")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .into_iter()
                .collect(),
            poll_interval_secs: 60,
            // the public API allows about 30 calls a minute
            http: HttpConfig {
                weight_per_window: 30,
                ..HttpConfig::default()
            },
        }
    }
}
