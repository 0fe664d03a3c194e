//! The consumer side: `quotes.v1` → the dataflow, and offset commits that follow what the
//! sinks have made durable.
//!
//! # When an offset may be committed
//! A restart replays from the committed offset, so the offset of a partition may pass a
//! record only when everything that record contributes to is final and durable: its bar,
//! and the rollups (up to the commit *horizon*, the widest rollup interval) that include
//! it. The tracker therefore keeps, per partition, the first offset of every horizon
//! bucket that is not final yet, and the read positions of the polls the sinks have not
//! confirmed. The committed offset is the least of those; its metadata records
//! - `skip`: buckets before this event time are final and durable: a replayed record
//!   older than it (read before, below `read`) is skipped, not counted twice;
//! - `read`: the position up to which the sinks had confirmed everything;
//! - `max`: the newest event time before the committed offset, so the partition's
//!   watermark resumes where it was and lateness is decided as it was the first time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pricestream_bus::{BusError, Polled, Position, QuoteSource, Rejected, SourceState};
use pricestream_schemas::codec;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use crate::metrics as m;
use crate::{client_config, KafkaConfig, KafkaError as Error, Result};

/// Rebalance and statistics callbacks.
#[derive(Default)]
pub struct Ctx {
    revoked: AtomicBool,
    assigned: AtomicBool,
    /// Partitions assigned by the rebalance callback and not yet taken by the source.
    /// The callback runs inside the consumer's poll, and the new partitions' records can
    /// come in the same poll: the source takes these right after polling, so the dataflow
    /// hears of a partition no later than of its first record (a partition it does not
    /// know does not hold the watermark back).
    newly_assigned: Mutex<Vec<(String, i32)>>,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if *p < 0 || part.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(m::CONSUMER_LAG, "topic" => topic.clone(), "partition" => p.to_string())
                    .set(part.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) if tpl.count() > 0 => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                metrics::counter!(m::REBALANCES, "kind" => "revoke").increment(1);
                self.revoked.store(true, Ordering::SeqCst);
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                if let Ok(mut new) = self.newly_assigned.lock() {
                    new.extend(
                        tpl.elements()
                            .iter()
                            .map(|e| (e.topic().to_string(), e.partition())),
                    );
                }
                metrics::counter!(m::REBALANCES, "kind" => "assign").increment(1);
                // A new assignment restarts every partition at its committed offset, so
                // whatever the dataflow holds would be counted twice: rebuild it.
                if self.assigned.swap(true, Ordering::SeqCst) {
                    self.revoked.store(true, Ordering::SeqCst);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The consumer of `quotes.v1`, shared by the source (which polls it) and the committer.
pub type KafkaConsumer = BaseConsumer<Ctx>;

/// Creates the group consumer and subscribes it to the quotes topic.
pub fn consumer(cfg: &KafkaConfig) -> Result<Arc<KafkaConsumer>> {
    let mut cc = client_config(cfg);
    cc.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        .set("fetch.wait.max.ms", "50")
        // Once the local queue holds its threshold, librdkafka postpones the partition's
        // next fetch by this much (1 s by default), so a consumer that drains its queue
        // more slowly than the fetcher fills it got its records in bursts a second apart.
        .set("fetch.queue.backoff.ms", "10");
    let c: KafkaConsumer = cc
        .create_with_context(Ctx::default())
        .map_err(Error::Client)?;
    c.subscribe(&[&cfg.topics.quotes]).map_err(Error::Client)?;
    Ok(Arc::new(c))
}

/// What the metadata of a committed offset says (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub skip_before: i64,
    pub read_pos: i64,
    pub max_event: i64,
}

impl Resume {
    fn encode(&self) -> String {
        format!(
            "ps1;skip={};read={};max={}",
            self.skip_before, self.read_pos, self.max_event
        )
    }

