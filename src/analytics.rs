//! Batch analytics over the lake: seasonality profiles and the recomputation that checks
//! the streaming rollups and signals against batch definitions. The lake is read and
//! aggregated with polars ([`crate::batch`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use pricestream_analytics::seasonality::{Profile, SeasonStats};
use pricestream_analytics::{batch_signals, SignalParams};
use pricestream_pipeline::SharedProfiles;
use pricestream_schemas::{Bar, Interval, Signal, SignalKind, Symbol, Venue};
use pricestream_store::seasonality::{self, SeasonalityRow};
use pricestream_store::Lake;

type Series = (Venue, Symbol, Interval);

fn rows_of(interval: Interval, key: &(Venue, Symbol), p: &Profile) -> Vec<SeasonalityRow> {
    let row = |season: &str, bucket: u8, s: &SeasonStats| SeasonalityRow {
        venue: key.0,
        symbol: key.1.clone(),
        interval,
        season: season.to_string(),
        bucket: u32::from(bucket),
        count: s.count,
        mean_return: s.mean_return,
        stdev_return: s.stdev_return,
        mean_abs_return: s.mean_abs_return,
    };
    p.hour_of_day
        .iter()
        .map(|(b, s)| row("hour_of_day", *b, s))
        .chain(p.weekday.iter().map(|(b, s)| row("weekday", *b, s)))
        .collect()
}

/// Recomputes the seasonality profiles from the lake's bars of `interval`, writes the
/// `seasonality` dataset and returns the profiles.
pub fn refresh_seasonality(
    lake_root: &Path,
    interval: Interval,
) -> anyhow::Result<BTreeMap<Series, Profile>> {
    let by_symbol =
        crate::batch::seasonality(lake_root, interval).context("seasonality over the lake")?;
    let rows: Vec<SeasonalityRow> = by_symbol
        .iter()
        .flat_map(|(k, p)| rows_of(interval, k, p))
        .collect();
    seasonality::write(lake_root, &rows).context("writing the seasonality dataset")?;
    Ok(by_symbol
        .into_iter()
        .map(|((v, s), p)| ((v, s, interval), p))
        .collect())
}

/// Refreshes the profiles and publishes them to the running pipeline.
pub fn refresh_shared(
    lake_root: &Path,
    interval: Interval,
    shared: &SharedProfiles,
) -> anyhow::Result<usize> {
    let fresh = refresh_seasonality(lake_root, interval)?;
    let n = fresh.len();
    match shared.write() {
        Ok(mut guard) => *guard = fresh,
        Err(_) => anyhow::bail!("seasonality profiles lock poisoned"),
    }
    Ok(n)
}

/// What a recomputation found.
#[derive(Debug, Default)]
pub struct Report {
    pub bars_checked: usize,
    pub signals_checked: usize,
    pub mismatches: Vec<String>,
}

fn rel_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn series_of(bars: &[Bar]) -> BTreeMap<(Venue, Symbol), Vec<&Bar>> {
    let mut m: BTreeMap<(Venue, Symbol), Vec<&Bar>> = BTreeMap::new();
    for b in bars {
        m.entry((b.venue, b.symbol.clone())).or_default().push(b);
    }
    m
}

