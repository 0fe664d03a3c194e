//! The sinks' results on Kafka: `bars.v1`, `signals.v1` and `quotes.dlq`.

use async_trait::async_trait;
use pricestream_pipeline::sink::ResultPublisher;
use pricestream_schemas::{codec, AlertEvent, Bar, Signal};
use pricestream_store::DeadLetter;

use crate::{Message, Producer, Topics};

/// Publishes results keyed by symbol (so one symbol's bars stay in order); a revised bar
/// is published again with its revision number, and consumers keep the highest.
pub struct KafkaResults {
    producer: Producer,
    topics: Topics,
}

impl KafkaResults {
    pub fn new(producer: Producer, topics: Topics) -> Self {
        KafkaResults { producer, topics }
    }
}

impl KafkaResults {
    /// Encodes every event in the wire format, keyed by `key`, and produces them to `topic`.
    async fn send_events<T: codec::WireEvent>(
        &self,
        topic: &str,
        events: &[T],
        key: impl Fn(&T) -> &str,
    ) -> Result<(), String> {
        let msgs: Vec<Message> = events
            .iter()
            .map(|e| Message {
                key: key(e).as_bytes().to_vec(),
                partition: None,
                payload: codec::encode(e),
                headers: Vec::new(),
            })
            .collect();
        self.producer
            .send_all(topic, &msgs)
            .await
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl ResultPublisher for KafkaResults {
    async fn bars(&self, bars: &[Bar]) -> Result<(), String> {
        self.send_events(&self.topics.bars, bars, |b| b.symbol.as_str())
            .await
    }

    async fn signals(&self, signals: &[Signal]) -> Result<(), String> {
        self.send_events(&self.topics.signals, signals, |s| s.symbol.as_str())
            .await
    }

    async fn alerts(&self, alerts: &[AlertEvent]) -> Result<(), String> {
        self.send_events(&self.topics.alerts, alerts, |a| a.alert_id.as_str())
            .await
    }

    /// The original payload, byte for byte, with the reason and origin in headers.
    async fn dead_letters(&self, dead: &[DeadLetter]) -> Result<(), String> {
        let msgs: Vec<Message> = dead
            .iter()
            .map(|d| Message {
                key: Vec::new(),
                partition: None,
                payload: d.payload.clone(),
                headers: vec![
                    ("reason", d.reason.clone()),
                    ("error", d.error.clone()),
                    ("source.topic", d.topic.clone()),
                    ("source.partition", d.partition.to_string()),
                    ("source.offset", d.offset.to_string()),
                ],
            })
            .collect();
        self.producer
            .send_all(&self.topics.dlq, &msgs)
            .await
            .map_err(|e| e.to_string())
    }
}
