//! Replay: recorded history played back as a live source — Binance public-data kline CSVs
//! (candles, written as 1m bars like every venue candle), Binance public-data trade CSVs,
//! NDJSON of PriceStream's own quote schema and Parquet quotes from our lake (quotes are
//! published to the bus) — at the original pace,
//! N times faster, or as fast as possible. The whole input is read and checked before
//! anything is sent: a bad line is a clear error naming the file and line, and nothing of
//! that file is half-sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pricestream_bus::QuotePublisher;
use pricestream_schemas::{
    Candle, Clock, Interval, Quote, QuoteKind, Side, Symbol, TimestampNs, Venue, NANOS_PER_MILLI,
};
use pricestream_store::{Lake, Store};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::candles::candle_to_bar;
use crate::error::{ConnectorError, Result};
use crate::metrics as m;

pub const CONNECTOR: &str = "replay";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayFormat {
    /// data.binance.vision kline CSV (spot without header, futures with one).
    BinanceKlinesCsv,
    /// data.binance.vision trade CSV: `id,price,qty,quote_qty,time,is_buyer_maker[,
    /// is_best_match]` (spot without header, futures with one; time in ms or µs).
    BinanceTradesCsv,
    /// One PriceStream quote (JSON) per line.
    QuotesNdjson,
    /// The `quotes` dataset of a PriceStream lake (`path` is the lake root).
    LakeParquet,
}

impl std::str::FromStr for ReplayFormat {
    type Err = String;

    /// The configuration's names, with `-` or `_`: `binance-trades-csv`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.replace('-', "_").as_str() {
            "binance_klines_csv" => Ok(ReplayFormat::BinanceKlinesCsv),
            "binance_trades_csv" => Ok(ReplayFormat::BinanceTradesCsv),
            "quotes_ndjson" => Ok(ReplayFormat::QuotesNdjson),
            "lake_parquet" => Ok(ReplayFormat::LakeParquet),
            _ => Err(format!(
                "{s:?} is not a replay format: binance-klines-csv, binance-trades-csv, \
                 quotes-ndjson or lake-parquet"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    pub enabled: bool,
    pub format: ReplayFormat,
    /// Files to play in order (for `lake_parquet`: the lake root).
    pub paths: Vec<PathBuf>,
    /// Canonical symbol and venue of kline and trade CSVs (their rows do not say).
    pub symbol: String,
    pub venue: Venue,
    /// 1 = original pace, N = N times faster, 0 = as fast as possible.
    pub speed: f64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            enabled: false,
            format: ReplayFormat::QuotesNdjson,
            paths: Vec::new(),
            symbol: "BTC-USDT".into(),
            venue: Venue::Binance,
            speed: 1.0,
        }
    }
}

/// One event to replay.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayEvent {
    Quote(Quote),
    Candle(Candle),
}

impl ReplayEvent {
    fn ts(&self) -> TimestampNs {
        match self {
            ReplayEvent::Quote(q) => q.ts_event,
            ReplayEvent::Candle(c) => c.ts_event,
        }
    }
}

fn input_err(path: &Path, line: Option<usize>, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Input {
        path: match line {
            Some(l) => format!("{}:{l}", path.display()),
            None => path.display().to_string(),
        },
        message: message.into(),
    }
}

/// Parses a Binance kline CSV. A header row (futures dumps) is skipped.
pub fn read_klines_csv(
    path: &Path,
    venue: Venue,
    symbol: &Symbol,
    now: TimestampNs,
) -> Result<Vec<Candle>> {
    let text = std::fs::read_to_string(path).map_err(|e| input_err(path, None, e.to_string()))?;
    let mut out = Vec::new();
    let mut interval: Option<Interval> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("open_time")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let bad = |m: String| input_err(path, Some(i + 1), m);
        if f.len() < 9 {
            return Err(bad(format!("expected 12 columns, found {}", f.len())));
        }
        let int = |k: usize| {
            f[k].trim()
                .parse::<i64>()
                .map_err(|e| bad(format!("column {}: {e}", k + 1)))
        };
        let num = |k: usize| {
            f[k].trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("column {} is not a number", k + 1)))
        };
        let (open_ms, close_ms) = (int(0)?, int(6)?);
        let iv = match interval {
            Some(iv) => iv,
            None => {
                let len_ns = (close_ms + 1 - open_ms) * NANOS_PER_MILLI;
                let iv = Interval::ALL
                    .into_iter()
                    .find(|iv| iv.nanos() == len_ns)
                    .ok_or_else(|| {
                        bad(format!(
                            "a {} ms candle is not a known interval",
                            close_ms + 1 - open_ms
                        ))
                    })?;
                interval = Some(iv);
                iv
            }
        };
        let c = Candle {
            venue,
            symbol: symbol.clone(),
            interval: iv,
            open_time: open_ms * NANOS_PER_MILLI,
            open: num(1)?,
            high: num(2)?,
            low: num(3)?,
            close: num(4)?,
            volume: num(5)?,
            notional: num(7)?,
            trade_count: u64::try_from(int(8)?).map_err(|_| bad("negative trade count".into()))?,
            closed: true,
            ts_event: close_ms * NANOS_PER_MILLI,
            ts_ingest: now,
        };
        if !(c.low <= c.open.min(c.close) && c.high >= c.open.max(c.close) && c.low > 0.0) {
            return Err(bad("row breaks OHLC invariants".into()));
        }
        out.push(c);
    }
    Ok(out)
}

/// Trade times of the dumps are milliseconds until 2025 and microseconds since; a value at
/// or above this is taken as microseconds (1e14 ms would be the year 5138).
const MICROS_FROM: i64 = 100_000_000_000_000;

