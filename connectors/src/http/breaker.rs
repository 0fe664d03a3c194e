//! A circuit breaker per venue: closed → (N consecutive failures) → open → (after a
//! cool-down) half-open, where one probe call decides: success closes it, failure opens it
//! again. Its state is the gauge `pricestream_connector_breaker_state` (0 closed, 1
//! half-open, 2 open).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics as m;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    venue: &'static str,
    threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

/// Permission to make one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Open: no call until this much time has passed.
    Rejected(Duration),
}

impl CircuitBreaker {
    pub fn new(venue: &'static str, threshold: u32, open_for: Duration) -> Self {
        let b = CircuitBreaker {
            venue,
            threshold: threshold.max(1),
            open_for,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        };
        b.export(BreakerState::Closed);
        b
    }

    fn export(&self, state: BreakerState) {
        metrics::gauge!(m::BREAKER_STATE, "venue" => self.venue).set(state.gauge_value());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is always valid, even if a holder panicked.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call.
    pub fn admit(&self) -> Admission {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Admission::Allowed,
            Inner::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *inner = Inner::HalfOpen { probing: true };
                    drop(inner);
                    self.export(BreakerState::HalfOpen);
                    tracing::info!(venue = self.venue, "circuit breaker half-open: probing");
                    Admission::Allowed
                } else {
                    Admission::Rejected(until - now)
                }
            }
            Inner::HalfOpen { probing: true } => Admission::Rejected(Duration::from_millis(50)),
            Inner::HalfOpen { probing: false } => {
                *inner = Inner::HalfOpen { probing: true };
                Admission::Allowed
            }
        }
    }

    pub fn record_success(&self) {
        let mut inner = self.lock();
        let was_closed = matches!(*inner, Inner::Closed { .. });
        *inner = Inner::Closed { failures: 0 };
        drop(inner);
        if !was_closed {
            tracing::info!(venue = self.venue, "circuit breaker closed");
            self.export(BreakerState::Closed);
        }
    }

    /// A failure that says the venue is unhealthy.
    pub fn record_failure(&self) {
        self.open_if(|failures| failures >= self.threshold, self.open_for);
    }

    /// The venue said when to come back (418 ban): open at once for that long.
    pub fn open_for(&self, d: Duration) {
        self.open_if(|_| true, d.max(self.open_for));
    }

    /// A call that ended without saying anything about the venue's health (e.g. a 429):
    /// a half-open probe slot is released.
    pub fn record_neutral(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { probing: true } = *inner {
            *inner = Inner::HalfOpen { probing: false };
        }
    }

    fn open_if(&self, trip: impl Fn(u32) -> bool, d: Duration) {
        let mut inner = self.lock();
        let opened = match *inner {
            Inner::Closed { failures } => {
                let failures = failures + 1;
                if trip(failures) {
                    *inner = Inner::Open {
                        until: Instant::now() + d,
                    };
                    true
                } else {
                    *inner = Inner::Closed { failures };
                    false
                }
            }
            Inner::HalfOpen { .. } => {
                *inner = Inner::Open {
                    until: Instant::now() + d,
                };
                true
            }
            Inner::Open { until } => {
                *inner = Inner::Open {
                    until: until.max(Instant::now() + d),
                };
                false
            }
        };
        drop(inner);
        if opened {
            tracing::warn!(
                venue = self.venue,
                open_ms = d.as_millis() as u64,
                "circuit breaker open"
            );
            metrics::counter!(m::BREAKER_OPENED, "venue" => self.venue).increment(1);
            self.export(BreakerState::Open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_and_closes_on_success() {
        let b = CircuitBreaker::new("test", 3, Duration::from_millis(30));
        for _ in 0..2 {
            assert_eq!(b.admit(), Admission::Allowed);
            b.record_failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(b.admit(), Admission::Rejected(_)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admission::Allowed);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // only one probe at a time
        assert!(matches!(b.admit(), Admission::Rejected(_)));
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admission::Allowed);
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(), Admission::Allowed);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let b = CircuitBreaker::new("test", 2, Duration::from_secs(5));
        b.record_failure();
        b.record_success();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
