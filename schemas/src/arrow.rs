//! Arrow schemas for the lake and the Arrow IPC API, from one place, with encode/decode.
//!
//! Timestamps are `timestamp[ns, tz=UTC]`. Lake files leave out the hive partition
//! columns (`interval`, `date`): readers take them from the path.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampNanosecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{Result, SchemaError};
use crate::events::{Bar, Quote, QuoteKind, Side, Signal, SignalKind};
use crate::market::{Interval, Symbol};

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// Schema of bars. `with_interval = false` gives the lake file schema.
pub fn bar_schema(with_interval: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("venue", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
    ];
    if with_interval {
        fields.push(Field::new("interval", DataType::Utf8, false));
    }
    fields.extend([
        Field::new("bucket_start", ts_type(), false),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Float64, false),
        Field::new("notional", DataType::Float64, false),
        Field::new("vwap", DataType::Float64, false),
        Field::new("trade_count", DataType::UInt64, false),
        Field::new("revision", DataType::UInt32, false),
        Field::new("ts_event", ts_type(), false),
        Field::new("ts_ingest", ts_type(), false),
        // derived (`Bar::is_filled`), for readers; ignored when read back
        Field::new("filled", DataType::Boolean, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// Schema of quotes in the lake.
pub fn quote_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("venue", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("size", DataType::Float64, false),
        Field::new("side", DataType::Utf8, true),
        Field::new("trade_id", DataType::UInt64, true),
        Field::new("bid", DataType::Float64, true),
        Field::new("ask", DataType::Float64, true),
        Field::new("ts_event", ts_type(), false),
        Field::new("ts_ingest", ts_type(), false),
    ]))
}

fn f64_col(values: impl Iterator<Item = f64>) -> ArrayRef {
    let mut b = Float64Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn ts_col(values: impl Iterator<Item = i64>) -> ArrayRef {
    let mut b = TimestampNanosecondBuilder::new().with_timezone("UTC");
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn str_col<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringBuilder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

/// Encodes bars as a record batch.
pub fn bars_to_batch(bars: &[Bar], with_interval: bool) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = vec![
        str_col(bars.iter().map(|b| b.venue.as_str())),
        str_col(bars.iter().map(|b| b.symbol.as_str())),
    ];
    if with_interval {
        cols.push(str_col(bars.iter().map(|b| b.interval.as_str())));
    }
    let mut trade_count = UInt64Builder::new();
    let mut revision = UInt32Builder::new();
    for b in bars {
        trade_count.append_value(b.trade_count);
        revision.append_value(b.revision);
    }
    cols.extend([
        ts_col(bars.iter().map(|b| b.bucket_start)),
        f64_col(bars.iter().map(|b| b.open)),
        f64_col(bars.iter().map(|b| b.high)),
        f64_col(bars.iter().map(|b| b.low)),
        f64_col(bars.iter().map(|b| b.close)),
        f64_col(bars.iter().map(|b| b.volume)),
        f64_col(bars.iter().map(|b| b.notional)),
        f64_col(bars.iter().map(|b| b.vwap)),
        Arc::new(trade_count.finish()) as ArrayRef,
        Arc::new(revision.finish()) as ArrayRef,
        ts_col(bars.iter().map(|b| b.ts_event)),
        ts_col(bars.iter().map(|b| b.ts_ingest)),
        Arc::new(BooleanArray::from_iter(
            bars.iter().map(|b| Some(b.is_filled())),
        )) as ArrayRef,
    ]);
    Ok(RecordBatch::try_new(bar_schema(with_interval), cols)?)
}

fn column<'a>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or(SchemaError::Invalid {
        field: "arrow",
        message: format!("missing column {name}"),
    })
}

fn bad_type(name: &'static str) -> SchemaError {
    SchemaError::Invalid {
        field: "arrow",
        message: format!("column {name} has the wrong type"),
    }
}

