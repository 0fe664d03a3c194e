//! Batch jobs over the lake with polars: the seasonality profiles and the rollups of the
//! lake's 1m bars, as lazy queries over the hive-partitioned Parquet files.
//!
//! Both read a dataset the way a notebook would (`bars/interval=…/date=…/*.parquet`),
//! keep the latest revision of each bar (a finished day's hour files and its day file may
//! briefly coexist), and compute with polars expressions. The streaming side computes the
//! same numbers incrementally; `pricestream analytics recompute` compares the two.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use polars::prelude::*;
use pricestream_analytics::seasonality::{Profile, SeasonStats};
use pricestream_analytics::OhlcvAcc;
use pricestream_schemas::{Bar, Interval, Symbol, Venue};

const KEY: [&str; 3] = ["venue", "symbol", "bucket_start"];

/// A polars result with what was being done.
fn pl<T>(r: PolarsResult<T>, what: impl FnOnce() -> String) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{}: {e}", what()))
}

/// Whether the dataset directory holds any Parquet file (polars refuses an empty glob).
fn has_parquet(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            has_parquet(&p)
        } else {
            p.extension().is_some_and(|x| x == "parquet")
        }
    })
}

/// The lake's bars of `interval`, latest revision per bar, as a lazy frame with the
/// times as Int64 nanoseconds (`start`, `ev`, `ing`) beside the originals.
fn scan_bars(lake_root: &Path, interval: Interval) -> anyhow::Result<Option<LazyFrame>> {
    let dir = lake_root
        .join("bars")
        .join(format!("interval={}", interval.as_str()));
    if !has_parquet(&dir) {
        return Ok(None);
    }
    let glob = format!("{}/**/*.parquet", dir.display());
    let args = ScanArgsParquet {
        hive_options: HiveOptions::new_enabled(),
        ..Default::default()
    };
    let lf = pl(
        LazyFrame::scan_parquet(PlRefPath::new(glob.as_str()), args),
        || format!("scanning {glob}"),
    )?
    .select([
        col("venue"),
        col("symbol"),
        col("bucket_start"),
        col("open"),
        col("high"),
        col("low"),
        col("close"),
        col("volume"),
        col("notional"),
        col("trade_count"),
        col("revision"),
        col("ts_event"),
        col("ts_ingest"),
    ])
    .sort(
        ["revision"],
        SortMultipleOptions::default().with_maintain_order(true),
    )
    .unique_stable_generic(
        Some(KEY.iter().map(|c| col(*c)).collect()),
        UniqueKeepStrategy::Last,
    )
    .with_columns([
        col("bucket_start").cast(DataType::Int64).alias("start"),
        col("ts_event").cast(DataType::Int64).alias("ev"),
        col("ts_ingest").cast(DataType::Int64).alias("ing"),
    ])
    // a gap-filled bar carries an earlier close: its event time precedes its bucket
    .with_column(col("ev").lt(col("start")).alias("filled"));
    Ok(Some(lf))
}

fn strs<'a>(df: &'a DataFrame, name: &str) -> anyhow::Result<&'a StringChunked> {
    Ok(df.column(name)?.str()?)
}

fn f64s<'a>(df: &'a DataFrame, name: &str) -> anyhow::Result<&'a Float64Chunked> {
    Ok(df.column(name)?.f64()?)
}

fn i64s(df: &DataFrame, name: &str) -> anyhow::Result<Int64Chunked> {
    Ok(df.column(name)?.cast(&DataType::Int64)?.i64()?.clone())
}

fn key_of(df: &DataFrame, i: usize) -> anyhow::Result<(Venue, Symbol)> {
    let venue = strs(df, "venue")?.get(i).context("null venue")?;
    let symbol = strs(df, "symbol")?.get(i).context("null symbol")?;
    Ok((venue.parse()?, Symbol::new(symbol)?))
}

