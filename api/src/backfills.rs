//! Backfill jobs: `POST /v1/backfills` queues one (scope `admin`), `GET /v1/backfills/{id}`
//! reports its state and progress. The process that runs the venue connectors
//! (`pricestream run` or `ingest`) takes queued jobs from the store and runs them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use pricestream_schemas::time::{parse_time, to_rfc3339};
use pricestream_schemas::{Clock, Interval, Symbol, SystemClock, Venue};
use pricestream_store::{BackfillJob, BackfillState};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::{ApiError, AppState, Result};

/// The longest range one job may cover.
const MAX_RANGE_DAYS: i64 = 366;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBackfill {
    pub venue: String,
    pub symbol: String,
    #[serde(default)]
    pub interval: Option<String>,
    /// RFC 3339 or Unix milliseconds.
    pub from: String,
    pub to: String,
}

fn view(job: &BackfillJob) -> Value {
    json!({
        "id": job.id,
        "venue": job.venue,
        "symbol": job.symbol,
        "interval": job.interval,
        "from": to_rfc3339(job.from),
        "to": to_rfc3339(job.to),
        "state": job.state,
        "progress_pct": (job.progress_pct() * 10.0).round() / 10.0,
        "candles": job.candles,
        "absent": job.absent,
        "error": job.error,
        "created_at": to_rfc3339(job.created_at),
        "updated_at": to_rfc3339(job.updated_at),
    })
}

/// `POST /v1/backfills`: queues a job; answers 202 with its id.
#[utoipa::path(post, path = "/v1/backfills", tag = "operations",
    description = "Queues a venue backfill job (scope admin); answers 202 with its id.",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = serde_json::Value),
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
    principal: Option<Extension<Principal>>,
    body: std::result::Result<Json<NewBackfill>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    if let Some(Extension(p)) = &principal {
        if !p.has_scope("admin") {
            return Err(ApiError::Forbidden(
                "queuing a backfill needs the \"admin\" scope".into(),
            ));
        }
    }
    let Json(req) =
        body.map_err(|e| ApiError::BadRequest(format!("invalid body: {}", e.body_text())))?;
    let venue: Venue = req
        .venue
        .parse()
        .map_err(|e: pricestream_schemas::SchemaError| ApiError::BadRequest(e.to_string()))?;
    let symbol = Symbol::new(&req.symbol).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let interval: Interval = req
        .interval
        .as_deref()
        .unwrap_or("1m")
        .parse()
        .map_err(|e: pricestream_schemas::SchemaError| ApiError::BadRequest(e.to_string()))?;
    let time = |name: &str, s: &str| {
        parse_time(s).ok_or_else(|| {
            ApiError::BadRequest(format!("{name} {s:?} is not RFC 3339 or Unix milliseconds"))
        })
    };
    let (from, to) = (time("from", &req.from)?, time("to", &req.to)?);
    if from >= to {
        return Err(ApiError::BadRequest("from must be before to".into()));
    }
    if to - from > MAX_RANGE_DAYS * 86_400 * 1_000_000_000 {
        return Err(ApiError::BadRequest(format!(
            "a backfill may cover at most {MAX_RANGE_DAYS} days; split the range"
        )));
    }
    let now = SystemClock.now_ns();
    let job = BackfillJob {
        id: pricestream_schemas::ids::new_id(),
        venue,
        symbol,
        interval,
        from,
        to,
        state: BackfillState::Queued,
        cursor: from,
        candles: 0,
        absent: 0,
        error: None,
        created_at: now,
        updated_at: now,
    };
    state.store.upsert_backfill(&job).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "backfill": view(&job) })),
    ))
}

/// `GET /v1/backfills/{id}`: a job's state and progress.
#[utoipa::path(get, path = "/v1/backfills/{id}", tag = "operations",
    description = "A backfill job: state and progress in percent.",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = serde_json::Value),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 400, description = "A parameter or the body is missing, unknown or malformed", body = crate::error::ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = crate::error::ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    match state.store.backfill(&id).await? {
        Some(job) => Ok(Json(json!({ "backfill": view(&job) }))),
        None => Err(ApiError::NotFound(format!("no backfill job {id:?}"))),
    }
}
