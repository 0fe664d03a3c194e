//! The Kafka transport end to end, with the real binary and a real Kafka-protocol broker
//! (`PRICESTREAM_TEST_KAFKA_BROKERS`, started by scripts/test):
//! - JSON quotes from a producer that only follows the published schema become the same
//!   bars and signals through `process` as through the embedded mode;
//! - a processor killed with SIGKILL three times converges to exactly the rows and lake
//!   files of one that never crashed;
//! - 1,000 poison messages among 100,000 good ones all land in `quotes.dlq` with their
//!   reason, and every good one is counted;
//! - two processors in one group (sharing a PostgreSQL store, `PRICESTREAM_TEST_PG_URL`)
//!   split the partitions and together make exactly the bars of one.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Synthetic trades `ingest` publishes (0: the synthetic market is off).
    trades: u64,
}

/// How a configuration differs from the default one of these tests.
#[derive(Default)]
struct Opts<'a> {
    /// Kafka consumer group (`None`: the embedded in-process bus, no broker).
    group: Option<&'a str>,
    /// Static group membership id (default: the group's name with `-1`; empty: dynamic
    /// membership).
    instance: Option<&'a str>,
    /// The store (default: SQLite in the data folder).
    store_url: Option<&'a str>,
    /// NDJSON files of quotes to replay (the embedded run of the same input).
    replay: Option<&'a Path>,
    /// Pace of the synthetic market (simulated seconds per second; 0 = as fast as it can).
    speed: f64,
}

/// A configuration with the default options and consumer group `group`.
fn write_config(dir: &Path, s: &Setup, group: &str) -> PathBuf {
    write_config_with(
        dir,
        s,
        &Opts {
            group: Some(group),
            ..Opts::default()
        },
    )
}

