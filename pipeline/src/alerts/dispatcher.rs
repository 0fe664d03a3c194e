//! The webhook dispatcher: takes due deliveries from the store's queue, POSTs them signed,
//! and records every attempt.
//!
//! A request carries `Idempotency-Key` (rule id + trigger time, the same for every
//! attempt), `X-PriceStream-Timestamp` (Unix seconds) and `X-PriceStream-Signature:
//! v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`. A 2xx delivers; a 5xx, 408, 429,
//! a timeout or a connection error is retried with exponential backoff and jitter until
//! `max_attempts`; any other status (and a URL the SSRF guard refuses) is final. Deliveries
//! that run out of attempts are dead-lettered, to be retried through the API.
//!
//! Deliveries are claimed with a lease, so a dispatcher that dies mid-send leaves them to be
//! taken again after the lease; a delivered one is never sent again. (A crash between the
//! receiver's 2xx and recording it can resend with the same idempotency key, which is what
//! the key is for.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use pricestream_schemas::{Clock, SystemClock, TimestampNs, NANOS_PER_SEC};
use pricestream_store::alerts::{AttemptNext, ClaimedDelivery, DeliveryAttempt, FinishedAttempt};
use pricestream_store::Store;
use rand::Rng;
use sha2::Sha256;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ssrf::{GuardedResolver, SsrfGuard};
use super::AlertsConfig;
use crate::metrics as m;

/// Header names of a webhook request.
pub mod headers {
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    pub const TIMESTAMP: &str = "x-pricestream-timestamp";
    pub const SIGNATURE: &str = "x-pricestream-signature";
    pub const DELIVERY: &str = "x-pricestream-delivery";
    pub const ATTEMPT: &str = "x-pricestream-attempt";
}