    /// Parses commit metadata written by [`Resume::encode`]; `None` for anything else.
    pub fn decode(s: &str) -> Option<Resume> {
        let rest = s.strip_prefix("ps1;")?;
        let mut r = Resume {
            skip_before: i64::MIN,
            read_pos: 0,
            max_event: i64::MIN,
        };
        for kv in rest.split(';') {
            let (k, v) = kv.split_once('=')?;
            let v: i64 = v.parse().ok()?;
            match k {
                "skip" => r.skip_before = v,
                "read" => r.read_pos = v,
                "max" => r.max_event = v,
                _ => return None,
            }
        }
        Some(r)
    }
}

#[derive(Debug, Default)]
struct PartTrack {
    /// Next offset to read and newest event time read so far.
    next: i64,
    max_event: Option<i64>,
    /// Horizon buckets not known final: start → (first offset, newest event time before it).
    open: BTreeMap<i64, (i64, Option<i64>)>,
    last_bucket: Option<i64>,
    /// Position confirmed by the sinks, with the newest event time before it.
    safe: Option<(i64, Option<i64>)>,
    committed: i64,
    resume: Option<Resume>,
}

/// Read positions and open buckets per partition, between the source and the committer.
pub struct CommitTracker {
    horizon: i64,
    lateness: i64,
    inner: Mutex<TrackerState>,
}

/// A read position: the next offset, and the newest event time before it.
type ReadPos = (i64, Option<i64>);

#[derive(Default)]
struct TrackerState {
    parts: BTreeMap<i32, PartTrack>,
    /// (input time of the dataflow when read, partition → (next offset, newest event)).
    polls: VecDeque<(u64, BTreeMap<i32, ReadPos>)>,
}

impl CommitTracker {
    /// `horizon_ns`: the widest window whose state a replay must rebuild (the largest
    /// rollup interval); `lateness_ns`: the pipeline's allowed lateness.
    pub fn new(horizon_ns: i64, lateness_ns: i64) -> Arc<Self> {
        Arc::new(CommitTracker {
            horizon: horizon_ns.max(1),
            lateness: lateness_ns.max(0),
            inner: Mutex::new(TrackerState::default()),
        })
    }

    fn bucket(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.horizon)
    }

    /// Everything below sink frontier `frontier` is durable: returns the offsets that may
    /// now be committed, with their metadata.
    pub fn durable(&self, frontier: u64) -> Vec<(i32, i64, Resume)> {
        let Ok(mut st) = self.inner.lock() else {
            return Vec::new();
        };
        let st = &mut *st;
        while st.polls.front().is_some_and(|(t, _)| *t < frontier) {
            let Some((_, parts)) = st.polls.pop_front() else {
                break;
            };
            for (p, pos) in parts {
                st.parts.entry(p).or_default().safe = Some(pos);
            }
        }
        let final_before = i64::try_from(frontier)
            .unwrap_or(i64::MAX)
            .saturating_sub(self.lateness);
        let skip_before = self.bucket(final_before);
        let mut out = Vec::new();
        for (p, t) in st.parts.iter_mut() {
            let horizon = self.horizon;
            t.open
                .retain(|b, _| b.saturating_add(horizon) > final_before);
            let Some(safe) = t.safe else { continue };
            // the least first offset of the open buckets (late records can make an
            // older bucket's first offset larger than a newer one's)
            let (offset, max_event) = match t.open.values().min_by_key(|(first, _)| *first) {
                Some(&(first, before)) if first < safe.0 => (first, before),
                _ => safe,
            };
            if offset > t.committed {
                t.committed = offset;
                out.push((
                    *p,
                    offset,
                    Resume {
                        skip_before,
                        read_pos: safe.0,
                        max_event: max_event.unwrap_or(i64::MIN),
                    },
                ));
            }
        }
        out
    }

