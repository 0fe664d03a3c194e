//! The producer: idempotent, batched, compressed; every delivery is awaited and a failed
//! one is sent again, so a publish that returns `Ok` is on the broker.

use std::sync::{Arc, RwLock};
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
///
/// An idempotent producer that meets a fatal error (fenced by the broker after a delivery
/// timed out, or a sequence the broker refuses) can send nothing more. The failed messages
/// then go out through a new producer, with a new producer id; the clones share it.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<RwLock<Generation>>,
    config: ClientConfig,
    attempts: u32,
}

/// The current producer and how many were made before it.
struct Generation {
    number: u64,
    producer: FutureProducer,
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
        let producer: FutureProducer = cc.create().map_err(Error::Client)?;
        Ok(Producer {
            inner: Arc::new(RwLock::new(Generation {
                number: 0,
                producer,
            })),
            config: cc,
            attempts: cfg.delivery_attempts.max(1),
        })
    }

    /// The current producer and its generation number.
    fn current(&self) -> (u64, FutureProducer) {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (g.number, g.producer.clone())
    }

    /// Replaces producer generation `number` when it cannot send any more: a fatal error,
    /// or fenced by the broker (`error`, the last delivery error). A later generation, made
    /// by another clone, is left alone. Whether a new one is in place.
    fn renew_if_fatal(&self, number: u64, producer: &FutureProducer, error: &KafkaError) -> bool {
        let (code, reason) = match producer.client().fatal_error() {
            Some(fatal) => fatal,
            None => match error.rdkafka_error_code() {
                Some(
                    code @ (RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch),
                ) => (code, error.to_string()),
                _ => return false,
            },
        };
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if g.number != number {
            return true;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                metrics::counter!(m::PRODUCER_RENEWALS).increment(1);
                tracing::warn!(%code, reason, generation = number + 1, "the producer hit a fatal error; a new one sends what it could not");
                g.producer = fresh;
                g.number = number + 1;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create a new producer");
                false
            }
        }
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
        let mut renewals = 0;
        loop {
            let (generation, producer) = self.current();
            let mut futures: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(pending.len());
            let mut failed = Vec::new();
            let mut last_error = None;
            for (n, &i) in pending.iter().enumerate() {
                match enqueue(&producer, topic, &messages[i]).await {
                    Ok(f) => futures.push((i, f)),
                    // a producer in a fatal state refuses new messages: they wait for the
                    // next one, with those in flight
                    Err(Error::Client(e)) if producer.client().fatal_error().is_some() => {
                        last_error = Some(e);
                        failed.extend_from_slice(&pending[n..]);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
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
            // a fatal error is the producer's, not the messages': the messages go out through
            // a new producer, at once
            if renewals < RENEWALS && self.renew_if_fatal(generation, &producer, &e) {
                renewals += 1;
                pending = failed;
                continue;
            }
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

    /// Waits until everything queued is delivered.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.current().1.flush(timeout).map_err(Error::Client)
    }
}

/// New producers one `send_all` may make beyond its delivery attempts.
const RENEWALS: u32 = 3;

/// Puts one message into the producer's queue, waiting while the queue is full.
async fn enqueue(producer: &FutureProducer, topic: &str, msg: &Message) -> Result<DeliveryFuture> {
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
        match producer.send_result(record) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::KafkaConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message as _;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    /// Which errors a broker answers with cannot be chosen on a real one: librdkafka's
    /// own test broker fences the producer here, as a broker does after a delivery timed
    /// out.
    #[test]
    fn a_fenced_producer_is_replaced_and_every_message_still_arrives() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("fenced", 1, 1).unwrap();
        let cfg = KafkaConfig {
            brokers: cluster.bootstrap_servers(),
            message_timeout_ms: 3_000,
            ..KafkaConfig::default()
        };
        let producer = Producer::new(&cfg).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let batch = |from: usize| -> Vec<Message> {
            (from..from + 50)
                .map(|i| Message {
                    key: b"k".to_vec(),
                    partition: Some(0),
                    payload: i.to_string().into_bytes(),
                    headers: Vec::new(),
                })
                .collect()
        };
        rt.block_on(producer.send_all("fenced", &batch(0))).unwrap();
        assert_eq!(producer.current().0, 0);

        // the next produce requests are refused (whichever producer sends them)
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED; 3],
        );
        rt.block_on(producer.send_all("fenced", &batch(50)))
            .unwrap();
        assert!(producer.current().0 >= 1, "a new producer was made");
        rt.block_on(producer.send_all("fenced", &batch(100)))
            .unwrap();

        // every message is on the broker (a fenced batch may have been written before
        // the refusal: duplicates are allowed, gaps are not)
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "check")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = cc.create().unwrap();
        consumer.subscribe(&["fenced"]).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let started = Instant::now();
        while seen.len() < 150 && started.elapsed() < Duration::from_secs(30) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let n: usize = std::str::from_utf8(m.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.insert(n);
            }
        }
        assert_eq!(seen, (0..150).collect());
    }
}
