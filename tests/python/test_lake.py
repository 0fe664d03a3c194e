"""The lake written by a real run reads with polars, pandas and duckdb, with no glue code,
and holds exactly what the store holds.

Usage: python3 tests/python/test_lake.py <data_dir>
(<data_dir> holds pricestream.db and lake/, written by `pricestream run`).
"""
import datetime as dt
import sqlite3
import sys
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl

COLS = ["open", "high", "low", "close", "volume", "notional", "vwap", "trade_count", "revision",
        "ts_event"]
TRADES = 15000  # scripts/checks/lake_python.sh: MAX_TRADES


def store_bars(db: Path, interval: str, symbol: str, day: str) -> pd.DataFrame:
    start = int(pd.Timestamp(day, tz="UTC").value)
    end = start + 86_400 * 10**9
    con = sqlite3.connect(db)
    df = pd.read_sql_query(
        "SELECT symbol, bucket_start, " + ", ".join(COLS) + " FROM bars "
        "WHERE interval = ? AND symbol = ? AND bucket_start >= ? AND bucket_start < ? "
        "ORDER BY bucket_start",
        con, params=(interval, symbol, start, end))
    con.close()
    df["bucket_start"] = pd.to_datetime(df["bucket_start"], unit="ns", utc=True)
    df["ts_event"] = pd.to_datetime(df["ts_event"], unit="ns", utc=True)
    return df.reset_index(drop=True)