/// A configuration: its own data folder and API port, the test's topics.
fn write_config_with(dir: &Path, s: &Setup, o: &Opts) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("pricestream.toml");
    let t = &s.topics;
    let mut text = format!(
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
enabled = {synthetic}
seed = 7
symbols = {symbols:?}
trades_per_sec = 0.25
speed = {speed}
start_ms = {START_MS}
disorder_fraction = 0.05
disorder_max_ms = 90000
max_trades = {trades}
"#,
        data = dir.join("data").display(),
        synthetic = s.trades > 0,
        symbols = SYMBOLS,
        trades = s.trades.max(1),
        speed = o.speed,
    );
    if let Some(url) = o.store_url {
        text.push_str(&format!("[store]\nurl = \"{url}\"\n"));
    }
    if let Some(file) = o.replay {
        text.push_str(&format!(
            "[connectors.replay]\nenabled = true\nformat = \"quotes_ndjson\"\npaths = [\"{}\"]\nspeed = 0.0\n",
            file.display()
        ));
    }
    if let Some(group) = o.group {
        let instance = match o.instance {
            None => format!("\"group.instance.id\" = \"{group}-1\""),
            Some("") => String::new(),
            Some(id) => format!("\"group.instance.id\" = \"{id}\""),
        };
        text.push_str(&format!(
            r#"
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
{instance}
# one message per record batch: the test broker (tansu 0.6) answers a fetch from the
# middle of a batch with the next batch, which would skip the records a resume needs
"batch.num.messages" = "1"
"#,
            brokers = s.brokers,
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `pricestream`, its log in a file beside its configuration; killed if the test
/// fails before it ends.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush or commit.
    fn kill(mut self) -> String {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        self.log()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(config: &Path, args: &[&str]) -> Proc {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let log = config.with_file_name(format!(
        "{}-{}.log",
        args[0],
        RUNS.fetch_add(1, Ordering::SeqCst)
    ));
    let child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("PRICESTREAM_LOG", "info,pricestream_kafka=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc {
        child: Some(child),
        log,
    }
}

/// Waits for the process to exit by itself; panics with its log if it fails or hangs.
fn finish(mut p: Proc, timeout: Duration) -> String {
    let mut child = p.child.take().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?}; log:\n{}", p.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = p.log();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    log
}

/// Waits until the log shows `line`; panics with the log if the process dies first.
fn wait_for_log(p: &mut Proc, line: &str, timeout: Duration) {
    let start = Instant::now();
    while !p.log().contains(line) {
        if let Some(s) = p.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("exited ({s}) before logging {line:?}:\n{}", p.log());
        }
        assert!(
            start.elapsed() < timeout,
            "no {line:?} after {timeout:?}:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then waits for a clean exit.
fn terminate(p: Proc) -> String {
    let pid = p.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    finish(p, Duration::from_secs(60))
}

async fn store_of(dir: &Path) -> Arc<dyn Store> {
    let url = format!("sqlite://{}/data/pricestream.db", dir.display());
    pricestream_store::open(&url, 2).await.unwrap()
}

/// Every bar of every interval, keyed, as comparable text.
async fn all_bars(
    store: &Arc<dyn Store>,
    symbols: &[&str],
) -> BTreeMap<(String, String, i64), String> {
    let mut out = BTreeMap::new();
    for sym in symbols {
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

/// The trades counted in the 1m bars of `all_bars`.
fn trades_in_1m(bars: &BTreeMap<(String, String, i64), String>) -> u64 {
    bars.iter()
        .filter(|((_, iv, _), _)| iv == "1m")
        .map(|(_, v)| {
            v.split_whitespace()
                .find_map(|f| f.strip_prefix("n="))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// Panics with the first differences when the two sets of bars are not identical.
fn assert_same_bars(
    want: &BTreeMap<(String, String, i64), String>,
    got: &BTreeMap<(String, String, i64), String>,
    what: &str,
) {
    let diff: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?}: {v} vs {:?}", got.get(k)))
        .chain(
            got.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("extra {k:?}")),
        )
        .take(10)
        .collect();
    assert!(diff.is_empty(), "{what}: bars differ: {diff:#?}");
}

/// Every signal as comparable text; the ingest time is left out (a replay stamps its own).
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
        .map(|s| {
            format!(
                "{} {} {} {:?} {} {} {}",
                s.venue.as_str(),
                s.symbol.as_str(),
                s.interval.as_str(),
                s.kind,
                s.bucket_start,
                s.value,
                s.ts_event
            )
        })
        .collect();
    v.sort();
    v
}

/// Panics with the signals only one side has when the two lists differ. Values may differ
/// by 1e-9 relative: a resumed series is warmed from stored bars, so its running sums can
/// round differently in the last digits.
fn assert_same_signals(want: &[String], got: &[String], what: &str) {
    let split = |s: &String| -> (String, f64) {
        let f: Vec<&str> = s.split(' ').collect();
        (
            format!("{} {} {} {} {} {}", f[0], f[1], f[2], f[3], f[4], f[6]),
            f[5].parse().unwrap(),
        )
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300);
    let (w, g): (BTreeMap<_, _>, BTreeMap<_, _>) = (
        want.iter().map(split).collect(),
        got.iter().map(split).collect(),
    );
    let only = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| -> Vec<String> {
        a.iter()
            .filter(|(k, v)| !b.get(*k).is_some_and(|x| close(**v, *x)))
            .map(|(k, v)| format!("{k} = {v}"))
            .take(10)
            .collect()
    };
    let (missing, extra) = (only(&w, &g), only(&g, &w));
    assert!(
        want.len() == got.len() && missing.is_empty() && extra.is_empty(),
        "{what}: signals differ ({} vs {}); missing: {missing:#?}; extra: {extra:#?}",
        want.len(),
        got.len(),
    );
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

/// The sum of a group's committed offsets on `topic` (partitions without a commit: 0).
fn committed_total(c: &BaseConsumer, topic: &str) -> i64 {
    (0..4)
        .map(
            |part| match pricestream_kafka::source::committed(c, topic, part) {
                Ok((rdkafka::Offset::Offset(o), _)) => o,
                _ => 0,
            },
        )
        .sum()
}

/// Waits (at most `timeout`) until the group's committed offsets on `topic` pass `above`;
/// returns the last total seen.
fn wait_for_commits(c: &BaseConsumer, topic: &str, above: i64, timeout: Duration) -> i64 {
    let start = Instant::now();
    loop {
        let total = committed_total(c, topic);
        if total > above || start.elapsed() > timeout {
            return total;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// xorshift: the tests' streams need no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seed() -> u64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {s}");
    s
}

/// The published JSON Schema of `quotes.v1`, read as a file (as any outside client would).
fn quote_schema() -> (boon::Schemas, boon::SchemaIndex) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/json/quotes.v1.schema.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource("quotes.v1", doc).unwrap();
    let idx = compiler.compile("quotes.v1", &mut schemas).unwrap();
    (schemas, idx)
}

/// Trades as a client that knows nothing of the pipeline writes them: JSON objects built
/// by hand, each checked against the published schema; key = symbol. Event times run
/// forward with up to 1.5 s of disorder, less than the configured out-of-orderness, so no
/// trade is ever late and every run must count every one.
fn outside_quotes(symbols: &[&str], n: usize, rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let (schemas, idx) = quote_schema();
    let mut prices: Vec<f64> = (0..symbols.len()).map(|i| 50.0 * (i + 1) as f64).collect();
    let mut t = START_MS * 1_000_000;
    (0..n)
        .map(|i| {
            let k = rng.below(symbols.len() as u64) as usize;
            t += rng.below(1_000_000_000) as i64;
            prices[k] *= 1.0 + (rng.unit() - 0.5) * 0.004;
            let q = serde_json::json!({
                "v": 1,
                "venue": "binance",
                "symbol": symbols[k],
                "kind": "trade",
                "price": (prices[k] * 100.0).round() / 100.0,
                "size": (rng.unit() * 5_000.0).round() / 1_000.0,
                "side": if rng.below(2) == 0 { "buy" } else { "sell" },
                "trade_id": i,
                "ts_event": t - rng.below(1_500_000_000) as i64,
                "ts_ingest": t + 3_000_000,
            });
            if let Err(e) = schemas.validate(&q, idx) {
                panic!("the test's own quote does not follow the schema: {e}\n{q}");
            }
            (symbols[k].to_string(), q.to_string().into_bytes())
        })
        .collect()
}

/// Creates `topic` with 4 partitions through the admin API.
async fn create_topic(brokers: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let r = admin
        .create_topics(
            &[NewTopic::new(topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    for x in r {
        x.unwrap();
    }
}

/// Counts the broker's delivery reports.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.delivered.fetch_add(1, Ordering::SeqCst),
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                self.failed.fetch_add(1, Ordering::SeqCst)
            }
        };
    }
}

/// Produces `msgs` in order with librdkafka's own partitioner (key = symbol), idempotent,
/// and checks that the broker acknowledged every one. `one_per_batch` for streams a
/// processor will resume in (see the broker note in `write_config_with`); `per_sec`
/// paces the stream like a live feed (0: as fast as the broker takes it).
fn produce(
    brokers: &str,
    topic: &str,
    msgs: &[(String, Vec<u8>)],
    one_per_batch: bool,
    per_sec: u64,
) {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set(
            "batch.num.messages",
            if one_per_batch { "1" } else { "10000" },
        )
        .create_with_context(Deliveries::default())
        .unwrap();
    let start = Instant::now();
    for (i, (key, payload)) in msgs.iter().enumerate() {
        if per_sec > 0 && i % 100 == 0 {
            let due = Duration::from_millis(i as u64 * 1_000 / per_sec);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300)).unwrap();
    let d = producer.context();
    assert_eq!(d.failed.load(Ordering::SeqCst), 0, "failed deliveries");
    assert_eq!(
        d.delivered.load(Ordering::SeqCst),
        msgs.len(),
        "deliveries to {topic}"
    );
}

/// A fresh schema on the test PostgreSQL server (`PRICESTREAM_TEST_PG_URL`) and the store
/// URL that works in it; `None` (loudly) outside CI when there is no server.
async fn pg_schema(name: &str) -> Option<(sqlx::PgPool, String, String)> {
    let url = match std::env::var("PRICESTREAM_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PRICESTREAM_TEST_PG_URL is not set: in CI the shared-store Kafka test must run"
            );
            eprintln!("\n*** SKIPPED: no PostgreSQL (set PRICESTREAM_TEST_PG_URL) ***\n");
            return None;
        }
    };
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let schema = format!("{name}_{}", std::process::id());
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let store_url = format!("{url}{sep}options[search_path]={schema}");
    Some((admin, schema, store_url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_from_an_outside_producer_become_the_bars_of_the_embedded_mode() {
    let Some(brokers) = brokers() else { return };
    let setup = Setup {
        brokers: brokers.clone(),
        topics: unique("outside"),
        trades: 0,
    };
    let symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT"];
    let quotes = outside_quotes(&symbols, 12_000, &mut Rng(seed()));
    let topic = format!("{}.quotes", setup.topics);
    create_topic(&brokers, &topic).await;
    produce(&brokers, &topic, &quotes, false, 0);

    let kafka_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(kafka_dir.path(), &setup, &unique("outside"));
    finish(
        spawn(&cfg, &["process", "--exit-at-end"]),
        Duration::from_secs(300),
    );

    // the same quotes, replayed from a file through the embedded in-process bus
    let embedded_dir = tempfile::tempdir().unwrap();
    let file = embedded_dir.path().join("quotes.ndjson");
    let mut text = Vec::new();
    for (_, q) in &quotes {
        text.extend_from_slice(q);
        text.push(b'\n');
    }
    std::fs::write(&file, text).unwrap();
    let cfg = write_config_with(
        embedded_dir.path(),
        &setup,
        &Opts {
            replay: Some(&file),
            ..Opts::default()
        },
    );
    let mut run = spawn(&cfg, &["run"]);
    wait_for_log(
        &mut run,
        "all connectors finished",
        Duration::from_secs(300),
    );
    let log = terminate(run);
    assert!(log.contains("quotes=12000"), "{log}");

    let (kafka, embedded) = (
        store_of(kafka_dir.path()).await,
        store_of(embedded_dir.path()).await,
    );
    let (a, b) = (
        all_bars(&embedded, &symbols).await,
        all_bars(&kafka, &symbols).await,
    );
    assert!(a.len() > 400, "only {} bars", a.len());
    assert_eq!(trades_in_1m(&a), 12_000, "every trade is in a 1m bar");
    assert_same_bars(&a, &b, "Kafka vs embedded");
    let (sa, sb) = (all_signals(&embedded).await, all_signals(&kafka).await);
    assert!(!sa.is_empty());
    assert_same_signals(&sa, &sb, "Kafka vs embedded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_three_times_converges_to_the_same_rows_and_files() {
    let Some(brokers) = brokers() else { return };
    let setup = Setup {
        brokers: brokers.clone(),
        topics: unique("crash"),
        trades: 30_000,
    };
    // the market arrives live (about 900 trades a second, for half a minute) while the
    // processor is killed
    let ingest_dir = tempfile::tempdir().unwrap();
    let cfg = write_config_with(
        ingest_dir.path(),
        &setup,
        &Opts {
            group: Some("unused"),
            speed: 1_200.0,
            ..Opts::default()
        },
    );
    let ingest = spawn(&cfg, &["ingest"]);
    let quotes_topic = format!("{}.quotes", setup.topics);

    // killed three times (SIGKILL: no chance to flush or commit), each at a random moment
    // after that incarnation committed more (or after 30 s without), then resumed to the end
    let crash_dir = tempfile::tempdir().unwrap();
    let group = unique("crash");
    let cfg = write_config(crash_dir.path(), &setup, &group);
    // reads the group's committed offsets without joining it (no subscribe), so it never
    // takes partitions away
    let c = consumer(&brokers, &group);
    let mut rng = Rng(seed());
    let mut kills = Vec::new();
    let mut committed = 0;
    for _ in 0..3 {
        let p = spawn(&cfg, &["process"]);
        wait_for_commits(&c, &quotes_topic, committed, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        let log = p.kill();
        committed = committed_total(&c, &quotes_topic);
        eprintln!("killed with {committed} offsets committed");
        kills.push((committed, log));
    }
    let log = finish(ingest, Duration::from_secs(180));
    assert!(log.contains("ingestion finished"), "{log}");
    let log = finish(
        spawn(&cfg, &["process", "--exit-at-end"]),
        Duration::from_secs(300),
    );
    let committed: Vec<i64> = kills.iter().map(|(c, _)| *c).collect();
    if committed.iter().all(|c| *c == 0) {
        eprintln!("first kill's log:\n{}", kills[0].1);
    }
    assert!(
        committed.iter().any(|c| *c > 0) && committed.iter().all(|c| *c < 30_000),
        "the kills should fall after the first commits and before the end: {committed:?}"
    );
    assert!(log.contains("resuming partition"), "{log}");

    // the reference: one uninterrupted pass over the same topic
    let ref_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(ref_dir.path(), &setup, &unique("ref"));
    finish(
        spawn(&cfg, &["process", "--exit-at-end"]),
        Duration::from_secs(300),
    );

    let (reference, resumed) = (
        store_of(ref_dir.path()).await,
        store_of(crash_dir.path()).await,
    );
    let (a, b) = (
        all_bars(&reference, &SYMBOLS).await,
        all_bars(&resumed, &SYMBOLS).await,
    );
    assert!(a.len() > 500, "only {} bars", a.len());
    assert_same_bars(&a, &b, "after three crashes");
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
    assert_same_signals(&sa, &sb, "after three crashes");

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

/// The poison message number `i`, keyed by one of `symbols`, and the reason it must be
/// dead-lettered with.
fn poison(i: usize, symbols: &[&str], rng: &mut Rng) -> (&'static str, String, Vec<u8>) {
    let symbol = symbols[rng.below(symbols.len() as u64) as usize];
    let ts = (START_MS + 600_000) * 1_000_000 + i as i64;
    let far = ts + 10 * 365 * 86_400_000_000_000;
    let quote = |price: &str, size: &str, ts_event: i64, ts_ingest: i64| {
        format!(
            r#"{{"v":1,"venue":"binance","symbol":"{symbol}","kind":"trade","price":{price},"size":{size},"trade_id":{i},"ts_event":{ts_event},"ts_ingest":{ts_ingest}}}"#
        )
    };
    let (reason, payload) = match i % 12 {
        0 => ("malformed", format!("{{not json #{i}")),
        1 => ("malformed", quote("5.0", "1.0", ts, ts)[..60].to_string()),
        2 => (
            "schema",
            format!(r#"{{"v":1,"venue":"binance","symbol":"{symbol}","trade_id":{i}}}"#),
        ),
        3 => (
            "schema",
            quote("5.0", "1.0", ts, ts).replace("binance", "nyse"),
        ),
        4 => (
            "schema",
            quote("5.0", "1.0", ts, ts).replace(symbol, &symbol.to_lowercase()),
        ),
        5 => ("invalid_price", quote("-5.0", "1.0", ts, ts)),
        6 => ("invalid_price", quote("0", "1.0", ts, ts)),
        7 => ("invalid_price", quote("1e999", "1.0", ts, ts)),
        8 => ("invalid_price", quote("5.0", "-1.0", ts, ts)),
        // an event time far past its own ingest time
        9 => ("bad_timestamp", quote("5.0", "1.0", far, ts)),
        // consistent in itself, but far ahead of the processor's clock
        10 => ("future", quote("5.0", "1.0", far, far)),
        _ => (
            "unsupported_version",
            quote("5.0", "1.0", ts, ts).replace(r#""v":1"#, r#""v":2"#),
        ),
    };
    (reason, symbol.to_string(), payload.into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_poison_messages_go_to_the_dlq_and_every_good_quote_is_counted() {
    let Some(brokers) = brokers() else { return };
    let setup = Setup {
        brokers: brokers.clone(),
        topics: unique("poison"),
        trades: 0,
    };
    let symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT"];
    let mut rng = Rng(seed());
    let good = outside_quotes(&symbols, 100_000, &mut rng);
    let bad: Vec<_> = (0..1_000).map(|i| poison(i, &symbols, &mut rng)).collect();
    // the published schema refuses what it can express (time limits it cannot)
    let (schemas, idx) = quote_schema();
    for (reason, _, payload) in &bad {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) {
            let valid = schemas.validate(&v, idx).is_ok();
            assert_eq!(
                valid,
                matches!(*reason, "bad_timestamp" | "future"),
                "{reason}: {v}"
            );
        }
    }
    // mixed in at random places
    let mut at: Vec<usize> = (0..bad.len())
        .map(|_| rng.below(good.len() as u64) as usize)
        .collect();
    at.sort_unstable();
    let mut msgs = Vec::with_capacity(good.len() + bad.len());
    let mut next = at.iter().zip(&bad).peekable();
    for (i, g) in good.iter().enumerate() {
        while let Some((_, (_, key, payload))) = next.next_if(|(p, _)| **p == i) {
            msgs.push((key.clone(), payload.clone()));
        }
        msgs.push(g.clone());
    }
    let topic = format!("{}.quotes", setup.topics);
    create_topic(&brokers, &topic).await;
    produce(&brokers, &topic, &msgs, false, 0);

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &setup, &unique("poison"));
    finish(
        spawn(&cfg, &["process", "--exit-at-end"]),
        Duration::from_secs(600),
    );
    let dlq = read_topic(&brokers, &format!("{}.dlq", setup.topics), usize::MAX);
    let mut got: Vec<(String, Vec<u8>)> = dlq
        .iter()
        .map(|(p, h)| (h["reason"].clone(), p.clone()))
        .collect();
    got.sort();
    let mut want: Vec<(String, Vec<u8>)> = bad
        .iter()
        .map(|(r, _, p)| (r.to_string(), p.clone()))
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len(), "dead letters");
    assert!(got == want, "DLQ reasons or payloads differ");
    for (_, h) in &dlq {
        assert_eq!(h["source.topic"], topic);
        assert!(!h["error"].is_empty());
    }
    // every good quote is in exactly one 1m bar
    let store = store_of(dir.path()).await;
    let bars = all_bars(&store, &symbols).await;
    assert_eq!(
        trades_in_1m(&bars),
        good.len() as u64,
        "trades counted in 1m bars"
    );
    let counts: BTreeMap<String, u64> = store
        .dead_letter_counts()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (r, _, _) in &bad {
        *expected.entry(r.to_string()).or_default() += 1;
    }
    assert_eq!(counts, expected, "dead-letter counts by reason");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_in_one_group_split_the_partitions_and_make_the_same_bars() {
    let Some(brokers) = brokers() else { return };
    let Some((admin, schema, store_url)) = pg_schema("kafka_pair").await else {
        return;
    };
    let setup = Setup {
        brokers: brokers.clone(),
        topics: unique("pair"),
        trades: 0,
    };
    let symbols = [
        "BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT", "DOT-USDT",
    ];
    let quotes = outside_quotes(&symbols, 30_000, &mut Rng(seed()));
    let topic = format!("{}.quotes", setup.topics);
    create_topic(&brokers, &topic).await;
    // a live feed, about 30 s long: both processors are at work while it lasts
    let feed = {
        let (brokers, topic, quotes) = (brokers.clone(), topic.clone(), quotes.clone());
        std::thread::spawn(move || produce(&brokers, &topic, &quotes, true, 1_000))
    };

    // two processors of one group sharing one PostgreSQL store; the second joins once the
    // first has committed, so the group rebalances under load
    let group = unique("pair");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // dynamic membership: each join and leave rebalances the group at once
    let opts = Opts {
        group: Some(&group),
        instance: Some(""),
        store_url: Some(&store_url),
        ..Opts::default()
    };
    let cfg_a = write_config_with(dir_a.path(), &setup, &opts);
    let cfg_b = write_config_with(dir_b.path(), &setup, &opts);
    finish(spawn(&cfg_a, &["migrate"]), Duration::from_secs(60));
    let a = spawn(&cfg_a, &["process"]);
    let c = consumer(&brokers, &group);
    let first = wait_for_commits(&c, &topic, 0, Duration::from_secs(120));
    assert!(
        first > 0,
        "the first processor committed nothing:\n{}",
        a.log()
    );
    let b = spawn(&cfg_b, &["process"]);
    feed.join().unwrap();
    // once both have caught up (no commit for 5 s), stop them (SIGTERM: open windows are
    // dropped, not flushed); a last run of the group then finishes the stream
    let mut last = (committed_total(&c, &topic), Instant::now());
    while last.1.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        let now = committed_total(&c, &topic);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }

    let (log_a, log_b) = (terminate(a), terminate(b));
    finish(
        spawn(&cfg_a, &["process", "--exit-at-end"]),
        Duration::from_secs(300),
    );
    // each held a share of the partitions at some point
    let shares = |log: &str| -> Vec<u32> {
        log.lines()
            .filter(|l| l.contains("partitions assigned"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("partitions="))
                    .and_then(|n| n.parse().ok())
            })
            .collect()
    };
    for (name, log) in [("first", &log_a), ("second", &log_b)] {
        assert!(
            shares(log).iter().any(|n| (1..4).contains(n)),
            "the {name} processor never held a share of the partitions: {:?}\n{log}",
            shares(log)
        );
    }

    // the reference: one processor alone
    let one_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(one_dir.path(), &setup, &unique("one"));
    finish(
        spawn(&cfg, &["process", "--exit-at-end"]),
        Duration::from_secs(300),
    );

    let one = store_of(one_dir.path()).await;
    let pair: Arc<dyn Store> = pricestream_store::open(&store_url, 2).await.unwrap();
    let (want, got) = (
        all_bars(&one, &symbols).await,
        all_bars(&pair, &symbols).await,
    );
    assert!(want.len() > 500, "only {} bars", want.len());
    assert_same_bars(&want, &got, "two processors vs one");
    // the outside producer partitioned by its own hash: a partition's new owner finds the
    // signal state of whatever symbols it reads
    let (sa, sb) = (all_signals(&one).await, all_signals(&pair).await);
    assert!(!sa.is_empty());
    assert_same_signals(&sa, &sb, "two processors vs one");
    drop(pair);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_broker_exits_with_the_error_when_ingestion_fails() {
    let Some(brokers) = brokers() else { return };
    let setup = Setup {
        brokers,
        topics: unique("fail"),
        trades: 100,
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &setup, &unique("fail"));
    // a connector the ingest side refuses to start
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[connectors.coingecko]\nenabled = true\n[connectors.coingecko.http]\nweight_per_window = 1\n");
    std::fs::write(&cfg, text).unwrap();
    let mut p = spawn(&cfg, &["run"]);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = p.child.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "run kept going after ingestion failed:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "exit status {status}:\n{}", p.log());
    assert!(p.log().contains("weight_per_window"), "{}", p.log());
}
