//! The events that flow through PriceStream. Every event carries `ts_event` (exchange
//! time) and `ts_ingest` (PriceStream's time), UTC nanoseconds.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SchemaError};
use crate::market::{Interval, Symbol, Venue};
use crate::time::{TimestampNs, NANOS_PER_SEC};

/// What a quote reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuoteKind {
    /// An executed trade: `price` and `size` are the trade's.
    Trade,
    /// A ticker/price update: `price` is the last price, `size` may be 0.
    Ticker,
}

/// Aggressor side of a trade, when the venue says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

/// A raw price observation from a venue: the payload of topic `quotes.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub venue: Venue,
    pub symbol: Symbol,
    pub kind: QuoteKind,
    pub price: f64,
    pub size: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<f64>,
    pub ts_event: TimestampNs,
    pub ts_ingest: TimestampNs,
}

/// How far in the future (relative to `ts_ingest`) an exchange timestamp may be before
/// the quote is rejected as bad data.
pub const MAX_FUTURE_SKEW_NS: i64 = 5 * 60 * NANOS_PER_SEC;

fn positive(field: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(SchemaError::Invalid {
            field,
            message: format!("must be finite and > 0, got {v}"),
        })
    }
}

impl Quote {
    /// Checks the invariants a quote must hold before it may reach a window.
    pub fn validate(&self) -> Result<()> {
        positive("price", self.price)?;
        if !(self.size.is_finite() && self.size >= 0.0) {
            return Err(SchemaError::Invalid {
                field: "size",
                message: format!("must be finite and >= 0, got {}", self.size),
            });
        }
        if let Some(b) = self.bid {
            positive("bid", b)?;
        }
        if let Some(a) = self.ask {
            positive("ask", a)?;
        }
        if self.ts_event <= 0 {
            return Err(SchemaError::Invalid {
                field: "ts_event",
                message: "must be a positive number of nanoseconds".into(),
            });
        }
        if self.ts_event > self.ts_ingest.saturating_add(MAX_FUTURE_SKEW_NS) {
            return Err(SchemaError::Invalid {
                field: "ts_event",
                message: format!(
                    "{} ns ahead of ingest time, more than the allowed {} ns",
                    self.ts_event - self.ts_ingest,
                    MAX_FUTURE_SKEW_NS
                ),
            });
        }
        Ok(())
    }
}

/// A candle as published by a venue (e.g. Binance klines), before it becomes a [`Bar`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub venue: Venue,
    pub symbol: Symbol,
    pub interval: Interval,
    pub open_time: TimestampNs,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub notional: f64,
    pub trade_count: u64,
    /// Whether the venue considers the candle final.
    pub closed: bool,
    pub ts_event: TimestampNs,
    pub ts_ingest: TimestampNs,
}

/// An event-time OHLCV bar: the payload of topic `bars.v1`. The natural key is
/// `(venue, symbol, interval, bucket_start)`; a higher `revision` replaces a lower one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub venue: Venue,
    pub symbol: Symbol,
    pub interval: Interval,
    /// Inclusive start of the bucket.
    pub bucket_start: TimestampNs,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Sum of traded size.
    pub volume: f64,
    /// Sum of price × size (quote-asset volume); `vwap = notional / volume`.
    pub notional: f64,
    pub vwap: f64,
    pub trade_count: u64,
    /// 0 for the first emission, +1 for each revision by late data.
    pub revision: u32,
    /// Event time of the latest quote folded in. Earlier than `bucket_start` only for a
    /// gap-filled bar (see [`Bar::is_filled`]), which carries an earlier bar's close.
    pub ts_event: TimestampNs,
    /// Ingest time of the latest-ingested quote folded in.
    pub ts_ingest: TimestampNs,
}

impl Bar {
    /// Exclusive end of the bucket.
    pub fn bucket_end(&self) -> TimestampNs {
        self.bucket_start + self.interval.nanos()
    }

    /// A gap-filled bar: no quote fell in its bucket, so it carries the close (and event
    /// time) of the series' previous bar, with zero volume and no trades. Every real bar
    /// has a quote inside its bucket, so `ts_event >= bucket_start`.
    pub fn is_filled(&self) -> bool {
        self.ts_event < self.bucket_start
    }

