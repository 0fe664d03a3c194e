-- Bars: natural key (venue, symbol, interval, bucket_start); a higher revision replaces a lower one.
CREATE TABLE IF NOT EXISTS bars (
    venue        TEXT    NOT NULL,
    symbol       TEXT    NOT NULL,
    interval     TEXT    NOT NULL,
    bucket_start INTEGER NOT NULL,
    open         REAL    NOT NULL,
    high         REAL    NOT NULL,
    low          REAL    NOT NULL,
    close        REAL    NOT NULL,
    volume       REAL    NOT NULL,
    notional     REAL    NOT NULL,
    vwap         REAL    NOT NULL,
    trade_count  INTEGER NOT NULL,
    revision     INTEGER NOT NULL,
    ts_event     INTEGER NOT NULL,
    ts_ingest    INTEGER NOT NULL,
    PRIMARY KEY (venue, symbol, interval, bucket_start)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS bars_symbol_interval_time ON bars (symbol, interval, bucket_start);

-- Messages that could not be processed: malformed, invalid or later than the allowed lateness.
CREATE TABLE IF NOT EXISTS dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    partition  INTEGER NOT NULL,
    "offset"   INTEGER NOT NULL,
    ts_ingest  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS ingestion_runs (
    id          TEXT    PRIMARY KEY,
    connector   TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    quotes      INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);

CREATE INDEX IF NOT EXISTS ingestion_runs_started ON ingestion_runs (started_at);
