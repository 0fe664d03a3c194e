//! Storage: the relational store (SQLite embedded, PostgreSQL in production) and the
//! Parquet lake. Writes are idempotent on natural keys, so replays converge.

use std::sync::Arc;

use async_trait::async_trait;
use pricestream_schemas::{
    Bar, IngestionRun, Interval, Quote, RunStatus, Signal, SignalKind, Symbol, TimestampNs, Venue,
};

pub mod alerts;
mod codes;
pub mod connector_state;
pub mod error;
pub mod lake;
pub mod options;
pub mod postgres;
mod postgres_alerts;
pub mod seasonality;
pub mod sqlite;
mod sqlite_alerts;

pub use alerts::AlertStore;
pub use connector_state::{BackfillJob, BackfillState, ConnectorState, LedgerEntry};
pub use error::{Result, StoreError};
pub use lake::Lake;
pub use options::{StoreOptions, TimescaleConfig, TimescaleMode};

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
    /// One run by id.
    pub id: Option<String>,
    pub connector: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
}

/// A range query over signals: `from` inclusive, `to` exclusive (on `bucket_start`),
/// ascending by time; `None` filters match everything.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalQuery {
    pub symbol: Option<Symbol>,
    pub interval: Option<Interval>,
    pub kind: Option<SignalKind>,
    pub from: TimestampNs,
    pub to: TimestampNs,
    pub limit: u32,
}

/// An API key as stored: the secret itself is never kept, only its SHA-256.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    /// Space-separated scopes, e.g. `read alerts:write`.
    pub scopes: String,
    pub tier: String,
    pub created_at: TimestampNs,
    pub revoked_at: Option<TimestampNs>,
}

/// The relational store. Two real implementations (SQLite, PostgreSQL) share this trait.
#[async_trait]
pub trait Store: ConnectorState + AlertStore + Send + Sync {
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
    /// Stores raw quotes. Idempotent on the natural key
    /// `(venue, symbol, kind, ts_event, trade_id)`: a quote already stored is left as it is.
    async fn insert_quotes(&self, quotes: &[Quote]) -> Result<()>;
    /// The latest quote (by event time) of every symbol, optionally of one venue, ordered by
    /// venue and symbol.
    async fn latest_quotes(&self, venue: Option<Venue>) -> Result<Vec<Quote>>;
    /// Inserts or replaces signals by natural key `(venue, symbol, interval, kind,
    /// bucket_start)`.
    async fn upsert_signals(&self, signals: &[Signal]) -> Result<()>;
    async fn query_signals(&self, q: &SignalQuery) -> Result<Vec<Signal>>;
    /// Stores a new API key.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// Marks a key revoked; false when no such active key exists.
    async fn revoke_api_key(&self, id: &str, at: TimestampNs) -> Result<bool>;
    /// The key with this secret hash, revoked or not.
    async fn find_api_key(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>>;

    /// Saves the replay rules of a consumer group's partitions, one row per (partition,
    /// next offset), before that offset is committed.
    async fn save_checkpoints(
        &self,
        group: &str,
        topic: &str,
        checkpoints: &[(i32, i64, String)],
        at: TimestampNs,
    ) -> Result<()>;
    /// Drops the rows of offsets below each partition's newly committed one.
    async fn prune_checkpoints(
        &self,
        group: &str,
        topic: &str,
        committed: &[(i32, i64)],
    ) -> Result<()>;
    /// The rules saved for exactly this committed offset of a partition.
    async fn load_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<String>>;
}

/// Opens the store named by `url` (`sqlite://path` or `postgres://…`) with default pool
/// settings and `max_connections`.
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    let opts = StoreOptions {
        max_connections,
        ..StoreOptions::default()
    };
    open_with(url, &opts).await
}

/// Opens the store named by `url` (`sqlite://path`, `postgres://…` or `postgresql://…`).
pub async fn open_with(url: &str, opts: &StoreOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::open(url, opts.max_connections).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url, opts).await?))
    } else {
        Err(StoreError::Url(url.to_string()))
    }
}