/// Parses a Binance trade CSV into trade quotes. A header row (futures dumps) is skipped;
/// `is_buyer_maker` = true means the aggressor sold. Every quote is validated.
pub fn read_trades_csv(
    path: &Path,
    venue: Venue,
    symbol: &Symbol,
    now: TimestampNs,
) -> Result<Vec<Quote>> {
    let text = std::fs::read_to_string(path).map_err(|e| input_err(path, None, e.to_string()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("id,")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |m: String| input_err(path, Some(i + 1), m);
        if !(6..=7).contains(&f.len()) {
            return Err(bad(format!("expected 6 or 7 columns, found {}", f.len())));
        }
        let id = f[0]
            .parse::<u64>()
            .map_err(|e| bad(format!("column 1 (id): {e}")))?;
        let num = |k: usize, name: &str| {
            f[k].parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("column {} ({name}) is not a number", k + 1)))
        };
        let time = f[4]
            .parse::<i64>()
            .map_err(|e| bad(format!("column 5 (time): {e}")))?;
        let ts_event = if time >= MICROS_FROM {
            time.checked_mul(1_000)
        } else {
            time.checked_mul(NANOS_PER_MILLI)
        }
        .ok_or_else(|| bad(format!("time {time} is out of range")))?;
        let buyer_is_maker = match f[5].to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            other => return Err(bad(format!("column 6 (is_buyer_maker) is {other:?}"))),
        };
        let q = Quote {
            venue,
            symbol: symbol.clone(),
            kind: QuoteKind::Trade,
            price: num(1, "price")?,
            size: num(2, "qty")?,
            side: Some(if buyer_is_maker {
                Side::Sell
            } else {
                Side::Buy
            }),
            trade_id: Some(id),
            bid: None,
            ask: None,
            ts_event,
            ts_ingest: now,
        };
        q.validate().map_err(|e| bad(e.to_string()))?;
        out.push(q);
    }
    Ok(out)
}

/// Parses NDJSON of PriceStream quotes; every quote is validated.
pub fn read_quotes_ndjson(path: &Path) -> Result<Vec<Quote>> {
    let text = std::fs::read_to_string(path).map_err(|e| input_err(path, None, e.to_string()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: Quote = serde_json::from_str(line)
            .map_err(|e| input_err(path, Some(i + 1), format!("not a quote: {e}")))?;
        q.validate()
            .map_err(|e| input_err(path, Some(i + 1), e.to_string()))?;
        out.push(q);
    }
    Ok(out)
}

impl ReplayConfig {
    /// Reads and checks every input, in play order.
    pub fn load(&self, now: TimestampNs) -> Result<Vec<ReplayEvent>> {
        if self.paths.is_empty() {
            return Err(ConnectorError::Config("replay: no paths given".into()));
        }
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            return Err(ConnectorError::Config("replay: speed must be >= 0".into()));
        }
        let mut events = Vec::new();
        for p in &self.paths {
            match self.format {
                ReplayFormat::BinanceKlinesCsv => {
                    let symbol = Symbol::new(&self.symbol)
                        .map_err(|e| ConnectorError::Config(format!("replay: {e}")))?;
                    events.extend(
                        read_klines_csv(p, self.venue, &symbol, now)?
                            .into_iter()
                            .map(ReplayEvent::Candle),
                    );
                }
                ReplayFormat::BinanceTradesCsv => {
                    let symbol = Symbol::new(&self.symbol)
                        .map_err(|e| ConnectorError::Config(format!("replay: {e}")))?;
                    events.extend(
                        read_trades_csv(p, self.venue, &symbol, now)?
                            .into_iter()
                            .map(ReplayEvent::Quote),
                    );
                }
                ReplayFormat::QuotesNdjson => {
                    events.extend(read_quotes_ndjson(p)?.into_iter().map(ReplayEvent::Quote))
                }
                ReplayFormat::LakeParquet => {
                    let mut q = Lake::new(p)
                        .read_quotes()
                        .map_err(|e| input_err(p, None, e.to_string()))?;
                    q.sort_by_key(|q| q.ts_event);
                    events.extend(q.into_iter().map(ReplayEvent::Quote));
                }
            }
        }
        Ok(events)
    }

    /// Plays the inputs until done or cancelled; returns the events sent. Quotes get a
    /// fresh `ts_ingest`; their event times are kept.
    pub async fn run(
        &self,
        publisher: Arc<dyn QuotePublisher>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
    ) -> Result<u64> {
        let events = self.load(clock.now_ns())?;
        let Some(first) = events.first().map(ReplayEvent::ts) else {
            return Ok(0);
        };
        let started = Instant::now();
        let mut sent = 0u64;
        for ev in events {
            if self.speed > 0.0 {
                let due =
                    Duration::from_secs_f64(((ev.ts() - first).max(0) as f64 / 1e9) / self.speed);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            } else if cancel.is_cancelled() {
                break;
            }
            match ev {
                ReplayEvent::Quote(mut q) => {
                    q.ts_ingest = clock.now_ns();
                    publisher
                        .publish(vec![q])
                        .await
                        .map_err(|e| ConnectorError::Publish(e.to_string()))?;
                    metrics::counter!(m::QUOTES_PUBLISHED, "connector" => CONNECTOR).increment(1);
                }
                ReplayEvent::Candle(c) => {
                    store.upsert_bars(&[candle_to_bar(&c)]).await?;
                    metrics::counter!(m::CANDLES_WRITTEN, "venue" => c.venue.as_str(), "origin" => "replay")
                        .increment(1);
                }
            }
            sent += 1;
        }
        Ok(sent)
    }
}
