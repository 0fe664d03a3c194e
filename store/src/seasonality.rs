//! The seasonality dataset of the lake: `seasonality/seasonality.parquet`, one row per
//! (venue, symbol, interval, season, bucket), rewritten atomically by each refresh.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use pricestream_schemas::{Interval, Symbol, Venue};
use serde::Serialize;

use crate::lake::{read_batches, write_batch};
use crate::{Result, StoreError};

/// One seasonal statistic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeasonalityRow {
    pub venue: Venue,
    pub symbol: Symbol,
    pub interval: Interval,
    /// `hour_of_day` (bucket 0–23, UTC) or `weekday` (0 = Monday).
    pub season: String,
    pub bucket: u32,
    pub count: u64,
    pub mean_return: f64,
    pub stdev_return: f64,
    pub mean_abs_return: f64,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("venue", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("interval", DataType::Utf8, false),
        Field::new("season", DataType::Utf8, false),
        Field::new("bucket", DataType::UInt32, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("mean_return", DataType::Float64, false),
        Field::new("stdev_return", DataType::Float64, false),
        Field::new("mean_abs_return", DataType::Float64, false),
    ]))
}

/// Path of the dataset under a lake root.
pub fn path(lake_root: &Path) -> PathBuf {
    lake_root.join("seasonality").join("seasonality.parquet")
}

/// Replaces the dataset with `rows`.
pub fn write(lake_root: &Path, rows: &[SeasonalityRow]) -> Result<()> {
    let mut s = [
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    ];
    let (mut bucket, mut count) = (UInt32Builder::new(), UInt64Builder::new());
    let mut f = [
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
    ];
    for r in rows {
        s[0].append_value(r.venue.as_str());
        s[1].append_value(r.symbol.as_str());
        s[2].append_value(r.interval.as_str());
        s[3].append_value(&r.season);
        bucket.append_value(r.bucket);
        count.append_value(r.count);
        f[0].append_value(r.mean_return);
        f[1].append_value(r.stdev_return);
        f[2].append_value(r.mean_abs_return);
    }
    let [mut s0, mut s1, mut s2, mut s3] = s;
    let [mut f0, mut f1, mut f2] = f;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(s0.finish()),
        Arc::new(s1.finish()),
        Arc::new(s2.finish()),
        Arc::new(s3.finish()),
        Arc::new(bucket.finish()),
        Arc::new(count.finish()),
        Arc::new(f0.finish()),
        Arc::new(f1.finish()),
        Arc::new(f2.finish()),
    ];
    let batch = RecordBatch::try_new(schema(), cols)?;
    write_batch(&path(lake_root), schema(), &batch)
}

fn bad(name: &str) -> StoreError {
    StoreError::Data(pricestream_schemas::SchemaError::Invalid {
        field: "seasonality",
        message: format!("column {name} is missing or has the wrong type"),
    })
}

/// Reads the dataset (empty when no refresh has run yet).
pub fn read(lake_root: &Path) -> Result<Vec<SeasonalityRow>> {
    let p = path(lake_root);
    if !p.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for b in read_batches(&p)? {
        let s = |n: &str| {
            b.column_by_name(n)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| bad(n))
        };
        let f = |n: &str| {
            b.column_by_name(n)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .ok_or_else(|| bad(n))
        };
        let (venue, symbol, interval, season) =
            (s("venue")?, s("symbol")?, s("interval")?, s("season")?);
        let bucket = b
            .column_by_name("bucket")
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(|| bad("bucket"))?;
        let count = b
            .column_by_name("count")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| bad("count"))?;
        let (mean, sd, abs) = (f("mean_return")?, f("stdev_return")?, f("mean_abs_return")?);
        for i in 0..b.num_rows() {
            out.push(SeasonalityRow {
                venue: venue.value(i).parse()?,
                symbol: Symbol::new(symbol.value(i))?,
                interval: interval.value(i).parse()?,
                season: season.value(i).to_string(),
                bucket: bucket.value(i),
                count: count.value(i),
                mean_return: mean.value(i),
                stdev_return: sd.value(i),
                mean_abs_return: abs.value(i),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        let rows = vec![SeasonalityRow {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::H1,
            season: "hour_of_day".into(),
            bucket: 14,
            count: 30,
            mean_return: 0.001,
            stdev_return: 0.02,
            mean_abs_return: 0.015,
        }];
        write(dir.path(), &rows).unwrap();
        assert_eq!(read(dir.path()).unwrap(), rows);
    }
}
