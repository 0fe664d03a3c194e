//! The alert store contract, run against SQLite and PostgreSQL alike.

use pricestream_schemas::{AlertEvent, Interval, SignalKind, Symbol, Venue};
use pricestream_store::alerts::{
    AlertRule, AttemptNext, DeliveryAttempt, DeliveryState, FinishedAttempt, MoveDirection,
    RequeueOutcome, RuleCondition,
};
use pricestream_store::Store;

const T: i64 = 1_767_225_600_000_000_000;

fn rule(id: &str, owner: &str, condition: RuleCondition, recurring: bool) -> AlertRule {
    AlertRule {
        id: id.into(),
        owner: owner.into(),
        venue: Some(Venue::Binance),
        symbol: Symbol::new("BTC-USDT").unwrap(),
        condition,
        recurring,
        cooldown_secs: if recurring { 60 } else { 0 },
        hysteresis: 0.5,
        url: "https://hooks.example.com/a".into(),
        secret: format!("whsec_{id}"),
        active: true,
        created_at: T,
        updated_at: T,
        fired_at: None,
    }
}

fn event(rule: &str, ts: i64) -> AlertEvent {
    AlertEvent {
        alert_id: rule.into(),
        owner: "k1".into(),
        venue: Venue::Binance,
        symbol: Symbol::new("BTC-USDT").unwrap(),
        condition: "price above 100".into(),
        price: 100.5,
        value: None,
        ts_event: ts,
        ts_ingest: ts + 1,
    }
}

fn attempt(id: &str, n: u32, status: Option<u16>, outcome: &str) -> DeliveryAttempt {
    DeliveryAttempt {
        delivery_id: id.into(),
        attempt: n,
        started_at: T + i64::from(n),
        latency_us: 1_234,
        status,
        outcome: outcome.into(),
        error: (outcome != "delivered").then(|| format!("attempt {n} failed")),
    }
}

/// Rules: create, identical → refused, per-owner visibility, delete, version changes.
pub async fn rules_contract(s: &dyn Store) {
    let all_kinds = [
        rule(
            "r-above",
            "k1",
            RuleCondition::Above { level: 100.0 },
            false,
        ),
        rule("r-below", "k1", RuleCondition::Below { level: 90.25 }, true),
        rule(
            "r-cross",
            "k1",
            RuleCondition::Crosses { level: 95.0 },
            true,
        ),
        rule(
            "r-move",
            "k1",
            RuleCondition::PercentMove {
                percent: 2.5,
                window_secs: 300,
                direction: MoveDirection::Either,
            },
            true,
        ),
        rule(
            "r-signal",
            "k1",
            RuleCondition::Signal {
                interval: Interval::H1,
                signal: SignalKind::GoldenCross,
            },
            true,
        ),
    ];
    let v0 = s.alert_rules_version().await.unwrap();
    let changes = s.watch_alert_rules();
    for r in &all_kinds {
        assert!(s.create_alert_rule(r).await.unwrap(), "{}", r.id);
    }
    assert!(changes.has_changed().unwrap());
    let v1 = s.alert_rules_version().await.unwrap();
    assert_ne!(v0, v1);
    assert_eq!(v1.active, 5);
    // round trip of every kind, the secret included
    for r in &all_kinds {
        assert_eq!(
            s.get_alert_rule("k1", &r.id).await.unwrap().as_ref(),
            Some(r)
        );
    }
    // an identical active rule of the same owner is refused; another owner may have it
    let mut dup = all_kinds[0].clone();
    dup.id = "r-dup".into();
    assert!(!s.create_alert_rule(&dup).await.unwrap());
    dup.owner = "k2".into();
    assert!(s.create_alert_rule(&dup).await.unwrap());
    // owners see only their own rules
    assert!(s.get_alert_rule("k2", "r-above").await.unwrap().is_none());
    assert_eq!(s.list_alert_rules("k2", 100).await.unwrap().len(), 1);
    let listed = s.list_alert_rules("k1", 100).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(s.active_alert_rules().await.unwrap().len(), 6);
    // delete: only by the owner, once; then the identical rule may be created again
    assert!(!s.delete_alert_rule("k2", "r-above", T + 5).await.unwrap());
    assert!(s.delete_alert_rule("k1", "r-above", T + 5).await.unwrap());
    assert!(!s.delete_alert_rule("k1", "r-above", T + 6).await.unwrap());
    assert!(s.get_alert_rule("k1", "r-above").await.unwrap().is_none());
    let v2 = s.alert_rules_version().await.unwrap();
    assert_ne!(v1, v2);
    assert_eq!(v2.active, 5);
    let mut again = all_kinds[0].clone();
    again.id = "r-above-2".into();
    assert!(s.create_alert_rule(&again).await.unwrap());
}

