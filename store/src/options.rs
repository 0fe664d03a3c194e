//! Settings a store is opened with: pool sizing, timeouts, and TimescaleDB policies.

use serde::{Deserialize, Serialize};

/// Connection pool and session settings. SQLite uses `max_connections` only.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a caller waits for a free connection before the call fails.
    pub acquire_timeout_ms: u64,
    /// Idle connections above `min_connections` are closed after this long; 0 = never.
    pub idle_timeout_secs: u64,
    /// PostgreSQL `statement_timeout` for every session; 0 = no limit.
    pub statement_timeout_ms: u64,
    /// PostgreSQL: raw quotes go in by binary `COPY … FROM STDIN`; off, by `INSERT`, for
    /// servers and proxies without `COPY` (PGlite's socket server, some poolers).
    pub copy_quotes: bool,
    pub timescale: TimescaleConfig,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 4,
            min_connections: 0,
            acquire_timeout_ms: 30_000,
            idle_timeout_secs: 600,
            statement_timeout_ms: 30_000,
            copy_quotes: true,
            timescale: TimescaleConfig::default(),
        }
    }
}

/// Whether the PostgreSQL migrations turn the time-series tables into TimescaleDB
/// hypertables. Decided once, when the tables are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimescaleMode {
    /// Use TimescaleDB when the server offers the extension, plain tables otherwise.
    Auto,
    /// Require TimescaleDB; migrating fails without it.
    On,
    /// Plain PostgreSQL tables even when TimescaleDB is available.
    Off,
}

impl TimescaleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TimescaleMode::Auto => "auto",
            TimescaleMode::On => "on",
            TimescaleMode::Off => "off",
        }
    }
}

/// TimescaleDB settings (`[store.timescale]`). Policies are (re)applied by every
/// `migrate`, so changing a value here and running `pricestream migrate` takes effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimescaleConfig {
    pub mode: TimescaleMode,
    /// Compress hypertable chunks older than this many days; 0 = no compression policy.
    pub compress_after_days: u32,
    /// Drop raw quotes older than this many days; 0 = keep forever.
    pub retain_quotes_days: u32,
    /// Drop bars older than this many days; 0 = keep forever.
    pub retain_bars_days: u32,
    /// Drop signals older than this many days; 0 = keep forever.
    pub retain_signals_days: u32,
}

impl Default for TimescaleConfig {
    fn default() -> Self {
        TimescaleConfig {
            mode: TimescaleMode::Auto,
            compress_after_days: 7,
            retain_quotes_days: 90,
            retain_bars_days: 0,
            retain_signals_days: 0,
        }
    }
}
