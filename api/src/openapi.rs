//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and
//! the schema types below, served at `GET /openapi.json`; Swagger UI at `GET /docs`.
//!
//! # Adding a route to the document
//!
//! 1. Put `#[utoipa::path(get|post|…, path = "/v1/…", tag = "…", params(…),
//!    request_body = …, responses(…), security(…))]` on the handler. Describe every status
//!    it can answer; errors use [`ErrorBody`] (the `error_responses!`-style list on the
//!    existing handlers is the pattern: 400, 401, 403, 429 for `/v1`). Query parameters
//!    are an `IntoParams` struct here; response bodies a `ToSchema` type (here, or the
//!    handler's own response type when it derives `ToSchema`).
//! 2. Add the handler to `paths(...)` of [`ApiDoc`] and any new schema types to
//!    `components(schemas(...))`.
//! 3. Register the route in `crate::router` as usual. The test `openapi_lists_every_route`
//!    (api/tests/openapi.rs) fails while a `.route("…")` of `api/src` is missing from the
//!    document, and `scripts/checks/schemathesis.sh` fuzzes it against a running server.
//!
//! # Swagger UI
//!
//! `/docs` is a small HTML page that loads Swagger UI's script and style from
//! `/docs/assets/`, which serves the files of the `swagger-ui-dist` npm package from
//! `api.docs_assets_dir` (install them with `scripts/install-swagger-ui.sh`; the binary
//! embeds nothing and downloads nothing). Without that directory the page falls back to the
//! same package on a public CDN, which works in any browser with internet access.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PriceStream API",
        description = "Market data history (OHLCV bars, latest quotes, signals, seasonality), ingestion runs and a live WebSocket stream.\n\nAuthenticate with `X-API-Key: <key>` or `Authorization: Bearer <jwt>` (scopes `read`, `alerts:write`, `admin`); without credentials a request is anonymous (scope `read`) unless the server requires credentials. Every error has the body `{\"error\":{\"code\":…,\"message\":…}}` with a stable `code`. Every response carries `x-request-id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::routes::live,
        crate::routes::ready,
        crate::routes::metrics,
        crate::routes::symbols,
        crate::routes::ohlcv,
        crate::routes::seasonality,
        crate::routes::signals,
        crate::routes::latest_quotes,
        crate::routes::runs,
        crate::routes::run_by_id,
        crate::stream::stream,
        crate::backfills::create,
        crate::backfills::get,
        crate::alerts::create,
        crate::alerts::list,
        crate::alerts::get,
        crate::alerts::delete,
        crate::alerts::deliveries,
        crate::alerts::retry,
        openapi_json,
        docs,
        docs_asset,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, ErrorCode, Venue, Interval, QuoteKind, Side, SignalKind,
        RunStatus, BarDoc, OhlcvPageDoc, SymbolDoc, SymbolsDoc, QuoteDoc, LatestQuoteDoc,
        LatestQuotesDoc, SignalDoc, SignalViewDoc, SignalsDoc, RunDoc, RunsDoc, RunOneDoc,
        SeasonBucketDoc, SeasonalityDoc, LiveDoc, ReadyDoc,
    )),
    modifiers(&Security),
    tags(
        (name = "history", description = "Stored market data"),
        (name = "operations", description = "Ingestion runs"),
        (name = "stream", description = "Live WebSocket stream"),
        (name = "health", description = "Probes and metrics (no credentials needed)"),
        (name = "meta", description = "This document and its viewer"),
    ),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A key from `pricestream keys create`",
            ))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 or RS256 JWT with `sub`, `exp`, `scope` and optionally `tier`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

// ---- parameters -------------------------------------------------------------------------

