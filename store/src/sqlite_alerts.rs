//! [`AlertStore`] on SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use pricestream_schemas::{AlertEvent, Symbol, TimestampNs};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::alerts::{
    idempotency_key, AlertRule, AlertStore, ClaimedDelivery, Delivery, DeliveryAttempt,
    DeliveryState, FinishedAttempt, RequeueOutcome, RuleCondition, RulesVersion,
};
use crate::sqlite::SqliteStore;
use crate::Result;

fn rule_from_row(r: &SqliteRow) -> Result<AlertRule> {
    let kind: String = r.try_get("kind")?;
    let condition = RuleCondition::from_columns(
        &kind,
        r.try_get("level")?,
        r.try_get("percent")?,
        r.try_get("window_secs")?,
        r.try_get::<Option<String>, _>("direction")?.as_deref(),
        r.try_get::<Option<String>, _>("interval")?.as_deref(),
        r.try_get::<Option<String>, _>("signal")?.as_deref(),
    )?;
    Ok(AlertRule {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        venue: r
            .try_get::<Option<String>, _>("venue")?
            .map(|v| v.parse())
            .transpose()?,
        symbol: Symbol::new(&r.try_get::<String, _>("symbol")?)?,
        condition,
        recurring: r.try_get::<i64, _>("recurring")? != 0,
        cooldown_secs: r.try_get::<i64, _>("cooldown_secs")?.max(0) as u64,
        hysteresis: r.try_get("hysteresis")?,
        url: r.try_get("url")?,
        secret: r.try_get("secret")?,
        active: r.try_get::<i64, _>("active")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        fired_at: r.try_get("fired_at")?,
    })
}

