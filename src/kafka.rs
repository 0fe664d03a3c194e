//! Production transport: `ingest` (connectors → `quotes.v1`), `process` (consumer group →
//! dataflow → sinks, committing offsets behind the sinks) and `run` with both when a
//! broker is configured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pricestream_api::{AppState, PipelineHealth};
use pricestream_bus::{Polled, QuotePublisher, QuoteSource, SourceState};
use pricestream_kafka::{
    acknowledge_revocation, CheckpointStore, CommitTracker, Committer, KafkaQuotePublisher,
    KafkaResults, KafkaSource, Producer,
};
use pricestream_pipeline::sink::{self, SinkHooks};
use pricestream_pipeline::{PipelineError, Progress, SinkBatch, SourceFactory};
use pricestream_schemas::{Clock, Interval, SystemClock};
use pricestream_store::{Lake, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::run::{install_metrics, open_store, shutdown_signal, spawn_connectors, start_api, Task};

/// How `process` ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOptions {
    /// Stop once every assigned partition is read to its end (flushing open windows),
    /// instead of waiting for more quotes: catch-up jobs, tests and benchmarks.
    pub exit_at_end: bool,
}

/// A worker without partitions (the process's one consumer is read by worker 0).
struct NoPartitions;

impl QuoteSource for NoPartitions {
    fn poll(
        &mut self,
        _max: usize,
        _out: &mut Vec<Polled>,
    ) -> pricestream_bus::Result<SourceState> {
        Ok(SourceState::Finished)
    }
    fn partitions(&self) -> Vec<u32> {
        Vec::new()
    }
}

fn require_kafka(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.kafka.enabled() {
        anyhow::bail!(
            "no Kafka broker is configured: set kafka.brokers (or PRICESTREAM_KAFKA__BROKERS), \
             or use `pricestream run` for the embedded mode"
        );
    }
    cfg.kafka.validate().map_err(anyhow::Error::msg)
}

/// The widest window a replay must rebuild: the largest rollup, and the hour files of raw
/// quotes when the lake keeps them.
pub fn commit_horizon_ns(cfg: &Config) -> i64 {
    cfg.pipeline
        .rollups
        .iter()
        .map(|i| i.nanos())
        .chain([Interval::M1.nanos()])
        .chain((cfg.lake.enabled && cfg.lake.quotes).then(|| Interval::H1.nanos()))
        .max()
        .unwrap_or(Interval::M1.nanos())
}

pub(crate) async fn quote_publisher(
    cfg: &Config,
) -> anyhow::Result<(Producer, Arc<dyn QuotePublisher>)> {
    pricestream_kafka::ensure_topics(&cfg.kafka)
        .await
        .context("creating the Kafka topics")?;
    let producer = Producer::new(&cfg.kafka).context("creating the Kafka producer")?;
    let kcfg = cfg.kafka.clone();
    let partitions = tokio::task::spawn_blocking(move || {
        pricestream_kafka::partition_count(&kcfg, &kcfg.topics.quotes)
    })
    .await??;
    let publisher =
        KafkaQuotePublisher::new(producer.clone(), &cfg.kafka.topics.quotes, partitions);
    Ok((producer, Arc::new(publisher)))
}

/// Connectors until they finish or `stop`; returns the quotes published.
async fn ingest_until(
    cfg: &Config,
    store: &Arc<dyn Store>,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let (producer, publisher) = quote_publisher(cfg).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop_sources = CancellationToken::new();
    let mut set = spawn_connectors(cfg, store, &clock, publisher, &stop_sources)?;
    let mut total = 0;
    let mut failure = None;
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                None => break,
                Some(Ok((name, Ok(n)))) => {
                    tracing::info!(connector = name, quotes = n, "connector finished");
                    total += n;
                }
                Some(Ok((name, Err(e)))) => {
                    failure.get_or_insert(e.context(format!("connector {name}")));
                    stop_sources.cancel();
                }
                Some(Err(e)) => {
                    failure.get_or_insert(anyhow::anyhow!("connector task panicked: {e}"));
                    stop_sources.cancel();
                }
            },
            _ = stop.cancelled(), if !stop_sources.is_cancelled() => stop_sources.cancel(),
        }
    }
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
        .await?
        .context("flushing the producer")?;
    match failure {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// `pricestream ingest`
pub async fn ingest(cfg: Config) -> anyhow::Result<()> {
    require_kafka(&cfg)?;
    let _metrics = install_metrics()?;
    let store = open_store(&cfg, cfg.store.auto_migrate).await?;
    let stop = CancellationToken::new();
    let signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop.cancel();
        })
    };
    let n = ingest_until(&cfg, &store, stop).await?;
    signal.abort();
    tracing::info!(quotes = n, "ingestion finished");
    Ok(())
}

