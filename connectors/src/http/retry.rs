//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Delays `initial · 2^attempt`, capped at `max`, each drawn uniformly from the upper half
/// ("equal jitter"): retries of many clients spread out but never come back sooner than
/// half the nominal delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
        }
    }

    /// The nominal (un-jittered) delay before retry number `attempt` (0-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`, jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt);
        let half = nominal / 2;
        let span = (nominal - half).as_nanos() as u64;
        let extra = if span == 0 {
            0
        } else {
            rand::rng().random_range(0..=span)
        };
        half + Duration::from_nanos(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_capped_and_jitter_within_the_upper_half() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.nominal(0), Duration::from_millis(100));
        assert_eq!(b.nominal(3), Duration::from_millis(800));
        assert_eq!(b.nominal(4), Duration::from_secs(1));
        assert_eq!(b.nominal(40), Duration::from_secs(1));
        let draws: Vec<Duration> = (0..200).map(|_| b.delay(2)).collect();
        assert!(draws
            .iter()
            .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400)));
        // jitter: not every draw is the same
        assert!(draws.iter().any(|d| *d != draws[0]));
    }
}
