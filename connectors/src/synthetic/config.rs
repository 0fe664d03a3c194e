//! Settings of the synthetic market (section `[connectors.synthetic]`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    pub enabled: bool,
    /// Same seed, same stream.
    pub seed: u64,
    /// Canonical symbols; well-known ones start at realistic prices.
    pub symbols: Vec<String>,
    /// Mean trades per second per symbol, in simulated time.
    pub trades_per_sec: f64,
    /// Simulated seconds per wall-clock second; 0 runs as fast as possible.
    pub speed: f64,
    /// Simulated start, Unix milliseconds; default: now.
    pub start_ms: Option<i64>,
    /// Annualised volatility of the random walk.
    pub volatility: f64,
    /// Share of trades delivered late, and by how much at most (simulated ms).
    pub disorder_fraction: f64,
    pub disorder_max_ms: i64,
    /// Stop after this many trades (for benchmarks and tests).
    pub max_trades: Option<u64>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            enabled: true,
            seed: 42,
            symbols: ["BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT", "XRP-USDT"]
                .map(String::from)
                .to_vec(),
            trades_per_sec: 5.0,
            speed: 1.0,
            start_ms: None,
            volatility: 0.6,
            disorder_fraction: 0.02,
            disorder_max_ms: 1_500,
            max_trades: None,
        }
    }
}