    /// Records one poll: `records` (partition, offset, event time) in read order, read at
    /// dataflow input time `t_in`, and each partition's next offset after it.
    fn record_poll(
        &self,
        t_in: u64,
        records: &[(i32, i64, i64)],
        mut positions: BTreeMap<i32, ReadPos>,
    ) {
        let Ok(mut st) = self.inner.lock() else {
            return;
        };
        let st = &mut *st;
        for &(p, offset, ts) in records {
            let b = self.bucket(ts);
            let t = st.parts.entry(p).or_default();
            let before = t.max_event;
            if t.last_bucket != Some(b) {
                // a record of a bucket final before the restart is late: no replay can
                // need it
                if t.resume.is_none_or(|r| b >= r.skip_before) {
                    t.open.entry(b).or_insert((offset, before));
                }
                t.last_bucket = Some(b);
            }
            t.max_event = Some(before.map_or(ts, |m| m.max(ts)));
        }
        for (p, pos) in positions.iter_mut() {
            let t = st.parts.entry(*p).or_default();
            t.next = pos.0;
            pos.1 = t.max_event;
        }
        match st.polls.back_mut() {
            Some((t, parts)) if *t == t_in => parts.extend(positions),
            _ => st.polls.push_back((t_in, positions)),
        }
    }

    /// Offsets that could not be committed: the next call offers them again.
    fn rollback(&self, offsets: &[(i32, i64, Resume)]) {
        if let Ok(mut st) = self.inner.lock() {
            for (p, _, _) in offsets {
                if let Some(t) = st.parts.get_mut(p) {
                    t.committed = 0;
                }
            }
        }
    }

    fn forget(&self, partitions: &[i32]) {
        if let Ok(mut st) = self.inner.lock() {
            for p in partitions {
                st.parts.remove(p);
            }
            for (_, parts) in st.polls.iter_mut() {
                for p in partitions {
                    parts.remove(p);
                }
            }
        }
    }
}

/// Commits the offsets the tracker releases, at most every `interval`.
pub struct Committer {
    consumer: Arc<KafkaConsumer>,
    tracker: Arc<CommitTracker>,
    topic: String,
    interval: Duration,
    last: Option<Instant>,
    pending: Option<u64>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
}

impl Committer {
    pub fn new(
        consumer: Arc<KafkaConsumer>,
        tracker: Arc<CommitTracker>,
        topic: &str,
        interval: Duration,
    ) -> Self {
        Committer {
            consumer,
            tracker,
            topic: topic.to_string(),
            interval,
            last: None,
            pending: None,
            checkpoints: None,
        }
    }

    /// Also saves the replay metadata to `store` before each commit.
    pub fn with_checkpoints(mut self, store: Arc<dyn CheckpointStore>) -> Self {
        self.checkpoints = Some(store);
        self
    }

    /// The sinks have made everything below `frontier` durable. Commits when the interval
    /// has passed (or `force`); blocking (call it off the async threads).
    pub fn durable(&mut self, frontier: u64, force: bool) -> Result<usize> {
        self.pending = Some(self.pending.map_or(frontier, |f| f.max(frontier)));
        if !force && self.last.is_some_and(|l| l.elapsed() < self.interval) {
            return Ok(0);
        }
        let Some(f) = self.pending.take() else {
            return Ok(0);
        };
        self.last = Some(Instant::now());
        let offsets = self.tracker.durable(f);
        tracing::debug!(frontier = f, releasable = offsets.len(), "sinks durable");
        if offsets.is_empty() {
            return Ok(0);
        }
        if let Some(cp) = &self.checkpoints {
            let rows: Vec<(i32, i64, String)> = offsets
                .iter()
                .map(|(p, o, r)| (*p, *o, r.encode()))
                .collect();
            if let Err(e) = cp.save(&rows) {
                // Without its metadata the offset must not move: a resume would not know
                // what to skip.
                metrics::counter!(m::COMMITS, "outcome" => "error").increment(1);
                tracing::warn!(error = %e, "cannot save the checkpoints; offsets not committed");
                self.tracker.rollback(&offsets);
                return Ok(0);
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, offset, resume) in &offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*offset))
                .map_err(Error::Client)?;
            if let Some(mut e) = tpl.find_partition(&self.topic, *p) {
                e.set_metadata(resume.encode());
            }
        }
        let started = Instant::now();
        let r = self.consumer.commit(&tpl, CommitMode::Sync);
        metrics::histogram!(m::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        match r {
            Ok(()) => {
                metrics::counter!(m::COMMITS, "outcome" => "ok").increment(1);
                tracing::debug!(partitions = offsets.len(), "offsets committed");
                if let Some(cp) = &self.checkpoints {
                    let committed: Vec<(i32, i64)> =
                        offsets.iter().map(|(p, o, _)| (*p, *o)).collect();
                    cp.prune(&committed);
                }
                Ok(offsets.len())
            }
            Err(e) => {
                metrics::counter!(m::COMMITS, "outcome" => "error").increment(1);
                // Not fatal: the next commit covers these offsets; a crash before it only
                // replays more.
                tracing::warn!(error = %e, "offset commit failed");
                Err(Error::Client(e))
            }
        }
    }
}

