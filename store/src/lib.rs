//! Storage: the relational store (SQLite embedded, PostgreSQL in production) and the
//! Parquet lake. Writes are idempotent on natural keys, so replays converge.

use std::sync::Arc;

use async_trait::async_trait;
use pricestream_schemas::{Bar, IngestionRun, Interval, RunStatus, Symbol, TimestampNs, Venue};

pub mod error;
pub mod lake;
pub mod seasonality;
pub mod sqlite;

pub use error::{Result, StoreError};
pub use lake::Lake;

/// A message that could not be processed, kept with its reason (the embedded `quotes.dlq`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub topic: String,
    pub reason: String,
    pub error: String,
    pub payload: Vec<u8>,
    pub partition: u32,
    pub offset: u64,
    pub ts_ingest: TimestampNs,
}

/// A range query over bars: `from` inclusive, `to` exclusive, ascending by time.
#[derive(Debug, Clone, PartialEq)]
pub struct BarQuery {
    pub venue: Option<Venue>,
    pub symbol: Symbol,
    pub interval: Interval,
    pub from: TimestampNs,
    pub to: TimestampNs,
    pub limit: u32,
    /// Take the last `limit` rows of the range instead of the first (still returned in
    /// ascending order).
    pub tail: bool,
}

/// A symbol the store has bars for.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SymbolInfo {
    pub venue: Venue,
    pub symbol: Symbol,
    pub first_bucket: TimestampNs,
    pub last_bucket: TimestampNs,
    pub bars_1m: u64,
}

/// Filter for listing ingestion runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub connector: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
}

/// The relational store. Two real implementations (SQLite, PostgreSQL) share this trait.
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// Fails unless the schema is exactly at this build's version.
    async fn check_schema(&self) -> Result<()>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<()>;
    /// Inserts or replaces bars by natural key; a row is replaced only by an equal or
    /// higher revision, so a replayed older revision never wins.
    async fn upsert_bars(&self, bars: &[Bar]) -> Result<()>;
    async fn query_bars(&self, q: &BarQuery) -> Result<Vec<Bar>>;
    async fn symbols(&self) -> Result<Vec<SymbolInfo>>;
    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<()>;
    async fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>>;
    async fn upsert_run(&self, run: &IngestionRun) -> Result<()>;
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<IngestionRun>>;
}

/// Opens the store named by `url` (`sqlite://path` or `postgres://…`).
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::open(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::Url(url.to_string()))
    }
}