/// Parameters of `GET /v1/ohlcv`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct OhlcvParams {
    /// Canonical symbol `BASE-QUOTE` (upper-case letters and digits).
    #[param(example = "BTC-USDT")]
    symbol: String,
    /// Only bars of this venue (default: all venues).
    #[param(inline)]
    venue: Option<Venue>,
    /// Bar interval (default `1m`).
    #[param(inline)]
    interval: Option<Interval>,
    /// Inclusive start: RFC 3339 time or Unix epoch milliseconds. Without it, the latest
    /// `limit` bars before `to` are returned.
    #[param(example = "2025-11-21T00:00:00Z")]
    from: Option<String>,
    /// Exclusive end: RFC 3339 time or Unix epoch milliseconds. With `from`, the span may
    /// cover at most `api.max_range_bars` bars of the interval (else 400 `range_too_large`).
    #[param(example = "2025-11-22T00:00:00Z")]
    to: Option<String>,
    /// Bars per page, 1 to `api.max_page_rows` (default 1000; above the maximum: 400
    /// `page_too_large`). A full ascending page has `next_from` for the next one.
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// Response format; wins over `Accept` (`text/csv`,
    /// `application/vnd.apache.arrow.stream`). Default JSON.
    #[param(inline)]
    format: Option<Format>,
    /// Daily bars of the local day in this IANA time zone (with `interval=1d`), e.g.
    /// `America/New_York`; daylight saving is followed (days of 23 or 25 hours). Each bar
    /// starts at the day's (or session's) open and merges the stored finer bars inside it.
    #[param(example = "America/New_York")]
    tz: Option<String>,
    /// A session within the local day, `HH:MM-HH:MM` in `tz` (default UTC), e.g.
    /// `09:30-16:00`; a close before the open ends the next day (overnight session).
    #[param(example = "09:30-16:00")]
    session: Option<String>,
    /// Weekdays with a session, e.g. `mon-fri` or `mon,wed,fri` (default every day).
    #[param(example = "mon-fri")]
    days: Option<String>,
}

/// Response format of `/v1/ohlcv`.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Format {
    Json,
    Csv,
    Arrow,
}

/// Parameters of `GET /v1/signals`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SignalsParams {
    /// Only this symbol.
    #[param(example = "BTC-USDT")]
    symbol: Option<String>,
    #[param(inline)]
    interval: Option<Interval>,
    #[param(inline)]
    kind: Option<SignalKind>,
    /// Inclusive start (RFC 3339 or Unix epoch milliseconds).
    from: Option<String>,
    /// Exclusive end (RFC 3339 or Unix epoch milliseconds).
    to: Option<String>,
    /// Rows, 1 to `api.max_page_rows` (default 1000).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

/// Parameters of `GET /v1/quotes/latest`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct QuotesParams {
    #[param(inline)]
    venue: Option<Venue>,
}

/// Parameters of `GET /v1/seasonality`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SeasonalityParams {
    #[param(example = "BTC-USDT")]
    symbol: String,
    #[param(inline)]
    venue: Option<Venue>,
}

/// Parameters of `GET /v1/runs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RunsParams {
    /// Only runs of this connector.
    connector: Option<String>,
    #[param(inline)]
    status: Option<RunStatus>,
    /// Rows, 1 to `api.max_page_rows` (default 100).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