/// Where replay metadata is kept beside Kafka's committed offsets (brokers differ in
/// whether they keep commit metadata; the store always does). Saved per offset before
/// that offset is committed, and looked up by the exact offset Kafka holds: a save whose
/// commit never landed (refused after a rebalance, or a crash in between) is never taken
/// for the rules of an older offset.
pub trait CheckpointStore: Send + Sync {
    /// The metadata saved for exactly `offset` of `partition`.
    fn load(&self, partition: i32, offset: i64) -> Option<String>;
    fn save(&self, checkpoints: &[(i32, i64, String)]) -> std::result::Result<(), String>;
    /// Forgets the metadata of offsets below these newly committed ones.
    fn prune(&self, committed: &[(i32, i64)]);
}

/// Loads the final bars of one series (venue, symbol) that end at or before `before`
/// (event time), for the signal state of a symbol read from a resumed partition.
pub type WarmupLoader = Arc<
    dyn Fn(
            pricestream_schemas::Venue,
            &pricestream_schemas::Symbol,
            i64,
        ) -> Vec<pricestream_schemas::Bar>
        + Send
        + Sync,
>;

/// Per-partition replay rule loaded from the committed metadata.
#[derive(Debug, Clone, Copy)]
struct Rule {
    resume: Option<Resume>,
}

/// How long a poll waits for the consumer's first record when none is ready. The
/// consumer's fetcher refills its queue as each fetch returns; waiting on the queue wakes
/// the worker at once, where parking for a fixed time left every refill waiting.
const IDLE_WAIT: Duration = Duration::from_millis(2);

/// A worker's view of `quotes.v1` through the group consumer.
pub struct KafkaSource {
    consumer: Arc<KafkaConsumer>,
    tracker: Arc<CommitTracker>,
    topic: String,
    max_future_ns: i64,
    /// Finish once every assigned partition is at its end (tests, benchmarks, catch-up
    /// jobs); otherwise the stream never ends.
    stop_at_end: bool,
    rules: HashMap<i32, Rule>,
    /// Partitions whose last word from the consumer was "end of partition".
    at_end: HashMap<i32, bool>,
    /// Whether the last poll emptied the consumer's local queue. When it stopped at its
    /// batch size instead, a partition that was at its end may have records waiting
    /// behind the others' (fetched during a stall of this worker, say).
    drained: bool,
    resumed: Vec<(u32, i64)>,
    warmup: Option<WarmupLoader>,
    /// Series whose signal state was warmed in this incarnation.
    warmed: std::collections::HashSet<(pricestream_schemas::Venue, pricestream_schemas::Symbol)>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    warm: Vec<pricestream_schemas::Bar>,
    /// Input time of the dataflow when the current poll's records enter it.
    input_time: u64,
    now_ns: fn() -> i64,
    last_message: Instant,
    known: std::collections::BTreeSet<i32>,
    next_offsets: HashMap<i32, i64>,
    new_parts: Vec<u32>,
    assignment_checked: Option<Instant>,
}

fn system_now() -> i64 {
    use pricestream_schemas::Clock;
    pricestream_schemas::SystemClock.now_ns()
}

