//! Alert rules and their webhook deliveries: `/v1/alerts…`.
//!
//! A rule belongs to the API key that created it; another key gets 404 for it, as for a
//! rule that does not exist. Creating and deleting needs the `alerts:write` scope (the auth
//! guard checks it for every non-GET request), reading needs `read`. The webhook secret is
//! returned once, by the creation.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pricestream_pipeline::alerts::{AlertsConfig, SsrfGuard};
use pricestream_schemas::time::to_rfc3339;
use pricestream_schemas::{Clock, Symbol, SystemClock, Venue};
use pricestream_store::alerts::{
    AlertRule, Delivery, DeliveryAttempt, RequeueOutcome, RuleCondition,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::routes::Limits;
use crate::{ApiError, AppState, Result};

/// What the alert routes need from the `[alerts]` configuration.
#[derive(Debug, Clone)]
pub struct AlertsApi {
    pub guard: Arc<SsrfGuard>,
    pub max_rules_per_owner: u32,
}

impl AlertsApi {
    pub fn from_config(cfg: &AlertsConfig) -> std::result::Result<Self, String> {
        Ok(AlertsApi {
            guard: Arc::new(cfg.guard()?),
            max_rules_per_owner: cfg.max_rules_per_owner,
        })
    }
}

impl Default for AlertsApi {
    fn default() -> Self {
        AlertsApi {
            guard: Arc::new(SsrfGuard::default()),
            max_rules_per_owner: AlertsConfig::default().max_rules_per_owner,
        }
    }
}

/// The body of `POST /v1/alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAlert {
    symbol: String,
    #[serde(default)]
    venue: Option<String>,
    condition: RuleCondition,
    url: String,
    #[serde(default)]
    recurring: bool,
    #[serde(default)]
    cooldown_secs: u64,
    #[serde(default)]
    hysteresis: f64,
}

