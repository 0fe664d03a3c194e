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

#[async_trait]
impl ResultPublisher for KafkaResults {
    async fn bars(&self, bars: &[Bar]) -> Result<(), String> {
        let msgs: Vec<Message> = bars
            .iter()
            .map(|b| Message {
                key: b.symbol.as_str().as_bytes().to_vec(),
                partition: None,
                payload: codec::encode(b),
                headers: Vec::new(),
            })
            .collect();
        self.producer
            .send_all(&self.topics.bars, &msgs)
            .await
            .map_err(|e| e.to_string())
    }

    async fn signals(&self, signals: &[Signal]) -> Result<(), String> {
        let msgs: Vec<Message> = signals
            .iter()
            .map(|s| Message {
                key: s.symbol.as_str().as_bytes().to_vec(),
                partition: None,
                payload: codec::encode(s),
                headers: Vec::new(),
            })
            .collect();
        self.producer
            .send_all(&self.topics.signals, &msgs)
            .await
            .map_err(|e| e.to_string())
    }

    async fn alerts(&self, alerts: &[AlertEvent]) -> Result<(), String> {
        let msgs: Vec<Message> = alerts
            .iter()
            .map(|a| Message {
                key: a.alert_id.as_bytes().to_vec(),
                partition: None,
                payload: codec::encode(a),
                headers: Vec::new(),
            })
            .collect();
        self.producer
            .send_all(&self.topics.alerts, &msgs)
            .await
            .map_err(|e| e.to_string())
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
