//! Pure market math: the OHLCV fold, rollups, indicators and profiles. No I/O, no clocks.

pub mod calendar;
pub mod indicators;
pub mod ohlcv;
pub mod rollup;
pub mod seasonality;
pub mod signals;

pub use ohlcv::OhlcvAcc;
pub use rollup::rollup;
pub use signals::{batch_signals, MaKind, SignalEngine, SignalParams};
