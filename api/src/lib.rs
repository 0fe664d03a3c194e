//! The HTTP API (axum): health, history, symbols and Prometheus metrics.

pub mod alerts;
pub mod auth;
pub mod backfills;
pub mod error;
pub mod jwt;
pub mod metrics;
pub mod openapi;
pub mod process;
mod routes;
pub mod stream;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use pricestream_pipeline::Progress;
use pricestream_store::Store;

pub use error::{ApiError, Result};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Option<PrometheusHandle>,
    /// Root of the Parquet lake (for datasets served from it, e.g. seasonality).
    pub lake_dir: Option<std::path::PathBuf>,
    /// The running pipeline's progress, when this process runs one (`run`, not `serve`).
    pub pipeline: Option<PipelineHealth>,
    /// The live stream, when this process runs a pipeline.
    pub live: Option<stream::LiveStream>,
    /// API keys and rate limits.
    pub auth: Arc<auth::Auth>,
}

/// What `/health/ready` checks of the pipeline.
#[derive(Clone)]
pub struct PipelineHealth {
    pub progress: Arc<Progress>,
    /// How long the watermark may stand still while quotes arrive (and a worker may go
    /// without polling) before the process is not ready.
    pub stall_after: Duration,
    /// The message broker the pipeline reads from, when there is one (blocking check).
    pub broker: Option<BrokerCheck>,
}

/// A blocking liveness check of the broker: `Err` carries the reason.
pub type BrokerCheck = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// Settings of the API (section `[api]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest `limit` a history request may ask for.
    pub max_page_rows: u32,
    /// Longest `from`–`to` span of `/v1/ohlcv` and `/v1/signals`, in bars of the requested
    /// interval (1m when a signals query names none): 525600 is a year of 1m bars.
    pub max_range_bars: u64,
    /// Serve `/metrics` on this address:port instead of `listen` (none: on `listen`).
    pub metrics_listen: Option<String>,
    /// Directory with the `swagger-ui-dist` files that `/docs` loads (see
    /// `scripts/install-swagger-ui.sh`); none: the page loads them from a public CDN.
    pub docs_assets_dir: Option<std::path::PathBuf>,
    /// WebSocket stream connections at once.
    pub stream_max_connections: usize,
    /// Events a stream client may fall behind before it loses the oldest.
    pub stream_buffer_events: usize,
    pub auth: auth::AuthConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".into(),
            max_page_rows: 10_000,
            max_range_bars: 525_600,
            metrics_listen: None,
            docs_assets_dir: None,
            stream_max_connections: 1_000,
            stream_buffer_events: 4_096,
            auth: auth::AuthConfig::default(),
        }
    }
}

/// The application router, with the default alert settings (no SSRF allowlist).
pub fn router(state: AppState, cfg: &ApiConfig) -> Router {
    router_with(state, cfg, alerts::AlertsApi::default())
}

/// The application router with the alert settings of `[alerts]`.
pub fn router_with(state: AppState, cfg: &ApiConfig, alerts_api: alerts::AlertsApi) -> Router {
    let limits = routes::Limits {
        max_page_rows: cfg.max_page_rows.max(1),
        max_range_bars: cfg.max_range_bars.max(1),
    };
    let meta = openapi::Meta::new(cfg.docs_assets_dir.clone());
    let v1 = Router::new()
        .route("/v1/symbols", get(routes::symbols))
        .route("/v1/ohlcv", get(routes::ohlcv))
        .route("/v1/seasonality", get(routes::seasonality))
        .route("/v1/signals", get(routes::signals))
        .route("/v1/quotes/latest", get(routes::latest_quotes))
        .route("/v1/runs", get(routes::runs))
        .route("/v1/runs/{id}", get(routes::run_by_id))
        .route("/v1/backfills", axum::routing::post(backfills::create))
        .route("/v1/backfills/{id}", get(backfills::get))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/alerts", post(alerts::create).get(alerts::list))
        .route("/v1/alerts/{id}", get(alerts::get).delete(alerts::delete))
        .route("/v1/alerts/{id}/deliveries", get(alerts::deliveries))
        .route(
            "/v1/alerts/{id}/deliveries/{delivery_id}/retry",
            post(alerts::retry),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ));
    let mut app = Router::new()
        .route("/health/live", get(routes::live))
        .route("/health/ready", get(routes::ready))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs))
        .route("/docs/assets/{file}", get(openapi::docs_asset));
    if cfg.metrics_listen.is_none() {
        app = app.route("/metrics", get(routes::metrics));
    }
    app.merge(v1)
        .fallback(routes::not_found)
        // gzip or zstd, as the client's Accept-Encoding asks
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(trace::request_span))
        .layer(axum::Extension(limits))
        .layer(axum::Extension(meta))
        .layer(axum::Extension(alerts_api))
        .with_state(state)
}

/// The router of `api.metrics_listen`: `/metrics` and the liveness probe only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::metrics))
        .route("/health/live", get(routes::live))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(trace::request_span))
        .with_state(state)
}
