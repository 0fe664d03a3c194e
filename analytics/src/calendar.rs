//! Trading sessions in a time zone: daily bars that follow a local day or an exchange
//! session (daylight saving included), merged from finer bars.
//!
//! A session opens at a local time and closes at a later local time the same day (or the
//! next day when `close <= open`, an overnight session), on the configured weekdays. Its
//! bar is the merge ([`merge_buckets`]) of every finer bar whose bucket lies wholly inside
//! it, labelled `1d` and starting at the session's open.

use chrono::offset::LocalResult;
use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use pricestream_schemas::{Bar, Interval, TimestampNs};

use crate::rollup::merge_buckets;

const NS: i64 = 1_000_000_000;
const DAY_MIN: u32 = 24 * 60;

/// A daily session in a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    tz: Tz,
    /// Minutes after local midnight.
    open: u32,
    /// Minutes after local midnight (1440 = the next midnight); `<= open`: the next day.
    close: u32,
    /// Monday first.
    days: [bool; 7],
}

fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= DAY_MIN).then_some(h * 60 + m)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| s.starts_with(d) && s.len() >= 3)
}

impl Session {
    /// `tz`: an IANA name (`America/New_York`); `hours`: `HH:MM-HH:MM` local (default
    /// `00:00-24:00`, the whole local day); `days`: `mon-fri` or `mon,wed,fri` (default
    /// every day).
    pub fn parse(tz: &str, hours: Option<&str>, days: Option<&str>) -> Result<Session, String> {
        let tz: Tz = tz.parse().map_err(|_| {
            format!("unknown time zone {tz:?} (an IANA name such as America/New_York)")
        })?;
        let (open, close) = match hours {
            None => (0, DAY_MIN),
            Some(h) => {
                let bad = || format!("session {h:?} is not HH:MM-HH:MM, e.g. 09:30-16:00");
                let (o, c) = h.split_once('-').ok_or_else(bad)?;
                let (o, c) = (hhmm(o).ok_or_else(bad)?, hhmm(c).ok_or_else(bad)?);
                if o >= DAY_MIN || o == c {
                    return Err(bad());
                }
                (o, c)
            }
        };
        let mut on = [days.is_none(); 7];
        if let Some(d) = days {
            let bad = || format!("days {d:?} is not like mon-fri or mon,wed,fri");
            for part in d.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                        let mut i = a;
                        loop {
                            on[i] = true;
                            if i == b {
                                break;
                            }
                            i = (i + 1) % 7;
                        }
                    }
                    None => on[day(part).ok_or_else(bad)?] = true,
                }
            }
        }
        Ok(Session {
            tz,
            open,
            close,
            days: on,
        })
    }

    /// The UTC instant of local `date` + `minutes`. An ambiguous local time (the repeated
    /// hour of a fall-back) is its first occurrence; a skipped one (spring-forward) is the
    /// first instant after the gap.
    fn at(&self, date: NaiveDate, minutes: u32) -> Option<TimestampNs> {
        let local: NaiveDateTime =
            date.and_hms_opt(0, 0, 0)? + chrono::Duration::minutes(i64::from(minutes));
        let mut probe = local;
        for _ in 0..=180 {
            match self.tz.from_local_datetime(&probe) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    return t.timestamp().checked_mul(NS)
                }
                LocalResult::None => probe += chrono::Duration::minutes(1),
            }
        }
        None
    }

    fn date_of(&self, ts: TimestampNs) -> Option<NaiveDate> {
        let utc = chrono::DateTime::from_timestamp(ts.div_euclid(NS), 0)?;
        Some(utc.with_timezone(&self.tz).date_naive())
    }

    /// The sessions that open in `[from, to)`, as `(open, close)` UTC nanoseconds,
    /// ascending; at most `max` of them (the earliest).
    pub fn between(
        &self,
        from: TimestampNs,
        to: TimestampNs,
        max: usize,
    ) -> Vec<(TimestampNs, TimestampNs)> {
        let mut out = Vec::new();
        let (Some(first), Some(last)) = (self.date_of(from), self.date_of(to)) else {
            return out;
        };
        let mut date = first.pred_opt().unwrap_or(first);
        while date <= last && out.len() < max {
            if self.days[date.weekday().num_days_from_monday() as usize] {
                let open = self.at(date, self.open);
                let close = if self.close > self.open {
                    self.at(date, self.close)
                } else {
                    date.succ_opt().and_then(|d| self.at(d, self.close))
                };
                if let (Some(o), Some(c)) = (open, close) {
                    if o >= from && o < to && c > o {
                        out.push((o, c));
                    }
                }
            }
            match date.succ_opt() {
                Some(d) => date = d,
                None => break,
            }
        }
        out
    }

    /// The coarsest of 1h, 15m, 5m and 1m whose buckets align with every open and close
    /// of `sessions` (`None` if not even 1m does: a historical offset with seconds).
    pub fn child_interval(sessions: &[(TimestampNs, TimestampNs)]) -> Option<Interval> {
        [Interval::H1, Interval::M15, Interval::M5, Interval::M1]
            .into_iter()
            .find(|iv| {
                sessions
                    .iter()
                    .all(|(o, c)| o.rem_euclid(iv.nanos()) == 0 && c.rem_euclid(iv.nanos()) == 0)
            })
    }
}