macro_rules! typed {
    ($batch:expr, $name:literal, $as:ident, $t:ty) => {
        column($batch, $name)?
            .$as::<$t>()
            .ok_or_else(|| bad_type($name))?
    };
}

fn strings<'a>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a arrow_array::StringArray> {
    column(batch, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad_type(name))
}

/// The interval of row `i`: from the batch's `interval` column, else the one given.
fn interval_at(
    column: Option<&arrow_array::StringArray>,
    given: Option<Interval>,
    i: usize,
) -> Result<Interval> {
    match (column, given) {
        (Some(col), _) => col.value(i).parse(),
        (None, Some(iv)) => Ok(iv),
        (None, None) => Err(SchemaError::Invalid {
            field: "interval",
            message: "batch has no interval column and none was given".into(),
        }),
    }
}

/// Decodes bars from a record batch. `interval` is used when the batch has no
/// `interval` column (lake files, where it is a partition key).
pub fn bars_from_batch(batch: &RecordBatch, interval: Option<Interval>) -> Result<Vec<Bar>> {
    let venue = strings(batch, "venue")?;
    let symbol = strings(batch, "symbol")?;
    let intervals = batch
        .column_by_name("interval")
        .and_then(|c| c.as_string_opt::<i32>());
    let bucket_start = typed!(
        batch,
        "bucket_start",
        as_primitive_opt,
        TimestampNanosecondType
    );
    let open = typed!(batch, "open", as_primitive_opt, Float64Type);
    let high = typed!(batch, "high", as_primitive_opt, Float64Type);
    let low = typed!(batch, "low", as_primitive_opt, Float64Type);
    let close = typed!(batch, "close", as_primitive_opt, Float64Type);
    let volume = typed!(batch, "volume", as_primitive_opt, Float64Type);
    let notional = typed!(batch, "notional", as_primitive_opt, Float64Type);
    let vwap = typed!(batch, "vwap", as_primitive_opt, Float64Type);
    let trade_count = typed!(batch, "trade_count", as_primitive_opt, UInt64Type);
    let revision = typed!(batch, "revision", as_primitive_opt, UInt32Type);
    let ts_event = typed!(batch, "ts_event", as_primitive_opt, TimestampNanosecondType);
    let ts_ingest = typed!(
        batch,
        "ts_ingest",
        as_primitive_opt,
        TimestampNanosecondType
    );
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let interval = interval_at(intervals, interval, i)?;
        out.push(Bar {
            venue: venue.value(i).parse()?,
            symbol: Symbol::new(symbol.value(i))?,
            interval,
            bucket_start: bucket_start.value(i),
            open: open.value(i),
            high: high.value(i),
            low: low.value(i),
            close: close.value(i),
            volume: volume.value(i),
            notional: notional.value(i),
            vwap: vwap.value(i),
            trade_count: trade_count.value(i),
            revision: revision.value(i),
            ts_event: ts_event.value(i),
            ts_ingest: ts_ingest.value(i),
        });
    }
    Ok(out)
}

fn kind_str(k: QuoteKind) -> &'static str {
    match k {
        QuoteKind::Trade => "trade",
        QuoteKind::Ticker => "ticker",
    }
}

