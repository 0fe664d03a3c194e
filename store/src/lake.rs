//! The Parquet lake: hive-partitioned datasets, written atomically (temp file, fsync,
//! rename) and named from their partition alone.
//!
//! Layout, for the datasets `bars` and `signals`:
//! `bars/interval=5m/date=2026-11-21/bars-2026-11-21T13.parquet` (an open hour; 1m bars
//! have one open file per ten minutes, `bars-2026-11-21T1310.parquet` from 13:10), compacted
//! into `bars/interval=5m/date=2026-11-21/bars-2026-11-21.parquet` once the day is over.
//! A file's content is a function of the set of rows it holds (the latest revision per
//! key, sorted by time, venue and symbol), so a replay rewrites byte-identical files.
//! The partition columns (`interval`, `date`) are in the path, not in the files.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use pricestream_schemas::arrow::{
    bar_schema, bars_from_batch, bars_to_batch, quote_schema, quotes_from_batch, quotes_to_batch,
    signal_schema, signals_from_batch, signals_to_batch,
};
use pricestream_schemas::time::date_of;
use pricestream_schemas::{Bar, Interval, Quote, Signal, SignalKind, Symbol, TimestampNs, Venue};

use crate::{Result, StoreError};

const HOUR_NS: i64 = 3_600 * 1_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;
const MINUTE_NS: i64 = 60 * 1_000_000_000;
/// What an open file of 1m bars, or of raw quotes, covers.
const OPEN_1M_NS: i64 = 10 * MINUTE_NS;
/// The span of one open file of raw quotes: the sink writes a span's quotes once no
/// quote can still arrive for it.
pub const QUOTE_FILE_NS: i64 = OPEN_1M_NS;
/// Open partitions kept in memory to avoid re-reading them on every write.
const CACHED_PARTS: usize = 256;
/// ... and at most this many rows in all, so many symbols cannot make the cache large.
const CACHED_ROWS: usize = 200_000;

/// A row type of the lake.
pub trait LakeRecord: Clone + Sized {
    const DATASET: &'static str;
    type Key: Ord + Clone;
    fn key(&self) -> Self::Key;
    /// The `interval=` partition, for datasets that have one.
    fn interval(&self) -> Option<Interval>;
    /// The partitioning time (start of the row's bucket).
    fn time(&self) -> TimestampNs;
    /// Whether this row replaces `old` with the same key.
    fn supersedes(&self, old: &Self) -> bool;
    fn schema() -> SchemaRef;
    fn to_batch(rows: &[Self]) -> Result<RecordBatch>;
    fn from_batch(batch: &RecordBatch, interval: Option<Interval>) -> Result<Vec<Self>>;
    /// Whether the dataset has an `interval=` partition level.
    const BY_INTERVAL: bool = true;
    /// Whether written partitions are kept in memory for the next write.
    const CACHE: bool = true;
    /// How much time one open file (of a day not compacted yet) covers.
    fn open_span(_interval: Option<Interval>) -> TimestampNs {
        HOUR_NS
    }
}

impl LakeRecord for Bar {
    const DATASET: &'static str = "bars";
    type Key = (TimestampNs, Venue, Symbol);
    fn key(&self) -> Self::Key {
        (self.bucket_start, self.venue, self.symbol.clone())
    }
    fn interval(&self) -> Option<Interval> {
        Some(self.interval)
    }
    fn time(&self) -> TimestampNs {
        self.bucket_start
    }
    fn supersedes(&self, old: &Self) -> bool {
        self.revision >= old.revision
    }
    fn schema() -> SchemaRef {
        bar_schema(false)
    }
    /// 1m bars: ten minutes per open file. The sink rewrites the open file of every
    /// interval a round touches; an hour of 1m bars over 1,000 symbols is 60,000 rows by
    /// the hour's end, six times what the 5m file ever holds.
    fn open_span(interval: Option<Interval>) -> TimestampNs {
        if interval == Some(Interval::M1) {
            OPEN_1M_NS
        } else {
            HOUR_NS
        }
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        Ok(bars_to_batch(rows, false)?)
    }
    fn from_batch(batch: &RecordBatch, interval: Option<Interval>) -> Result<Vec<Self>> {
        Ok(bars_from_batch(batch, interval)?)
    }
}

