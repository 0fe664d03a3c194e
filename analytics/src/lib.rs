//! Pure market math: the OHLCV fold, indicators and profiles. No I/O, no clocks.

pub mod ohlcv;

pub use ohlcv::OhlcvAcc;
