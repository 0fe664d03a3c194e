//! The webhook dispatcher against a real local HTTP receiver: failures then success, slow
//! answers (timeouts), permanent 4xx, a receiver that is down while the dispatcher
//! restarts, a dispatcher that dies mid-send, dead-letter retry, and the SSRF guard at send
//! time. The receiver verifies every signature; attempt counts and final states are exact.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use pricestream_pipeline::alerts::dispatcher::{headers, verify};
use pricestream_pipeline::alerts::{AlertsConfig, Dispatcher};
use pricestream_schemas::{AlertEvent, Clock, Symbol, SystemClock, Venue};
use pricestream_store::alerts::{
    AlertRule, Delivery, DeliveryAttempt, DeliveryState, RuleCondition,
};
use pricestream_store::Store;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_test_secret";

/// What the receiver does with the next request.
#[derive(Debug, Clone, Copy)]
enum Behave {
    Status(u16),
    /// Sleeps this long, then answers 200.
    Slow(u64),
}

#[derive(Debug, Clone)]
struct Seen {
    idempotency_key: String,
    attempt: String,
    verified: bool,
    answered: u16,
}

#[derive(Default)]
struct Receiver {
    plan: VecDeque<Behave>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn hook(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let verified = verify(
        SECRET,
        &h(headers::TIMESTAMP),
        &body,
        &h(headers::SIGNATURE),
    ) && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| {
        v["idempotency_key"] == h(headers::IDEMPOTENCY_KEY).as_str()
            && v["alert"]["alert_id"].is_string()
    });
    let behave = r.lock().unwrap().plan.pop_front();
    let status = match behave {
        Some(Behave::Status(s)) => s,
        Some(Behave::Slow(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            200
        }
        None => 200,
    };
    r.lock().unwrap().seen.push(Seen {
        idempotency_key: h(headers::IDEMPOTENCY_KEY),
        attempt: h(headers::ATTEMPT),
        verified,
        answered: status,
    });
    StatusCode::from_u16(status).unwrap()
}

/// A receiver on `addr` (or a free port) following `plan`.
async fn receiver(
    plan: Vec<Behave>,
    addr: Option<SocketAddr>,
) -> (SocketAddr, Shared, tokio::task::JoinHandle<()>) {
    let shared: Shared = Arc::new(Mutex::new(Receiver {
        plan: plan.into(),
        seen: Vec::new(),
    }));
    let listener = tokio::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&shared));
    let handle = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, shared, handle)
}

fn cfg(max_attempts: u32) -> AlertsConfig {
    AlertsConfig {
        max_attempts,
        request_timeout_ms: 300,
        retry_initial_delay_ms: 20,
        retry_max_delay_ms: 100,
        retry_jitter: 0.2,
        poll_interval_ms: 20,
        lease_ms: 1_000,
        ssrf_allowlist: vec!["127.0.0.1/32".into()],
        ..AlertsConfig::default()
    }
}

async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

/// A rule posting to `url` and one trigger of it: one queued delivery.
async fn queue_one(store: &Arc<dyn Store>, url: &str) -> String {
    let now = SystemClock.now_ns();
    let rule = AlertRule {
        id: pricestream_schemas::ids::new_id(),
        owner: "k1".into(),
        venue: None,
        symbol: Symbol::new("BTC-USDT").unwrap(),
        condition: RuleCondition::Above { level: 100.0 },
        recurring: true,
        cooldown_secs: 0,
        hysteresis: 0.0,
        url: url.into(),
        secret: SECRET.into(),
        active: true,
        created_at: now,
        updated_at: now,
        fired_at: None,
    };
    assert!(store.create_alert_rule(&rule).await.unwrap());
    let event = AlertEvent {
        alert_id: rule.id.clone(),
        owner: "k1".into(),
        venue: Venue::Binance,
        symbol: rule.symbol.clone(),
        condition: "price above 100".into(),
        price: 101.0,
        value: None,
        ts_event: now,
        ts_ingest: now,
    };
    assert_eq!(
        store
            .record_alert_triggers(&[event], now)
            .await
            .unwrap()
            .len(),
        1
    );
    rule.id
}

fn start(
    store: &Arc<dyn Store>,
    cfg: AlertsConfig,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let d = Dispatcher::new(Arc::clone(store), cfg).unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    (stop, tokio::spawn(async move { d.run(s).await }))
}

