//! API keys: 401 vs 403, revocation, rate limits with Retry-After; health stays open.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pricestream_api::auth::{new_key, Auth, AuthConfig, TierLimit};
use pricestream_api::{router, ApiConfig, AppState};
use tower::ServiceExt;

async fn app(
    auth: AuthConfig,
) -> (
    axum::Router,
    std::sync::Arc<dyn pricestream_store::Store>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let state = AppState {
        store: store.clone(),
        metrics: None,
        lake_dir: None,
        pipeline: None,
        live: None,
        auth: Auth::new(auth.clone()),
    };
    let cfg = ApiConfig {
        auth,
        ..ApiConfig::default()
    };
    (router(state, &cfg), store, dir)
}

async fn call(
    app: &axum::Router,
    path: &str,
    key: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::get(path);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn keys_scopes_and_revocation() {
    let cfg = AuthConfig {
        required: true,
        ..AuthConfig::default()
    };
    let (app, store, _dir) = app(cfg).await;
    // health and metrics stay open
    assert_eq!(call(&app, "/health/live", None).await.0, StatusCode::OK);
    // no key: 401 with the error shape
    let (status, headers, body) = call(&app, "/v1/symbols", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
    assert_eq!(
        call(&app, "/v1/symbols", Some("ps_nope_nope")).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (key, rec) = new_key("reader", "read", "basic", 1).unwrap();
    store.create_api_key(&rec).await.unwrap();
    assert_eq!(
        call(&app, "/v1/symbols", Some(&key)).await.0,
        StatusCode::OK
    );
    // the stored record holds no secret
    let listed = store.list_api_keys().await.unwrap();
    assert!(listed
        .iter()
        .all(|k| !key.contains(&k.secret_hash) && k.secret_hash != key));

    // a key without the read scope: 403
    let (writer, rec) = new_key("writer", "alerts:write", "basic", 1).unwrap();
    store.create_api_key(&rec).await.unwrap();
    let (status, _, body) = call(&app, "/v1/symbols", Some(&writer)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("\"code\":\"forbidden\""), "{body}");

    // revoked: 401 once the short lookup cache has expired (a fresh key is never cached)
    let (fresh, rec) = new_key("short-lived", "read", "basic", 1).unwrap();
    store.create_api_key(&rec).await.unwrap();
    assert!(store.revoke_api_key(&rec.id, 2).await.unwrap());
    let (status, _, body) = call(&app, "/v1/symbols", Some(&fresh)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("revoked"), "{body}");
    assert!(
        !store.revoke_api_key(&rec.id, 3).await.unwrap(),
        "revoked twice"
    );
}

#[tokio::test]
async fn rate_limits_per_key_with_retry_after() {
    let mut tiers = BTreeMap::new();
    tiers.insert(
        "anonymous".to_string(),
        TierLimit {
            requests_per_sec: 0.5,
            burst: 2,
        },
    );
    tiers.insert(
        "basic".to_string(),
        TierLimit {
            requests_per_sec: 0.5,
            burst: 3,
        },
    );
    let (app, store, _dir) = app(AuthConfig {
        required: false,
        tiers,
        ..AuthConfig::default()
    })
    .await;
    // anonymous: burst of 2, then 429 with Retry-After
    assert_eq!(call(&app, "/v1/symbols", None).await.0, StatusCode::OK);
    assert_eq!(call(&app, "/v1/symbols", None).await.0, StatusCode::OK);
    let (status, headers, body) = call(&app, "/v1/symbols", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "2");
    assert!(body.contains("\"code\":\"rate_limited\""), "{body}");
    // a key has its own bucket, of its tier
    let (key, rec) = new_key("k", "read", "basic", 1).unwrap();
    store.create_api_key(&rec).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            call(&app, "/v1/symbols", Some(&key)).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        call(&app, "/v1/symbols", Some(&key)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // health is never rate limited
    for _ in 0..5 {
        assert_eq!(call(&app, "/health/live", None).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    use std::io::Read;
    let (app, store, _dir) = app(AuthConfig::default()).await;
    let bars: Vec<pricestream_schemas::Bar> = (0..500)
        .map(|m| pricestream_schemas::Bar {
            venue: pricestream_schemas::Venue::Binance,
            symbol: pricestream_schemas::Symbol::new("BTC-USDT").unwrap(),
            interval: pricestream_schemas::Interval::M1,
            bucket_start: m * 60_000_000_000,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 3.0,
            notional: 4.5,
            vwap: 1.5,
            trade_count: 7,
            revision: 0,
            ts_event: m * 60_000_000_000 + 1,
            ts_ingest: m * 60_000_000_000 + 2,
        })
        .collect();
    store.upsert_bars(&bars).await.unwrap();
    let path = "/v1/ohlcv?symbol=BTC-USDT&from=0&limit=500";
    let plain = call(&app, path, None).await.2;
    let req = Request::get(path)
        .header("accept-encoding", "gzip")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(
        body.len() * 5 < plain.len(),
        "gzip {} vs plain {}",
        body.len(),
        plain.len()
    );
    let mut json = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut json)
        .unwrap();
    assert_eq!(json, plain);
    let req = Request::get(path)
        .header("accept-encoding", "zstd")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "zstd");
}
