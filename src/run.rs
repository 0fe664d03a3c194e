//! Process orchestration: start in order, stop in reverse order on SIGINT/SIGTERM.
//!
//! Stop order: connectors (sources) → close the bus → the dataflow drains and flushes every
//! open window → the sink makes the last output durable → the HTTP server stops.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pricestream_api::{AppState, PipelineHealth};
use pricestream_bus::{InProcessBus, QuotePublisher, QuoteSource};
use pricestream_pipeline::{sink, Progress, SinkBatch, SourceFactory};
use pricestream_schemas::{Clock, IngestionRun, RunStatus, SystemClock};
use pricestream_store::{Lake, Store};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;

/// A named task whose handle is kept, so its failure is seen and reported by name.
pub(crate) struct Task<T> {
    name: &'static str,
    handle: JoinHandle<anyhow::Result<T>>,
}

impl<T: Send + 'static> Task<T> {
    /// Spawns `fut`; if it fails, `fatal` is cancelled so the process stops.
    pub(crate) fn spawn<F>(name: &'static str, fatal: &CancellationToken, fut: F) -> Self
    where
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        tracing::debug!(task = name, "starting");
        let fatal = fatal.clone();
        Task {
            name,
            handle: tokio::spawn(async move {
                let r = fut.await;
                if let Err(e) = &r {
                    tracing::error!(task = name, error = %format!("{e:#}"), "task failed");
                    fatal.cancel();
                }
                r
            }),
        }
    }

    pub(crate) fn spawn_blocking<F>(name: &'static str, fatal: &CancellationToken, f: F) -> Self
    where
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let fatal = fatal.clone();
        Task {
            name,
            handle: tokio::task::spawn_blocking(move || {
                let r = f();
                if let Err(e) = &r {
                    tracing::error!(task = name, error = %format!("{e:#}"), "task failed");
                    fatal.cancel();
                }
                r
            }),
        }
    }

    pub(crate) async fn join(self) -> anyhow::Result<T> {
        match self.handle.await {
            Ok(r) => r.with_context(|| format!("task {} failed", self.name)),
            Err(e) => Err(anyhow::anyhow!(
                "task {} panicked or was aborted: {e}",
                self.name
            )),
        }
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        _ = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

pub(crate) async fn open_store(cfg: &Config, migrate: bool) -> anyhow::Result<Arc<dyn Store>> {
    let url = cfg.store_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    }
    let store = pricestream_store::open_with(&url, &cfg.store.options())
        .await
        .with_context(|| format!("opening the store at {}", redact(&url)))?;
    if migrate {
        store.migrate().await.context("migrating the store")?;
    }
    store
        .check_schema()
        .await
        .context("checking the store schema")?;
    Ok(store)
}

pub(crate) fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = pricestream_api::metrics::install_recorder().map_err(anyhow::Error::msg)?;
    pricestream_pipeline::metrics::describe();
    pricestream_connectors::metrics::describe();
    pricestream_kafka::metrics::describe();
    Ok(handle)
}

pub(crate) async fn start_api(
    cfg: &Config,
    state: AppState,
    stop: CancellationToken,
    fatal: &CancellationToken,
) -> anyhow::Result<Task<()>> {
    let listener = tokio::net::TcpListener::bind(&cfg.api.listen)
        .await
        .with_context(|| format!("binding the API to {}", cfg.api.listen))?;
    let addr = listener.local_addr().context("reading the API address")?;
    tracing::info!(%addr, "API listening");
    let metrics = match &cfg.api.metrics_listen {
        Some(listen) => {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding the metrics endpoint to {listen}"))?;
            let addr = l.local_addr().context("reading the metrics address")?;
            tracing::info!(%addr, "metrics listening");
            Some((l, pricestream_api::metrics_router(state.clone())))
        }
        None => None,
    };
    let alerts_api = pricestream_api::alerts::AlertsApi::from_config(&cfg.alerts)
        .map_err(anyhow::Error::msg)
        .context("alerts configuration")?;
    let app = pricestream_api::router_with(state, &cfg.api, alerts_api);
    Ok(Task::spawn("api", fatal, async move {
        let api = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
        match metrics {
            Some((l, m)) => {
                let m = axum::serve(l, m).with_graceful_shutdown(stop.cancelled_owned());
                tokio::try_join!(
                    std::future::IntoFuture::into_future(api),
                    std::future::IntoFuture::into_future(m)
                )
                .map(|_| ())
            }
            None => api.await,
        }
        .context("serving HTTP")
    }))
}

