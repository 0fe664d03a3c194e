//! Configuration: built-in defaults, an optional TOML file, then environment overrides
//! `PRICESTREAM_<SECTION>__<KEY>=value` (e.g. `PRICESTREAM_API__LISTEN=0.0.0.0:8080`,
//! `PRICESTREAM_PIPELINE__WORKERS=2`, `PRICESTREAM_DATA_DIR=/var/lib/pricestream`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pricestream_api::ApiConfig;
use pricestream_connectors::binance::BinanceConfig;
use pricestream_connectors::coinbase::CoinbaseConfig;
use pricestream_connectors::coingecko::CoinGeckoConfig;
use pricestream_connectors::replay::ReplayConfig;
use pricestream_connectors::supervisor::SchedulerConfig;
use pricestream_connectors::synthetic::SyntheticConfig;
use pricestream_pipeline::alerts::AlertsConfig;
use pricestream_pipeline::PipelineConfig;
use pricestream_store::{StoreOptions, TimescaleConfig};
use serde::{Deserialize, Serialize};

/// Environment variables with the prefix that are not configuration keys.
const RESERVED_ENV: [&str; 3] = ["CONFIG", "LOG", "LOG_FORMAT"];
/// Prefixes (after `PRICESTREAM_`) of variables that belong to the test and benchmark
/// harnesses (e.g. `PRICESTREAM_TEST_PG_URL`), not to the configuration.
const RESERVED_ENV_PREFIXES: [&str; 2] = ["TEST_", "BENCH_"];
const ENV_PREFIX: &str = "PRICESTREAM_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder for the embedded store and the lake.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub lake: LakeConfig,
    pub bus: BusConfig,
    pub pipeline: PipelineConfig,
    pub analytics: AnalyticsConfig,
    pub connectors: ConnectorsConfig,
    pub kafka: pricestream_kafka::KafkaConfig,
    pub alerts: AlertsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Bars the seasonality profiles are computed from.
    pub seasonality_interval: pricestream_schemas::Interval,
    /// How often `run` recomputes the profiles from the lake; 0 turns it off.
    pub seasonality_refresh_secs: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            seasonality_interval: pricestream_schemas::Interval::H1,
            seasonality_refresh_secs: 3_600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            api: ApiConfig::default(),
            store: StoreConfig::default(),
            lake: LakeConfig::default(),
            bus: BusConfig::default(),
            pipeline: PipelineConfig::default(),
            analytics: AnalyticsConfig::default(),
            connectors: ConnectorsConfig::default(),
            kafka: pricestream_kafka::KafkaConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://…` or `postgres://…`; default: `sqlite://<data_dir>/pricestream.db`.
    pub url: Option<String>,
    pub max_connections: u32,
    /// Connections the pool keeps open even when idle (PostgreSQL).
    pub min_connections: u32,
    /// How long a store call waits for a free connection before it fails.
    pub acquire_timeout_ms: u64,
    /// Idle connections above `min_connections` close after this long; 0 = never.
    pub idle_timeout_secs: u64,
    /// PostgreSQL `statement_timeout` of every session; 0 = no limit.
    pub statement_timeout_ms: u64,
    /// Apply migrations at start; when false, start refuses an unmigrated schema.
    pub auto_migrate: bool,
    /// Write raw quotes to the `quotes` table (and `quotes_latest`).
    pub quotes: bool,
    /// PostgreSQL: raw quotes by binary `COPY`; false for servers without `COPY FROM STDIN`.
    pub copy_quotes: bool,
    pub timescale: TimescaleConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let o = StoreOptions::default();
        StoreConfig {
            url: None,
            max_connections: o.max_connections,
            min_connections: o.min_connections,
            acquire_timeout_ms: o.acquire_timeout_ms,
            idle_timeout_secs: o.idle_timeout_secs,
            statement_timeout_ms: o.statement_timeout_ms,
            auto_migrate: true,
            quotes: true,
            copy_quotes: o.copy_quotes,
            timescale: o.timescale,
        }
    }
}

