//! `pricestream`: the command-line entry point. Wiring only; the work lives in the crates.

mod analytics;
mod batch;
mod bench;
mod config;
mod connectors;
mod kafka;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "pricestream",
    version,
    about = "Event-time market data: bars, signals, alerts"
)]
struct Cli {
    /// TOML configuration file (optional; environment variables override it).
    #[arg(long, global = true, env = "PRICESTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "PRICESTREAM_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connectors, pipeline and API in one process (the embedded default).
    Run,
    /// Only the API, over an existing store.
    Serve,
    /// Connectors only, publishing quotes to Kafka (`kafka.brokers`).
    Ingest,
    /// The stream processor on Kafka: consumer group → dataflow → store, lake, topics.
    Process {
        /// Stop when every assigned partition is read to its end (catch-up jobs).
        #[arg(long)]
        exit_at_end: bool,
    },
    /// Apply database migrations.
    Migrate,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// API keys: create (shown once), list, revoke.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Fetch a venue's history into the store: Binance candles as bars (with a progress
    /// bar), CoinGecko price points as ticker quotes.
    Backfill(connectors::BackfillArgs),
    /// Play recorded history through the pipeline, then exit: Binance kline or trade
    /// dumps, NDJSON quotes or a lake's quotes. The other connectors stay off and no API
    /// is served; with `kafka.brokers` set the quotes go to Kafka, as with `ingest`.
    Replay(connectors::ReplayArgs),
    /// Throughput, latency and memory figures of the in-process pipeline.
    Bench(bench::BenchArgs),
    /// Batch analytics over the lake.
    Analytics {
        #[command(subcommand)]
        action: AnalyticsAction,
    },
}

#[derive(Subcommand, Debug)]
enum KeysAction {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Scopes, comma or space separated: read, alerts:write, admin.
        #[arg(long, default_value = "read")]
        scopes: String,
        /// Rate-limit tier (one of `api.auth.tiers`).
        #[arg(long, default_value = "basic")]
        tier: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
enum AnalyticsAction {
    /// Recompute rollups and signals from the lake's bars and compare with the stream's.
    Recompute {
        /// Replace the lake's rollups and signals with the recomputed ones.
        #[arg(long)]
        write: bool,
    },
    /// Recompute the seasonality profiles from the lake.
    Seasonality,
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Load and validate the configuration, then print it as TOML.
    Check,
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PRICESTREAM_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // colours only on a terminal: a log file or a collector gets plain text
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    match &cli.command {
        Command::Config {
            action: ConfigAction::Check,
        } => {
            // connectors are checked the way `run` builds them (replay files are read)
            let clock: std::sync::Arc<dyn pricestream_schemas::Clock> =
                std::sync::Arc::new(pricestream_schemas::SystemClock);
            cfg.connectors
                .synthetic
                .build(clock.as_ref())
                .context("connectors.synthetic")?;
            connectors::venues(&cfg)
                .check(clock)
                .context("connector configuration")?;
            // secrets are not printed
            let mut shown = cfg.clone();
            if shown.api.auth.jwt.hs256_secret.is_some() {
                shown.api.auth.jwt.hs256_secret = Some("<redacted>".into());
            }
            println!(
                "# configuration is valid\n{}",
                toml::to_string_pretty(&shown)?
            );
            return Ok(());
        }
        Command::Analytics { action } => return run_analytics(&cfg, action),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pricestream-io")
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run => run::run(cfg).await,
            Command::Replay(args) => {
                let mut cfg = cfg;
                args.apply(&mut cfg)?;
                if cfg.kafka.enabled() {
                    kafka::ingest(cfg).await
                } else {
                    run::run_with(cfg, run::RunOptions::REPLAY).await
                }
            }
            Command::Serve => run::serve(cfg).await,
            Command::Ingest => kafka::ingest(cfg).await,
            Command::Process { exit_at_end } => {
                kafka::process(cfg, kafka::ProcessOptions { exit_at_end }).await
            }
            Command::Migrate => run::migrate(cfg).await,
            Command::Keys { action } => run::keys(cfg, action).await,
            Command::Bench(args) => bench::bench(cfg, args).await,
            Command::Backfill(args) => run::backfill(cfg, args).await,
            Command::Config { .. } | Command::Analytics { .. } => Ok(()),
        }
    })
}

fn run_analytics(cfg: &Config, action: &AnalyticsAction) -> anyhow::Result<()> {
    let lake = cfg.lake_dir();
    match action {
        AnalyticsAction::Recompute { write } => {
            let report =
                analytics::recompute(&lake, &cfg.pipeline.rollups, &cfg.pipeline.signals, *write)?;
            for m in report.mismatches.iter().take(20) {
                println!("mismatch: {m}");
            }
            println!(
                "checked {} rollup bars and {} signals: {} mismatches{}",
                report.bars_checked,
                report.signals_checked,
                report.mismatches.len(),
                if *write {
                    " (lake rewritten from the batch results)"
                } else {
                    ""
                }
            );
            if report.mismatches.is_empty() || *write {
                Ok(())
            } else {
                anyhow::bail!("the stream's results differ from the batch recomputation")
            }
        }
        AnalyticsAction::Seasonality => {
            let profiles =
                analytics::refresh_seasonality(&lake, cfg.analytics.seasonality_interval)?;
            println!("seasonality profiles written for {} series", profiles.len());
            Ok(())
        }
    }
}
