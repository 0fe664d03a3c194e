//! The embedded store: one SQLite file (WAL), created on first use.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use std::collections::BTreeMap;

use pricestream_schemas::{Bar, IngestionRun, Quote, Signal, Symbol, Venue};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::codes;
use crate::{
    ApiKeyRecord, BarQuery, DeadLetter, Result, RunFilter, SignalQuery, Store, StoreError,
    SymbolInfo,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// Ticks when this process changes the alert rules.
    pub(crate) rules_changed: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Ticks when this process queues webhook deliveries.
    pub(crate) deliveries_queued: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Keeps the WAL checkpointer running (see [`checkpointer`]); it stops with the last
    /// clone of the store.
    _checkpointer: Option<std::sync::Arc<tokio::sync::oneshot::Sender<()>>>,
    /// This process's write transactions take turns here, in arrival order (see
    /// [`SqliteStore::begin_write`]).
    writes: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// How often the checkpointer copies the WAL's new pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Past this many WAL pages (256 MiB of 4 KiB pages) the checkpointer also makes writers
/// wait until the WAL starts over, so it cannot grow without bound under constant writes.
const WAL_RESTART_PAGES: i64 = 65_536;

/// Checkpoints the WAL in the background until `stop` resolves.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages: that
/// commit copies them into the database file and syncs both files. A minute's bars over
/// 1,000 symbols touch about that many pages, so nearly every bar round paid a checkpoint
/// (half of its time, measured in `benches/sqlite_store.rs`). The store's connections turn
/// the automatic checkpoint off and this task does the same work on a connection of its
/// own, outside every write.
async fn checkpointer(
    mut conn: sqlx::SqliteConnection,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use sqlx::Connection;
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let passive: std::result::Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut conn)
                .await;
        match passive {
            Ok((_, log, _)) if log > WAL_RESTART_PAGES => {
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                    .execute(&mut conn)
                    .await
                {
                    tracing::warn!(error = %e, wal_pages = log, "WAL checkpoint (restart) failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
    let _ = conn.close().await;
}

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            // Raw quotes land all over the quotes index: with SQLite's 2 MB default page
            // cache a transaction re-read its pages and spilled dirty ones mid-way. Pages
            // are taken only as used; statement journals stay in memory.
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = if in_memory {
            opts
        } else {
            // checkpoints are the checkpointer's (see `checkpointer`)
            opts.pragma("wal_autocheckpoint", "0")
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(opts.clone())
            .await?;
        let checkpointer = if in_memory {
            None
        } else {
            let conn = sqlx::ConnectOptions::connect(&opts).await?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(checkpointer(conn, rx));
            Some(std::sync::Arc::new(tx))
        };
        Ok(SqliteStore {
            pool,
            rules_changed: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            deliveries_queued: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            _checkpointer: checkpointer,
            writes: std::sync::Arc::default(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction once this process's earlier ones are done.
    ///
    /// SQLite has one writer. Two transactions that meet on its lock leave the loser in the
    /// busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries: a bar round
    /// that met a raw-quotes transaction of 8 ms could wait 20. Taking turns here hands the
    /// lock over the moment it is free. (Other processes on the same file still meet on
    /// SQLite's lock.)
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<(
        tokio::sync::MutexGuard<'_, ()>,
        sqlx::Transaction<'static, sqlx::Sqlite>,
    )> {
        let turn = self.writes.lock().await;
        let tx = self.pool.begin().await?;
        Ok((turn, tx))
    }
}

/// The newest migration this build carries.
fn expected_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

fn bar_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Bar> {
    Ok(Bar {
        venue: row.try_get::<String, _>("venue")?.parse()?,
        symbol: Symbol::new(&row.try_get::<String, _>("symbol")?)?,
        interval: row.try_get::<String, _>("interval")?.parse()?,
        bucket_start: row.try_get("bucket_start")?,
        open: row.try_get("open")?,
        high: row.try_get("high")?,
        low: row.try_get("low")?,
        close: row.try_get("close")?,
        volume: row.try_get("volume")?,
        notional: row.try_get("notional")?,
        vwap: row.try_get("vwap")?,
        trade_count: row.try_get::<i64, _>("trade_count")? as u64,
        revision: row.try_get::<i64, _>("revision")? as u32,
        ts_event: row.try_get("ts_event")?,
        ts_ingest: row.try_get("ts_ingest")?,
    })
}

fn quote_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Quote> {
    Ok(Quote {
        venue: row.try_get::<String, _>("venue")?.parse()?,
        symbol: Symbol::new(&row.try_get::<String, _>("symbol")?)?,
        kind: codes::parse_quote_kind(&row.try_get::<String, _>("kind")?)?,
        price: row.try_get("price")?,
        size: row.try_get("size")?,
        side: row
            .try_get::<Option<String>, _>("side")?
            .as_deref()
            .map(codes::parse_side)
            .transpose()?,
        trade_id: row
            .try_get::<Option<i64>, _>("trade_id")?
            .map(codes::trade_id_from_db),
        bid: row.try_get("bid")?,
        ask: row.try_get("ask")?,
        ts_event: row.try_get("ts_event_ns")?,
        ts_ingest: row.try_get("ts_ingest")?,
    })
}

const QUOTE_COLUMNS: usize = 12;
const QUOTE_TARGET_QUOTES: &str = "quotes (venue, symbol, kind, price, size, side, trade_id,
    bid, ask, ts_event, ts_event_ns, ts_ingest)";
const QUOTE_TARGET_LATEST: &str = "quotes_latest (venue, symbol, kind, price, size, side,
    trade_id, bid, ask, ts_event, ts_event_ns, ts_ingest)";

fn bind_quote<'q>(query: SqliteQuery<'q>, q: &'q Quote) -> SqliteQuery<'q> {
    query
        .bind(q.venue.as_str())
        .bind(q.symbol.as_str())
        .bind(codes::quote_kind(q.kind))
        .bind(q.price)
        .bind(q.size)
        .bind(q.side.map(codes::side))
        .bind(q.trade_id.map(codes::trade_id_to_db))
        .bind(q.bid)
        .bind(q.ask)
        .bind(q.ts_event)
        .bind(q.ts_event)
        .bind(q.ts_ingest)
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Rows per multi-row statement: a few fixed sizes, so the statement cache keeps every
/// statement prepared. One statement per row cost a round trip to SQLite's worker thread
/// per row (about 20k raw quotes/s); 256 rows per statement cost one per 256.
const CHUNKS: [usize; 3] = [256, 16, 1];

/// Writes `rows` with `INSERT INTO <target> VALUES (…), (…) <conflict>` statements of
/// [`CHUNKS`] rows, in order (SQLite applies a statement's rows one after the other, so a
/// later row of the same key sees the earlier one, as with one statement per row).
async fn insert_rows<T>(
    conn: &mut sqlx::SqliteConnection,
    target: &str,
    columns: usize,
    conflict: &str,
    rows: &[T],
    bind: impl for<'q> Fn(SqliteQuery<'q>, &'q T) -> SqliteQuery<'q>,
) -> Result<()> {
    let one = format!("({})", vec!["?"; columns].join(", "));
    let mut rest = rows;
    for n in CHUNKS {
        if rest.len() < n {
            continue;
        }
        let sql = format!(
            "INSERT INTO {target} VALUES {} {conflict}",
            vec![one.as_str(); n].join(", ")
        );
        while rest.len() >= n {
            let (chunk, more) = rest.split_at(n);
            let mut q = sqlx::query(&sql);
            for row in chunk {
                q = bind(q, row);
            }
            q.execute(&mut *conn).await?;
            rest = more;
        }
    }
    Ok(())
}

fn bind_bar<'q>(q: SqliteQuery<'q>, b: &'q Bar) -> SqliteQuery<'q> {
    q.bind(b.venue.as_str())
        .bind(b.symbol.as_str())
        .bind(b.interval.as_str())
        .bind(b.bucket_start)
        .bind(b.open)
        .bind(b.high)
        .bind(b.low)
        .bind(b.close)
        .bind(b.volume)
        .bind(b.notional)
        .bind(b.vwap)
        .bind(b.trade_count as i64)
        .bind(i64::from(b.revision))
        .bind(b.ts_event)
        .bind(b.ts_ingest)
}

fn bind_signal<'q>(q: SqliteQuery<'q>, s: &'q Signal) -> SqliteQuery<'q> {
    q.bind(s.venue.as_str())
        .bind(s.symbol.as_str())
        .bind(s.interval.as_str())
        .bind(codes::signal_kind(s.kind))
        .bind(s.bucket_start)
        .bind(s.value)
        .bind(s.ts_event)
        .bind(s.ts_ingest)
}

fn api_key_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<crate::ApiKeyRecord> {
    Ok(crate::ApiKeyRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        scopes: r.try_get("scopes")?,
        tier: r.try_get("tier")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn check_schema(&self) -> Result<()> {
        let expected = expected_version();
        let has_table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let found: Option<i64> = if has_table.is_some() {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.pool)
                .await?
        } else {
            None
        };
        match found {
            Some(v) if v == expected => Ok(()),
            Some(v) if v > expected => Err(StoreError::TooNew { found: v, expected }),
            other => Err(StoreError::Unmigrated {
                found: other,
                expected,
            }),
        }
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn upsert_bars(&self, bars: &[Bar]) -> Result<()> {
        if bars.is_empty() {
            return Ok(());
        }
        let (_turn, mut tx) = self.begin_write().await?;
        insert_rows(
            &mut tx,
            "bars (venue, symbol, interval, bucket_start, open, high, low, close, volume,
                notional, vwap, trade_count, revision, ts_event, ts_ingest)",
            15,
            "ON CONFLICT (venue, symbol, interval, bucket_start) DO UPDATE SET
                open = excluded.open, high = excluded.high, low = excluded.low,
                close = excluded.close, volume = excluded.volume,
                notional = excluded.notional, vwap = excluded.vwap,
                trade_count = excluded.trade_count, revision = excluded.revision,
                ts_event = excluded.ts_event, ts_ingest = excluded.ts_ingest
             WHERE excluded.revision >= bars.revision",
            bars,
            bind_bar,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn query_bars(&self, q: &BarQuery) -> Result<Vec<Bar>> {
        let sql = if q.tail {
            "SELECT * FROM bars
             WHERE symbol = ? AND interval = ? AND bucket_start >= ? AND bucket_start < ?
               AND (? IS NULL OR venue = ?)
             ORDER BY bucket_start DESC, venue DESC LIMIT ?"
        } else {
            "SELECT * FROM bars
             WHERE symbol = ? AND interval = ? AND bucket_start >= ? AND bucket_start < ?
               AND (? IS NULL OR venue = ?)
             ORDER BY bucket_start, venue LIMIT ?"
        };
        let rows = sqlx::query(sql)
            .bind(q.symbol.as_str())
            .bind(q.interval.as_str())
            .bind(q.from)
            .bind(q.to)
            .bind(q.venue.map(|v| v.as_str()))
            .bind(q.venue.map(|v| v.as_str()))
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?;
        let mut bars = rows.iter().map(bar_from_row).collect::<Result<Vec<_>>>()?;
        if q.tail {
            bars.reverse();
        }
        Ok(bars)
    }

    async fn symbols(&self) -> Result<Vec<SymbolInfo>> {
        let rows = sqlx::query(
            "SELECT venue, symbol, MIN(bucket_start) AS first, MAX(bucket_start) AS last,
                    COUNT(*) AS n
             FROM bars WHERE interval = '1m' GROUP BY venue, symbol ORDER BY symbol, venue",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SymbolInfo {
                    venue: r.try_get::<String, _>("venue")?.parse()?,
                    symbol: Symbol::new(&r.try_get::<String, _>("symbol")?)?,
                    first_bucket: r.try_get("first")?,
                    last_bucket: r.try_get("last")?,
                    bars_1m: r.try_get::<i64, _>("n")? as u64,
                })
            })
            .collect()
    }

    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let (_turn, mut tx) = self.begin_write().await?;
        for d in letters {
            sqlx::query(
                "INSERT INTO dead_letters (topic, reason, error, payload, partition, \"offset\", ts_ingest)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&d.topic)
            .bind(&d.reason)
            .bind(&d.error)
            .bind(&d.payload)
            .bind(i64::from(d.partition))
            .bind(d.offset as i64)
            .bind(d.ts_ingest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT reason, COUNT(*) AS n FROM dead_letters GROUP BY reason ORDER BY reason",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("reason")?, r.try_get::<i64, _>("n")? as u64)))
            .collect()
    }

    async fn upsert_run(&self, run: &IngestionRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO ingestion_runs (id, connector, status, started_at, finished_at, quotes, error)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                finished_at = excluded.finished_at, quotes = excluded.quotes, error = excluded.error",
        )
        .bind(&run.id)
        .bind(&run.connector)
        .bind(run.status.as_str())
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.quotes as i64)
        .bind(&run.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<IngestionRun>> {
        let rows = sqlx::query(
            "SELECT * FROM ingestion_runs
             WHERE (? IS NULL OR connector = ?) AND (? IS NULL OR status = ?)
               AND (? IS NULL OR id = ?)
             ORDER BY started_at DESC, id LIMIT ?",
        )
        .bind(&f.connector)
        .bind(&f.connector)
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.status.map(|s| s.as_str()))
        .bind(&f.id)
        .bind(&f.id)
        .bind(i64::from(f.limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IngestionRun {
                    id: r.try_get("id")?,
                    connector: r.try_get("connector")?,
                    status: codes::parse_run_status(&r.try_get::<String, _>("status")?)?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    quotes: r.try_get::<i64, _>("quotes")? as u64,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    async fn insert_quotes(&self, quotes: &[Quote]) -> Result<()> {
        if quotes.is_empty() {
            return Ok(());
        }
        let mut latest: BTreeMap<(Venue, &str), &Quote> = BTreeMap::new();
        for q in quotes {
            let key = (q.venue, q.symbol.as_str());
            match latest.get(&key) {
                Some(old) if old.ts_event > q.ts_event => {}
                _ => {
                    latest.insert(key, q);
                }
            }
        }
        let (_turn, mut tx) = self.begin_write().await?;
        insert_rows(
            &mut tx,
            QUOTE_TARGET_QUOTES,
            QUOTE_COLUMNS,
            "ON CONFLICT DO NOTHING",
            quotes,
            bind_quote,
        )
        .await?;
        let latest: Vec<&Quote> = latest.into_values().collect();
        insert_rows(
            &mut tx,
            QUOTE_TARGET_LATEST,
            QUOTE_COLUMNS,
            "ON CONFLICT (venue, symbol) DO UPDATE SET
                kind = excluded.kind, price = excluded.price, size = excluded.size,
                side = excluded.side, trade_id = excluded.trade_id, bid = excluded.bid,
                ask = excluded.ask, ts_event = excluded.ts_event,
                ts_event_ns = excluded.ts_event_ns, ts_ingest = excluded.ts_ingest
             WHERE excluded.ts_event_ns >= quotes_latest.ts_event_ns",
            &latest,
            |q, row| bind_quote(q, row),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_quotes(&self, venue: Option<Venue>) -> Result<Vec<Quote>> {
        let rows = sqlx::query(
            "SELECT * FROM quotes_latest WHERE (? IS NULL OR venue = ?) ORDER BY venue, symbol",
        )
        .bind(venue.map(|v| v.as_str()))
        .bind(venue.map(|v| v.as_str()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(quote_from_row).collect()
    }

    async fn upsert_signals(&self, signals: &[Signal]) -> Result<()> {
        if signals.is_empty() {
            return Ok(());
        }
        let (_turn, mut tx) = self.begin_write().await?;
        insert_rows(
            &mut tx,
            "signals (venue, symbol, interval, kind, bucket_start, value, ts_event, ts_ingest)",
            8,
            "ON CONFLICT (venue, symbol, interval, kind, bucket_start) DO UPDATE SET
                value = excluded.value, ts_event = excluded.ts_event,
                ts_ingest = excluded.ts_ingest",
            signals,
            bind_signal,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn query_signals(&self, q: &SignalQuery) -> Result<Vec<Signal>> {
        let symbol = q.symbol.as_ref().map(|s| s.as_str());
        let interval = q.interval.map(|i| i.as_str());
        let kind = q.kind.map(codes::signal_kind);
        let rows = sqlx::query(
            "SELECT * FROM signals
             WHERE bucket_start >= ? AND bucket_start < ?
               AND (? IS NULL OR symbol = ?)
               AND (? IS NULL OR interval = ?)
               AND (? IS NULL OR kind = ?)
             ORDER BY bucket_start, symbol, interval, kind, venue
             LIMIT ?",
        )
        .bind(q.from)
        .bind(q.to)
        .bind(symbol)
        .bind(symbol)
        .bind(interval)
        .bind(interval)
        .bind(kind)
        .bind(kind)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Signal {
                    venue: r.try_get::<String, _>("venue")?.parse()?,
                    symbol: Symbol::new(&r.try_get::<String, _>("symbol")?)?,
                    interval: r.try_get::<String, _>("interval")?.parse()?,
                    kind: codes::parse_signal_kind(&r.try_get::<String, _>("kind")?)?,
                    bucket_start: r.try_get("bucket_start")?,
                    value: r.try_get("value")?,
                    ts_event: r.try_get("ts_event")?,
                    ts_ingest: r.try_get("ts_ingest")?,
                })
            })
            .collect()
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_hash, scopes, tier, created_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(&key.scopes)
        .bind(&key.tier)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: &str, at: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn find_api_key(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE secret_hash = ?")
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn save_checkpoints(
        &self,
        group: &str,
        topic: &str,
        checkpoints: &[(i32, i64, String)],
        at: pricestream_schemas::TimestampNs,
    ) -> Result<()> {
        let (_turn, mut tx) = self.begin_write().await?;
        for (partition, offset, metadata) in checkpoints {
            sqlx::query(
                "INSERT INTO stream_checkpoints (consumer_group, topic, partition, next_offset, metadata, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (consumer_group, topic, partition, next_offset) DO UPDATE SET \
                 metadata = excluded.metadata, updated_at = excluded.updated_at",
            )
            .bind(group)
            .bind(topic)
            .bind(*partition)
            .bind(*offset)
            .bind(metadata)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn prune_checkpoints(
        &self,
        group: &str,
        topic: &str,
        committed: &[(i32, i64)],
    ) -> Result<()> {
        let (_turn, mut tx) = self.begin_write().await?;
        for (partition, offset) in committed {
            sqlx::query(
                "DELETE FROM stream_checkpoints \
                 WHERE consumer_group = ? AND topic = ? AND partition = ? AND next_offset < ?",
            )
            .bind(group)
            .bind(topic)
            .bind(*partition)
            .bind(*offset)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn load_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT metadata FROM stream_checkpoints \
             WHERE consumer_group = ? AND topic = ? AND partition = ? AND next_offset = ?",
        )
        .bind(group)
        .bind(topic)
        .bind(partition)
        .bind(offset)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(m,)| m))
    }
}