/// `v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is unreachable in practice
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + bytes.len() * 2);
    out.push_str("v1=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Checks a signature header against the body, in constant time.
pub fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("v1=") else {
        return false;
    };
    if hex.len() != 64 {
        return false;
    }
    let mut sig = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let Ok(s) = std::str::from_utf8(chunk) else {
            return false;
        };
        let Ok(b) = u8::from_str_radix(s, 16) else {
            return false;
        };
        sig[i] = b;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The JSON body of a delivery: the same bytes for every attempt.
pub fn body(d: &ClaimedDelivery) -> String {
    format!(
        "{{\"type\":\"alert\",\"delivery_id\":{},\"idempotency_key\":{},\"alert\":{}}}",
        json_string(&d.delivery.id),
        json_string(&d.delivery.idempotency_key),
        d.delivery.payload
    )
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The metric label and the stored outcome.
    pub label: &'static str,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub retryable: bool,
}

/// The one place that decides whether a webhook attempt may be retried.
pub fn classify_status(status: u16) -> Outcome {
    if (200..300).contains(&status) {
        Outcome {
            label: "delivered",
            status: Some(status),
            error: None,
            retryable: false,
        }
    } else {
        Outcome {
            label: "http_error",
            status: Some(status),
            error: Some(format!("receiver answered HTTP {status}")),
            retryable: status >= 500 || status == 408 || status == 429,
        }
    }
}

fn classify_error(e: &reqwest::Error) -> Outcome {
    let refused = {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut found = false;
        while let Some(s) = src {
            if s.downcast_ref::<super::SsrfError>().is_some() {
                found = true;
                break;
            }
            src = s.source();
        }
        found
    };
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    let (label, retryable) = if refused {
        ("refused", false)
    } else if e.is_timeout() {
        ("timeout", true)
    } else if e.is_connect() {
        ("connect_error", true)
    } else {
        ("error", true)
    };
    Outcome {
        label,
        status: None,
        error: Some(text),
        retryable,
    }
}

/// The backoff before attempt `n + 1` of a delivery that has failed `n` times (n ≥ 1).
pub fn backoff(cfg: &AlertsConfig, failed: u32, rng: &mut impl Rng) -> Duration {
    let base = cfg
        .retry_initial_delay_ms
        .saturating_mul(1u64 << failed.saturating_sub(1).min(30))
        .min(cfg.retry_max_delay_ms);
    let j = cfg.retry_jitter.clamp(0.0, 1.0);
    let factor = if j > 0.0 {
        rng.random_range((1.0 - j)..=(1.0 + j))
    } else {
        1.0
    };
    Duration::from_millis((base as f64 * factor).round() as u64)
}

/// The dispatcher.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    cfg: AlertsConfig,
    guard: Arc<SsrfGuard>,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, cfg: AlertsConfig) -> Result<Self, String> {
        cfg.validate()?;
        let guard = Arc::new(cfg.guard()?);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent("pricestream-webhooks/1")
            .dns_resolver(Arc::new(GuardedResolver {
                guard: Arc::clone(&guard),
            }))
            .build()
            .map_err(|e| format!("building the webhook client: {e}"))?;
        Ok(Dispatcher {
            store,
            cfg,
            guard,
            client,
            clock: Arc::new(SystemClock),
        })
    }

    /// Runs until `stop`: claims due deliveries and sends up to `concurrency` at a time.
    /// A slot is claimed again as soon as an attempt is recorded, and the attempts that
    /// finished together are recorded in one transaction, so a burst of triggers does not
    /// wait for one commit per delivery. Store errors are logged and retried; they never
    /// end the loop. On `stop`, the attempts in flight are finished and recorded.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let mut wake = this.store.watch_deliveries();
        let poll = Duration::from_millis(this.cfg.poll_interval_ms);
        let lease_ns = i64::try_from(this.cfg.lease_ms)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        let concurrency = this.cfg.concurrency as usize;
        tracing::info!(
            max_attempts = this.cfg.max_attempts,
            concurrency,
            "webhook dispatcher started"
        );
        let mut set: JoinSet<Finished> = JoinSet::new();
        // whether the queue may hold due deliveries we have not claimed yet
        let mut due = true;
        loop {
            let free = concurrency.saturating_sub(set.len());
            if due && free > 0 {
                let claim = pricestream_schemas::ids::new_id();
                let claimed = match this
                    .store
                    .claim_deliveries(this.clock.now_ns(), free as u32, lease_ns, &claim)
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming webhook deliveries failed");
                        Vec::new()
                    }
                };
                // a full claim means more may be waiting: claim again when a slot frees
                due = claimed.len() >= free;
                for d in claimed {
                    let this = Arc::clone(&this);
                    set.spawn(async move { this.attempt(d).await });
                }
            }
            let mut finished = Vec::new();
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(r) = set.join_next(), if !set.is_empty() => {
                    finished.push(r);
                    while let Some(r) = set.try_join_next() {
                        finished.push(r);
                    }
                }
                _ = tokio::time::sleep(poll), if !due => due = true,
                r = wake.changed(), if !due => {
                    if r.is_err() {
                        // no more wake-ups: fall back to polling
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(poll) => {}
                        }
                    }
                    due = true;
                }
            }
            this.record_finished(finished).await;
        }
        let mut finished = Vec::new();
        while let Some(r) = set.join_next().await {
            finished.push(r);
        }
        this.record_finished(finished).await;
        tracing::info!("webhook dispatcher stopped");
    }

    /// Records finished attempts in one transaction, retrying the store a few times before
    /// giving up (the lease then hands the deliveries to a later claim).
    async fn record_finished(&self, finished: Vec<Result<Finished, tokio::task::JoinError>>) {
        let finished: Vec<Finished> = finished
            .into_iter()
            .filter_map(|r| {
                r.map_err(|e| tracing::error!(error = %e, "webhook attempt task failed"))
                    .ok()
            })
            .collect();
        if finished.is_empty() {
            return;
        }
        let done: Vec<FinishedAttempt<'_>> = finished
            .iter()
            .map(|f| FinishedAttempt {
                claim: &f.delivery,
                attempt: &f.attempt,
                next: f.next,
                now: f.now,
            })
            .collect();
        let mut delay = Duration::from_millis(50);
        for i in 0..5 {
            match self.store.finish_delivery_attempts(&done).await {
                Ok(recorded) => {
                    for (f, ok) in finished.iter().zip(recorded) {
                        f.recorded(ok);
                    }
                    return;
                }
                Err(e) if i < 4 => {
                    tracing::warn!(error = %e, "recording webhook attempts failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, attempts = done.len(), "recording webhook attempts failed");
                }
            }
        }
    }

    /// Sends one claimed delivery; the attempt is recorded by the loop.
    async fn attempt(&self, d: ClaimedDelivery) -> Finished {
        let n = d.delivery.attempts + 1;
        let body = body(&d);
        let started_at = self.clock.now_ns();
        let timestamp = (started_at / NANOS_PER_SEC).to_string();
        let started = Instant::now();
        let outcome = match self.guard.check_form(&d.url) {
            Err(e) => Outcome {
                label: "refused",
                status: None,
                error: Some(e.to_string()),
                retryable: false,
            },
            Ok(_) => {
                let sent = self
                    .client
                    .post(&d.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(headers::IDEMPOTENCY_KEY, &d.delivery.idempotency_key)
                    .header(headers::TIMESTAMP, &timestamp)
                    .header(
                        headers::SIGNATURE,
                        sign(&d.secret, &timestamp, body.as_bytes()),
                    )
                    .header(headers::DELIVERY, &d.delivery.id)
                    .header(headers::ATTEMPT, n.to_string())
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(resp) => classify_status(resp.status().as_u16()),
                    Err(e) => classify_error(&e),
                }
            }
        };
        let elapsed = started.elapsed();
        metrics::counter!(m::WEBHOOK_ATTEMPTS, "outcome" => outcome.label).increment(1);
        metrics::histogram!(m::WEBHOOK_REQUEST_SECONDS).record(elapsed.as_secs_f64());
        let now = self.clock.now_ns();
        let in_round = n.saturating_sub(d.delivery.retry_base);
        let next = if outcome.label == "delivered" {
            AttemptNext::Delivered
        } else if outcome.retryable && in_round < self.cfg.max_attempts {
            let wait = backoff(&self.cfg, in_round, &mut rand::rng());
            AttemptNext::Retry {
                at: now.saturating_add(i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX)),
            }
        } else {
            AttemptNext::Dead
        };
        let attempt = DeliveryAttempt {
            delivery_id: d.delivery.id.clone(),
            attempt: n,
            started_at,
            latency_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
            status: outcome.status,
            outcome: outcome.label.to_string(),
            error: outcome.error.clone(),
        };
        let result = result_label(next);
        tracing::info!(
            delivery = %d.delivery.id,
            rule = %d.delivery.rule_id,
            attempt = n,
            outcome = outcome.label,
            status = outcome.status,
            latency_ms = elapsed.as_secs_f64() * 1e3,
            next = result,
            error = outcome.error.as_deref().unwrap_or(""),
            "webhook attempt"
        );
        Finished {
            delivery: d,
            attempt,
            next,
            now,
        }
    }
}

