//! Transport between connectors and the pipeline.
//!
//! Quotes are partitioned by symbol (stable hash), so one symbol keeps its order, exactly
//! as with Kafka's `key = symbol`. The pipeline reads through [`QuoteSource`], one source
//! per timely worker, each owning a disjoint set of partitions.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pricestream_schemas::Quote;
use tokio::sync::{mpsc, Semaphore};

pub mod error;
pub use error::{BusError, Result};

/// Where a record came from, for per-partition watermarks and offset commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// A message the source could not turn into a quote, kept for the dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reason: &'static str,
    pub error: String,
    pub payload: Vec<u8>,
}

/// One polled record.
#[derive(Debug, Clone)]
pub struct Polled {
    pub position: Position,
    pub quote: std::result::Result<Quote, Rejected>,
}

/// State of a source after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Records may come.
    Open,
    /// Every producer is gone and every record was read.
    Finished,
    /// Partitions were taken away (a consumer-group rebalance): the state built from
    /// them must be dropped, not flushed, and rebuilt from the committed offsets.
    Revoked,
}

/// A worker's view of the quote stream.
pub trait QuoteSource: Send {
    /// Appends up to `max` records to `out`. Blocks only for a source that says so in
    /// [`QuoteSource::waits_when_idle`], and then only briefly.
    fn poll(&mut self, max: usize, out: &mut Vec<Polled>) -> Result<SourceState>;
    /// Whether `poll` itself waits a little (a few milliseconds) for records when none
    /// are ready, returning as soon as one arrives. The worker then goes straight back to
    /// polling instead of parking for a fixed time, which would leave records waiting.
    fn waits_when_idle(&self) -> bool {
        false
    }
    /// Partitions this source reads.
    fn partitions(&self) -> Vec<u32>;
    /// Newest event time read from each partition before the position the source resumed
    /// from (after a restart), so partition watermarks start where they were. Drained.
    fn take_resumed(&mut self) -> Vec<(u32, i64)> {
        Vec::new()
    }
    /// The dataflow's input time at which the next poll's records enter it (sources that
    /// commit offsets after the sinks use it to know when a record is durable).
    fn set_input_time(&mut self, _time: u64) {}
    /// Final bars from before the resume point that stateful operators (signals) need to
    /// continue exactly where they were; fed to them before the next records. Drained.
    fn take_warmup(&mut self) -> Vec<pricestream_schemas::Bar> {
        Vec::new()
    }
    /// Whether everything of `partition` available so far has been read, so a quiet
    /// partition may count as idle (a log-based source with a backlog says no).
    fn caught_up(&self, _partition: u32) -> bool {
        true
    }
    /// Partitions assigned since the last call (sources whose assignment arrives after
    /// they start, like a consumer group's): each holds the watermark back until it has
    /// delivered or gone idle, exactly like the partitions known at start. Drained.
    fn take_new_partitions(&mut self) -> Vec<u32> {
        Vec::new()
    }
}

/// Connectors publish quotes through this.
#[async_trait]
pub trait QuotePublisher: Send + Sync {
    /// Publishes quotes; returns once the transport accepted them (with backpressure).
    async fn publish(&self, quotes: Vec<Quote>) -> Result<()>;
}

/// Partition of a symbol among `partitions`.
pub fn partition_for(symbol: &pricestream_schemas::Symbol, partitions: u32) -> u32 {
    (symbol.stable_hash() % u64::from(partitions.max(1))) as u32
}

/// The embedded transport: bounded in-memory partitions.
///
/// A partition is a channel of quote *batches* plus a semaphore that counts the quotes in
/// flight, so the bound is in quotes (`capacity` per partition) while a publish costs one
/// channel send per partition touched, not one per quote.
pub struct InProcessBus {
    partitions: u32,
    capacity: usize,
    senders: Mutex<Vec<PartitionTx>>,
    receivers: Mutex<Vec<Option<PartitionRx>>>,
}

#[derive(Clone)]
struct PartitionTx {
    tx: mpsc::UnboundedSender<Vec<Quote>>,
    room: Arc<Semaphore>,
}

struct PartitionRx {
    rx: mpsc::UnboundedReceiver<Vec<Quote>>,
    room: Arc<Semaphore>,
}

