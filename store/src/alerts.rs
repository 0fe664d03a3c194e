//! Alert rules, their triggers and the persisted webhook queue.
//!
//! A rule belongs to the API key that made it. When the pipeline fires a rule, the sink
//! stores the trigger and queues its delivery in one transaction, idempotent on
//! `(rule id, trigger time)`; the webhook dispatcher claims due deliveries with a lease, so
//! the queue survives restarts and two dispatchers never hold the same delivery.

use async_trait::async_trait;
use pricestream_schemas::{AlertEvent, Interval, SignalKind, Symbol, TimestampNs, Venue};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Which way a percent move must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveDirection {
    Up,
    Down,
    Either,
}

impl MoveDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveDirection::Up => "up",
            MoveDirection::Down => "down",
            MoveDirection::Either => "either",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            MoveDirection::Up,
            MoveDirection::Down,
            MoveDirection::Either,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// What makes a rule fire (a closed set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleCondition {
    /// The price is above `level`.
    Above { level: f64 },
    /// The price is below `level`.
    Below { level: f64 },
    /// The price crosses `level`, either way.
    Crosses { level: f64 },
    /// The price moved by at least `percent` % from the lowest (up) or highest (down)
    /// price of the last `window_secs` seconds.
    PercentMove {
        percent: f64,
        window_secs: u64,
        direction: MoveDirection,
    },
    /// A signal of `signal` kind fired on `interval` bars.
    Signal {
        interval: Interval,
        signal: SignalKind,
    },
}

impl RuleCondition {
    pub fn kind(&self) -> &'static str {
        match self {
            RuleCondition::Above { .. } => "above",
            RuleCondition::Below { .. } => "below",
            RuleCondition::Crosses { .. } => "crosses",
            RuleCondition::PercentMove { .. } => "percent_move",
            RuleCondition::Signal { .. } => "signal",
        }
    }

    /// The columns `(level, percent, window_secs, direction, interval, signal)`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn columns(
        &self,
    ) -> (
        Option<f64>,
        Option<f64>,
        Option<i64>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    ) {
        match self {
            RuleCondition::Above { level }
            | RuleCondition::Below { level }
            | RuleCondition::Crosses { level } => (Some(*level), None, None, None, None, None),
            RuleCondition::PercentMove {
                percent,
                window_secs,
                direction,
            } => (
                None,
                Some(*percent),
                Some(i64::try_from(*window_secs).unwrap_or(i64::MAX)),
                Some(direction.as_str()),
                None,
                None,
            ),
            RuleCondition::Signal { interval, signal } => (
                None,
                None,
                None,
                None,
                Some(interval.as_str()),
                Some(signal.as_str()),
            ),
        }
    }

    /// Rebuilds a condition from its columns.
    pub(crate) fn from_columns(
        kind: &str,
        level: Option<f64>,
        percent: Option<f64>,
        window_secs: Option<i64>,
        direction: Option<&str>,
        interval: Option<&str>,
        signal: Option<&str>,
    ) -> Result<Self> {
        let bad = |what: &str| {
            crate::StoreError::Data(pricestream_schemas::SchemaError::Invalid {
                field: "alert_rules",
                message: format!("rule of kind {kind:?} has no valid {what}"),
            })
        };
        Ok(match kind {
            "above" => RuleCondition::Above {
                level: level.ok_or_else(|| bad("level"))?,
            },
            "below" => RuleCondition::Below {
                level: level.ok_or_else(|| bad("level"))?,
            },
            "crosses" => RuleCondition::Crosses {
                level: level.ok_or_else(|| bad("level"))?,
            },
            "percent_move" => RuleCondition::PercentMove {
                percent: percent.ok_or_else(|| bad("percent"))?,
                window_secs: window_secs
                    .and_then(|w| u64::try_from(w).ok())
                    .ok_or_else(|| bad("window_secs"))?,
                direction: direction
                    .and_then(MoveDirection::parse)
                    .ok_or_else(|| bad("direction"))?,
            },
            "signal" => RuleCondition::Signal {
                interval: interval.ok_or_else(|| bad("interval"))?.parse()?,
                signal: signal.ok_or_else(|| bad("signal"))?.parse()?,
            },
            _ => return Err(bad("kind")),
        })
    }

    /// Human-readable, e.g. `price above 65000`.
    pub fn describe(&self) -> String {
        match self {
            RuleCondition::Above { level } => format!("price above {level}"),
            RuleCondition::Below { level } => format!("price below {level}"),
            RuleCondition::Crosses { level } => format!("price crosses {level}"),
            RuleCondition::PercentMove {
                percent,
                window_secs,
                direction,
            } => format!(
                "price moves {} by {percent}% within {window_secs}s",
                direction.as_str()
            ),
            RuleCondition::Signal { interval, signal } => {
                format!("signal {} on {}", signal.as_str(), interval.as_str())
            }
        }
    }
}

