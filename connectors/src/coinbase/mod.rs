//! Coinbase Exchange: live `matches` (trades) and `ticker` channels over the WebSocket
//! feed, run by the shared session loop.

pub mod config;
pub mod parse;

use std::sync::Arc;
use std::time::Duration;

use pricestream_bus::QuotePublisher;
use pricestream_schemas::{Clock, TimestampNs};
use pricestream_store::Store;
use tokio_util::sync::CancellationToken;

pub use config::{Channel, CoinbaseConfig};

use crate::error::{ConnectorError, Result};
use crate::http::Backoff;
use crate::runs::RunRecorder;
use crate::symbols::SymbolMap;
use crate::ws::{Feed, FeedEvent, LiveFeed, WsSettings};

pub const CONNECTOR: &str = "coinbase_ws";

struct CoinbaseFeed {
    cfg: CoinbaseConfig,
    symbols: SymbolMap,
}

impl Feed for CoinbaseFeed {
    fn venue(&self) -> &'static str {
        "coinbase"
    }
    fn connector(&self) -> &'static str {
        CONNECTOR
    }
    fn url(&self) -> String {
        self.cfg.ws_url.clone()
    }
    fn subscribe(&self) -> Vec<String> {
        let channels: Vec<&str> = self.cfg.channels.iter().map(|c| c.name()).collect();
        vec![serde_json::json!({
            "type": "subscribe",
            "product_ids": self.symbols.venue_symbols(),
            "channels": channels,
        })
        .to_string()]
    }
    fn parse(&self, text: &str, now: TimestampNs) -> Result<FeedEvent> {
        parse::message(text, &self.symbols, now)
    }
}

impl CoinbaseConfig {
    /// Runs the live feed until cancelled; returns the quotes published.
    /// The symbol table, once the settings are known to be usable.
    pub fn check(&self) -> Result<SymbolMap> {
        let symbols = SymbolMap::new("coinbase", &self.symbols)?;
        if symbols.is_empty() || self.channels.is_empty() {
            return Err(ConnectorError::Config(
                "coinbase: at least one symbol and one channel are needed".into(),
            ));
        }
        Ok(symbols)
    }

    pub async fn run(
        &self,
        publisher: Arc<dyn QuotePublisher>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        recorder: RunRecorder,
        cancel: CancellationToken,
    ) -> Result<u64> {
        let symbols = self.check()?;
        LiveFeed {
            feed: CoinbaseFeed {
                cfg: self.clone(),
                symbols,
            },
            settings: WsSettings {
                heartbeat_timeout: Duration::from_secs(self.heartbeat_timeout_secs.max(1)),
                connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
                reconnect: Backoff::new(
                    Duration::from_millis(self.reconnect_initial_delay_ms),
                    Duration::from_millis(self.reconnect_max_delay_ms),
                ),
            },
            publisher,
            store,
            clock,
            recorder,
            on_reconnect: None,
            candle_rollups: None,
        }
        .run(cancel)
        .await
    }
}