fn side_str(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// Encodes quotes as a record batch.
pub fn quotes_to_batch(quotes: &[Quote]) -> Result<RecordBatch> {
    let mut side = StringBuilder::new();
    let mut trade_id = UInt64Builder::new();
    let mut bid = Float64Builder::new();
    let mut ask = Float64Builder::new();
    for q in quotes {
        side.append_option(q.side.map(side_str));
        trade_id.append_option(q.trade_id);
        bid.append_option(q.bid);
        ask.append_option(q.ask);
    }
    let cols: Vec<ArrayRef> = vec![
        str_col(quotes.iter().map(|q| q.venue.as_str())),
        str_col(quotes.iter().map(|q| q.symbol.as_str())),
        str_col(quotes.iter().map(|q| kind_str(q.kind))),
        f64_col(quotes.iter().map(|q| q.price)),
        f64_col(quotes.iter().map(|q| q.size)),
        Arc::new(side.finish()),
        Arc::new(trade_id.finish()),
        Arc::new(bid.finish()),
        Arc::new(ask.finish()),
        ts_col(quotes.iter().map(|q| q.ts_event)),
        ts_col(quotes.iter().map(|q| q.ts_ingest)),
    ];
    Ok(RecordBatch::try_new(quote_schema(), cols)?)
}

/// Decodes quotes from a record batch.
pub fn quotes_from_batch(batch: &RecordBatch) -> Result<Vec<Quote>> {
    let venue = strings(batch, "venue")?;
    let symbol = strings(batch, "symbol")?;
    let kind = strings(batch, "kind")?;
    let side = strings(batch, "side")?;
    let price = typed!(batch, "price", as_primitive_opt, Float64Type);
    let size = typed!(batch, "size", as_primitive_opt, Float64Type);
    let trade_id = typed!(batch, "trade_id", as_primitive_opt, UInt64Type);
    let bid = typed!(batch, "bid", as_primitive_opt, Float64Type);
    let ask = typed!(batch, "ask", as_primitive_opt, Float64Type);
    let ts_event = typed!(batch, "ts_event", as_primitive_opt, TimestampNanosecondType);
    let ts_ingest = typed!(
        batch,
        "ts_ingest",
        as_primitive_opt,
        TimestampNanosecondType
    );
    let opt = |a: &arrow_array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        out.push(Quote {
            venue: venue.value(i).parse()?,
            symbol: Symbol::new(symbol.value(i))?,
            kind: match kind.value(i) {
                "trade" => QuoteKind::Trade,
                "ticker" => QuoteKind::Ticker,
                other => {
                    return Err(SchemaError::Invalid {
                        field: "kind",
                        message: format!("unknown quote kind {other:?}"),
                    })
                }
            },
            price: price.value(i),
            size: size.value(i),
            side: match (side.is_null(i), side.value(i)) {
                (true, _) => None,
                (false, "buy") => Some(Side::Buy),
                (false, _) => Some(Side::Sell),
            },
            trade_id: (!trade_id.is_null(i)).then(|| trade_id.value(i)),
            bid: opt(bid, i),
            ask: opt(ask, i),
            ts_event: ts_event.value(i),
            ts_ingest: ts_ingest.value(i),
        });
    }
    Ok(out)
}

/// Schema of signals. `with_interval = false` gives the lake file schema.
pub fn signal_schema(with_interval: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("venue", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
    ];
    if with_interval {
        fields.push(Field::new("interval", DataType::Utf8, false));
    }
    fields.extend([
        Field::new("kind", DataType::Utf8, false),
        Field::new("bucket_start", ts_type(), false),
        Field::new("value", DataType::Float64, false),
        Field::new("ts_event", ts_type(), false),
        Field::new("ts_ingest", ts_type(), false),
    ]);
    Arc::new(Schema::new(fields))
}

/// Encodes signals as a record batch.
pub fn signals_to_batch(signals: &[Signal], with_interval: bool) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = vec![
        str_col(signals.iter().map(|s| s.venue.as_str())),
        str_col(signals.iter().map(|s| s.symbol.as_str())),
    ];
    if with_interval {
        cols.push(str_col(signals.iter().map(|s| s.interval.as_str())));
    }
    cols.extend([
        str_col(signals.iter().map(|s| s.kind.as_str())),
        ts_col(signals.iter().map(|s| s.bucket_start)),
        f64_col(signals.iter().map(|s| s.value)),
        ts_col(signals.iter().map(|s| s.ts_event)),
        ts_col(signals.iter().map(|s| s.ts_ingest)),
    ]);
    Ok(RecordBatch::try_new(signal_schema(with_interval), cols)?)
}

