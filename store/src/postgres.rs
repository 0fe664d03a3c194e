//! The production store: PostgreSQL, with TimescaleDB hypertables when the extension is
//! available. Bulk writes send one array per column and `UNNEST` them server-side, so a
//! batch of thousands of rows is one statement; every write is an upsert on the natural
//! key, so replays converge (tried first as a plain insert, see [`write_chunk`]).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pricestream_schemas::{Bar, IngestionRun, Quote, Signal, Symbol, TimestampNs, Venue};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Acquire, PgPool, Row};

use crate::codes;
use crate::options::{StoreOptions, TimescaleConfig};
use crate::{
    ApiKeyRecord, BarQuery, DeadLetter, Result, RunFilter, SignalQuery, Store, StoreError,
    SymbolInfo,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Rows per statement in bulk writes: large enough to amortise the round trip, small
/// enough to keep each message and lock set modest.
const CHUNK_ROWS: usize = 10_000;

/// Bulk writes try a plain insert first (a binary `COPY` for quotes, a plain `INSERT` for
/// bars and signals) inside a savepoint, and only on a unique violation fall back to the
/// upsert (`ON CONFLICT`). New rows are the common case, and PostgreSQL's speculative
/// insertion for `ON CONFLICT` costs about twice a plain insert per row
/// (`store/benches/pg_store.rs`). A replay conflicts throughout, so after a conflict the
/// next [`CONFLICT_COOLDOWN`] batches to that table go straight to the upsert.
#[derive(Default)]
struct ConflictHint(AtomicU32);

/// Batches that skip the optimistic attempt after one conflicted.
const CONFLICT_COOLDOWN: u32 = 16;

impl ConflictHint {
    /// Whether this batch should try the plain insert first.
    fn optimistic(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_err()
    }

    fn conflicted(&self) {
        self.0.store(CONFLICT_COOLDOWN, Ordering::Relaxed);
    }
}

/// Whether an optimistic attempt failed on a duplicate key (and the upsert should run).
fn is_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Ends the savepoint of an optimistic attempt: committed if it worked (true); rolled back
/// on a unique violation (false: the caller writes the upsert instead); any other error is
/// returned.
async fn settle(
    savepoint: sqlx::Transaction<'_, sqlx::Postgres>,
    attempt: std::result::Result<(), sqlx::Error>,
) -> Result<bool> {
    match attempt {
        Ok(()) => {
            savepoint.commit().await?;
            Ok(true)
        }
        Err(e) if is_conflict(&e) => {
            savepoint.rollback().await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes one chunk of a bulk write: the plain `INSERT` (`plain`) in a savepoint while
/// `*optimistic`, else (or after a unique violation, which clears `*optimistic`) the upsert
/// (`upsert`, the same statement with its `ON CONFLICT` clause). See [`ConflictHint`].
async fn write_chunk<'a, F>(
    conn: &mut sqlx::PgConnection,
    plain: &'a str,
    upsert: &'a str,
    optimistic: &mut bool,
    query: F,
) -> Result<()>
where
    F: Fn(&'a str) -> sqlx::query::Query<'a, sqlx::Postgres, sqlx::postgres::PgArguments>,
{
    if *optimistic {
        let mut savepoint = conn.begin().await?;
        let attempt = query(plain).execute(&mut *savepoint).await.map(drop);
        if settle(savepoint, attempt).await? {
            return Ok(());
        }
        *optimistic = false;
    }
    query(upsert).execute(&mut *conn).await?;
    Ok(())
}

/// `timestamptz` in PostgreSQL's binary format counts microseconds from 2000-01-01 UTC.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

const COPY_QUOTES: &str = "COPY quotes (venue, symbol, kind, price, size, side, trade_id, bid, \
     ask, ts_event, ts_event_ns, ts_ingest) FROM STDIN (FORMAT binary)";

/// Quotes as the data of [`COPY_QUOTES`]: PostgreSQL's binary `COPY` format (a signature
/// and header, per row a field count and length-prefixed big-endian fields, -1 for NULL,
/// then a -1 trailer).
fn copy_quotes_binary(quotes: &[Quote]) -> Result<Vec<u8>> {
    fn text(buf: &mut Vec<u8>, s: &str) -> Result<()> {
        let len = i32::try_from(s.len()).map_err(|_| StoreError::OutOfRange {
            column: "text",
            value: s.len() as i128,
        })?;
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn int8(buf: &mut Vec<u8>, v: i64) {
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&v.to_be_bytes());
    }
    fn float8(buf: &mut Vec<u8>, v: f64) {
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&v.to_be_bytes());
    }
    fn null(buf: &mut Vec<u8>) {
        buf.extend_from_slice(&(-1i32).to_be_bytes());
    }
    let mut buf = Vec::with_capacity(19 + quotes.len() * 150 + 2);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for q in quotes {
        buf.extend_from_slice(&12i16.to_be_bytes());
        text(&mut buf, q.venue.as_str())?;
        text(&mut buf, q.symbol.as_str())?;
        text(&mut buf, codes::quote_kind(q.kind))?;
        float8(&mut buf, q.price);
        float8(&mut buf, q.size);
        match q.side {
            Some(side) => text(&mut buf, codes::side(side))?,
            None => null(&mut buf),
        }
        match q.trade_id {
            Some(id) => int8(&mut buf, codes::trade_id_to_db(id)),
            None => null(&mut buf),
        }
        for v in [q.bid, q.ask] {
            match v {
                Some(v) => float8(&mut buf, v),
                None => null(&mut buf),
            }
        }
        int8(&mut buf, floor_us(q.ts_event) - PG_EPOCH_US);
        int8(&mut buf, q.ts_event);
        int8(&mut buf, q.ts_ingest);
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(buf)
}

/// Writes one chunk of quotes: while `*optimistic`, in a savepoint, a binary `COPY` (or
/// with `copy` false the plain `INSERT` `plain`); else, or after a unique violation, the
/// `ON CONFLICT DO NOTHING` insert `upsert`.
async fn write_quotes_chunk(
    conn: &mut sqlx::PgConnection,
    chunk: &[Quote],
    copy: bool,
    (plain, upsert): (&str, &str),
    optimistic: &mut bool,
) -> Result<()> {
    if !copy {
        let cols = QuoteColumns::new(chunk, chunk.len());
        return write_chunk(conn, plain, upsert, optimistic, |sql| {
            bind_quotes(sql, &cols)
        })
        .await;
    }
    if *optimistic {
        let data = copy_quotes_binary(chunk)?;
        let mut savepoint = conn.begin().await?;
        let attempt = async {
            let mut copy = savepoint.copy_in_raw(COPY_QUOTES).await?;
            copy.send(data).await?;
            copy.finish().await.map(drop)
        }
        .await;
        if settle(savepoint, attempt).await? {
            return Ok(());
        }
        *optimistic = false;
    }
    let cols = QuoteColumns::new(chunk, chunk.len());
    bind_quotes(upsert, &cols).execute(&mut *conn).await?;
    Ok(())
}

/// Microseconds since the epoch (an `int8` expression) to `timestamptz`; integer
/// arithmetic only, so exact.
fn ts_from_us(expr: &str) -> String {
    format!("(timestamptz '1970-01-01 00:00:00+00' + {expr} * interval '1 microsecond')")
}

/// Nanoseconds to the microseconds a `timestamptz` column stores (floor). Bucket starts are
/// whole minutes, so for them this is exact.
fn floor_us(ns: TimestampNs) -> i64 {
    ns.div_euclid(1000)
}

/// The smallest whole microsecond at or after `ns`: `t >= ns` ⇔ `t_us >= ceil_us(ns)` and
/// `t < ns` ⇔ `t_us < ceil_us(ns)` for times stored as whole microseconds.
fn ceil_us(ns: TimestampNs) -> i64 {
    ns.div_euclid(1000) + i64::from(ns.rem_euclid(1000) != 0)
}

/// `timestamptz` column to nanoseconds. `date_part` is a float8 of seconds: for any time
/// before year 2255 its error is under 0.5 µs, so rounding to whole microseconds is exact
/// (and much cheaper than numeric `extract`).
fn ns_from_ts(col: &str) -> String {
    format!("((date_part('epoch', {col}) * 1000000)::int8 * 1000)")
}

/// PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    timescale: TimescaleConfig,
    copy_quotes: bool,
    /// Ticks when this process changes the alert rules.
    pub(crate) rules_changed: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Ticks when this process queues webhook deliveries.
    pub(crate) deliveries_queued: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    conflicts: std::sync::Arc<Conflicts>,
}

/// Per table: whether recent bulk writes conflicted (see [`ConflictHint`]).
#[derive(Default)]
struct Conflicts {
    bars: ConflictHint,
    quotes: ConflictHint,
    signals: ConflictHint,
}

impl PgStore {
    /// Connects a pool; every session gets the configured `statement_timeout`.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(url)?.application_name("pricestream");
        if opts.statement_timeout_ms > 0 {
            connect =
                connect.options([("statement_timeout", opts.statement_timeout_ms.to_string())]);
        }
        let mut pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .min_connections(opts.min_connections.min(opts.max_connections.max(1)))
            .acquire_timeout(Duration::from_millis(opts.acquire_timeout_ms.max(1)));
        pool = pool.idle_timeout(
            (opts.idle_timeout_secs > 0).then(|| Duration::from_secs(opts.idle_timeout_secs)),
        );
        let pool = pool.connect_with(connect).await?;
        Ok(PgStore {
            pool,
            timescale: opts.timescale.clone(),
            copy_quotes: opts.copy_quotes,
            rules_changed: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            deliveries_queued: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            conflicts: std::sync::Arc::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The newest migration this build carries.
    pub fn expected_version() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The newest applied migration, `None` when the schema was never migrated.
    async fn applied_version(&self) -> Result<Option<i64>> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        if !exists {
            return Ok(None);
        }
        Ok(
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Whether `bars` is a TimescaleDB hypertable (in the schema the session resolves it to).
    pub async fn is_timescale(&self) -> Result<bool> {
        let installed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
        )
        .fetch_one(&self.pool)
        .await?;
        if !installed {
            return Ok(false);
        }
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                 WHERE h.hypertable_name = 'bars'
                   AND to_regclass('bars') = format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// (Re)applies compression and retention policies from configuration.
    async fn apply_timescale_policies(&self) -> Result<()> {
        let t = &self.timescale;
        let tables = [
            ("bars", t.retain_bars_days),
            ("quotes", t.retain_quotes_days),
            ("signals", t.retain_signals_days),
        ];
        for (table, retain_days) in tables {
            sqlx::query("SELECT remove_compression_policy($1::text::regclass, if_exists => true)")
                .bind(table)
                .execute(&self.pool)
                .await?;
            if t.compress_after_days > 0 {
                sqlx::query(
                    "SELECT add_compression_policy($1::text::regclass, make_interval(days => $2))",
                )
                .bind(table)
                .bind(t.compress_after_days as i32)
                .execute(&self.pool)
                .await?;
            }
            sqlx::query("SELECT remove_retention_policy($1::text::regclass, if_exists => true)")
                .bind(table)
                .execute(&self.pool)
                .await?;
            if retain_days > 0 {
                sqlx::query(
                    "SELECT add_retention_policy($1::text::regclass, make_interval(days => $2))",
                )
                .bind(table)
                .bind(retain_days as i32)
                .execute(&self.pool)
                .await?;
            }
        }
        tracing::info!(
            compress_after_days = t.compress_after_days,
            retain_quotes_days = t.retain_quotes_days,
            retain_bars_days = t.retain_bars_days,
            retain_signals_days = t.retain_signals_days,
            "timescaledb policies applied"
        );
        Ok(())
    }
}

fn int_col<T: TryFrom<i64>>(row: &PgRow, col: &'static str) -> Result<T> {
    let v: i64 = row.try_get(col)?;
    T::try_from(v).map_err(|_| StoreError::OutOfRange {
        column: col,
        value: i128::from(v),
    })
}

fn bar_from_row(row: &PgRow) -> Result<Bar> {
    Ok(Bar {
        venue: row.try_get::<&str, _>("venue")?.parse()?,
        symbol: Symbol::new(row.try_get::<&str, _>("symbol")?)?,
        interval: row.try_get::<&str, _>("interval")?.parse()?,
        bucket_start: row.try_get("bucket_start_ns")?,
        open: row.try_get("open")?,
        high: row.try_get("high")?,
        low: row.try_get("low")?,
        close: row.try_get("close")?,
        volume: row.try_get("volume")?,
        notional: row.try_get("notional")?,
        vwap: row.try_get("vwap")?,
        trade_count: int_col(row, "trade_count")?,
        revision: {
            let r: i32 = row.try_get("revision")?;
            u32::try_from(r).map_err(|_| StoreError::OutOfRange {
                column: "revision",
                value: i128::from(r),
            })?
        },
        ts_event: row.try_get("ts_event")?,
        ts_ingest: row.try_get("ts_ingest")?,
    })
}

fn quote_from_row(row: &PgRow) -> Result<Quote> {
    Ok(Quote {
        venue: row.try_get::<&str, _>("venue")?.parse()?,
        symbol: Symbol::new(row.try_get::<&str, _>("symbol")?)?,
        kind: codes::parse_quote_kind(row.try_get("kind")?)?,
        price: row.try_get("price")?,
        size: row.try_get("size")?,
        side: row
            .try_get::<Option<&str>, _>("side")?
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

fn signal_from_row(row: &PgRow) -> Result<Signal> {
    Ok(Signal {
        venue: row.try_get::<&str, _>("venue")?.parse()?,
        symbol: Symbol::new(row.try_get::<&str, _>("symbol")?)?,
        interval: row.try_get::<&str, _>("interval")?.parse()?,
        kind: codes::parse_signal_kind(row.try_get("kind")?)?,
        bucket_start: row.try_get("bucket_start_ns")?,
        value: row.try_get("value")?,
        ts_event: row.try_get("ts_event")?,
        ts_ingest: row.try_get("ts_ingest")?,
    })
}

/// One bar per natural key: the highest revision, and of equal revisions the last one
/// (what applying them one by one would leave). Sorted by key, so concurrent writers lock
/// rows in the same order.
fn dedup_bars(bars: &[Bar]) -> Vec<&Bar> {
    let mut by_key: BTreeMap<(&str, pricestream_schemas::Interval, TimestampNs, Venue), &Bar> =
        BTreeMap::new();
    for b in bars {
        let key = (b.symbol.as_str(), b.interval, b.bucket_start, b.venue);
        match by_key.get(&key) {
            Some(old) if old.revision > b.revision => {}
            _ => {
                by_key.insert(key, b);
            }
        }
    }
    by_key.into_values().collect()
}

fn dedup_signals(signals: &[Signal]) -> Vec<&Signal> {
    type Key<'a> = (
        &'a str,
        pricestream_schemas::Interval,
        &'static str,
        TimestampNs,
        Venue,
    );
    let mut by_key: BTreeMap<Key<'_>, &Signal> = BTreeMap::new();
    for s in signals {
        let key = (
            s.symbol.as_str(),
            s.interval,
            codes::signal_kind(s.kind),
            s.bucket_start,
            s.venue,
        );
        by_key.insert(key, s);
    }
    by_key.into_values().collect()
}

/// Column arrays for a batch of bars.
struct BarColumns<'a> {
    venue: Vec<&'static str>,
    symbol: Vec<&'a str>,
    interval: Vec<&'static str>,
    bucket: Vec<i64>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    notional: Vec<f64>,
    vwap: Vec<f64>,
    trades: Vec<i64>,
    revision: Vec<i32>,
    ts_event: Vec<i64>,
    ts_ingest: Vec<i64>,
}

impl<'a> BarColumns<'a> {
    fn new(bars: &[&'a Bar]) -> Result<Self> {
        let n = bars.len();
        let mut c = BarColumns {
            venue: Vec::with_capacity(n),
            symbol: Vec::with_capacity(n),
            interval: Vec::with_capacity(n),
            bucket: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
            notional: Vec::with_capacity(n),
            vwap: Vec::with_capacity(n),
            trades: Vec::with_capacity(n),
            revision: Vec::with_capacity(n),
            ts_event: Vec::with_capacity(n),
            ts_ingest: Vec::with_capacity(n),
        };
        for b in bars {
            c.venue.push(b.venue.as_str());
            c.symbol.push(b.symbol.as_str());
            c.interval.push(b.interval.as_str());
            c.bucket.push(floor_us(b.bucket_start));
            c.open.push(b.open);
            c.high.push(b.high);
            c.low.push(b.low);
            c.close.push(b.close);
            c.volume.push(b.volume);
            c.notional.push(b.notional);
            c.vwap.push(b.vwap);
            c.trades.push(
                i64::try_from(b.trade_count).map_err(|_| StoreError::OutOfRange {
                    column: "trade_count",
                    value: i128::from(b.trade_count),
                })?,
            );
            c.revision.push(
                i32::try_from(b.revision).map_err(|_| StoreError::OutOfRange {
                    column: "revision",
                    value: i128::from(b.revision),
                })?,
            );
            c.ts_event.push(b.ts_event);
            c.ts_ingest.push(b.ts_ingest);
        }
        Ok(c)
    }

    fn bind<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(sql)
            .bind(&self.venue)
            .bind(&self.symbol)
            .bind(&self.interval)
            .bind(&self.bucket)
            .bind(&self.open)
            .bind(&self.high)
            .bind(&self.low)
            .bind(&self.close)
            .bind(&self.volume)
            .bind(&self.notional)
            .bind(&self.vwap)
            .bind(&self.trades)
            .bind(&self.revision)
            .bind(&self.ts_event)
            .bind(&self.ts_ingest)
    }
}

/// Column arrays for a batch of quotes.
#[derive(Default)]
struct QuoteColumns<'a> {
    venue: Vec<&'static str>,
    symbol: Vec<&'a str>,
    kind: Vec<&'static str>,
    price: Vec<f64>,
    size: Vec<f64>,
    side: Vec<Option<&'static str>>,
    trade_id: Vec<Option<i64>>,
    bid: Vec<Option<f64>>,
    ask: Vec<Option<f64>>,
    ts_event: Vec<i64>,
    ts_event_us: Vec<i64>,
    ts_ingest: Vec<i64>,
}

impl<'a> QuoteColumns<'a> {
    fn new<I: IntoIterator<Item = &'a Quote>>(quotes: I, len: usize) -> Self {
        let mut c = QuoteColumns {
            venue: Vec::with_capacity(len),
            symbol: Vec::with_capacity(len),
            kind: Vec::with_capacity(len),
            price: Vec::with_capacity(len),
            size: Vec::with_capacity(len),
            side: Vec::with_capacity(len),
            trade_id: Vec::with_capacity(len),
            bid: Vec::with_capacity(len),
            ask: Vec::with_capacity(len),
            ts_event: Vec::with_capacity(len),
            ts_event_us: Vec::with_capacity(len),
            ts_ingest: Vec::with_capacity(len),
        };
        for q in quotes {
            c.venue.push(q.venue.as_str());
            c.symbol.push(q.symbol.as_str());
            c.kind.push(codes::quote_kind(q.kind));
            c.price.push(q.price);
            c.size.push(q.size);
            c.side.push(q.side.map(codes::side));
            c.trade_id.push(q.trade_id.map(codes::trade_id_to_db));
            c.bid.push(q.bid);
            c.ask.push(q.ask);
            c.ts_event.push(q.ts_event);
            c.ts_event_us.push(floor_us(q.ts_event));
            c.ts_ingest.push(q.ts_ingest);
        }
        c
    }
}

const QUOTE_COLUMNS: &str =
    "venue, symbol, kind, price, size, side, trade_id, bid, ask, ts_event, ts_event_ns, ts_ingest";

fn quotes_unnest_select() -> String {
    format!(
        "SELECT v, s, k, p, sz, sd, tid, b, a, {}, te, ti
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[],
                     $6::text[], $7::int8[], $8::float8[], $9::float8[], $10::int8[], $11::int8[],
                     $12::int8[])
              AS t(v, s, k, p, sz, sd, tid, b, a, te, ti, teu)",
        ts_from_us("teu")
    )
}

fn bind_quotes<'q>(
    sql: &'q str,
    c: &'q QuoteColumns<'q>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(&c.venue)
        .bind(&c.symbol)
        .bind(&c.kind)
        .bind(&c.price)
        .bind(&c.size)
        .bind(&c.side)
        .bind(&c.trade_id)
        .bind(&c.bid)
        .bind(&c.ask)
        .bind(&c.ts_event)
        .bind(&c.ts_ingest)
        .bind(&c.ts_event_us)
}

fn api_key_from_row(r: &sqlx::postgres::PgRow) -> Result<crate::ApiKeyRecord> {
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
impl Store for PgStore {
    async fn migrate(&self) -> Result<()> {
        let expected = Self::expected_version();
        if let Some(found) = self.applied_version().await? {
            if found > expected {
                return Err(StoreError::TooNew { found, expected });
            }
        }
        let mut conn = self.pool.acquire().await?;
        // Read by the TimescaleDB block of the migrations; session-local.
        sqlx::query("SELECT set_config('pricestream.timescale', $1, false)")
            .bind(self.timescale.mode.as_str())
            .execute(&mut *conn)
            .await?;
        let result = MIGRATOR.run_direct(&mut *conn).await;
        let reset = sqlx::query("RESET pricestream.timescale")
            .execute(&mut *conn)
            .await;
        result?;
        reset?;
        drop(conn);
        if self.is_timescale().await? {
            self.apply_timescale_policies().await?;
        }
        Ok(())
    }

    async fn check_schema(&self) -> Result<()> {
        let expected = Self::expected_version();
        match self.applied_version().await? {
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
        // first emissions are new rows unless this is a replay; revisions update rows
        let (fresh, revised): (Vec<&Bar>, Vec<&Bar>) =
            dedup_bars(bars).into_iter().partition(|b| b.revision == 0);
        let plain = format!(
            "INSERT INTO bars (venue, symbol, interval, bucket_start, open, high, low, close,
                volume, notional, vwap, trade_count, revision, ts_event, ts_ingest)
             SELECT v, s, i, {}, o, h, l, c, vol, n, vw, tc, r, te, ti
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::float8[],
                         $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[],
                         $11::float8[], $12::int8[], $13::int4[], $14::int8[], $15::int8[])
                  AS t(v, s, i, b, o, h, l, c, vol, n, vw, tc, r, te, ti)",
            ts_from_us("b")
        );
        let upsert = format!(
            "{plain}
             ON CONFLICT (venue, symbol, interval, bucket_start) DO UPDATE SET
                open = excluded.open, high = excluded.high, low = excluded.low,
                close = excluded.close, volume = excluded.volume,
                notional = excluded.notional, vwap = excluded.vwap,
                trade_count = excluded.trade_count, revision = excluded.revision,
                ts_event = excluded.ts_event, ts_ingest = excluded.ts_ingest
             WHERE excluded.revision >= bars.revision"
        );
        let mut tx = self.pool.begin().await?;
        let mut optimistic = self.conflicts.bars.optimistic();
        for chunk in fresh.chunks(CHUNK_ROWS) {
            let cols = BarColumns::new(chunk)?;
            write_chunk(&mut tx, &plain, &upsert, &mut optimistic, |sql| {
                cols.bind(sql)
            })
            .await?;
        }
        if !optimistic {
            self.conflicts.bars.conflicted();
        }
        for chunk in revised.chunks(CHUNK_ROWS) {
            let cols = BarColumns::new(chunk)?;
            cols.bind(&upsert).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn query_bars(&self, q: &BarQuery) -> Result<Vec<Bar>> {
        let order = if q.tail { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT venue, symbol, interval, {ns} AS bucket_start_ns, open, high, low, close,
                    volume, notional, vwap, trade_count, revision, ts_event, ts_ingest
             FROM bars
             WHERE symbol = $1 AND interval = $2
               AND bucket_start >= {from} AND bucket_start < {to}
               AND ($5::text IS NULL OR venue = $5)
             ORDER BY bucket_start {order}, venue {order}
             LIMIT $6",
            ns = ns_from_ts("bucket_start"),
            from = ts_from_us("$3::int8"),
            to = ts_from_us("$4::int8"),
        );
        let rows = sqlx::query(&sql)
            .bind(q.symbol.as_str())
            .bind(q.interval.as_str())
            .bind(ceil_us(q.from))
            .bind(ceil_us(q.to))
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
        let sql = format!(
            "SELECT venue, symbol, {first} AS first, {last} AS last, COUNT(*) AS n
             FROM bars WHERE interval = '1m' GROUP BY venue, symbol ORDER BY symbol, venue",
            first = ns_from_ts("MIN(bucket_start)"),
            last = ns_from_ts("MAX(bucket_start)"),
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(SymbolInfo {
                    venue: r.try_get::<&str, _>("venue")?.parse()?,
                    symbol: Symbol::new(r.try_get::<&str, _>("symbol")?)?,
                    first_bucket: r.try_get("first")?,
                    last_bucket: r.try_get("last")?,
                    bars_1m: int_col(r, "n")?,
                })
            })
            .collect()
    }

    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in letters.chunks(CHUNK_ROWS) {
            let topic: Vec<&str> = chunk.iter().map(|d| d.topic.as_str()).collect();
            let reason: Vec<&str> = chunk.iter().map(|d| d.reason.as_str()).collect();
            let error: Vec<&str> = chunk.iter().map(|d| d.error.as_str()).collect();
            let payload: Vec<&[u8]> = chunk.iter().map(|d| d.payload.as_slice()).collect();
            let partition: Vec<i64> = chunk.iter().map(|d| i64::from(d.partition)).collect();
            let offset = chunk
                .iter()
                .map(|d| {
                    i64::try_from(d.offset).map_err(|_| StoreError::OutOfRange {
                        column: "offset",
                        value: i128::from(d.offset),
                    })
                })
                .collect::<Result<Vec<i64>>>()?;
            let ts_ingest: Vec<i64> = chunk.iter().map(|d| d.ts_ingest).collect();
            sqlx::query(
                "INSERT INTO dead_letters (topic, reason, error, payload, partition, \"offset\", ts_ingest)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[],
                                      $5::int8[], $6::int8[], $7::int8[])",
            )
            .bind(&topic)
            .bind(&reason)
            .bind(&error)
            .bind(&payload)
            .bind(&partition)
            .bind(&offset)
            .bind(&ts_ingest)
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
            .map(|r| Ok((r.try_get("reason")?, int_col(r, "n")?)))
            .collect()
    }

    async fn upsert_run(&self, run: &IngestionRun) -> Result<()> {
        let quotes = i64::try_from(run.quotes).map_err(|_| StoreError::OutOfRange {
            column: "quotes",
            value: i128::from(run.quotes),
        })?;
        sqlx::query(
            "INSERT INTO ingestion_runs (id, connector, status, started_at, finished_at, quotes, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                finished_at = excluded.finished_at, quotes = excluded.quotes, error = excluded.error",
        )
        .bind(&run.id)
        .bind(&run.connector)
        .bind(run.status.as_str())
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(quotes)
        .bind(&run.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<IngestionRun>> {
        let rows = sqlx::query(
            "SELECT id, connector, status, started_at, finished_at, quotes, error
             FROM ingestion_runs
             WHERE ($1::text IS NULL OR connector = $1) AND ($2::text IS NULL OR status = $2)
               AND ($4::text IS NULL OR id = $4)
             ORDER BY started_at DESC, id LIMIT $3",
        )
        .bind(&f.connector)
        .bind(f.status.map(|s| s.as_str()))
        .bind(i64::from(f.limit.max(1)))
        .bind(&f.id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IngestionRun {
                    id: r.try_get("id")?,
                    connector: r.try_get("connector")?,
                    status: codes::parse_run_status(r.try_get("status")?)?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    quotes: int_col(r, "quotes")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    async fn insert_quotes(&self, quotes: &[Quote]) -> Result<()> {
        if quotes.is_empty() {
            return Ok(());
        }
        // the newest quote of each (venue, symbol) in this batch, for quotes_latest
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
        let plain = format!(
            "INSERT INTO quotes ({QUOTE_COLUMNS}) {}",
            quotes_unnest_select()
        );
        let upsert = format!("{plain} ON CONFLICT DO NOTHING");
        let mut tx = self.pool.begin().await?;
        let mut optimistic = self.conflicts.quotes.optimistic();
        for chunk in quotes.chunks(CHUNK_ROWS) {
            write_quotes_chunk(
                &mut tx,
                chunk,
                self.copy_quotes,
                (&plain, &upsert),
                &mut optimistic,
            )
            .await?;
        }
        if !optimistic {
            self.conflicts.quotes.conflicted();
        }
        let upsert_latest = format!(
            "INSERT INTO quotes_latest ({QUOTE_COLUMNS}) {}
             ON CONFLICT (venue, symbol) DO UPDATE SET
                kind = excluded.kind, price = excluded.price, size = excluded.size,
                side = excluded.side, trade_id = excluded.trade_id, bid = excluded.bid,
                ask = excluded.ask, ts_event = excluded.ts_event,
                ts_event_ns = excluded.ts_event_ns, ts_ingest = excluded.ts_ingest
             WHERE excluded.ts_event_ns >= quotes_latest.ts_event_ns",
            quotes_unnest_select()
        );
        let cols = QuoteColumns::new(latest.values().copied(), latest.len());
        bind_quotes(&upsert_latest, &cols).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_quotes(&self, venue: Option<Venue>) -> Result<Vec<Quote>> {
        let rows = sqlx::query(&format!(
            "SELECT {QUOTE_COLUMNS} FROM quotes_latest
             WHERE ($1::text IS NULL OR venue = $1) ORDER BY venue, symbol"
        ))
        .bind(venue.map(|v| v.as_str()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(quote_from_row).collect()
    }

    async fn upsert_signals(&self, signals: &[Signal]) -> Result<()> {
        if signals.is_empty() {
            return Ok(());
        }
        let signals = dedup_signals(signals);
        let plain = format!(
            "INSERT INTO signals (venue, symbol, interval, kind, bucket_start, value, ts_event, ts_ingest)
             SELECT v, s, i, k, {}, val, te, ti
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[],
                         $6::float8[], $7::int8[], $8::int8[])
                  AS t(v, s, i, k, b, val, te, ti)",
            ts_from_us("b")
        );
        let upsert = format!(
            "{plain}
             ON CONFLICT (venue, symbol, interval, kind, bucket_start) DO UPDATE SET
                value = excluded.value, ts_event = excluded.ts_event,
                ts_ingest = excluded.ts_ingest"
        );
        let mut tx = self.pool.begin().await?;
        let mut optimistic = self.conflicts.signals.optimistic();
        for chunk in signals.chunks(CHUNK_ROWS) {
            let venue: Vec<&str> = chunk.iter().map(|s| s.venue.as_str()).collect();
            let symbol: Vec<&str> = chunk.iter().map(|s| s.symbol.as_str()).collect();
            let interval: Vec<&str> = chunk.iter().map(|s| s.interval.as_str()).collect();
            let kind: Vec<&str> = chunk.iter().map(|s| codes::signal_kind(s.kind)).collect();
            let bucket: Vec<i64> = chunk.iter().map(|s| floor_us(s.bucket_start)).collect();
            let value: Vec<f64> = chunk.iter().map(|s| s.value).collect();
            let ts_event: Vec<i64> = chunk.iter().map(|s| s.ts_event).collect();
            let ts_ingest: Vec<i64> = chunk.iter().map(|s| s.ts_ingest).collect();
            write_chunk(&mut tx, &plain, &upsert, &mut optimistic, |sql| {
                sqlx::query(sql)
                    .bind(&venue)
                    .bind(&symbol)
                    .bind(&interval)
                    .bind(&kind)
                    .bind(&bucket)
                    .bind(&value)
                    .bind(&ts_event)
                    .bind(&ts_ingest)
            })
            .await?;
        }
        if !optimistic {
            self.conflicts.signals.conflicted();
        }
        tx.commit().await?;
        Ok(())
    }

    async fn query_signals(&self, q: &SignalQuery) -> Result<Vec<Signal>> {
        let sql = format!(
            "SELECT venue, symbol, interval, kind, {ns} AS bucket_start_ns, value, ts_event, ts_ingest
             FROM signals
             WHERE bucket_start >= {from} AND bucket_start < {to}
               AND ($3::text IS NULL OR symbol = $3)
               AND ($4::text IS NULL OR interval = $4)
               AND ($5::text IS NULL OR kind = $5)
             ORDER BY bucket_start, symbol, interval, kind, venue
             LIMIT $6",
            ns = ns_from_ts("bucket_start"),
            from = ts_from_us("$1::int8"),
            to = ts_from_us("$2::int8"),
        );
        let rows = sqlx::query(&sql)
            .bind(ceil_us(q.from))
            .bind(ceil_us(q.to))
            .bind(q.symbol.as_ref().map(|s| s.as_str()))
            .bind(q.interval.map(|i| i.as_str()))
            .bind(q.kind.map(codes::signal_kind))
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(signal_from_row).collect()
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_hash, scopes, tier, created_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn find_api_key(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE secret_hash = $1")
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
        let mut tx = self.pool.begin().await?;
        for (partition, offset, metadata) in checkpoints {
            sqlx::query(
                "INSERT INTO stream_checkpoints (consumer_group, topic, partition, next_offset, metadata, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
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
        let mut tx = self.pool.begin().await?;
        for (partition, offset) in committed {
            sqlx::query(
                "DELETE FROM stream_checkpoints \
                 WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset < $4",
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
             WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $4",
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

#[cfg(test)]
mod tests {
    use super::*;
    use pricestream_schemas::Interval;

    fn bar(start: i64, rev: u32, close: f64) -> Bar {
        Bar {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::M1,
            bucket_start: start,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close,
            volume: 1.0,
            notional: 1.0,
            vwap: 1.0,
            trade_count: 1,
            revision: rev,
            ts_event: start,
            ts_ingest: start,
        }
    }

    #[test]
    fn microsecond_bounds_keep_nanosecond_semantics() {
        assert_eq!((floor_us(1_999), ceil_us(1_999)), (1, 2));
        assert_eq!((floor_us(2_000), ceil_us(2_000)), (2, 2));
        assert_eq!((floor_us(-1), ceil_us(-1)), (-1, 0));
        assert_eq!(ceil_us(i64::MAX), i64::MAX / 1000 + 1);
        assert_eq!(floor_us(i64::MIN), i64::MIN / 1000 - 1);
    }

    #[test]
    fn dedup_keeps_highest_then_last_revision() {
        let bars = [
            bar(0, 1, 1.0),
            bar(0, 0, 2.0),
            bar(60, 0, 3.0),
            bar(60, 0, 4.0),
        ];
        let d = dedup_bars(&bars);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].revision, d[0].close), (1, 1.0));
        assert_eq!((d[1].revision, d[1].close), (0, 4.0));
    }
}
