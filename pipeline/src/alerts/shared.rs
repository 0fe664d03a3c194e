//! The rule index shared by the workers, and the task that keeps it in step with the store.
//!
//! Rules are created through the API, which may run in another process, so the index is
//! reloaded when the store's rule version changes (polled every `rules_refresh_ms`), and at
//! once when this process changes a rule (the store's in-process notification).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pricestream_store::alerts::RulesVersion;
use pricestream_store::Store;
use tokio_util::sync::CancellationToken;

use super::index::AlertIndex;
use crate::metrics as m;

#[derive(Default)]
struct Inner {
    version: AtomicU64,
    index: RwLock<Arc<AlertIndex>>,
}

/// A handle on the current rule index; cheap to clone, read by every worker.
#[derive(Clone, Default)]
pub struct SharedRules {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRules")
            .field("version", &self.version())
            .finish()
    }
}

/// Two handles are equal when they share one index.
impl PartialEq for SharedRules {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl SharedRules {
    /// The version of the published index (0: none published yet).
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    /// The current index and its version.
    pub fn current(&self) -> (u64, Arc<AlertIndex>) {
        let index = match self.inner.index.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        (self.version(), index)
    }

    /// Publishes a new index; workers pick it up at their next event.
    pub fn publish(&self, index: AlertIndex) {
        let index = Arc::new(index);
        match self.inner.index.write() {
            Ok(mut g) => *g = index,
            Err(poisoned) => *poisoned.into_inner() = index,
        }
        self.inner.version.fetch_add(1, Ordering::AcqRel);
    }
}

/// Loads the active rules into `shared` now and whenever they change, until `stop`.
/// A store error is logged and retried at the next poll; the last good index stays.
pub async fn refresh_rules(
    store: Arc<dyn Store>,
    shared: SharedRules,
    poll: Duration,
    stop: CancellationToken,
) {
    let mut changes = store.watch_alert_rules();
    let mut seen: Option<RulesVersion> = None;
    loop {
        match store.alert_rules_version().await {
            Ok(v) if Some(v) == seen => {}
            Ok(v) => match store.active_alert_rules().await {
                Ok(rules) => {
                    let index = AlertIndex::build(&rules);
                    metrics::gauge!(m::ALERT_RULES_ACTIVE).set(index.len() as f64);
                    tracing::info!(rules = index.len(), "alert rules loaded");
                    shared.publish(index);
                    seen = Some(v);
                }
                Err(e) => tracing::warn!(error = %e, "loading alert rules failed"),
            },
            Err(e) => tracing::warn!(error = %e, "reading the alert rule version failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
            r = changes.changed() => {
                if r.is_err() {
                    // the store is gone: keep polling on the timer only
                    changes = store.watch_alert_rules();
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(poll) => {}
                    }
                }
            }
        }
    }
}
