//! The producer: idempotent, batched, compressed; every delivery is awaited and a failed
//! one is sent again, so a publish that returns `Ok` is on the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pricestream_bus::{partition_for, BusError, QuotePublisher};
use pricestream_schemas::{codec, Quote};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;

use crate::metrics as m;
use crate::{client_config, KafkaConfig, KafkaError as Error, Result};

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Message {
    pub key: Vec<u8>,
    /// An explicit partition, or `None` for the producer's partitioner.
    pub partition: Option<i32>,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// A shared, thread-safe producer.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    attempts: u32,
}

impl Producer {
    pub fn new(cfg: &KafkaConfig) -> Result<Self> {
        let mut cc: ClientConfig = client_config(cfg);
        cc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("batch.size", cfg.batch_bytes.to_string())
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        let inner: FutureProducer = cc.create().map_err(Error::Client)?;
        Ok(Producer {
            inner,
            attempts: cfg.delivery_attempts.max(1),
        })
    }

    /// Produces every message to `topic` and waits until the broker has acknowledged all
    /// of them. A message whose delivery fails is sent again (idempotence keeps a retry
    /// from duplicating it); after the configured attempts the error is returned.
    pub async fn send_all(&self, topic: &str, messages: &[Message]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        let mut attempt = 1;
        loop {
            let mut futures: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(pending.len());
            for &i in &pending {
                futures.push((i, self.enqueue(topic, &messages[i]).await?));
            }
            let mut failed = Vec::new();
            let mut last_error = None;
            for (i, f) in futures {
                match f.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => {
                        metrics::counter!(m::PRODUCE_ERRORS, "topic" => topic.to_string())
                            .increment(1);
                        last_error = Some(e);
                        failed.push(i);
                    }
                    Err(_cancelled) => {
                        last_error = Some(KafkaError::Canceled);
                        failed.push(i);
                    }
                }
            }
            let delivered = pending.len() - failed.len();
            metrics::counter!(m::PRODUCED, "topic" => topic.to_string())
                .increment(delivered as u64);
            if failed.is_empty() {
                metrics::histogram!(m::PRODUCE_SECONDS, "topic" => topic.to_string())
                    .record(started.elapsed().as_secs_f64());
                return Ok(());
            }
            let e = last_error.unwrap_or(KafkaError::Canceled);
            if attempt >= self.attempts {
                return Err(Error::Delivery {
                    topic: topic.to_string(),
                    failed: failed.len(),
                    source: e,
                });
            }
            tracing::warn!(
                topic,
                failed = failed.len(),
                attempt,
                error = %e,
                "deliveries failed; sending them again"
            );
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            attempt += 1;
            pending = failed;
        }
    }

    /// Puts one message into the producer's queue, waiting while the queue is full.
    async fn enqueue(&self, topic: &str, msg: &Message) -> Result<DeliveryFuture> {
        let headers = (!msg.headers.is_empty()).then(|| {
            msg.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            })
        });
        let mut record = FutureRecord::to(topic).key(&msg.key).payload(&msg.payload);
        if let Some(p) = msg.partition {
            record = record.partition(p);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let mut waited = Duration::ZERO;
        loop {
            match self.inner.send_result(record) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    if waited > Duration::from_secs(60) {
                        return Err(Error::QueueFull);
                    }
                    // Deliveries make room; the producer's own thread serves them.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    waited += Duration::from_millis(1);
                }
                Err((e, _)) => return Err(Error::Client(e)),
            }
        }
    }

    /// Waits until everything queued is delivered.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.flush(timeout).map_err(Error::Client)
    }
}

/// Connectors publish quotes to `quotes.v1` through this: key = symbol, partition =
/// the symbol's stable hash (the same mapping as the embedded bus), so a symbol keeps its
/// order and the processor can tell which partition a symbol lives in.
#[derive(Clone)]
pub struct KafkaQuotePublisher {
    producer: Producer,
    topic: Arc<str>,
    partitions: u32,
}

impl KafkaQuotePublisher {
    /// `partitions` is the partition count of the quotes topic (see
    /// [`crate::admin::partition_count`]).
    pub fn new(producer: Producer, topic: &str, partitions: u32) -> Self {
        KafkaQuotePublisher {
            producer,
            topic: topic.into(),
            partitions: partitions.max(1),
        }
    }
}

#[async_trait]
impl QuotePublisher for KafkaQuotePublisher {
    async fn publish(&self, quotes: Vec<Quote>) -> pricestream_bus::Result<()> {
        let messages: Vec<Message> = quotes
            .iter()
            .map(|q| Message {
                key: q.symbol.as_str().as_bytes().to_vec(),
                partition: Some(partition_for(&q.symbol, self.partitions) as i32),
                payload: codec::encode(q),
                headers: Vec::new(),
            })
            .collect();
        self.producer
            .send_all(&self.topic, &messages)
            .await
            .map_err(|e| BusError::Transport(e.to_string()))
    }
}
