-- Completeness ledger: per (venue, symbol, interval), every bucket in
-- [tracked_from, verified_to) is either stored as a bar or recorded as absent at the venue.
CREATE TABLE IF NOT EXISTS candle_ledger (
    venue        TEXT    NOT NULL,
    symbol       TEXT    NOT NULL,
    interval     TEXT    NOT NULL,
    tracked_from INTEGER NOT NULL,
    verified_to  INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (venue, symbol, interval)
) WITHOUT ROWID;

-- Candles the venue itself does not have (no trades in the bucket): never fetched again.
CREATE TABLE IF NOT EXISTS absent_candles (
    venue        TEXT    NOT NULL,
    symbol       TEXT    NOT NULL,
    interval     TEXT    NOT NULL,
    bucket_start INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    PRIMARY KEY (venue, symbol, interval, bucket_start)
) WITHOUT ROWID;

-- Backfill jobs: a venue's candles over [from_ts, to_ts) written as bars.
CREATE TABLE IF NOT EXISTS backfill_jobs (
    id          TEXT    PRIMARY KEY,
    venue       TEXT    NOT NULL,
    symbol      TEXT    NOT NULL,
    interval    TEXT    NOT NULL,
    from_ts     INTEGER NOT NULL,
    to_ts       INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed')),
    cursor_ts   INTEGER NOT NULL,
    candles     INTEGER NOT NULL DEFAULT 0,
    absent      INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS backfill_jobs_created ON backfill_jobs (created_at);
