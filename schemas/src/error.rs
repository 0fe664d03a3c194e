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