/// `pricestream migrate`
pub async fn migrate(cfg: Config) -> anyhow::Result<()> {
    let store = open_store(&cfg, true).await?;
    store.ping().await?;
    tracing::info!(url = %redact(&cfg.store_url()), "migrations applied");
    Ok(())
}

/// `pricestream keys …`
pub async fn keys(cfg: Config, action: crate::KeysAction) -> anyhow::Result<()> {
    let store = open_store(&cfg, cfg.store.auto_migrate).await?;
    match action {
        crate::KeysAction::Create { name, scopes, tier } => {
            const SCOPES: [&str; 3] = ["read", "alerts:write", "admin"];
            if let Some(bad) = scopes
                .split([',', ' '])
                .find(|s| !s.is_empty() && !SCOPES.contains(s))
            {
                anyhow::bail!("unknown scope {bad:?}; expected {}", SCOPES.join(", "));
            }
            if !cfg.api.auth.tiers.contains_key(&tier) {
                let known: Vec<&String> = cfg.api.auth.tiers.keys().collect();
                anyhow::bail!("unknown tier {tier:?}; configured tiers: {known:?}");
            }
            let (key, record) =
                pricestream_api::auth::new_key(&name, &scopes, &tier, SystemClock.now_ns())
                    .context("generating a key")?;
            store
                .create_api_key(&record)
                .await
                .context("storing the key")?;
            println!("{key}");
            eprintln!(
                "key {} ({}) created with scopes [{}], tier {}; it is shown only this once",
                record.id, record.name, record.scopes, record.tier
            );
        }
        crate::KeysAction::List => {
            for k in store.list_api_keys().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.scopes,
                    k.tier,
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        crate::KeysAction::Revoke { id } => {
            if !store.revoke_api_key(&id, SystemClock.now_ns()).await? {
                anyhow::bail!("no active key with id {id:?}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// `pricestream backfill`
pub async fn backfill(cfg: Config, args: crate::connectors::BackfillArgs) -> anyhow::Result<()> {
    let store = open_store(&cfg, cfg.store.auto_migrate).await?;
    crate::connectors::backfill(cfg, args, store).await
}

/// `pricestream serve`
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    let store = open_store(&cfg, cfg.store.auto_migrate).await?;
    let stop = CancellationToken::new();
    let fatal = CancellationToken::new();
    let api = start_api(
        &cfg,
        AppState {
            store,
            metrics: Some(metrics),
            lake_dir: cfg.lake.enabled.then(|| cfg.lake_dir()),
            pipeline: None,
            live: None,
            auth: pricestream_api::auth::Auth::try_new(cfg.api.auth.clone())
                .await
                .map_err(anyhow::Error::msg)
                .context("setting up API authentication")?,
        },
        stop.clone(),
        &fatal,
    )
    .await?;
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = fatal.cancelled() => {}
    }
    stop.cancel();
    api.join().await
}

/// What `run` serves and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Serve the API (and metrics).
    pub api: bool,
    /// Stop, after draining the pipeline, once every connector has finished.
    pub exit_when_sources_done: bool,
}

impl RunOptions {
    /// `pricestream run`: serve until stopped.
    pub const RUN: RunOptions = RunOptions {
        api: true,
        exit_when_sources_done: false,
    };
    /// `pricestream replay`: no API; done when the replay is.
    pub const REPLAY: RunOptions = RunOptions {
        api: false,
        exit_when_sources_done: true,
    };
}

/// `pricestream run`
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    if cfg.kafka.enabled() {
        return crate::kafka::run_all(cfg).await;
    }
    run_with(cfg, RunOptions::RUN).await
}

/// The embedded process: connectors, in-process bus, dataflow, sink and (optionally) API.
pub async fn run_with(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    let store = open_store(&cfg, cfg.store.auto_migrate).await?;
    let lake = cfg.lake.enabled.then(|| Lake::new(cfg.lake_dir()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    // transport
    let bus = InProcessBus::new(cfg.bus.partitions, cfg.bus.capacity_per_partition);
    let publisher: Arc<dyn QuotePublisher> = Arc::new(bus.publisher()?);

    // a failing task cancels `fatal`, which stops everything
    let fatal = CancellationToken::new();

    // live results for WebSocket subscribers
    let live_hub = pricestream_pipeline::live::LiveHub::new(cfg.api.stream_buffer_events);

    // sink, then dataflow
    let (sink_tx, sink_rx) = mpsc::channel::<SinkBatch>(256);
    let sink = Task::spawn("sink", &fatal, {
        let store = Arc::clone(&store);
        let opts = sink::SinkOptions {
            workers: cfg.pipeline.resolved_workers(),
            allowed_lateness_ns: cfg.pipeline.allowed_lateness_ms.saturating_mul(1_000_000),
            store_quotes: cfg.store.quotes,
        };
        let live = live_hub.clone();
        async move { Ok(sink::run_sink(sink_rx, store, lake, opts, Some(live)).await?) }
    });
    let factory: SourceFactory = {
        let bus = Arc::clone(&bus);
        Arc::new(move |i, n| {
            bus.source(i, n)
                .map(|s| Box::new(s) as Box<dyn QuoteSource>)
        })
    };
    let mut pipeline_cfg = cfg.pipeline.clone();
    pipeline_cfg.keep_quotes = cfg.lake.enabled && cfg.lake.quotes;
    let workers = pipeline_cfg.resolved_workers();
    pipeline_cfg.colocated_input = bus.colocates(workers);
    // alerts: the rule index (kept in step with the store) and the webhook dispatcher
    let stop_alert_rules = CancellationToken::new();
    let stop_dispatcher = CancellationToken::new();
    let mut alert_tasks: Vec<Task<()>> = Vec::new();
    if cfg.alerts.enabled {
        let rules = pricestream_pipeline::alerts::SharedRules::default();
        pipeline_cfg.alert_rules = Some(rules.clone());
        let every = Duration::from_millis(cfg.alerts.rules_refresh_ms);
        let (rules_store, stop) = (Arc::clone(&store), stop_alert_rules.clone());
        alert_tasks.push(Task::spawn("alert_rules", &fatal, async move {
            pricestream_pipeline::alerts::refresh_rules(rules_store, rules, every, stop).await;
            Ok(())
        }));
        let dispatcher =
            pricestream_pipeline::alerts::Dispatcher::new(Arc::clone(&store), cfg.alerts.clone())
                .map_err(anyhow::Error::msg)
                .context("webhook dispatcher")?;
        let stop = stop_dispatcher.clone();
        alert_tasks.push(Task::spawn("webhooks", &fatal, async move {
            dispatcher.run(stop).await;
            Ok(())
        }));
    }
    let stop_dataflow = Arc::new(AtomicBool::new(false));
    let profiles = pricestream_pipeline::SharedProfiles::default();
    let progress = Arc::new(Progress::new(workers, clock.now_ns()));
    let pipeline = Task::spawn_blocking("pipeline", &fatal, {
        let stop = Arc::clone(&stop_dataflow);
        let profiles = Arc::clone(&profiles);
        let progress = Arc::clone(&progress);
        move || {
            Ok(pricestream_pipeline::run_with_progress(
                &pipeline_cfg,
                factory,
                sink_tx,
                stop,
                profiles,
                progress,
            )?)
        }
    });
    tracing::info!(workers, partitions = cfg.bus.partitions, "pipeline started");

    // seasonality profiles: refreshed from the lake on a schedule, published to the pipeline
    let stop_jobs = CancellationToken::new();
    let seasonality = (cfg.lake.enabled && cfg.analytics.seasonality_refresh_secs > 0).then(|| {
        let (lake_dir, interval) = (cfg.lake_dir(), cfg.analytics.seasonality_interval);
        let every = std::time::Duration::from_secs(cfg.analytics.seasonality_refresh_secs);
        let (profiles, stop) = (Arc::clone(&profiles), stop_jobs.clone());
        Task::spawn("seasonality", &fatal, async move {
            loop {
                let (dir, shared) = (lake_dir.clone(), Arc::clone(&profiles));
                match tokio::task::spawn_blocking(move || {
                    crate::analytics::refresh_shared(&dir, interval, &shared)
                })
                .await
                {
                    Ok(Ok(n)) => tracing::info!(series = n, "seasonality profiles refreshed"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %format!("{e:#}"), "seasonality refresh failed")
                    }
                    Err(e) => tracing::warn!(error = %e, "seasonality refresh panicked"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    });

    // API
    let stop_api = CancellationToken::new();
    let api = if opts.api {
        Some(
            start_api(
                &cfg,
                AppState {
                    store: Arc::clone(&store),
                    metrics: Some(metrics),
                    lake_dir: cfg.lake.enabled.then(|| cfg.lake_dir()),
                    pipeline: Some(PipelineHealth {
                        progress,
                        stall_after: Duration::from_millis(
                            u64::try_from(cfg.pipeline.stall_timeout_ms).unwrap_or(u64::MAX),
                        ),
                        broker: None,
                    }),
                    live: Some(pricestream_api::stream::LiveStream::new(
                        live_hub.clone(),
                        cfg.api.stream_max_connections,
                    )),
                    auth: pricestream_api::auth::Auth::try_new(cfg.api.auth.clone())
                        .await
                        .map_err(anyhow::Error::msg)
                        .context("setting up API authentication")?,
                },
                stop_api.clone(),
                &fatal,
            )
            .await?,
        )
    } else {
        None
    };

    // connectors: one supervising task; the first failure ends it (and aborts the rest)
    let stop_sources = CancellationToken::new();
    let mut set = spawn_connectors(&cfg, &store, &clock, publisher, &stop_sources)?;
    let connectors = Task::spawn("connectors", &fatal, {
        let bus = Arc::clone(&bus);
        async move {
            let mut total = 0;
            while let Some(joined) = set.join_next().await {
                let (name, result) = joined.context("connector task panicked")?;
                let n = result.with_context(|| format!("connector {name}"))?;
                tracing::info!(connector = name, quotes = n, "connector finished");
                total += n;
            }
            // every source is done: let the dataflow drain and flush what it has
            bus.close();
            Ok(total)
        }
    });

    // Run until a signal, or until a part fails.
    let mut failure: Option<anyhow::Error> = None;
    let mut connectors = Some(connectors);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        let connectors_done = async {
            match connectors.as_mut() {
                Some(t) => (&mut t.handle).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut signal => break,
            joined = connectors_done => {
                connectors = None;
                match joined {
                    Ok(Ok(n)) if opts.exit_when_sources_done => {
                        tracing::info!(quotes = n, "all connectors finished; draining the pipeline");
                        break;
                    }
                    Ok(Ok(n)) => tracing::info!(quotes = n, "all connectors finished; serving until stopped"),
                    Ok(Err(e)) => { failure = Some(e); break; }
                    Err(e) => { failure = Some(anyhow::anyhow!("connectors task panicked: {e}")); break; }
                }
            }
            _ = fatal.cancelled() => break,
        }
    }

    // Stop in order: sources, bus, dataflow (flushes open windows), sink, API.
    stop_sources.cancel();
    stop_jobs.cancel();
    if let Some(task) = seasonality {
        if let Err(e) = task.join().await {
            failure.get_or_insert(e);
        }
    }
    if let Some(task) = connectors {
        if let Err(e) = task.join().await {
            failure.get_or_insert(e);
        }
    }
    bus.close();
    if let Err(e) = pipeline.join().await {
        failure.get_or_insert(e);
    }
    match sink.join().await {
        Ok(stats) => tracing::info!(
            bars = stats.bars,
            dead_letters = stats.dead_letters,
            "sink flushed"
        ),
        Err(e) => {
            failure.get_or_insert(e);
        }
    }
    // alert tasks after the sink, so the last triggers are queued (and sent while the
    // dispatcher still runs)
    stop_alert_rules.cancel();
    stop_dispatcher.cancel();
    for task in alert_tasks {
        if let Err(e) = task.join().await {
            failure.get_or_insert(e);
        }
    }
    stop_api.cancel();
    if let Some(api) = api {
        if let Err(e) = api.join().await {
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}

/// Starts every enabled connector, each as a tracked ingestion run publishing to
/// `publisher`; `stop` ends them.
pub(crate) fn spawn_connectors(
    cfg: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    publisher: Arc<dyn QuotePublisher>,
    stop_sources: &CancellationToken,
) -> anyhow::Result<JoinSet<(&'static str, anyhow::Result<u64>)>> {
    let mut set: JoinSet<(&'static str, anyhow::Result<u64>)> = JoinSet::new();
    if cfg.connectors.synthetic.enabled {
        let scfg = cfg.connectors.synthetic.clone();
        scfg.build(clock.as_ref()).context("synthetic connector")?;
        let (clock, publisher, stop) = (
            Arc::clone(clock),
            Arc::clone(&publisher),
            stop_sources.clone(),
        );
        let store = Arc::clone(store);
        set.spawn(async move {
            let r = tracked_run("synthetic", store, Arc::clone(&clock), async move {
                pricestream_connectors::synthetic::run(scfg, clock, publisher, stop)
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await;
            ("synthetic", r)
        });
    }
    for (name, fut) in crate::connectors::venue_tasks(cfg, store, clock, &publisher, stop_sources)?
    {
        set.spawn(async move { (name, fut.await.map_err(anyhow::Error::from)) });
    }
    drop(publisher);
    if set.is_empty() {
        tracing::warn!("no connector is enabled; the pipeline will only see what others publish");
    }
    Ok(set)
}

/// Runs one connector as an ingestion run: a row in `ingestion_runs` (running, then
/// completed or failed with its quote count), a `connector_run` span carrying the run id
/// around everything the connector logs, and run metrics. A store error while recording
/// the run is logged, not fatal: the quotes themselves do not depend on it.
pub(crate) async fn tracked_run<F>(
    connector: &'static str,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    fut: F,
) -> anyhow::Result<u64>
where
    F: Future<Output = anyhow::Result<u64>>,
{
    use pricestream_connectors::metrics as cm;
    let mut run = IngestionRun {
        id: pricestream_schemas::ids::new_id(),
        connector: connector.to_string(),
        status: RunStatus::Running,
        started_at: clock.now_ns(),
        finished_at: None,
        quotes: 0,
        error: None,
    };
    let span = tracing::info_span!("connector_run", run_id = %run.id, connector);
    async move {
        if let Err(e) = store.upsert_run(&run).await {
            tracing::warn!(error = %e, "cannot record the ingestion run start");
        }
        tracing::info!("ingestion run started");
        metrics::gauge!(cm::RUNS_ACTIVE, "connector" => connector).increment(1.0);
        let started = Instant::now();
        let result = fut.await;
        metrics::gauge!(cm::RUNS_ACTIVE, "connector" => connector).decrement(1.0);
        metrics::histogram!(cm::RUN_SECONDS, "connector" => connector)
            .record(started.elapsed().as_secs_f64());
        run.finished_at = Some(clock.now_ns());
        match &result {
            Ok(n) => {
                run.status = RunStatus::Completed;
                run.quotes = *n;
            }
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(format!("{e:#}"));
            }
        }
        metrics::counter!(cm::RUNS, "connector" => connector, "status" => run.status.as_str())
            .increment(1);
        if let Err(e) = store.upsert_run(&run).await {
            tracing::warn!(error = %e, "cannot record the ingestion run end");
        }
        tracing::info!(
            status = run.status.as_str(),
            quotes = run.quotes,
            "ingestion run ended"
        );
        result
    }
    .instrument(span)
    .await
}

pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}
