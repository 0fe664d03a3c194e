//! Transport errors.

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the bus is closed")]
    Closed,
    #[error("partition {0} was already assigned to another worker")]
    PartitionTaken(u32),
    #[error("bus state lock poisoned by a panicking thread")]
    Poisoned,
    #[error("transport failed: {0}")]
    Transport(String),
}

impl BusError {
    /// Whether retrying the same call can succeed.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

pub type Result<T> = std::result::Result<T, BusError>;