fn kind_rank(k: SignalKind) -> u8 {
    k as u8
}

impl LakeRecord for Signal {
    const DATASET: &'static str = "signals";
    type Key = (TimestampNs, Venue, Symbol, u8);
    fn key(&self) -> Self::Key {
        (
            self.bucket_start,
            self.venue,
            self.symbol.clone(),
            kind_rank(self.kind),
        )
    }
    fn interval(&self) -> Option<Interval> {
        Some(self.interval)
    }
    fn time(&self) -> TimestampNs {
        self.bucket_start
    }
    fn supersedes(&self, _old: &Self) -> bool {
        true
    }
    fn schema() -> SchemaRef {
        signal_schema(false)
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        Ok(signals_to_batch(rows, false)?)
    }
    fn from_batch(batch: &RecordBatch, interval: Option<Interval>) -> Result<Vec<Self>> {
        Ok(signals_from_batch(batch, interval)?)
    }
}

impl LakeRecord for Quote {
    const DATASET: &'static str = "quotes";
    const BY_INTERVAL: bool = false;
    const CACHE: bool = false;
    type Key = (TimestampNs, Venue, Symbol, u64, u64, u64);
    fn key(&self) -> Self::Key {
        (
            self.ts_event,
            self.venue,
            self.symbol.clone(),
            self.trade_id.unwrap_or(0),
            self.price.to_bits(),
            self.size.to_bits(),
        )
    }
    fn interval(&self) -> Option<Interval> {
        None
    }
    fn time(&self) -> TimestampNs {
        self.ts_event
    }
    fn supersedes(&self, _old: &Self) -> bool {
        true
    }
    fn schema() -> SchemaRef {
        quote_schema()
    }
    /// Ten minutes per open file: the sink holds a span's quotes in memory until the
    /// span is final, and an hour of 10,000 symbols at 0.2 trades/s is 7.2M quotes.
    fn open_span(_interval: Option<Interval>) -> TimestampNs {
        QUOTE_FILE_NS
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        Ok(quotes_to_batch(rows)?)
    }
    fn from_batch(batch: &RecordBatch, _interval: Option<Interval>) -> Result<Vec<Self>> {
        Ok(quotes_from_batch(batch)?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Span {
    /// An open file: its start and length (an hour, or less for 1m bars).
    Open(TimestampNs, TimestampNs),
    Day(TimestampNs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PartKey {
    interval: Option<Interval>,
    span: Span,
}

impl PartKey {
    fn start(&self) -> TimestampNs {
        match self.span {
            Span::Open(t, _) | Span::Day(t) => t,
        }
    }
}

/// One dataset of the lake (e.g. `bars`).
struct Dataset<R: LakeRecord> {
    root: PathBuf,
    cache: HashMap<PartKey, BTreeMap<R::Key, R>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl<R: LakeRecord> Dataset<R> {
    fn new(root: &Path) -> Self {
        Dataset {
            root: root.join(R::DATASET),
            cache: HashMap::new(),
        }
    }

    fn date_dir(&self, interval: Option<Interval>, day_start: TimestampNs) -> PathBuf {
        let base = match interval {
            Some(iv) => self.root.join(format!("interval={iv}")),
            None => self.root.clone(),
        };
        base.join(format!("date={}", date_of(day_start)))
    }

    fn path(&self, part: PartKey) -> PathBuf {
        let day = part.start() - part.start().rem_euclid(DAY_NS);
        let date = date_of(day);
        let name = match part.span {
            Span::Open(t, HOUR_NS) => {
                format!("{}-{date}T{:02}.parquet", R::DATASET, (t - day) / HOUR_NS)
            }
            Span::Open(t, _) => {
                let minute = (t - day) / MINUTE_NS;
                format!(
                    "{}-{date}T{:02}{:02}.parquet",
                    R::DATASET,
                    minute / 60,
                    minute % 60
                )
            }
            Span::Day(_) => format!("{}-{date}.parquet", R::DATASET),
        };
        self.date_dir(part.interval, day).join(name)
    }

    /// The partition a row goes to: its day file once the day was compacted, else its open
    /// file (its hour; ten minutes for 1m bars).
    /// `compacted` remembers, for one write, which days have a day file (one file-system
    /// check per day, not per row).
    fn part_of(&self, row: &R, compacted: &mut HashMap<PartKey, bool>) -> PartKey {
        let t = row.time();
        let day = t - t.rem_euclid(DAY_NS);
        let daily = PartKey {
            interval: row.interval(),
            span: Span::Day(day),
        };
        let is_daily = *compacted
            .entry(daily)
            .or_insert_with(|| self.cache.contains_key(&daily) || self.path(daily).exists());
        if is_daily {
            daily
        } else {
            let span = R::open_span(row.interval());
            PartKey {
                interval: row.interval(),
                span: Span::Open(t - t.rem_euclid(span), span),
            }
        }
    }

    fn load(&self, part: PartKey) -> Result<BTreeMap<R::Key, R>> {
        let path = self.path(part);
        let mut map = BTreeMap::new();
        if path.exists() {
            for row in read_file::<R>(&path, part.interval)? {
                map.insert(row.key(), row);
            }
        }
        Ok(map)
    }

    fn merge(map: &mut BTreeMap<R::Key, R>, row: R) {
        let key = row.key();
        match map.get(&key) {
            Some(old) if !row.supersedes(old) => {}
            _ => {
                map.insert(key, row);
            }
        }
    }

    fn write(&mut self, rows: &[R]) -> Result<Vec<PathBuf>> {
        let mut touched: BTreeMap<PartKey, Vec<&R>> = BTreeMap::new();
        let mut compacted = HashMap::new();
        for r in rows {
            touched
                .entry(self.part_of(r, &mut compacted))
                .or_default()
                .push(r);
        }
        let mut written = Vec::with_capacity(touched.len());
        for (part, new_rows) in touched {
            if !self.cache.contains_key(&part) {
                let loaded = self.load(part)?;
                self.cache.insert(part, loaded);
            }
            let Some(map) = self.cache.get_mut(&part) else {
                continue;
            };
            for r in new_rows {
                Self::merge(map, r.clone());
            }
            let all: Vec<R> = map.values().cloned().collect();
            let path = self.path(part);
            write_file::<R>(&path, &all)?;
            written.push(path);
        }
        self.evict();
        Ok(written)
    }

    /// Drops the oldest cached partitions beyond the part and row budgets (a dataset that
    /// is written once per partition, like raw quotes, keeps nothing).
    fn evict(&mut self) {
        if !R::CACHE {
            self.cache.clear();
            return;
        }
        let mut rows: usize = self.cache.values().map(BTreeMap::len).sum();
        if self.cache.len() <= CACHED_PARTS && rows <= CACHED_ROWS {
            return;
        }
        let mut keys: Vec<PartKey> = self.cache.keys().copied().collect();
        keys.sort_by_key(|k| k.start());
        let mut parts = self.cache.len();
        for k in keys {
            if parts <= 1 || (parts <= CACHED_PARTS && rows <= CACHED_ROWS) {
                break;
            }
            if let Some(m) = self.cache.remove(&k) {
                rows -= m.len();
                parts -= 1;
            }
        }
    }

    /// Merges the hour files of every day that ended before `before` into one day file,
    /// then removes the hour files. A crash in between leaves both; reads de-duplicate and
    /// the next compaction finishes the job.
    fn compact(&mut self, before: TimestampNs) -> Result<Vec<PathBuf>> {
        let mut done = Vec::new();
        if !self.root.exists() {
            return Ok(done);
        }
        let groups: Vec<(Option<Interval>, PathBuf)> = if R::BY_INTERVAL {
            read_dirs(&self.root)?
                .into_iter()
                .filter_map(|d| {
                    let iv = dir_value(&d, "interval").and_then(|v| v.parse::<Interval>().ok())?;
                    Some((Some(iv), d))
                })
                .collect()
        } else {
            vec![(None, self.root.clone())]
        };
        for (interval, iv_dir) in groups {
            for date_dir in read_dirs(&iv_dir)? {
                let Some(day) = dir_value(&date_dir, "date").and_then(|d| parse_date(&d)) else {
                    continue;
                };
                if day + DAY_NS > before {
                    continue;
                }
                let hourly: Vec<PathBuf> = list_parquet(&date_dir)?
                    .into_iter()
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.contains('T'))
                    })
                    .collect();
                if hourly.is_empty() {
                    continue;
                }
                let daily = PartKey {
                    interval,
                    span: Span::Day(day),
                };
                let mut map = self.load(daily)?;
                for f in &hourly {
                    for row in read_file::<R>(f, interval)? {
                        Self::merge(&mut map, row);
                    }
                }
                let all: Vec<R> = map.values().cloned().collect();
                let path = self.path(daily);
                write_file::<R>(&path, &all)?;
                for f in &hourly {
                    fs::remove_file(f).map_err(io_err(f))?;
                }
                self.cache.retain(|k, _| {
                    !(k.interval == interval && k.start() >= day && k.start() < day + DAY_NS)
                });
                done.push(path);
            }
        }
        Ok(done)
    }

    fn read(&self, interval: Option<Interval>) -> Result<Vec<R>> {
        let dir = match interval {
            Some(iv) => self.root.join(format!("interval={iv}")),
            None => self.root.clone(),
        };
        let mut map = BTreeMap::new();
        let mut files = Vec::new();
        collect_parquet(&dir, &mut files)?;
        files.sort();
        for f in files {
            for row in read_file::<R>(&f, interval)? {
                Self::merge(&mut map, row);
            }
        }
        Ok(map.into_values().collect())
    }
}

/// Writer and reader of the lake rooted at a directory.
pub struct Lake {
    root: PathBuf,
    bars: Dataset<Bar>,
    signals: Dataset<Signal>,
    quotes: Dataset<Quote>,
}

impl Lake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Lake {
            bars: Dataset::new(&root),
            signals: Dataset::new(&root),
            quotes: Dataset::new(&root),
            root,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Merges bars into their files (a higher or equal revision replaces) and rewrites
    /// each touched file atomically. Returns the files written.
    pub fn write_bars(&mut self, bars: &[Bar]) -> Result<Vec<PathBuf>> {
        self.bars.write(bars)
    }

    pub fn write_signals(&mut self, signals: &[Signal]) -> Result<Vec<PathBuf>> {
        self.signals.write(signals)
    }

    /// Merges raw quotes into their hour files (identical quotes are kept once).
    pub fn write_quotes(&mut self, quotes: &[Quote]) -> Result<Vec<PathBuf>> {
        self.quotes.write(quotes)
    }

    /// Every quote in the lake, sorted by (ts_event, venue, symbol, trade id).
    pub fn read_quotes(&self) -> Result<Vec<Quote>> {
        self.quotes.read(None)
    }

    /// Compacts every day that ended before `before` into daily files.
    pub fn compact(&mut self, before: TimestampNs) -> Result<Vec<PathBuf>> {
        let mut done = self.bars.compact(before)?;
        done.extend(self.signals.compact(before)?);
        done.extend(self.quotes.compact(before)?);
        Ok(done)
    }

    /// Every bar of an interval in the lake, sorted by (bucket_start, venue, symbol).
    pub fn read_bars(&self, interval: Interval) -> Result<Vec<Bar>> {
        self.bars.read(Some(interval))
    }

    /// Every signal of an interval, sorted by (bucket_start, venue, symbol, kind).
    pub fn read_signals(&self, interval: Interval) -> Result<Vec<Signal>> {
        self.signals.read(Some(interval))
    }
}

fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn list_parquet(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn dir_value(dir: &Path, key: &str) -> Option<String> {
    dir.file_name()?
        .to_str()?
        .strip_prefix(&format!("{key}="))
        .map(str::to_string)
}

fn parse_date(d: &str) -> Option<TimestampNs> {
    pricestream_schemas::time::parse_time(&format!("{d}T00:00:00Z"))
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

/// Encodes one record batch as the bytes of a lake Parquet file (the lake's writer
/// settings), without touching the disk.
pub fn encode_parquet(schema: SchemaRef, batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096 + batch.num_rows() * 64);
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(writer_props()))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(buf)
}

/// Writes rows (already in key order) to `path` atomically.
fn write_file<R: LakeRecord>(path: &Path, rows: &[R]) -> Result<()> {
    write_batch(path, R::schema(), &R::to_batch(rows)?)
}

/// Writes one record batch as a Parquet file at `path`, atomically.
pub(crate) fn write_batch(path: &Path, schema: SchemaRef, batch: &RecordBatch) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let buf = encode_parquet(schema, batch)?;
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

fn read_file<R: LakeRecord>(path: &Path, interval: Option<Interval>) -> Result<Vec<R>> {
    let mut out = Vec::new();
    for batch in read_batches(path)? {
        out.extend(R::from_batch(&batch, interval)?);
    }
    Ok(out)
}

/// Reads every record batch of a Parquet file.
pub(crate) fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(io_err(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Reads one bar file of the lake.
pub fn read_bar_file(path: &Path, interval: Interval) -> Result<Vec<Bar>> {
    read_file::<Bar>(path, Some(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: i64 = 1_763_683_200_000_000_000; // 2025-11-21

    fn bar(sym: &str, minute: i64, rev: u32, close: f64) -> Bar {
        Bar {
            venue: Venue::Synthetic,
            symbol: Symbol::new(sym).unwrap(),
            interval: Interval::M1,
            bucket_start: DAY0 + minute * 60_000_000_000,
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

    fn files(root: &Path) -> Vec<PathBuf> {
        let mut names = Vec::new();
        collect_parquet(root, &mut names).unwrap();
        names.sort();
        names
    }

    #[test]
    fn writes_hive_partitions_and_merges_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(dir.path());
        let written = lake
            .write_bars(&[bar("BTC-USDT", 0, 0, 1.0), bar("ETH-USDT", 61, 0, 2.0)])
            .unwrap();
        assert_eq!(written.len(), 2);
        // 1m bars: ten minutes per open file
        assert!(
            written[0].ends_with("bars/interval=1m/date=2025-11-21/bars-2025-11-21T0000.parquet")
        );
        assert!(
            written[1].ends_with("bars/interval=1m/date=2025-11-21/bars-2025-11-21T0100.parquet")
        );
        // a revision replaces, an older revision does not
        lake.write_bars(&[bar("BTC-USDT", 0, 2, 1.5)]).unwrap();
        lake.write_bars(&[bar("BTC-USDT", 0, 1, 9.9)]).unwrap();
        let all = Lake::new(dir.path()).read_bars(Interval::M1).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].close, 1.5);
        assert_eq!(all[0].revision, 2);
        assert_eq!(files(dir.path()).len(), 2, "no temp files left behind");
    }

    #[test]
    fn open_files_cover_ten_minutes_of_1m_bars_and_an_hour_of_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(dir.path());
        let at = |interval, minute| Bar {
            interval,
            ..bar("BTC-USDT", minute, 0, 1.0)
        };
        let written = lake
            .write_bars(&[
                at(Interval::M1, 13 * 60 + 17),
                at(Interval::M1, 13 * 60 + 19),
                at(Interval::M5, 13 * 60 + 15),
                at(Interval::M5, 13 * 60 + 55),
            ])
            .unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "bars/interval=1m/date=2025-11-21/bars-2025-11-21T1310.parquet",
                "bars/interval=5m/date=2025-11-21/bars-2025-11-21T13.parquet",
            ]
        );
        assert_eq!(lake.read_bars(Interval::M1).unwrap().len(), 2);
        assert_eq!(lake.read_bars(Interval::M5).unwrap().len(), 2);
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
        assert!(la.write_bars(&[]).unwrap().is_empty());
        let p = "bars/interval=1m/date=2025-11-21/bars-2025-11-21T0010.parquet";
        assert_eq!(
            fs::read(a.path().join(p)).unwrap(),
            fs::read(b.path().join(p)).unwrap()
        );
    }

    #[test]
    fn finished_days_are_compacted_into_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(dir.path());
        // three hours of day 0, one hour of day 1
        let bars: Vec<Bar> = [0, 70, 130, 24 * 60 + 5]
            .iter()
            .map(|&m| bar("BTC-USDT", m, 0, 1.0))
            .collect();
        lake.write_bars(&bars).unwrap();
        assert_eq!(files(dir.path()).len(), 4);
        let before = lake.read_bars(Interval::M1).unwrap();
        // day 0 is over, day 1 is not
        let done = lake.compact(DAY0 + DAY_NS + 1).unwrap();
        assert_eq!(done.len(), 1);
        let names: Vec<String> = files(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["bars-2025-11-21.parquet", "bars-2025-11-22T0000.parquet"]
        );
        assert_eq!(lake.read_bars(Interval::M1).unwrap(), before);
        // a late revision for the compacted day goes into the day file
        lake.write_bars(&[bar("BTC-USDT", 70, 1, 7.0)]).unwrap();
        assert_eq!(files(dir.path()).len(), 2);
        let after = Lake::new(dir.path()).read_bars(Interval::M1).unwrap();
        assert_eq!(after.len(), 4);
        assert_eq!(after[1].close, 7.0);
    }

    #[test]
    fn quotes_are_partitioned_by_date_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(dir.path());
        let q = |t: i64, id: u64| Quote {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            kind: pricestream_schemas::QuoteKind::Trade,
            price: 100.0,
            size: 1.0,
            side: None,
            trade_id: Some(id),
            bid: None,
            ask: None,
            ts_event: DAY0 + t,
            ts_ingest: DAY0 + t,
        };
        let w = lake.write_quotes(&[q(5, 2), q(1, 1)]).unwrap();
        assert!(
            w[0].ends_with("quotes/date=2025-11-21/quotes-2025-11-21T0000.parquet"),
            "{w:?}"
        );
        // a replayed quote is kept once
        lake.write_quotes(&[q(1, 1), q(DAY_NS + 1, 3)]).unwrap();
        let all = lake.read_quotes().unwrap();
        assert_eq!(
            all.iter().map(|q| q.trade_id.unwrap()).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        lake.compact(DAY0 + DAY_NS).unwrap();
        assert_eq!(files(dir.path()).len(), 2);
        assert_eq!(lake.read_quotes().unwrap(), all);
    }

    #[test]
    fn signals_have_their_own_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(dir.path());
        let s = Signal {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::H1,
            kind: SignalKind::GoldenCross,
            bucket_start: DAY0,
            value: 1.0,
            ts_event: 1,
            ts_ingest: 1,
        };
        let w = lake
            .write_signals(&[
                s.clone(),
                Signal {
                    kind: SignalKind::RsiOverbought,
                    value: 71.0,
                    ..s.clone()
                },
            ])
            .unwrap();
        assert!(w[0].ends_with("signals/interval=1h/date=2025-11-21/signals-2025-11-21T00.parquet"));
        assert_eq!(lake.read_signals(Interval::H1).unwrap().len(), 2);
    }
}
