//! Connectors: sources of quotes. Each publishes canonical [`Quote`]s to the bus.
//!
//! [`Quote`]: pricestream_schemas::Quote

pub mod error;
pub mod metrics;
pub mod rng;
pub mod synthetic;

pub use error::{ConnectorError, Result};
