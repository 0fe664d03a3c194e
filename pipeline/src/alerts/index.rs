//! The alert index and its evaluator.
//!
//! [`AlertIndex`] is built from the active rules and shared read-only by every worker; an
//! [`Evaluator`] (one per worker) holds the mutable state: each rule's arming, cooldown and
//! one-shot flag, and per symbol the last value of each watched series.
//!
//! Every threshold rule is one or two *components* on a *ladder*: a sorted list of levels
//! over one series (the price, or the percent move over a window). A rising component
//! fires when the value goes above its level, a falling one when it goes below. A value
//! change from `u` to `v` can only change the condition of components whose level lies
//! between `u` and `v`, so an event costs two binary searches plus the components crossed:
//! O(log n + fired), whatever the number of rules on the symbol.
//!
//! After firing, a recurring component disarms and re-arms only once the value has moved
//! back past `level ∓ hysteresis` (a second, sorted list of re-arm levels makes that a range
//! query too); a rule also waits out its cooldown, and a component whose condition became
//! true during the cooldown is parked in a heap and re-checked when the cooldown ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use pricestream_schemas::{AlertEvent, Interval, Quote, Signal, SignalKind, Symbol, TimestampNs};
use pricestream_schemas::{Venue, NANOS_PER_SEC};
use pricestream_store::alerts::{AlertRule, MoveDirection, RuleCondition};

/// Rules of one venue (or of every venue: `None`) and symbol.
pub type BookKey = (Option<Venue>, Symbol);

/// Signal rules are found by venue, symbol, interval and kind.
type SignalKey = (Option<Venue>, Symbol, Interval, SignalKind);

