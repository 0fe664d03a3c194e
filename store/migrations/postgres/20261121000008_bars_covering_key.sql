-- Range reads of bars (one symbol and interval, a time range: the API's and dashboards'
-- query) are served by the primary key alone. Rows of one symbol are interleaved with every
-- other symbol's in the heap, so without this a day of 1m bars touches 1,440 heap pages;
-- with every column in the key's leaf pages it is an index-only scan of adjacent pages
-- (about 5 ms -> 1.5 ms for 1,440 rows in store/benches/pg_store.rs). Inserts cost the
-- same: the key's entries just grow. Rebuilds the key once on an existing table.
ALTER TABLE bars
    DROP CONSTRAINT bars_pkey,
    ADD CONSTRAINT bars_pkey PRIMARY KEY (symbol, interval, bucket_start, venue)
        INCLUDE (open, high, low, close, volume, notional, vwap, trade_count, revision,
                 ts_event, ts_ingest);
