//! Topic creation and broker checks.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::metrics as m;
use crate::{client_config, KafkaConfig, KafkaError, Result};

/// Creates every configured topic that does not exist yet (existing ones are left alone).
pub async fn ensure_topics(cfg: &KafkaConfig) -> Result<()> {
    cfg.validate().map_err(KafkaError::Config)?;
    let admin: AdminClient<DefaultClientContext> =
        client_config(cfg).create().map_err(KafkaError::Client)?;
    let partitions = i32::try_from(cfg.partitions).unwrap_or(i32::MAX);
    let topics: Vec<NewTopic<'_>> = cfg
        .topics
        .all()
        .into_iter()
        .map(|t| {
            NewTopic::new(
                t,
                partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(topics.iter(), &opts)
        .await
        .map_err(KafkaError::Client)?;
    for r in results {
        match r {
            Ok(topic) => tracing::info!(topic, partitions, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    message: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// The partition count of `topic` as the broker reports it.
pub fn partition_count(cfg: &KafkaConfig, topic: &str) -> Result<u32> {
    let c: BaseConsumer = client_config(cfg).create().map_err(KafkaError::Client)?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(KafkaError::Client)?;
    let n = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    if n == 0 {
        return Err(KafkaError::NoPartitions(topic.to_string()));
    }
    Ok(n as u32)
}

/// A cheap broker liveness check for readiness: a metadata request with a short timeout.
pub struct BrokerCheck {
    client: BaseConsumer,
    topic: String,
}

impl BrokerCheck {
    pub fn new(cfg: &KafkaConfig) -> Result<Self> {
        Ok(BrokerCheck {
            client: client_config(cfg).create().map_err(KafkaError::Client)?,
            topic: cfg.topics.quotes.clone(),
        })
    }

    /// Blocking; call from a blocking thread.
    pub fn check(&self, timeout: Duration) -> std::result::Result<(), String> {
        let r = self
            .client
            .fetch_metadata(Some(&self.topic), timeout)
            .map(|_| ())
            .map_err(|e| e.to_string());
        metrics::gauge!(m::BROKER_UP).set(if r.is_ok() { 1.0 } else { 0.0 });
        r
    }
}
