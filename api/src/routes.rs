//! Request handlers.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pricestream_schemas::time::{parse_time, to_rfc3339};
use pricestream_schemas::{Bar, Clock, Interval, Symbol, SystemClock, Venue};
use pricestream_store::BarQuery;
use serde::Serialize;
use serde_json::json;

use crate::error::ErrorBody;
use crate::process::ProcessSample;
use crate::{ApiError, AppState, Result};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_page_rows: u32,
    /// Longest `from`–`to` span of a history query, in bars of its interval.
    pub max_range_bars: u64,
}

/// The query string as name → value; a malformed one is a 400 in the one error shape.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {}", e.body_text())))
    }
}

/// Refuses a `from`–`to` span of more than `max_range_bars` bars of `interval`.
fn check_span(from: i64, to: i64, interval: Interval, limits: Limits) -> Result<()> {
    let bars = (i128::from(to) - i128::from(from)) / i128::from(interval.nanos());
    if bars > i128::from(limits.max_range_bars) {
        return Err(ApiError::RangeTooLarge(format!(
            "from–to spans {bars} bars of {interval}; at most {} are allowed per request (narrow the range or use a longer interval)",
            limits.max_range_bars
        )));
    }
    Ok(())
}

/// `GET /health/live`: the process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = crate::openapi::LiveDoc)))]
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store answers a real query and, in a process that runs the pipeline,
/// the pipeline makes progress (see `pricestream_pipeline::progress`).
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "The store answers and the pipeline (if any) progresses", body = crate::openapi::ReadyDoc),
        (status = 503, description = "Not ready", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("store: {e}")))?;
    let mut checks = json!({ "store": "ok" });
    if let Some(p) = &state.pipeline {
        let stall_after = i64::try_from(p.stall_after.as_nanos()).unwrap_or(i64::MAX);
        let report = p
            .progress
            .check(SystemClock.now_ns(), stall_after)
            .map_err(|stall| ApiError::Unavailable(format!("pipeline: {stall}")))?;
        checks["pipeline"] = json!({
            "status": if report.finished { "finished" } else { "ok" },
            "watermark": report.watermark.map(to_rfc3339),
            "watermark_unchanged_secs": report.watermark_unchanged_secs,
            "last_quote_secs": report.last_quote_secs,
        });
        if let Some(check) = p.broker.clone() {
            tokio::task::spawn_blocking(move || check())
                .await
                .map_err(|e| ApiError::Internal(format!("broker check: {e}")))?
                .map_err(|e| ApiError::Unavailable(format!("broker: {e}")))?;
            checks["broker"] = json!("ok");
        }
    }
    Ok(Json(json!({ "status": "ready", "checks": checks })))
}

/// `GET /metrics`: Prometheus text exposition (on `api.metrics_listen` when that is set).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are not enabled in this process", body = ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            {
                let mut text = h.render();
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                ProcessSample::read().render(&mut text);
                text
            },
        )
            .into_response(),
        None => ApiError::NotFound("metrics are not enabled".into()).into_response(),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// `GET /v1/symbols`: every symbol with stored 1m bars.
#[utoipa::path(get, path = "/v1/symbols", tag = "history",
    responses(
        (status = 200, description = "Symbols with their first and last bar", body = crate::openapi::SymbolsDoc),
        (status = 400, description = "A parameter is missing, unknown or malformed", body = ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn symbols(State(state): State<AppState>) -> Result<Json<serde_json::Value>> {
    let list = state.store.symbols().await?;
    let symbols: Vec<_> = list
        .iter()
        .map(|s| {
            json!({
                "venue": s.venue,
                "symbol": s.symbol,
                "first_bar": to_rfc3339(s.first_bucket),
                "last_bar": to_rfc3339(s.last_bucket),
                "bars_1m": s.bars_1m,
            })
        })
        .collect();
    Ok(Json(json!({ "symbols": symbols })))
}

/// A bar as the API shows it: the stored bar plus its start as RFC 3339 and whether it
/// is gap-filled.
#[derive(Serialize)]
struct BarView<'a> {
    time: String,
    #[serde(flatten)]
    bar: &'a Bar,
    filled: bool,
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|s| !s.is_empty())
}

