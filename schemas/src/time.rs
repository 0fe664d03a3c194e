//! Time: every timestamp in PriceStream is UTC nanoseconds since the Unix epoch (`i64`).

use chrono::{DateTime, SecondsFormat, Utc};

/// UTC nanoseconds since the Unix epoch.
pub type TimestampNs = i64;

pub const NANOS_PER_MILLI: i64 = 1_000_000;
pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Formats nanoseconds as an RFC 3339 string with the precision it needs.
pub fn to_rfc3339(ts: TimestampNs) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ts).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `YYYY-MM-DD` of a UTC timestamp (used for lake partitions).
pub fn date_of(ts: TimestampNs) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ts)
        .format("%Y-%m-%d")
        .to_string()
}

/// Parses an RFC 3339 timestamp, or an integer of Unix epoch milliseconds.
pub fn parse_time(s: &str) -> Option<TimestampNs> {
    if let Ok(ms) = s.parse::<i64>() {
        return ms.checked_mul(NANOS_PER_MILLI);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// A source of "now". Window and indicator code never reads it; connectors and
/// schedulers take it so tests can replace it.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> TimestampNs;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> TimestampNs {
        Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_millis() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(NANOS_PER_SEC));
        assert_eq!(parse_time("1500"), Some(1_500 * NANOS_PER_MILLI));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(to_rfc3339(NANOS_PER_SEC), "1970-01-01T00:00:01Z");
        assert_eq!(date_of(86_400 * NANOS_PER_SEC), "1970-01-02");
    }
}
