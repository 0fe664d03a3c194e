//! Rollups: coarser bars from finer ones by merging partial aggregates.

use std::collections::BTreeMap;

use pricestream_schemas::{Bar, Interval, Symbol, TimestampNs, Venue};

use crate::ohlcv::OhlcvAcc;

/// One parent bucket being merged.
struct Group {
    acc: OhlcvAcc,
    revision: u32,
    /// Only gap-filled children so far.
    filled: bool,
    max_event: TimestampNs,
}

/// Rolls `bars` (any finer interval, any order) up to `target`. The result is sorted by
/// (venue, symbol, bucket_start); a parent's `revision` is the sum of its children's, so
/// a revised child always raises it. Gap-filled children ([`Bar::is_filled`]) count only
/// when the bucket has no real child; a bucket of fills alone is itself a filled bar.
pub fn rollup(bars: &[Bar], target: Interval) -> Vec<Bar> {
    merge_buckets(bars, target, |b| Some(target.bucket_start(b.bucket_start)))
}

/// [`rollup`] into arbitrary buckets: `bucket` names the start of the bucket a bar belongs
/// to (`None`: the bar is in no bucket). The results are labelled `label`.
pub fn merge_buckets(
    bars: &[Bar],
    label: Interval,
    bucket: impl Fn(&Bar) -> Option<TimestampNs>,
) -> Vec<Bar> {
    let target = label;
    let mut groups: BTreeMap<(Venue, Symbol, TimestampNs), Group> = BTreeMap::new();
    let mut sorted: Vec<&Bar> = bars.iter().collect();
    sorted.sort_by_key(|b| b.bucket_start);
    for b in sorted {
        let Some(start) = bucket(b) else { continue };
        let key = (b.venue, b.symbol.clone(), start);
        let filled = b.is_filled();
        let acc = OhlcvAcc::from_bar(b);
        match groups.entry(key) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Group {
                    acc,
                    revision: b.revision,
                    filled,
                    max_event: b.ts_event,
                });
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let g = e.get_mut();
                g.revision = g.revision.saturating_add(b.revision);
                g.max_event = g.max_event.max(b.ts_event);
                match (g.filled, filled) {
                    (true, false) => {
                        g.acc = acc;
                        g.filled = false;
                    }
                    (false, true) => {}
                    _ => g.acc.merge(&acc),
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|((venue, symbol, start), g)| {
            let mut bar = g.acc.to_bar(venue, symbol, target, start, g.revision);
            if g.filled {
                // every child carries the same earlier close: keep the parent a fill
                bar.ts_event = g.max_event;
            }
            bar
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000_000_000;

    fn trades() -> impl Strategy<Value = Vec<(i64, f64, f64)>> {
        prop::collection::vec((0i64..(30 * MIN), 1.0f64..1000.0, 0.001f64..10.0), 1..400)
    }

    fn fold(trades: &[(i64, f64, f64)], iv: Interval) -> BTreeMap<i64, OhlcvAcc> {
        let mut m: BTreeMap<i64, OhlcvAcc> = BTreeMap::new();
        for &(t, p, s) in trades {
            m.entry(iv.bucket_start(t))
                .and_modify(|a| a.add(p, s, true, t, t))
                .or_insert_with(|| OhlcvAcc::new(p, s, true, t, t));
        }
        m
    }

    fn bar(minute: i64, close: f64, rev: u32) -> Bar {
        let start = minute * MIN;
        Bar {
            venue: Venue::Binance,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::M1,
            bucket_start: start,
            open: close,
            high: close + 1.0,
            low: close - 1.0,
            close,
            volume: 2.0,
            notional: 2.0 * close,
            vwap: close,
            trade_count: 3,
            revision: rev,
            ts_event: start + 5,
            ts_ingest: start + 6,
        }
    }

    #[test]
    fn fills_count_only_in_buckets_without_real_bars() {
        let real = bar(9, 100.0, 1);
        let fill1 = Bar::filled_after(&real, Interval::M1, 11 * MIN);
        let fill2 = Bar::filled_after(&real, Interval::M1, 12 * MIN);
        let later = bar(13, 90.0, 2);
        let five = rollup(&[fill1.clone(), later.clone(), fill2.clone()], Interval::M5);
        assert_eq!(five.len(), 1);
        let p = &five[0];
        // the real child alone sets prices, volume and trades; revisions add up
        assert_eq!((p.open, p.close, p.high, p.low), (90.0, 90.0, 91.0, 89.0));
        assert_eq!((p.volume, p.trade_count, p.revision), (2.0, 3, 2));
        assert!(!p.is_filled());
        // a bucket of fills only is a fill carrying the earlier close
        let only = rollup(&[fill1, fill2], Interval::M5);
        assert!(only[0].is_filled(), "{:?}", only[0]);
        assert_eq!(
            (only[0].close, only[0].volume, only[0].trade_count),
            (100.0, 0.0, 0)
        );
        assert_eq!(only[0].ts_event, real.ts_event);
    }

    proptest! {
        /// rollup(1m → 5m) equals a direct 5m aggregation of the same trades.
        #[test]
        fn rollup_equals_direct_aggregation(trades in trades()) {
            let sym = Symbol::new("BTC-USDT").unwrap();
            let m1: Vec<Bar> = fold(&trades, Interval::M1)
                .into_iter()
                .map(|(s, a)| a.to_bar(Venue::Binance, sym.clone(), Interval::M1, s, 0))
                .collect();
            for target in [Interval::M5, Interval::M15, Interval::H1] {
                let rolled = rollup(&m1, target);
                let direct = fold(&trades, target);
                prop_assert_eq!(rolled.len(), direct.len());
                for bar in &rolled {
                    let d = &direct[&bar.bucket_start];
                    prop_assert_eq!(bar.open, d.open);
                    prop_assert_eq!(bar.close, d.close);
                    prop_assert_eq!(bar.high, d.high);
                    prop_assert_eq!(bar.low, d.low);
                    prop_assert_eq!(bar.trade_count, d.trade_count);
                    prop_assert!((bar.volume - d.volume).abs() <= 1e-9 * d.volume.max(1.0));
                    prop_assert!((bar.notional - d.notional).abs() <= 1e-9 * d.notional.max(1.0));
                }
            }
        }
    }
}
