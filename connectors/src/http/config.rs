//! Settings of a venue's HTTP client (part of each venue section, e.g.
//! `[connectors.binance.http]`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whole-request timeout.
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Request weight the venue allows per window (Binance: 6000 per minute).
    pub weight_per_window: u32,
    pub window_ms: u64,
    /// Retries after the first attempt of a call.
    pub max_retries: u32,
    pub retry_initial_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// Consecutive failures that open the venue's circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long the breaker stays open before one probe call is let through.
    pub breaker_open_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            weight_per_window: 6_000,
            window_ms: 60_000,
            max_retries: 5,
            retry_initial_delay_ms: 500,
            retry_max_delay_ms: 30_000,
            breaker_failure_threshold: 5,
            breaker_open_ms: 30_000,
        }
    }
}