    /// The gap-filled bar of `interval` at `bucket_start` that carries `prev`'s close.
    pub fn filled_after(prev: &Bar, interval: Interval, bucket_start: TimestampNs) -> Bar {
        Bar {
            venue: prev.venue,
            symbol: prev.symbol.clone(),
            interval,
            bucket_start,
            open: prev.close,
            high: prev.close,
            low: prev.close,
            close: prev.close,
            volume: 0.0,
            notional: 0.0,
            vwap: prev.close,
            trade_count: 0,
            revision: 0,
            ts_event: prev.ts_event.min(bucket_start - 1),
            ts_ingest: prev.ts_ingest,
        }
    }
}

/// The signal kinds PriceStream computes (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    GoldenCross,
    DeathCross,
    MeanReversionHigh,
    MeanReversionLow,
    /// The z-score came back inside the band after a breach.
    BandReturn,
    RsiOverbought,
    RsiOversold,
    SeasonalDeviation,
}

impl SignalKind {
    pub const ALL: [SignalKind; 8] = [
        SignalKind::GoldenCross,
        SignalKind::DeathCross,
        SignalKind::MeanReversionHigh,
        SignalKind::MeanReversionLow,
        SignalKind::BandReturn,
        SignalKind::RsiOverbought,
        SignalKind::RsiOversold,
        SignalKind::SeasonalDeviation,
    ];

    /// The wire name (as in JSON, the lake and the stores).
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::GoldenCross => "golden_cross",
            SignalKind::DeathCross => "death_cross",
            SignalKind::MeanReversionHigh => "mean_reversion_high",
            SignalKind::MeanReversionLow => "mean_reversion_low",
            SignalKind::BandReturn => "band_return",
            SignalKind::RsiOverbought => "rsi_overbought",
            SignalKind::RsiOversold => "rsi_oversold",
            SignalKind::SeasonalDeviation => "seasonal_deviation",
        }
    }
}

impl std::str::FromStr for SignalKind {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self> {
        SignalKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| SchemaError::Invalid {
                field: "kind",
                message: format!("unknown signal kind {s:?}"),
            })
    }
}

/// A signal computed from bars: the payload of topic `signals.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub venue: Venue,
    pub symbol: Symbol,
    pub interval: Interval,
    pub kind: SignalKind,
    /// Start of the bar that produced the signal.
    pub bucket_start: TimestampNs,
    /// The indicator's value (e.g. the z-score, the RSI, the fast−slow spread).
    pub value: f64,
    pub ts_event: TimestampNs,
    pub ts_ingest: TimestampNs,
}

/// A fired alert: the payload of topic `alerts.v1`. Natural key `(alert_id, ts_event)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The id of the rule that fired.
    pub alert_id: String,
    /// The API key that owns the rule (routing; never a secret).
    pub owner: String,
    pub venue: Venue,
    pub symbol: Symbol,
    /// Human-readable condition, e.g. `price above 65000`.
    pub condition: String,
    /// The last price of the symbol when the alert fired.
    pub price: f64,
    /// The value that crossed the rule's threshold when it is not the price: the percent
    /// move, or the signal's indicator value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Event time of the quote or signal that triggered the alert.
    pub ts_event: TimestampNs,
    pub ts_ingest: TimestampNs,
}

/// Lifecycle of an ingestion run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }
}

/// One ingestion run of a connector (a poll, a backfill page range, a WebSocket session).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestionRun {
    pub id: String,
    pub connector: String,
    pub status: RunStatus,
    pub started_at: TimestampNs,
    #[serde(default)]
    pub finished_at: Option<TimestampNs>,
    pub quotes: u64,
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(price: f64) -> Quote {
        Quote {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            kind: QuoteKind::Trade,
            price,
            size: 1.0,
            side: None,
            trade_id: None,
            bid: None,
            ask: None,
            ts_event: 1_000,
            ts_ingest: 2_000,
        }
    }

    #[test]
    fn signal_kind_names_are_the_wire_names() {
        for k in SignalKind::ALL {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
            assert_eq!(k.as_str().parse::<SignalKind>().unwrap(), k);
        }
        assert!("nope".parse::<SignalKind>().is_err());
    }

    #[test]
    fn validation_rejects_bad_prices_and_times() {
        assert!(quote(1.0).validate().is_ok());
        for p in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(quote(p).validate().unwrap_err().reason(), "invalid_price");
        }
        let mut q = quote(1.0);
        q.ts_event = q.ts_ingest + MAX_FUTURE_SKEW_NS + 1;
        assert_eq!(q.validate().unwrap_err().reason(), "bad_timestamp");
        q.ts_event = 0;
        assert_eq!(q.validate().unwrap_err().reason(), "bad_timestamp");
    }
}