/// Waits until the rule's only delivery reaches `state`.
async fn wait_for(
    store: &Arc<dyn Store>,
    rule: &str,
    state: DeliveryState,
) -> (Delivery, Vec<DeliveryAttempt>) {
    for _ in 0..500 {
        let list = store.list_deliveries(rule, 10).await.unwrap();
        assert_eq!(list.len(), 1);
        if list[0].0.state == state {
            return list.into_iter().next().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = store.list_deliveries(rule, 10).await.unwrap();
    panic!("delivery never reached {state:?}: {list:#?}");
}

fn outcomes(attempts: &[DeliveryAttempt]) -> Vec<(u32, Option<u16>, &str)> {
    attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.outcome.as_str()))
        .collect()
}

#[tokio::test]
async fn fails_twice_then_succeeds_with_signed_requests() {
    let (store, _dir) = store().await;
    let (addr, seen, _srv) = receiver(vec![Behave::Status(500), Behave::Status(503)], None).await;
    let rule = queue_one(&store, &format!("http://{addr}/hook")).await;
    let (stop, task) = start(&store, cfg(4));
    let (d, attempts) = wait_for(&store, &rule, DeliveryState::Delivered).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(d.attempts, 3);
    assert_eq!(
        outcomes(&attempts),
        vec![
            (1, Some(500), "http_error"),
            (2, Some(503), "http_error"),
            (3, Some(200), "delivered")
        ]
    );
    assert!(attempts.iter().all(|a| a.latency_us > 0));
    let seen = seen.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.verified), "{seen:?}");
    assert!(seen.iter().all(|s| s.idempotency_key == d.idempotency_key));
    assert_eq!(d.idempotency_key, format!("{rule}:{}", d.trigger_ts));
    assert_eq!(
        seen.iter()
            .map(|s| (s.attempt.as_str(), s.answered))
            .collect::<Vec<_>>(),
        vec![("1", 500), ("2", 503), ("3", 200)]
    );
}

#[tokio::test]
async fn exhausted_retries_dead_letter_and_the_api_retry_delivers() {
    let (store, _dir) = store().await;
    let (addr, seen, _srv) = receiver(vec![Behave::Status(503); 4], None).await;
    let rule = queue_one(&store, &format!("http://{addr}/hook")).await;
    let (stop, task) = start(&store, cfg(4));
    let (d, attempts) = wait_for(&store, &rule, DeliveryState::Dead).await;
    assert_eq!(d.attempts, 4);
    assert_eq!(attempts.len(), 4);
    assert!(attempts.iter().all(|a| a.status == Some(503)));
    // nothing more happens to a dead delivery
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.lock().unwrap().seen.len(), 4);
    // retried (what POST …/retry does): a fresh budget, delivered on attempt 5
    assert_eq!(
        store
            .requeue_delivery(&rule, &d.id, SystemClock.now_ns())
            .await
            .unwrap(),
        pricestream_store::alerts::RequeueOutcome::Requeued
    );
    let (d, attempts) = wait_for(&store, &rule, DeliveryState::Delivered).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(d.attempts, 5);
    assert_eq!(outcomes(&attempts)[4], (5, Some(200), "delivered"));
    assert_eq!(seen.lock().unwrap().seen.len(), 5);
    // a delivered one cannot be requeued
    assert!(matches!(
        store
            .requeue_delivery(&rule, &d.id, SystemClock.now_ns())
            .await
            .unwrap(),
        pricestream_store::alerts::RequeueOutcome::NotDead(DeliveryState::Delivered)
    ));
}

#[tokio::test]
async fn slow_receiver_times_out_and_retries() {
    let (store, _dir) = store().await;
    // two answers slower than the 300 ms timeout, then a fast one
    let (addr, seen, _srv) = receiver(vec![Behave::Slow(800), Behave::Slow(800)], None).await;
    let rule = queue_one(&store, &format!("http://{addr}/hook")).await;
    let (stop, task) = start(&store, cfg(4));
    let (d, attempts) = wait_for(&store, &rule, DeliveryState::Delivered).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(d.attempts, 3);
    assert_eq!(
        outcomes(&attempts),
        vec![
            (1, None, "timeout"),
            (2, None, "timeout"),
            (3, Some(200), "delivered")
        ]
    );
    assert!(attempts[0].latency_us >= 290_000, "{attempts:?}");
    assert!(seen.lock().unwrap().seen.iter().all(|s| s.verified));
}