/// The process's shared parts that outlive one dataflow incarnation.
struct ProcessParts {
    store: Arc<dyn Store>,
    live: pricestream_pipeline::live::LiveHub,
    progress: Arc<Progress>,
}

/// What `process` and `run` (with a broker) share: the store, the topics, the live hub and
/// progress, the API, and the signal handler.
struct Processor {
    parts: ProcessParts,
    shutdown: CancellationToken,
    fatal: CancellationToken,
    signal: tokio::task::JoinHandle<()>,
    stop_api: CancellationToken,
    api: Task<()>,
}

impl Processor {
    async fn start(cfg: &Config) -> anyhow::Result<Processor> {
        require_kafka(cfg)?;
        let metrics = install_metrics()?;
        let store = open_store(cfg, cfg.store.auto_migrate).await?;
        pricestream_kafka::ensure_topics(&cfg.kafka)
            .await
            .context("creating the Kafka topics")?;
        let shutdown = CancellationToken::new();
        let fatal = CancellationToken::new();
        let signal = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                shutdown.cancel();
            })
        };
        let parts = process_parts(cfg, store);
        let stop_api = CancellationToken::new();
        let api = start_api(
            cfg,
            app_state(cfg, &parts, metrics),
            stop_api.clone(),
            &fatal,
        )
        .await?;
        Ok(Processor {
            parts,
            shutdown,
            fatal,
            signal,
            stop_api,
            api,
        })
    }

    /// When a task fails (the API, or ingestion in `run`), stops processing the way a
    /// signal does: the dataflow is dropped and its threads end, so the process exits with
    /// the task's error instead of running on without it.
    fn stop_on_fatal(&self) -> tokio::task::JoinHandle<()> {
        let (fatal, shutdown) = (self.fatal.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            fatal.cancelled().await;
            shutdown.cancel();
        })
    }

    /// Stops the API and the signal handler; `r` is the processing result.
    async fn finish(self, r: anyhow::Result<()>) -> anyhow::Result<()> {
        self.signal.abort();
        self.stop_api.cancel();
        let api_result = self.api.join().await;
        r.and(api_result)
    }
}

/// `pricestream process`
pub async fn process(cfg: Config, opts: ProcessOptions) -> anyhow::Result<()> {
    let p = Processor::start(&cfg).await?;
    let watcher = p.stop_on_fatal();
    let r = process_loop(&cfg, &p.parts, p.shutdown.clone(), opts).await;
    watcher.abort();
    p.finish(r).await
}

/// `pricestream run` with a broker: connectors publish to Kafka and this process consumes
/// them too (other `process` instances in the same group share the partitions).
pub async fn run_all(cfg: Config) -> anyhow::Result<()> {
    let p = Processor::start(&cfg).await?;
    let ingest = {
        let (cfg, store, stop) = (cfg.clone(), Arc::clone(&p.parts.store), p.shutdown.clone());
        Task::spawn("ingest", &p.fatal, async move {
            let n = ingest_until(&cfg, &store, stop).await?;
            tracing::info!(
                quotes = n,
                "all connectors finished; processing until stopped"
            );
            Ok(n)
        })
    };
    let watcher = p.stop_on_fatal();
    let r = process_loop(
        &cfg,
        &p.parts,
        p.shutdown.clone(),
        ProcessOptions::default(),
    )
    .await;
    watcher.abort();
    p.shutdown.cancel();
    let ingest_result = ingest.join().await.map(|_| ());
    p.finish(r.and(ingest_result)).await
}

