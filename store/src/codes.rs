//! The text codes enums are stored as (the same as their wire names).

use pricestream_schemas::{QuoteKind, SchemaError, Side, SignalKind};

use crate::Result;

fn unknown(field: &'static str, s: &str) -> crate::StoreError {
    SchemaError::Invalid {
        field,
        message: format!("unknown stored value {s:?}"),
    }
    .into()
}

pub(crate) fn quote_kind(k: QuoteKind) -> &'static str {
    match k {
        QuoteKind::Trade => "trade",
        QuoteKind::Ticker => "ticker",
    }
}

pub(crate) fn parse_quote_kind(s: &str) -> Result<QuoteKind> {
    match s {
        "trade" => Ok(QuoteKind::Trade),
        "ticker" => Ok(QuoteKind::Ticker),
        _ => Err(unknown("kind", s)),
    }
}

pub(crate) fn side(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

pub(crate) fn parse_side(s: &str) -> Result<Side> {
    match s {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        _ => Err(unknown("side", s)),
    }
}

pub(crate) fn signal_kind(k: SignalKind) -> &'static str {
    k.as_str()
}

pub(crate) fn parse_signal_kind(s: &str) -> Result<SignalKind> {
    s.parse::<SignalKind>().map_err(|_| unknown("kind", s))
}

pub(crate) fn parse_run_status(s: &str) -> Result<pricestream_schemas::RunStatus> {
    use pricestream_schemas::RunStatus;
    match s {
        "running" => Ok(RunStatus::Running),
        "completed" => Ok(RunStatus::Completed),
        "failed" => Ok(RunStatus::Failed),
        _ => Err(unknown("status", s)),
    }
}

/// A trade id as stored in a signed 64-bit column: the same bits, so the round trip is
/// exact for every `u64`.
pub(crate) fn trade_id_to_db(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

pub(crate) fn trade_id_from_db(id: i64) -> u64 {
    u64::from_ne_bytes(id.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_wire_names_and_round_trip() {
        for k in SignalKind::ALL {
            let name = k.as_str();
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{name}\""));
            assert_eq!(signal_kind(k), name);
            assert_eq!(parse_signal_kind(signal_kind(k)).unwrap(), k);
        }
        for k in [QuoteKind::Trade, QuoteKind::Ticker] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", quote_kind(k))
            );
            assert_eq!(parse_quote_kind(quote_kind(k)).unwrap(), k);
        }
        for s in [Side::Buy, Side::Sell] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", side(s))
            );
            assert_eq!(parse_side(side(s)).unwrap(), s);
        }
        assert!(parse_signal_kind("nope").is_err());
        for id in [0, 1, u64::MAX, i64::MAX as u64 + 1] {
            assert_eq!(trade_id_from_db(trade_id_to_db(id)), id);
        }
    }
}