fn parse_ts(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>> {
    match param(q, name) {
        None => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}: {s:?} is not an RFC 3339 time or Unix epoch milliseconds"
            ))
        }),
    }
}

const KNOWN_OHLCV_PARAMS: [&str; 10] = [
    "symbol", "venue", "interval", "from", "to", "limit", "format", "tz", "session", "days",
];

/// Finer bars one session-bar request may span.
const MAX_SESSION_CHILDREN: i64 = 2_000_000;
/// Finer bars read from the store at a time for session bars.
const SESSION_CHUNK: i64 = 50_000;

/// Daily bars of a local day or session (`tz`, `session`, `days`): the sessions opening in
/// `[from, to)` (or the last `limit` before `to`), each merged from the coarsest stored
/// bars that align with its open and close.
async fn session_bars(
    state: &AppState,
    q: &HashMap<String, String>,
    query: &BarQuery,
) -> Result<Vec<Bar>> {
    use pricestream_analytics::calendar::{self, Session};
    let session = Session::parse(
        param(q, "tz").unwrap_or("UTC"),
        param(q, "session"),
        param(q, "days"),
    )
    .map_err(ApiError::BadRequest)?;
    let limit = query.limit as usize;
    let day = Interval::D1.nanos();
    let to = if query.to == i64::MAX {
        pricestream_schemas::SystemClock
            .now_ns()
            .saturating_add(day)
    } else {
        query.to
    };
    let sessions = if query.tail {
        // a week of slack for the days without a session
        let from = to.saturating_sub((query.limit as i64 + 8).saturating_mul(day));
        let mut all = session.between(from, to, usize::MAX);
        all.split_off(all.len().saturating_sub(limit))
    } else {
        session.between(query.from, to, limit)
    };
    let (Some(first), Some(last)) = (sessions.first(), sessions.last()) else {
        return Ok(Vec::new());
    };
    let child = Session::child_interval(&sessions).ok_or_else(|| {
        ApiError::BadRequest("the session's opens and closes are not on whole minutes".into())
    })?;
    // a coarser interval that is not stored (not among the rollups): merge 1m bars
    for interval in [child, Interval::M1] {
        let span: i64 = (last.1 - first.0) / interval.nanos();
        if span > MAX_SESSION_CHILDREN {
            return Err(ApiError::RangeTooLarge(format!(
                "these sessions span {span} bars of {interval}; at most {MAX_SESSION_CHILDREN} per request (ask for fewer sessions)"
            )));
        }
        let mut out = Vec::with_capacity(sessions.len());
        let mut found = false;
        // sessions in groups spanning at most CHUNK bars, merged group by group
        let mut rest = &sessions[..];
        while let Some(head) = rest.first() {
            let n = rest
                .iter()
                .take_while(|(_, c)| (c - head.0) / interval.nanos() <= SESSION_CHUNK)
                .count()
                .max(1);
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let to = group[group.len() - 1].1;
            let children = state
                .store
                .query_bars(&BarQuery {
                    interval,
                    from: head.0,
                    to,
                    limit: u32::try_from((to - head.0) / interval.nanos() + 1).unwrap_or(u32::MAX),
                    tail: false,
                    ..query.clone()
                })
                .await?;
            found |= !children.is_empty();
            out.extend(calendar::session_bars(&children, group));
        }
        if found || interval == Interval::M1 {
            return Ok(out);
        }
    }
    Ok(Vec::new())
}

/// Response formats of history endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// `format=` wins over the `Accept` header; JSON is the default.
fn format(q: &HashMap<String, String>, headers: &HeaderMap) -> Result<Format> {
    match param(q, "format") {
        Some("json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv),
        Some("arrow") => return Ok(Format::Arrow),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is not one of json, csv, arrow"
            )))
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains(ARROW_STREAM) {
        Format::Arrow
    } else if accept.contains("text/csv") {
        Format::Csv
    } else {
        Format::Json
    })
}

fn bars_csv(bars: &[Bar]) -> String {
    let mut out = String::from(
        "time,venue,symbol,interval,bucket_start,open,high,low,close,volume,notional,vwap,trade_count,revision,filled\n",
    );
    for b in bars {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            to_rfc3339(b.bucket_start),
            b.venue,
            b.symbol,
            b.interval,
            b.bucket_start,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.notional,
            b.vwap,
            b.trade_count,
            b.revision,
            b.is_filled()
        ));
    }
    out
}

