//! Ingestion runs and the scheduler of polling connectors.
//!
//! Every run — one poll, one gap-healing pass, one WebSocket session, one backfill — is a
//! row in `ingestion_runs`: `running` when it starts, then `completed` or `failed` with its
//! count and error text. A store error while recording is logged, never fatal: the data
//! does not depend on the bookkeeping.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pricestream_schemas::{Clock, IngestionRun, RunStatus};
use pricestream_store::Store;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::Result;
use crate::metrics as m;

/// Records ingestion runs.
#[derive(Clone)]
pub struct RunRecorder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// A run in progress.
pub struct ActiveRun {
    run: IngestionRun,
    connector: &'static str,
    started: Instant,
}

impl ActiveRun {
    pub fn id(&self) -> &str {
        &self.run.id
    }
}

impl RunRecorder {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        RunRecorder { store, clock }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Records a run as `running`.
    pub async fn start(&self, connector: &'static str) -> ActiveRun {
        let run = IngestionRun {
            id: pricestream_schemas::ids::new_id(),
            connector: connector.to_string(),
            status: RunStatus::Running,
            started_at: self.clock.now_ns(),
            finished_at: None,
            quotes: 0,
            error: None,
        };
        if let Err(e) = self.store.upsert_run(&run).await {
            tracing::warn!(connector, error = %e, "cannot record the ingestion run start");
        }
        metrics::gauge!(m::RUNS_ACTIVE, "connector" => connector).increment(1.0);
        ActiveRun {
            run,
            connector,
            started: Instant::now(),
        }
    }

    /// Records the end of a run: `completed` with `count`, or `failed` with the error.
    pub async fn finish(&self, mut active: ActiveRun, count: u64, error: Option<String>) {
        let connector = active.connector;
        metrics::gauge!(m::RUNS_ACTIVE, "connector" => connector).decrement(1.0);
        metrics::histogram!(m::RUN_SECONDS, "connector" => connector)
            .record(active.started.elapsed().as_secs_f64());
        let run = &mut active.run;
        run.finished_at = Some(self.clock.now_ns());
        run.quotes = count;
        run.status = if error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        };
        run.error = error;
        metrics::counter!(m::RUNS, "connector" => connector, "status" => run.status.as_str())
            .increment(1);
        if let Err(e) = self.store.upsert_run(run).await {
            tracing::warn!(connector, error = %e, "cannot record the ingestion run end");
        }
        tracing::info!(
            connector,
            run_id = %run.id,
            status = run.status.as_str(),
            count,
            error = run.error.as_deref().unwrap_or(""),
            "ingestion run ended"
        );
    }

    /// Runs `fut` as one ingestion run, inside a `connector_run` span carrying its id.
    pub async fn track<F>(&self, connector: &'static str, fut: F) -> Result<u64>
    where
        F: Future<Output = Result<u64>>,
    {
        self.track_until(connector, fut, &CancellationToken::new())
            .await
            .unwrap_or_else(|| Ok(0))
    }

    /// As [`RunRecorder::track`], but a cancellation ends the run at once, recorded as
    /// failed ("stopped by shutdown"); returns `None` then.
    pub async fn track_until<F>(
        &self,
        connector: &'static str,
        fut: F,
        cancel: &CancellationToken,
    ) -> Option<Result<u64>>
    where
        F: Future<Output = Result<u64>>,
    {
        let active = self.start(connector).await;
        let span = tracing::info_span!("connector_run", run_id = %active.id(), connector);
        let result = tokio::select! {
            r = fut.instrument(span) => r,
            _ = cancel.cancelled() => {
                self.finish(active, 0, Some("stopped by shutdown".into())).await;
                return None;
            }
        };
        match &result {
            Ok(n) => self.finish(active, *n, None).await,
            Err(e) => self.finish(active, 0, Some(e.to_string())).await,
        }
        Some(result)
    }
}

/// A connector that works in passes: one pass per interval (and on demand).
#[async_trait]
pub trait PollJob: Send + Sync {
    /// The connector name its runs are recorded under (a bounded metric label).
    fn name(&self) -> &'static str;
    fn interval(&self) -> Duration;
    /// One pass; returns how many records it produced.
    async fn run_once(&self) -> Result<u64>;
}

/// A job and the handle that asks it to run now (e.g. after a WebSocket reconnect).
pub struct Scheduled {
    pub job: Arc<dyn PollJob>,
    pub trigger: Arc<Notify>,
}

impl Scheduled {
    pub fn new(job: Arc<dyn PollJob>) -> Self {
        Scheduled {
            job,
            trigger: Arc::new(Notify::new()),
        }
    }
}

/// Runs every job at start, then every interval or when triggered, at most
/// `max_concurrent` passes at a time. A failed pass is recorded and logged; the job runs
/// again at its next turn. Returns when cancelled.
pub async fn run_scheduler(
    jobs: Vec<Scheduled>,
    max_concurrent: usize,
    recorder: RunRecorder,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let mut set = JoinSet::new();
    for s in jobs {
        let (permits, recorder, cancel) = (Arc::clone(&permits), recorder.clone(), cancel.clone());
        set.spawn(async move {
            let name = s.job.name();
            loop {
                let permit = tokio::select! {
                    _ = cancel.cancelled() => return,
                    p = Arc::clone(&permits).acquire_owned() => p,
                };
                let Ok(permit) = permit else { return };
                let Some(result) = recorder.track_until(name, s.job.run_once(), &cancel).await
                else {
                    return;
                };
                drop(permit);
                if let Err(e) = result {
                    tracing::warn!(connector = name, error = %e, "pass failed; retrying at the next turn");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(s.job.interval()) => {}
                    _ = s.trigger.notified() => {
                        tracing::info!(connector = name, "pass triggered");
                    }
                }
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "a scheduled job panicked");
        }
    }
}
