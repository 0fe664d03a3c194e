//! Venue symbols (`BTCUSDT`, `bitcoin/usd`, `BTC-USD`) ↔ canonical symbols (`BTC-USDT`),
//! from configuration: a table `venue symbol = "CANONICAL"` per connector.

use std::collections::{BTreeMap, HashMap};

use pricestream_schemas::Symbol;

use crate::error::{ConnectorError, Result};

#[derive(Debug, Clone, Default)]
pub struct SymbolMap {
    to_canonical: HashMap<String, Symbol>,
    to_venue: HashMap<Symbol, String>,
}

impl SymbolMap {
    /// Builds the map; venue symbols are matched case-insensitively (Binance streams name
    /// them in lower case). Two venue symbols may not map to one canonical symbol.
    pub fn new(venue: &str, table: &BTreeMap<String, String>) -> Result<Self> {
        let mut map = SymbolMap::default();
        for (v, c) in table {
            let canonical = Symbol::new(c).map_err(|e| {
                ConnectorError::Config(format!("{venue}: symbol {v:?} maps to {c:?}: {e}"))
            })?;
            if v.trim().is_empty() {
                return Err(ConnectorError::Config(format!(
                    "{venue}: empty venue symbol for {c}"
                )));
            }
            if let Some(other) = map.to_venue.insert(canonical.clone(), v.clone()) {
                return Err(ConnectorError::Config(format!(
                    "{venue}: {other:?} and {v:?} both map to {c}"
                )));
            }
            map.to_canonical.insert(v.to_ascii_uppercase(), canonical);
        }
        Ok(map)
    }

    /// The canonical symbol of a venue symbol, if configured.
    pub fn canonical(&self, venue_symbol: &str) -> Option<&Symbol> {
        self.to_canonical.get(&venue_symbol.to_ascii_uppercase())
    }

    /// The venue's spelling of a canonical symbol, as configured.
    pub fn venue_symbol(&self, symbol: &Symbol) -> Option<&str> {
        self.to_venue.get(symbol).map(String::as_str)
    }

    /// Venue symbols, sorted.
    pub fn venue_symbols(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.to_venue.values().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    pub fn is_empty(&self) -> bool {
        self.to_venue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways_and_refuses_bad_tables() {
        let t: BTreeMap<String, String> = [("BTCUSDT", "BTC-USDT"), ("bitcoin/usd", "BTC-USD")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into_iter()
            .collect();
        let m = SymbolMap::new("t", &t).unwrap();
        assert_eq!(m.canonical("btcusdt").unwrap().as_str(), "BTC-USDT");
        assert_eq!(m.canonical("BITCOIN/USD").unwrap().as_str(), "BTC-USD");
        assert_eq!(
            m.venue_symbol(&Symbol::new("BTC-USD").unwrap()),
            Some("bitcoin/usd")
        );
        assert!(m.canonical("ETHUSDT").is_none());
        let mut bad = t.clone();
        bad.insert("XBTUSDT".into(), "BTC-USDT".into());
        assert!(SymbolMap::new("t", &bad).is_err());
        let mut bad = t;
        bad.insert("ETHUSDT".into(), "ethusdt".into());
        assert!(SymbolMap::new("t", &bad).is_err());
    }
}