impl StoreConfig {
    /// The settings the store is opened with.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.max_connections,
            min_connections: self.min_connections,
            acquire_timeout_ms: self.acquire_timeout_ms,
            idle_timeout_secs: self.idle_timeout_secs,
            statement_timeout_ms: self.statement_timeout_ms,
            copy_quotes: self.copy_quotes,
            timescale: self.timescale.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    pub enabled: bool,
    /// Keep raw quotes in the lake's `quotes` dataset.
    pub quotes: bool,
    /// Default: `<data_dir>/lake`.
    pub dir: Option<PathBuf>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            enabled: true,
            quotes: true,
            dir: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// Partitions of `quotes.v1` (quotes are keyed by symbol).
    pub partitions: u32,
    /// Quotes buffered per partition before publishers wait. The default, 8 × 16,384
    /// quotes, is over a second of input at 100,000 quotes/s; four times as much cost up
    /// to 60 MiB of resident memory when the pipeline fell behind, and no throughput.
    pub capacity_per_partition: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            partitions: 8,
            capacity_per_partition: 16_384,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorsConfig {
    pub synthetic: SyntheticConfig,
    pub binance: BinanceConfig,
    pub coinbase: CoinbaseConfig,
    pub coingecko: CoinGeckoConfig,
    pub replay: ReplayConfig,
    pub scheduler: SchedulerConfig,
}

impl Config {
    /// Loads defaults, then `path` (if any), then the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config file {}", p.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, std::env::vars())?;
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.bus.partitions == 0 {
            bail!("bus.partitions must be at least 1");
        }
        self.kafka.validate().map_err(anyhow::Error::msg)?;
        if self.pipeline.allowed_lateness_ms < 0 || self.pipeline.max_out_of_orderness_ms < 0 {
            bail!("pipeline lateness and out-of-orderness must not be negative");
        }
        if self.pipeline.idle_timeout_ms <= 0 {
            bail!("pipeline.idle_timeout_ms must be positive");
        }
        if self.pipeline.stall_timeout_ms <= 0 {
            bail!("pipeline.stall_timeout_ms must be positive");
        }
        self.api
            .listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| format!("api.listen {:?} is not an address:port", self.api.listen))?;
        if let Some(m) = &self.api.metrics_listen {
            m.parse::<std::net::SocketAddr>()
                .with_context(|| format!("api.metrics_listen {m:?} is not an address:port"))?;
        }
        if self.api.max_page_rows == 0 || self.api.max_range_bars == 0 {
            bail!("api.max_page_rows and api.max_range_bars must be at least 1");
        }
        self.api.auth.jwt.validate().map_err(anyhow::Error::msg)?;
        if self.store.max_connections == 0 {
            bail!("store.max_connections must be at least 1");
        }
        if self.store.min_connections > self.store.max_connections {
            bail!("store.min_connections must not exceed store.max_connections");
        }
        if self.store.acquire_timeout_ms == 0 {
            bail!("store.acquire_timeout_ms must be positive");
        }
        self.alerts.validate().map_err(anyhow::Error::msg)?;
        let url = self.store_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            bail!("store.url {url:?} must start with sqlite: or postgres:");
        }
        Ok(())
    }

    pub fn store_url(&self) -> String {
        self.store.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("pricestream.db").display()
            )
        })
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.lake
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("lake"))
    }
}