/// Hour-of-day and weekday (0 = Monday) profiles of `ln(close / open)` per series, from
/// the lake's bars of `interval`, gap-filled bars left out.
pub fn seasonality(
    lake_root: &Path,
    interval: Interval,
) -> anyhow::Result<BTreeMap<(Venue, Symbol), Profile>> {
    let mut out: BTreeMap<(Venue, Symbol), Profile> = BTreeMap::new();
    let Some(bars) = scan_bars(lake_root, interval)? else {
        return Ok(out);
    };
    let returns = bars
        .filter(
            col("filled")
                .not()
                .and(col("open").gt(lit(0.0)))
                .and(col("close").gt(lit(0.0))),
        )
        .with_columns([
            (col("close") / col("open"))
                .log(lit(std::f64::consts::E))
                .alias("r"),
            col("bucket_start")
                .dt()
                .hour()
                .cast(DataType::Int32)
                .alias("hour"),
            (col("bucket_start").dt().weekday().cast(DataType::Int32) - lit(1)).alias("weekday"),
        ]);
    for season in ["hour", "weekday"] {
        let df = pl(
            returns
                .clone()
                .group_by([col("venue"), col("symbol"), col(season).alias("bucket")])
                .agg([
                    len().cast(DataType::Int64).alias("count"),
                    col("r").mean().alias("mean"),
                    col("r").std(0).alias("stdev"),
                    col("r").abs().mean().alias("mean_abs"),
                ])
                .collect(),
            || format!("seasonality by {season}"),
        )?;
        let bucket = i64s(&df, "bucket")?;
        let count = i64s(&df, "count")?;
        let (mean, stdev, mean_abs) = (
            f64s(&df, "mean")?,
            f64s(&df, "stdev")?,
            f64s(&df, "mean_abs")?,
        );
        for i in 0..df.height() {
            let stats = SeasonStats::from_moments(
                count.get(i).unwrap_or(0).max(0) as u64,
                mean.get(i).unwrap_or(0.0),
                stdev.get(i).unwrap_or(0.0),
                mean_abs.get(i).unwrap_or(0.0),
            );
            let b = u8::try_from(bucket.get(i).context("null bucket")?)?;
            let p = out.entry(key_of(&df, i)?).or_default();
            match season {
                "hour" => p.hour_of_day.insert(b, stats),
                _ => p.weekday.insert(b, stats),
            };
        }
    }
    Ok(out)
}

/// Turns a frame with the bar columns (`start`, `ev`, `ing` as Int64) into bars.
fn to_bars(df: &DataFrame, interval: Interval) -> anyhow::Result<Vec<Bar>> {
    let (open, high, low, close) = (
        f64s(df, "open")?,
        f64s(df, "high")?,
        f64s(df, "low")?,
        f64s(df, "close")?,
    );
    let (volume, notional) = (f64s(df, "volume")?, f64s(df, "notional")?);
    let (start, ev, ing) = (i64s(df, "start")?, i64s(df, "ev")?, i64s(df, "ing")?);
    let (trades, revision) = (i64s(df, "trade_count")?, i64s(df, "revision")?);
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let (venue, symbol) = key_of(df, i)?;
        let v = |c: &Float64Chunked| c.get(i).context("null price or size");
        let acc = OhlcvAcc {
            open: v(open)?,
            open_ts: start.get(i).context("null start")?,
            high: v(high)?,
            low: v(low)?,
            close: v(close)?,
            close_ts: ev.get(i).context("null ts_event")?,
            volume: v(volume)?,
            notional: v(notional)?,
            trade_count: u64::try_from(trades.get(i).unwrap_or(0))?,
            max_ingest: ing.get(i).context("null ts_ingest")?,
        };
        let rev = u32::try_from(revision.get(i).unwrap_or(0))?;
        out.push(acc.to_bar(venue, symbol, interval, acc.open_ts, rev));
    }
    Ok(out)
}

/// The lake's 1m bars (latest revisions), read once, sorted by series and time: the
/// input of every rollup of a recomputation.
pub struct LakeM1(Option<DataFrame>);

impl LakeM1 {
    pub fn read(lake_root: &Path) -> anyhow::Result<Self> {
        let Some(lf) = scan_bars(lake_root, Interval::M1)? else {
            return Ok(LakeM1(None));
        };
        let df = pl(
            lf.sort(["venue", "symbol", "start"], Default::default())
                .collect(),
            || "reading 1m bars".into(),
        )?;
        Ok(LakeM1(Some(df)))
    }

    /// The 1m bars themselves.
    pub fn bars(&self) -> anyhow::Result<Vec<Bar>> {
        match &self.0 {
            Some(df) => to_bars(df, Interval::M1),
            None => Ok(Vec::new()),
        }
    }

