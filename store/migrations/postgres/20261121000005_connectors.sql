-- Completeness ledger: per (venue, symbol, interval), every bucket in
-- [tracked_from, verified_to) is either stored as a bar or recorded as absent at the venue.
CREATE TABLE IF NOT EXISTS candle_ledger (
    venue        TEXT    NOT NULL,
    symbol       TEXT    NOT NULL,
    interval     TEXT    NOT NULL,
    tracked_from BIGINT NOT NULL,
    verified_to  BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (venue, symbol, interval)
);

-- Candles the venue itself does not have (no trades in the bucket): never fetched again.
CREATE TABLE IF NOT EXISTS absent_candles (
    venue        TEXT    NOT NULL,
    symbol       TEXT    NOT NULL,
    interval     TEXT    NOT NULL,
    bucket_start BIGINT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    PRIMARY KEY (venue, symbol, interval, bucket_start)
);

-- Backfill jobs: a venue's candles over [from_ts, to_ts) written as bars.
CREATE TABLE IF NOT EXISTS backfill_jobs (
    id          TEXT    PRIMARY KEY,
    venue       TEXT    NOT NULL,
    symbol      TEXT    NOT NULL,
    interval    TEXT    NOT NULL,
    from_ts     BIGINT NOT NULL,
    to_ts       BIGINT NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed')),
    cursor_ts   BIGINT NOT NULL,
    candles     BIGINT NOT NULL DEFAULT 0,
    absent      BIGINT NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS backfill_jobs_created ON backfill_jobs (created_at);
