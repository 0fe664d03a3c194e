//! PriceStream's data shapes: the single source of truth for events, the wire codec,
//! JSON Schemas for every topic payload and Arrow schemas for the lake.

pub mod arrow;
pub mod codec;
pub mod error;
pub mod events;
pub mod ids;
pub mod market;
pub mod time;

pub use error::{Result, SchemaError};
pub use events::{
    AlertEvent, Bar, Candle, IngestionRun, Quote, QuoteKind, RunStatus, Side, Signal, SignalKind,
};
pub use market::{Interval, Symbol, Venue};
pub use time::{Clock, SystemClock, TimestampNs, NANOS_PER_MILLI, NANOS_PER_SEC};
