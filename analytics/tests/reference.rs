//! Indicators and rollups against references computed by independent implementations
//! (TA-Lib, numpy and pandas) over real Binance data. The fixtures and the script that
//! made them are in `analytics/test_data/`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use pricestream_analytics::indicators::{Ema, RollingStats, Rsi, Sma};
use pricestream_analytics::rollup;
use pricestream_schemas::{Bar, Interval, Symbol, Venue};

fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(name)
}

fn shared_fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(rel)
}

fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn opt(s: &str) -> Option<f64> {
    (!s.is_empty()).then(|| s.parse().unwrap())
}

fn assert_close(what: &str, i: usize, got: Option<f64>, want: Option<f64>, rel: f64) {
    match (got, want) {
        (Some(g), Some(w)) => assert!(
            (g - w).abs() <= rel * w.abs().max(1.0),
            "{what}[{i}]: got {g}, reference {w}"
        ),
        (None, None) => {}
        _ => panic!("{what}[{i}]: got {got:?}, reference {want:?}"),
    }
}

#[test]
fn indicators_match_talib_on_real_closes() {
    let data = rows(&test_data("indicators_btcusdt_1m.csv"));
    assert_eq!(data.len(), 4_320);
    let (mut sma10, mut sma30, mut ema12, mut rsi14, mut st20) = (
        Sma::new(10),
        Sma::new(30),
        Ema::new(12),
        Rsi::new(14),
        RollingStats::new(20),
    );
    for (i, r) in data.iter().enumerate() {
        let close: f64 = r[1].parse().unwrap();
        assert_close("sma10", i, sma10.update(close), opt(&r[2]), 1e-9);
        assert_close("sma30", i, sma30.update(close), opt(&r[3]), 1e-9);
        assert_close("ema12", i, ema12.update(close), opt(&r[4]), 1e-9);
        assert_close("rsi14", i, rsi14.update(close), opt(&r[5]), 1e-9);
        let stats = st20.update(close);
        assert_close("mean20", i, stats.map(|s| s.0), opt(&r[6]), 1e-9);
        assert_close("stdev20", i, stats.map(|s| s.1), opt(&r[7]), 1e-9);
    }
}

fn kline_bars() -> Vec<Bar> {
    let sym = Symbol::new("BTC-USDT").unwrap();
    let mut bars = Vec::new();
    for day in ["2020-01-01", "2020-01-02", "2020-01-03"] {
        // spot dumps have no header row
        let text = std::fs::read_to_string(shared_fixture(&format!(
            "binance/klines_dump/spot/BTCUSDT-1m-{day}.csv"
        )))
        .unwrap();
        for line in text.lines() {
            let f: Vec<&str> = line.split(',').collect();
            let open_ms: i64 = f[0].parse().unwrap();
            let num = |i: usize| f[i].parse::<f64>().unwrap();
            let volume = num(5);
            let notional = num(7);
            bars.push(Bar {
                venue: Venue::Binance,
                symbol: sym.clone(),
                interval: Interval::M1,
                bucket_start: open_ms * 1_000_000,
                open: num(1),
                high: num(2),
                low: num(3),
                close: num(4),
                volume,
                notional,
                vwap: if volume > 0.0 {
                    notional / volume
                } else {
                    num(4)
                },
                trade_count: f[8].parse().unwrap(),
                revision: 0,
                ts_event: f[6].parse::<i64>().unwrap() * 1_000_000,
                ts_ingest: f[6].parse::<i64>().unwrap() * 1_000_000,
            });
        }
    }
    bars
}

#[test]
fn rollups_of_real_klines_match_pandas_resample() {
    let m1 = kline_bars();
    assert_eq!(m1.len(), 4_320);
    let reference = rows(&test_data("rollups_btcusdt.csv"));
    let mut checked = 0;
    for iv in [Interval::M5, Interval::M15, Interval::H1, Interval::D1] {
        let rolled = rollup(&m1, iv);
        let want: Vec<&Vec<String>> = reference.iter().filter(|r| r[0] == iv.as_str()).collect();
        assert_eq!(rolled.len(), want.len(), "{iv}");
        for (bar, r) in rolled.iter().zip(want) {
            let num = |i: usize| r[i].parse::<f64>().unwrap();
            assert_eq!(bar.bucket_start, r[1].parse::<i64>().unwrap() * 1_000_000);
            assert_eq!(
                (bar.open, bar.high, bar.low, bar.close),
                (num(2), num(3), num(4), num(5)),
                "{iv} {}",
                r[1]
            );
            assert!((bar.volume - num(6)).abs() <= 1e-9 * num(6));
            assert!((bar.notional - num(7)).abs() <= 1e-9 * num(7));
            assert_eq!(bar.trade_count as f64, num(8));
            assert!(bar.low <= bar.vwap && bar.vwap <= bar.high);
            checked += 1;
        }
    }
    assert_eq!(checked, 864 + 288 + 72 + 3);
}
