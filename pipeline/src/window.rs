//! Event-time tumbling windows for 1m bars, with allowed lateness and revisions.
//!
//! A quote is classified against its *effective watermark*: the larger of its
//! partition's watermark and the dataflow time it travels at. With `end` the window end:
//! - `end + allowed_lateness <= eff`: too late, the window is gone; the quote goes to the
//!   dead-letter queue with reason `late`.
//! - `end <= eff`: late but allowed; the bar is revised (`revision + 1`) and, if it was
//!   already emitted, re-emitted at once.
//! - otherwise on time; the bar is emitted when the dataflow frontier reaches `end`.
//!
//! Window state lives until the frontier reaches `end + allowed_lateness`. Because
//! classification depends only on event times and the per-partition order, the same
//! stream gives the same bars, whatever the number of workers.

use std::collections::BTreeMap;

use pricestream_analytics::OhlcvAcc;
use pricestream_schemas::{Bar, Interval, Quote, QuoteKind, Symbol, TimestampNs, Venue};

use crate::hash::FastMap;

type WinKey = (Venue, Symbol, TimestampNs);

#[derive(Debug)]
struct WinState {
    acc: OhlcvAcc,
    revision: u32,
    emitted: bool,
}

/// What the operator must do after a quote was offered.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    /// Later than the allowed lateness: dead-letter it.
    Late,
    /// Folded into an open window that closes at `end`; the operator must hold a
    /// capability for `end` (possibly already held).
    Pending { end: TimestampNs },
    /// Folded into a window whose bar was already emitted: emit this revision now.
    Revised(Bar),
    /// A window whose end the frontier has passed got its first quote: emit now.
    New(Bar),
}

/// The 1m windows of one worker.
#[derive(Debug)]
pub struct BarWindows {
    interval: Interval,
    lateness: i64,
    windows: FastMap<WinKey, WinState>,
    closing: BTreeMap<TimestampNs, Vec<WinKey>>,
    purging: BTreeMap<TimestampNs, Vec<WinKey>>,
}

impl BarWindows {
    pub fn new(interval: Interval, allowed_lateness_ns: i64) -> Self {
        BarWindows {
            interval,
            lateness: allowed_lateness_ns.max(0),
            windows: FastMap::default(),
            closing: BTreeMap::new(),
            purging: BTreeMap::new(),
        }
    }

    /// Number of open windows (state held).
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// Offers a quote. `eff` is its effective watermark, `frontier` the operator's input
    /// frontier (`i64::MAX` once the input is closed).
    pub fn offer(&mut self, q: &Quote, eff: TimestampNs, frontier: TimestampNs) -> Admit {
        let start = self.interval.bucket_start(q.ts_event);
        let end = start + self.interval.nanos();
        let key = (q.venue, q.symbol.clone(), start);
        let is_trade = q.kind == QuoteKind::Trade;
        // Lateness is decided by the quote's own effective watermark, never by whether the
        // state happens to be purged yet: that keeps the outcome independent of scheduling.
        if end.saturating_add(self.lateness) <= eff {
            return Admit::Late;
        }
        if let Some(st) = self.windows.get_mut(&key) {
            st.acc
                .add(q.price, q.size, is_trade, q.ts_event, q.ts_ingest);
            if end <= eff {
                st.revision += 1;
                if st.emitted {
                    return Admit::Revised(st.acc.to_bar(
                        key.0,
                        key.1,
                        self.interval,
                        start,
                        st.revision,
                    ));
                }
            }
            return Admit::Pending { end };
        }
        let acc = OhlcvAcc::new(q.price, q.size, is_trade, q.ts_event, q.ts_ingest);
        self.purging
            .entry(end.saturating_add(self.lateness))
            .or_default()
            .push(key.clone());
        if end <= frontier {
            let bar = acc.to_bar(key.0, key.1.clone(), self.interval, start, 0);
            self.windows.insert(
                key,
                WinState {
                    acc,
                    revision: 0,
                    emitted: true,
                },
            );
            return Admit::New(bar);
        }
        self.closing.entry(end).or_default().push(key.clone());
        self.windows.insert(
            key,
            WinState {
                acc,
                revision: 0,
                emitted: false,
            },
        );
        Admit::Pending { end }
    }

