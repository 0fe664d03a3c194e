//! What the connectors keep about history: the completeness ledger per
//! (venue, symbol, interval), the candles a venue does not have, and backfill jobs.
//! One SQL text serves both dialects (`$n` placeholders work in SQLite and PostgreSQL).

use async_trait::async_trait;
use pricestream_schemas::{Interval, SchemaError, Symbol, TimestampNs, Venue};
use serde::Serialize;
use sqlx::Row;

use crate::Result;

/// Completeness of one series: every bucket in `[tracked_from, verified_to)` is stored as a
/// bar or recorded as absent at the venue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEntry {
    pub venue: Venue,
    pub symbol: Symbol,
    pub interval: Interval,
    pub tracked_from: TimestampNs,
    pub verified_to: TimestampNs,
    pub updated_at: TimestampNs,
}

/// Lifecycle of a backfill job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackfillState {
    Queued,
    Running,
    Completed,
    Failed,
}

impl BackfillState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillState::Queued => "queued",
            BackfillState::Running => "running",
            BackfillState::Completed => "completed",
            BackfillState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "queued" => Ok(BackfillState::Queued),
            "running" => Ok(BackfillState::Running),
            "completed" => Ok(BackfillState::Completed),
            "failed" => Ok(BackfillState::Failed),
            _ => Err(SchemaError::Invalid {
                field: "state",
                message: format!("unknown stored value {s:?}"),
            }
            .into()),
        }
    }
}

/// A backfill job: the venue's candles over `[from, to)` written as bars. `cursor` is the
/// start of the first bucket not yet fetched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackfillJob {
    pub id: String,
    pub venue: Venue,
    pub symbol: Symbol,
    pub interval: Interval,
    pub from: TimestampNs,
    pub to: TimestampNs,
    pub state: BackfillState,
    pub cursor: TimestampNs,
    /// Candles written.
    pub candles: u64,
    /// Buckets the venue has no candle for.
    pub absent: u64,
    pub error: Option<String>,
    pub created_at: TimestampNs,
    pub updated_at: TimestampNs,
}

impl BackfillJob {
    /// Share of the range done, 0–100.
    pub fn progress_pct(&self) -> f64 {
        if self.state == BackfillState::Completed {
            return 100.0;
        }
        let span = (self.to - self.from).max(1) as f64;
        (((self.cursor - self.from).max(0) as f64 / span) * 100.0).clamp(0.0, 100.0)
    }
}

/// The connectors' persistent state. Both stores implement it; [`crate::Store`] requires it.
#[async_trait]
pub trait ConnectorState: Send + Sync {
    async fn ledger(
        &self,
        venue: Venue,
        symbol: &Symbol,
        interval: Interval,
    ) -> Result<Option<LedgerEntry>>;
    async fn put_ledger(&self, entry: &LedgerEntry) -> Result<()>;
    /// Records buckets the venue has no candle for (idempotent).
    async fn record_absent_candles(
        &self,
        venue: Venue,
        symbol: &Symbol,
        interval: Interval,
        buckets: &[TimestampNs],
        at: TimestampNs,
    ) -> Result<()>;
    /// Absent buckets in `[from, to)`, ascending.
    async fn absent_candles(
        &self,
        venue: Venue,
        symbol: &Symbol,
        interval: Interval,
        from: TimestampNs,
        to: TimestampNs,
    ) -> Result<Vec<TimestampNs>>;
    async fn upsert_backfill(&self, job: &BackfillJob) -> Result<()>;
    async fn backfill(&self, id: &str) -> Result<Option<BackfillJob>>;
    /// Takes the oldest queued job of `venues` and marks it running; two workers never
    /// take the same job.
    async fn claim_backfill(
        &self,
        venues: &[Venue],
        at: TimestampNs,
    ) -> Result<Option<BackfillJob>>;
}

fn parse_interval(s: &str) -> Result<Interval> {
    Ok(s.parse()?)
}

