//! `pricestream bench`: throughput, latency and memory of the in-process pipeline.
//!
//! Scenarios, each printed as it finishes and summed up at the end:
//! - **throughput**: a fixed synthetic stream (generated before timing) published through
//!   the in-process bus, as `run` does, into the full dataflow (1m bars, rollups,
//!   signals) with 1 and 2 workers, into a sink that consumes batches without writing;
//! - **real sink**: the same with the SQLite store and the Parquet lake (in a temporary
//!   directory), on a shorter stream;
//! - **memory**: many symbols with every interval open, the stream generated while it
//!   runs (so the stream itself does not count), peak RSS of the process;
//! - **webhook**: live quotes (event time = now) of symbols whose alert rules fire on every
//!   crossing (spread over time, or all at once with `--webhook-burst`), beside a
//!   background stream, through the dataflow, the real sink (SQLite)
//!   and the webhook dispatcher to a local receiver; quote ingest → webhook acknowledged,
//!   from the `pricestream_webhook_delivery_latency_seconds` histogram.
//!
//! - **kafka**: the same kind of stream through a real broker: first the broker alone
//!   (the encoded trades produced with the project's producer settings, then consumed by
//!   a consumer in a fresh group), then PriceStream (the trades published as `ingest`
//!   does, then a `pricestream process --exit-at-end` child that consumes them into the
//!   dataflow, the SQLite store and the result topics until caught up).
//!
//! Window close → bar in sink latency is measured from `SinkBatch::emitted_at`: by the
//! harness at receipt for the consuming sink, and through the
//! `pricestream_pipeline_bar_sink_latency_seconds` histogram (captured sample by sample)
//! for the real sink. Peak RSS is the kernel's high-water mark (`VmHWM`), reset between
//! scenarios.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use pricestream_bus::{InProcessBus, QuotePublisher, QuoteSource};
use pricestream_connectors::synthetic::SyntheticMarket;
use pricestream_pipeline::{sink, PipelineConfig, SinkBatch, SourceFactory};
use pricestream_schemas::{Quote, Symbol};
use tokio::sync::mpsc;

use crate::config::Config;

/// Options of `pricestream bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Trades in the throughput stream.
    #[arg(long, default_value_t = 10_000_000)]
    pub quotes: u64,
    /// Symbols in the throughput stream.
    #[arg(long, default_value_t = 1_000)]
    pub symbols: usize,
    /// Mean trades per second per symbol (simulated time).
    #[arg(long, default_value_t = 1.0)]
    pub trades_per_sec: f64,
    /// Share of trades delivered out of order, and by how much at most.
    #[arg(long, default_value_t = 0.02)]
    pub disorder_fraction: f64,
    #[arg(long, default_value_t = 1_500)]
    pub disorder_max_ms: i64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Worker counts of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Runs of each throughput scenario; the best is reported (others load the machine).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Also run the throughput scenarios with every quote in the bus before the dataflow
    /// starts (`dataflow` rows): the workers alone, without the publisher on the cores.
    #[arg(long)]
    pub prefilled: bool,
    /// Trades through the real SQLite + lake sink (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub real_sink_quotes: u64,
    /// Publish rates of the real-sink runs, quotes per second; 0 is as fast as possible
    /// (latency is then mostly queueing behind the sink).
    #[arg(long, value_delimiter = ',', default_value = "0,100000")]
    pub real_sink_rates: Vec<u64>,
    /// Symbols of the memory scenario (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub memory_symbols: usize,
    /// Simulated minutes of the memory scenario (past 60, every interval is open).
    #[arg(long, default_value_t = 75)]
    pub memory_minutes: i64,
    /// Trades per second per symbol in the memory scenario.
    #[arg(long, default_value_t = 0.2)]
    pub memory_trades_per_sec: f64,
    /// Seconds of the quote → webhook scenario (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub webhook_secs: u64,
    /// Symbols with an alert rule that fires on every crossing, 5 crossings a second each.
    #[arg(long, default_value_t = 20)]
    pub webhook_rules: usize,
    /// Quotes per second of other symbols alongside (no rule matches them).
    #[arg(long, default_value_t = 20_000)]
    pub webhook_background_rate: u64,
    /// All alert symbols cross at the same instant (a market-wide move) instead of spread
    /// evenly over each 200 ms.
    #[arg(long)]
    pub webhook_burst: bool,
    /// Trades through Kafka (needs `kafka.brokers`; 0 skips it): the broker's own
    /// produce + consume rate with the same messages, then `ingest`'s publisher and a
    /// `pricestream process --exit-at-end` child over the same trades.
    #[arg(long, default_value_t = 0)]
    pub kafka_quotes: u64,
}

