//! The router over a real SQLite store: readiness reflects the pipeline's progress, and
//! request ids are echoed or made.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pricestream_api::{router, ApiConfig, AppState, PipelineHealth};
use pricestream_pipeline::Progress;
use pricestream_schemas::{Clock, SystemClock};
use serde_json::Value;
use tower::ServiceExt;

const S: i64 = 1_000_000_000;

async fn state(dir: &tempfile::TempDir, pipeline: Option<PipelineHealth>) -> AppState {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    AppState {
        store,
        metrics: None,
        pipeline,
        lake_dir: None,
        live: None,
        auth: pricestream_api::auth::Auth::new(Default::default()),
    }
}

async fn get(
    state: AppState,
    path: &str,
    request_id: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::get(path);
    if let Some(id) = request_id {
        req = req.header("x-request-id", id);
    }
    let resp = router(state, &ApiConfig::default())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, id, body)
}

#[tokio::test]
async fn ready_without_a_pipeline_checks_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, body) = get(state(&dir, None).await, "/health/ready", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["checks"]["store"], "ok");
    assert!(body["checks"].get("pipeline").is_none());
}

#[tokio::test]
async fn ready_reports_a_progressing_pipeline_and_fails_on_a_stuck_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now_ns();
    let progress = Arc::new(Progress::new(1, now - 120 * S));
    let health = PipelineHealth {
        progress: Arc::clone(&progress),
        stall_after: Duration::from_secs(30),
        broker: None,
    };
    let st = state(&dir, Some(health)).await;

    // the watermark advanced 1 s ago, quotes keep coming: ready
    progress.observe_frontier(1_763_683_200 * S, now - S);
    progress.quotes_read(0, now);
    let (status, _, body) = get(st.clone(), "/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["pipeline"]["status"], "ok");
    assert_eq!(
        body["checks"]["pipeline"]["watermark"],
        "2025-11-21T00:00:00Z"
    );

    // a second pipeline whose watermark last moved 60 s ago while quotes still arrive
    let stuck = Arc::new(Progress::new(1, now - 120 * S));
    stuck.observe_frontier(1_763_683_200 * S, now - 60 * S);
    stuck.quotes_read(0, now);
    let st = state(
        &dir,
        Some(PipelineHealth {
            progress: stuck,
            stall_after: Duration::from_secs(30),
            broker: None,
        }),
    )
    .await;
    let (status, _, body) = get(st, "/health/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "unavailable");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("pipeline: watermark has not advanced for 60"),
        "{msg}"
    );
    assert!(msg.contains("while quotes are arriving"), "{msg}");

    // liveness stays trivial
    let (status, _, _) = get(st_for_live(&dir).await, "/health/live", None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn st_for_live(dir: &tempfile::TempDir) -> AppState {
    let p = Arc::new(Progress::new(1, 0));
    state(
        dir,
        Some(PipelineHealth {
            progress: p,
            stall_after: Duration::from_secs(1),
            broker: None,
        }),
    )
    .await
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(&dir, None).await;
    let (_, id, _) = get(st.clone(), "/v1/symbols", Some("abc-123")).await;
    assert_eq!(id.as_deref(), Some("abc-123"));
    let (_, id, _) = get(st.clone(), "/v1/symbols", Some("bad id with spaces")).await;
    let id = id.unwrap();
    assert_eq!(id.len(), 32, "a new id replaces an unusable one: {id}");
    let (status, id, _) = get(st, "/no/such/route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(id.unwrap().len(), 32);
}

#[tokio::test]
async fn ready_includes_the_broker_when_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now_ns();
    let progress = Arc::new(Progress::new(1, now - 120 * S));
    progress.observe_frontier(1_763_683_200 * S, now - S);
    progress.quotes_read(0, now);
    let with = |broker: pricestream_api::BrokerCheck| PipelineHealth {
        progress: Arc::clone(&progress),
        stall_after: Duration::from_secs(30),
        broker: Some(broker),
    };
    let up = state(&dir, Some(with(Arc::new(|| Ok(()))))).await;
    let (status, _, body) = get(up, "/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["broker"], "ok");
    let down = state(
        &dir,
        Some(with(Arc::new(|| Err("connection refused".to_string())))),
    )
    .await;
    let (status, _, body) = get(down, "/health/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("broker: connection refused"), "{msg}");
}
