//! Binance: REST klines (backfill and gap healing) and live WebSocket combined streams.

pub mod client;
pub mod config;
pub mod parse;
pub mod ws;

use std::sync::Arc;

use pricestream_schemas::Clock;

pub use client::{BinanceRest, KLINES_PAGE};
pub use config::{BinanceConfig, StreamKind};
pub use ws::BinanceLive;

use crate::error::Result;
use crate::http::VenueHttp;
use crate::symbols::SymbolMap;

impl BinanceConfig {
    pub fn symbol_map(&self) -> Result<SymbolMap> {
        SymbolMap::new("binance", &self.symbols)
    }

    /// The REST client this configuration describes.
    pub fn rest(&self, clock: Arc<dyn Clock>) -> Result<BinanceRest> {
        // Binance counts weight per IP and UTC minute, across all of that IP's clients
        let http = VenueHttp::new("binance", &self.rest_url, &self.http)?
            .with_used_weight_header("x-mbx-used-weight-1m");
        Ok(BinanceRest::new(
            http,
            self.symbol_map()?,
            self.klines_weight,
            clock,
        ))
    }
}