    /// Emits the bars of every window whose end is at or before `frontier`, grouped by
    /// window end, and drops state past its allowed lateness.
    pub fn advance(&mut self, frontier: TimestampNs) -> Vec<(TimestampNs, Vec<Bar>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.closing.first_entry() {
            if *entry.key() > frontier {
                break;
            }
            let (end, keys) = entry.remove_entry();
            let mut bars = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(st) = self.windows.get_mut(&key) {
                    if !st.emitted {
                        st.emitted = true;
                        bars.push(st.acc.to_bar(
                            key.0,
                            key.1.clone(),
                            self.interval,
                            key.2,
                            st.revision,
                        ));
                    }
                }
            }
            bars.sort_by(|a, b| (a.venue, &a.symbol).cmp(&(b.venue, &b.symbol)));
            out.push((end, bars));
        }
        while let Some(entry) = self.purging.first_entry() {
            if *entry.key() > frontier {
                break;
            }
            for key in entry.remove() {
                self.windows.remove(&key);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn q(sym: &str, ts: i64, price: f64) -> Quote {
        Quote {
            venue: Venue::Synthetic,
            symbol: Symbol::new(sym).unwrap(),
            kind: QuoteKind::Trade,
            price,
            size: 1.0,
            side: None,
            trade_id: None,
            bid: None,
            ask: None,
            ts_event: ts,
            ts_ingest: ts,
        }
    }

    #[test]
    fn assigns_quotes_to_minute_buckets() {
        let mut w = BarWindows::new(Interval::M1, 30 * SEC);
        let base = 1_000 * MIN;
        assert_eq!(
            w.offer(&q("BTC-USDT", base, 1.0), base, base),
            Admit::Pending { end: base + MIN }
        );
        assert_eq!(
            w.offer(&q("BTC-USDT", base + MIN - 1, 2.0), base, base),
            Admit::Pending { end: base + MIN }
        );
        assert_eq!(
            w.offer(&q("BTC-USDT", base + MIN, 3.0), base, base),
            Admit::Pending {
                end: base + 2 * MIN
            }
        );
        assert!(
            w.advance(base + MIN - 1).is_empty(),
            "closed before its end"
        );
        let closed = w.advance(base + MIN);
        assert_eq!(closed.len(), 1);
        let bar = &closed[0].1[0];
        assert_eq!(
            (bar.bucket_start, bar.open, bar.close, bar.trade_count),
            (base, 1.0, 2.0, 2)
        );
        assert_eq!(bar.revision, 0);
        let next = w.advance(base + 2 * MIN);
        assert_eq!(next[0].1[0].open, 3.0);
    }

    #[test]
    fn late_within_lateness_revises_and_beyond_goes_to_dlq() {
        let mut w = BarWindows::new(Interval::M1, 30 * SEC);
        let base = 1_000 * MIN;
        w.offer(&q("ETH-USDT", base + SEC, 10.0), base, base);
        let bars = w.advance(base + MIN);
        assert_eq!(bars[0].1[0].close, 10.0);
        // 10 s after the window end: allowed, revises
        let eff = base + MIN + 10 * SEC;
        match w.offer(&q("ETH-USDT", base + 50 * SEC, 12.0), eff, eff) {
            Admit::Revised(bar) => {
                assert_eq!(bar.revision, 1);
                assert_eq!(bar.close, 12.0);
                assert_eq!(bar.high, 12.0);
                assert_eq!(bar.trade_count, 2);
            }
            other => panic!("expected a revision, got {other:?}"),
        }
        // state is purged when the frontier passes end + lateness
        w.advance(base + MIN + 30 * SEC);
        assert_eq!(w.open_windows(), 0);
        let eff = base + MIN + 31 * SEC;
        assert_eq!(
            w.offer(&q("ETH-USDT", base + 59 * SEC, 1.0), eff, eff),
            Admit::Late
        );
    }

    #[test]
    fn first_quote_of_an_already_closed_window_emits_a_new_bar() {
        let mut w = BarWindows::new(Interval::M1, 5 * MIN);
        let base = 1_000 * MIN;
        let eff = base + 2 * MIN;
        match w.offer(&q("SOL-USDT", base + SEC, 5.0), eff, eff) {
            Admit::New(bar) => assert_eq!((bar.revision, bar.close), (0, 5.0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_late_update_before_emission_counts_as_a_revision() {
        // the partition's watermark passed the end, but the frontier (other workers) did not
        let mut w = BarWindows::new(Interval::M1, MIN);
        let base = 1_000 * MIN;
        w.offer(&q("BTC-USDT", base + SEC, 1.0), base, base);
        assert_eq!(
            w.offer(&q("BTC-USDT", base + 2 * SEC, 2.0), base + MIN + SEC, base),
            Admit::Pending { end: base + MIN }
        );
        let bars = w.advance(base + MIN);
        assert_eq!((bars[0].1[0].revision, bars[0].1[0].close), (1, 2.0));
    }
}