impl InProcessBus {
    /// A bus with `partitions` partitions of `capacity` quotes each.
    pub fn new(partitions: u32, capacity: usize) -> Arc<Self> {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..partitions.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                let room = Arc::new(Semaphore::new(capacity));
                (
                    PartitionTx {
                        tx,
                        room: Arc::clone(&room),
                    },
                    Some(PartitionRx { rx, room }),
                )
            })
            .unzip();
        Arc::new(InProcessBus {
            partitions: partitions.max(1),
            capacity,
            senders: Mutex::new(senders),
            receivers: Mutex::new(receivers),
        })
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// A publisher handle. The bus finishes when every publisher is dropped and the bus
    /// itself has closed its own senders with [`InProcessBus::close`].
    pub fn publisher(&self) -> Result<InProcessPublisher> {
        let senders = self.senders.lock().map_err(|_| BusError::Poisoned)?;
        if senders.is_empty() {
            return Err(BusError::Closed);
        }
        Ok(InProcessPublisher {
            senders: senders.clone(),
            capacity: self.capacity,
        })
    }

    /// Whether `peers` workers reading [`InProcessBus::source`]s each get exactly the
    /// symbols whose stable hash modulo `peers` is their index: a symbol's partition is
    /// its hash modulo the partition count, so this holds when `peers` divides it.
    pub fn colocates(&self, peers: usize) -> bool {
        peers > 0 && (self.partitions() as usize).is_multiple_of(peers)
    }

    /// The source of worker `index` of `peers`: partitions `p` with `p % peers == index`.
    /// Each partition can be taken once.
    pub fn source(&self, index: usize, peers: usize) -> Result<InProcessSource> {
        let mut receivers = self.receivers.lock().map_err(|_| BusError::Poisoned)?;
        let mut parts = Vec::new();
        for (p, slot) in receivers.iter_mut().enumerate() {
            if p % peers.max(1) == index {
                let rx = slot.take().ok_or(BusError::PartitionTaken(p as u32))?;
                parts.push(PartitionReader {
                    partition: p as u32,
                    next_offset: 0,
                    rx,
                    current: Vec::new().into_iter(),
                    open: true,
                });
            }
        }
        Ok(InProcessSource { parts, cursor: 0 })
    }
}

/// The largest partition capacity (the semaphore's permit limit is far above it).
const MAX_CAPACITY: usize = 1 << 30;

/// Publishes into the in-process bus.
#[derive(Clone)]
pub struct InProcessPublisher {
    senders: Vec<PartitionTx>,
    capacity: usize,
}

impl InProcessPublisher {
    /// Sends one partition's quotes, in order, in chunks that fit its capacity.
    async fn send_partition(&self, p: usize, mut quotes: Vec<Quote>) -> Result<()> {
        let part = &self.senders[p];
        while !quotes.is_empty() {
            let rest = if quotes.len() > self.capacity {
                quotes.split_off(self.capacity)
            } else {
                Vec::new()
            };
            let n = u32::try_from(quotes.len()).map_err(|_| BusError::Closed)?;
            // A closed semaphore means the reader is gone.
            part.room
                .acquire_many(n)
                .await
                .map_err(|_| BusError::Closed)?
                .forget();
            part.tx.send(quotes).map_err(|_| BusError::Closed)?;
            quotes = rest;
        }
        Ok(())
    }
}

#[async_trait]
impl QuotePublisher for InProcessPublisher {
    async fn publish(&self, quotes: Vec<Quote>) -> Result<()> {
        let n = self.senders.len() as u32;
        if n == 1 {
            return self.send_partition(0, quotes).await;
        }
        let per = quotes.len() / n as usize + 1;
        let mut parts: Vec<Vec<Quote>> = Vec::new();
        for q in quotes {
            let p = partition_for(&q.symbol, n) as usize;
            if parts.len() <= p {
                parts.resize_with(p + 1, Vec::new);
            }
            if parts[p].capacity() == 0 {
                parts[p].reserve(per);
            }
            parts[p].push(q);
        }
        for (p, batch) in parts.into_iter().enumerate() {
            if !batch.is_empty() {
                self.send_partition(p, batch).await?;
            }
        }
        Ok(())
    }
}

