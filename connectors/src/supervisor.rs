//! Builds the tasks of the enabled venue connectors: live WebSocket sessions and the
//! scheduler of polling passes (gap healing), all publishing through one
//! [`QuotePublisher`] so they run on either bus.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pricestream_bus::QuotePublisher;
use pricestream_schemas::{Clock, Interval, Symbol};
use pricestream_store::Store;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use crate::backfill::BackfillWorker;
use crate::binance::{BinanceConfig, BinanceLive};
use crate::candles::{CandleRollups, CandleSource};
use crate::coinbase::CoinbaseConfig;
use crate::coingecko::CoinGeckoConfig;
use crate::error::{ConnectorError, Result};
use crate::heal::Healer;
use crate::replay::ReplayConfig;
use crate::runs::{run_scheduler, RunRecorder, Scheduled};

/// Settings of the scheduler of polling passes (section `[connectors.scheduler]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Passes (polls, gap healing) that may run at the same time, across providers.
    pub max_concurrent: usize,
    /// How often queued backfill jobs (`POST /v1/backfills`) are looked for.
    pub backfill_poll_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_concurrent: 4,
            backfill_poll_secs: 5,
        }
    }
}

/// A named connector task: runs until cancelled, returns what it published.
pub type ConnectorTask = (
    &'static str,
    Pin<Box<dyn Future<Output = Result<u64>> + Send>>,
);

/// The venue connectors the configuration enables (synthetic is wired on its own).
pub struct Venues<'a> {
    pub binance: &'a BinanceConfig,
    pub coinbase: &'a CoinbaseConfig,
    pub coingecko: &'a CoinGeckoConfig,
    pub replay: &'a ReplayConfig,
    pub scheduler: &'a SchedulerConfig,
    /// The pipeline's rollup intervals, and how long after its end the pipeline may still
    /// revise a bucket: healed and backfilled candles get their coarser bars from these.
    pub rollups: &'a [Interval],
    pub rollup_settle: Duration,
}

impl Venues<'_> {
    pub fn any_enabled(&self) -> bool {
        self.binance.enabled
            || self.coinbase.enabled
            || self.coingecko.enabled
            || self.replay.enabled
    }

    /// Checks the enabled connectors' configuration as [`Venues::build`] will use it,
    /// without building anything that runs: symbol tables, HTTP clients and rate limits,
    /// feeds and channels, and replay inputs (read and checked whole).
    pub fn check(&self, clock: Arc<dyn Clock>) -> Result<()> {
        let b = self.binance;
        if b.enabled {
            if b.symbol_map()?.is_empty() {
                return Err(ConnectorError::Config(
                    "binance: at least one symbol is needed".into(),
                ));
            }
            for s in b.symbols.values() {
                Symbol::new(s).map_err(|e| ConnectorError::Config(format!("binance: {e}")))?;
            }
            b.rest(Arc::clone(&clock))?;
        }
        if self.coinbase.enabled {
            self.coinbase.check()?;
        }
        if self.coingecko.enabled {
            self.coingecko.build(Arc::clone(&clock), None)?;
        }
        if self.replay.enabled {
            self.replay.load(clock.now_ns())?;
        }
        Ok(())
    }

    /// Checks the configuration ([`Venues::check`]) and builds the tasks.
    pub fn build(
        &self,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        publisher: Arc<dyn QuotePublisher>,
        cancel: CancellationToken,
    ) -> Result<Vec<ConnectorTask>> {
        // a bad setting or file stops the start with a clear error
        self.check(Arc::clone(&clock))?;
        let recorder = RunRecorder::new(Arc::clone(&store), Arc::clone(&clock));
        let mut tasks: Vec<ConnectorTask> = Vec::new();
        let mut jobs: Vec<Scheduled> = Vec::new();
        let b = self.binance;
        if b.enabled {
            let symbols = b.symbol_map()?;
            let canonical: Vec<Symbol> = b
                .symbols
                .values()
                .map(|s| Symbol::new(s).map_err(|e| ConnectorError::Config(e.to_string())))
                .collect::<Result<_>>()?;
            let mut on_reconnect = None;
            let rest = Arc::new(b.rest(Arc::clone(&clock))?);
            let rollups = Arc::new(CandleRollups::new(self.rollups, self.rollup_settle));
            jobs.push(Scheduled::new(Arc::new(BackfillWorker {
                sources: vec![Arc::clone(&rest) as Arc<dyn CandleSource>],
                store: Arc::clone(&store),
                clock: Arc::clone(&clock),
                poll_interval: Duration::from_secs(self.scheduler.backfill_poll_secs.max(1)),
                rollups: Some(Arc::clone(&rollups)),
            })));
            if b.heal.enabled {
                let job = Scheduled::new(Arc::new(
                    Healer::new(
                        "binance_heal",
                        rest,
                        Arc::clone(&store),
                        Arc::clone(&clock),
                        canonical,
                        b.heal.clone(),
                    )
                    .with_rollups(Arc::clone(&rollups)),
                ));
                on_reconnect = Some(Arc::clone(&job.trigger));
                jobs.push(job);
            }
            if !b.streams.is_empty() {
                let live = BinanceLive {
                    cfg: b.clone(),
                    symbols,
                    publisher: Arc::clone(&publisher),
                    store: Arc::clone(&store),
                    clock: Arc::clone(&clock),
                    recorder: recorder.clone(),
                    on_reconnect,
                    rollups: Some(rollups),
                };
                tasks.push((
                    crate::binance::ws::CONNECTOR,
                    Box::pin(live.run(cancel.clone())),
                ));
            }
        }
        if self.coinbase.enabled {
            let cb = self.coinbase.clone();
            let (publisher, store, clock, recorder, cancel) = (
                Arc::clone(&publisher),
                Arc::clone(&store),
                Arc::clone(&clock),
                recorder.clone(),
                cancel.clone(),
            );
            tasks.push((
                crate::coinbase::CONNECTOR,
                Box::pin(async move { cb.run(publisher, store, clock, recorder, cancel).await }),
            ));
        }
        if self.coingecko.enabled {
            let cg = self
                .coingecko
                .build(Arc::clone(&clock), Some(Arc::clone(&publisher)))?;
            jobs.push(Scheduled::new(Arc::new(cg)));
        }
        if self.replay.enabled {
            let rp = self.replay.clone();
            let (publisher, store, clock, recorder, cancel) = (
                Arc::clone(&publisher),
                Arc::clone(&store),
                Arc::clone(&clock),
                recorder.clone(),
                cancel.clone(),
            );
            tasks.push((
                crate::replay::CONNECTOR,
                Box::pin(async move {
                    let fut = rp.run(publisher, Arc::clone(&store), clock, cancel);
                    recorder.track(crate::replay::CONNECTOR, fut).await
                }),
            ));
        }
        if !jobs.is_empty() {
            let max = self.scheduler.max_concurrent;
            tasks.push((
                "scheduler",
                Box::pin(async move {
                    run_scheduler(jobs, max, recorder, cancel).await;
                    Ok(0)
                }),
            ));
        }
        Ok(tasks)
    }
}
