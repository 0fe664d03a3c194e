//! The Kafka transport: connectors publish quotes to `quotes.v1`; `pricestream process`
//! reads them in a consumer group, and the sinks publish bars, signals and dead letters
//! to their topics. Offsets are committed only once the sinks have made durable every
//! output that depends on them (see [`source`]).

pub mod admin;
pub mod config;
pub mod metrics;
pub mod producer;
pub mod results;
pub mod source;

pub use admin::{ensure_topics, partition_count};
pub use config::{KafkaConfig, Topics};
pub use producer::{KafkaQuotePublisher, Message, Producer};
pub use results::KafkaResults;
pub use source::{
    acknowledge_revocation, consumer, CheckpointStore, CommitTracker, Committer, KafkaConsumer,
    KafkaSource, Resume, WarmupLoader,
};

use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("{failed} message(s) to {topic} could not be delivered: {source}")]
    Delivery {
        topic: String,
        failed: usize,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("the producer queue stayed full for a minute")]
    QueueFull,
    #[error("creating topic {topic}: {message}")]
    CreateTopic { topic: String, message: String },
    #[error("topic {0} has no partitions (is the broker reachable?)")]
    NoPartitions(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, KafkaError>;

/// Settings shared by the producer, the consumer and the admin client.
pub(crate) fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        .set(
            "statistics.interval.ms",
            cfg.statistics_interval_ms.to_string(),
        );
    for (k, v) in &cfg.properties {
        cc.set(k, v);
    }
    cc
}