// ---- schemas (the JSON the handlers write; api/tests/openapi.rs checks real responses) --

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Venue {
    Binance,
    Coinbase,
    Coingecko,
    Kraken,
    Synthetic,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub enum Interval {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "1d")]
    D1,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum QuoteKind {
    Trade,
    Ticker,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Side {
    Buy,
    Sell,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SignalKind {
    GoldenCross,
    DeathCross,
    MeanReversionHigh,
    MeanReversionLow,
    BandReturn,
    RsiOverbought,
    RsiOversold,
    SeasonalDeviation,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
}

/// One OHLCV bar. Times are Unix nanoseconds (UTC) unless RFC 3339 strings.
#[derive(ToSchema)]
#[schema(as = Bar)]
#[allow(dead_code)]
pub struct BarDoc {
    /// Start of the bar, RFC 3339.
    time: String,
    venue: Venue,
    symbol: String,
    interval: Interval,
    /// Inclusive start of the bucket.
    bucket_start: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    notional: f64,
    vwap: f64,
    trade_count: u64,
    /// 0 for the first emission, +1 for each revision by late data.
    revision: u32,
    /// Event time of the latest quote in the bar; for a gap-filled bar, of the quote whose
    /// close it carries (before `bucket_start`).
    ts_event: i64,
    ts_ingest: i64,
    /// A gap-filled bar (`pipeline.gap_fill_minutes`): no quote in the bucket; it carries
    /// the previous close with zero volume.
    filled: bool,
}

#[derive(ToSchema)]
#[schema(as = OhlcvPage)]
#[allow(dead_code)]
pub struct OhlcvPageDoc {
    symbol: String,
    interval: Interval,
    count: u64,
    bars: Vec<BarDoc>,
    /// `from` of the next page, when this ascending page is full.
    next_from: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = SymbolSummary)]
#[allow(dead_code)]
pub struct SymbolDoc {
    venue: Venue,
    symbol: String,
    first_bar: String,
    last_bar: String,
    bars_1m: u64,
}

#[derive(ToSchema)]
#[schema(as = Symbols)]
#[allow(dead_code)]
pub struct SymbolsDoc {
    symbols: Vec<SymbolDoc>,
}

#[derive(ToSchema)]
#[schema(as = Quote)]
#[allow(dead_code)]
pub struct QuoteDoc {
    venue: Venue,
    symbol: String,
    kind: QuoteKind,
    price: f64,
    size: f64,
    side: Option<Side>,
    trade_id: Option<u64>,
    bid: Option<f64>,
    ask: Option<f64>,
    ts_event: i64,
    ts_ingest: i64,
}

#[derive(ToSchema)]
#[schema(as = LatestQuote)]
#[allow(dead_code)]
pub struct LatestQuoteDoc {
    /// Exchange time of the quote, RFC 3339.
    time: String,
    quote: QuoteDoc,
}

#[derive(ToSchema)]
#[schema(as = LatestQuotes)]
#[allow(dead_code)]
pub struct LatestQuotesDoc {
    count: u64,
    quotes: Vec<LatestQuoteDoc>,
}

#[derive(ToSchema)]
#[schema(as = Signal)]
#[allow(dead_code)]
pub struct SignalDoc {
    venue: Venue,
    symbol: String,
    interval: Interval,
    kind: SignalKind,
    bucket_start: i64,
    /// The indicator's value (z-score, RSI, fast−slow spread…).
    value: f64,
    ts_event: i64,
    ts_ingest: i64,
}

#[derive(ToSchema)]
#[schema(as = SignalView)]
#[allow(dead_code)]
pub struct SignalViewDoc {
    time: String,
    signal: SignalDoc,
}

#[derive(ToSchema)]
#[schema(as = Signals)]
#[allow(dead_code)]
pub struct SignalsDoc {
    count: u64,
    signals: Vec<SignalViewDoc>,
}

#[derive(ToSchema)]
#[schema(as = IngestionRun)]
#[allow(dead_code)]
pub struct RunDoc {
    id: String,
    connector: String,
    status: RunStatus,
    started_at: i64,
    finished_at: Option<i64>,
    quotes: u64,
    error: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = IngestionRuns)]
#[allow(dead_code)]
pub struct RunsDoc {
    count: u64,
    runs: Vec<RunDoc>,
}

#[derive(ToSchema)]
#[schema(as = IngestionRunOne)]
#[allow(dead_code)]
pub struct RunOneDoc {
    run: RunDoc,
}

#[derive(ToSchema)]
#[schema(as = SeasonBucket)]
#[allow(dead_code)]
pub struct SeasonBucketDoc {
    venue: Venue,
    interval: Interval,
    /// Hour of day (0–23, UTC) or weekday (0 = Monday).
    bucket: u32,
    count: u64,
    mean_return: f64,
    stdev_return: f64,
    mean_abs_return: f64,
}

