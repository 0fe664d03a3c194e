//! Log lines of a request carry its span's structured fields (request id, route, method).
//! Alone in its test binary: tracing caches callsite interest process-wide, and a scoped
//! subscriber must not race other tests that run without one.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pricestream_api::{router, ApiConfig, AppState};
use serde_json::Value;
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn json_logs_carry_the_request_span_fields() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let st = AppState {
        store,
        metrics: None,
        pipeline: None,
        lake_dir: None,
        live: None,
        auth: pricestream_api::auth::Auth::new(Default::default()),
    };
    let req = Request::get("/v1/ohlcv?symbol=BTC-USDT")
        .header("x-request-id", "req-42")
        .body(Body::empty())
        .unwrap();
    let resp = router(st, &ApiConfig::default())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "request finished")
        .unwrap_or_else(|| panic!("no request log line in {text}"));
    assert_eq!(line["span"]["name"], "request", "{line}");
    assert_eq!(line["span"]["request_id"], "req-42");
    assert_eq!(line["span"]["route"], "/v1/ohlcv");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].as_f64().unwrap() >= 0.0);
}