/// Applies `PRICESTREAM_A__B=value` overrides onto the TOML table. Values are read as TOML
/// (numbers, booleans, arrays) when they parse as such, else as strings.
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (key, value) in vars {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if RESERVED_ENV.contains(&rest)
            || rest.is_empty()
            || RESERVED_ENV_PREFIXES.iter().any(|p| rest.starts_with(p))
        {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value.clone()));
        let mut node = &mut *table;
        for (i, part) in path.iter().enumerate() {
            if i + 1 == path.len() {
                node.insert(part.clone(), parsed.clone());
            } else {
                let entry = node
                    .entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                node = match entry {
                    toml::Value::Table(t) => t,
                    _ => bail!("environment override {key}: {part} is not a section"),
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults_where_it_says_so() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pricestream.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg: Config = toml::from_str(&text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.pipeline, PipelineConfig::default());
        assert_eq!(cfg.api, ApiConfig::default());
        assert_eq!(cfg.store, StoreConfig::default());
        assert_eq!(cfg.connectors.binance, BinanceConfig::default());
        assert_eq!(cfg.connectors.scheduler, SchedulerConfig::default());
        assert_eq!(cfg.connectors.coinbase, CoinbaseConfig::default());
        assert_eq!(cfg.connectors.coingecko, CoinGeckoConfig::default());
        assert_eq!(cfg.connectors.replay, ReplayConfig::default());
        assert_eq!(cfg.alerts, AlertsConfig::default());
    }

    #[test]
    fn env_overrides_nest_and_type() {
        let mut t = toml::Table::new();
        let vars = [
            ("PRICESTREAM_API__LISTEN", "0.0.0.0:9000"),
            ("PRICESTREAM_PIPELINE__WORKERS", "3"),
            (
                "PRICESTREAM_CONNECTORS__SYNTHETIC__SYMBOLS",
                "[\"BTC-USDT\"]",
            ),
            ("PRICESTREAM_CONFIG", "ignored.toml"),
            ("PRICESTREAM_TEST_PG_URL", "postgres://ignored"),
            ("PRICESTREAM_BENCH_BARS", "1"),
            ("OTHER", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env(&mut t, vars.into_iter()).unwrap();
        let cfg: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(cfg.api.listen, "0.0.0.0:9000");
        assert_eq!(cfg.pipeline.workers, 3);
        assert_eq!(
            cfg.connectors.synthetic.symbols,
            vec!["BTC-USDT".to_string()]
        );
    }

    #[test]
    fn store_settings_reach_the_store_options() {
        let cfg: Config = toml::from_str(
            "[store]\nurl = \"postgres://u@db/p\"\nstatement_timeout_ms = 1500\nmin_connections = 2\n\
             [store.timescale]\nmode = \"on\"\ncompress_after_days = 3\nretain_quotes_days = 14",
        )
        .unwrap();
        cfg.validate().unwrap();
        let o = cfg.store.options();
        assert_eq!(o.statement_timeout_ms, 1500);
        assert_eq!(o.min_connections, 2);
        assert_eq!(o.timescale.mode, pricestream_store::TimescaleMode::On);
        assert_eq!(o.timescale.compress_after_days, 3);
        assert_eq!(o.timescale.retain_quotes_days, 14);
        assert_eq!(o.timescale.retain_bars_days, 0);
        let mut bad = cfg.clone();
        bad.store.min_connections = 10;
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<Config>("[store.timescale]\nmode = \"maybe\"").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[api]\nlisten_port = 1").is_err());
        let mut bad = Config::default();
        bad.api.listen = "nope".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn api_auth_and_limits_are_checked() {
        let mut t = toml::Table::new();
        let vars = [
            (
                "PRICESTREAM_API__AUTH__JWT__HS256_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
            ("PRICESTREAM_API__AUTH__JWT__AUDIENCE", "pricestream"),
            ("PRICESTREAM_API__METRICS_LISTEN", "127.0.0.1:9464"),
            ("PRICESTREAM_API__MAX_RANGE_BARS", "1440"),
        ];
        apply_env(
            &mut t,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        let cfg: Config = toml::Value::Table(t).try_into().unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.api.auth.jwt.audience.as_deref(), Some("pricestream"));
        assert_eq!(cfg.api.max_range_bars, 1440);
        let mut bad = cfg.clone();
        bad.api.auth.jwt.hs256_secret = Some("too-short".into());
        assert!(bad.validate().is_err());
        let mut bad = cfg.clone();
        bad.api.metrics_listen = Some("9464".into());
        assert!(bad.validate().is_err());
        let mut bad = cfg;
        bad.api.max_range_bars = 0;
        assert!(bad.validate().is_err());
    }
}
