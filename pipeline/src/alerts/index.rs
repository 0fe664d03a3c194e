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
use std::sync::Arc;

use pricestream_schemas::{AlertEvent, Interval, Quote, Signal, SignalKind, Symbol, TimestampNs};
use pricestream_schemas::{Venue, NANOS_PER_SEC};
use pricestream_store::alerts::{AlertRule, MoveDirection, RuleCondition};

/// Rules of one venue (or of every venue: `None`) and symbol.
pub type BookKey = (Option<Venue>, Symbol);

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
        self.fire.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        self.rearm
            .sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    }

    fn is_empty(&self) -> bool {
        self.fire.is_empty()
    }
}

/// Components of `list` with `lo <op> level <op> hi`, by binary search.
fn range(list: &[(f64, u32)], lo: f64, lo_incl: bool, hi: f64, hi_incl: bool) -> &[(f64, u32)] {
    let start = if lo_incl {
        list.partition_point(|(l, _)| *l < lo)
    } else {
        list.partition_point(|(l, _)| *l <= lo)
    };
    let end = if hi_incl {
        list.partition_point(|(l, _)| *l <= hi)
    } else {
        list.partition_point(|(l, _)| *l < hi)
    };
    if start < end {
        &list[start..end]
    } else {
        &[]
    }
}

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
    book_ids: HashMap<BookKey, u32>,
    signals: HashMap<(Option<Venue>, Symbol, Interval, SignalKind), Vec<(u32, Arc<str>)>>,
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
                    ix.add(slot, 0, book, Series::Price, true, *level, h, false, &described);
                }
                RuleCondition::Below { level } => {
                    ix.add(slot, 0, book, Series::Price, false, *level, h, false, &described);
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
                        ix.add(slot, 0, book, Series::MoveUp(w), true, *percent, h, false, &c);
                    }
                    if matches!(direction, MoveDirection::Down | MoveDirection::Either) {
                        let c = format!("price fell {percent}% within {window_secs}s");
                        ix.add(slot, 1, book, Series::MoveDown(w), true, *percent, h, false, &c);
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
                    armed[*new_c as usize] = self.armed.get(*old_c as usize).copied().unwrap_or(true);
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
                                .and_then(|ob| ob.windows.iter().position(|o| o.window_ns == w.window_ns))
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
        self.series(&index, b, &book.price, prev, q.price, &fire, None, out);
        for (wi, w) in book.windows.iter().enumerate() {
            let ws = &mut self.books[b as usize].windows[wi];
            let (up, down) = ws.push(t, q.price, w.window_ns);
            let (pu, pd) = (ws.up.replace(up), ws.down.replace(down));
            self.series(&index, b, &w.up, pu, up, &fire, Some(up), out);
            self.series(&index, b, &w.down, pd, down, &fire, Some(down), out);
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
            let Some(Reverse((_, c))) = st.deferred.pop() else { break };
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
        _book: u32,
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
        match prev {
            None => {
                // first observation: every condition that holds fires (crossings wait)
                for (_, c) in range(&ladders.rising.fire, f64::NEG_INFINITY, true, v, false) {
                    if !index.components[*c as usize].needs_transition {
                        self.try_fire(index, *c, fire, value, out);
                    }
                }
                for (_, c) in range(&ladders.falling.fire, v, false, f64::INFINITY, true) {
                    if !index.components[*c as usize].needs_transition {
                        self.try_fire(index, *c, fire, value, out);
                    }
                }
            }
            Some(u) if v > u => {
                for (_, c) in range(&ladders.falling.rearm, u, false, v, true) {
                    self.armed[*c as usize] = true;
                }
                for (_, c) in range(&ladders.rising.fire, u, true, v, false) {
                    self.try_fire(index, *c, fire, value, out);
                }
            }
            Some(u) if v < u => {
                for (_, c) in range(&ladders.rising.rearm, v, true, u, false) {
                    self.armed[*c as usize] = true;
                }
                for (_, c) in range(&ladders.falling.fire, v, false, u, true) {
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
            let Some(slots) = index.signals.get(&key) else { continue };
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