/// An alert rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    pub id: String,
    /// The API key id that made the rule.
    pub owner: String,
    /// `None`: quotes of every venue.
    pub venue: Option<Venue>,
    pub symbol: Symbol,
    pub condition: RuleCondition,
    /// Fires again after a cooldown (and re-arming); otherwise fires once.
    pub recurring: bool,
    pub cooldown_secs: u64,
    /// Re-arm margin: after firing, the value must move back past the level by this much
    /// (price units; percentage points for percent moves) before the rule can fire again.
    pub hysteresis: f64,
    pub url: String,
    /// The HMAC key of the rule's webhooks; shown once, at creation.
    #[serde(skip)]
    pub secret: String,
    pub active: bool,
    pub created_at: TimestampNs,
    pub updated_at: TimestampNs,
    pub fired_at: Option<TimestampNs>,
}

impl AlertRule {
    /// The canonical text of everything that makes two rules of one owner identical.
    pub fn spec(&self) -> String {
        let (level, percent, window, direction, interval, signal) = self.condition.columns();
        format!(
            "{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}",
            self.venue.map_or("*", |v| v.as_str()),
            self.symbol.as_str(),
            self.condition.kind(),
            level.map(f64::to_bits),
            percent.map(f64::to_bits),
            window,
            direction,
            interval,
            signal,
            self.recurring,
            self.cooldown_secs,
            self.hysteresis.to_bits(),
            self.url
        )
    }
}

/// The version of the set of active rules: changes whenever a rule is created, deleted or
/// deactivated, so a poller knows when to reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RulesVersion {
    pub rows: i64,
    pub active: i64,
    pub last_update: TimestampNs,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    InFlight,
    Delivered,
    /// Every attempt failed (or a permanent error): waits for a retry through the API.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        [
            DeliveryState::Pending,
            DeliveryState::InFlight,
            DeliveryState::Delivered,
            DeliveryState::Dead,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| {
            crate::StoreError::Data(pricestream_schemas::SchemaError::Invalid {
                field: "state",
                message: format!("unknown delivery state {s:?}"),
            })
        })
    }
}

/// One attempt to deliver a webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub started_at: TimestampNs,
    pub latency_us: i64,
    /// The HTTP status, when a response came back.
    pub status: Option<u16>,
    /// `delivered`, `http_error`, `timeout`, `connect_error`, `refused` (SSRF guard), …
    pub outcome: String,
    pub error: Option<String>,
}

/// A queued webhook delivery of one trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: String,
    pub rule_id: String,
    /// `<rule id>:<trigger time ns>`: the same for every attempt.
    pub idempotency_key: String,
    pub trigger_ts: TimestampNs,
    /// The alert event as JSON (the `alerts.v1` wire form).
    #[serde(skip)]
    pub payload: String,
    pub state: DeliveryState,
    /// Attempts made so far (all time).
    pub attempts: u32,
    /// `attempts` when the delivery was last (re)queued: the attempt budget counts from here.
    pub retry_base: u32,
    pub next_attempt_at: TimestampNs,
    pub last_error: Option<String>,
    pub created_at: TimestampNs,
    pub updated_at: TimestampNs,
    pub delivered_at: Option<TimestampNs>,
}

/// A delivery claimed by a dispatcher, with what it needs to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub url: String,
    pub secret: String,
    /// The claim token; only its holder may record the attempt.
    pub claim: String,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttemptNext {
    Delivered,
    Retry { at: TimestampNs },
    Dead,
}