#[derive(ToSchema)]
#[schema(as = Seasonality)]
#[allow(dead_code)]
pub struct SeasonalityDoc {
    symbol: String,
    hour_of_day: Vec<SeasonBucketDoc>,
    weekday: Vec<SeasonBucketDoc>,
}

#[derive(ToSchema)]
#[schema(as = Live)]
#[allow(dead_code)]
pub struct LiveDoc {
    #[schema(example = "ok")]
    status: String,
}

#[derive(ToSchema)]
#[schema(as = Ready)]
#[allow(dead_code)]
pub struct ReadyDoc {
    #[schema(example = "ready")]
    status: String,
    /// `store`, and `pipeline` in a process that runs one.
    checks: serde_json::Map<String, serde_json::Value>,
}

// ---- handlers ---------------------------------------------------------------------------

/// `GET /openapi.json`
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json(Extension(meta): Extension<Arc<Meta>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        meta.document.clone(),
    )
        .into_response()
}

/// What the meta routes serve: the rendered document and where Swagger UI's files are.
#[derive(Debug)]
pub struct Meta {
    pub document: axum::body::Bytes,
    pub assets_dir: Option<PathBuf>,
}

impl Meta {
    pub fn new(assets_dir: Option<PathBuf>) -> Arc<Meta> {
        let document = document()
            .to_json()
            .map(axum::body::Bytes::from)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "rendering the OpenAPI document");
                axum::body::Bytes::from_static(b"{}")
            });
        Arc::new(Meta {
            document,
            assets_dir,
        })
    }
}

/// The files of `swagger-ui-dist` that `/docs` needs.
const ASSETS: [(&str, &str); 3] = [
    ("swagger-ui.css", "text/css; charset=utf-8"),
    ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    ("favicon-32x32.png", "image/png"),
];

/// The pinned `swagger-ui-dist` version of the CDN fallback (and of the install script).
pub const SWAGGER_UI_VERSION: &str = "5.35.0";

/// `GET /docs`
#[utoipa::path(
    get,
    path = "/docs",
    tag = "meta",
    responses((status = 200, description = "Swagger UI for this document", content_type = "text/html")),
)]
pub async fn docs(Extension(meta): Extension<Arc<Meta>>) -> Html<String> {
    let local = meta
        .assets_dir
        .as_ref()
        .is_some_and(|d| d.join("swagger-ui-bundle.js").is_file());
    let base = if local {
        "/docs/assets".to_string()
    } else {
        format!("https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}")
    };
    Html(format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PriceStream API</title>
<link rel="stylesheet" href="{base}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true }});
</script>
</body>
</html>
"##
    ))
}

/// `GET /docs/assets/{file}`
#[utoipa::path(
    get,
    path = "/docs/assets/{file}",
    tag = "meta",
    params(("file" = String, Path, description = "swagger-ui.css, swagger-ui-bundle.js or favicon-32x32.png")),
    responses(
        (status = 200, description = "A file of the swagger-ui-dist package"),
        (status = 404, description = "Not one of the files, or they are not installed", body = ErrorBody),
    ),
)]
pub async fn docs_asset(
    Extension(meta): Extension<Arc<Meta>>,
    file: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> crate::Result<Response> {
    let Path(file) = file.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Some((name, mime)) = ASSETS.iter().find(|(n, _)| *n == file) else {
        return Err(ApiError::NotFound(format!("no docs asset {file:?}")));
    };
    let Some(dir) = &meta.assets_dir else {
        return Err(ApiError::NotFound(
            "Swagger UI assets are not installed (api.docs_assets_dir)".into(),
        ));
    };
    let bytes = tokio::fs::read(dir.join(name))
        .await
        .map_err(|_| ApiError::NotFound(format!("{name} is not in api.docs_assets_dir")))?;
    Ok((
        [
            (header::CONTENT_TYPE, *mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        bytes,
    )
        .into_response())
}
