//! `POST /v1/backfills` queues a job (admin only), `GET /v1/backfills/{id}` reports it.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pricestream_api::auth::{new_key, Auth, AuthConfig};
use pricestream_api::{router, ApiConfig, AppState};
use pricestream_store::BackfillState;
use tower::ServiceExt;

async fn send(
    app: &axum::Router,
    req: axum::http::request::Builder,
    key: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let resp = app
        .clone()
        .oneshot(
            req.header("x-api-key", key)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn backfills_are_queued_by_admins_and_followed_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let auth = AuthConfig {
        required: true,
        ..AuthConfig::default()
    };
    let state = AppState {
        store: store.clone(),
        metrics: None,
        lake_dir: None,
        pipeline: None,
        live: None,
        auth: Auth::new(auth.clone()),
    };
    let app = router(
        state,
        &ApiConfig {
            auth,
            ..ApiConfig::default()
        },
    );
    let mut keys = Vec::new();
    for scopes in ["admin", "read", "alerts:write"] {
        let (key, rec) = new_key(scopes, scopes, "basic", 1).unwrap();
        store.create_api_key(&rec).await.unwrap();
        keys.push(key);
    }
    let (admin, reader, writer) = (&keys[0], &keys[1], &keys[2]);
    let body = r#"{"venue":"binance","symbol":"BTC-USDT","from":"2020-01-01T00:00:00Z","to":"2020-01-02T00:00:00Z"}"#;

    for key in [reader, writer] {
        let (status, _) = send(&app, Request::post("/v1/backfills"), key, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, v) = send(&app, Request::post("/v1/backfills"), admin, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["backfill"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["backfill"]["state"], "queued");
    assert_eq!(v["backfill"]["interval"], "1m");
    assert_eq!(v["backfill"]["progress_pct"], 0.0);

    // a worker moves it on; readers see the progress
    let mut job = store.backfill(&id).await.unwrap().unwrap();
    job.state = BackfillState::Running;
    job.cursor = job.from + (job.to - job.from) / 4;
    job.candles = 360;
    store.upsert_backfill(&job).await.unwrap();
    let (status, v) = send(
        &app,
        Request::get(format!("/v1/backfills/{id}")),
        reader,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["backfill"]["state"], "running");
    assert_eq!(v["backfill"]["progress_pct"], 25.0);
    assert_eq!(v["backfill"]["candles"], 360);
    assert_eq!(v["backfill"]["from"], "2020-01-01T00:00:00Z");

    let (status, v) = send(&app, Request::get("/v1/backfills/nope"), reader, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");

    for bad in [
        r#"{"venue":"nowhere","symbol":"BTC-USDT","from":"0","to":"1"}"#,
        r#"{"venue":"binance","symbol":"btcusdt","from":"0","to":"1"}"#,
        r#"{"venue":"binance","symbol":"BTC-USDT","from":"2","to":"1"}"#,
        r#"{"venue":"binance","symbol":"BTC-USDT","from":"yesterday","to":"1"}"#,
        r#"{"venue":"binance","symbol":"BTC-USDT","interval":"2m","from":"0","to":"1"}"#,
        r#"{"venue":"binance","symbol":"BTC-USDT","from":"0","to":"1","extra":1}"#,
        r#"{"venue":"binance","symbol":"BTC-USDT","from":"0","to":"100000000000"}"#,
        r#"{"venue":"binance""#,
    ] {
        let (status, v) = send(&app, Request::post("/v1/backfills"), admin, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "bad_request");
    }
}