/// One finished attempt of a claimed delivery, to be recorded.
#[derive(Debug, Clone, Copy)]
pub struct FinishedAttempt<'a> {
    pub claim: &'a ClaimedDelivery,
    pub attempt: &'a DeliveryAttempt,
    pub next: AttemptNext,
    /// When the attempt ended.
    pub now: TimestampNs,
}

impl FinishedAttempt<'_> {
    /// The delivery's new state, next attempt time and delivery time.
    pub fn transition(&self) -> (DeliveryState, TimestampNs, Option<TimestampNs>) {
        match self.next {
            AttemptNext::Delivered => (DeliveryState::Delivered, self.now, Some(self.now)),
            AttemptNext::Retry { at } => (DeliveryState::Pending, at, None),
            AttemptNext::Dead => (DeliveryState::Dead, self.now, None),
        }
    }
}

/// The result of asking for a dead delivery to be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequeueOutcome {
    Requeued,
    NotFound,
    /// The delivery exists but is not dead-lettered.
    NotDead(DeliveryState),
}

/// The idempotency key of a trigger.
pub fn idempotency_key(rule_id: &str, trigger_ts: TimestampNs) -> String {
    format!("{rule_id}:{trigger_ts}")
}

/// Alert persistence; part of every [`crate::Store`].
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Stores a new rule; `false` when the owner already has an identical active rule.
    async fn create_alert_rule(&self, rule: &AlertRule) -> Result<bool>;
    /// The owner's rule (deleted rules are not found).
    async fn get_alert_rule(&self, owner: &str, id: &str) -> Result<Option<AlertRule>>;
    /// The owner's rules, newest first.
    async fn list_alert_rules(&self, owner: &str, limit: u32) -> Result<Vec<AlertRule>>;
    /// Deletes (deactivates) the owner's rule; `false` when there is no such rule.
    async fn delete_alert_rule(&self, owner: &str, id: &str, at: TimestampNs) -> Result<bool>;
    /// Every active rule of every owner.
    async fn active_alert_rules(&self) -> Result<Vec<AlertRule>>;
    async fn alert_rules_version(&self) -> Result<RulesVersion>;
    /// Ticks whenever this process changes the rules (for an immediate reload).
    fn watch_alert_rules(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Ticks whenever this process queues deliveries (for an immediate dispatch).
    fn watch_deliveries(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Stores triggers and queues one delivery each, in one transaction; a trigger already
    /// stored (same rule and time) is skipped, and a one-shot rule is deactivated. Returns
    /// the events that were new.
    async fn record_alert_triggers(
        &self,
        events: &[AlertEvent],
        now: TimestampNs,
    ) -> Result<Vec<AlertEvent>>;
    /// Claims up to `limit` due deliveries (pending and due, or in flight with an expired
    /// lease) for `lease_ns` under the token `claim`.
    async fn claim_deliveries(
        &self,
        now: TimestampNs,
        limit: u32,
        lease_ns: i64,
        claim: &str,
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Records attempts of claimed deliveries and moves each on, all in one transaction;
    /// per attempt, `false` (nothing written for it) when its claim was lost.
    async fn finish_delivery_attempts(&self, done: &[FinishedAttempt<'_>]) -> Result<Vec<bool>>;
    /// Records one attempt of a claimed delivery and moves it on; `false` (nothing
    /// written) when the claim was lost.
    async fn finish_delivery_attempt(
        &self,
        claim: &ClaimedDelivery,
        attempt: &DeliveryAttempt,
        next: AttemptNext,
        now: TimestampNs,
    ) -> Result<bool> {
        let done = [FinishedAttempt {
            claim,
            attempt,
            next,
            now,
        }];
        Ok(self.finish_delivery_attempts(&done).await?[0])
    }
    /// The rule's deliveries, newest first, each with its attempts in order.
    async fn list_deliveries(
        &self,
        rule_id: &str,
        limit: u32,
    ) -> Result<Vec<(Delivery, Vec<DeliveryAttempt>)>>;
    /// Moves a dead-lettered delivery of the rule back to pending, due now.
    async fn requeue_delivery(
        &self,
        rule_id: &str,
        delivery_id: &str,
        now: TimestampNs,
    ) -> Result<RequeueOutcome>;
}