fn bars_arrow(bars: &[Bar]) -> Result<Vec<u8>> {
    let batch = pricestream_schemas::arrow::bars_to_batch(bars, true)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut buf = Vec::new();
    {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        w.write(&batch)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        w.finish().map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    Ok(buf)
}

/// `GET /v1/ohlcv`: OHLCV bars as JSON, CSV or an Arrow IPC stream.
#[utoipa::path(get, path = "/v1/ohlcv", tag = "history",
    params(crate::openapi::OhlcvParams),
    responses(
        (status = 200, description = "Bars, ascending by time. CSV and Arrow responses carry the next page's `from` in `x-next-from`.",
            headers(("x-next-from" = String, description = "`from` of the next page (CSV and Arrow)")),
            content(
                (crate::openapi::OhlcvPageDoc = "application/json"),
                (String = "text/csv"),
                (Vec<u8> = "application/vnd.apache.arrow.stream"),
            )),
        (status = 400, description = "A parameter is missing, unknown or malformed", body = ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn ohlcv(
    State(state): State<AppState>,
    Extension(limits): Extension<Limits>,
    headers: HeaderMap,
    Params(q): Params,
) -> Result<Response> {
    reject_unknown(&q, &KNOWN_OHLCV_PARAMS)?;
    let symbol = param(&q, "symbol")
        .ok_or_else(|| ApiError::BadRequest("symbol is required, e.g. symbol=BTC-USDT".into()))?;
    let symbol = Symbol::new(symbol).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let interval: Interval = param(&q, "interval")
        .unwrap_or("1m")
        .parse()
        .map_err(|e: pricestream_schemas::SchemaError| ApiError::BadRequest(e.to_string()))?;
    let venue = parse_param::<Venue>(&q, "venue")?;
    let limit = limit_param(&q, limits, 1_000)?;
    let from = parse_ts(&q, "from")?;
    let to = parse_ts(&q, "to")?.unwrap_or(i64::MAX);
    if let Some(f) = from {
        if f >= to {
            return Err(ApiError::BadRequest("from must be earlier than to".into()));
        }
        if to != i64::MAX {
            check_span(f, to, interval, limits)?;
        }
    }
    let query = BarQuery {
        venue,
        symbol: symbol.clone(),
        interval,
        from: from.unwrap_or(i64::MIN),
        to,
        limit,
        // without `from`, the latest `limit` bars before `to`
        tail: from.is_none(),
    };
    let fmt = format(&q, &headers)?;
    let by_session = ["tz", "session", "days"]
        .iter()
        .any(|p| param(&q, p).is_some());
    if by_session && interval != Interval::D1 {
        return Err(ApiError::BadRequest(
            "tz, session and days make daily bars: use interval=1d".into(),
        ));
    }
    let bars = if by_session {
        session_bars(&state, &q, &query).await?
    } else {
        state.store.query_bars(&query).await?
    };
    // the next page starts right after the last bar (ascending pages only)
    let next = (from.is_some() && bars.len() == limit as usize)
        .then(|| bars.last().map(|b| b.bucket_start + 1))
        .flatten();
    match fmt {
        Format::Csv => {
            let mut resp = (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                bars_csv(&bars),
            )
                .into_response();
            if let Some(n) = next {
                if let Ok(v) = to_rfc3339(n).parse() {
                    resp.headers_mut().insert("x-next-from", v);
                }
            }
            return Ok(resp);
        }
        Format::Arrow => {
            let mut resp =
                ([(header::CONTENT_TYPE, ARROW_STREAM)], bars_arrow(&bars)?).into_response();
            if let Some(n) = next {
                if let Ok(v) = to_rfc3339(n).parse() {
                    resp.headers_mut().insert("x-next-from", v);
                }
            }
            return Ok(resp);
        }
        Format::Json => {}
    }
    let views: Vec<BarView<'_>> = bars
        .iter()
        .map(|b| BarView {
            time: to_rfc3339(b.bucket_start),
            bar: b,
            filled: b.is_filled(),
        })
        .collect();
    // serialized straight from the bars (no intermediate JSON tree)
    Ok((
        StatusCode::OK,
        Json(OhlcvPage {
            symbol: &symbol,
            interval,
            count: views.len(),
            bars: views,
            next_from: next.map(to_rfc3339),
        }),
    )
        .into_response())
}

#[derive(Serialize)]
struct OhlcvPage<'a> {
    symbol: &'a Symbol,
    interval: Interval,
    count: usize,
    bars: Vec<BarView<'a>>,
    next_from: Option<String>,
}

/// `GET /v1/seasonality?symbol=&venue=`: hour-of-day and weekday return profiles.
#[utoipa::path(get, path = "/v1/seasonality", tag = "history",
    params(crate::openapi::SeasonalityParams),
    responses(
        (status = 200, description = "Hour-of-day and weekday return profiles", body = crate::openapi::SeasonalityDoc),
        (status = 404, description = "No profile for the symbol (or the lake is disabled)", body = ErrorBody),
        (status = 400, description = "A parameter is missing, unknown or malformed", body = ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn seasonality(
    State(state): State<AppState>,
    Params(q): Params,
) -> Result<Json<serde_json::Value>> {
    let symbol = param(&q, "symbol")
        .ok_or_else(|| ApiError::BadRequest("symbol is required, e.g. symbol=BTC-USDT".into()))?;
    let symbol = Symbol::new(symbol).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let venue = parse_param::<Venue>(&q, "venue")?;
    let Some(dir) = state.lake_dir.clone() else {
        return Err(ApiError::NotFound(
            "the lake is disabled, so there are no profiles".into(),
        ));
    };
    let rows = tokio::task::spawn_blocking(move || pricestream_store::seasonality::read(&dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.symbol == symbol && venue.is_none_or(|v| r.venue == v))
        .collect();
    if rows.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no seasonality profile for {symbol} yet (profiles are recomputed from the lake periodically)"
        )));
    }
    let pick = |season: &str| -> Vec<serde_json::Value> {
        rows.iter()
            .filter(|r| r.season == season)
            .map(|r| {
                json!({
                    "venue": r.venue,
                    "interval": r.interval,
                    "bucket": r.bucket,
                    "count": r.count,
                    "mean_return": r.mean_return,
                    "stdev_return": r.stdev_return,
                    "mean_abs_return": r.mean_abs_return,
                })
            })
            .collect()
    };
    Ok(Json(json!({
        "symbol": symbol,
        "hour_of_day": pick("hour_of_day"),
        "weekday": pick("weekday"),
    })))
}

fn parse_param<T: std::str::FromStr<Err = pricestream_schemas::SchemaError>>(
    q: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>> {
    param(q, name)
        .map(str::parse)
        .transpose()
        .map_err(|e: pricestream_schemas::SchemaError| ApiError::BadRequest(format!("{name}: {e}")))
}

fn limit_param(q: &HashMap<String, String>, limits: Limits, default: u32) -> Result<u32> {
    match param(q, "limit") {
        None => Ok(default.min(limits.max_page_rows)),
        Some(s) => match s.parse::<u64>() {
            Ok(l) if l > u64::from(limits.max_page_rows) => Err(ApiError::PageTooLarge(format!(
                "limit {l} is above the largest page, {}; page with from and next_from",
                limits.max_page_rows
            ))),
            Ok(l) if l >= 1 => Ok(l as u32),
            _ => Err(ApiError::BadRequest(format!(
                "limit must be an integer from 1 to {}",
                limits.max_page_rows
            ))),
        },
    }
}

fn reject_unknown(q: &HashMap<String, String>, known: &[&str]) -> Result<()> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::BadRequest(format!(
            "unknown parameter {unknown:?}; expected {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `GET /v1/signals?symbol=&interval=&kind=&from=&to=&limit=`: signals, ascending.
#[utoipa::path(get, path = "/v1/signals", tag = "history",
    params(crate::openapi::SignalsParams),
    responses(
        (status = 200, description = "Signals, ascending by time", body = crate::openapi::SignalsDoc),
        (status = 400, description = "A parameter is missing, unknown or malformed", body = ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn signals(
    State(state): State<AppState>,
    Extension(limits): Extension<Limits>,
    Params(q): Params,
) -> Result<Json<serde_json::Value>> {
    reject_unknown(&q, &["symbol", "interval", "kind", "from", "to", "limit"])?;
    let symbol = param(&q, "symbol")
        .map(Symbol::new)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let query = pricestream_store::SignalQuery {
        symbol,
        interval: parse_param::<Interval>(&q, "interval")?,
        kind: parse_param::<pricestream_schemas::SignalKind>(&q, "kind")?,
        from: parse_ts(&q, "from")?.unwrap_or(i64::MIN),
        to: parse_ts(&q, "to")?.unwrap_or(i64::MAX),
        limit: limit_param(&q, limits, 1_000)?,
    };
    if query.from >= query.to {
        return Err(ApiError::BadRequest("from must be earlier than to".into()));
    }
    if query.from != i64::MIN && query.to != i64::MAX {
        check_span(
            query.from,
            query.to,
            query.interval.unwrap_or(Interval::M1),
            limits,
        )?;
    }
    let list = state.store.query_signals(&query).await?;
    let views: Vec<_> = list
        .iter()
        .map(|s| json!({ "time": to_rfc3339(s.bucket_start), "signal": s }))
        .collect();
    Ok(Json(json!({ "count": views.len(), "signals": views })))
}

/// `GET /v1/quotes/latest?venue=`: the latest quote of every symbol.
#[utoipa::path(get, path = "/v1/quotes/latest", tag = "history",
    params(crate::openapi::QuotesParams),
    responses(
        (status = 200, description = "The latest quote of every symbol", body = crate::openapi::LatestQuotesDoc),
        (status = 400, description = "A parameter is missing, unknown or malformed", body = ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn latest_quotes(
    State(state): State<AppState>,
    Params(q): Params,
) -> Result<Json<serde_json::Value>> {
    reject_unknown(&q, &["venue"])?;
    let venue = parse_param::<Venue>(&q, "venue")?;
    let quotes = state.store.latest_quotes(venue).await?;
    let views: Vec<_> = quotes
        .iter()
        .map(|x| json!({ "time": to_rfc3339(x.ts_event), "quote": x }))
        .collect();
    Ok(Json(json!({ "count": views.len(), "quotes": views })))
}

/// `GET /v1/runs?connector=&status=&limit=`: ingestion runs, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "operations",
    params(crate::openapi::RunsParams),
    responses(
        (status = 200, description = "Ingestion runs, newest first", body = crate::openapi::RunsDoc),
        (status = 400, description = "A parameter is missing, unknown or malformed", body = ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn runs(
    State(state): State<AppState>,
    Extension(limits): Extension<Limits>,
    Params(q): Params,
) -> Result<Json<serde_json::Value>> {
    reject_unknown(&q, &["connector", "status", "limit"])?;
    let status = match param(&q, "status") {
        None => None,
        Some("running") => Some(pricestream_schemas::RunStatus::Running),
        Some("completed") => Some(pricestream_schemas::RunStatus::Completed),
        Some("failed") => Some(pricestream_schemas::RunStatus::Failed),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status {other:?} is not one of running, completed, failed"
            )))
        }
    };
    let filter = pricestream_store::RunFilter {
        id: None,
        connector: param(&q, "connector").map(str::to_string),
        status,
        limit: limit_param(&q, limits, 100)?,
    };
    let runs = state.store.list_runs(&filter).await?;
    Ok(Json(json!({ "count": runs.len(), "runs": runs })))
}

/// `GET /v1/runs/{id}`: one ingestion run.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "operations",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = crate::openapi::RunOneDoc),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 400, description = "A parameter is missing, unknown or malformed", body = ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn run_by_id(
    State(state): State<AppState>,
    id: std::result::Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<serde_json::Value>> {
    let axum::extract::Path(id) =
        id.map_err(|e| ApiError::BadRequest(format!("run id: {}", e.body_text())))?;
    let filter = pricestream_store::RunFilter {
        id: Some(id.clone()),
        limit: 1,
        ..Default::default()
    };
    match state.store.list_runs(&filter).await?.into_iter().next() {
        Some(run) => Ok(Json(json!({ "run": run }))),
        None => Err(ApiError::NotFound(format!("no ingestion run {id:?}"))),
    }
}
