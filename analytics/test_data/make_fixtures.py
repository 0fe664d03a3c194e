#!/usr/bin/env python3
"""Reference fixtures for the analytics tests, computed by independent implementations.

Inputs are real market data under ../shared/fixtures (see its SOURCES.md).
- indicators_btcusdt_1m.csv: TA-Lib SMA/EMA/RSI/STDDEV and pandas rolling mean over the
  closes of Binance BTCUSDT 1m klines, 2020-01-01..03.
- rollups_btcusdt.csv: the same klines resampled by pandas to 5m, 15m, 1h and 1d.
- trade_bars_binance.csv: 1m bars aggregated by pandas from recorded Binance aggTrade
  messages (spot and USD-M futures).

Regenerate explicitly (never run by the tests):
    pip install pandas TA-Lib
    python3 analytics/test_data/make_fixtures.py ../shared/fixtures
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import talib

HERE = Path(__file__).resolve().parent
KLINE_COLS = ["open_time", "open", "high", "low", "close", "volume", "close_time",
              "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore"]


def klines(fixtures: Path) -> pd.DataFrame:
    days = ["2020-01-01", "2020-01-02", "2020-01-03"]
    frames = [pd.read_csv(fixtures / f"binance/klines_dump/spot/BTCUSDT-1m-{d}.csv",
                          header=None, names=KLINE_COLS) for d in days]
    return pd.concat(frames, ignore_index=True)


def indicators(k: pd.DataFrame) -> None:
    close = k["close"].astype(float).to_numpy()
    out = pd.DataFrame({
        "open_time": k["open_time"],
        "close": close,
        "sma10": talib.SMA(close, timeperiod=10),
        "sma30": talib.SMA(close, timeperiod=30),
        "ema12": talib.EMA(close, timeperiod=12),
        "rsi14": talib.RSI(close, timeperiod=14),
        "mean20": pd.Series(close).rolling(20).mean().to_numpy(),
        "stdev20": talib.STDDEV(close, timeperiod=20, nbdev=1),
    })
    # a check of the reference itself: TA-Lib's stdev equals numpy's two-pass one
    # (pandas' rolling std carries ~1e-10 absolute error here, too much for 1e-9)
    exact = np.array([np.std(close[i - 19:i + 1]) for i in range(19, len(close))])
    assert np.allclose(exact, out["stdev20"][19:], rtol=1e-9, atol=1e-9)
    out.to_csv(HERE / "indicators_btcusdt_1m.csv", index=False, float_format="%.17g", na_rep="")


def rollups(k: pd.DataFrame) -> None:
    df = k.copy()
    df.index = pd.to_datetime(df["open_time"], unit="ms", utc=True)
    rows = []
    for label, rule in [("5m", "5min"), ("15m", "15min"), ("1h", "1h"), ("1d", "1D")]:
        r = df.resample(rule, label="left", closed="left").agg({
            "open": "first", "high": "max", "low": "min", "close": "last",
            "volume": "sum", "quote_volume": "sum", "count": "sum"})
        r = r.dropna(subset=["open"])
        for ts, row in r.iterrows():
            rows.append({"interval": label, "bucket_start_ms": int(ts.value // 1_000_000), **row.to_dict()})
    pd.DataFrame(rows).to_csv(HERE / "rollups_btcusdt.csv", index=False, float_format="%.17g")


def trade_bars(fixtures: Path) -> None:
    trades = []
    for name in ["binance_usdm_futures_aggTrade_2021-07-22.ndjson",
                 "binance_spot_combined_stream_2021-10-12.ndjson",
                 "binance_us_spot_bookTicker_kline_aggTrade_2021-10-12.ndjson"]:
        for line in (fixtures / "binance/ws" / name).read_text().splitlines():
            msg = json.loads(line)["msg"]
            data = msg.get("data", msg)
            if data.get("e") != "aggTrade":
                continue
            trades.append({"file": name, "symbol": data["s"], "T": data["T"], "a": data["a"],
                           "price": float(data["p"]), "qty": float(data["q"])})
    df = pd.DataFrame(trades)
    df["minute_ms"] = df["T"] // 60_000 * 60_000
    df["notional"] = df["price"] * df["qty"]
    # event-time order: open is the earliest trade, close the latest (ties: arrival order)
    df = df.reset_index().sort_values(["T", "index"], kind="stable")
    g = df.groupby(["file", "symbol", "minute_ms"], sort=True)
    out = pd.DataFrame({
        "open": g["price"].first(), "high": g["price"].max(), "low": g["price"].min(),
        "close": g["price"].last(), "volume": g["qty"].sum(), "notional": g["notional"].sum(),
        "trade_count": g["price"].size()}).reset_index()
    out.to_csv(HERE / "trade_bars_binance.csv", index=False, float_format="%.17g")


def main() -> None:
    fixtures = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2] / "shared/fixtures")
    k = klines(fixtures)
    indicators(k)
    rollups(k)
    trade_bars(fixtures)


if __name__ == "__main__":
    main()
