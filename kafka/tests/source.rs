//! The Kafka source against the real broker (`PRICESTREAM_TEST_KAFKA_BROKERS`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pricestream_bus::{Polled, QuoteSource};
use pricestream_kafka::{CommitTracker, KafkaConfig, KafkaSource, Message, Producer, Topics};
use pricestream_schemas::{codec, Quote, QuoteKind, Symbol, Venue};
use rdkafka::consumer::Consumer;

fn brokers() -> Option<String> {
    match std::env::var("PRICESTREAM_TEST_KAFKA_BROKERS") {
        Ok(b) => Some(b),
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PRICESTREAM_TEST_KAFKA_BROKERS must be set in CI (scripts/test starts a broker)"
            );
            eprintln!("*** SKIPPED: PRICESTREAM_TEST_KAFKA_BROKERS is not set ***");
            None
        }
    }
}

fn config(brokers: String, name: &str) -> KafkaConfig {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("src-{name}-{}-{nanos}", std::process::id());
    KafkaConfig {
        brokers,
        group_id: format!("{prefix}.group"),
        topics: Topics {
            quotes: format!("{prefix}.quotes"),
            bars: format!("{prefix}.bars"),
            signals: format!("{prefix}.signals"),
            alerts: format!("{prefix}.alerts"),
            dlq: format!("{prefix}.dlq"),
        },
        partitions: 4,
        ..KafkaConfig::default()
    }
}

fn quote(symbol: &str, ts: i64) -> Quote {
    Quote {
        venue: Venue::Synthetic,
        symbol: Symbol::new(symbol).unwrap(),
        kind: QuoteKind::Trade,
        price: 100.0,
        size: 1.0,
        side: None,
        trade_id: None,
        bid: None,
        ask: None,
        ts_event: ts,
        ts_ingest: ts,
    }
}

/// The watermark holds back for every assigned partition, so the dataflow must hear of a
/// partition no later than of its first record: otherwise the others' watermark overtakes
/// its records, which then count as late (revisions, or dead letters past the allowed
/// lateness). The assignment arrives inside the consumer's poll (a rebalance callback),
/// and the new partitions' records can follow within milliseconds: the poll that served
/// the assignment must announce it.
#[test]
fn a_partition_is_announced_before_or_with_its_first_records() {
    let Some(brokers) = brokers() else { return };
    let cfg = config(brokers, "announce");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(pricestream_kafka::admin::ensure_topics(&cfg))
        .unwrap();
    let producer = Producer::new(&cfg).unwrap();
    let messages: Vec<Message> = (0..4_000i64)
        .map(|i| {
            let p = (i % 4) as i32;
            Message {
                key: format!("S{p}-USDT").into_bytes(),
                partition: Some(p),
                payload: codec::encode(&quote(&format!("S{p}-USDT"), 1_000_000_000 * i)),
                headers: Vec::new(),
            }
        })
        .collect();
    rt.block_on(producer.send_all(&cfg.topics.quotes, &messages))
        .unwrap();

    let consumer = pricestream_kafka::consumer(&cfg).unwrap();
    let tracker = CommitTracker::new(3_600_000_000_000, 0);
    let mut source = KafkaSource::new(std::sync::Arc::clone(&consumer), tracker, &cfg, true);
    let mut announced: BTreeSet<u32> = BTreeSet::new();
    let mut read: BTreeSet<u32> = BTreeSet::new();
    let mut buf: Vec<Polled> = Vec::new();
    let mut got = 0;
    let started = Instant::now();
    // The group join goes on in the background while nobody polls; the assignment then
    // waits for the next poll, which serves it, and the records follow a few ms later.
    source.poll(64, &mut buf).unwrap();
    assert!(buf.is_empty(), "records before the group was joined");
    announced.extend(source.take_new_partitions());
    std::thread::sleep(Duration::from_secs(2));
    while got < messages.len() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "read {got} of {} records in 60 s",
            messages.len()
        );
        buf.clear();
        source.poll(64, &mut buf).unwrap();
        announced.extend(source.take_new_partitions());
        // the assignment changes only inside a poll: whatever it is now was announced
        let assigned: BTreeSet<u32> = consumer
            .assignment()
            .unwrap()
            .elements()
            .iter()
            .map(|e| e.partition() as u32)
            .collect();
        let unannounced: Vec<_> = assigned.difference(&announced).collect();
        assert!(
            unannounced.is_empty(),
            "partitions {unannounced:?} were assigned in a poll that did not announce them"
        );
        for polled in &buf {
            read.insert(polled.position.partition);
        }
        let unannounced: Vec<_> = read.difference(&announced).collect();
        assert!(
            unannounced.is_empty(),
            "records of partitions {unannounced:?} came before the partitions were announced \
             (announced: {announced:?})"
        );
        got += buf.len();
    }
    assert_eq!(read, (0..4).collect::<BTreeSet<u32>>());
}

/// A partition that was at its end, and then got records while the worker was busy
/// elsewhere, is not caught up while those records wait in the local queue behind the
/// other partitions' (were it taken for idle, the others' watermark would overtake them).
#[test]
fn records_waiting_in_the_local_queue_keep_a_partition_from_being_caught_up() {
    let Some(brokers) = brokers() else { return };
    let cfg = KafkaConfig {
        partitions: 2,
        ..config(brokers, "queued")
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(pricestream_kafka::admin::ensure_topics(&cfg))
        .unwrap();
    let producer = Producer::new(&cfg).unwrap();
    let batch = |from: i64, n: i64| -> Vec<Message> {
        (from..from + n)
            .map(|i| {
                let p = (i % 2) as i32;
                Message {
                    key: format!("S{p}-USDT").into_bytes(),
                    partition: Some(p),
                    payload: codec::encode(&quote(&format!("S{p}-USDT"), 1_000_000_000 * i)),
                    headers: Vec::new(),
                }
            })
            .collect()
    };
    rt.block_on(producer.send_all(&cfg.topics.quotes, &batch(0, 10)))
        .unwrap();
    let consumer = pricestream_kafka::consumer(&cfg).unwrap();
    let mut source = KafkaSource::new(
        consumer,
        CommitTracker::new(3_600_000_000_000, 0),
        &cfg,
        false,
    );
    let mut buf: Vec<Polled> = Vec::new();
    // read everything, until both partitions report their end
    let started = Instant::now();
    while !(source.caught_up(0) && source.caught_up(1)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never at the end"
        );
        source.poll(1_000, &mut buf).unwrap();
    }
    assert_eq!(buf.len(), 10);

    // both partitions get records while nobody polls; the fetcher queues them locally
    rt.block_on(producer.send_all(&cfg.topics.quotes, &batch(10, 400)))
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    buf.clear();
    source.poll(20, &mut buf).unwrap();
    assert_eq!(buf.len(), 20, "the queued records");
    // the local queue hands out one partition's fetched batch before the next one's
    let read: BTreeSet<u32> = buf.iter().map(|p| p.position.partition).collect();
    assert_eq!(
        read.len(),
        1,
        "20 records from one partition's batch: {read:?}"
    );
    let waiting = 1 - *read.first().unwrap();
    assert!(
        !source.caught_up(waiting),
        "partition {waiting} has records in the queue yet counts as caught up"
    );
    // once the queue is empty again, both are at their end
    let started = Instant::now();
    while !(source.caught_up(0) && source.caught_up(1)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never at the end again"
        );
        source.poll(1_000, &mut buf).unwrap();
    }
    assert_eq!(buf.len(), 400);
}
