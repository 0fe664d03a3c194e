//! Connector errors, and the one place that decides which are worth retrying.

use std::time::Duration;

/// What went wrong talking to a venue, as a bounded label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Timeout,
    Connect,
    /// 429: too many requests.
    RateLimited,
    /// 418: the venue banned this address for a while.
    Banned,
    /// 5xx.
    Server,
    /// Any other 4xx.
    Client,
    /// An HTML page where JSON was expected (a proxy or maintenance page).
    Html,
    /// JSON cut short.
    Truncated,
    /// Not the JSON the venue documents.
    Decode,
    /// The venue's circuit breaker is open: no call was made.
    BreakerOpen,
    WebSocket,
    /// No message (not even a ping) within the heartbeat timeout.
    Heartbeat,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Banned => "banned",
            ErrorKind::Server => "server",
            ErrorKind::Client => "client",
            ErrorKind::Html => "html",
            ErrorKind::Truncated => "truncated",
            ErrorKind::Decode => "decode",
            ErrorKind::BreakerOpen => "breaker_open",
            ErrorKind::WebSocket => "websocket",
            ErrorKind::Heartbeat => "heartbeat",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid connector configuration: {0}")]
    Config(String),
    #[error("publishing quotes failed: {0}")]
    Publish(String),
    #[error("{venue}: {kind} error: {message}", kind = kind.as_str())]
    Venue {
        venue: &'static str,
        kind: ErrorKind,
        message: String,
        /// How long the venue asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    #[error("store: {0}")]
    Store(#[from] pricestream_store::StoreError),
    #[error("reading {path}: {message}")]
    Input { path: String, message: String },
}

impl ConnectorError {
    pub fn venue(venue: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError::Venue {
            venue,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The kind of a venue error, if this is one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ConnectorError::Venue { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The one place that decides whether a failure is worth retrying.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectorError::Publish(_) => true,
            ConnectorError::Venue { kind, .. } => !matches!(kind, ErrorKind::Client),
            ConnectorError::Config(_) | ConnectorError::Store(_) | ConnectorError::Input { .. } => {
                false
            }
        }
    }

    /// Whether the failure says the venue is unhealthy (counts towards opening its breaker).
    /// Being told to slow down, or refusing a bad request, does not.
    pub fn trips_breaker(&self) -> bool {
        matches!(
            self.kind(),
            Some(
                ErrorKind::Timeout
                    | ErrorKind::Connect
                    | ErrorKind::Server
                    | ErrorKind::Html
                    | ErrorKind::Truncated
                    | ErrorKind::Decode
                    | ErrorKind::Banned
            )
        )
    }
}

pub type Result<T> = std::result::Result<T, ConnectorError>;
