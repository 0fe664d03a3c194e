//! The Kafka transport end to end, with the real binary and a real Kafka-protocol broker
//! (`PRICESTREAM_TEST_KAFKA_BROKERS`, started by scripts/test): `ingest` publishes a
//! seeded synthetic market to `quotes.v1`; `process` consumes it. A process killed with
//! SIGKILL and restarted must converge to exactly the rows and lake files of a process that
//! never crashed; poison messages must land in `quotes.dlq` with their reason.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_schemas::{Interval, Symbol};
use pricestream_store::{BarQuery, SignalQuery, Store};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// The binary under test (`PRICESTREAM_TEST_BIN` overrides the one cargo built).
fn bin() -> String {
    std::env::var("PRICESTREAM_TEST_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_pricestream").to_string())
}
const SYMBOLS: [&str; 3] = ["BTC-USDT", "ETH-USDT", "SOL-USDT"];
/// 2024-03-01T00:00:00Z
const START_MS: i64 = 1_709_251_200_000;

/// The broker, or `None` (with a loud message) outside CI; in CI a missing broker fails.
fn brokers() -> Option<String> {
    match std::env::var("PRICESTREAM_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PRICESTREAM_TEST_KAFKA_BROKERS is not set: in CI the Kafka tests must run \
                 (scripts/test starts a broker)"
            );
            eprintln!(
                "\n*** SKIPPED: no Kafka broker (set PRICESTREAM_TEST_KAFKA_BROKERS or run \
                 scripts/test) ***\n"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

struct Setup {
    brokers: String,
    topics: String,
    trades: u64,
}

/// A configuration: its own data folder, the test's topics, consumer group `group`.
fn write_config(dir: &Path, s: &Setup, group: &str) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("pricestream.toml");
    let t = &s.topics;
    let text = format!(
        r#"
data_dir = "{data}"
[api]
listen = "127.0.0.1:{port}"
[pipeline]
workers = 2
idle_timeout_ms = 3000
max_out_of_orderness_ms = 2000
allowed_lateness_ms = 60000
rollups = ["5m", "15m", "1h"]
[connectors.synthetic]
seed = 7
symbols = {symbols:?}
trades_per_sec = 1.0
speed = 0.0
start_ms = {START_MS}
disorder_fraction = 0.05
disorder_max_ms = 90000
max_trades = {trades}
[kafka]
brokers = "{brokers}"
group_id = "{group}"
partitions = 4
linger_ms = 2
commit_interval_ms = 100
[kafka.topics]
quotes = "{t}.quotes"
bars = "{t}.bars"
signals = "{t}.signals"
alerts = "{t}.alerts"
dlq = "{t}.dlq"
# static membership: a restarted processor takes its predecessor's place in the group
# at once instead of waiting for the broker to expire it
[kafka.properties]
"group.instance.id" = "{group}-1"
# one message per record batch: the test broker (tansu 0.6) answers a fetch from the
# middle of a batch with the next batch, which would skip the records a resume needs
"batch.num.messages" = "1"
"#,
        data = dir.join("data").display(),
        symbols = SYMBOLS,
        trades = s.trades,
        brokers = s.brokers,
    );
    std::fs::write(&path, text).unwrap();
    path
}

struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(config: &Path, args: &[&str]) -> Proc {
    Proc(Some(
        Command::new(bin())
            .arg("--config")
            .arg(config)
            .args(args)
            .env("PRICESTREAM_LOG", "info,pricestream_kafka=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// Waits for the process to exit by itself; panics with its log if it fails or hangs.
fn finish(mut p: Proc, timeout: Duration) -> String {
    let mut child = p.0.take().unwrap();
    let start = Instant::now();
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            err = reader.join().unwrap();
            panic!("timed out after {timeout:?}; log:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if err.is_empty() {
        err = reader.join().unwrap();
    }
    assert!(status.success(), "exit status {status}; log:\n{err}");
    err
}

async fn store_of(dir: &Path) -> Arc<dyn Store> {
    let url = format!("sqlite://{}/data/pricestream.db", dir.display());
    pricestream_store::open(&url, 2).await.unwrap()
}

/// Every bar of every interval, keyed, as comparable text.
async fn all_bars(store: &Arc<dyn Store>) -> BTreeMap<(String, String, i64), String> {
    let mut out = BTreeMap::new();
    for sym in SYMBOLS {
        for interval in [Interval::M1, Interval::M5, Interval::M15, Interval::H1] {
            let bars = store
                .query_bars(&BarQuery {
                    venue: None,
                    symbol: Symbol::new(sym).unwrap(),
                    interval,
                    from: 0,
                    to: i64::MAX,
                    limit: 100_000,
                    tail: false,
                })
                .await
                .unwrap();
            for b in bars {
                out.insert(
                    (
                        sym.to_string(),
                        interval.as_str().to_string(),
                        b.bucket_start,
                    ),
                    format!(
                        "o={} h={} l={} c={} v={} n={} vwap={} rev={}",
                        b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.vwap, b.revision
                    ),
                );
            }
        }
    }
    out
}

async fn all_signals(store: &Arc<dyn Store>) -> Vec<String> {
    let mut v: Vec<String> = store
        .query_signals(&SignalQuery {
            symbol: None,
            interval: None,
            kind: None,
            from: 0,
            to: i64::MAX,
            limit: 1_000_000,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|s| format!("{s:?}"))
        .collect();
    v.sort();
    v
}

/// Relative path → bytes of every file under the lake's `bars` dataset.
fn lake_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let root = dir.join("data/lake/bars");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Reads a topic until `n` messages came or nothing arrived for a while.
fn read_topic(brokers: &str, topic: &str, n: usize) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    let c = consumer(brokers, &unique("reader"));
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < n && last.elapsed() < Duration::from_secs(8) {
        if let Some(r) = c.poll(Duration::from_millis(200)) {
            let m = r.unwrap();
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for x in h.iter() {
                    headers.insert(
                        x.key.to_string(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push((m.payload().unwrap_or_default().to_vec(), headers));
            last = Instant::now();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_processor_converges_to_the_same_rows_and_files() {
    let Some(brokers) = brokers() else { return };
    let setup = Setup {
        brokers: brokers.clone(),
        topics: unique("crash"),
        trades: 30_000,
    };
    let ingest_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(ingest_dir.path(), &setup, "unused");
    let log = finish(spawn(&cfg, &["ingest"]), Duration::from_secs(180));
    assert!(log.contains("ingestion finished"), "{log}");

    // the reference: one uninterrupted pass
    let ref_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(ref_dir.path(), &setup, &unique("ref"));
    finish(
        spawn(&cfg, &["process", "--exit-at-end"]),
        Duration::from_secs(300),
    );

    // killed (SIGKILL, no chance to flush or commit) after its first commits, then resumed
    let crash_dir = tempfile::tempdir().unwrap();
    let group = unique("crash");
    let cfg = write_config(crash_dir.path(), &setup, &group);
    let first_log = crash_dir.path().join("first.log");
    let mut p = Proc(Some(
        Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .arg("process")
            .env("PRICESTREAM_LOG", "info,pricestream_kafka=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&first_log).unwrap())
            .spawn()
            .unwrap(),
    ));
    // reads the group's committed offsets without joining it (no subscribe), so it never
    // takes partitions away
    let c = consumer(&brokers, &group);
    let quotes_topic = format!("{}.quotes", setup.topics);
    let start = Instant::now();
    let mut committed_partitions = 0;
    while start.elapsed() < Duration::from_secs(120) {
        committed_partitions = (0..4)
            .filter(|&part| {
                matches!(
                    pricestream_kafka::source::committed(&c, &quotes_topic, part),
                    Ok((rdkafka::Offset::Offset(o), _)) if o > 0
                )
            })
            .count();
        if committed_partitions >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        committed_partitions >= 1,
        "no offsets were committed: {:?}",
        (0..4)
            .map(|part| pricestream_kafka::source::committed(&c, &quotes_topic, part))
            .collect::<Vec<_>>()
    );
    let mut child = p.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let log = finish(
        spawn(&cfg, &["process", "--exit-at-end"]),
        Duration::from_secs(300),
    );
    eprintln!(
        "first log:\n{}\nrestart log:\n{log}",
        std::fs::read_to_string(&first_log).unwrap_or_default()
    );
    assert!(log.contains("resuming partition"), "{log}");

    let (reference, resumed) = (
        store_of(ref_dir.path()).await,
        store_of(crash_dir.path()).await,
    );
    let (a, b) = (all_bars(&reference).await, all_bars(&resumed).await);
    assert!(a.len() > 500, "only {} bars", a.len());
    let diff: Vec<_> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?}: {v} vs {:?}", b.get(k)))
        .chain(
            b.keys()
                .filter(|k| !a.contains_key(*k))
                .map(|k| format!("extra {k:?}")),
        )
        .take(10)
        .collect();
    assert!(diff.is_empty(), "bars differ after the crash: {diff:#?}");
    let (la, lb) = (lake_files(ref_dir.path()), lake_files(crash_dir.path()));
    assert!(!la.is_empty());
    assert_eq!(
        la.keys().collect::<Vec<_>>(),
        lb.keys().collect::<Vec<_>>(),
        "lake files differ"
    );
    for (k, v) in &la {
        assert!(lb[k] == *v, "lake file {k} differs");
    }
    let (sa, sb) = (all_signals(&reference).await, all_signals(&resumed).await);
    assert!(!sa.is_empty());
    assert_eq!(sa.len(), sb.len(), "signal counts differ");
    assert_eq!(sa, sb, "signals differ");

    // every bar also reached bars.v1 (revisions included: the newest revision per key wins)
    let bars_topic = format!("{}.bars", setup.topics);
    let published = read_topic(&brokers, &bars_topic, usize::MAX);
    let mut newest: BTreeMap<(String, String, i64), u32> = BTreeMap::new();
    for (payload, _) in &published {
        let bar: pricestream_schemas::Bar = pricestream_schemas::codec::decode(payload).unwrap();
        let k = (
            bar.symbol.as_str().to_string(),
            bar.interval.as_str().to_string(),
            bar.bucket_start,
        );
        let e = newest.entry(k).or_insert(bar.revision);
        *e = (*e).max(bar.revision);
    }
    let missing: Vec<_> = a
        .keys()
        .filter(|k| !newest.contains_key(*k))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "bars not on {bars_topic}: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dlq_with_their_reason_and_processing_goes_on() {
    let Some(brokers) = brokers() else { return };
    let setup = Setup {
        brokers: brokers.clone(),
        topics: unique("poison"),
        trades: 600,
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &setup, &unique("poison"));
    finish(spawn(&cfg, &["ingest"]), Duration::from_secs(120));
    let topic = format!("{}.quotes", setup.topics);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let far = (START_MS + 10 * 365 * 86_400_000) * 1_000_000;
    let ts = (START_MS + 60_000) * 1_000_000;
    let poison: Vec<(&str, String)> = vec![
        ("malformed", "{not json".to_string()),
        (
            "schema",
            r#"{"v":1,"venue":"binance","symbol":"BTC-USDT"}"#.to_string(),
        ),
        (
            "invalid_price",
            format!(
                r#"{{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":-5.0,"size":1.0,"ts_event":{ts},"ts_ingest":{ts}}}"#
            ),
        ),
        (
            "invalid_price",
            format!(
                r#"{{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":0.0,"size":1.0,"ts_event":{ts},"ts_ingest":{ts}}}"#
            ),
        ),
        // an event time far past its own ingest time
        (
            "bad_timestamp",
            format!(
                r#"{{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":5.0,"size":1.0,"ts_event":{far},"ts_ingest":{ts}}}"#
            ),
        ),
        // consistent in itself, but far ahead of the processor's clock
        (
            "future",
            format!(
                r#"{{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":5.0,"size":1.0,"ts_event":{far},"ts_ingest":{far}}}"#
            ),
        ),
    ];
    for (i, (_, payload)) in poison.iter().enumerate() {
        producer
            .send(
                BaseRecord::to(&topic)
                    .key("BTC-USDT")
                    .partition((i % 4) as i32)
                    .payload(payload.as_bytes()),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let log = finish(
        spawn(&cfg, &["process", "--exit-at-end"]),
        Duration::from_secs(180),
    );
    eprintln!("process log:\n{log}");
    let dlq = read_topic(&brokers, &format!("{}.dlq", setup.topics), usize::MAX);
    let mut got: Vec<(String, Vec<u8>)> = dlq
        .iter()
        .filter(|(_, h)| h.get("reason").map(String::as_str) != Some("late"))
        .map(|(p, h)| (h["reason"].clone(), p.clone()))
        .collect();
    got.sort();
    let mut want: Vec<(String, Vec<u8>)> = poison
        .iter()
        .map(|(r, p)| (r.to_string(), p.as_bytes().to_vec()))
        .collect();
    want.sort();
    assert_eq!(got, want, "DLQ reasons or payloads differ");
    // the valid quotes were processed all the same
    let store = store_of(dir.path()).await;
    let bars = all_bars(&store).await;
    assert!(bars.len() > 20, "only {} bars", bars.len());
    let counts: BTreeMap<String, u64> = store
        .dead_letter_counts()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(counts.get("malformed"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("future"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("bad_timestamp"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("invalid_price"), Some(&2), "{counts:?}");
}