/// Recomputes every rollup from the lake's 1m bars (a polars aggregation) and every signal
/// from the lake's bars (the batch signal rules over each series), and compares them with
/// what the pipeline wrote. With `write`, replaces the lake's rollups and signals with the
/// recomputed ones.
pub fn recompute(
    lake_root: &Path,
    rollups: &[Interval],
    signals: &BTreeMap<Interval, SignalParams>,
    write: bool,
) -> anyhow::Result<Report> {
    let mut lake = Lake::new(lake_root);
    let lake_m1 = crate::batch::LakeM1::read(lake_root).context("reading 1m bars")?;
    let m1 = lake_m1.bars()?;
    let mut report = Report::default();
    let mut bars_by_interval: BTreeMap<Interval, Vec<Bar>> = BTreeMap::new();
    bars_by_interval.insert(Interval::M1, m1.clone());
    for &iv in rollups.iter().filter(|i| **i != Interval::M1) {
        let mut want = lake_m1.rollup(iv)?;
        want.sort_by(|a, b| {
            (a.bucket_start, a.venue, &a.symbol).cmp(&(b.bucket_start, b.venue, &b.symbol))
        });
        let got = lake.read_bars(iv)?;
        let got_by_key: BTreeMap<_, _> = got
            .iter()
            .map(|b| ((b.bucket_start, b.venue, b.symbol.clone()), b))
            .collect();
        for w in &want {
            report.bars_checked += 1;
            match got_by_key.get(&(w.bucket_start, w.venue, w.symbol.clone())) {
                None => report
                    .mismatches
                    .push(format!("{iv} {} {}: missing", w.symbol, w.bucket_start)),
                Some(g) => {
                    let same = (g.open, g.high, g.low, g.close, g.trade_count, g.revision)
                        == (w.open, w.high, w.low, w.close, w.trade_count, w.revision)
                        && rel_eq(g.volume, w.volume)
                        && rel_eq(g.notional, w.notional);
                    if !same {
                        report.mismatches.push(format!(
                            "{iv} {} {}: stream {g:?} batch {w:?}",
                            w.symbol, w.bucket_start
                        ));
                    }
                }
            }
        }
        if got.len() > want.len() {
            report.mismatches.push(format!(
                "{iv}: {} bars in the lake that 1m bars do not explain",
                got.len() - want.len()
            ));
        }
        if write {
            lake.write_bars(&want)?;
        }
        bars_by_interval.insert(iv, want);
    }
    for (iv, params) in signals {
        let Some(bars) = bars_by_interval
            .get(iv)
            .cloned()
            .or_else(|| lake.read_bars(*iv).ok())
        else {
            continue;
        };
        let mut want: Vec<Signal> = Vec::new();
        for (_, series) in series_of(&bars) {
            let owned: Vec<Bar> = series.into_iter().cloned().collect();
            want.extend(batch_signals(&owned, params));
        }
        let key = |s: &Signal| (s.bucket_start, s.venue, s.symbol.clone(), s.kind as u8);
        want.sort_by_key(key);
        let got: Vec<Signal> = lake
            .read_signals(*iv)?
            .into_iter()
            .filter(|s| s.kind != SignalKind::SeasonalDeviation)
            .collect();
        let got_by_key: BTreeMap<_, _> = got.iter().map(|s| (key(s), s)).collect();
        for w in &want {
            report.signals_checked += 1;
            match got_by_key.get(&key(w)) {
                Some(g) if rel_eq(g.value, w.value) => {}
                Some(g) => report
                    .mismatches
                    .push(format!("{iv} signal {w:?}: stream value {}", g.value)),
                None => report
                    .mismatches
                    .push(format!("{iv} signal missing from the stream: {w:?}")),
            }
        }
        if got.len() != want.len() {
            report.mismatches.push(format!(
                "{iv}: {} signals in the lake, batch gives {}",
                got.len(),
                want.len()
            ));
        }
        if write {
            lake.write_signals(&want)?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m1(minute: i64, close: f64) -> Bar {
        Bar {
            venue: Venue::Synthetic,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::M1,
            bucket_start: 1_763_683_200_000_000_000 + minute * 60_000_000_000,
            open: close,
            high: close + 1.0,
            low: close - 1.0,
            close,
            volume: 1.0,
            notional: close,
            vwap: close,
            trade_count: 1,
            revision: 0,
            ts_event: 1_763_683_200_000_000_000 + minute * 60_000_000_000 + 1,
            ts_ingest: 1,
        }
    }

    #[test]
    fn recompute_finds_a_tampered_rollup_and_repairs_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(dir.path());
        let bars: Vec<Bar> = (0..30).map(|m| m1(m, 100.0 + m as f64)).collect();
        lake.write_bars(&bars).unwrap();
        let mut five = pricestream_analytics::rollup(&bars, Interval::M5);
        lake.write_bars(&five).unwrap();
        let none = BTreeMap::new();
        let ok = recompute(dir.path(), &[Interval::M5], &none, false).unwrap();
        assert_eq!(
            (ok.bars_checked, ok.mismatches.len()),
            (6, 0),
            "{:?}",
            ok.mismatches
        );
        five[2].high += 1.0;
        lake.write_bars(&five[2..3]).unwrap();
        let bad = recompute(dir.path(), &[Interval::M5], &none, false).unwrap();
        assert_eq!(bad.mismatches.len(), 1, "{:?}", bad.mismatches);
        recompute(dir.path(), &[Interval::M5], &none, true).unwrap();
        assert!(recompute(dir.path(), &[Interval::M5], &none, false)
            .unwrap()
            .mismatches
            .is_empty());
    }

    #[test]
    fn seasonality_dataset_is_written_and_published() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(dir.path());
        let mut bars: Vec<Bar> = (0..48 * 60)
            .map(|m| m1(m, 100.0 + (m % 7) as f64))
            .collect();
        lake.write_bars(&bars).unwrap();
        bars.truncate(0);
        let shared = SharedProfiles::default();
        let n = refresh_shared(dir.path(), Interval::M1, &shared).unwrap();
        assert_eq!(n, 1);
        let rows = seasonality::read(dir.path()).unwrap();
        assert_eq!(
            rows.iter().filter(|r| r.season == "hour_of_day").count(),
            24
        );
        assert_eq!(rows.iter().filter(|r| r.season == "weekday").count(), 2);
        assert!(shared.read().unwrap().contains_key(&(
            Venue::Synthetic,
            Symbol::new("BTC-USDT").unwrap(),
            Interval::M1
        )));
    }
}