/// Decodes signals; `interval` is used when the batch has no `interval` column.
pub fn signals_from_batch(batch: &RecordBatch, interval: Option<Interval>) -> Result<Vec<Signal>> {
    let venue = strings(batch, "venue")?;
    let symbol = strings(batch, "symbol")?;
    let kind = strings(batch, "kind")?;
    let intervals = batch
        .column_by_name("interval")
        .and_then(|c| c.as_string_opt::<i32>());
    let bucket_start = typed!(
        batch,
        "bucket_start",
        as_primitive_opt,
        TimestampNanosecondType
    );
    let value = typed!(batch, "value", as_primitive_opt, Float64Type);
    let ts_event = typed!(batch, "ts_event", as_primitive_opt, TimestampNanosecondType);
    let ts_ingest = typed!(
        batch,
        "ts_ingest",
        as_primitive_opt,
        TimestampNanosecondType
    );
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let interval = interval_at(intervals, interval, i)?;
        let kind: SignalKind = kind.value(i).parse()?;
        out.push(Signal {
            venue: venue.value(i).parse()?,
            symbol: Symbol::new(symbol.value(i))?,
            interval,
            kind,
            bucket_start: bucket_start.value(i),
            value: value.value(i),
            ts_event: ts_event.value(i),
            ts_ingest: ts_ingest.value(i),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Venue;

    fn bar(i: i64) -> Bar {
        Bar {
            venue: Venue::Synthetic,
            symbol: Symbol::new("ETH-USDT").unwrap(),
            interval: Interval::M1,
            bucket_start: i * Interval::M1.nanos(),
            open: 1.5 + i as f64,
            high: 2.0 + i as f64,
            low: 1.0 + i as f64,
            close: 1.75 + i as f64,
            volume: 10.0,
            notional: 15.0,
            vwap: 1.5,
            trade_count: 7,
            revision: 2,
            ts_event: 123,
            ts_ingest: 456,
        }
    }

    #[test]
    fn bars_round_trip_with_and_without_interval() {
        let bars: Vec<Bar> = (0..5).map(bar).collect();
        let batch = bars_to_batch(&bars, true).unwrap();
        assert_eq!(bars_from_batch(&batch, None).unwrap(), bars);
        let lake = bars_to_batch(&bars, false).unwrap();
        assert!(lake.column_by_name("interval").is_none());
        assert_eq!(bars_from_batch(&lake, Some(Interval::M1)).unwrap(), bars);
        assert!(bars_from_batch(&lake, None).is_err());
    }

    #[test]
    fn signals_round_trip() {
        let sig = Signal {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::H1,
            kind: SignalKind::BandReturn,
            bucket_start: 3_600_000_000_000,
            value: -1.25,
            ts_event: 5,
            ts_ingest: 6,
        };
        let sigs = vec![
            sig.clone(),
            Signal {
                kind: SignalKind::GoldenCross,
                ..sig
            },
        ];
        assert_eq!(
            signals_from_batch(&signals_to_batch(&sigs, true).unwrap(), None).unwrap(),
            sigs
        );
        let lake = signals_to_batch(&sigs, false).unwrap();
        assert_eq!(signals_from_batch(&lake, Some(Interval::H1)).unwrap(), sigs);
    }

    #[test]
    fn quotes_round_trip_with_nulls() {
        let q = Quote {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            kind: QuoteKind::Trade,
            price: 65_000.5,
            size: 0.25,
            side: Some(Side::Sell),
            trade_id: Some(42),
            bid: None,
            ask: Some(65_001.0),
            ts_event: 1,
            ts_ingest: 2,
        };
        let mut t = q.clone();
        t.kind = QuoteKind::Ticker;
        t.side = None;
        t.trade_id = None;
        let quotes = vec![q, t];
        let batch = quotes_to_batch(&quotes).unwrap();
        assert_eq!(quotes_from_batch(&batch).unwrap(), quotes);
    }
}
