//! Connectors: sources of quotes. Each publishes canonical [`Quote`]s to the bus through
//! [`pricestream_bus::QuotePublisher`], so they run unchanged on any transport.
//!
//! [`Quote`]: pricestream_schemas::Quote

pub mod backfill;
pub mod binance;
pub mod candles;
pub mod coinbase;
pub mod coingecko;
pub mod error;
pub mod heal;
pub mod http;
pub mod metrics;
pub mod replay;
pub mod rng;
pub mod runs;
pub mod supervisor;
pub mod symbols;
pub mod synthetic;
pub mod ws;

pub use error::{ConnectorError, ErrorKind, Result};