/// A cheap hasher for keys made of a venue and a [`Symbol`], whose hash is computed once
/// (the per-quote lookups must not pay for SipHash).
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.mix(u64::from(*b));
        }
    }
    fn write_u8(&mut self, x: u8) {
        self.mix(u64::from(x));
    }
    fn write_u32(&mut self, x: u32) {
        self.mix(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.mix(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.mix(x as u64);
    }
    fn write_isize(&mut self, x: isize) {
        self.mix(x as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A rule as the evaluator needs it.
#[derive(Debug, Clone)]
struct RuleInfo {
    id: Arc<str>,
    owner: Arc<str>,
    recurring: bool,
    cooldown_ns: i64,
}

/// Which series of a book a component watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Series {
    Price,
    /// Percent rise from the window's lowest price (window index in the book).
    MoveUp(u32),
    /// Percent fall from the window's highest price.
    MoveDown(u32),
}

#[derive(Debug, Clone)]
struct Component {
    rule: u32,
    book: u32,
    series: Series,
    /// Fires when the value goes above (`rising`) or below the level.
    rising: bool,
    level: f64,
    /// Only a transition fires it, never the first observation (crossing rules).
    needs_transition: bool,
    condition: Arc<str>,
}

/// Sorted levels of one direction over one series.
#[derive(Debug, Default, Clone)]
struct Ladder {
    /// (level, component), ascending.
    fire: Vec<(f64, u32)>,
    /// (re-arm level, component), ascending.
    rearm: Vec<(f64, u32)>,
}

impl Ladder {
    fn sort(&mut self) {
        self.fire
            .sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        self.rearm
            .sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    }

    fn is_empty(&self) -> bool {
        self.fire.is_empty()
    }
}

/// The partition point of `list` for `x`: the number of leading levels `< x` (or `<= x`
/// with `incl`). Starts at `hint` and gallops towards the answer, so it costs O(log d) for
/// an answer `d` places away: a value that moved a little is found in a probe or two, and
/// the search touches only the neighbourhood of the last value (few cache misses).
fn seek(list: &[(f64, u32)], hint: usize, x: f64, incl: bool) -> usize {
    let before = |l: f64| if incl { l <= x } else { l < x };
    let n = list.len();
    let i = hint.min(n);
    if i < n && before(list[i].0) {
        // the answer lies right of `i`
        let mut known = i;
        let mut step = 1;
        loop {
            let probe = known.saturating_add(step);
            if probe >= n || !before(list[probe].0) {
                let (lo, hi) = (known + 1, probe.min(n));
                return lo + list[lo..hi].partition_point(|(l, _)| before(*l));
            }
            known = probe;
            step *= 2;
        }
    } else {
        // the answer is at or left of `i`
        let mut known_not = i;
        let mut step = 1;
        loop {
            if known_not == 0 {
                return 0;
            }
            let probe = known_not.saturating_sub(step);
            if before(list[probe].0) {
                let lo = probe + 1;
                return lo + list[lo..known_not].partition_point(|(l, _)| before(*l));
            }
            known_not = probe;
            step *= 2;
        }
    }
}

/// The index range of the levels with `lo <op> level <op> hi`, searched from `hint`.
fn range(
    list: &[(f64, u32)],
    hint: u32,
    lo: f64,
    lo_incl: bool,
    hi: f64,
    hi_incl: bool,
) -> (usize, usize) {
    let start = seek(list, hint as usize, lo, !lo_incl);
    let end = seek(list, start, hi, hi_incl);
    (start, end.max(start))
}

/// Search hints of one series: [rising fire, rising re-arm, falling fire, falling re-arm].
type Hints = [u32; 4];

#[derive(Debug, Default, Clone)]
struct SeriesLadders {
    rising: Ladder,
    falling: Ladder,
}

#[derive(Debug, Clone)]
struct MoveWindow {
    window_ns: i64,
    up: SeriesLadders,
    down: SeriesLadders,
}

#[derive(Debug, Default, Clone)]
struct Book {
    price: SeriesLadders,
    windows: Vec<MoveWindow>,
}

/// The immutable index of the active rules.
#[derive(Debug, Default)]
pub struct AlertIndex {
    rules: Vec<RuleInfo>,
    components: Vec<Component>,
    /// (rule id, ordinal of the component within its rule) → component.
    component_ids: HashMap<(Arc<str>, u8), u32>,
    books: Vec<Book>,
    book_keys: Vec<BookKey>,
    book_ids: FastMap<BookKey, u32>,
    signals: FastMap<SignalKey, Vec<(u32, Arc<str>)>>,
}

impl AlertIndex {
    /// Builds the index of `rules` (inactive rules are left out).
    pub fn build(rules: &[AlertRule]) -> Self {
        let mut ix = AlertIndex::default();
        for rule in rules.iter().filter(|r| r.active) {
            let slot = ix.rules.len() as u32;
            let id: Arc<str> = Arc::from(rule.id.as_str());
            ix.rules.push(RuleInfo {
                id: Arc::clone(&id),
                owner: Arc::from(rule.owner.as_str()),
                recurring: rule.recurring,
                cooldown_ns: i64::try_from(rule.cooldown_secs)
                    .unwrap_or(i64::MAX / NANOS_PER_SEC)
                    .saturating_mul(NANOS_PER_SEC),
            });
            let key = (rule.venue, rule.symbol.clone());
            let book = ix.book(key);
            let h = rule.hysteresis.max(0.0);
            let described = rule.condition.describe();
            match &rule.condition {
                RuleCondition::Above { level } => {
                    ix.add(
                        slot,
                        0,
                        book,
                        Series::Price,
                        true,
                        *level,
                        h,
                        false,
                        &described,
                    );
                }
                RuleCondition::Below { level } => {
                    ix.add(
                        slot,
                        0,
                        book,
                        Series::Price,
                        false,
                        *level,
                        h,
                        false,
                        &described,
                    );
                }
                RuleCondition::Crosses { level } => {
                    let up = format!("price crossed {level} upward");
                    let down = format!("price crossed {level} downward");
                    ix.add(slot, 0, book, Series::Price, true, *level, h, true, &up);
                    ix.add(slot, 1, book, Series::Price, false, *level, h, true, &down);
                }
                RuleCondition::PercentMove {
                    percent,
                    window_secs,
                    direction,
                } => {
                    let window_ns = i64::try_from(*window_secs)
                        .unwrap_or(i64::MAX / NANOS_PER_SEC)
                        .saturating_mul(NANOS_PER_SEC);
                    let w = ix.window(book, window_ns);
                    if matches!(direction, MoveDirection::Up | MoveDirection::Either) {
                        let c = format!("price rose {percent}% within {window_secs}s");
                        ix.add(
                            slot,
                            0,
                            book,
                            Series::MoveUp(w),
                            true,
                            *percent,
                            h,
                            false,
                            &c,
                        );
                    }
                    if matches!(direction, MoveDirection::Down | MoveDirection::Either) {
                        let c = format!("price fell {percent}% within {window_secs}s");
                        ix.add(
                            slot,
                            1,
                            book,
                            Series::MoveDown(w),
                            true,
                            *percent,
                            h,
                            false,
                            &c,
                        );
                    }
                }
                RuleCondition::Signal { interval, signal } => {
                    // the book tracks the last price reported with the alert
                    ix.signals
                        .entry((rule.venue, rule.symbol.clone(), *interval, *signal))
                        .or_default()
                        .push((slot, Arc::from(described.as_str())));
                }
            }
        }
        for b in &mut ix.books {
            b.price.rising.sort();
            b.price.falling.sort();
            for w in &mut b.windows {
                w.up.rising.sort();
                w.down.rising.sort();
            }
        }
        ix
    }

    fn book(&mut self, key: BookKey) -> u32 {
        if let Some(b) = self.book_ids.get(&key) {
            return *b;
        }
        let b = self.books.len() as u32;
        self.books.push(Book::default());
        self.book_keys.push(key.clone());
        self.book_ids.insert(key, b);
        b
    }

    fn window(&mut self, book: u32, window_ns: i64) -> u32 {
        let windows = &mut self.books[book as usize].windows;
        if let Some(i) = windows.iter().position(|w| w.window_ns == window_ns) {
            return i as u32;
        }
        windows.push(MoveWindow {
            window_ns,
            up: SeriesLadders::default(),
            down: SeriesLadders::default(),
        });
        (windows.len() - 1) as u32
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        rule: u32,
        ordinal: u8,
        book: u32,
        series: Series,
        rising: bool,
        level: f64,
        hysteresis: f64,
        needs_transition: bool,
        condition: &str,
    ) {
        let c = self.components.len() as u32;
        self.components.push(Component {
            rule,
            book,
            series,
            rising,
            level,
            needs_transition,
            condition: Arc::from(condition),
        });
        self.component_ids
            .insert((Arc::clone(&self.rules[rule as usize].id), ordinal), c);
        let b = &mut self.books[book as usize];
        let ladders = match series {
            Series::Price => &mut b.price,
            Series::MoveUp(w) => &mut b.windows[w as usize].up,
            Series::MoveDown(w) => &mut b.windows[w as usize].down,
        };
        if rising {
            ladders.rising.fire.push((level, c));
            ladders.rising.rearm.push((level - hysteresis, c));
        } else {
            ladders.falling.fire.push((level, c));
            ladders.falling.rearm.push((level + hysteresis, c));
        }
    }

    /// Number of rules in the index.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RuleState {
    done: bool,
    cooldown_until: TimestampNs,
}

/// Sliding-window lowest and highest price (monotonic queues).
#[derive(Debug, Default, Clone)]
struct WindowState {
    mins: VecDeque<(TimestampNs, f64)>,
    maxs: VecDeque<(TimestampNs, f64)>,
    up: Option<f64>,
    down: Option<f64>,
    up_hints: Hints,
    down_hints: Hints,
}

impl WindowState {
    /// Adds a price at `t` and returns the percent rise from the lowest and fall from the
    /// highest price of the window ending at `t`.
    fn push(&mut self, t: TimestampNs, price: f64, window_ns: i64) -> (f64, f64) {
        while self.mins.back().is_some_and(|(_, p)| *p >= price) {
            self.mins.pop_back();
        }
        self.mins.push_back((t, price));
        while self.maxs.back().is_some_and(|(_, p)| *p <= price) {
            self.maxs.pop_back();
        }
        self.maxs.push_back((t, price));
        let from = t.saturating_sub(window_ns);
        while self.mins.front().is_some_and(|(ts, _)| *ts < from) {
            self.mins.pop_front();
        }
        while self.maxs.front().is_some_and(|(ts, _)| *ts < from) {
            self.maxs.pop_front();
        }
        let lo = self.mins.front().map_or(price, |(_, p)| *p);
        let hi = self.maxs.front().map_or(price, |(_, p)| *p);
        ((price - lo) / lo * 100.0, (hi - price) / hi * 100.0)
    }
}

#[derive(Debug, Default, Clone)]
struct BookState {
    price: Option<f64>,
    price_hints: Hints,
    /// Newest event time seen (window eviction never goes backwards).
    t: TimestampNs,
    windows: Vec<WindowState>,
    /// Components parked until their rule's cooldown ends: (cooldown end, component).
    deferred: BinaryHeap<Reverse<(TimestampNs, u32)>>,
    /// Components of rules added since the last event: checked once against the next value.
    fresh: Vec<u32>,
}

/// What fired, before it becomes an [`AlertEvent`].
struct Fire<'a> {
    venue: Venue,
    symbol: &'a Symbol,
    price: f64,
    ts_event: TimestampNs,
    ts_ingest: TimestampNs,
}

/// Per-worker evaluation state over a shared [`AlertIndex`].
#[derive(Debug, Default)]
pub struct Evaluator {
    index: Arc<AlertIndex>,
    rules: Vec<RuleState>,
    armed: Vec<bool>,
    books: Vec<BookState>,
}

impl Evaluator {
    pub fn new(index: Arc<AlertIndex>) -> Self {
        let mut e = Evaluator::default();
        e.replace_index(index);
        e
    }

    pub fn index(&self) -> &Arc<AlertIndex> {
        &self.index
    }

    /// Switches to a new index, keeping the state of the rules and symbols both share.
    /// Rules new to this evaluator are checked against the next value of their symbol.
    pub fn replace_index(&mut self, index: Arc<AlertIndex>) {
        let old = std::mem::replace(&mut self.index, Arc::clone(&index));
        let old_rule_ids: HashMap<&str, u32> = old
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (&*r.id, i as u32))
            .collect();
        self.rules = index
            .rules
            .iter()
            .map(|r| {
                old_rule_ids
                    .get(&*r.id)
                    .and_then(|i| self.rules.get(*i as usize).copied())
                    .unwrap_or_default()
            })
            .collect();
        // component mapping old → new
        let mut old_to_new: HashMap<u32, u32> = HashMap::new();
        let mut armed = vec![true; index.components.len()];
        let mut fresh: Vec<u32> = Vec::new();
        for ((id, ord), new_c) in &index.component_ids {
            match old.component_ids.get(&(Arc::clone(id), *ord)) {
                Some(old_c) => {
                    old_to_new.insert(*old_c, *new_c);
                    armed[*new_c as usize] =
                        self.armed.get(*old_c as usize).copied().unwrap_or(true);
                }
                None => fresh.push(*new_c),
            }
        }
        self.armed = armed;
        let mut old_books: HashMap<&BookKey, BookState> = old
            .book_keys
            .iter()
            .zip(std::mem::take(&mut self.books))
            .collect();
        self.books = index
            .book_keys
            .iter()
            .enumerate()
            .map(|(bi, key)| {
                let book = &index.books[bi];
                let prev = old_books.remove(key);
                let old_book = old.book_ids.get(key).map(|b| &old.books[*b as usize]);
                let mut st = BookState::default();
                if let Some(mut p) = prev {
                    st.price = p.price;
                    st.t = p.t;
                    st.windows = book
                        .windows
                        .iter()
                        .map(|w| {
                            old_book
                                .and_then(|ob| {
                                    ob.windows.iter().position(|o| o.window_ns == w.window_ns)
                                })
                                .and_then(|i| p.windows.get_mut(i).map(std::mem::take))
                                .unwrap_or_default()
                        })
                        .collect();
                    st.deferred = p
                        .deferred
                        .drain()
                        .filter_map(|Reverse((t, c))| old_to_new.get(&c).map(|n| Reverse((t, *n))))
                        .collect();
                } else {
                    st.windows = vec![WindowState::default(); book.windows.len()];
                }
                st
            })
            .collect();
        for c in fresh {
            let comp = &index.components[c as usize];
            if !comp.needs_transition {
                self.books[comp.book as usize].fresh.push(c);
            }
        }
    }

    /// Evaluates a quote; fired alerts are appended to `out`.
    pub fn on_quote(&mut self, q: &Quote, out: &mut Vec<AlertEvent>) {
        if self.index.books.is_empty() {
            return;
        }
        let key = (Some(q.venue), q.symbol.clone());
        if let Some(b) = self.index.book_ids.get(&key).copied() {
            self.on_price(b, q, out);
        }
        let key = (None, q.symbol.clone());
        if let Some(b) = self.index.book_ids.get(&key).copied() {
            self.on_price(b, q, out);
        }
    }

    fn on_price(&mut self, b: u32, q: &Quote, out: &mut Vec<AlertEvent>) {
        let index = Arc::clone(&self.index);
        let book = &index.books[b as usize];
        let fire = Fire {
            venue: q.venue,
            symbol: &q.symbol,
            price: q.price,
            ts_event: q.ts_event,
            ts_ingest: q.ts_ingest,
        };
        let st = &mut self.books[b as usize];
        let prev = st.price.replace(q.price);
        st.t = st.t.max(q.ts_event);
        let t = st.t;
        let fresh = std::mem::take(&mut st.fresh);
        let mut hints = st.price_hints;
        self.series(
            &index,
            &mut hints,
            &book.price,
            prev,
            q.price,
            &fire,
            None,
            out,
        );
        self.books[b as usize].price_hints = hints;
        for (wi, w) in book.windows.iter().enumerate() {
            let ws = &mut self.books[b as usize].windows[wi];
            let (up, down) = ws.push(t, q.price, w.window_ns);
            let (pu, pd) = (ws.up.replace(up), ws.down.replace(down));
            let (mut hu, mut hd) = (ws.up_hints, ws.down_hints);
            self.series(&index, &mut hu, &w.up, pu, up, &fire, Some(up), out);
            self.series(&index, &mut hd, &w.down, pd, down, &fire, Some(down), out);
            let ws = &mut self.books[b as usize].windows[wi];
            ws.up_hints = hu;
            ws.down_hints = hd;
        }
        for c in fresh {
            let comp = &index.components[c as usize];
            if let Some(v) = self.current(b, comp.series) {
                if holds(comp, v) {
                    self.try_fire(&index, c, &fire, value_of(comp.series, v), out);
                }
            }
        }
        // cooldowns that have ended
        loop {
            let st = &mut self.books[b as usize];
            match st.deferred.peek() {
                Some(Reverse((until, _))) if *until <= q.ts_event => {}
                _ => break,
            }
            let Some(Reverse((_, c))) = st.deferred.pop() else {
                break;
            };
            let comp = &index.components[c as usize];
            if let Some(v) = self.current(b, comp.series) {
                if holds(comp, v) {
                    self.try_fire(&index, c, &fire, value_of(comp.series, v), out);
                }
            }
        }
    }

    fn current(&self, b: u32, series: Series) -> Option<f64> {
        let st = &self.books[b as usize];
        match series {
            Series::Price => st.price,
            Series::MoveUp(w) => st.windows.get(w as usize).and_then(|w| w.up),
            Series::MoveDown(w) => st.windows.get(w as usize).and_then(|w| w.down),
        }
    }

    /// Applies the change `prev → v` of one series to its ladders.
    #[allow(clippy::too_many_arguments)]
    fn series(
        &mut self,
        index: &AlertIndex,
        hints: &mut Hints,
        ladders: &SeriesLadders,
        prev: Option<f64>,
        v: f64,
        fire: &Fire<'_>,
        value: Option<f64>,
        out: &mut Vec<AlertEvent>,
    ) {
        if ladders.rising.is_empty() && ladders.falling.is_empty() {
            return;
        }
        let (rf, rr) = (&ladders.rising.fire, &ladders.rising.rearm);
        let (ff, fr) = (&ladders.falling.fire, &ladders.falling.rearm);
        match prev {
            None => {
                // first observation: every condition that holds fires (crossings wait)
                let (s, e) = range(rf, hints[0], f64::NEG_INFINITY, true, v, false);
                hints[0] = e as u32;
                for (_, c) in &rf[s..e] {
                    if !index.components[*c as usize].needs_transition {
                        self.try_fire(index, *c, fire, value, out);
                    }
                }
                let (s, e) = range(ff, hints[2], v, false, f64::INFINITY, true);
                hints[2] = s as u32;
                for (_, c) in &ff[s..e] {
                    if !index.components[*c as usize].needs_transition {
                        self.try_fire(index, *c, fire, value, out);
                    }
                }
            }
            Some(u) if v > u => {
                let (s, e) = range(fr, hints[3], u, false, v, true);
                hints[3] = e as u32;
                for (_, c) in &fr[s..e] {
                    self.armed[*c as usize] = true;
                }
                let (s, e) = range(rf, hints[0], u, true, v, false);
                hints[0] = e as u32;
                for (_, c) in &rf[s..e] {
                    self.try_fire(index, *c, fire, value, out);
                }
            }
            Some(u) if v < u => {
                let (s, e) = range(rr, hints[1], v, true, u, false);
                hints[1] = s as u32;
                for (_, c) in &rr[s..e] {
                    self.armed[*c as usize] = true;
                }
                let (s, e) = range(ff, hints[2], v, false, u, true);
                hints[2] = s as u32;
                for (_, c) in &ff[s..e] {
                    self.try_fire(index, *c, fire, value, out);
                }
            }
            Some(_) => {}
        }
    }

    fn try_fire(
        &mut self,
        index: &AlertIndex,
        c: u32,
        fire: &Fire<'_>,
        value: Option<f64>,
        out: &mut Vec<AlertEvent>,
    ) {
        let comp = &index.components[c as usize];
        let r = comp.rule as usize;
        let rs = self.rules[r];
        if rs.done || !self.armed[c as usize] {
            return;
        }
        if fire.ts_event < rs.cooldown_until {
            self.books[comp.book as usize]
                .deferred
                .push(Reverse((rs.cooldown_until, c)));
            return;
        }
        let rule = &index.rules[r];
        if rule.recurring {
            self.armed[c as usize] = false;
            self.rules[r].cooldown_until = fire.ts_event.saturating_add(rule.cooldown_ns);
        } else {
            self.rules[r].done = true;
        }
        out.push(event(rule, &comp.condition, fire, value));
    }

    /// Evaluates a signal; fired alerts are appended to `out`.
    pub fn on_signal(&mut self, s: &Signal, out: &mut Vec<AlertEvent>) {
        if self.index.signals.is_empty() {
            return;
        }
        let index = Arc::clone(&self.index);
        for venue in [Some(s.venue), None] {
            let key = (venue, s.symbol.clone(), s.interval, s.kind);
            let Some(slots) = index.signals.get(&key) else {
                continue;
            };
            // the price reported is the last one of the symbol this worker saw
            let price = index
                .book_ids
                .get(&(venue, s.symbol.clone()))
                .and_then(|b| self.books[*b as usize].price)
                .unwrap_or_else(|| s.value.abs().max(f64::MIN_POSITIVE));
            let fire = Fire {
                venue: s.venue,
                symbol: &s.symbol,
                price,
                ts_event: s.ts_event,
                ts_ingest: s.ts_ingest,
            };
            for (slot, condition) in slots {
                let r = *slot as usize;
                let rs = self.rules[r];
                if rs.done || s.ts_event < rs.cooldown_until {
                    continue;
                }
                let rule = &index.rules[r];
                if rule.recurring {
                    self.rules[r].cooldown_until = s.ts_event.saturating_add(rule.cooldown_ns);
                } else {
                    self.rules[r].done = true;
                }
                out.push(event(rule, condition, &fire, Some(s.value)));
            }
        }
    }
}

fn holds(comp: &Component, v: f64) -> bool {
    if comp.rising {
        v > comp.level
    } else {
        v < comp.level
    }
}

fn value_of(series: Series, v: f64) -> Option<f64> {
    match series {
        Series::Price => None,
        _ => Some(v),
    }
}

fn event(rule: &RuleInfo, condition: &str, fire: &Fire<'_>, value: Option<f64>) -> AlertEvent {
    AlertEvent {
        alert_id: rule.id.to_string(),
        owner: rule.owner.to_string(),
        venue: fire.venue,
        symbol: fire.symbol.clone(),
        condition: condition.to_string(),
        price: fire.price,
        value,
        ts_event: fire.ts_event,
        ts_ingest: fire.ts_ingest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pricestream_schemas::QuoteKind;

    const SEC: i64 = NANOS_PER_SEC;
    const T0: i64 = 1_767_225_600 * SEC;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn rule(
        id: &str,
        condition: RuleCondition,
        recurring: bool,
        cooldown: u64,
        h: f64,
    ) -> AlertRule {
        AlertRule {
            id: id.into(),
            owner: "k1".into(),
            venue: None,
            symbol: sym("BTC-USDT"),
            condition,
            recurring,
            cooldown_secs: cooldown,
            hysteresis: h,
            url: "https://example.com/hook".into(),
            secret: "s".into(),
            active: true,
            created_at: 0,
            updated_at: 0,
            fired_at: None,
        }
    }

    fn quote(t: i64, price: f64) -> Quote {
        Quote {
            venue: Venue::Binance,
            symbol: sym("BTC-USDT"),
            kind: QuoteKind::Trade,
            price,
            size: 1.0,
            side: None,
            trade_id: None,
            bid: None,
            ask: None,
            ts_event: t,
            ts_ingest: t,
        }
    }

    /// Feeds `(seconds, price)` and returns the fire times (seconds) per rule id.
    fn run(rules: &[AlertRule], path: &[(i64, f64)]) -> Vec<(String, i64, String)> {
        let mut e = Evaluator::new(Arc::new(AlertIndex::build(rules)));
        let mut out = Vec::new();
        for (s, p) in path {
            e.on_quote(&quote(T0 + s * SEC, *p), &mut out);
        }
        out.into_iter()
            .map(|a| (a.alert_id, (a.ts_event - T0) / SEC, a.condition))
            .collect()
    }

    fn times(fired: &[(String, i64, String)], id: &str) -> Vec<i64> {
        fired.iter().filter(|f| f.0 == id).map(|f| f.1).collect()
    }

    /// A price hovering around 100 with ±0.4 swings, then a real dip and a new rise.
    fn hovering() -> Vec<(i64, f64)> {
        let mut path = vec![(0, 99.0)];
        for i in 1..=40 {
            path.push((i, if i % 2 == 1 { 100.4 } else { 99.6 }));
        }
        path.push((41, 98.5)); // back below the re-arm level 99
        path.push((42, 100.5)); // fires again
        for i in 43..=60 {
            path.push((i, if i % 2 == 1 { 99.7 } else { 100.3 }));
        }
        path
    }

    #[test]
    fn hysteresis_stops_a_storm_around_the_level() {
        let rules = [
            rule("h1", RuleCondition::Above { level: 100.0 }, true, 0, 1.0),
            rule("h0", RuleCondition::Above { level: 100.0 }, true, 0, 0.0),
        ];
        let fired = run(&rules, &hovering());
        // with a margin of 1: once on the first rise, once after the real dip
        assert_eq!(times(&fired, "h1"), vec![1, 42]);
        // without a margin every crossing fires: 20 in the first part, 1 + 9 after
        assert_eq!(times(&fired, "h0").len(), 20 + 1 + 9);
    }

    #[test]
    fn cooldown_defers_and_fires_when_it_ends_if_still_true() {
        // crosses above 100 every other second; 10 s cooldown, no margin
        let path: Vec<(i64, f64)> = (0..=40)
            .map(|i| (i, if i % 2 == 1 { 101.0 } else { 99.0 }))
            .collect();
        let fired = run(
            &[rule(
                "c",
                RuleCondition::Above { level: 100.0 },
                true,
                10,
                0.0,
            )],
            &path,
        );
        // fires at 1; the crossing at 3 waits for 11 (price is above then: fires at 11);
        // then at 21 and 31
        assert_eq!(times(&fired, "c"), vec![1, 11, 21, 31]);
        // a deferred component whose condition no longer holds when the cooldown ends
        // waits for the next crossing: cooldown 9 ends at even seconds (price below)
        let fired = run(
            &[rule(
                "c9",
                RuleCondition::Above { level: 100.0 },
                true,
                9,
                0.0,
            )],
            &path,
        );
        assert_eq!(times(&fired, "c9"), vec![1, 11, 21, 31]);
    }

    #[test]
    fn one_shot_fires_once_and_below_mirrors_above() {
        let rules = [
            rule("once", RuleCondition::Above { level: 100.0 }, false, 0, 0.0),
            rule("below", RuleCondition::Below { level: 99.8 }, true, 0, 0.5),
        ];
        let fired = run(&rules, &hovering());
        assert_eq!(times(&fired, "once"), vec![1]);
        // below 99.8: first observation at 99 fires; re-arm needs >= 100.3 (at 1: 100.4);
        // fires at 2 (99.6); re-arms at 3; fires at 4 ... every other second up to 40,
        // then 41 (98.5) after the re-arm at 39, then after 42 (100.5) at 43 (99.7) ...
        let below = times(&fired, "below");
        assert_eq!(below[..3], [0, 2, 4]);
        assert!(below
            .iter()
            .all(|t| hovering().iter().any(|(s, p)| s == t && *p < 99.8)));
    }

    #[test]
    fn crossing_fires_on_transitions_only_both_ways() {
        let fired = run(
            &[rule(
                "x",
                RuleCondition::Crosses { level: 100.0 },
                true,
                0,
                1.0,
            )],
            &hovering(),
        );
        // the first observation (99) does not fire; up at 1, down at 2; the ±0.4 swings
        // stay inside the margin; 41 (98.5) re-arms the up side, 42 crosses up; the down
        // side would need ≥ 101 to re-arm, so the later swings stay silent
        let x: Vec<(i64, String)> = fired.iter().map(|f| (f.1, f.2.clone())).collect();
        assert_eq!(
            x,
            vec![
                (1, "price crossed 100 upward".to_string()),
                (2, "price crossed 100 downward".to_string()),
                (42, "price crossed 100 upward".to_string()),
            ]
        );
    }

    #[test]
    fn percent_moves_use_the_window_extremes() {
        let rules = [
            rule(
                "up5",
                RuleCondition::PercentMove {
                    percent: 5.0,
                    window_secs: 60,
                    direction: MoveDirection::Up,
                },
                false,
                0,
                0.0,
            ),
            rule(
                "down5",
                RuleCondition::PercentMove {
                    percent: 5.0,
                    window_secs: 60,
                    direction: MoveDirection::Down,
                },
                false,
                0,
                0.0,
            ),
        ];
        // +4.5% over 50 s: nothing; the low leaves the window, then +5.2% within 60 s
        let path = [
            (0, 100.0),
            (50, 104.5),
            (100, 100.0),
            (130, 105.2),
            (140, 99.0),
        ];
        let fired = run(&rules, &path);
        assert_eq!(times(&fired, "up5"), vec![130]);
        // from the high 105.2 at 130 to 99.0 is −5.9%
        assert_eq!(times(&fired, "down5"), vec![140]);
    }

    #[test]
    fn signal_rules_fire_per_signal_with_cooldown() {
        let mut r = rule(
            "sig",
            RuleCondition::Signal {
                interval: Interval::H1,
                signal: SignalKind::GoldenCross,
            },
            true,
            3_600,
            0.0,
        );
        r.venue = Some(Venue::Binance);
        let mut e = Evaluator::new(Arc::new(AlertIndex::build(&[r])));
        let mut out = Vec::new();
        e.on_quote(&quote(T0, 64_000.0), &mut out);
        let signal = |t: i64, kind: SignalKind, interval: Interval| Signal {
            venue: Venue::Binance,
            symbol: sym("BTC-USDT"),
            interval,
            kind,
            bucket_start: t,
            value: 12.0,
            ts_event: t,
            ts_ingest: t,
        };
        e.on_signal(&signal(T0, SignalKind::GoldenCross, Interval::H1), &mut out);
        e.on_signal(
            &signal(T0 + 60 * SEC, SignalKind::GoldenCross, Interval::H1),
            &mut out,
        );
        e.on_signal(
            &signal(T0 + 60 * SEC, SignalKind::DeathCross, Interval::H1),
            &mut out,
        );
        e.on_signal(
            &signal(T0 + 60 * SEC, SignalKind::GoldenCross, Interval::M1),
            &mut out,
        );
        e.on_signal(
            &signal(T0 + 3_600 * SEC, SignalKind::GoldenCross, Interval::H1),
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].price, 64_000.0);
        assert_eq!(out[0].value, Some(12.0));
        assert_eq!(out[0].condition, "signal golden_cross on 1h");
    }

    #[test]
    fn a_new_index_keeps_state_and_checks_new_rules_once() {
        let a = rule("a", RuleCondition::Above { level: 100.0 }, false, 0, 0.0);
        let mut e = Evaluator::new(Arc::new(AlertIndex::build(std::slice::from_ref(&a))));
        let mut out = Vec::new();
        e.on_quote(&quote(T0, 101.0), &mut out);
        assert_eq!(out.len(), 1);
        // the same rule plus a new one whose condition already holds
        let b = rule("b", RuleCondition::Above { level: 90.0 }, false, 0, 0.0);
        let c = rule("c", RuleCondition::Crosses { level: 95.0 }, false, 0, 0.0);
        e.replace_index(Arc::new(AlertIndex::build(&[a, b, c])));
        e.on_quote(&quote(T0 + SEC, 101.5), &mut out);
        e.on_quote(&quote(T0 + 2 * SEC, 102.0), &mut out);
        let ids: Vec<&str> = out.iter().map(|a| a.alert_id.as_str()).collect();
        // "a" is one-shot and already fired; "b" fires once; "c" waits for a crossing
        assert_eq!(ids, vec!["a", "b"]);
        e.on_quote(&quote(T0 + 3 * SEC, 94.0), &mut out);
        assert_eq!(out.last().map(|a| a.alert_id.as_str()), Some("c"));
    }

    #[test]
    fn seek_from_any_hint_equals_a_plain_partition_point() {
        let levels = [1.0, 2.0, 2.0, 2.0, 3.5, 7.0, 7.0, 9.0, 11.0, 20.0];
        let list: Vec<(f64, u32)> = levels.iter().map(|l| (*l, 0)).collect();
        for x in [0.0, 1.0, 1.5, 2.0, 3.0, 7.0, 8.0, 11.0, 20.0, 25.0] {
            for incl in [false, true] {
                let want = list.partition_point(|(l, _)| if incl { *l <= x } else { *l < x });
                for hint in 0..=list.len() + 2 {
                    assert_eq!(
                        seek(&list, hint, x, incl),
                        want,
                        "x {x} incl {incl} hint {hint}"
                    );
                }
            }
        }
        assert_eq!(seek(&[], 3, 1.0, true), 0);
    }

    #[test]
    fn venue_rules_see_only_their_venue() {
        let mut r = rule("v", RuleCondition::Above { level: 100.0 }, false, 0, 0.0);
        r.venue = Some(Venue::Kraken);
        let mut e = Evaluator::new(Arc::new(AlertIndex::build(&[r])));
        let mut out = Vec::new();
        e.on_quote(&quote(T0, 101.0), &mut out);
        assert!(out.is_empty());
        let mut q = quote(T0, 101.0);
        q.venue = Venue::Kraken;
        e.on_quote(&q, &mut out);
        assert_eq!(out.len(), 1);
    }
}
