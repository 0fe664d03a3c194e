//! Rollups: coarser bars from finer ones by merging partial aggregates.

use std::collections::BTreeMap;

use pricestream_schemas::{Bar, Interval, Symbol, TimestampNs, Venue};

use crate::ohlcv::OhlcvAcc;

/// Rolls `bars` (any finer interval, any order) up to `target`. The result is sorted by
/// (venue, symbol, bucket_start) and carries the highest revision of its inputs.
pub fn rollup(bars: &[Bar], target: Interval) -> Vec<Bar> {
    let mut groups: BTreeMap<(Venue, Symbol, TimestampNs), (OhlcvAcc, u32)> = BTreeMap::new();
    let mut sorted: Vec<&Bar> = bars.iter().collect();
    sorted.sort_by_key(|b| b.bucket_start);
    for b in sorted {
        let key = (
            b.venue,
            b.symbol.clone(),
            target.bucket_start(b.bucket_start),
        );
        let acc = OhlcvAcc::from_bar(b);
        groups
            .entry(key)
            .and_modify(|(a, rev)| {
                a.merge(&acc);
                *rev = (*rev).max(b.revision);
            })
            .or_insert((acc, b.revision));
    }
    groups
        .into_iter()
        .map(|((venue, symbol, start), (acc, rev))| acc.to_bar(venue, symbol, target, start, rev))
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