    /// `target` bars rolled up from the 1m bars: open of the earliest child, close of the
    /// latest, high and low, sums of volume, notional and trades, the revisions summed.
    /// Gap-filled children count only in buckets without a real one. Sorted by series,
    /// time.
    pub fn rollup(&self, target: Interval) -> anyhow::Result<Vec<Bar>> {
        let Some(m1) = &self.0 else {
            return Ok(Vec::new());
        };
        let n = target.nanos();
        let group = [col("venue"), col("symbol"), col("bucket")];
        let df = pl(
            m1.clone()
                .lazy()
                .with_column((col("start") - col("start") % lit(n)).alias("bucket"))
                .with_column(
                    pl(col("filled").not().any(true).over(group.clone()), || {
                        "window".into()
                    })?
                    .alias("has_real"),
                )
                .filter(col("filled").not().or(col("has_real").not()))
                .group_by(group)
                .agg([
                    col("open")
                        .sort_by([col("start")], Default::default())
                        .first(),
                    col("high").max(),
                    col("low").min(),
                    col("close")
                        .sort_by([col("start")], Default::default())
                        .last(),
                    col("volume").sum(),
                    col("notional").sum(),
                    col("trade_count").cast(DataType::Int64).sum(),
                    col("revision").cast(DataType::Int64).sum(),
                    col("ev").max(),
                    col("ing").max(),
                ])
                .rename(["bucket"], ["start"], true)
                .sort(["venue", "symbol", "start"], Default::default())
                .collect(),
            || format!("rolling 1m bars up to {target}"),
        )?;
        to_bars(&df, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pricestream_analytics::rollup;
    use pricestream_analytics::seasonality::profiles;
    use pricestream_store::Lake;

    const MIN: i64 = 60_000_000_000;
    const T0: i64 = 1_763_683_200_000_000_000; // 2025-11-21T00:00:00Z

    /// A small deterministic generator (xorshift), so failures replay exactly.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Random 1m series: random walks, missing minutes, gap fills after some of them,
    /// revisions, prices and sizes across magnitudes.
    fn random_m1(seed: u64) -> Vec<Bar> {
        let mut rng = Rng(seed.max(1));
        let mut out = Vec::new();
        for (k, sym) in ["BTC-USDT", "ETH-USDT", "PEPE-USDT"].iter().enumerate() {
            let symbol = Symbol::new(sym).unwrap();
            let scale = [60_000.0, 3_000.0, 0.000_01][k];
            let mut price = scale;
            let mut last: Option<Bar> = None;
            for m in 0..(3 * 1440 + rng.next() as i64 % 600) {
                let start = T0 + m * MIN;
                let r = rng.unit();
                if r < 0.1 {
                    if let (Some(prev), true) = (&last, r < 0.07) {
                        out.push(Bar::filled_after(prev, Interval::M1, start));
                    }
                    continue;
                }
                price *= 1.0 + (rng.unit() - 0.5) * 0.004;
                let mut acc = OhlcvAcc::new(price, rng.unit() * 3.0, true, start + 1_000, start);
                for j in 0..(rng.next() % 5) {
                    let p = price * (1.0 + (rng.unit() - 0.5) * 0.002);
                    acc.add(
                        p,
                        rng.unit() * 2.0,
                        true,
                        start + 2_000 + j as i64,
                        start + 9,
                    );
                }
                let rev = u32::from(rng.unit() < 0.05);
                let bar = acc.to_bar(Venue::Binance, symbol.clone(), Interval::M1, start, rev);
                last = Some(bar.clone());
                out.push(bar);
            }
        }
        out
    }

    fn rel_eq(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    fn assert_same_rollups(got: &[Bar], want: &[Bar], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(
                (&g.symbol, g.bucket_start, g.open, g.high, g.low, g.close),
                (&w.symbol, w.bucket_start, w.open, w.high, w.low, w.close),
                "{what}"
            );
            assert_eq!(
                (g.trade_count, g.revision, g.ts_event, g.ts_ingest),
                (w.trade_count, w.revision, w.ts_event, w.ts_ingest),
                "{what} {}",
                g.bucket_start
            );
            assert!(
                rel_eq(g.volume, w.volume) && rel_eq(g.notional, w.notional),
                "{what}"
            );
            assert!(
                rel_eq(g.vwap, w.vwap),
                "{what}: vwap {} vs {}",
                g.vwap,
                w.vwap
            );
        }
    }

    fn sorted(mut bars: Vec<Bar>) -> Vec<Bar> {
        bars.sort_by(|a, b| {
            (a.venue, &a.symbol, a.bucket_start).cmp(&(b.venue, &b.symbol, b.bucket_start))
        });
        bars
    }

    #[test]
    fn polars_rollups_equal_the_streaming_merge_on_random_series() {
        for seed in [1u64, 7, 42, 2025] {
            let dir = tempfile::tempdir().unwrap();
            let m1 = random_m1(seed);
            let mut lake = Lake::new(dir.path());
            // written in two overlapping batches: an older revision must lose
            let mut stale: Vec<Bar> = m1.iter().filter(|b| b.revision == 1).cloned().collect();
            for b in &mut stale {
                b.revision = 0;
                b.high *= 2.0;
            }
            lake.write_bars(&stale).unwrap();
            lake.write_bars(&m1).unwrap();
            assert!(m1.iter().any(Bar::is_filled) && m1.iter().any(|b| b.revision > 0));
            let lake_m1 = LakeM1::read(dir.path()).unwrap();
            for iv in [Interval::M5, Interval::M15, Interval::H1, Interval::D1] {
                let got = lake_m1.rollup(iv).unwrap();
                let want = sorted(rollup(&m1, iv));
                assert_same_rollups(&got, &want, &format!("seed {seed} {iv}"));
            }
            assert_eq!(lake_m1.bars().unwrap(), sorted(m1.clone()));
        }
    }

    /// Real data: three days of Binance BTCUSDT 1m klines (../shared/fixtures).
    #[test]
    fn polars_rollups_equal_the_streaming_merge_on_real_klines() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/binance/klines_dump/spot");
        let symbol = Symbol::new("BTC-USDT").unwrap();
        let mut m1 = Vec::new();
        for day in ["2020-01-01", "2020-01-02", "2020-01-03"] {
            let path = root.join(format!("BTCUSDT-1m-{day}.csv"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for line in text.lines() {
                let f: Vec<&str> = line.split(',').collect();
                let num = |i: usize| f[i].parse::<f64>().unwrap();
                let ms = |i: usize| f[i].parse::<i64>().unwrap() * 1_000_000;
                m1.push(Bar {
                    venue: Venue::Binance,
                    symbol: symbol.clone(),
                    interval: Interval::M1,
                    bucket_start: ms(0),
                    open: num(1),
                    high: num(2),
                    low: num(3),
                    close: num(4),
                    volume: num(5),
                    notional: num(7),
                    vwap: if num(5) > 0.0 {
                        num(7) / num(5)
                    } else {
                        num(4)
                    },
                    trade_count: f[8].parse().unwrap(),
                    revision: 0,
                    ts_event: ms(6),
                    ts_ingest: ms(6),
                });
            }
        }
        assert_eq!(m1.len(), 3 * 1440);
        let dir = tempfile::tempdir().unwrap();
        Lake::new(dir.path()).write_bars(&m1).unwrap();
        let lake_m1 = LakeM1::read(dir.path()).unwrap();
        for iv in [Interval::M5, Interval::M15, Interval::H1, Interval::D1] {
            let got = lake_m1.rollup(iv).unwrap();
            assert_same_rollups(&got, &sorted(rollup(&m1, iv)), &format!("klines {iv}"));
        }
    }

    #[test]
    fn polars_seasonality_equals_the_incremental_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let m1 = random_m1(99);
        let h1 = rollup(&m1, Interval::H1);
        Lake::new(dir.path()).write_bars(&h1).unwrap();
        let got = seasonality(dir.path(), Interval::H1).unwrap();
        let want = profiles(&h1);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (k, w) in &want {
            let g = &got[k];
            for (gs, ws) in [(&g.hour_of_day, &w.hour_of_day), (&g.weekday, &w.weekday)] {
                assert_eq!(gs.keys().collect::<Vec<_>>(), ws.keys().collect::<Vec<_>>());
                for (b, w) in ws {
                    let g = &gs[b];
                    assert_eq!(g.count, w.count);
                    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12) + 1e-15;
                    assert!(close(g.mean_return, w.mean_return), "{k:?} {b}");
                    assert!(close(g.stdev_return, w.stdev_return), "{k:?} {b}");
                    assert!(close(g.mean_abs_return, w.mean_abs_return), "{k:?} {b}");
                }
            }
        }
    }

    #[test]
    fn an_empty_lake_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m1 = LakeM1::read(dir.path()).unwrap();
        assert!(m1.rollup(Interval::H1).unwrap().is_empty() && m1.bars().unwrap().is_empty());
        assert!(seasonality(dir.path(), Interval::H1).unwrap().is_empty());
    }
}
