//! The synthetic connector: a seeded random-walk market, paced in simulated time.

mod config;
mod source;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_bus::QuotePublisher;
use pricestream_schemas::{Clock, Symbol, NANOS_PER_MILLI};
use tokio_util::sync::CancellationToken;

pub use config::SyntheticConfig;
pub use source::{start_price, SyntheticMarket};

use crate::error::{ConnectorError, Result};
use crate::metrics as m;

const BATCH: usize = 1_024;

impl SyntheticConfig {
    /// Builds the generator this configuration describes.
    pub fn build(&self, clock: &dyn Clock) -> Result<SyntheticMarket> {
        let symbols = self
            .symbols
            .iter()
            .map(|s| Symbol::new(s).map_err(|e| ConnectorError::Config(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        if symbols.is_empty() {
            return Err(ConnectorError::Config(
                "synthetic: at least one symbol is needed".into(),
            ));
        }
        if !(self.trades_per_sec.is_finite() && self.trades_per_sec > 0.0) {
            return Err(ConnectorError::Config(
                "synthetic: trades_per_sec must be > 0".into(),
            ));
        }
        let start = match self.start_ms {
            Some(ms) => ms * NANOS_PER_MILLI,
            None => clock.now_ns() / NANOS_PER_MILLI * NANOS_PER_MILLI,
        };
        Ok(SyntheticMarket::new(
            self.seed,
            &symbols,
            start,
            self.trades_per_sec,
            self.volatility,
            self.disorder_fraction,
            self.disorder_max_ms,
        ))
    }
}

/// Publishes the synthetic market until cancelled (or `max_trades`). Returns the count.
pub async fn run(
    cfg: SyntheticConfig,
    clock: Arc<dyn Clock>,
    publisher: Arc<dyn QuotePublisher>,
    cancel: CancellationToken,
) -> Result<u64> {
    let mut market = cfg.build(clock.as_ref())?;
    let sim_start = market.peek_time();
    let wall_start = Instant::now();
    let limit = cfg.max_trades.unwrap_or(u64::MAX);
    let mut sent: u64 = 0;
    while sent < limit && !cancel.is_cancelled() {
        let horizon = if cfg.speed > 0.0 {
            sim_start + (wall_start.elapsed().as_nanos() as f64 * cfg.speed) as i64
        } else {
            i64::MAX
        };
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH
            && sent + (batch.len() as u64) < limit
            && market.peek_time() <= horizon
        {
            if let Some(q) = market.next() {
                batch.push(q);
            }
        }
        if batch.is_empty() {
            let wait_sim = (market.peek_time() - horizon).max(0) as f64 / cfg.speed.max(1e-9);
            let wait = Duration::from_nanos(wait_sim as u64)
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let n = batch.len() as u64;
        tokio::select! {
            _ = cancel.cancelled() => break,
            res = publisher.publish(batch) => res.map_err(|e| ConnectorError::Publish(e.to_string()))?,
        }
        sent += n;
        metrics::counter!(m::QUOTES_PUBLISHED, "connector" => "synthetic").increment(n);
        if cfg.speed <= 0.0 {
            tokio::task::yield_now().await;
        }
    }
    tracing::info!(sent, "synthetic connector stopped");
    Ok(sent)
}