/// 2025-11-21T00:00:00Z: a fixed start, so every run sees the same stream.
const START_NS: i64 = 1_763_683_200_000_000_000;
const PUBLISH_BATCH: usize = 1_024;
/// The key of the webhook-latency samples.
const WEBHOOK_SAMPLES: &str = "webhook";

// ---------------------------------------------------------------------------------------
// metrics: the production recorder, with the sink-latency histogram captured

type Samples = Arc<Mutex<BTreeMap<String, Vec<(f64, u64)>>>>;

struct Tee {
    inner: Histogram,
    sink: String,
    samples: Samples,
}

impl HistogramFn for Tee {
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.inner.record_many(value, count);
        if let Ok(mut s) = self.samples.lock() {
            s.entry(self.sink.clone())
                .or_default()
                .push((value, count as u64));
        }
    }
}

/// The Prometheus recorder `run` installs (so metric calls cost what they cost there),
/// plus a copy of every bar-sink-latency observation.
struct BenchRecorder {
    inner: metrics_exporter_prometheus::PrometheusRecorder,
    samples: Samples,
}

impl Recorder for BenchRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let inner = self.inner.register_histogram(key, metadata);
        let sink = if key.name() == pricestream_pipeline::metrics::BAR_SINK_LATENCY {
            key.labels()
                .find(|l| l.key() == "sink")
                .map_or_else(String::new, |l| l.value().to_string())
        } else if key.name() == pricestream_pipeline::metrics::WEBHOOK_DELIVERY_LATENCY {
            WEBHOOK_SAMPLES.to_string()
        } else {
            return inner;
        };
        Histogram::from_arc(Arc::new(Tee {
            inner,
            sink,
            samples: Arc::clone(&self.samples),
        }))
    }
}

// ---------------------------------------------------------------------------------------
// measurements

/// Weighted quantile of (value, count) samples.
fn quantile(samples: &[(f64, u64)], q: f64) -> Option<f64> {
    let mut s: Vec<(f64, u64)> = samples.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = s.iter().map(|x| x.1).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (v, c) in s {
        seen += c;
        if seen >= rank {
            return Some(v);
        }
    }
    None
}

fn status_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Peak resident set size since the last reset, in MiB.
fn peak_rss_mib() -> Option<f64> {
    status_kb("VmHWM:").map(|kb| kb as f64 / 1024.0)
}

fn rss_mib() -> Option<f64> {
    status_kb("VmRSS:").map(|kb| kb as f64 / 1024.0)
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        tracing::warn!(error = %e, "cannot reset the peak RSS; figures include earlier scenarios");
    }
}

/// CPU time of the whole process (user + system), seconds, from `/proc/self/stat`
/// (clock ticks of 10 ms).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn symbols(n: usize) -> anyhow::Result<Vec<Symbol>> {
    (0..n)
        .map(|i| Symbol::new(&format!("S{i:05}-USDT")).context("bench symbol"))
        .collect()
}

#[derive(Debug, Default, Clone)]
struct Figures {
    name: String,
    workers: usize,
    quotes: u64,
    elapsed: Duration,
    bars: u64,
    signals: u64,
    dead: u64,
    /// window close → bar in sink, seconds: (p50, p99)
    latency: Option<(f64, f64)>,
    latency_lake: Option<(f64, f64)>,
    peak_rss_mib: Option<f64>,
    /// RSS when the scenario started (the pre-generated stream, earlier scenarios' heap).
    rss_before_mib: Option<f64>,
    /// CPU seconds the process used during the scenario (workers, publisher, sink).
    cpu_secs: Option<f64>,
    load_before: String,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.quotes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&self) {
        let ms = |l: Option<(f64, f64)>| {
            l.map_or_else(
                || "-".to_string(),
                |(a, b)| format!("{:.2}/{:.2}", a * 1e3, b * 1e3),
            )
        };
        println!(
            "{:<12} workers={} quotes={} time={:.2}s rate={:.0}/s cpu={:.2}s ({:.0} ns/quote) bars={} signals={} dead={} \
             latency_ms(p50/p99)={} lake_latency_ms(p50/p99)={} peak_rss={:.0}MiB (at start {:.0}MiB) load_before=[{}]",
            self.name,
            self.workers,
            self.quotes,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.cpu_secs.unwrap_or(f64::NAN),
            self.cpu_secs.unwrap_or(f64::NAN) * 1e9 / self.quotes.max(1) as f64,
            self.bars,
            self.signals,
            self.dead,
            ms(self.latency),
            ms(self.latency_lake),
            self.peak_rss_mib.unwrap_or(f64::NAN),
            self.rss_before_mib.unwrap_or(f64::NAN),
            self.load_before,
        );
    }
}