const MAX_URL_LEN: usize = 2_048;
const MAX_COOLDOWN_SECS: u64 = 30 * 86_400;
const MAX_WINDOW_SECS: u64 = 7 * 86_400;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn check_condition(c: &RuleCondition) -> Result<()> {
    match c {
        RuleCondition::Above { level }
        | RuleCondition::Below { level }
        | RuleCondition::Crosses { level } => {
            if !(level.is_finite() && *level > 0.0) {
                return Err(bad(format!(
                    "condition.level must be a finite number > 0, got {level}"
                )));
            }
        }
        RuleCondition::PercentMove {
            percent,
            window_secs,
            ..
        } => {
            if !(percent.is_finite() && *percent > 0.0 && *percent <= 1_000.0) {
                return Err(bad(format!(
                    "condition.percent must be within (0, 1000], got {percent}"
                )));
            }
            if *window_secs == 0 || *window_secs > MAX_WINDOW_SECS {
                return Err(bad(format!(
                    "condition.window_secs must be within 1..={MAX_WINDOW_SECS}, got {window_secs}"
                )));
            }
        }
        RuleCondition::Signal { .. } => {}
    }
    Ok(())
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn rule_json(r: &AlertRule) -> Value {
    json!({
        "id": r.id,
        "symbol": r.symbol,
        "venue": r.venue,
        "condition": r.condition,
        "description": r.condition.describe(),
        "recurring": r.recurring,
        "cooldown_secs": r.cooldown_secs,
        "hysteresis": r.hysteresis,
        "url": r.url,
        "active": r.active,
        "created_at": to_rfc3339(r.created_at),
        "fired_at": r.fired_at.map(to_rfc3339),
    })
}

fn attempt_json(a: &DeliveryAttempt) -> Value {
    json!({
        "attempt": a.attempt,
        "started_at": to_rfc3339(a.started_at),
        "status": a.status,
        "latency_ms": a.latency_us as f64 / 1_000.0,
        "outcome": a.outcome,
        "error": a.error,
    })
}

fn delivery_json(d: &Delivery, attempts: &[DeliveryAttempt]) -> Value {
    json!({
        "id": d.id,
        "idempotency_key": d.idempotency_key,
        "trigger_time": to_rfc3339(d.trigger_ts),
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": (d.state == pricestream_store::alerts::DeliveryState::Pending)
            .then(|| to_rfc3339(d.next_attempt_at)),
        "last_error": d.last_error,
        "created_at": to_rfc3339(d.created_at),
        "delivered_at": d.delivered_at.map(to_rfc3339),
        "alert": serde_json::from_str::<Value>(&d.payload).unwrap_or(Value::Null),
        "attempt_log": attempts.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no alert {id:?}"))
}

/// `POST /v1/alerts`: creates a rule; the answer carries the webhook secret, once.
#[utoipa::path(post, path = "/v1/alerts", tag = "alerts",
    description = "Creates an alert rule owned by the calling key (scope alerts:write); the answer carries the webhook secret, shown only once.",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses(
        (status = 201, description = "The rule, with its secret", body = serde_json::Value),
        (status = 409, description = "An identical active rule of this key exists", body = crate::error::ErrorBody),
        (status = 400, description = "A parameter or the body is missing, unknown or malformed", body = crate::error::ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = crate::error::ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(cfg): Extension<AlertsApi>,
    body: Bytes,
) -> Result<Response> {
    let req: CreateAlert =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid alert rule: {e}")))?;
    let symbol = Symbol::new(&req.symbol).map_err(|e| bad(format!("symbol: {e}")))?;
    let venue = req
        .venue
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<Venue>())
        .transpose()
        .map_err(|e| bad(format!("venue: {e}")))?;
    check_condition(&req.condition)?;
    if !(req.hysteresis.is_finite() && req.hysteresis >= 0.0) {
        return Err(bad(format!(
            "hysteresis must be a finite number >= 0, got {}",
            req.hysteresis
        )));
    }
    if req.cooldown_secs > MAX_COOLDOWN_SECS {
        return Err(bad(format!(
            "cooldown_secs must be at most {MAX_COOLDOWN_SECS}"
        )));
    }
    if !req.recurring && req.cooldown_secs > 0 {
        return Err(bad("cooldown_secs applies to recurring rules only"));
    }
    if req.url.len() > MAX_URL_LEN {
        return Err(bad(format!("url is longer than {MAX_URL_LEN} bytes")));
    }
    cfg.guard
        .check_url(&req.url)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let existing = state
        .store
        .list_alert_rules(&p.id, cfg.max_rules_per_owner.saturating_add(1))
        .await?;
    if existing.iter().filter(|r| r.active).count() >= cfg.max_rules_per_owner as usize {
        return Err(bad(format!(
            "this key already has {} active rules, the most allowed",
            cfg.max_rules_per_owner
        )));
    }
    let now = SystemClock.now_ns();
    let secret = random_hex(32).map_err(|e| ApiError::Internal(format!("random secret: {e}")))?;
    let rule = AlertRule {
        id: pricestream_schemas::ids::new_id(),
        owner: p.id.clone(),
        venue,
        symbol,
        condition: req.condition,
        recurring: req.recurring,
        cooldown_secs: req.cooldown_secs,
        hysteresis: req.hysteresis,
        url: req.url,
        secret: format!("whsec_{secret}"),
        active: true,
        created_at: now,
        updated_at: now,
        fired_at: None,
    };
    if !state.store.create_alert_rule(&rule).await? {
        return Err(ApiError::Conflict(
            "an identical active alert rule already exists for this key".into(),
        ));
    }
    let mut body = rule_json(&rule);
    body["secret"] = Value::String(rule.secret.clone());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/alerts`: the caller's rules, newest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts",
    description = "The calling key's alert rules.",
    responses(
        (status = 200, description = "Rules", body = serde_json::Value),
        (status = 400, description = "A parameter or the body is missing, unknown or malformed", body = crate::error::ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = crate::error::ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(limits): Extension<Limits>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "limit") {
        return Err(bad(format!("unknown parameter {k:?}; expected limit")));
    }
    let limit = match q.get("limit") {
        None => 100,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=limits.max_page_rows).contains(l))
            .ok_or_else(|| {
                bad(format!(
                    "limit must be within 1..={}, got {s:?}",
                    limits.max_page_rows
                ))
            })?,
    };
    let rules = state.store.list_alert_rules(&p.id, limit).await?;
    Ok(Json(
        json!({ "alerts": rules.iter().map(rule_json).collect::<Vec<_>>() }),
    ))
}

/// `GET /v1/alerts/{id}`
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts",
    description = "One rule of the calling key (another key's rule is 404).",
    params(("id" = String, Path, description = "Alert rule id")),
    responses(
        (status = 200, description = "The rule", body = serde_json::Value),
        (status = 404, description = "No such rule for this key", body = crate::error::ErrorBody),
        (status = 400, description = "A parameter or the body is missing, unknown or malformed", body = crate::error::ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = crate::error::ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let rule = state
        .store
        .get_alert_rule(&p.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(rule_json(&rule)))
}

/// `DELETE /v1/alerts/{id}`
#[utoipa::path(delete, path = "/v1/alerts/{id}", tag = "alerts",
    description = "Deactivates a rule of the calling key (scope alerts:write).",
    params(("id" = String, Path, description = "Alert rule id")),
    responses(
        (status = 200, description = "The deactivated rule", body = serde_json::Value),
        (status = 204, description = "Deactivated"),
        (status = 404, description = "No such rule for this key", body = crate::error::ErrorBody),
        (status = 400, description = "A parameter or the body is missing, unknown or malformed", body = crate::error::ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = crate::error::ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if state
        .store
        .delete_alert_rule(&p.id, &id, SystemClock.now_ns())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// `GET /v1/alerts/{id}/deliveries`: every delivery of the rule with every attempt.
#[utoipa::path(get, path = "/v1/alerts/{id}/deliveries", tag = "alerts",
    description = "Webhook deliveries of a rule with every attempt (number, status, latency, error).",
    params(("id" = String, Path, description = "Alert rule id")),
    responses(
        (status = 200, description = "Deliveries", body = serde_json::Value),
        (status = 404, description = "No such rule for this key", body = crate::error::ErrorBody),
        (status = 400, description = "A parameter or the body is missing, unknown or malformed", body = crate::error::ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = crate::error::ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn deliveries(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(limits): Extension<Limits>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state
        .store
        .get_alert_rule(&p.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let list = state
        .store
        .list_deliveries(&id, limits.max_page_rows.min(1_000))
        .await?;
    Ok(Json(json!({
        "alert_id": id,
        "deliveries": list.iter().map(|(d, a)| delivery_json(d, a)).collect::<Vec<_>>(),
    })))
}

/// `POST /v1/alerts/{id}/deliveries/{delivery_id}/retry`: a dead-lettered delivery goes
/// back to pending with a fresh attempt budget.
#[utoipa::path(post, path = "/v1/alerts/{id}/deliveries/{delivery_id}/retry", tag = "alerts",
    description = "Queues a dead-lettered delivery again (scope alerts:write).",
    params(("id" = String, Path, description = "Alert rule id"), ("delivery_id" = String, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "Queued again", body = serde_json::Value),
        (status = 404, description = "No such rule or delivery for this key", body = crate::error::ErrorBody),
        (status = 409, description = "The delivery is not dead-lettered", body = crate::error::ErrorBody),
        (status = 400, description = "A parameter or the body is missing, unknown or malformed", body = crate::error::ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = crate::error::ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn retry(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Response> {
    state
        .store
        .get_alert_rule(&p.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    match state
        .store
        .requeue_delivery(&id, &delivery_id, SystemClock.now_ns())
        .await?
    {
        RequeueOutcome::Requeued => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": delivery_id, "state": "pending" })),
        )
            .into_response()),
        RequeueOutcome::NotFound => Err(ApiError::NotFound(format!(
            "no delivery {delivery_id:?} of alert {id:?}"
        ))),
        RequeueOutcome::NotDead(s) => Err(ApiError::Conflict(format!(
            "delivery {delivery_id:?} is {}, not dead-lettered",
            s.as_str()
        ))),
    }
}
