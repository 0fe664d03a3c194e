//! Alerts: the rule index and its evaluation in the dataflow, the shared index kept in step
//! with the store, and the webhook dispatcher with its SSRF guard.

pub mod dispatcher;
pub mod index;
pub mod operator;
pub mod shared;
pub mod ssrf;

use serde::{Deserialize, Serialize};

pub use dispatcher::Dispatcher;
pub use index::{AlertIndex, Evaluator};
pub use shared::{refresh_rules, SharedRules};
pub use ssrf::{SsrfError, SsrfGuard};

/// Alert settings (section `[alerts]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate rules in the pipeline and run the webhook dispatcher (in `run`).
    pub enabled: bool,
    /// How often the rule index is compared with the store (rules created by another
    /// process); changes made by this process apply at once.
    pub rules_refresh_ms: u64,
    /// Attempts per delivery before it is dead-lettered.
    pub max_attempts: u32,
    /// Timeout of one webhook request.
    pub request_timeout_ms: u64,
    /// Backoff before the second attempt; doubles for each further one.
    pub retry_initial_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// Each backoff is scaled by a random factor in `[1 - jitter, 1 + jitter]`.
    pub retry_jitter: f64,
    /// How often the dispatcher looks for due deliveries (deliveries queued by this
    /// process wake it at once).
    pub poll_interval_ms: u64,
    /// Deliveries sent at once.
    pub concurrency: u32,
    /// How long a claimed delivery stays with its dispatcher before another may take it
    /// (after a crash); must exceed the request timeout.
    pub lease_ms: u64,
    /// Networks (`127.0.0.0/8`, `::1`) or host names that webhooks may reach although they
    /// are loopback, private, link-local or metadata addresses.
    pub ssrf_allowlist: Vec<String>,
    /// Rules one API key may have active.
    pub max_rules_per_owner: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            rules_refresh_ms: 1_000,
            max_attempts: 4,
            request_timeout_ms: 5_000,
            retry_initial_delay_ms: 1_000,
            retry_max_delay_ms: 60_000,
            retry_jitter: 0.2,
            poll_interval_ms: 500,
            concurrency: 16,
            lease_ms: 60_000,
            ssrf_allowlist: Vec::new(),
            max_rules_per_owner: 1_000,
        }
    }
}

impl AlertsConfig {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("alerts.max_attempts must be at least 1".into());
        }
        if self.request_timeout_ms == 0 || self.poll_interval_ms == 0 || self.rules_refresh_ms == 0
        {
            return Err(
                "alerts.request_timeout_ms, poll_interval_ms and rules_refresh_ms must be positive"
                    .into(),
            );
        }
        if self.lease_ms <= self.request_timeout_ms {
            return Err("alerts.lease_ms must exceed alerts.request_timeout_ms".into());
        }
        if !(0.0..=1.0).contains(&self.retry_jitter) {
            return Err("alerts.retry_jitter must be within 0..=1".into());
        }
        if self.concurrency == 0 {
            return Err("alerts.concurrency must be at least 1".into());
        }
        SsrfGuard::new(&self.ssrf_allowlist).map(|_| ())
    }

    /// The SSRF guard of this configuration.
    pub fn guard(&self) -> Result<SsrfGuard, String> {
        SsrfGuard::new(&self.ssrf_allowlist)
    }
}