// ---------------------------------------------------------------------------------------
// scenarios

/// Where the pipeline's output goes.
enum SinkKind {
    /// Consumes batches without writing; the harness measures latency at receipt.
    Consume,
    /// SQLite store + Parquet lake under this directory.
    Real(std::path::PathBuf),
}

/// What feeds the bus.
enum Feed {
    /// Pre-generated batches, at most this many quotes per second (0: no limit).
    Batches(Vec<Vec<Quote>>, u64),
    /// Pre-generated batches, all in the bus before the dataflow and the clock start
    /// (the dataflow alone, without a publisher competing for the cores).
    Prefilled(Vec<Vec<Quote>>),
    /// A generator running while the pipeline runs.
    Live(Box<SyntheticMarket>, u64),
}

struct SinkTotals {
    bars: u64,
    signals: u64,
    dead: u64,
    latency: Vec<(f64, u64)>,
}

async fn consume(mut rx: mpsc::Receiver<SinkBatch>) -> SinkTotals {
    let mut t = SinkTotals {
        bars: 0,
        signals: 0,
        dead: 0,
        latency: Vec::new(),
    };
    while let Some(batch) = rx.recv().await {
        if let Some(at) = batch.emitted_at {
            if !batch.bars.is_empty() {
                t.latency
                    .push((at.elapsed().as_secs_f64(), batch.bars.len() as u64));
            }
        }
        t.bars += batch.bars.len() as u64;
        t.signals += batch.signals.len() as u64;
        t.dead += batch.dead.len() as u64;
        drop(batch);
    }
    t
}

async fn publish(feed: Feed, publisher: Arc<dyn QuotePublisher>) -> anyhow::Result<u64> {
    match feed {
        Feed::Batches(batches, rate) => publish_batches(batches, rate, publisher).await,
        Feed::Prefilled(batches) => publish_batches(batches, 0, publisher).await,
        Feed::Live(mut market, n) => {
            let mut sent = 0;
            while sent < n {
                let want = PUBLISH_BATCH.min((n - sent) as usize);
                let b: Vec<Quote> = market.by_ref().take(want).collect();
                if b.is_empty() {
                    break;
                }
                sent += b.len() as u64;
                publisher.publish(b).await?;
            }
            Ok(sent)
        }
    }
}

