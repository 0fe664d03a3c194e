//! Connector errors.

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid connector configuration: {0}")]
    Config(String),
    #[error("publishing quotes failed: {0}")]
    Publish(String),
}

impl ConnectorError {
    /// The one place that decides whether a failure is worth retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectorError::Publish(_))
    }
}

pub type Result<T> = std::result::Result<T, ConnectorError>;