/// The session bars of `sessions` (sorted, not overlapping) from finer bars: each child
/// counts in the session that holds its whole bucket; children outside every session are
/// left out. Bars are labelled `1d` and start at their session's open.
pub fn session_bars(children: &[Bar], sessions: &[(TimestampNs, TimestampNs)]) -> Vec<Bar> {
    merge_buckets(children, Interval::D1, |b| {
        let i = sessions.partition_point(|(open, _)| *open <= b.bucket_start);
        let (open, close) = sessions.get(i.checked_sub(1)?)?;
        (b.bucket_end() <= *close).then_some(*open)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OhlcvAcc;
    use pricestream_schemas::{Symbol, Venue};

    const MIN: i64 = 60 * NS;
    const HOUR: i64 = 60 * MIN;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> TimestampNs {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp()
            * NS
    }

    #[test]
    fn new_york_session_follows_daylight_saving_and_weekdays() {
        let s = Session::parse("America/New_York", Some("09:30-16:00"), Some("mon-fri")).unwrap();
        // Fri 2025-10-31 (EDT, UTC-4) … Tue 2025-11-04 (EST, UTC-5); DST ended Sun Nov 2
        let got = s.between(utc(2025, 10, 31, 0, 0), utc(2025, 11, 5, 0, 0), 100);
        assert_eq!(
            got,
            vec![
                (utc(2025, 10, 31, 13, 30), utc(2025, 10, 31, 20, 0)),
                (utc(2025, 11, 3, 14, 30), utc(2025, 11, 3, 21, 0)),
                (utc(2025, 11, 4, 14, 30), utc(2025, 11, 4, 21, 0)),
            ]
        );
        assert_eq!(Session::child_interval(&got), Some(Interval::M15));
        assert_eq!(
            s.between(utc(2025, 10, 31, 0, 0), utc(2025, 11, 5, 0, 0), 1)
                .len(),
            1
        );
    }

    #[test]
    fn local_days_and_their_odd_lengths() {
        // Berlin: the local day of the spring change is 23 h, of the autumn change 25 h
        let s = Session::parse("Europe/Berlin", None, None).unwrap();
        let got = s.between(utc(2025, 3, 29, 12, 0), utc(2025, 3, 31, 12, 0), 10);
        assert_eq!(
            got,
            vec![
                (utc(2025, 3, 29, 23, 0), utc(2025, 3, 30, 22, 0)),
                (utc(2025, 3, 30, 22, 0), utc(2025, 3, 31, 22, 0)),
            ]
        );
        let autumn = s.between(utc(2025, 10, 25, 12, 0), utc(2025, 10, 26, 12, 0), 10);
        assert_eq!(autumn[0].1 - autumn[0].0, 25 * HOUR);
        assert_eq!(Session::child_interval(&got), Some(Interval::H1));
        // a half-hour zone needs 15m children; a session in the skipped hour opens after it
        let kolkata = Session::parse("Asia/Kolkata", None, None).unwrap();
        let k = kolkata.between(utc(2025, 1, 1, 0, 0), utc(2025, 1, 2, 0, 0), 10);
        assert_eq!(k, vec![(utc(2025, 1, 1, 18, 30), utc(2025, 1, 2, 18, 30))]);
        assert_eq!(Session::child_interval(&k), Some(Interval::M15));
        let gap = Session::parse("Europe/Berlin", Some("02:30-12:00"), None).unwrap();
        let g = gap.between(utc(2025, 3, 30, 0, 0), utc(2025, 3, 30, 12, 0), 10);
        assert_eq!(g, vec![(utc(2025, 3, 30, 1, 0), utc(2025, 3, 30, 10, 0))]);
        // overnight: 18:00 to 17:00 the next day
        let night =
            Session::parse("America/Chicago", Some("18:00-17:00"), Some("sun-thu")).unwrap();
        let n = night.between(utc(2025, 1, 4, 0, 0), utc(2025, 1, 6, 1, 0), 10);
        assert_eq!(n, vec![(utc(2025, 1, 6, 0, 0), utc(2025, 1, 6, 23, 0))]);
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let e = Session::parse("Mars/Olympus", None, None).unwrap_err();
        assert!(e.contains("unknown time zone"), "{e}");
        for h in ["9-16", "09:30", "25:00-26:00", "10:00-10:00", "09:60-10:00"] {
            assert!(Session::parse("UTC", Some(h), None).is_err(), "{h}");
        }
        assert!(Session::parse("UTC", None, Some("mon-funday")).is_err());
        let wrap = Session::parse("UTC", None, Some("fri-mon")).unwrap();
        assert_eq!(wrap.days, [true, false, false, false, true, true, true]);
    }

    #[test]
    fn session_bars_merge_the_children_inside_each_session() {
        let s = Session::parse("America/New_York", Some("09:30-16:00"), Some("mon-fri")).unwrap();
        let from = utc(2025, 10, 31, 0, 0);
        let sessions = s.between(from, utc(2025, 11, 4, 0, 0), 10);
        let sym = Symbol::new("SPY-USD").unwrap();
        // 15m bars around the clock for four days, prices from a simple recurrence
        let children: Vec<Bar> = (0..4 * 96)
            .map(|i| {
                let start = from + i * 15 * MIN;
                let p = 100.0 + ((i * 37) % 23) as f64;
                let mut acc = OhlcvAcc::new(p, 1.0 + (i % 3) as f64, true, start + 1, start + 2);
                acc.add(p + 1.5, 0.5, true, start + 2, start + 3);
                acc.to_bar(
                    Venue::Synthetic,
                    sym.clone(),
                    Interval::M15,
                    start,
                    (i % 2) as u32,
                )
            })
            .collect();
        let got = session_bars(&children, &sessions);
        assert_eq!(got.len(), 2);
        // independently: EDT on Oct 31 (UTC-4), EST on Nov 3 (UTC-5)
        for (bar, (open_utc, hours)) in got.iter().zip([
            (utc(2025, 10, 31, 13, 30), 6.5),
            (utc(2025, 11, 3, 14, 30), 6.5),
        ]) {
            let end = open_utc + (hours * HOUR as f64) as i64;
            let inside: Vec<&Bar> = children
                .iter()
                .filter(|c| c.bucket_start >= open_utc && c.bucket_start < end)
                .collect();
            assert_eq!(inside.len(), 26);
            assert_eq!(bar.bucket_start, open_utc);
            assert_eq!(bar.interval, Interval::D1);
            assert_eq!(bar.open, inside[0].open);
            assert_eq!(bar.close, inside[25].close);
            let high = inside.iter().map(|c| c.high).fold(f64::MIN, f64::max);
            let low = inside.iter().map(|c| c.low).fold(f64::MAX, f64::min);
            assert_eq!((bar.high, bar.low), (high, low));
            let volume: f64 = inside.iter().map(|c| c.volume).sum();
            assert!((bar.volume - volume).abs() <= 1e-9 * volume);
            assert_eq!(bar.trade_count, 52);
            assert_eq!(bar.revision, inside.iter().map(|c| c.revision).sum::<u32>());
        }
    }
}