/// What follows an attempt, as logged and as the `result` label of
/// `pricestream_webhook_deliveries_total`.
fn result_label(next: AttemptNext) -> &'static str {
    match next {
        AttemptNext::Delivered => "delivered",
        AttemptNext::Retry { .. } => "retry",
        AttemptNext::Dead => "dead",
    }
}

/// An attempt made, waiting to be recorded.
struct Finished {
    delivery: ClaimedDelivery,
    attempt: DeliveryAttempt,
    next: AttemptNext,
    now: TimestampNs,
}

impl Finished {
    /// Metrics once the attempt is recorded (`ok`) or its claim was found lost.
    fn recorded(&self, ok: bool) {
        if !ok {
            tracing::warn!(delivery = %self.delivery.delivery.id, "delivery claim lost; attempt not recorded");
            return;
        }
        metrics::counter!(m::WEBHOOK_DELIVERIES, "result" => result_label(self.next)).increment(1);
        if matches!(self.next, AttemptNext::Delivered) {
            if let Some(ingest) = trigger_ingest(&self.delivery.delivery.payload) {
                let secs = (self.now - ingest) as f64 / NANOS_PER_SEC as f64;
                metrics::histogram!(m::WEBHOOK_DELIVERY_LATENCY).record(secs.max(0.0));
            }
        }
    }
}

/// The ingest time of the quote or signal that fired the alert, from the stored payload.
fn trigger_ingest(payload: &str) -> Option<TimestampNs> {
    pricestream_schemas::codec::decode::<pricestream_schemas::AlertEvent>(payload.as_bytes())
        .ok()
        .map(|e| e.ts_ingest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let s = sign("k", "1700000000", b"{\"a\":1}");
        assert!(s.starts_with("v1=") && s.len() == 67);
        assert!(verify("k", "1700000000", b"{\"a\":1}", &s));
        assert!(!verify("k", "1700000001", b"{\"a\":1}", &s));
        assert!(!verify("other", "1700000000", b"{\"a\":1}", &s));
        assert!(!verify("k", "1700000000", b"{\"a\":2}", &s));
        assert!(!verify("k", "1700000000", b"{\"a\":1}", "v1=zz"));
    }

    #[test]
    fn statuses_are_classified() {
        assert!(!classify_status(200).retryable && classify_status(204).label == "delivered");
        for s in [500, 502, 503, 408, 429] {
            assert!(classify_status(s).retryable, "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422, 301] {
            assert!(!classify_status(s).retryable, "{s}");
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let cfg = AlertsConfig {
            retry_initial_delay_ms: 100,
            retry_max_delay_ms: 1_000,
            retry_jitter: 0.2,
            ..AlertsConfig::default()
        };
        let mut rng = rand::rng();
        for (failed, base) in [
            (1, 100.0),
            (2, 200.0),
            (3, 400.0),
            (4, 800.0),
            (5, 1000.0),
            (30, 1000.0),
        ] {
            for _ in 0..50 {
                let d = backoff(&cfg, failed, &mut rng).as_millis() as f64;
                assert!(
                    d >= base * 0.8 - 1.0 && d <= base * 1.2 + 1.0,
                    "{failed}: {d}"
                );
            }
        }
    }
}