impl KafkaSource {
    pub fn new(
        consumer: Arc<KafkaConsumer>,
        tracker: Arc<CommitTracker>,
        cfg: &KafkaConfig,
        stop_at_end: bool,
    ) -> Self {
        KafkaSource {
            consumer,
            tracker,
            topic: cfg.topics.quotes.clone(),
            max_future_ns: cfg.max_future_ms.saturating_mul(1_000_000),
            stop_at_end,
            rules: HashMap::new(),
            at_end: HashMap::new(),
            drained: false,
            resumed: Vec::new(),
            warmup: None,
            warmed: Default::default(),
            checkpoints: None,
            warm: Vec::new(),
            input_time: 0,
            now_ns: system_now,
            last_message: Instant::now(),
            known: Default::default(),
            next_offsets: HashMap::new(),
            new_parts: Vec::new(),
            assignment_checked: None,
        }
    }

    /// Reads the replay metadata from `store` (else from Kafka's commit metadata).
    pub fn with_checkpoints(mut self, store: Arc<dyn CheckpointStore>) -> Self {
        self.checkpoints = Some(store);
        self
    }

    /// Feeds resumed partitions' signal state from `loader`.
    pub fn with_warmup(mut self, loader: WarmupLoader) -> Self {
        self.warmup = Some(loader);
        self
    }

    /// Loads the committed metadata of a partition seen for the first time.
    fn rule(&mut self, partition: i32) -> Rule {
        if let Some(r) = self.rules.get(&partition) {
            return *r;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        let resume = match self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
        {
            Ok(c) => match c.find_partition(&self.topic, partition) {
                Some(e) => match (&self.checkpoints, e.offset()) {
                    (Some(cp), Offset::Offset(committed)) => cp
                        .load(partition, committed)
                        .and_then(|m| Resume::decode(&m)),
                    (Some(_), _) => None,
                    (None, _) => Resume::decode(e.metadata()),
                },
                None => None,
            },
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot read the committed offset metadata");
                None
            }
        };
        if let Some(r) = resume {
            tracing::info!(
                partition,
                skip_before = r.skip_before,
                read_pos = r.read_pos,
                "resuming partition"
            );
            if r.max_event != i64::MIN {
                self.resumed.push((partition as u32, r.max_event));
            }
        }
        let rule = Rule { resume };
        self.rules.insert(partition, rule);
        if let Ok(mut st) = self.tracker.inner.lock() {
            let t = st.parts.entry(partition).or_default();
            t.resume = resume;
            if let Some(r) = resume {
                t.max_event = Some(r.max_event);
            }
        }
        rule
    }

    /// Announces the partitions the rebalance callback assigned (see `Ctx`).
    fn take_assigned(&mut self) {
        let assigned = match self.consumer.context().newly_assigned.lock() {
            Ok(mut new) => std::mem::take(&mut *new),
            Err(_) => return,
        };
        for (topic, p) in assigned {
            if topic == self.topic && self.known.insert(p) {
                self.new_parts.push(p as u32);
            }
        }
    }

    fn validate(&self, bytes: &[u8]) -> std::result::Result<pricestream_schemas::Quote, Rejected> {
        match codec::decode_quote(bytes) {
            Ok(q) => {
                let limit = (self.now_ns)().saturating_add(self.max_future_ns);
                if q.ts_event > limit {
                    Err(Rejected {
                        reason: "future",
                        error: format!(
                            "event time {} is more than {} ms in the future",
                            q.ts_event,
                            self.max_future_ns / 1_000_000
                        ),
                        payload: bytes.to_vec(),
                    })
                } else {
                    Ok(q)
                }
            }
            Err(e) => Err(Rejected {
                reason: e.reason(),
                error: e.to_string(),
                payload: bytes.to_vec(),
            }),
        }
    }
}

