//! One level of the rollup hierarchy (e.g. 1m → 5m), kept incrementally.
//!
//! A parent bar is the merge of the latest revision of each child bar in its bucket. It is
//! emitted once the frontier is strictly past its end (the last child is emitted *at* that
//! end), and re-emitted when a child is revised later. Its revision is the sum of its
//! children's revisions, so it depends only on the data, not on scheduling. State lives
//! until the frontier passes `end + allowed_lateness`, after which no child can change.

use std::collections::BTreeMap;

use pricestream_analytics::rollup;
use pricestream_schemas::{Bar, Interval, Symbol, TimestampNs, Venue};

use crate::hash::FastMap;

type Key = (Venue, Symbol, TimestampNs);

#[derive(Debug, Default)]
struct Parent {
    /// The latest revision of each child, sorted by `bucket_start` (at most 24 of them:
    /// a sorted vector costs far less memory than a tree for so few).
    children: Vec<Bar>,
    emitted: bool,
}

/// What the operator must do after a child bar was offered.
#[derive(Debug, PartialEq)]
pub enum RollupAdmit {
    /// Hold a capability for `end`; the parent is emitted then.
    Pending { end: TimestampNs },
    /// The parent was already emitted (or its end already passed): emit this now.
    Emit(Bar),
}

#[derive(Debug)]
pub struct RollupLevel {
    pub child: Interval,
    pub parent: Interval,
    lateness: i64,
    parents: FastMap<Key, Parent>,
    closing: BTreeMap<TimestampNs, Vec<Key>>,
    purging: BTreeMap<TimestampNs, Vec<Key>>,
}

impl RollupLevel {
    pub fn new(child: Interval, parent: Interval, allowed_lateness_ns: i64) -> Self {
        RollupLevel {
            child,
            parent,
            lateness: allowed_lateness_ns.max(0),
            parents: FastMap::default(),
            closing: BTreeMap::new(),
            purging: BTreeMap::new(),
        }
    }

    fn build(&self, key: &Key, p: &Parent) -> Option<Bar> {
        // the revision is the sum of the children's (see `rollup`)
        let bar = rollup(&p.children, self.parent).into_iter().next()?;
        debug_assert_eq!(bar.bucket_start, key.2);
        Some(bar)
    }

    /// Offers a child bar. `frontier` is the operator's input frontier.
    pub fn offer(&mut self, bar: &Bar, frontier: TimestampNs) -> Option<RollupAdmit> {
        if bar.interval != self.child {
            return None;
        }
        let start = self.parent.bucket_start(bar.bucket_start);
        let end = start + self.parent.nanos();
        let key = (bar.venue, bar.symbol.clone(), start);
        let is_new = !self.parents.contains_key(&key);
        let p = self.parents.entry(key.clone()).or_default();
        match p
            .children
            .binary_search_by_key(&bar.bucket_start, |c| c.bucket_start)
        {
            Ok(i) => {
                if p.children[i].revision <= bar.revision {
                    p.children[i] = bar.clone();
                }
            }
            Err(i) => p.children.insert(i, bar.clone()),
        }
        if is_new {
            self.purging
                .entry(end.saturating_add(self.lateness))
                .or_default()
                .push(key.clone());
        }
        let emitted = p.emitted;
        if emitted || end < frontier {
            if let Some(p) = self.parents.get_mut(&key) {
                p.emitted = true;
            }
            let p = self.parents.get(&key)?;
            return self.build(&key, p).map(RollupAdmit::Emit);
        }
        if is_new {
            self.closing.entry(end).or_default().push(key);
        }
        Some(RollupAdmit::Pending { end })
    }

    /// Emits parents whose end the frontier is strictly past, grouped by end; drops state
    /// past its lateness.
    pub fn advance(&mut self, frontier: TimestampNs) -> Vec<(TimestampNs, Vec<Bar>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.closing.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            let (end, keys) = entry.remove_entry();
            let mut bars = Vec::new();
            for key in keys {
                if let Some(p) = self.parents.get_mut(&key) {
                    if !p.emitted {
                        p.emitted = true;
                    } else {
                        continue;
                    }
                }
                if let Some(b) = self.parents.get(&key).and_then(|p| self.build(&key, p)) {
                    bars.push(b);
                }
            }
            bars.sort_by(|a, b| (a.venue, &a.symbol).cmp(&(b.venue, &b.symbol)));
            out.push((end, bars));
        }
        while let Some(entry) = self.purging.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            for key in entry.remove() {
                self.parents.remove(&key);
            }
        }
        out
    }

    pub fn open(&self) -> usize {
        self.parents.len()
    }
}

/// The levels for the configured rollup intervals, each from the next finer one.
pub fn levels(rollups: &[Interval], allowed_lateness_ns: i64) -> Vec<RollupLevel> {
    let mut targets: Vec<Interval> = rollups
        .iter()
        .copied()
        .filter(|i| *i != Interval::M1)
        .collect();
    targets.sort();
    targets.dedup();
    let mut child = Interval::M1;
    targets
        .into_iter()
        .map(|parent| {
            let level = RollupLevel::new(child, parent, allowed_lateness_ns);
            child = parent;
            level
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn m1(minute: i64, close: f64, rev: u32) -> Bar {
        Bar {
            venue: Venue::Synthetic,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            interval: Interval::M1,
            bucket_start: minute * MIN,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
            notional: close,
            vwap: close,
            trade_count: 1,
            revision: rev,
            ts_event: minute * MIN + 1,
            ts_ingest: minute * MIN + 1,
        }
    }

    #[test]
    fn emits_after_the_end_and_revises_with_children() {
        let mut l = RollupLevel::new(Interval::M1, Interval::M5, 5 * MIN);
        for m in 0..5 {
            assert_eq!(
                l.offer(&m1(m, 10.0 + m as f64, 0), (m + 1) * MIN),
                Some(RollupAdmit::Pending { end: 5 * MIN })
            );
        }
        assert!(
            l.advance(5 * MIN).is_empty(),
            "the last child is emitted at the end itself"
        );
        let out = l.advance(5 * MIN + 1);
        let bar = &out[0].1[0];
        assert_eq!(
            (bar.open, bar.close, bar.high, bar.trade_count, bar.revision),
            (10.0, 14.0, 14.0, 5, 0)
        );
        // a revised child re-emits the parent with the summed revision
        match l.offer(&m1(2, 99.0, 1), 6 * MIN) {
            Some(RollupAdmit::Emit(b)) => {
                assert_eq!((b.high, b.revision, b.trade_count), (99.0, 1, 5))
            }
            other => panic!("{other:?}"),
        }
        // an older revision does not replace a newer one
        match l.offer(&m1(2, 1.0, 0), 6 * MIN) {
            Some(RollupAdmit::Emit(b)) => assert_eq!(b.high, 99.0),
            other => panic!("{other:?}"),
        }
        l.advance(10 * MIN + 1);
        assert_eq!(l.open(), 0);
    }

    #[test]
    fn hierarchy_is_built_from_the_next_finer_interval() {
        let ls = levels(&[Interval::D1, Interval::M5, Interval::H1], 0);
        let pairs: Vec<_> = ls.iter().map(|l| (l.child, l.parent)).collect();
        assert_eq!(
            pairs,
            vec![
                (Interval::M1, Interval::M5),
                (Interval::M5, Interval::H1),
                (Interval::H1, Interval::D1)
            ]
        );
    }
}