/// Triggers and the delivery queue: idempotent triggers, one-shot deactivation, claims
/// with leases, attempts, dead letters and requeue.
pub async fn deliveries_contract(s: &dyn Store) {
    let once = rule("d-once", "k1", RuleCondition::Above { level: 100.0 }, false);
    let rec = rule("d-rec", "k1", RuleCondition::Below { level: 90.0 }, true);
    assert!(s.create_alert_rule(&once).await.unwrap());
    assert!(s.create_alert_rule(&rec).await.unwrap());
    let mut wake = s.watch_deliveries();
    let batch = [
        event("d-once", T),
        event("d-rec", T),
        event("d-rec", T + 10),
    ];
    let fresh = s.record_alert_triggers(&batch, T + 100).await.unwrap();
    assert_eq!(fresh, batch.to_vec());
    assert!(wake.has_changed().unwrap());
    wake.mark_unchanged();
    // a replay stores nothing new and queues nothing
    assert!(s
        .record_alert_triggers(&batch, T + 200)
        .await
        .unwrap()
        .is_empty());
    assert!(!wake.has_changed().unwrap());
    // the one-shot rule is no longer active, and records when it fired
    let o = s.get_alert_rule("k1", "d-once").await.unwrap().unwrap();
    assert!(!o.active);
    assert_eq!(o.fired_at, Some(T));
    assert!(
        s.get_alert_rule("k1", "d-rec")
            .await
            .unwrap()
            .unwrap()
            .active
    );
    assert_eq!(s.list_deliveries("d-rec", 10).await.unwrap().len(), 2);

    // claims: all three are due; a second claimer gets nothing while the lease holds
    let claimed = s.claim_deliveries(T + 300, 10, 1_000, "c1").await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed
        .iter()
        .all(|c| c.delivery.state == DeliveryState::InFlight));
    let c = claimed
        .iter()
        .find(|c| c.delivery.rule_id == "d-once")
        .unwrap();
    assert_eq!(c.secret, "whsec_d-once");
    assert_eq!(c.url, once.url);
    assert_eq!(c.delivery.idempotency_key, format!("d-once:{T}"));
    let ev: AlertEvent = pricestream_schemas::codec::decode(c.delivery.payload.as_bytes()).unwrap();
    assert_eq!(ev, batch[0]);
    assert!(s
        .claim_deliveries(T + 400, 10, 1_000, "c2")
        .await
        .unwrap()
        .is_empty());

    // the one-shot delivery succeeds on its first attempt
    assert!(s
        .finish_delivery_attempt(
            c,
            &attempt(&c.delivery.id, 1, Some(200), "delivered"),
            AttemptNext::Delivered,
            T + 500
        )
        .await
        .unwrap());
    // a second report under the same claim is refused
    assert!(!s
        .finish_delivery_attempt(
            c,
            &attempt(&c.delivery.id, 1, Some(200), "delivered"),
            AttemptNext::Delivered,
            T + 501
        )
        .await
        .unwrap());
    let (d, a) = s.list_deliveries("d-once", 10).await.unwrap().remove(0);
    assert_eq!(
        (d.state, d.attempts, d.delivered_at),
        (DeliveryState::Delivered, 1, Some(T + 500))
    );
    assert_eq!(a, vec![attempt(&d.id, 1, Some(200), "delivered")]);

    // the recurring ones: one fails and is retried later, the other dies
    let mut rec_claims: Vec<_> = claimed
        .iter()
        .filter(|c| c.delivery.rule_id == "d-rec")
        .collect();
    rec_claims.sort_by_key(|c| c.delivery.trigger_ts);
    let (r1, r2) = (rec_claims[0], rec_claims[1]);
    assert!(s
        .finish_delivery_attempt(
            r1,
            &attempt(&r1.delivery.id, 1, Some(503), "http_error"),
            AttemptNext::Retry { at: T + 10_000 },
            T + 600
        )
        .await
        .unwrap());
    assert!(s
        .finish_delivery_attempt(
            r2,
            &attempt(&r2.delivery.id, 1, Some(400), "http_error"),
            AttemptNext::Dead,
            T + 600
        )
        .await
        .unwrap());
    // the retry is not due yet (the other is dead, the first delivered)
    assert!(s
        .claim_deliveries(T + 9_999, 10, 1_000, "c3")
        .await
        .unwrap()
        .is_empty());
    let again = s
        .claim_deliveries(T + 10_000, 10, 1_000, "c3")
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.attempts, 1);
    // a lease that expires hands the delivery to the next claimer
    let stolen = s
        .claim_deliveries(T + 11_001, 10, 1_000, "c4")
        .await
        .unwrap();
    assert_eq!(stolen.len(), 1);
    // recorded together: the lost claim writes nothing, the live one is recorded
    let lost_attempt = attempt(&r1.delivery.id, 2, Some(200), "delivered");
    let won_attempt = attempt(&r1.delivery.id, 2, Some(201), "delivered");
    let recorded = s
        .finish_delivery_attempts(&[
            FinishedAttempt {
                claim: &again[0],
                attempt: &lost_attempt,
                next: AttemptNext::Delivered,
                now: T + 11_002,
            },
            FinishedAttempt {
                claim: &stolen[0],
                attempt: &won_attempt,
                next: AttemptNext::Delivered,
                now: T + 11_003,
            },
        ])
        .await
        .unwrap();
    assert_eq!(recorded, vec![false, true]);
    let (d, a) = s
        .list_deliveries("d-rec", 10)
        .await
        .unwrap()
        .into_iter()
        .find(|(d, _)| d.id == r1.delivery.id)
        .unwrap();
    assert_eq!(
        (d.state, d.attempts, d.delivered_at),
        (DeliveryState::Delivered, 2, Some(T + 11_003))
    );
    assert_eq!(a.last().and_then(|a| a.status), Some(201));
    assert!(s.finish_delivery_attempts(&[]).await.unwrap().is_empty());

    // dead-letter requeue: only a dead delivery of that rule
    assert_eq!(
        s.requeue_delivery("d-rec", "nope", T).await.unwrap(),
        RequeueOutcome::NotFound
    );
    assert_eq!(
        s.requeue_delivery("d-once", &r2.delivery.id, T)
            .await
            .unwrap(),
        RequeueOutcome::NotFound
    );
    assert_eq!(
        s.requeue_delivery("d-rec", &r1.delivery.id, T)
            .await
            .unwrap(),
        RequeueOutcome::NotDead(DeliveryState::Delivered)
    );
    assert_eq!(
        s.requeue_delivery("d-rec", &r2.delivery.id, T + 20_000)
            .await
            .unwrap(),
        RequeueOutcome::Requeued
    );
    let list = s.list_deliveries("d-rec", 10).await.unwrap();
    let (d2, a2) = list.iter().find(|(d, _)| d.id == r2.delivery.id).unwrap();
    assert_eq!(
        (d2.state, d2.attempts, d2.retry_base),
        (DeliveryState::Pending, 1, 1)
    );
    assert_eq!(a2.len(), 1);
    let (d1, a1) = list.iter().find(|(d, _)| d.id == r1.delivery.id).unwrap();
    assert_eq!(d1.state, DeliveryState::Delivered);
    assert_eq!(
        a1.iter().map(|a| (a.attempt, a.status)).collect::<Vec<_>>(),
        vec![(1, Some(503)), (2, Some(201))]
    );
    let due = s
        .claim_deliveries(T + 20_000, 10, 1_000, "c5")
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].delivery.id, r2.delivery.id);

    // a trigger of a deleted rule is stored but not delivered
    assert!(s
        .delete_alert_rule("k1", "d-rec", T + 30_000)
        .await
        .unwrap());
    assert_eq!(
        s.record_alert_triggers(&[event("d-rec", T + 40)], T + 30_001)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.list_deliveries("d-rec", 10).await.unwrap().len(), 2);
}
