//! Per-venue request-weight limiter: a GCRA limiter (`governor`) sized so that no window
//! of the venue's length — aligned with the venue's clock or not — carries more than the
//! allowed weight, plus a penalty box the venue fills with `Retry-After` (429 / 418) or
//! with its own count of used weight (`X-MBX-USED-WEIGHT-1M`), which also counts other
//! clients behind the same address.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::error::{ConnectorError, Result};
use crate::metrics as m;

pub struct WeightLimiter {
    venue: &'static str,
    limiter: DefaultDirectRateLimiter,
    burst: u32,
    /// The venue's budget per window, and the window.
    budget: u32,
    window: Duration,
    blocked_until: Mutex<Option<Instant>>,
}

/// Margin added to the rest of the venue's window: clocks differ a little.
const WINDOW_END_MARGIN: Duration = Duration::from_millis(50);

impl WeightLimiter {
    /// At most `weight_per_window` weight in any `window`: half of it may be spent at once
    /// (the burst) and the rest refills evenly over the window, so burst + refill never
    /// exceed the budget whatever window the venue counts in.
    pub fn new(venue: &'static str, weight_per_window: u32, window: Duration) -> Result<Self> {
        if weight_per_window < 2 || window.is_zero() {
            return Err(ConnectorError::Config(format!(
                "{venue}: weight_per_window must be >= 2 and window_ms > 0"
            )));
        }
        let burst = weight_per_window / 2;
        let refill = weight_per_window - burst;
        let period = window / refill;
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .ok_or_else(|| ConnectorError::Config(format!("{venue}: rate window too short")))?
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Ok(WeightLimiter {
            venue,
            limiter: RateLimiter::direct(quota),
            burst,
            budget: weight_per_window,
            window,
            blocked_until: Mutex::new(None),
        })
    }

    fn blocked_until(&self) -> Option<Instant> {
        *self.blocked_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request of `weight` may be sent; returns how long it waited.
    pub async fn acquire(&self, weight: u32) -> Duration {
        let start = Instant::now();
        while let Some(until) = self.blocked_until() {
            let now = Instant::now();
            if until <= now {
                break;
            }
            tokio::time::sleep(until - now).await;
        }
        let n = NonZeroU32::new(weight.clamp(1, self.burst)).unwrap_or(NonZeroU32::MIN);
        // Cannot fail: n never exceeds the burst.
        let _ = self.limiter.until_n_ready(n).await;
        let waited = start.elapsed();
        if waited >= Duration::from_millis(1) {
            metrics::counter!(m::RATE_LIMIT_WAITS, "venue" => self.venue).increment(1);
            metrics::histogram!(m::RATE_LIMIT_WAIT_SECONDS, "venue" => self.venue)
                .record(waited.as_secs_f64());
        }
        waited
    }

    /// The venue says `used` weight is spent in its current window (its windows start at
    /// multiples of the window length since the Unix epoch, e.g. every UTC minute). If
    /// another request of `weight` would not fit the budget, nothing is sent before that
    /// window ends.
    pub fn venue_reports_used(&self, used: u32, weight: u32) {
        metrics::gauge!(m::VENUE_USED_WEIGHT, "venue" => self.venue).set(f64::from(used));
        if used.saturating_add(weight) > self.budget {
            let window = self.window.as_nanos().max(1);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let left = u64::try_from(window - now % window).unwrap_or(u64::MAX);
            self.penalize(Duration::from_nanos(left) + WINDOW_END_MARGIN);
        }
    }

    /// The venue asked for a pause: nothing is sent before `d` has passed.
    pub fn penalize(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut b = self.blocked_until.lock().unwrap_or_else(|e| e.into_inner());
        *b = Some(b.map_or(until, |old| old.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_window_carries_more_than_the_budget() {
        // 20 weight per 200 ms; requests of weight 2.
        let l = WeightLimiter::new("test", 20, Duration::from_millis(200)).unwrap();
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..30 {
            l.acquire(2).await;
            sent.push(start.elapsed());
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_millis(200))
                .count();
            assert!(
                in_window * 2 <= 20,
                "window at {t:?} carries {in_window} requests"
            );
        }
        // and it is not needlessly slow: 60 weight at 10/200ms after a burst of 10
        assert!(start.elapsed() < Duration::from_millis(1_500));
    }

    #[tokio::test]
    async fn a_penalty_holds_requests_back() {
        let l = WeightLimiter::new("test", 100, Duration::from_secs(1)).unwrap();
        l.penalize(Duration::from_millis(120));
        let waited = l.acquire(1).await;
        assert!(waited >= Duration::from_millis(110), "{waited:?}");
    }
}