macro_rules! impl_connector_state {
    ($store:ty, $row:ty) => {
        #[async_trait]
        impl ConnectorState for $store {
            async fn ledger(
                &self,
                venue: Venue,
                symbol: &Symbol,
                interval: Interval,
            ) -> Result<Option<LedgerEntry>> {
                let row = sqlx::query(
                    "SELECT tracked_from, verified_to, updated_at FROM candle_ledger
                     WHERE venue = $1 AND symbol = $2 AND interval = $3",
                )
                .bind(venue.as_str())
                .bind(symbol.as_str())
                .bind(interval.as_str())
                .fetch_optional(self.pool())
                .await?;
                row.map(|r: $row| {
                    Ok(LedgerEntry {
                        venue,
                        symbol: symbol.clone(),
                        interval,
                        tracked_from: r.try_get("tracked_from")?,
                        verified_to: r.try_get("verified_to")?,
                        updated_at: r.try_get("updated_at")?,
                    })
                })
                .transpose()
            }

            async fn put_ledger(&self, e: &LedgerEntry) -> Result<()> {
                sqlx::query(
                    "INSERT INTO candle_ledger
                        (venue, symbol, interval, tracked_from, verified_to, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (venue, symbol, interval) DO UPDATE SET
                        tracked_from = excluded.tracked_from,
                        verified_to = excluded.verified_to,
                        updated_at = excluded.updated_at",
                )
                .bind(e.venue.as_str())
                .bind(e.symbol.as_str())
                .bind(e.interval.as_str())
                .bind(e.tracked_from)
                .bind(e.verified_to)
                .bind(e.updated_at)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn record_absent_candles(
                &self,
                venue: Venue,
                symbol: &Symbol,
                interval: Interval,
                buckets: &[TimestampNs],
                at: TimestampNs,
            ) -> Result<()> {
                if buckets.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool().begin().await?;
                for b in buckets {
                    sqlx::query(
                        "INSERT INTO absent_candles
                            (venue, symbol, interval, bucket_start, recorded_at)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (venue, symbol, interval, bucket_start) DO NOTHING",
                    )
                    .bind(venue.as_str())
                    .bind(symbol.as_str())
                    .bind(interval.as_str())
                    .bind(*b)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn absent_candles(
                &self,
                venue: Venue,
                symbol: &Symbol,
                interval: Interval,
                from: TimestampNs,
                to: TimestampNs,
            ) -> Result<Vec<TimestampNs>> {
                let rows = sqlx::query(
                    "SELECT bucket_start FROM absent_candles
                     WHERE venue = $1 AND symbol = $2 AND interval = $3
                       AND bucket_start >= $4 AND bucket_start < $5
                     ORDER BY bucket_start",
                )
                .bind(venue.as_str())
                .bind(symbol.as_str())
                .bind(interval.as_str())
                .bind(from)
                .bind(to)
                .fetch_all(self.pool())
                .await?;
                rows.iter()
                    .map(|r: &$row| Ok(r.try_get("bucket_start")?))
                    .collect()
            }

            async fn upsert_backfill(&self, j: &BackfillJob) -> Result<()> {
                sqlx::query(
                    "INSERT INTO backfill_jobs (id, venue, symbol, interval, from_ts, to_ts, state,
                        cursor_ts, candles, absent, error, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     ON CONFLICT (id) DO UPDATE SET state = excluded.state,
                        cursor_ts = excluded.cursor_ts, candles = excluded.candles,
                        absent = excluded.absent, error = excluded.error,
                        updated_at = excluded.updated_at",
                )
                .bind(&j.id)
                .bind(j.venue.as_str())
                .bind(j.symbol.as_str())
                .bind(j.interval.as_str())
                .bind(j.from)
                .bind(j.to)
                .bind(j.state.as_str())
                .bind(j.cursor)
                .bind(j.candles as i64)
                .bind(j.absent as i64)
                .bind(&j.error)
                .bind(j.created_at)
                .bind(j.updated_at)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn claim_backfill(
                &self,
                venues: &[Venue],
                at: TimestampNs,
            ) -> Result<Option<BackfillJob>> {
                for v in venues {
                    // a lost race moves on to the next queued job
                    for _ in 0..8 {
                        let id: Option<String> = sqlx::query_scalar(
                            "SELECT id FROM backfill_jobs WHERE state = 'queued' AND venue = $1
                             ORDER BY created_at, id LIMIT 1",
                        )
                        .bind(v.as_str())
                        .fetch_optional(self.pool())
                        .await?;
                        let Some(id) = id else { break };
                        let taken = sqlx::query(
                            "UPDATE backfill_jobs SET state = 'running', updated_at = $2
                             WHERE id = $1 AND state = 'queued'",
                        )
                        .bind(&id)
                        .bind(at)
                        .execute(self.pool())
                        .await?
                        .rows_affected();
                        if taken == 1 {
                            return self.backfill(&id).await;
                        }
                    }
                }
                Ok(None)
            }

            async fn backfill(&self, id: &str) -> Result<Option<BackfillJob>> {
                let row = sqlx::query("SELECT * FROM backfill_jobs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?;
                row.map(|r: $row| {
                    Ok(BackfillJob {
                        id: r.try_get("id")?,
                        venue: r.try_get::<String, _>("venue")?.parse()?,
                        symbol: Symbol::new(&r.try_get::<String, _>("symbol")?)?,
                        interval: parse_interval(&r.try_get::<String, _>("interval")?)?,
                        from: r.try_get("from_ts")?,
                        to: r.try_get("to_ts")?,
                        state: BackfillState::parse(&r.try_get::<String, _>("state")?)?,
                        cursor: r.try_get("cursor_ts")?,
                        candles: r.try_get::<i64, _>("candles")?.max(0) as u64,
                        absent: r.try_get::<i64, _>("absent")?.max(0) as u64,
                        error: r.try_get("error")?,
                        created_at: r.try_get("created_at")?,
                        updated_at: r.try_get("updated_at")?,
                    })
                })
                .transpose()
            }
        }
    };
}

impl_connector_state!(crate::sqlite::SqliteStore, sqlx::sqlite::SqliteRow);
impl_connector_state!(crate::postgres::PgStore, sqlx::postgres::PgRow);