impl QuoteSource for KafkaSource {
    fn poll(&mut self, max: usize, out: &mut Vec<Polled>) -> pricestream_bus::Result<SourceState> {
        if self.consumer.context().revoked.load(Ordering::SeqCst) {
            let parts: Vec<i32> = self.rules.keys().copied().collect();
            self.tracker.forget(&parts);
            return Ok(SourceState::Revoked);
        }
        if self
            .assignment_checked
            .is_none_or(|t| t.elapsed() > Duration::from_millis(100))
        {
            self.assignment_checked = Some(Instant::now());
            if let Ok(tpl) = self.consumer.assignment() {
                for e in tpl.elements() {
                    if e.topic() == self.topic && self.known.insert(e.partition()) {
                        self.new_parts.push(e.partition() as u32);
                    }
                }
            }
        }
        let start = out.len();
        let mut positions: BTreeMap<i32, (i64, Option<i64>)> = BTreeMap::new();
        let mut skipped = 0u64;
        let mut tracked: Vec<(i32, i64, i64)> = Vec::new();
        let consumer = Arc::clone(&self.consumer);
        // the first read waits a little when nothing is there (see `waits_when_idle`)
        let mut wait = IDLE_WAIT;
        self.drained = false;
        while out.len() - start < max {
            let Some(r) = consumer.poll(std::mem::take(&mut wait)) else {
                self.drained = true;
                break;
            };
            let msg = match r {
                Ok(msg) => msg,
                Err(KafkaError::PartitionEOF(p)) => {
                    self.at_end.insert(p, true);
                    continue;
                }
                Err(e) => {
                    metrics::counter!(m::CONSUME_ERRORS).increment(1);
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                    ) {
                        tracing::debug!(error = %e, "topic not there yet");
                    } else {
                        tracing::warn!(error = %e, "consumer error");
                    }
                    continue;
                }
            };
            if self.consumer.context().revoked.load(Ordering::SeqCst) {
                break;
            }
            let p = msg.partition();
            let offset = msg.offset();
            self.at_end.insert(p, false);
            // Offsets only grow within a partition: anything below the next expected one is
            // a redelivery (some brokers re-send a whole batch on a fetch from its middle).
            let expected = self.next_offsets.entry(p).or_insert(offset);
            if offset < *expected {
                metrics::counter!(m::REDELIVERED).increment(1);
                continue;
            }
            if offset > *expected {
                tracing::debug!(partition = p, expected = *expected, offset, "offset gap");
            }
            *expected = offset + 1;
            let rule = self.rule(p);
            let payload = msg.payload().unwrap_or_default();
            let quote = self.validate(payload);
            if let (Ok(q), Some(r)) = (&quote, rule.resume) {
                if offset < r.read_pos && q.ts_event < r.skip_before {
                    // Counted and made durable before the restart.
                    skipped += 1;
                    positions.insert(p, (offset + 1, None));
                    continue;
                }
            }
            if let Ok(q) = &quote {
                tracked.push((p, offset, q.ts_event));
                // The first quote of a series from a resumed partition brings the series'
                // stored bars along, so its indicators continue where they were; looked up
                // by symbol, whatever partitioner the producer used.
                if let (Some(r), Some(load)) = (rule.resume, &self.warmup) {
                    let key = (q.venue, q.symbol.clone());
                    if !self.warmed.contains(&key) {
                        let bars = load(q.venue, &q.symbol, r.skip_before);
                        tracing::info!(
                            partition = p,
                            symbol = %q.symbol,
                            bars = bars.len(),
                            "signal state warmed from the store"
                        );
                        self.warm.extend(bars);
                        self.warmed.insert(key);
                    }
                }
            }
            positions.entry(p).or_insert((offset + 1, None)).0 = offset + 1;
            out.push(Polled {
                position: Position {
                    partition: p as u32,
                    offset: offset.max(0) as u64,
                },
                quote,
            });
        }
        self.take_assigned();
        let got = out.len() - start;
        if got > 0 || skipped > 0 {
            self.last_message = Instant::now();
            metrics::counter!(m::CONSUMED).increment(got as u64);
            if skipped > 0 {
                metrics::counter!(m::REPLAY_SKIPPED).increment(skipped);
            }
            self.tracker
                .record_poll(self.input_time, &tracked, positions);
        }
        // finished only when every assigned partition said it is at its end (one whose
        // first fetch has not come back yet is not)
        if self.stop_at_end
            && got == 0
            && !self.known.is_empty()
            && self.known.iter().all(|p| self.at_end.get(p) == Some(&true))
            && self.last_message.elapsed() > Duration::from_millis(500)
        {
            return Ok(SourceState::Finished);
        }
        Ok(SourceState::Open)
    }

    fn waits_when_idle(&self) -> bool {
        true
    }

    fn partitions(&self) -> Vec<u32> {
        match self.consumer.assignment() {
            Ok(tpl) => tpl
                .elements()
                .iter()
                .map(|e| e.partition() as u32)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn set_input_time(&mut self, time: u64) {
        self.input_time = time;
    }

    fn take_resumed(&mut self) -> Vec<(u32, i64)> {
        std::mem::take(&mut self.resumed)
    }

    fn take_warmup(&mut self) -> Vec<pricestream_schemas::Bar> {
        std::mem::take(&mut self.warm)
    }

    fn take_new_partitions(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.new_parts)
    }

    /// Only a partition that reached its end (the broker said so), with nothing of it
    /// left in the local queue, may be idle: one still catching up must not be overtaken
    /// by the others' watermark.
    fn caught_up(&self, partition: u32) -> bool {
        self.drained
            && self
                .at_end
                .get(&(partition as i32))
                .copied()
                .unwrap_or(false)
    }
}

