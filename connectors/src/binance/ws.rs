//! Binance live streams: one combined-stream connection (`<ws_url>/stream`, SUBSCRIBE
//! message) for every configured symbol and stream kind, run by the shared session loop.

use std::sync::Arc;
use std::time::Duration;

use pricestream_bus::QuotePublisher;
use pricestream_schemas::{Clock, TimestampNs};
use pricestream_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::{BinanceConfig, StreamKind};
use super::parse::{self, WsEvent};
use crate::candles::CandleRollups;
use crate::error::Result;
use crate::http::Backoff;
use crate::runs::RunRecorder;
use crate::symbols::SymbolMap;
use crate::ws::{Feed, FeedEvent, LiveFeed, WsSettings};

pub const CONNECTOR: &str = "binance_ws";

pub struct BinanceLive {
    pub cfg: BinanceConfig,
    pub symbols: SymbolMap,
    pub publisher: Arc<dyn QuotePublisher>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub recorder: RunRecorder,
    /// Told after every reconnect, so the gaps of the outage are healed.
    pub on_reconnect: Option<Arc<Notify>>,
    /// Coarser bars of the closed `kline_1m` candles written (see [`CandleRollups`]).
    pub rollups: Option<Arc<CandleRollups>>,
}

struct BinanceFeed {
    cfg: BinanceConfig,
    symbols: SymbolMap,
}

impl Feed for BinanceFeed {
    fn venue(&self) -> &'static str {
        "binance"
    }
    fn connector(&self) -> &'static str {
        CONNECTOR
    }
    fn url(&self) -> String {
        format!("{}/stream", self.cfg.ws_url.trim_end_matches('/'))
    }
    fn subscribe(&self) -> Vec<String> {
        vec![serde_json::json!({
            "method": "SUBSCRIBE",
            "params": stream_names(&self.cfg, &self.symbols),
            "id": 1,
        })
        .to_string()]
    }
    fn parse(&self, text: &str, now: TimestampNs) -> Result<FeedEvent> {
        Ok(match parse::ws_message(text, &self.symbols, now)? {
            WsEvent::Trade(q) => FeedEvent::Quote(q),
            WsEvent::Candle(c) => FeedEvent::Candle(c),
            WsEvent::Ignored => FeedEvent::Ignored,
        })
    }
    fn writes_candles(&self) -> bool {
        self.cfg.streams.contains(&StreamKind::Kline1m)
    }
}

/// The stream names to subscribe to, e.g. `btcusdt@trade`.
pub fn stream_names(cfg: &BinanceConfig, symbols: &SymbolMap) -> Vec<String> {
    let mut v = Vec::new();
    for s in symbols.venue_symbols() {
        for k in &cfg.streams {
            v.push(format!("{}@{}", s.to_ascii_lowercase(), k.suffix()));
        }
    }
    v
}

impl BinanceLive {
    /// Runs sessions until cancelled; returns the records received.
    pub async fn run(self, cancel: CancellationToken) -> Result<u64> {
        let settings = WsSettings {
            heartbeat_timeout: Duration::from_secs(self.cfg.heartbeat_timeout_secs.max(1)),
            connect_timeout: Duration::from_millis(self.cfg.connect_timeout_ms.max(1)),
            reconnect: Backoff::new(
                Duration::from_millis(self.cfg.reconnect_initial_delay_ms),
                Duration::from_millis(self.cfg.reconnect_max_delay_ms),
            ),
        };
        LiveFeed {
            feed: BinanceFeed {
                cfg: self.cfg,
                symbols: self.symbols,
            },
            settings,
            publisher: self.publisher,
            store: self.store,
            clock: self.clock,
            recorder: self.recorder,
            on_reconnect: self.on_reconnect,
            candle_rollups: self.rollups,
        }
        .run(cancel)
        .await
    }
}
