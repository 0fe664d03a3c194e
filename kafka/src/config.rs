//! Kafka settings (section `[kafka]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Topic names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub quotes: String,
    pub bars: String,
    pub signals: String,
    pub alerts: String,
    pub dlq: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            quotes: "quotes.v1".into(),
            bars: "bars.v1".into(),
            signals: "signals.v1".into(),
            alerts: "alerts.v1".into(),
            dlq: "quotes.dlq".into(),
        }
    }
}

impl Topics {
    /// Every topic, quotes first.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.quotes,
            &self.bars,
            &self.signals,
            &self.alerts,
            &self.dlq,
        ]
    }
}

/// Kafka transport settings. An empty `brokers` means Kafka is not used (the embedded
/// in-process bus is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`; empty = embedded bus.
    pub brokers: String,
    pub client_id: String,
    /// Consumer group of `pricestream process`.
    pub group_id: String,
    pub topics: Topics,
    /// Partitions of topics created at start (existing topics are left as they are).
    pub partitions: u32,
    pub replication_factor: i32,
    /// Producer compression: `lz4`, `zstd`, `gzip`, `snappy` or `none`.
    pub compression: String,
    /// How long the producer waits to fill a batch.
    pub linger_ms: u64,
    /// Producer batch size in bytes.
    pub batch_bytes: u64,
    /// A produced message not acknowledged within this time fails (and is retried by us).
    pub message_timeout_ms: u64,
    /// Attempts to deliver one message (each after librdkafka's own retries).
    pub delivery_attempts: u32,
    /// A quote whose event time is further than this in the future goes to the DLQ.
    pub max_future_ms: i64,
    /// Offsets are committed at most this often.
    pub commit_interval_ms: u64,
    pub session_timeout_ms: u64,
    /// Consumer and producer statistics (lag, rates) are refreshed this often.
    pub statistics_interval_ms: u64,
    /// Extra librdkafka properties for both clients, e.g. `"security.protocol" = "ssl"`.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            client_id: "pricestream".into(),
            group_id: "pricestream-process".into(),
            topics: Topics::default(),
            partitions: 8,
            replication_factor: 1,
            compression: "lz4".into(),
            linger_ms: 5,
            batch_bytes: 1_000_000,
            message_timeout_ms: 30_000,
            delivery_attempts: 5,
            max_future_ms: 300_000,
            commit_interval_ms: 1_000,
            session_timeout_ms: 10_000,
            statistics_interval_ms: 1_000,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    /// Checks what librdkafka would only report later.
    pub fn validate(&self) -> Result<(), String> {
        if !["lz4", "zstd", "gzip", "snappy", "none"].contains(&self.compression.as_str()) {
            return Err(format!(
                "kafka.compression {:?}: expected lz4, zstd, gzip, snappy or none",
                self.compression
            ));
        }
        if self.partitions == 0 {
            return Err("kafka.partitions must be at least 1".into());
        }
        if self.delivery_attempts == 0 {
            return Err("kafka.delivery_attempts must be at least 1".into());
        }
        for t in self.topics.all() {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(format!("invalid topic name {t:?}"));
            }
        }
        Ok(())
    }
}
