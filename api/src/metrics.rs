//! Metric names of the API and the Prometheus recorder.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub const REQUESTS: &str = "pricestream_api_requests_total";
pub const REQUEST_SECONDS: &str = "pricestream_api_request_duration_seconds";

// Process metrics, read from /proc/self at each render (see `process.rs`).
pub const PROCESS_RESIDENT_MEMORY: &str = "pricestream_process_resident_memory_bytes";
pub const PROCESS_CPU: &str = "pricestream_process_cpu_seconds_total";
pub const PROCESS_OPEN_FDS: &str = "pricestream_process_open_fds";
pub const PROCESS_MAX_FDS: &str = "pricestream_process_max_fds";
pub const PROCESS_THREADS: &str = "pricestream_process_threads";
pub const PROCESS_START_TIME: &str = "pricestream_process_start_time_seconds";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// The Prometheus recorder with PriceStream's buckets, not installed (for a caller that
/// wraps it, e.g. the benchmark harness).
pub fn build_recorder() -> Result<PrometheusRecorder, String> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), SIZE_BUCKETS))
        .map_err(|e| e.to_string())?
        .build_recorder())
}

/// Installs the global Prometheus recorder (once per process) and returns its handle.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let recorder = build_recorder()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    metrics::describe_counter!(
        REQUESTS,
        metrics::Unit::Count,
        "HTTP requests, by matched route, method and status"
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency, by matched route and status"
    );
    Ok(handle)
}

/// Middleware: counts and times requests by matched route (a bounded label set).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "route" => route.clone(), "method" => method, "status" => status.clone())
        .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    resp
}
