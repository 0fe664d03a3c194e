//! Exponential backoff with jitter, from `backon`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays `initial · 2^attempt`, capped at `max`, each plus a random jitter of up to that
/// delay again (`backon`'s jitter): retries of many clients spread out, and none comes
/// back sooner than the nominal delay.
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

    fn schedule(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .without_max_times()
    }

    /// The nominal (un-jittered) delay before retry number `attempt` (0-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        self.schedule()
            .build()
            .nth(attempt as usize)
            .unwrap_or(self.max)
    }

    /// The delay before retry number `attempt`, jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.schedule()
            .with_jitter()
            .build()
            .nth(attempt as usize)
            .unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_capped_and_jitter_up_to_twice_the_nominal() {
        // backon computes in f32: equal to the microsecond
        let about =
            |d: Duration, ms: u64| d.abs_diff(Duration::from_millis(ms)) < Duration::from_micros(1);
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert!(about(b.nominal(0), 100));
        assert!(about(b.nominal(3), 800), "{:?}", b.nominal(3));
        assert!(about(b.nominal(4), 1_000));
        assert!(about(b.nominal(40), 1_000));
        let draws: Vec<Duration> = (0..200).map(|_| b.delay(2)).collect();
        assert!(draws
            .iter()
            .all(|d| *d >= Duration::from_micros(399_999) && *d <= Duration::from_micros(800_001)));
        // jitter: not every draw is the same
        assert!(draws.iter().any(|d| *d != draws[0]));
    }
}
