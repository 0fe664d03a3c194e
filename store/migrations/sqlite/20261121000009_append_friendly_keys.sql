-- Keys that make the sink's writes touch few pages.
--
-- Bars: the rows move to a rowid table, appended in arrival order, and the natural key
-- becomes its unique index, symbol first: (symbol, interval, bucket_start, venue) serves
-- the history queries (one symbol and interval over a time range, any or one venue), so
-- the separate symbol index goes. Before, the rows lived in the key (WITHOUT ROWID, venue
-- first) and a minute's bars over 1,000 symbols rewrote a full-width leaf page per symbol
-- in the table and again in the index. Per bar of a 1,000-symbol round
-- (benches/sqlite_store.rs, WAL checkpoints already off the commit path): 19-22 µs
-- before, 14.5 µs after. The ON CONFLICT target (venue, symbol, interval, bucket_start)
-- names the key's columns, so writes are unchanged.
CREATE TABLE bars_symbol_first (
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
    PRIMARY KEY (symbol, interval, bucket_start, venue)
);
INSERT INTO bars_symbol_first
    SELECT venue, symbol, interval, bucket_start, open, high, low, close, volume, notional,
           vwap, trade_count, revision, ts_event, ts_ingest
    FROM bars;
DROP TABLE bars;
ALTER TABLE bars_symbol_first RENAME TO bars;

-- Raw quotes: the natural key leads with the event time, so quotes (which arrive in about
-- that order) are appended at the key's right edge. Symbol first, a transaction of 2,000
-- quotes over 1,000 symbols dirtied a key page per symbol: 62k quotes/s against 131-138k/s
-- (benches/sqlite_store.rs), and about 17 times the WAL. The embedded store reads raw quotes only as
-- `quotes_latest` (its own table); the key's columns, and so what counts as a duplicate,
-- are unchanged.
DROP INDEX quotes_natural_key;
CREATE UNIQUE INDEX quotes_natural_key
    ON quotes (ts_event, symbol, venue, kind, ts_event_ns, coalesce(trade_id, -9223372036854775808));
