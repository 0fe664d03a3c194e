-- Raw quotes, the latest quote per symbol, and signals; TimescaleDB hypertables when the
-- extension is there (see the DO block at the end).

-- Raw quotes. ts_event is the exchange time truncated to microseconds (the time column);
-- ts_event_ns is the exact value. Natural key: (venue, symbol, kind, ts_event_ns, trade_id),
-- with ts_event in the index because a hypertable's unique indexes must contain it. Time
-- leads the index: quotes arrive in time order, so inserts append at its right edge.
-- trade_id holds the u64 id's bits (ids above 2^63 read back as negative numbers here).
CREATE TABLE IF NOT EXISTS quotes (
    venue       TEXT COLLATE "C" NOT NULL,
    symbol      TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL CHECK (kind IN ('trade', 'ticker')),
    price       DOUBLE PRECISION NOT NULL,
    size        DOUBLE PRECISION NOT NULL,
    side        TEXT             CHECK (side IN ('buy', 'sell')),
    trade_id    BIGINT,
    bid         DOUBLE PRECISION,
    ask         DOUBLE PRECISION,
    ts_event    TIMESTAMPTZ      NOT NULL,
    ts_event_ns BIGINT           NOT NULL,
    ts_ingest   BIGINT           NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS quotes_natural_key
    ON quotes (ts_event, symbol, venue, kind, ts_event_ns, trade_id) NULLS NOT DISTINCT;

-- Quotes arrive roughly in time order: BRIN serves time-range scans across symbols.
CREATE INDEX IF NOT EXISTS quotes_ts_event_brin ON quotes USING brin (ts_event);

-- The latest quote per (venue, symbol), maintained in the same transaction as `quotes`.
CREATE TABLE IF NOT EXISTS quotes_latest (
    venue       TEXT COLLATE "C" NOT NULL,
    symbol      TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    price       DOUBLE PRECISION NOT NULL,
    size        DOUBLE PRECISION NOT NULL,
    side        TEXT,
    trade_id    BIGINT,
    bid         DOUBLE PRECISION,
    ask         DOUBLE PRECISION,
    ts_event    TIMESTAMPTZ      NOT NULL,
    ts_event_ns BIGINT           NOT NULL,
    ts_ingest   BIGINT           NOT NULL,
    PRIMARY KEY (venue, symbol)
);

-- Signals: natural key (venue, symbol, interval, kind, bucket_start).
CREATE TABLE IF NOT EXISTS signals (
    venue        TEXT COLLATE "C" NOT NULL,
    symbol       TEXT COLLATE "C" NOT NULL,
    interval     TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    bucket_start TIMESTAMPTZ      NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    ts_event     BIGINT           NOT NULL,
    ts_ingest    BIGINT           NOT NULL,
    CONSTRAINT signals_pkey PRIMARY KEY (symbol, interval, kind, bucket_start, venue)
);

CREATE INDEX IF NOT EXISTS signals_bucket_start_brin ON signals USING brin (bucket_start);

-- TimescaleDB. The session setting pricestream.timescale (auto | on | off, set by
-- `pricestream migrate` from store.timescale.mode) decides; default auto = use the extension
-- when the server offers it. Compression and retention policies come from configuration and
-- are applied after the migrations (they are not schema).
DO $$
DECLARE
    mode text := coalesce(nullif(current_setting('pricestream.timescale', true), ''), 'auto');
    available boolean;
BEGIN
    IF mode NOT IN ('auto', 'on', 'off') THEN
        RAISE EXCEPTION 'pricestream.timescale must be auto, on or off, not %', mode;
    END IF;
    IF mode = 'off' THEN
        RETURN;
    END IF;
    SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
        INTO available;
    IF NOT available THEN
        IF mode = 'on' THEN
            RAISE EXCEPTION 'store.timescale.mode = on, but this server has no timescaledb extension';
        END IF;
        RETURN;
    END IF;
    CREATE EXTENSION IF NOT EXISTS timescaledb;

    PERFORM create_hypertable('bars', 'bucket_start',
        chunk_time_interval => interval '7 days', migrate_data => true, if_not_exists => true);
    PERFORM create_hypertable('quotes', 'ts_event',
        chunk_time_interval => interval '1 day', migrate_data => true, if_not_exists => true);
    PERFORM create_hypertable('signals', 'bucket_start',
        chunk_time_interval => interval '30 days', migrate_data => true, if_not_exists => true);

    ALTER TABLE bars SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'symbol, interval, venue',
        timescaledb.compress_orderby = 'bucket_start');
    ALTER TABLE quotes SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'symbol, venue',
        timescaledb.compress_orderby = 'ts_event, kind, ts_event_ns, trade_id');
    ALTER TABLE signals SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'symbol, interval, kind, venue',
        timescaledb.compress_orderby = 'bucket_start');
END
$$;
