//! The Parquet lake: hive-partitioned, one file per (dataset, interval, UTC hour),
//! written atomically (temp file, fsync, rename) and named from its partition alone.
//!
//! Layout: `bars/interval=1m/date=2026-11-21/bars-2026-11-21T13.parquet`.
//! A file's content is a function of the set of bars it holds (latest revision per key,
//! sorted by time, then venue and symbol), so a replay rewrites byte-identical files.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use pricestream_schemas::arrow::{bar_schema, bars_from_batch, bars_to_batch};
use pricestream_schemas::time::date_of;
use pricestream_schemas::{Bar, Interval, Symbol, TimestampNs, Venue};

use crate::{Result, StoreError};

const HOUR_NS: i64 = 3_600 * 1_000_000_000;
/// Hour files kept in memory to avoid re-reading them on every write.
const CACHED_PARTS: usize = 256;

type BarKey = (TimestampNs, Venue, Symbol);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PartKey {
    interval: Interval,
    hour_start: TimestampNs,
}

/// Writer and reader of the lake rooted at a directory.
pub struct Lake {
    root: PathBuf,
    cache: HashMap<PartKey, BTreeMap<BarKey, Bar>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Lake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Lake {
            root: root.into(),
            cache: HashMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn part_path(&self, part: PartKey) -> PathBuf {
        let date = date_of(part.hour_start);
        let hour = (part.hour_start.rem_euclid(24 * HOUR_NS)) / HOUR_NS;
        self.root
            .join("bars")
            .join(format!("interval={}", part.interval))
            .join(format!("date={date}"))
            .join(format!("bars-{date}T{hour:02}.parquet"))
    }

    fn load(&self, part: PartKey) -> Result<BTreeMap<BarKey, Bar>> {
        let path = self.part_path(part);
        let mut map = BTreeMap::new();
        if path.exists() {
            for bar in read_bar_file(&path, part.interval)? {
                map.insert((bar.bucket_start, bar.venue, bar.symbol.clone()), bar);
            }
        }
        Ok(map)
    }

    /// Merges bars into their hour files (a higher or equal revision replaces) and
    /// rewrites each touched file atomically. Returns the files written.
    pub fn write_bars(&mut self, bars: &[Bar]) -> Result<Vec<PathBuf>> {
        let mut touched: BTreeMap<PartKey, Vec<&Bar>> = BTreeMap::new();
        for b in bars {
            let part = PartKey {
                interval: b.interval,
                hour_start: b.bucket_start - b.bucket_start.rem_euclid(HOUR_NS),
            };
            touched.entry(part).or_default().push(b);
        }
        let mut written = Vec::with_capacity(touched.len());
        for (part, new_bars) in touched {
            if !self.cache.contains_key(&part) {
                let loaded = self.load(part)?;
                self.cache.insert(part, loaded);
            }
            let Some(rows) = self.cache.get_mut(&part) else {
                continue;
            };
            for b in new_bars {
                let key = (b.bucket_start, b.venue, b.symbol.clone());
                match rows.get(&key) {
                    Some(old) if old.revision > b.revision => {}
                    _ => {
                        rows.insert(key, b.clone());
                    }
                }
            }
            let all: Vec<Bar> = rows.values().cloned().collect();
            let path = self.part_path(part);
            write_bar_file(&path, &all)?;
            written.push(path);
        }
        self.evict();
        Ok(written)
    }

    fn evict(&mut self) {
        if self.cache.len() > CACHED_PARTS {
            let mut keys: Vec<PartKey> = self.cache.keys().copied().collect();
            keys.sort_by_key(|k| k.hour_start);
            for k in keys.iter().take(self.cache.len() - CACHED_PARTS) {
                self.cache.remove(k);
            }
        }
    }

    /// Every bar of an interval in the lake, sorted by (bucket_start, venue, symbol).
    pub fn read_bars(&self, interval: Interval) -> Result<Vec<Bar>> {
        let dir = self.root.join("bars").join(format!("interval={interval}"));
        let mut files = Vec::new();
        collect_parquet(&dir, &mut files)?;
        files.sort();
        let mut out = Vec::new();
        for f in files {
            out.extend(read_bar_file(&f, interval)?);
        }
        out.sort_by(|a, b| {
            (a.bucket_start, a.venue, &a.symbol).cmp(&(b.bucket_start, b.venue, &b.symbol))
        });
        Ok(out)
    }
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.is_dir() {
            collect_parquet(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

fn writer_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by("pricestream".to_string())
        .build()
}

/// Writes bars (already in key order) to `path` atomically.
pub fn write_bar_file(path: &Path, bars: &[Bar]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let batch = bars_to_batch(bars, false)?;
    let mut buf = Vec::with_capacity(4096 + bars.len() * 64);
    let mut writer = ArrowWriter::try_new(&mut buf, bar_schema(false), Some(writer_props()))?;
    writer.write(&batch)?;
    writer.close()?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&buf).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Ok(d) = File::open(dir) {
        // Make the rename durable; not every platform supports fsync on a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads one bar file of the lake.
pub fn read_bar_file(path: &Path, interval: Interval) -> Result<Vec<Bar>> {
    let file = File::open(path).map_err(io_err(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        out.extend(bars_from_batch(&batch?, Some(interval))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(sym: &str, minute: i64, rev: u32, close: f64) -> Bar {
        Bar {
            venue: Venue::Synthetic,
            symbol: Symbol::new(sym).unwrap(),
            interval: Interval::M1,
            bucket_start: 1_763_683_200_000_000_000 + minute * 60_000_000_000,
            open: 1.0,
            high: 3.0,
            low: 0.5,
            close,
            volume: 2.0,
            notional: 3.0,
            vwap: 1.5,
            trade_count: 2,
            revision: rev,
            ts_event: 1,
            ts_ingest: 2,
        }
    }

    #[test]
    fn writes_hive_partitions_and_merges_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(dir.path());
        let files = lake
            .write_bars(&[bar("BTC-USDT", 0, 0, 1.0), bar("ETH-USDT", 61, 0, 2.0)])
            .unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].ends_with("bars/interval=1m/date=2025-11-21/bars-2025-11-21T00.parquet"));
        // a revision replaces, an older revision does not
        lake.write_bars(&[bar("BTC-USDT", 0, 2, 1.5)]).unwrap();
        lake.write_bars(&[bar("BTC-USDT", 0, 1, 9.9)]).unwrap();
        let all = Lake::new(dir.path()).read_bars(Interval::M1).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].close, 1.5);
        assert_eq!(all[0].revision, 2);
        // no temp files left behind
        let mut names = Vec::new();
        collect_parquet(dir.path(), &mut names).unwrap();
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn same_bars_give_identical_bytes_whatever_the_write_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let bars: Vec<Bar> = (0..30)
            .map(|m| {
                bar(
                    ["BTC-USDT", "ETH-USDT"][m as usize % 2],
                    m,
                    0,
                    m as f64 + 1.0,
                )
            })
            .collect();
        let mut la = Lake::new(a.path());
        la.write_bars(&bars).unwrap();
        let mut lb = Lake::new(b.path());
        for chunk in bars.rchunks(7) {
            lb.write_bars(chunk).unwrap();
        }
        let fa = la.write_bars(&[]).unwrap();
        assert!(fa.is_empty());
        let p = "bars/interval=1m/date=2025-11-21/bars-2025-11-21T00.parquet";
        assert_eq!(
            fs::read(a.path().join(p)).unwrap(),
            fs::read(b.path().join(p)).unwrap()
        );
    }
}
