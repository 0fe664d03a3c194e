//! Identifiers: venues, canonical symbols and bar intervals.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Result, SchemaError};
use crate::time::TimestampNs;

/// The venues PriceStream ships connectors for (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Venue {
    Binance,
    Coinbase,
    Coingecko,
    Kraken,
    Synthetic,
}

impl Venue {
    pub const ALL: [Venue; 5] = [
        Venue::Binance,
        Venue::Coinbase,
        Venue::Coingecko,
        Venue::Kraken,
        Venue::Synthetic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Coinbase => "coinbase",
            Venue::Coingecko => "coingecko",
            Venue::Kraken => "kraken",
            Venue::Synthetic => "synthetic",
        }
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Venue {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self> {
        Venue::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| SchemaError::Invalid {
                field: "venue",
                message: format!("unknown venue {s:?}"),
            })
    }
}

/// A canonical symbol such as `BTC-USDT`: base and quote asset in upper case, joined by `-`.
/// Cheap to clone (shared string), and carries its [`Symbol::stable_hash`], computed once:
/// partitioning, the dataflow's exchange and hash maps keyed by symbol never rehash the
/// string. Ordering is the string's.
#[derive(Clone)]
pub struct Symbol {
    hash: u64,
    name: Arc<str>,
}

/// FNV-1a, 64 bit.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Symbol {
    /// Validates and builds a canonical symbol.
    pub fn new(s: &str) -> Result<Self> {
        let valid_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 16
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        match s.split_once('-') {
            Some((base, quote)) if valid_part(base) && valid_part(quote) => Ok(Symbol {
                hash: fnv1a(s),
                name: Arc::from(s),
            }),
            _ => Err(SchemaError::Symbol(s.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// A stable 64-bit hash (FNV-1a) used for partitioning; identical on every platform
    /// and across releases, unlike `std`'s hasher.
    pub fn stable_hash(&self) -> u64 {
        self.hash
    }
}

impl PartialEq for Symbol {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.name, &other.name) || self.name == other.name)
    }
}

impl Eq for Symbol {}

impl std::hash::Hash for Symbol {
    /// Equal symbols have equal stable hashes, so the hash alone is a valid `Hash`.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Symbol {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.name)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for Symbol {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self> {
        Symbol::new(s)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Symbol::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Bar intervals (a closed set). 1m bars come from quotes; the others are rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Interval {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    pub const ALL: [Interval; 5] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::H1,
        Interval::D1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        }
    }

    /// Length of the interval in nanoseconds.
    pub fn nanos(self) -> i64 {
        const MIN: i64 = 60 * 1_000_000_000;
        match self {
            Interval::M1 => MIN,
            Interval::M5 => 5 * MIN,
            Interval::M15 => 15 * MIN,
            Interval::H1 => 60 * MIN,
            Interval::D1 => 24 * 60 * MIN,
        }
    }

    /// Start of the bucket that contains `ts` (floor, correct for negative times too).
    pub fn bucket_start(self, ts: TimestampNs) -> TimestampNs {
        ts - ts.rem_euclid(self.nanos())
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| SchemaError::Invalid {
                field: "interval",
                message: format!("unknown interval {s:?}; expected one of 1m, 5m, 15m, 1h, 1d"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_validated() {
        assert!(Symbol::new("BTC-USDT").is_ok());
        assert!(Symbol::new("1INCH-USD").is_ok());
        for bad in ["BTCUSDT", "btc-usdt", "BTC-", "-USD", "BTC-USD-X", ""] {
            assert!(Symbol::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bucket_start_floors() {
        let m = Interval::M1.nanos();
        assert_eq!(Interval::M1.bucket_start(0), 0);
        assert_eq!(Interval::M1.bucket_start(m - 1), 0);
        assert_eq!(Interval::M1.bucket_start(m), m);
        assert_eq!(Interval::M1.bucket_start(-1), -m);
        assert_eq!(
            Interval::H1.bucket_start(3 * 3600 * 1_000_000_000 + 5),
            3 * 3600 * 1_000_000_000
        );
    }

    #[test]
    fn stable_hash_is_fixed() {
        // FNV-1a of "BTC-USDT": a fixed value, so partitioning never changes across releases.
        let s = Symbol::new("BTC-USDT").unwrap();
        assert_eq!(s.stable_hash(), s.clone().stable_hash());
        assert_eq!(s.stable_hash(), fnv1a("BTC-USDT"));
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(
            s.stable_hash(),
            Symbol::new("ETH-USDT").unwrap().stable_hash()
        );
    }
}
