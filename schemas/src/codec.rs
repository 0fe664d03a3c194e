//! The wire codec: JSON, one object per message, with a `"v"` schema-version field next to
//! the payload's own fields. The JSON Schema for each topic lives in `schemas/json/`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SchemaError};
use crate::events::{AlertEvent, Bar, Quote, Signal};

/// The wire version this build writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// Topic names of the v1 wire format.
pub mod topics {
    pub const QUOTES: &str = "quotes.v1";
    pub const BARS: &str = "bars.v1";
    pub const SIGNALS: &str = "signals.v1";
    pub const ALERTS: &str = "alerts.v1";
    pub const QUOTES_DLQ: &str = "quotes.dlq";
}

#[derive(Serialize)]
struct Out<'a, T> {
    v: u32,
    #[serde(flatten)]
    payload: &'a T,
}

#[derive(Deserialize)]
struct In<T> {
    v: u32,
    #[serde(flatten)]
    payload: T,
}

/// A payload type that has a topic and a JSON Schema.
pub trait WireEvent: Serialize + DeserializeOwned {
    const TOPIC: &'static str;
    /// The JSON Schema document for this topic (draft 2020-12).
    const JSON_SCHEMA: &'static str;
}

impl WireEvent for Quote {
    const TOPIC: &'static str = topics::QUOTES;
    const JSON_SCHEMA: &'static str = include_str!("../json/quotes.v1.schema.json");
}
impl WireEvent for Bar {
    const TOPIC: &'static str = topics::BARS;
    const JSON_SCHEMA: &'static str = include_str!("../json/bars.v1.schema.json");
}
impl WireEvent for Signal {
    const TOPIC: &'static str = topics::SIGNALS;
    const JSON_SCHEMA: &'static str = include_str!("../json/signals.v1.schema.json");
}
impl WireEvent for AlertEvent {
    const TOPIC: &'static str = topics::ALERTS;
    const JSON_SCHEMA: &'static str = include_str!("../json/alerts.v1.schema.json");
}

/// Encodes an event as a v1 wire message.
pub fn encode<T: WireEvent>(event: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail: no maps with non-string keys,
    // no foreign Serialize impls that error.
    serde_json::to_vec(&Out {
        v: WIRE_VERSION,
        payload: event,
    })
    .unwrap_or_default()
}

/// Decodes a v1 wire message; the version must match.
pub fn decode<T: WireEvent>(bytes: &[u8]) -> Result<T> {
    let msg: In<T> = serde_json::from_slice(bytes)?;
    if msg.v != WIRE_VERSION {
        return Err(SchemaError::Version(msg.v, WIRE_VERSION));
    }
    Ok(msg.payload)
}

/// Decodes and validates a quote (the pipeline's entry check).
pub fn decode_quote(bytes: &[u8]) -> Result<Quote> {
    let q: Quote = decode(bytes)?;
    q.validate()?;
    Ok(q)
}
