//! Errors for decoding and validating event payloads.

/// Why a payload was rejected. Every variant maps to a stable `reason` string used in
/// dead-letter headers and metrics labels (a bounded set).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("payload is not valid JSON for this topic: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported schema version {0} (this build reads version {1})")]
    Version(u32, u32),
    #[error("invalid symbol {0:?}: expected BASE-QUOTE in upper case, e.g. BTC-USDT")]
    Symbol(String),
    #[error("invalid field {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("arrow conversion failed: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl SchemaError {
    /// A short, bounded reason code for metrics labels and DLQ headers.
    pub fn reason(&self) -> &'static str {
        match self {
            SchemaError::Json(e) if e.is_data() => "schema",
            // JSON cannot spell infinity: a number too large for f64 is the one way a
            // non-finite price, size, bid or ask arrives (every other number is an
            // integer, which fails as a type error instead)
            SchemaError::Json(e)
                if e.is_syntax() && e.to_string().starts_with("number out of range") =>
            {
                "invalid_price"
            }
            SchemaError::Json(_) => "malformed",
            SchemaError::Version(..) => "unsupported_version",
            SchemaError::Symbol(_) => "schema",
            SchemaError::Invalid { field, .. } => match *field {
                "price" | "size" | "bid" | "ask" => "invalid_price",
                "ts_event" => "bad_timestamp",
                _ => "schema",
            },
            SchemaError::Arrow(_) => "schema",
        }
    }
}

pub type Result<T> = std::result::Result<T, SchemaError>;

#[cfg(test)]
mod tests {
    use crate::codec::decode_quote;

    fn reason(payload: &str) -> &'static str {
        decode_quote(payload.as_bytes()).unwrap_err().reason()
    }

    #[test]
    fn every_rejection_has_its_reason() {
        let q = |price: &str, ts: &str| {
            format!(
                r#"{{"v":1,"venue":"binance","symbol":"BTC-USDT","kind":"trade","price":{price},"size":1.0,"ts_event":{ts},"ts_ingest":1700000000000000000}}"#
            )
        };
        assert_eq!(reason(&q("1e999", "1700000000000000000")), "invalid_price");
        assert_eq!(reason(&q("-1e999", "1700000000000000000")), "invalid_price");
        assert_eq!(reason(&q("-5", "1700000000000000000")), "invalid_price");
        assert_eq!(reason(&q("5", "1800000000000000000")), "bad_timestamp");
        assert_eq!(reason(&q("5", "18446744073709551616")), "schema");
        assert_eq!(reason(&q("5", "1700000000000000000")[..40]), "malformed");
        assert_eq!(reason("{not json"), "malformed");
        assert_eq!(reason(r#"{"v":1,"venue":"binance"}"#), "schema");
        assert_eq!(
            reason(&q("5", "1700000000000000000").replace("BTC-USDT", "btcusdt")),
            "schema"
        );
        assert_eq!(
            reason(&q("5", "1700000000000000000").replace("\"v\":1", "\"v\":2")),
            "unsupported_version"
        );
    }
}
