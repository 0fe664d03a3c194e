//! The same seed and the same event stream give byte-identical bars, whatever the number
//! of workers, and those bars equal a direct aggregation of the stream.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pricestream_analytics::OhlcvAcc;
use pricestream_analytics::{batch_signals, rollup, SignalParams};
use pricestream_bus::{InProcessBus, QuotePublisher, QuoteSource};
use pricestream_connectors::synthetic::SyntheticMarket;
use pricestream_pipeline::{run, PipelineConfig, PipelineError, SinkBatch, SourceFactory};
use pricestream_schemas::{codec, Bar, Interval, Quote, QuoteKind, Signal, Symbol};
use tokio::sync::mpsc;

const START: i64 = 1_763_683_200_000_000_000; // 2025-11-21T00:00:00Z

fn stream(seed: u64, n: usize) -> Vec<Quote> {
    let syms: Vec<Symbol> = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT", "XRP-USDT"]
        .iter()
        .map(|s| Symbol::new(s).unwrap())
        .collect();
    SyntheticMarket::new(seed, &syms, START, 2.0, 0.8, 0.05, 1_500)
        .take(n)
        .collect()
}

type Key = (String, i64);

struct Run {
    /// every bar emission, all intervals
    all: Vec<Bar>,
    /// final 1m bar per key
    m1: BTreeMap<Key, Bar>,
    /// final bar per (interval, symbol, bucket)
    bars: BTreeMap<(Interval, String, i64), Bar>,
    signals: Vec<Signal>,
    dead: u64,
}

/// Runs the dataflow over `quotes` and collects its output.
async fn run_pipeline(quotes: &[Quote], workers: usize) -> Run {
    let cfg = PipelineConfig {
        workers,
        ..PipelineConfig::default()
    };
    run_with(quotes, cfg).await
}

/// Each worker's source: its partitions of `bus`.
fn sources(bus: &Arc<InProcessBus>) -> SourceFactory {
    let bus = Arc::clone(bus);
    Arc::new(move |i, n| {
        bus.source(i, n)
            .map(|s| Box::new(s) as Box<dyn QuoteSource>)
    })
}

/// Runs the dataflow over `bus` on a blocking thread: its output and its result.
fn start(
    bus: &Arc<InProcessBus>,
    cfg: PipelineConfig,
) -> (
    mpsc::Receiver<SinkBatch>,
    tokio::task::JoinHandle<pricestream_pipeline::Result<()>>,
) {
    let factory = sources(bus);
    let (tx, rx) = mpsc::channel::<SinkBatch>(64);
    let handle = tokio::task::spawn_blocking(move || {
        run(
            &cfg,
            factory,
            tx,
            Arc::new(AtomicBool::new(false)),
            Default::default(),
        )
    });
    (rx, handle)
}

async fn run_with(quotes: &[Quote], cfg: PipelineConfig) -> Run {
    let bus = InProcessBus::new(4, quotes.len() + 1);
    let publisher = bus.publisher().unwrap();
    publisher.publish(quotes.to_vec()).await.unwrap();
    drop(publisher);
    bus.close();
    let (mut rx, handle) = start(&bus, cfg);
    let mut all = Vec::new();
    let mut signals = Vec::new();
    let mut dead = 0;
    while let Some(batch) = rx.recv().await {
        all.extend(batch.bars);
        signals.extend(batch.signals);
        dead += batch.dead.len() as u64;
    }
    handle.await.unwrap().unwrap();
    let mut bars: BTreeMap<(Interval, String, i64), Bar> = BTreeMap::new();
    for b in &all {
        let key = (b.interval, b.symbol.to_string(), b.bucket_start);
        match bars.get(&key) {
            Some(old) if old.revision > b.revision => {}
            _ => {
                bars.insert(key, b.clone());
            }
        }
    }
    let m1 = bars
        .iter()
        .filter(|(k, _)| k.0 == Interval::M1)
        .map(|(k, b)| ((k.1.clone(), k.2), b.clone()))
        .collect();
    signals.sort_by(|a, b| {
        (a.interval, a.symbol.as_str(), a.bucket_start, a.kind as u8).cmp(&(
            b.interval,
            b.symbol.as_str(),
            b.bucket_start,
            b.kind as u8,
        ))
    });
    Run {
        all,
        m1,
        bars,
        signals,
        dead,
    }
}