/// Publishes `batches`, at most `rate` quotes per second (0: no limit).
async fn publish_batches(
    batches: Vec<Vec<Quote>>,
    rate: u64,
    publisher: Arc<dyn QuotePublisher>,
) -> anyhow::Result<u64> {
    let mut sent = 0;
    let started = Instant::now();
    for b in batches {
        sent += b.len() as u64;
        publisher.publish(b).await?;
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(sent)
}

/// The in-process bus `run` uses, its publisher, and the dataflow's source factory.
fn in_process_bus(
    cfg: &Config,
) -> anyhow::Result<(Arc<InProcessBus>, Arc<dyn QuotePublisher>, SourceFactory)> {
    let bus = InProcessBus::new(cfg.bus.partitions, cfg.bus.capacity_per_partition);
    let publisher: Arc<dyn QuotePublisher> = Arc::new(bus.publisher()?);
    let factory: SourceFactory = {
        let bus = Arc::clone(&bus);
        Arc::new(move |i, n| {
            bus.source(i, n)
                .map(|s| Box::new(s) as Box<dyn QuoteSource>)
        })
    };
    Ok((bus, publisher, factory))
}

/// The sink settings `run` derives from the pipeline's.
fn sink_options(pcfg: &PipelineConfig, store_quotes: bool) -> sink::SinkOptions {
    sink::SinkOptions {
        workers: pcfg.workers,
        allowed_lateness_ns: pcfg.allowed_lateness_ms.saturating_mul(1_000_000),
        store_quotes,
    }
}

/// The dataflow on a blocking thread, until its sources finish.
fn spawn_pipeline(
    pcfg: PipelineConfig,
    factory: SourceFactory,
    tx: mpsc::Sender<SinkBatch>,
) -> tokio::task::JoinHandle<Result<(), pricestream_pipeline::PipelineError>> {
    tokio::task::spawn_blocking(move || {
        pricestream_pipeline::run(
            &pcfg,
            factory,
            tx,
            Arc::new(AtomicBool::new(false)),
            Default::default(),
        )
    })
}

async fn run_scenario(
    cfg: &Config,
    name: &str,
    workers: usize,
    feed: Feed,
    sink_kind: SinkKind,
    samples: &Samples,
) -> anyhow::Result<Figures> {
    let load_before = load_average();
    let mut pcfg: PipelineConfig = cfg.pipeline.clone();
    pcfg.workers = workers;
    pcfg.keep_quotes = cfg.lake.enabled && cfg.lake.quotes;
    if let Ok(mut s) = samples.lock() {
        s.clear();
    }
    let mut bus_cfg = cfg.clone();
    if let Feed::Prefilled(batches) = &feed {
        // room for every quote in any partition
        bus_cfg.bus.capacity_per_partition = batches.iter().map(Vec::len).sum::<usize>().max(1);
    }
    let (bus, publisher, factory) = in_process_bus(&bus_cfg)?;
    pcfg.colocated_input = bus.colocates(pcfg.resolved_workers());
    let (feed, prefilled) = match feed {
        Feed::Prefilled(batches) => {
            let sent = publish_batches(batches, 0, publisher).await?;
            bus.close();
            (None, sent)
        }
        other => (Some((other, publisher)), 0),
    };
    let (tx, rx) = mpsc::channel::<SinkBatch>(256);
    reset_peak_rss();
    let rss_before_mib = rss_mib();
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    let sink_task = match &sink_kind {
        SinkKind::Consume => tokio::spawn(async move { Ok(consume(rx).await) }),
        SinkKind::Real(dir) => {
            std::fs::create_dir_all(dir).context("creating the bench data directory")?;
            let url = format!("sqlite://{}", dir.join("bench.db").display());
            let store = pricestream_store::open(&url, cfg.store.max_connections)
                .await
                .context("opening the bench store")?;
            store.migrate().await.context("migrating the bench store")?;
            let lake = cfg
                .lake
                .enabled
                .then(|| pricestream_store::Lake::new(dir.join("lake")));
            let opts = sink_options(&pcfg, cfg.store.quotes);
            tokio::spawn(async move {
                let stats = sink::run_sink(rx, store, lake, opts, None).await?;
                Ok::<_, anyhow::Error>(SinkTotals {
                    bars: stats.bars,
                    signals: stats.signals,
                    dead: stats.dead_letters,
                    latency: Vec::new(),
                })
            })
        }
    };
    let pipeline = spawn_pipeline(pcfg, factory, tx);
    let sent = match feed {
        Some((feed, publisher)) => {
            let sent = publish(feed, publisher).await?;
            bus.close();
            sent
        }
        None => prefilled,
    };
    pipeline
        .await
        .context("pipeline thread")?
        .context("pipeline")?;
    let totals = sink_task.await.context("sink task")??;
    let elapsed = started.elapsed();
    let cpu_secs = process_cpu_secs().zip(cpu_before).map(|(b, a)| b - a);
    let peak = peak_rss_mib();
    let pick = |sink: &str| -> Option<(f64, f64)> {
        let s = samples.lock().ok()?;
        let v = s.get(sink)?;
        Some((quantile(v, 0.5)?, quantile(v, 0.99)?))
    };
    let (latency, latency_lake) = match sink_kind {
        SinkKind::Consume => (
            quantile(&totals.latency, 0.5).zip(quantile(&totals.latency, 0.99)),
            None,
        ),
        SinkKind::Real(_) => (pick("store"), pick("lake")),
    };
    Ok(Figures {
        name: name.to_string(),
        workers,
        quotes: sent,
        elapsed,
        bars: totals.bars,
        signals: totals.signals,
        dead: totals.dead,
        latency,
        latency_lake,
        peak_rss_mib: peak,
        rss_before_mib,
        cpu_secs,
        load_before,
    })
}

/// Quote → webhook: see the module documentation. Returns (webhooks received, p50, p99)
/// in seconds.
async fn webhook_scenario(
    cfg: &Config,
    args: &BenchArgs,
    samples: &Samples,
    dir: &std::path::Path,
) -> anyhow::Result<(u64, Option<(f64, f64)>)> {
    use pricestream_pipeline::alerts::{refresh_rules, Dispatcher, SharedRules};
    use pricestream_schemas::{Clock, QuoteKind, SystemClock, Venue};
    use pricestream_store::alerts::{AlertRule, RuleCondition};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio_util::sync::CancellationToken;

    if let Ok(mut s) = samples.lock() {
        s.clear();
    }
    // the receiver: answers 200 at once and counts
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(n): axum::extract::State<Arc<AtomicU64>>| async move {
                    n.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(Arc::clone(&received));
    let stop_receiver = CancellationToken::new();
    let receiver = {
        let stop = stop_receiver.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };

    std::fs::create_dir_all(dir).context("creating the bench data directory")?;
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = pricestream_store::open(&url, cfg.store.max_connections)
        .await
        .context("opening the bench store")?;
    store.migrate().await.context("migrating the bench store")?;
    let clock = SystemClock;
    let alert_syms = symbols(args.webhook_rules)?
        .into_iter()
        .map(|s| Symbol::new(&format!("W{}", s.as_str())))
        .collect::<Result<Vec<_>, _>>()?;
    for sym in &alert_syms {
        let now = clock.now_ns();
        store
            .create_alert_rule(&AlertRule {
                id: pricestream_schemas::ids::new_id(),
                owner: "bench".into(),
                venue: None,
                symbol: sym.clone(),
                condition: RuleCondition::Crosses { level: 100.0 },
                recurring: true,
                cooldown_secs: 0,
                hysteresis: 0.0,
                url: format!("http://{addr}/hook"),
                secret: "bench-secret".into(),
                active: true,
                created_at: now,
                updated_at: now,
                fired_at: None,
            })
            .await?;
    }
    let mut alerts_cfg = cfg.alerts.clone();
    alerts_cfg.ssrf_allowlist = vec!["127.0.0.1/32".into()];
    let rules = SharedRules::default();
    let stop = CancellationToken::new();
    let refresher = tokio::spawn(refresh_rules(
        Arc::clone(&store),
        rules.clone(),
        Duration::from_millis(alerts_cfg.rules_refresh_ms.max(1)),
        stop.clone(),
    ));
    let dispatcher = Dispatcher::new(Arc::clone(&store), alerts_cfg).map_err(anyhow::Error::msg)?;
    let stop_dispatcher = CancellationToken::new();
    let dispatching = tokio::spawn(dispatcher.run(stop_dispatcher.clone()));
    // the index must hold the rules before the first quote
    for _ in 0..200 {
        if rules.current().1.len() >= alert_syms.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let w = args.workers.iter().copied().max().unwrap_or(2);
    let mut pcfg: PipelineConfig = cfg.pipeline.clone();
    pcfg.workers = w;
    pcfg.keep_quotes = false;
    pcfg.alert_rules = Some(rules.clone());
    let (bus, publisher, factory) = in_process_bus(cfg)?;
    pcfg.colocated_input = bus.colocates(pcfg.resolved_workers());
    let (tx, rx) = mpsc::channel::<SinkBatch>(256);
    let sink_task = {
        let opts = sink_options(&pcfg, false);
        let store = Arc::clone(&store);
        tokio::spawn(async move { sink::run_sink(rx, store, None, opts, None).await })
    };
    let pipeline = spawn_pipeline(pcfg, factory, tx);

    // every millisecond: the background share, and every 200 ms each alert symbol crosses
    let background = symbols(1_000)?;
    let per_ms = (args.webhook_background_rate / 1_000).max(1) as usize;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut i: u64 = 0;
    let spread = if args.webhook_burst {
        0
    } else {
        200_000 / alert_syms.len().max(1) as u64
    };
    let mut crossings: Vec<(Duration, bool)> = (0..alert_syms.len() as u64)
        .map(|k| (Duration::from_micros(k * spread), false))
        .collect();
    while started.elapsed() < Duration::from_secs(args.webhook_secs) {
        tick.tick().await;
        let now = clock.now_ns();
        let quote = |symbol: Symbol, price: f64, id: u64| Quote {
            venue: Venue::Binance,
            symbol,
            kind: QuoteKind::Trade,
            price,
            size: 0.1,
            side: None,
            trade_id: Some(id),
            bid: None,
            ask: None,
            ts_event: now,
            ts_ingest: now,
        };
        let mut batch = Vec::with_capacity(per_ms + alert_syms.len());
        for _ in 0..per_ms {
            i += 1;
            let sym = background[(i % background.len() as u64) as usize].clone();
            batch.push(quote(sym, 50.0 + (i % 7) as f64, i));
        }
        // each alert symbol crosses 100 every 200 ms, alternately up and down; spread
        // evenly over the 200 ms, or all at once with --webhook-burst
        let elapsed = started.elapsed();
        for (k, sym) in alert_syms.iter().enumerate() {
            if elapsed >= crossings[k].0 {
                crossings[k].0 += Duration::from_millis(200);
                crossings[k].1 = !crossings[k].1;
                i += 1;
                batch.push(quote(
                    sym.clone(),
                    if crossings[k].1 { 101.0 } else { 99.0 },
                    i,
                ));
            }
        }
        publisher.publish(batch).await?;
    }
    // until the deliveries stop arriving
    let mut last = u64::MAX;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = received.load(Ordering::Relaxed);
        if n == last {
            break;
        }
        last = n;
    }
    // the sources finish once the bus is closed and no publisher is left
    drop(publisher);
    bus.close();
    pipeline
        .await
        .context("pipeline thread")?
        .context("pipeline")?;
    sink_task.await.context("sink task")??;
    stop_dispatcher.cancel();
    stop.cancel();
    dispatching.await.context("webhook dispatcher")?;
    refresher.await.context("alert rules")?;
    stop_receiver.cancel();
    receiver.await.context("webhook receiver")??;
    let latency = samples.lock().ok().and_then(|s| {
        let v = s.get(WEBHOOK_SAMPLES)?;
        Some((quantile(v, 0.5)?, quantile(v, 0.99)?))
    });
    Ok((received.load(Ordering::Relaxed), latency))
}

fn generate(args: &BenchArgs, n: u64) -> anyhow::Result<Vec<Vec<Quote>>> {
    let market = SyntheticMarket::new(
        args.seed,
        &symbols(args.symbols)?,
        START_NS,
        args.trades_per_sec,
        0.6,
        args.disorder_fraction,
        args.disorder_max_ms,
    );
    let mut batches = Vec::with_capacity((n as usize).div_ceil(PUBLISH_BATCH));
    let mut it = market.take(n as usize);
    loop {
        let b: Vec<Quote> = it.by_ref().take(PUBLISH_BATCH).collect();
        if b.is_empty() {
            break;
        }
        batches.push(b);
    }
    Ok(batches)
}

/// `pricestream bench`
pub async fn bench(cfg: Config, args: BenchArgs) -> anyhow::Result<()> {
    let samples: Samples = Arc::default();
    let recorder = BenchRecorder {
        inner: pricestream_api::metrics::build_recorder().map_err(anyhow::Error::msg)?,
        samples: Arc::clone(&samples),
    };
    metrics::set_global_recorder(recorder).map_err(|e| anyhow::anyhow!("{e}"))?;
    pricestream_pipeline::metrics::describe();

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# pricestream bench: {} cores, load average [{}], bus {} partitions x {}, keep_quotes={}",
        cpus,
        load_average(),
        cfg.bus.partitions,
        cfg.bus.capacity_per_partition,
        cfg.lake.enabled && cfg.lake.quotes
    );
    let mut all: Vec<Figures> = Vec::new();

    // First, while the process is still small: the peak RSS is a high-water mark, and
    // memory freed by earlier scenarios is not always given back to the system.
    if args.memory_symbols > 0 {
        let syms = symbols(args.memory_symbols)?;
        let market = SyntheticMarket::new(
            args.seed,
            &syms,
            START_NS,
            args.memory_trades_per_sec,
            0.6,
            args.disorder_fraction,
            args.disorder_max_ms,
        );
        let n = (args.memory_symbols as f64
            * args.memory_trades_per_sec
            * (args.memory_minutes * 60) as f64) as u64;
        let w = args.workers.iter().copied().max().unwrap_or(2);
        let f = run_scenario(
            &cfg,
            "memory",
            w,
            Feed::Live(Box::new(market), n),
            SinkKind::Consume,
            &samples,
        )
        .await?;
        f.print();
        all.push(f);
    }

    if args.quotes > 0 && !args.workers.is_empty() {
        let t = Instant::now();
        let stream = generate(&args, args.quotes)?;
        println!(
            "# generated {} trades over {} symbols in {:.1}s (not timed); RSS now {:.0} MiB",
            args.quotes,
            args.symbols,
            t.elapsed().as_secs_f64(),
            rss_mib().unwrap_or(f64::NAN)
        );
        for &w in &args.workers {
            let mut best: Option<Figures> = None;
            for _ in 0..args.repeat.max(1) {
                let feed = Feed::Batches(stream.clone(), 0);
                let f =
                    run_scenario(&cfg, "throughput", w, feed, SinkKind::Consume, &samples).await?;
                f.print();
                if best.as_ref().is_none_or(|b| f.rate() > b.rate()) {
                    best = Some(f);
                }
            }
            all.extend(best);
        }
        if args.prefilled {
            for &w in &args.workers {
                let mut best: Option<Figures> = None;
                for _ in 0..args.repeat.max(1) {
                    let feed = Feed::Prefilled(stream.clone());
                    let f = run_scenario(&cfg, "dataflow", w, feed, SinkKind::Consume, &samples)
                        .await?;
                    f.print();
                    if best.as_ref().is_none_or(|b| f.rate() > b.rate()) {
                        best = Some(f);
                    }
                }
                all.extend(best);
            }
        }
    }

    if args.real_sink_quotes > 0 {
        let stream = generate(&args, args.real_sink_quotes)?;
        let w = args.workers.iter().copied().max().unwrap_or(2);
        for &rate in &args.real_sink_rates {
            let dir = std::env::temp_dir()
                .join(format!("pricestream-bench-{}-{rate}", std::process::id()));
            let name = if rate == 0 {
                "real_sink".to_string()
            } else {
                format!("real_sink@{rate}/s")
            };
            let result = run_scenario(
                &cfg,
                &name,
                w,
                Feed::Batches(stream.clone(), rate),
                SinkKind::Real(dir.clone()),
                &samples,
            )
            .await;
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot remove the bench directory");
            }
            let f = result?;
            f.print();
            all.push(f);
        }
    }

    let mut webhook = None;
    if args.webhook_secs > 0 {
        let dir =
            std::env::temp_dir().join(format!("pricestream-bench-{}-webhook", std::process::id()));
        let result = webhook_scenario(&cfg, &args, &samples, &dir).await;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot remove the bench directory");
        }
        let (n, latency) = result?;
        println!(
            "webhook      rules={} burst={} secs={} background={}/s webhooks={} quote→webhook_ms(p50/p99)={}",
            args.webhook_rules,
            args.webhook_burst,
            args.webhook_secs,
            args.webhook_background_rate,
            n,
            latency.map_or_else(|| "-".into(), |(a, b)| format!("{:.2}/{:.2}", a * 1e3, b * 1e3))
        );
        webhook = Some((n, latency));
    }

    let mut kafka = None;
    if args.kafka_quotes > 0 {
        let k = kafka_scenario(&cfg, &args).await?;
        k.print();
        kafka = Some(k);
    }

    println!();
    println!(
        "# summary (best of {} per throughput row)",
        args.repeat.max(1)
    );
    println!(
        "| scenario | workers | quotes | quotes/s | CPU ns/quote | bar→sink p50 ms | p99 ms | bar→lake p50 ms | p99 ms | peak RSS MiB | load avg before |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for f in &all {
        let ms = |l: Option<(f64, f64)>| -> (String, String) {
            l.map_or(("-".into(), "-".into()), |(a, b)| {
                (format!("{:.2}", a * 1e3), format!("{:.2}", b * 1e3))
            })
        };
        let (p50, p99) = ms(f.latency);
        let (l50, l99) = ms(f.latency_lake);
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.0} | {} |",
            f.name,
            f.workers,
            f.quotes,
            f.rate(),
            f.cpu_secs.unwrap_or(f64::NAN) * 1e9 / f.quotes.max(1) as f64,
            p50,
            p99,
            l50,
            l99,
            f.peak_rss_mib.unwrap_or(f64::NAN),
            f.load_before
        );
    }
    let rate = |w: usize| {
        all.iter()
            .find(|f| f.name == "throughput" && f.workers == w)
            .map(Figures::rate)
    };
    if let (Some(one), Some(two)) = (rate(1), rate(2)) {
        println!("# scaling 2 workers / 1 worker: {:.2}x", two / one);
    }
    if let Some((n, Some((p50, p99)))) = webhook {
        println!(
            "# quote → webhook acknowledged: p50 {:.2} ms, p99 {:.2} ms over {n} webhooks",
            p50 * 1e3,
            p99 * 1e3
        );
    }
    if let Some(k) = kafka {
        k.print();
    }
    Ok(())
}