fn process_parts(cfg: &Config, store: Arc<dyn Store>) -> ProcessParts {
    ProcessParts {
        store,
        live: pricestream_pipeline::live::LiveHub::new(cfg.api.stream_buffer_events),
        progress: Arc::new(Progress::new(
            cfg.pipeline.resolved_workers(),
            SystemClock.now_ns(),
        )),
    }
}

fn app_state(
    cfg: &Config,
    parts: &ProcessParts,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> AppState {
    AppState {
        store: Arc::clone(&parts.store),
        metrics: Some(metrics),
        lake_dir: cfg.lake.enabled.then(|| cfg.lake_dir()),
        pipeline: Some(PipelineHealth {
            progress: Arc::clone(&parts.progress),
            stall_after: Duration::from_millis(
                u64::try_from(cfg.pipeline.stall_timeout_ms).unwrap_or(u64::MAX),
            ),
            broker: broker_check(cfg),
        }),
        live: Some(pricestream_api::stream::LiveStream::new(
            parts.live.clone(),
            cfg.api.stream_max_connections,
        )),
        auth: pricestream_api::auth::Auth::new(cfg.api.auth.clone()),
    }
}

/// Consumer → dataflow → sinks, rebuilt after every revocation, until `shutdown` (or the
/// end of the input with `exit_at_end`).
async fn process_loop(
    cfg: &Config,
    parts: &ProcessParts,
    shutdown: CancellationToken,
    opts: ProcessOptions,
) -> anyhow::Result<()> {
    let consumer = pricestream_kafka::consumer(&cfg.kafka).context("creating the consumer")?;
    let producer = Producer::new(&cfg.kafka).context("creating the Kafka producer")?;
    let results: Arc<dyn sink::ResultPublisher> = Arc::new(KafkaResults::new(
        producer.clone(),
        cfg.kafka.topics.clone(),
    ));
    let horizon = commit_horizon_ns(cfg);
    let lateness = cfg.pipeline.allowed_lateness_ms.saturating_mul(1_000_000);
    let profiles = pricestream_pipeline::SharedProfiles::default();
    let checkpoints: Arc<dyn CheckpointStore> = Arc::new(StoreCheckpoints {
        store: Arc::clone(&parts.store),
        group: cfg.kafka.group_id.clone(),
        topic: cfg.kafka.topics.quotes.clone(),
        handle: tokio::runtime::Handle::current(),
    });
    // alerts: one rule index for every incarnation, kept in step with the store, and the
    // webhook dispatcher draining the store's delivery queue
    let stop_alerts = CancellationToken::new();
    let mut alert_tasks = Vec::new();
    let alert_rules = if cfg.alerts.enabled {
        let rules = pricestream_pipeline::alerts::SharedRules::default();
        let every = Duration::from_millis(cfg.alerts.rules_refresh_ms);
        let (store, stop, r) = (Arc::clone(&parts.store), stop_alerts.clone(), rules.clone());
        alert_tasks.push(tokio::spawn(async move {
            pricestream_pipeline::alerts::refresh_rules(store, r, every, stop).await;
        }));
        let dispatcher = pricestream_pipeline::alerts::Dispatcher::new(
            Arc::clone(&parts.store),
            cfg.alerts.clone(),
        )
        .map_err(anyhow::Error::msg)
        .context("webhook dispatcher")?;
        let stop = stop_alerts.clone();
        alert_tasks.push(tokio::spawn(async move { dispatcher.run(stop).await }));
        Some(rules)
    } else {
        None
    };
    let _stop_alerts = stop_alerts.drop_guard();
    let mut incarnation = 0u32;
    loop {
        incarnation += 1;
        tracing::info!(incarnation, "dataflow starting");
        let tracker = CommitTracker::new(horizon, lateness);
        let abort = Arc::new(AtomicBool::new(false));
        let (commit_tx, commit_handle) = spawn_committer(
            Committer::new(
                Arc::clone(&consumer),
                Arc::clone(&tracker),
                &cfg.kafka.topics.quotes,
                Duration::from_millis(cfg.kafka.commit_interval_ms),
            )
            .with_checkpoints(Arc::clone(&checkpoints)),
            Duration::from_millis(cfg.kafka.commit_interval_ms),
        )?;
        let (sink_tx, sink_rx) = mpsc::channel::<SinkBatch>(256);
        let sink = {
            let store = Arc::clone(&parts.store);
            let lake = cfg.lake.enabled.then(|| Lake::new(cfg.lake_dir()));
            let opts = sink::SinkOptions {
                workers: cfg.pipeline.resolved_workers(),
                allowed_lateness_ns: lateness,
                store_quotes: cfg.store.quotes,
            };
            let hooks = SinkHooks {
                publisher: Some(Arc::clone(&results)),
                on_durable: Some(Arc::new(move |f| {
                    let _ = commit_tx.send(f);
                })),
                aborted: Some(Arc::clone(&abort)),
            };
            let live = parts.live.clone();
            tokio::spawn(async move {
                sink::run_sink_with(sink_rx, store, lake, opts, Some(live), hooks).await
            })
        };
        let factory: SourceFactory = {
            let (consumer, tracker, kcfg) = (
                Arc::clone(&consumer),
                Arc::clone(&tracker),
                cfg.kafka.clone(),
            );
            let exit_at_end = opts.exit_at_end;
            let warmup = warmup_loader(cfg, &parts.store);
            let checkpoints = Arc::clone(&checkpoints);
            Arc::new(move |i, _n| {
                if i == 0 {
                    Ok(Box::new(
                        KafkaSource::new(
                            Arc::clone(&consumer),
                            Arc::clone(&tracker),
                            &kcfg,
                            exit_at_end,
                        )
                        .with_warmup(Arc::clone(&warmup))
                        .with_checkpoints(Arc::clone(&checkpoints)),
                    ) as Box<dyn QuoteSource>)
                } else {
                    Ok(Box::new(NoPartitions) as Box<dyn QuoteSource>)
                }
            })
        };
        let mut pipeline_cfg = cfg.pipeline.clone();
        pipeline_cfg.keep_quotes = cfg.lake.enabled && cfg.lake.quotes;
        pipeline_cfg.alert_rules = alert_rules.clone();
        pipeline_cfg.source_topic = cfg.kafka.topics.quotes.clone();
        let mut pipeline = {
            let (abort, profiles, progress) = (
                Arc::clone(&abort),
                Arc::clone(&profiles),
                Arc::clone(&parts.progress),
            );
            tokio::task::spawn_blocking(move || {
                pricestream_pipeline::run_with_control(
                    &pipeline_cfg,
                    factory,
                    sink_tx,
                    Arc::new(AtomicBool::new(false)),
                    abort,
                    profiles,
                    progress,
                )
            })
        };
        let result = tokio::select! {
            r = &mut pipeline => r,
            _ = shutdown.cancelled() => {
                // Stopping is a revocation of everything: open windows are not flushed
                // (they are not final); the next start rebuilds them from the offsets.
                abort.store(true, Ordering::SeqCst);
                pipeline.await
            }
        };
        let sink_result = sink.await;
        // the sink's hook (and with it the channel's sender) is gone: the committer
        // makes its last commit and stops
        let commit_result = commit_handle
            .join()
            .map_err(|_| anyhow::anyhow!("the committer panicked"))?;
        let stats = sink_result.context("sink task")??;
        tracing::info!(
            incarnation,
            bars = stats.bars,
            dead_letters = stats.dead_letters,
            commits = commit_result,
            "dataflow ended"
        );
        match result.context("pipeline task")? {
            Ok(()) => return Ok(()),
            Err(PipelineError::Revoked) if shutdown.is_cancelled() => return Ok(()),
            Err(PipelineError::Revoked) => {
                acknowledge_revocation(&consumer);
                tracing::info!("partitions were revoked; rebuilding from the committed offsets");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `/health/ready` asks the broker for the quotes topic's metadata (2 s timeout).
fn broker_check(cfg: &Config) -> Option<pricestream_api::BrokerCheck> {
    match pricestream_kafka::admin::BrokerCheck::new(&cfg.kafka) {
        Ok(check) => Some(Arc::new(move || check.check(Duration::from_secs(2)))),
        Err(e) => {
            tracing::warn!(error = %e, "no broker readiness check");
            None
        }
    }
}

/// Replay metadata in the store, beside the offsets Kafka keeps.
struct StoreCheckpoints {
    store: Arc<dyn Store>,
    group: String,
    topic: String,
    handle: tokio::runtime::Handle,
}

impl CheckpointStore for StoreCheckpoints {
    fn load(&self, partition: i32, offset: i64) -> Option<String> {
        match self.handle.block_on(self.store.load_checkpoint(
            &self.group,
            &self.topic,
            partition,
            offset,
        )) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(partition, error = %e, "cannot read the checkpoint; the partition is replayed without skipping");
                None
            }
        }
    }

    fn save(&self, checkpoints: &[(i32, i64, String)]) -> Result<(), String> {
        self.handle
            .block_on(self.store.save_checkpoints(
                &self.group,
                &self.topic,
                checkpoints,
                SystemClock.now_ns(),
            ))
            .map_err(|e| e.to_string())
    }

    fn prune(&self, committed: &[(i32, i64)]) {
        if let Err(e) = self.handle.block_on(self.store.prune_checkpoints(
            &self.group,
            &self.topic,
            committed,
        )) {
            // harmless: older rows are only looked up for older offsets
            tracing::warn!(error = %e, "cannot prune old checkpoints");
        }
    }
}

/// Bars a resumed series' signals (and gap filling) need: for every interval with
/// signals, and 1m when gaps are filled, the last
/// `pipeline.signal_warmup_bars` final bars of the series that end at or before the resume
/// point (enough for every indicator's window; the exponential ones converge far below the
/// batch-equality tolerance long before that).
fn warmup_loader(cfg: &Config, store: &Arc<dyn Store>) -> pricestream_kafka::WarmupLoader {
    let store = Arc::clone(store);
    let mut intervals: Vec<Interval> = cfg.pipeline.signals.keys().copied().collect();
    // gap filling carries the last 1m close across the restart
    if cfg.pipeline.gap_fill_minutes > 0 && !intervals.contains(&Interval::M1) {
        intervals.push(Interval::M1);
    }
    let limit = cfg.pipeline.signal_warmup_bars;
    let handle = tokio::runtime::Handle::current();
    Arc::new(move |venue, symbol, before| {
        let load = async {
            let mut out = Vec::new();
            for &interval in &intervals {
                let mut bars = store
                    .query_bars(&pricestream_store::BarQuery {
                        venue: Some(venue),
                        symbol: symbol.clone(),
                        interval,
                        from: i64::MIN,
                        to: before.saturating_sub(interval.nanos()).saturating_add(1),
                        limit,
                        tail: true,
                    })
                    .await?;
                out.append(&mut bars);
            }
            Ok::<_, pricestream_store::StoreError>(out)
        };
        match handle.block_on(load) {
            Ok(bars) => bars,
            Err(e) => {
                tracing::error!(%symbol, error = %e, "cannot load the signal warm-up bars; its signals restart cold");
                Vec::new()
            }
        }
    })
}

/// A thread that commits offsets as the sinks report durability; it commits one last time
/// when the sender is dropped, and returns how many commits it made.
fn spawn_committer(
    mut committer: Committer,
    interval: Duration,
) -> anyhow::Result<(std::sync::mpsc::Sender<u64>, std::thread::JoinHandle<usize>)> {
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let handle = std::thread::Builder::new()
        .name("pricestream-commit".into())
        .spawn(move || {
            let mut commits = 0;
            let mut last: Option<u64> = None;
            loop {
                let (frontier, force, done) = match rx.recv_timeout(interval) {
                    Ok(f) => {
                        last = Some(f);
                        (f, false, false)
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => match last {
                        Some(f) => (f, true, false),
                        None => continue,
                    },
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match last {
                        Some(f) => (f, true, true),
                        None => break,
                    },
                };
                if let Ok(n) = committer.durable(frontier, force) {
                    commits += usize::from(n > 0);
                }
                if done {
                    break;
                }
            }
            commits
        })
        .context("starting the committer thread")?;
    Ok((tx, handle))
}