async fn process(quotes: &[Quote], workers: usize) -> (Vec<Bar>, BTreeMap<Key, Bar>, u64) {
    let r = run_pipeline(quotes, workers).await;
    (r.all, r.m1, r.dead)
}

fn bytes(bars: &BTreeMap<Key, Bar>) -> Vec<u8> {
    bars.values().flat_map(codec::encode).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_stream_same_bars_for_one_and_two_workers() {
    let quotes = stream(7, 60_000);
    let one = run_pipeline(&quotes, 1).await;
    let one_again = run_pipeline(&quotes, 1).await;
    let two = run_pipeline(&quotes, 2).await;
    assert!(one.m1.len() > 40, "too few bars: {}", one.m1.len());
    let all_bytes = |r: &Run| -> Vec<u8> { r.bars.values().flat_map(codec::encode).collect() };
    let sig_bytes = |r: &Run| -> Vec<u8> { r.signals.iter().flat_map(codec::encode).collect() };
    assert_eq!(all_bytes(&one), all_bytes(&one_again));
    assert_eq!(
        all_bytes(&one),
        all_bytes(&two),
        "bars differ between 1 and 2 workers"
    );
    assert_eq!(
        sig_bytes(&one),
        sig_bytes(&two),
        "signals differ between 1 and 2 workers"
    );
    assert!(!one.signals.is_empty());
    assert_eq!((one.dead, two.dead), (0, 0));

    // a different seed gives different bars
    let (_, other, _) = process(&stream(8, 60_000), 1).await;
    assert_ne!(bytes(&one.m1), bytes(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colocated_input_skips_the_exchange_and_changes_nothing() {
    let quotes = stream(7, 60_000);
    let exchanged = run_pipeline(&quotes, 2).await;
    // 4 bus partitions over 2 workers: every symbol's quotes are read by the worker the
    // exchange would send them to
    assert!(InProcessBus::new(4, 1).colocates(2));
    let colocated = run_with(
        &quotes,
        PipelineConfig {
            workers: 2,
            colocated_input: true,
            ..PipelineConfig::default()
        },
    )
    .await;
    let all_bytes = |r: &Run| -> Vec<u8> { r.bars.values().flat_map(codec::encode).collect() };
    let sig_bytes = |r: &Run| -> Vec<u8> { r.signals.iter().flat_map(codec::encode).collect() };
    assert!(
        colocated.m1.len() > 40,
        "too few bars: {}",
        colocated.m1.len()
    );
    assert_eq!(all_bytes(&exchanged), all_bytes(&colocated));
    assert_eq!(sig_bytes(&exchanged), sig_bytes(&colocated));
    assert_eq!(colocated.dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colocated_input_that_is_not_stops_with_an_error() {
    // 4 partitions over 3 workers: worker 0 reads partitions 0 and 3, and partition 3
    // holds symbols the exchange sends to worker 0, 1 or 2
    let bus = InProcessBus::new(4, 100_000);
    assert!(!bus.colocates(3));
    let quotes = stream(7, 20_000);
    assert!(
        quotes.iter().any(|q| {
            let h = q.symbol.stable_hash();
            u64::from(pricestream_bus::partition_for(&q.symbol, 4)) % 3 != h % 3
        }),
        "every symbol of the stream happens to be read by its own worker"
    );
    let publisher = bus.publisher().unwrap();
    publisher.publish(quotes).await.unwrap();
    drop(publisher);
    bus.close();
    let cfg = PipelineConfig {
        workers: 3,
        colocated_input: true,
        ..PipelineConfig::default()
    };
    let (mut rx, handle) = start(&bus, cfg);
    while rx.recv().await.is_some() {}
    match handle.await.unwrap() {
        Err(PipelineError::Bus(msg)) => assert!(msg.contains("colocated_input"), "{msg}"),
        other => panic!("expected the misrouted record to stop the dataflow, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_equal_a_direct_aggregation() {
    let quotes = stream(11, 30_000);
    let (_, bars, _) = process(&quotes, 2).await;
    let mut direct: BTreeMap<Key, OhlcvAcc> = BTreeMap::new();
    for q in &quotes {
        let key = (q.symbol.to_string(), Interval::M1.bucket_start(q.ts_event));
        let trade = q.kind == QuoteKind::Trade;
        direct
            .entry(key)
            .and_modify(|a| a.add(q.price, q.size, trade, q.ts_event, q.ts_ingest))
            .or_insert_with(|| OhlcvAcc::new(q.price, q.size, trade, q.ts_event, q.ts_ingest));
    }
    assert_eq!(bars.len(), direct.len());
    for (key, acc) in &direct {
        let bar = &bars[key];
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (acc.open, acc.high, acc.low, acc.close),
            "{key:?}"
        );
        assert_eq!(bar.trade_count, acc.trade_count);
        assert!((bar.volume - acc.volume).abs() <= 1e-9 * acc.volume);
        assert!(bar.low <= bar.vwap && bar.vwap <= bar.high);
    }
    let total: u64 = bars.values().map(|b| b.trade_count).sum();
    assert_eq!(
        total,
        quotes.len() as u64,
        "every quote is in exactly one bar"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_revise_or_go_to_the_dead_letter_queue() {
    let mut quotes = stream(5, 20_000);
    let last_ts = quotes.iter().map(|q| q.ts_event).max().unwrap();
    // one quote 30 s late (within the 60 s lateness: a revision) ...
    let mut revising = quotes[0].clone();
    revising.ts_event = Interval::M1.bucket_start(last_ts) - 30_000_000_000;
    revising.ts_ingest = last_ts;
    revising.price *= 1.5; // a new high, so the revision is visible
                           // ... and one 10 minutes late (beyond it: dead-lettered)
    let mut too_late = quotes[1].clone();
    too_late.ts_event = last_ts - 600_000_000_000;
    too_late.ts_ingest = last_ts;
    // put them at the end of their symbols' streams
    let extra = [revising.clone(), too_late];
    let tail: Vec<Quote> = quotes.split_off(quotes.len() - 100);
    quotes.extend(extra);
    quotes.extend(tail);
    let (all, last, dead) = process(&quotes, 1).await;
    assert_eq!(dead, 1, "exactly the too-late quote is dead-lettered");
    let key = (
        revising.symbol.to_string(),
        Interval::M1.bucket_start(revising.ts_event),
    );
    let revised = &last[&key];
    assert_eq!(revised.revision, 1);
    assert_eq!(revised.high, revising.price);
    // whether revision 0 was emitted before the late quote arrived depends on scheduling;
    // no emission of that bar goes beyond revision 1
    assert!(all
        .iter()
        .filter(|b| (b.symbol.to_string(), b.bucket_start) == key)
        .all(|b| b.revision <= 1));
}

/// Batch = stream: the pipeline's rollups equal `analytics::rollup` over its final 1m bars,
/// and its signals equal the batch signal rules over its final bars, per series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_and_signals_equal_batch_recomputation() {
    // about 2 simulated hours, so 1h bars and their signals exist too
    let syms: Vec<Symbol> = ["BTC-USDT", "ETH-USDT"]
        .iter()
        .map(|s| Symbol::new(s).unwrap())
        .collect();
    let quotes: Vec<Quote> = SyntheticMarket::new(3, &syms, START, 4.0, 2.0, 0.05, 1_500)
        .take(60_000)
        .collect();
    let r = run_pipeline(&quotes, 2).await;
    assert_rollups_equal_batch(
        &r,
        &[Interval::M5, Interval::M15, Interval::H1, Interval::D1],
    );
    assert_signals_equal_batch(&r, &syms);
}

/// The run's rollups equal `analytics::rollup` over its final 1m bars.
fn assert_rollups_equal_batch(r: &Run, intervals: &[Interval]) {
    let m1: Vec<Bar> = r.m1.values().cloned().collect();
    for &iv in intervals {
        let mut want = rollup(&m1, iv);
        want.sort_by(|a, b| {
            (a.symbol.as_str(), a.bucket_start).cmp(&(b.symbol.as_str(), b.bucket_start))
        });
        let got: Vec<&Bar> = r
            .bars
            .iter()
            .filter(|(k, _)| k.0 == iv)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(got.len(), want.len(), "{iv}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (g.open, g.high, g.low, g.close, g.trade_count),
                (w.open, w.high, w.low, w.close, w.trade_count),
                "{iv} {}",
                g.bucket_start
            );
            assert_eq!(
                (g.revision, g.ts_event),
                (w.revision, w.ts_event),
                "{iv} {}",
                g.bucket_start
            );
            assert!((g.volume - w.volume).abs() <= 1e-9 * w.volume.max(1.0));
        }
    }
}

/// The run's signals equal the batch signal rules over its final bars, series by series.
fn assert_signals_equal_batch(r: &Run, syms: &[Symbol]) {
    let params = SignalParams::default();
    let mut expected: Vec<Signal> = Vec::new();
    for iv in [Interval::M1, Interval::M5, Interval::H1] {
        for sym in syms {
            let series: Vec<Bar> = r
                .bars
                .iter()
                .filter(|(k, _)| k.0 == iv && k.1 == sym.as_str())
                .map(|(_, b)| b.clone())
                .collect();
            expected.extend(batch_signals(&series, &params));
        }
    }
    expected.sort_by(|a, b| {
        (a.interval, a.symbol.as_str(), a.bucket_start, a.kind as u8).cmp(&(
            b.interval,
            b.symbol.as_str(),
            b.bucket_start,
            b.kind as u8,
        ))
    });
    assert!(
        expected.len() > 10,
        "too few signals to compare: {}",
        expected.len()
    );
    assert_eq!(r.signals.len(), expected.len());
    for (g, w) in r.signals.iter().zip(&expected) {
        assert_eq!(
            (g.interval, &g.symbol, g.bucket_start, g.kind),
            (w.interval, &w.symbol, w.bucket_start, w.kind)
        );
        assert!(
            (g.value - w.value).abs() <= 1e-9 * w.value.abs().max(1.0),
            "{g:?} vs {w:?}"
        );
    }
}

/// Gap filling: every minute between a series' first and last bar has a bar; the minutes
/// without quotes carry the previous close with zero volume, whatever the worker count;
/// rollups and signals over the filled series equal their batch recomputation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_are_filled_with_the_last_close() {
    const MIN: i64 = 60_000_000_000;
    let syms: Vec<Symbol> = ["BTC-USDT", "ETH-USDT"]
        .iter()
        .map(|s| Symbol::new(s).unwrap())
        .collect();
    // holes: ETH minutes 10..25, BTC minutes 40..42 and 60..100 (longer than the limit)
    let hole = |q: &Quote| {
        let m = (q.ts_event - START).div_euclid(MIN);
        match q.symbol.as_str() {
            "ETH-USDT" => (10..25).contains(&m),
            _ => (40..42).contains(&m) || (60..100).contains(&m),
        }
    };
    let quotes: Vec<Quote> = SyntheticMarket::new(3, &syms, START, 4.0, 2.0, 0.05, 1_500)
        .take(60_000)
        .filter(|q| !hole(q))
        .collect();
    let end = quotes.iter().map(|q| q.ts_event).max().unwrap();
    assert!(end > START + 105 * MIN, "the stream must outlast the holes");
    let limit = 30;
    let cfg = |workers| PipelineConfig {
        workers,
        gap_fill_minutes: limit,
        ..PipelineConfig::default()
    };
    let one = run_with(&quotes, cfg(1)).await;
    let two = run_with(&quotes, cfg(2)).await;
    let all_bytes = |r: &Run| -> Vec<u8> { r.bars.values().flat_map(codec::encode).collect() };
    assert_eq!(all_bytes(&one), all_bytes(&two), "1 and 2 workers differ");
    let sig_bytes = |r: &Run| -> Vec<u8> { r.signals.iter().flat_map(codec::encode).collect() };
    assert_eq!(sig_bytes(&one), sig_bytes(&two));

    // independently: the minutes with quotes, per symbol
    let mut real: BTreeMap<&str, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for q in &quotes {
        real.entry(q.symbol.as_str())
            .or_default()
            .insert(Interval::M1.bucket_start(q.ts_event));
    }
    let mut filled = 0;
    for (sym, minutes) in &real {
        let (first, last) = (*minutes.first().unwrap(), *minutes.last().unwrap());
        let mut prev: Option<&Bar> = None;
        let mut run = 0;
        for start in (first..=last).step_by(MIN as usize) {
            let bar = one.m1.get(&(sym.to_string(), start));
            if minutes.contains(&start) {
                let bar = bar.unwrap();
                assert!(!bar.is_filled() && bar.trade_count > 0, "{sym} {start}");
                prev = Some(bar);
                run = 0;
                continue;
            }
            run += 1;
            if run > limit {
                assert!(bar.is_none(), "{sym}: filled past the limit at {start}");
                continue;
            }
            let bar = bar.unwrap_or_else(|| panic!("{sym}: a hole at minute {start}"));
            let p = prev.unwrap();
            assert!(bar.is_filled(), "{bar:?}");
            assert_eq!(
                (bar.open, bar.high, bar.low, bar.close, bar.vwap),
                (p.close, p.close, p.close, p.close, p.close)
            );
            assert_eq!((bar.volume, bar.trade_count, bar.revision), (0.0, 0, 0));
            assert_eq!(bar.ts_event, p.ts_event);
            filled += 1;
        }
    }
    assert_eq!(filled, 15 + 2 + limit as usize, "ETH 15, BTC 2 + the limit");
    // no fill after a series' last bar (the input ended)
    for (sym, minutes) in &real {
        let last = *minutes.last().unwrap();
        assert!(!one.m1.keys().any(|(s, t)| s == sym && *t > last));
    }

    // rollups of the filled series: fills count only where a bucket has no real bar
    assert_rollups_equal_batch(&one, &[Interval::M5, Interval::M15, Interval::H1]);
    // ETH 10:10–10:15 and 10:15–10:20 were all fills: the 5m bars are fills too
    let five = &one.bars[&(Interval::M5, "ETH-USDT".to_string(), START + 15 * MIN)];
    assert!(five.is_filled() && five.volume == 0.0, "{five:?}");

    // signals run over the filled series and equal the batch rules over it
    assert_signals_equal_batch(&one, &syms);
}

/// Real recorded Binance aggTrade messages through the pipeline give the 1m bars an
/// independent pandas aggregation gives (analytics/test_data/trade_bars_binance.csv).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binance_trades_make_the_reference_bars() {
    use pricestream_schemas::{Side, Venue};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let reference =
        std::fs::read_to_string(root.join("analytics/test_data/trade_bars_binance.csv")).unwrap();
    let canonical = |s: &str| -> Symbol {
        let quote = ["USDT", "BUSD", "USD", "BTC", "ETH", "BNB"]
            .iter()
            .find(|q| s.ends_with(*q))
            .unwrap();
        Symbol::new(&format!("{}-{}", &s[..s.len() - quote.len()], quote)).unwrap()
    };
    let files: std::collections::BTreeSet<&str> = reference
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let mut compared = 0;
    for file in files {
        let text =
            std::fs::read_to_string(root.join("../shared/fixtures/binance/ws").join(file)).unwrap();
        let mut quotes = Vec::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let msg = &v["msg"];
            let data = if msg.get("data").is_some() {
                &msg["data"]
            } else {
                msg
            };
            if data["e"] != "aggTrade" {
                continue;
            }
            let t = data["T"].as_i64().unwrap() * 1_000_000;
            quotes.push(Quote {
                venue: Venue::Binance,
                symbol: canonical(data["s"].as_str().unwrap()),
                kind: QuoteKind::Trade,
                price: data["p"].as_str().unwrap().parse().unwrap(),
                size: data["q"].as_str().unwrap().parse().unwrap(),
                side: Some(if data["m"].as_bool().unwrap() {
                    Side::Sell
                } else {
                    Side::Buy
                }),
                trade_id: data["a"].as_u64(),
                bid: None,
                ask: None,
                ts_event: t,
                ts_ingest: (v["recv_ts"].as_f64().unwrap() * 1e9) as i64,
            });
        }
        let r = run_pipeline(&quotes, 2).await;
        for line in reference.lines().skip(1).filter(|l| l.starts_with(file)) {
            let f: Vec<&str> = line.split(',').collect();
            let key = (
                canonical(f[1]).to_string(),
                f[2].parse::<i64>().unwrap() * 1_000_000,
            );
            let bar =
                r.m1.get(&key)
                    .unwrap_or_else(|| panic!("no bar for {key:?}"));
            let num = |i: usize| f[i].parse::<f64>().unwrap();
            assert_eq!(
                (bar.open, bar.high, bar.low, bar.close),
                (num(3), num(4), num(5), num(6)),
                "{key:?}"
            );
            assert!((bar.volume - num(7)).abs() <= 1e-9 * num(7));
            assert!((bar.notional - num(8)).abs() <= 1e-9 * num(8));
            assert_eq!(bar.trade_count, f[9].parse::<u64>().unwrap());
            compared += 1;
        }
        let expected_bars = reference
            .lines()
            .skip(1)
            .filter(|l| l.starts_with(file))
            .count();
        assert_eq!(r.m1.len(), expected_bars, "{file}: bar count");
    }
    assert_eq!(compared, reference.lines().count() - 1);
}