/// What the Kafka scenario measured (seconds).
struct KafkaFigures {
    quotes: u64,
    bytes: u64,
    broker_produce: f64,
    broker_consume: f64,
    publish: f64,
    process: f64,
}

impl KafkaFigures {
    fn print(&self) {
        let rate = |secs: f64| self.quotes as f64 / secs.max(1e-9);
        let broker = rate(self.broker_produce + self.broker_consume);
        let ours = rate(self.publish + self.process);
        println!(
            "kafka        quotes={} avg_msg_bytes={:.0} broker produce/s={:.0} consume/s={:.0} produce+consume/s={:.0} | pricestream publish/s={:.0} process/s={:.0} end-to-end/s={:.0} ({:.0}% of the broker)",
            self.quotes,
            self.bytes as f64 / self.quotes.max(1) as f64,
            rate(self.broker_produce),
            rate(self.broker_consume),
            broker,
            rate(self.publish),
            rate(self.process),
            ours,
            100.0 * ours / broker
        );
    }
}

/// Sends every batch with `send`, 16 batches in flight; returns the seconds it took.
async fn timed_in_flight<B, F, Fut, E>(batches: Vec<B>, send: F) -> anyhow::Result<f64>
where
    F: Fn(B) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let t = Instant::now();
    let mut inflight = tokio::task::JoinSet::new();
    for batch in batches {
        inflight.spawn(send(batch));
        while inflight.len() >= 16 {
            if let Some(r) = inflight.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = inflight.join_next().await {
        r??;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The Kafka scenario (see the module docs). Topics and groups are fresh for each run.
async fn kafka_scenario(cfg: &Config, args: &BenchArgs) -> anyhow::Result<KafkaFigures> {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message as _;
    anyhow::ensure!(
        cfg.kafka.enabled(),
        "--kafka-quotes needs a broker: set kafka.brokers (PRICESTREAM_KAFKA__BROKERS)"
    );
    let stream = generate(args, args.kafka_quotes)?;
    let tag = format!("bench{}", std::process::id());
    let mut cfg = cfg.clone();
    for t in [
        &mut cfg.kafka.topics.quotes,
        &mut cfg.kafka.topics.bars,
        &mut cfg.kafka.topics.signals,
        &mut cfg.kafka.topics.alerts,
        &mut cfg.kafka.topics.dlq,
    ] {
        *t = format!("{tag}.{t}");
    }
    cfg.kafka.group_id = format!("{tag}-process");
    let mut raw = cfg.kafka.clone();
    raw.topics.quotes = format!("{tag}.raw");
    raw.group_id = format!("{tag}-raw");
    pricestream_kafka::ensure_topics(&raw).await?;
    let partitions = cfg.kafka.partitions;

    // 1. the broker alone: the same messages, encoded before timing
    let messages: Vec<Vec<pricestream_kafka::Message>> = stream
        .iter()
        .map(|batch| {
            batch
                .iter()
                .map(|q| pricestream_kafka::Message {
                    key: q.symbol.as_str().as_bytes().to_vec(),
                    partition: Some(pricestream_bus::partition_for(&q.symbol, partitions) as i32),
                    payload: pricestream_schemas::codec::encode(q),
                    headers: Vec::new(),
                })
                .collect()
        })
        .collect();
    let bytes: u64 = messages
        .iter()
        .flatten()
        .map(|m| m.payload.len() as u64)
        .sum();
    let producer = pricestream_kafka::Producer::new(&raw)?;
    let topic = raw.topics.quotes.clone();
    let broker_produce = timed_in_flight(messages, |batch| {
        let (p, topic) = (producer.clone(), topic.clone());
        async move { p.send_all(&topic, &batch).await }
    })
    .await?;
    let n = args.kafka_quotes;
    let broker_consume = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let consumer = pricestream_kafka::consumer(&raw)?;
        let t = Instant::now();
        let mut seen = 0u64;
        while seen < n {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(600),
                "consumed {seen} of {n} in 10 minutes"
            );
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => seen += u64::from(m.payload().is_some()),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
        consumer.unsubscribe();
        Ok(t.elapsed().as_secs_f64())
    })
    .await??;
    println!(
        "# kafka broker alone: {n} messages produced in {broker_produce:.1}s, consumed in {broker_consume:.1}s"
    );

    // 2. PriceStream: publish as `ingest` does, then `process --exit-at-end` in a child
    let (_producer, publisher) = crate::kafka::quote_publisher(&cfg).await?;
    let publish = timed_in_flight(stream, |batch| {
        let p = Arc::clone(&publisher);
        async move { p.publish(batch).await }
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("pricestream-bench-{}-kafka", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut child_cfg = cfg.clone();
    child_cfg.data_dir = dir.join("data");
    child_cfg.store.url = None;
    child_cfg.store.quotes = false;
    child_cfg.lake.enabled = false;
    child_cfg.alerts.enabled = false;
    child_cfg.api.listen = "127.0.0.1:0".into();
    child_cfg.api.metrics_listen = None;
    let config_file = dir.join("process.toml");
    std::fs::write(&config_file, toml::to_string(&child_cfg)?)?;
    let log = std::fs::File::create(dir.join("process.log"))?;
    let t = Instant::now();
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(&config_file)
        .args(["process", "--exit-at-end"])
        .env_remove("PRICESTREAM_KAFKA__TOPICS__QUOTES")
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    let process = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        status.success(),
        "pricestream process failed ({status}); see {}",
        dir.join("process.log").display()
    );
    let store = pricestream_store::open(
        &format!(
            "sqlite://{}",
            child_cfg.data_dir.join("pricestream.db").display()
        ),
        1,
    )
    .await?;
    let runs = store.symbols().await?;
    let bars_1m: u64 = runs.iter().map(|s| s.bars_1m).sum();
    println!("# kafka pricestream: published in {publish:.1}s, processed in {process:.1}s ({} symbols, {bars_1m} bars in the store)", runs.len());
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(error = %e, "cannot remove the bench directory");
    }
    Ok(KafkaFigures {
        quotes: n,
        bytes,
        broker_produce,
        broker_consume,
        publish,
        process,
    })
}
