-- SQLite twin of migrations/postgres/20261121000002_quotes_signals.sql: the same tables and
-- column names. Times are INTEGER nanoseconds; quotes.ts_event and ts_event_ns hold the same
-- value here (in PostgreSQL ts_event is a TIMESTAMPTZ).

CREATE TABLE IF NOT EXISTS quotes (
    venue       TEXT    NOT NULL,
    symbol      TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('trade', 'ticker')),
    price       REAL    NOT NULL,
    size        REAL    NOT NULL,
    side        TEXT    CHECK (side IN ('buy', 'sell')),
    trade_id    INTEGER,
    bid         REAL,
    ask         REAL,
    ts_event    INTEGER NOT NULL,
    ts_event_ns INTEGER NOT NULL,
    ts_ingest   INTEGER NOT NULL
);

-- Natural key; a missing trade_id counts as one value (as NULLS NOT DISTINCT in PostgreSQL).
CREATE UNIQUE INDEX IF NOT EXISTS quotes_natural_key
    ON quotes (symbol, ts_event, venue, kind, ts_event_ns, coalesce(trade_id, -9223372036854775808));

CREATE TABLE IF NOT EXISTS quotes_latest (
    venue       TEXT    NOT NULL,
    symbol      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    price       REAL    NOT NULL,
    size        REAL    NOT NULL,
    side        TEXT,
    trade_id    INTEGER,
    bid         REAL,
    ask         REAL,
    ts_event    INTEGER NOT NULL,
    ts_event_ns INTEGER NOT NULL,
    ts_ingest   INTEGER NOT NULL,
    PRIMARY KEY (venue, symbol)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS signals (
    venue        TEXT    NOT NULL,
    symbol       TEXT    NOT NULL,
    interval     TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    bucket_start INTEGER NOT NULL,
    value        REAL    NOT NULL,
    ts_event     INTEGER NOT NULL,
    ts_ingest    INTEGER NOT NULL,
    PRIMARY KEY (venue, symbol, interval, kind, bucket_start)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS signals_time ON signals (bucket_start);
