//! Wiring of the venue connectors into `pricestream run` and the `backfill` command.

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use pricestream_bus::QuotePublisher;
use pricestream_connectors::backfill;
use pricestream_connectors::candles::CandleRollups;
use pricestream_connectors::replay::{ReplayConfig, ReplayFormat};
use pricestream_connectors::runs::RunRecorder;
use pricestream_connectors::supervisor::{ConnectorTask, Venues};
use pricestream_schemas::{Clock, Interval, Symbol, SystemClock, Venue};
use pricestream_store::{BackfillJob, BackfillState, Store};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The venue connectors' settings.
pub fn venues(cfg: &Config) -> Venues<'_> {
    Venues {
        binance: &cfg.connectors.binance,
        coinbase: &cfg.connectors.coinbase,
        coingecko: &cfg.connectors.coingecko,
        replay: &cfg.connectors.replay,
        scheduler: &cfg.connectors.scheduler,
        rollups: &cfg.pipeline.rollups,
        rollup_settle: rollup_settle(cfg),
    }
}

/// How long after its end the pipeline may still revise a bucket (lateness plus
/// out-of-orderness), and a minute more.
fn rollup_settle(cfg: &Config) -> std::time::Duration {
    let ms = cfg
        .pipeline
        .allowed_lateness_ms
        .saturating_add(cfg.pipeline.max_out_of_orderness_ms)
        .saturating_add(60_000);
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The tasks of the enabled venue connectors.
pub fn venue_tasks(
    cfg: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    publisher: &Arc<dyn QuotePublisher>,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<ConnectorTask>> {
    venues(cfg)
        .build(
            Arc::clone(store),
            Arc::clone(clock),
            Arc::clone(publisher),
            cancel.clone(),
        )
        .context("configuring the connectors")
}

/// Arguments of `pricestream replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// binance-klines-csv (written as 1m bars), binance-trades-csv, quotes-ndjson or
    /// lake-parquet (the lake root as the path).
    #[arg(long)]
    pub format: ReplayFormat,
    /// Canonical symbol of kline and trade dumps (their rows do not say).
    #[arg(long, default_value = "BTC-USDT")]
    pub symbol: Symbol,
    /// Venue of kline and trade dumps.
    #[arg(long, default_value = "binance")]
    pub venue: Venue,
    /// 1 = original pace, N = N times faster, 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
    /// Files to play, in order.
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
}

impl ReplayArgs {
    /// The configuration with this replay as the only connector.
    pub fn apply(&self, cfg: &mut Config) -> anyhow::Result<()> {
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            bail!("--speed must be a number >= 0, not {}", self.speed);
        }
        let c = &mut cfg.connectors;
        c.synthetic.enabled = false;
        c.binance.enabled = false;
        c.coinbase.enabled = false;
        c.coingecko.enabled = false;
        c.replay = ReplayConfig {
            enabled: true,
            format: self.format,
            paths: self.paths.clone(),
            symbol: self.symbol.as_str().to_string(),
            venue: self.venue,
            speed: self.speed,
        };
        Ok(())
    }
}

/// Arguments of `pricestream backfill`.
#[derive(clap::Args, Debug)]
pub struct BackfillArgs {
    /// Venue to fetch candles from (binance).
    #[arg(long)]
    pub venue: Venue,
    /// Canonical symbol, e.g. BTC-USDT (mapped through the venue's `symbols` table).
    #[arg(long)]
    pub symbol: Symbol,
    /// Start, inclusive: RFC 3339, a date (YYYY-MM-DD) or Unix milliseconds.
    #[arg(long, value_parser = parse_instant)]
    pub from: i64,
    /// End, exclusive: RFC 3339, a date (YYYY-MM-DD) or Unix milliseconds.
    #[arg(long, value_parser = parse_instant)]
    pub to: i64,
    /// Candle interval.
    #[arg(long, default_value = "1m")]
    pub interval: Interval,
}

fn parse_instant(s: &str) -> Result<i64, String> {
    let text = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    pricestream_schemas::time::parse_time(&text)
        .ok_or_else(|| format!("{s:?} is not RFC 3339, YYYY-MM-DD or Unix milliseconds"))
}

fn draw(job: &BackfillJob, out: &mut impl Write) {
    const WIDTH: usize = 30;
    let pct = job.progress_pct();
    let filled = ((pct / 100.0) * WIDTH as f64).round() as usize;
    let _ = write!(
        out,
        "\r[{}{}] {:5.1}%  {} candles  {} absent  {}",
        "#".repeat(filled.min(WIDTH)),
        "-".repeat(WIDTH - filled.min(WIDTH)),
        pct,
        job.candles,
        job.absent,
        job.state.as_str(),
    );
    let _ = out.flush();
}

/// `pricestream backfill`
pub async fn backfill(
    cfg: Config,
    args: BackfillArgs,
    store: Arc<dyn Store>,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if args.venue == Venue::Coingecko {
        return coingecko_history(cfg, args, store, clock).await;
    }
    let source = match args.venue {
        Venue::Binance => cfg
            .connectors
            .binance
            .rest(Arc::clone(&clock))
            .context("configuring the binance REST client")?,
        other => bail!("backfill from {other} is not supported; supported: binance, coingecko"),
    };
    if source.symbols().venue_symbol(&args.symbol).is_none() {
        bail!(
            "{} is not in [connectors.binance.symbols]; add e.g. {} = \"{}\"",
            args.symbol,
            args.symbol.as_str().replace('-', ""),
            args.symbol
        );
    }
    let mut job = backfill::new_job(
        &source,
        args.symbol.clone(),
        args.interval,
        args.from,
        args.to,
        clock.now_ns(),
    )?;
    eprintln!(
        "backfill {} {} {} {} → {} (job {})",
        job.venue,
        job.symbol,
        job.interval,
        pricestream_schemas::time::to_rfc3339(job.from),
        pricestream_schemas::time::to_rfc3339(job.to),
        job.id
    );
    let recorder = RunRecorder::new(Arc::clone(&store), Arc::clone(&clock));
    let rollups = CandleRollups::new(&cfg.pipeline.rollups, rollup_settle(&cfg));
    let mut stderr = std::io::stderr();
    let result = recorder
        .track(
            "binance_backfill",
            backfill::run_job(
                &source,
                &store,
                &clock,
                Some(&rollups),
                &mut job,
                &mut |j| draw(j, &mut stderr),
            ),
        )
        .await;
    eprintln!();
    match result {
        Ok(n) => {
            println!(
                "job {}: {n} candles written, {} buckets absent at the venue",
                job.id, job.absent
            );
            Ok(())
        }
        Err(e) => {
            debug_assert_eq!(job.state, BackfillState::Failed);
            Err(anyhow::Error::from(e).context(format!("backfill job {} failed", job.id)))
        }
    }
}

/// `backfill --venue coingecko`: the `market_chart/range` price history, stored as ticker
/// quotes (CoinGecko has no candles at 1m; its samples are 5-minute to daily).
async fn coingecko_history(
    cfg: Config,
    args: BackfillArgs,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let cg = cfg
        .connectors
        .coingecko
        .build(Arc::clone(&clock), None)
        .context("configuring the coingecko client")?;
    let recorder = RunRecorder::new(Arc::clone(&store), clock);
    let n = recorder
        .track("coingecko_history", async {
            let quotes = cg.history(&args.symbol, args.from, args.to).await?;
            store.insert_quotes(&quotes).await?;
            Ok(quotes.len() as u64)
        })
        .await
        .context("coingecko history")?;
    println!(
        "{n} price points of {} stored as ticker quotes",
        args.symbol
    );
    Ok(())
}