def check_same(name: str, got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got[["symbol", "bucket_start"] + COLS].sort_values("bucket_start").reset_index(drop=True)
    got["bucket_start"] = pd.to_datetime(got["bucket_start"], utc=True)
    got["ts_event"] = pd.to_datetime(got["ts_event"], utc=True)
    for c in ["trade_count", "revision"]:
        got[c] = got[c].astype("int64")
        want[c] = want[c].astype("int64")
    assert len(got) == len(want) > 0, f"{name}: {len(got)} rows, store has {len(want)}"
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
    print(f"ok {name}: {len(got)} rows equal to the store")


def main() -> None:
    data = Path(sys.argv[1])
    lake = data / "lake"
    db = data / "pricestream.db"
    bars_glob = str(lake / "bars" / "**" / "*.parquet")

    # what dates and symbols are there
    dates = sorted(p.name.split("=", 1)[1] for p in (lake / "bars" / "interval=1m").iterdir())
    assert len(dates) >= 2, f"expected data on two dates, found {dates}"
    day, symbol = dates[-1], "ETH-USDT"
    # finished days are compacted into one file per day and interval
    first_day = list((lake / "bars" / "interval=1m" / f"date={dates[0]}").glob("*.parquet"))
    assert [f.name for f in first_day] == [f"bars-{dates[0]}.parquet"], first_day

    # polars: lazy scan with hive partitions, predicate pushdown on date and symbol
    lf = pl.scan_parquet(bars_glob, hive_partitioning=True)
    schema = lf.collect_schema()
    assert schema["bucket_start"] == pl.Datetime("ns", "UTC"), schema["bucket_start"]
    pl_df = (
        lf.filter((pl.col("interval") == "1m")
                  & (pl.col("date").cast(pl.String) == day)
                  & (pl.col("symbol") == symbol))
        .collect()
        .to_pandas()
    )
    check_same("polars 1m", pl_df, store_bars(db, "1m", symbol, day))

    # pandas (pyarrow engine): partition filters
    pd_df = pd.read_parquet(lake / "bars", filters=[("interval", "=", "5m"), ("date", "=", day), ("symbol", "=", symbol)])
    check_same("pandas 5m", pd_df, store_bars(db, "5m", symbol, day))

    # duckdb: SQL over the hive layout
    con = duckdb.connect()
    dd_df = con.execute(
        f"SELECT * FROM read_parquet('{bars_glob}', hive_partitioning = true) "
        "WHERE interval = '1h' AND CAST(date AS VARCHAR) = ? AND symbol = ? ORDER BY bucket_start",
        [day, symbol]).df()
    check_same("duckdb 1h", dd_df, store_bars(db, "1h", symbol, day))

    # gap filling: every minute between a symbol's first and last 1m bar has a bar; the
    # minutes without trades carry the previous close with no volume
    m1 = (pl.scan_parquet(bars_glob, hive_partitioning=True)
          .filter(pl.col("interval") == "1m")
          .sort("symbol", "bucket_start")
          .with_columns(pl.col("close").shift(1).over("symbol").alias("prev_close"),
                        pl.col("bucket_start").diff().over("symbol").alias("step"))
          .collect())
    fills = m1.filter(pl.col("filled"))
    assert fills.height > 0, "no gap-filled bars"
    assert (fills["ts_event"] < fills["bucket_start"]).all()
    assert (fills["volume"] == 0).all() and (fills["trade_count"] == 0).all()
    assert (fills["close"] == fills["prev_close"]).all() and (fills["open"] == fills["close"]).all()
    assert m1.filter(~pl.col("filled"))["trade_count"].min() > 0
    steps = m1["step"].drop_nulls().unique().to_list()
    assert steps == [dt.timedelta(minutes=1)], steps
    print(f"ok gap fill: {fills.height} filled minutes of {m1.height}, no holes")

    # files are sorted by time and carry statistics (for pushdown)
    import pyarrow.parquet as pq
    for f in sorted((lake / "bars").rglob("*.parquet"))[:5]:
        t = pq.read_table(f)
        ts = t.column("bucket_start").to_pylist()
        assert ts == sorted(ts), f"{f} not sorted by time"
        md = pq.ParquetFile(f).metadata
        assert md.row_group(0).column(0).compression == "ZSTD"
        assert md.row_group(0).column(0).statistics is not None

    # every trade of the run is in the quotes dataset, once
    n_quotes = con.execute(
        f"SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM read_parquet('{lake}/quotes/**/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert n_quotes == (TRADES, TRADES), n_quotes
    print(f"ok quotes: {n_quotes[0]} trades, none lost or doubled")

    # seasonality profiles (written by `pricestream analytics seasonality`) equal the same
    # statistics computed by polars over the lake's 1h bars
    season_file = lake / "seasonality" / "seasonality.parquet"
    if season_file.exists():
        bars_1h = (pl.scan_parquet(bars_glob, hive_partitioning=True)
                   .filter((pl.col("interval") == "1h") & ~pl.col("filled"))
                   .with_columns((pl.col("close") / pl.col("open")).log().alias("r"))
                   .collect())
        by_hour = (bars_1h.with_columns(pl.col("bucket_start").dt.hour().alias("bucket"))
                   .group_by(["venue", "symbol", "bucket"])
                   .agg(pl.len().alias("n"), pl.col("r").mean().alias("mean"),
                        pl.col("r").std(ddof=0).alias("sd"), pl.col("r").abs().mean().alias("mabs")))
        ours = pl.read_parquet(season_file).filter(pl.col("season") == "hour_of_day")
        joined = ours.with_columns(pl.col("bucket").cast(pl.Int8)).join(
            by_hour.with_columns(pl.col("bucket").cast(pl.Int8)), on=["venue", "symbol", "bucket"], how="full")
        assert joined.height == ours.height == by_hour.height > 0, (ours.height, by_hour.height)
        for row in joined.iter_rows(named=True):
            assert row["count"] == row["n"], row
            for a, b in [("mean_return", "mean"), ("stdev_return", "sd"), ("mean_abs_return", "mabs")]:
                assert abs(row[a] - row[b]) <= 1e-9 * max(abs(row[b]), 1e-12) + 1e-15, (a, row)
        print(f"ok seasonality: {ours.height} hour-of-day rows equal polars' aggregation")

    # signals are a dataset of their own
    sig = pl.scan_parquet(str(lake / "signals" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert sig.height > 0, "no signals in the lake"
    print(f"ok signals: {sig.height} rows, kinds {sorted(set(sig['kind']))}")
    con_db = sqlite3.connect(db)
    n_store_signals = con_db.execute("SELECT count(*) FROM signals").fetchone()[0]
    n_store_quotes = con_db.execute("SELECT count(*) FROM quotes").fetchone()[0]
    con_db.close()
    assert n_store_signals == sig.height, (n_store_signals, sig.height)
    assert n_store_quotes == TRADES, n_store_quotes
    print("ok store: the same signals as the lake, and every quote")


if __name__ == "__main__":
    main()