struct PartitionReader {
    partition: u32,
    next_offset: u64,
    rx: PartitionRx,
    /// The rest of the batch being read.
    current: std::vec::IntoIter<Quote>,
    open: bool,
}

impl Drop for PartitionReader {
    fn drop(&mut self) {
        // Publishers waiting for room fail instead of waiting forever.
        self.rx.room.close();
    }
}

/// A worker's partitions of the in-process bus.
pub struct InProcessSource {
    parts: Vec<PartitionReader>,
    cursor: usize,
}

impl QuoteSource for InProcessSource {
    fn poll(&mut self, max: usize, out: &mut Vec<Polled>) -> Result<SourceState> {
        let n = self.parts.len();
        let mut taken = 0;
        // Round-robin over partitions so none starves.
        for i in 0..n {
            let part = &mut self.parts[(self.cursor + i) % n];
            let before = taken;
            while taken < max {
                if let Some(q) = part.current.next() {
                    out.push(Polled {
                        position: Position {
                            partition: part.partition,
                            offset: part.next_offset,
                        },
                        quote: Ok(q),
                    });
                    part.next_offset += 1;
                    taken += 1;
                    continue;
                }
                if !part.open {
                    break;
                }
                match part.rx.rx.try_recv() {
                    Ok(batch) => part.current = batch.into_iter(),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => part.open = false,
                }
            }
            if taken > before {
                part.rx.room.add_permits(taken - before);
            }
        }
        if n > 0 {
            self.cursor = (self.cursor + 1) % n;
        }
        Ok(
            if self.parts.iter().all(|p| !p.open && p.current.len() == 0) {
                SourceState::Finished
            } else {
                SourceState::Open
            },
        )
    }

    fn partitions(&self) -> Vec<u32> {
        self.parts.iter().map(|p| p.partition).collect()
    }
}

impl InProcessBus {
    /// Drops the bus's own senders, so that sources finish once every publisher is gone.
    pub fn close(&self) {
        if let Ok(mut senders) = self.senders.lock() {
            senders.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pricestream_schemas::{QuoteKind, Symbol, Venue};

    fn q(sym: &str, t: i64) -> Quote {
        Quote {
            venue: Venue::Synthetic,
            symbol: Symbol::new(sym).unwrap(),
            kind: QuoteKind::Trade,
            price: 1.0,
            size: 1.0,
            side: None,
            trade_id: None,
            bid: None,
            ask: None,
            ts_event: t,
            ts_ingest: t,
        }
    }

    #[tokio::test]
    async fn a_symbol_keeps_its_order_in_one_partition() {
        let bus = InProcessBus::new(4, 1024);
        let publisher = bus.publisher().unwrap();
        let mut sources: Vec<_> = (0..2).map(|i| bus.source(i, 2).unwrap()).collect();
        assert!(
            bus.source(0, 2).is_err(),
            "a partition was handed out twice"
        );
        let quotes: Vec<Quote> = (0..100)
            .map(|i| q(["BTC-USDT", "ETH-USDT", "SOL-USDT"][i % 3], i as i64))
            .collect();
        publisher.publish(quotes).await.unwrap();
        drop(publisher);
        bus.close();
        let mut got = Vec::new();
        for s in &mut sources {
            loop {
                let before = got.len();
                let state = s.poll(7, &mut got).unwrap();
                if state == SourceState::Finished && got.len() == before {
                    break;
                }
            }
        }
        assert_eq!(got.len(), 100);
        for sym in ["BTC-USDT", "ETH-USDT", "SOL-USDT"] {
            let ts: Vec<i64> = got
                .iter()
                .filter_map(|p| p.quote.as_ref().ok())
                .filter(|q| q.symbol.as_str() == sym)
                .map(|q| q.ts_event)
                .collect();
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "{sym} out of order");
            let parts: std::collections::HashSet<u32> = got
                .iter()
                .filter(|p| {
                    p.quote
                        .as_ref()
                        .map(|q| q.symbol.as_str() == sym)
                        .unwrap_or(false)
                })
                .map(|p| p.position.partition)
                .collect();
            assert_eq!(parts.len(), 1);
        }
    }
}