/// Clears the revoked flag once the dataflow built on the old assignment is gone.
pub fn acknowledge_revocation(consumer: &KafkaConsumer) {
    consumer.context().revoked.store(false, Ordering::SeqCst);
}

/// Reads a committed offset and its metadata (for tests and `pricestream` diagnostics).
pub fn committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> KafkaResult<(Offset, Option<Resume>)> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let c = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    let e = c
        .find_partition(topic, partition)
        .ok_or(KafkaError::OffsetFetch(RDKafkaErrorCode::UnknownPartition))?;
    Ok((e.offset(), Resume::decode(e.metadata())))
}

impl From<Error> for BusError {
    fn from(e: Error) -> Self {
        BusError::Transport(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_metadata_round_trips() {
        let r = Resume {
            skip_before: -5,
            read_pos: 42,
            max_event: i64::MIN,
        };
        assert_eq!(Resume::decode(&r.encode()), Some(r));
        assert_eq!(Resume::decode(""), None);
        assert_eq!(Resume::decode("ps1;skip=x"), None);
    }

    const MIN: i64 = 60_000_000_000;

    fn feed(t: &CommitTracker, t_in: u64, records: &[(i32, i64, i64)]) {
        let positions = records
            .iter()
            .map(|&(p, offset, _)| (p, (offset + 1, None)))
            .collect();
        t.record_poll(t_in, records, positions);
    }

    #[test]
    fn commits_stop_at_the_first_record_of_a_bucket_that_is_not_final() {
        // horizon 5 minutes, lateness 1 minute
        let t = CommitTracker::new(5 * MIN, MIN);
        feed(&t, 0, &[(0, 0, 0), (0, 1, MIN), (0, 2, 4 * MIN)]);
        feed(&t, 4 * MIN as u64, &[(0, 3, 5 * MIN), (0, 4, 6 * MIN)]);
        // nothing confirmed yet
        assert!(t.durable(0).is_empty());
        // the first poll is durable, but bucket [0, 5m) is not final before 6m: offset 0
        // may not be passed
        assert!(t.durable(5 * MIN as u64).is_empty());
        // at 6m bucket 0 is final; the second poll is durable too, bucket [5m, 10m) open
        let c = t.durable(6 * MIN as u64 + 1);
        assert_eq!(c.len(), 1);
        let (p, offset, r) = c[0];
        assert_eq!((p, offset), (0, 3));
        assert_eq!(r.skip_before, 5 * MIN);
        assert_eq!(r.read_pos, 5);
        assert_eq!(r.max_event, 4 * MIN);
        // no progress, no second commit
        assert!(t.durable(6 * MIN as u64 + 2).is_empty());
    }
}