#[tokio::test]
async fn client_errors_are_final_but_408_and_429_retry() {
    let (store, _dir) = store().await;
    let (addr, _seen, _srv) = receiver(vec![Behave::Status(404)], None).await;
    let rule = queue_one(&store, &format!("http://{addr}/hook")).await;
    let (stop, task) = start(&store, cfg(4));
    let (d, attempts) = wait_for(&store, &rule, DeliveryState::Dead).await;
    assert_eq!(d.attempts, 1);
    assert_eq!(outcomes(&attempts), vec![(1, Some(404), "http_error")]);
    stop.cancel();
    task.await.unwrap();

    let (addr, _seen, _srv) = receiver(vec![Behave::Status(429), Behave::Status(408)], None).await;
    let rule = queue_one(&store, &format!("http://{addr}/hook")).await;
    let (stop, task) = start(&store, cfg(4));
    let (d, _) = wait_for(&store, &rule, DeliveryState::Delivered).await;
    assert_eq!(d.attempts, 3);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn receiver_down_while_the_dispatcher_restarts() {
    let (store, _dir) = store().await;
    // reserve a port, then close it: the receiver is down
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let rule = queue_one(&store, &format!("http://{addr}/hook")).await;
    // a long backoff, so the retry is due only after the restart
    let slow_retry = AlertsConfig {
        retry_initial_delay_ms: 600,
        retry_max_delay_ms: 600,
        retry_jitter: 0.0,
        ..cfg(4)
    };
    let (stop, task) = start(&store, slow_retry.clone());
    for _ in 0..200 {
        if store.list_deliveries(&rule, 1).await.unwrap()[0].0.attempts == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let (d, attempts) = store.list_deliveries(&rule, 1).await.unwrap().remove(0);
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(outcomes(&attempts), vec![(1, None, "connect_error")]);
    // the receiver comes up on the same address; a new dispatcher takes over the queue
    let (_, seen, _srv) = receiver(vec![], Some(addr)).await;
    let (stop, task) = start(&store, slow_retry);
    let (d, attempts) = wait_for(&store, &rule, DeliveryState::Delivered).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(d.attempts, 2);
    assert_eq!(
        outcomes(&attempts),
        vec![(1, None, "connect_error"), (2, Some(200), "delivered")]
    );
    let seen = seen.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 1, "delivered exactly once: {seen:?}");
    assert!(seen[0].verified);
}

#[tokio::test]
async fn a_dispatcher_that_dies_mid_send_leaves_the_delivery_to_the_next() {
    let (store, _dir) = store().await;
    let (addr, seen, _srv) = receiver(vec![], None).await;
    let rule = queue_one(&store, &format!("http://{addr}/hook")).await;
    // a dispatcher claims the delivery (lease 300 ms) and dies before sending
    let claimed = store
        .claim_deliveries(SystemClock.now_ns(), 10, 300_000_000, "dead-dispatcher")
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // while the lease holds, nobody else takes it
    assert!(store
        .claim_deliveries(SystemClock.now_ns(), 10, 300_000_000, "other")
        .await
        .unwrap()
        .is_empty());
    let (stop, task) = start(&store, cfg(4));
    let (d, attempts) = wait_for(&store, &rule, DeliveryState::Delivered).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(d.attempts, 1);
    assert_eq!(outcomes(&attempts), vec![(1, Some(200), "delivered")]);
    assert_eq!(seen.lock().unwrap().seen.len(), 1);
    // the dead dispatcher's late report is refused: the claim is gone
    let late = DeliveryAttempt {
        delivery_id: d.id.clone(),
        attempt: 1,
        started_at: 1,
        latency_us: 1,
        status: Some(200),
        outcome: "delivered".into(),
        error: None,
    };
    assert!(!store
        .finish_delivery_attempt(
            &claimed[0],
            &late,
            pricestream_store::alerts::AttemptNext::Delivered,
            SystemClock.now_ns()
        )
        .await
        .unwrap());
}

#[tokio::test]
async fn the_ssrf_guard_refuses_at_send_time() {
    let (store, _dir) = store().await;
    let (addr, seen, _srv) = receiver(vec![], None).await;
    let rule = queue_one(&store, &format!("http://{addr}/hook")).await;
    let strict = AlertsConfig {
        ssrf_allowlist: Vec::new(),
        ..cfg(4)
    };
    let (stop, task) = start(&store, strict);
    let (d, attempts) = wait_for(&store, &rule, DeliveryState::Dead).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(d.attempts, 1);
    assert_eq!(outcomes(&attempts), vec![(1, None, "refused")]);
    assert!(attempts[0]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("loopback"));
    assert!(seen.lock().unwrap().seen.is_empty());
    // a host name of the local machine is refused, too
    let rule = queue_one(&store, &format!("http://localhost:{}/hook", addr.port())).await;
    let (stop, task) = start(
        &store,
        AlertsConfig {
            ssrf_allowlist: Vec::new(),
            ..cfg(4)
        },
    );
    let (_, attempts) = wait_for(&store, &rule, DeliveryState::Dead).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(outcomes(&attempts), vec![(1, None, "refused")]);
    assert!(seen.lock().unwrap().seen.is_empty());
}