fn delivery_from_row(r: &SqliteRow) -> Result<Delivery> {
    Ok(Delivery {
        id: r.try_get("id")?,
        rule_id: r.try_get("rule_id")?,
        idempotency_key: r.try_get("idempotency_key")?,
        trigger_ts: r.try_get("trigger_ts")?,
        payload: r.try_get("payload")?,
        state: DeliveryState::parse(&r.try_get::<String, _>("state")?)?,
        attempts: r.try_get::<i64, _>("attempts")?.max(0) as u32,
        retry_base: r.try_get::<i64, _>("retry_base")?.max(0) as u32,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

fn attempt_from_row(r: &SqliteRow) -> Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        delivery_id: r.try_get("delivery_id")?,
        attempt: r.try_get::<i64, _>("attempt")?.max(0) as u32,
        started_at: r.try_get("started_at")?,
        latency_us: r.try_get("latency_us")?,
        status: r
            .try_get::<Option<i64>, _>("status")?
            .and_then(|s| u16::try_from(s).ok()),
        outcome: r.try_get("outcome")?,
        error: r.try_get("error")?,
    })
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn create_alert_rule(&self, rule: &AlertRule) -> Result<bool> {
        let (level, percent, window, direction, interval, signal) = rule.condition.columns();
        let done = sqlx::query(
            "INSERT INTO alert_rules (id, owner, venue, symbol, kind, level, percent,
                window_secs, direction, interval, signal, recurring, cooldown_secs, hysteresis,
                url, secret, spec, active, created_at, updated_at, fired_at, deleted_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)
             ON CONFLICT DO NOTHING",
        )
        .bind(&rule.id)
        .bind(&rule.owner)
        .bind(rule.venue.map(|v| v.as_str()))
        .bind(rule.symbol.as_str())
        .bind(rule.condition.kind())
        .bind(level)
        .bind(percent)
        .bind(window)
        .bind(direction)
        .bind(interval)
        .bind(signal)
        .bind(i64::from(rule.recurring))
        .bind(i64::try_from(rule.cooldown_secs).unwrap_or(i64::MAX))
        .bind(rule.hysteresis)
        .bind(&rule.url)
        .bind(&rule.secret)
        .bind(rule.spec())
        .bind(i64::from(rule.active))
        .bind(rule.created_at)
        .bind(rule.updated_at)
        .execute(&self.pool)
        .await?;
        let created = done.rows_affected() == 1;
        if created {
            self.rules_changed.send_modify(|v| *v += 1);
        }
        Ok(created)
    }

    async fn get_alert_rule(&self, owner: &str, id: &str) -> Result<Option<AlertRule>> {
        let row = sqlx::query(
            "SELECT * FROM alert_rules WHERE id = ? AND owner = ? AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rule_from_row).transpose()
    }

    async fn list_alert_rules(&self, owner: &str, limit: u32) -> Result<Vec<AlertRule>> {
        let rows = sqlx::query(
            "SELECT * FROM alert_rules WHERE owner = ? AND deleted_at IS NULL
             ORDER BY created_at DESC, id LIMIT ?",
        )
        .bind(owner)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_from_row).collect()
    }

    async fn delete_alert_rule(&self, owner: &str, id: &str, at: TimestampNs) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alert_rules SET active = 0, deleted_at = ?,
                updated_at = MAX(updated_at + 1, ?)
             WHERE id = ? AND owner = ? AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(at)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        let deleted = done.rows_affected() == 1;
        if deleted {
            self.rules_changed.send_modify(|v| *v += 1);
        }
        Ok(deleted)
    }

    async fn active_alert_rules(&self) -> Result<Vec<AlertRule>> {
        let rows = sqlx::query("SELECT * FROM alert_rules WHERE active = 1 ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rule_from_row).collect()
    }

    async fn alert_rules_version(&self) -> Result<RulesVersion> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(active), 0) AS a,
                    COALESCE(MAX(updated_at), 0) AS u FROM alert_rules",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(RulesVersion {
            rows: r.try_get("n")?,
            active: r.try_get("a")?,
            last_update: r.try_get("u")?,
        })
    }

    fn watch_alert_rules(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rules_changed.subscribe()
    }

    fn watch_deliveries(&self) -> tokio::sync::watch::Receiver<u64> {
        self.deliveries_queued.subscribe()
    }

    async fn record_alert_triggers(
        &self,
        events: &[AlertEvent],
        now: TimestampNs,
    ) -> Result<Vec<AlertEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut fresh = Vec::new();
        let mut deactivated = false;
        let (_turn, mut tx) = self.begin_write().await?;
        for e in events {
            let inserted = sqlx::query(
                "INSERT INTO alert_triggers (rule_id, ts_event, venue, symbol, condition, price,
                    ts_ingest, stored_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&e.alert_id)
            .bind(e.ts_event)
            .bind(e.venue.as_str())
            .bind(e.symbol.as_str())
            .bind(&e.condition)
            .bind(e.price)
            .bind(e.ts_ingest)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !inserted {
                continue;
            }
            let payload =
                String::from_utf8_lossy(&pricestream_schemas::codec::encode(e)).into_owned();
            sqlx::query(
                "INSERT INTO alert_deliveries (id, rule_id, idempotency_key, trigger_ts, payload,
                    state, attempts, retry_base, next_attempt_at, created_at, updated_at)
                 SELECT ?, id, ?, ?, ?, 'pending', 0, 0, ?, ?, ? FROM alert_rules
                 WHERE id = ? AND deleted_at IS NULL
                 ON CONFLICT DO NOTHING",
            )
            .bind(pricestream_schemas::ids::new_id())
            .bind(idempotency_key(&e.alert_id, e.ts_event))
            .bind(e.ts_event)
            .bind(payload)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(&e.alert_id)
            .execute(&mut *tx)
            .await?;
            let once = sqlx::query(
                "UPDATE alert_rules SET active = 0, fired_at = ?,
                    updated_at = MAX(updated_at + 1, ?)
                 WHERE id = ? AND recurring = 0 AND active = 1",
            )
            .bind(e.ts_event)
            .bind(now)
            .bind(&e.alert_id)
            .execute(&mut *tx)
            .await?;
            if once.rows_affected() == 0 {
                sqlx::query("UPDATE alert_rules SET fired_at = ? WHERE id = ?")
                    .bind(e.ts_event)
                    .bind(&e.alert_id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                deactivated = true;
            }
            fresh.push(e.clone());
        }
        tx.commit().await?;
        if deactivated {
            self.rules_changed.send_modify(|v| *v += 1);
        }
        if !fresh.is_empty() {
            self.deliveries_queued.send_modify(|v| *v += 1);
        }
        Ok(fresh)
    }

    async fn claim_deliveries(
        &self,
        now: TimestampNs,
        limit: u32,
        lease_ns: i64,
        claim: &str,
    ) -> Result<Vec<ClaimedDelivery>> {
        sqlx::query(
            "UPDATE alert_deliveries SET state = 'in_flight', claim = ?, claimed_until = ?,
                updated_at = ?
             WHERE id IN (
                SELECT id FROM alert_deliveries
                WHERE (state = 'pending' AND next_attempt_at <= ?)
                   OR (state = 'in_flight' AND claimed_until <= ?)
                ORDER BY next_attempt_at, id LIMIT ?)",
        )
        .bind(claim)
        .bind(now.saturating_add(lease_ns))
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(i64::from(limit.max(1)))
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT d.*, r.url AS rule_url, r.secret AS rule_secret
             FROM alert_deliveries d JOIN alert_rules r ON r.id = d.rule_id
             WHERE d.claim = ? AND d.state = 'in_flight' ORDER BY d.next_attempt_at, d.id",
        )
        .bind(claim)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ClaimedDelivery {
                    delivery: delivery_from_row(r)?,
                    url: r.try_get("rule_url")?,
                    secret: r.try_get("rule_secret")?,
                    claim: claim.to_string(),
                })
            })
            .collect()
    }

    async fn finish_delivery_attempts(&self, done: &[FinishedAttempt<'_>]) -> Result<Vec<bool>> {
        let mut recorded = Vec::with_capacity(done.len());
        if done.is_empty() {
            return Ok(recorded);
        }
        let (_turn, mut tx) = self.begin_write().await?;
        for f in done {
            let (state, next_at, delivered_at) = f.transition();
            let attempt = f.attempt;
            let updated = sqlx::query(
                "UPDATE alert_deliveries SET state = ?, attempts = ?, next_attempt_at = ?,
                    last_error = ?, delivered_at = ?, claim = NULL, claimed_until = NULL,
                    updated_at = ?
                 WHERE id = ? AND claim = ? AND state = 'in_flight'",
            )
            .bind(state.as_str())
            .bind(i64::from(attempt.attempt))
            .bind(next_at)
            .bind(&attempt.error)
            .bind(delivered_at)
            .bind(f.now)
            .bind(&f.claim.delivery.id)
            .bind(&f.claim.claim)
            .execute(&mut *tx)
            .await?;
            // a lost claim: nothing is written for this attempt
            if updated.rows_affected() != 1 {
                recorded.push(false);
                continue;
            }
            sqlx::query(
                "INSERT INTO alert_delivery_attempts (delivery_id, attempt, started_at, latency_us,
                    status, outcome, error)
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&attempt.delivery_id)
            .bind(i64::from(attempt.attempt))
            .bind(attempt.started_at)
            .bind(attempt.latency_us)
            .bind(attempt.status.map(i64::from))
            .bind(&attempt.outcome)
            .bind(&attempt.error)
            .execute(&mut *tx)
            .await?;
            recorded.push(true);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    async fn list_deliveries(
        &self,
        rule_id: &str,
        limit: u32,
    ) -> Result<Vec<(Delivery, Vec<DeliveryAttempt>)>> {
        let rows = sqlx::query(
            "SELECT * FROM alert_deliveries WHERE rule_id = ?
             ORDER BY created_at DESC, trigger_ts DESC LIMIT ?",
        )
        .bind(rule_id)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        let deliveries = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        let attempts = sqlx::query(
            "SELECT a.* FROM alert_delivery_attempts a
             JOIN alert_deliveries d ON d.id = a.delivery_id
             WHERE d.rule_id = ? ORDER BY a.delivery_id, a.attempt",
        )
        .bind(rule_id)
        .fetch_all(&self.pool)
        .await?;
        let mut by_delivery: HashMap<String, Vec<DeliveryAttempt>> = HashMap::new();
        for r in &attempts {
            let a = attempt_from_row(r)?;
            by_delivery
                .entry(a.delivery_id.clone())
                .or_default()
                .push(a);
        }
        Ok(deliveries
            .into_iter()
            .map(|d| {
                let a = by_delivery.remove(&d.id).unwrap_or_default();
                (d, a)
            })
            .collect())
    }

    async fn requeue_delivery(
        &self,
        rule_id: &str,
        delivery_id: &str,
        now: TimestampNs,
    ) -> Result<RequeueOutcome> {
        let done = sqlx::query(
            "UPDATE alert_deliveries SET state = 'pending', next_attempt_at = ?,
                retry_base = attempts, updated_at = ?
             WHERE id = ? AND rule_id = ? AND state = 'dead'",
        )
        .bind(now)
        .bind(now)
        .bind(delivery_id)
        .bind(rule_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.deliveries_queued.send_modify(|v| *v += 1);
            return Ok(RequeueOutcome::Requeued);
        }
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM alert_deliveries WHERE id = ? AND rule_id = ?")
                .bind(delivery_id)
                .bind(rule_id)
                .fetch_optional(&self.pool)
                .await?;
        match state {
            None => Ok(RequeueOutcome::NotFound),
            Some(s) => Ok(RequeueOutcome::NotDead(DeliveryState::parse(&s)?)),
        }
    }
}
