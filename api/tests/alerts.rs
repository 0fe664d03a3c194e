//! `/v1/alerts`: create, list, get, delete, duplicates (409), scopes (403), isolation
//! between keys (404), input validation and the SSRF guard (400), deliveries with their
//! attempts and the dead-letter retry.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use pricestream_api::alerts::AlertsApi;
use pricestream_api::auth::{new_key, Auth, AuthConfig};
use pricestream_api::{router_with, ApiConfig, AppState};
use pricestream_pipeline::alerts::AlertsConfig;
use pricestream_schemas::{AlertEvent, Clock, SystemClock, Venue};
use pricestream_store::alerts::{AttemptNext, DeliveryAttempt};
use pricestream_store::Store;
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    router: axum::Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
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
        auth: Auth::new(AuthConfig::default()),
    };
    let alerts = AlertsApi::from_config(&AlertsConfig {
        ssrf_allowlist: vec!["127.0.0.1/32".into()],
        max_rules_per_owner: 5,
        ..AlertsConfig::default()
    })
    .unwrap();
    App {
        router: router_with(state, &ApiConfig::default(), alerts),
        store,
        _dir: dir,
    }
}

impl App {
    async fn key(&self, scopes: &str) -> String {
        let (key, rec) = new_key("t", scopes, "pro", 1).unwrap();
        self.store.create_api_key(&rec).await.unwrap();
        key
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }
}

fn above(level: f64) -> Value {
    json!({
        "symbol": "BTC-USDT",
        "venue": "binance",
        "condition": { "kind": "above", "level": level },
        "url": "http://127.0.0.1:9/hook",
    })
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn create_list_get_delete_and_duplicates() {
    let a = app().await;
    let k = a.key("read alerts:write").await;
    let (status, created) = a
        .call(Method::POST, "/v1/alerts", Some(&k), Some(above(65_000.0)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 6 + 64,
        "{secret}"
    );
    assert_eq!(
        created["condition"],
        json!({ "kind": "above", "level": 65000.0 })
    );
    assert_eq!(created["description"], "price above 65000");
    assert_eq!(created["active"], true);

    // the secret is shown once: never by list or get
    let (status, list) = a.call(Method::GET, "/v1/alerts", Some(&k), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(list["alerts"][0]["id"], id.as_str());
    assert!(list["alerts"][0].get("secret").is_none());
    let (status, one) = a
        .call(Method::GET, &format!("/v1/alerts/{id}"), Some(&k), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(one.get("secret").is_none());
    assert_eq!(one["symbol"], "BTC-USDT");

    // identical active rule: 409; a different level is another rule
    let (status, body) = a
        .call(Method::POST, "/v1/alerts", Some(&k), Some(above(65_000.0)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "conflict");
    let (status, _) = a
        .call(Method::POST, "/v1/alerts", Some(&k), Some(above(65_001.0)))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // delete: 204, then 404, and the identical rule may be created again
    let (status, _) = a
        .call(Method::DELETE, &format!("/v1/alerts/{id}"), Some(&k), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = a
        .call(Method::GET, &format!("/v1/alerts/{id}"), Some(&k), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "not_found");
    let (status, _) = a
        .call(Method::DELETE, &format!("/v1/alerts/{id}"), Some(&k), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = a
        .call(Method::POST, "/v1/alerts", Some(&k), Some(above(65_000.0)))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // every kind of rule is accepted
    for condition in [
        json!({ "kind": "below", "level": 60000 }),
        json!({ "kind": "crosses", "level": 62000 }),
        json!({ "kind": "percent_move", "percent": 3.5, "window_secs": 300, "direction": "either" }),
        json!({ "kind": "signal", "interval": "1h", "signal": "golden_cross" }),
    ] {
        let body = json!({
            "symbol": "BTC-USDT",
            "condition": condition,
            "url": "http://127.0.0.1:9/hook",
            "recurring": true,
            "cooldown_secs": 600,
            "hysteresis": 50.0,
        });
        let (status, v) = a
            .call(Method::POST, "/v1/alerts", Some(&k), Some(body))
            .await;
        if status != StatusCode::CREATED {
            // the fifth active rule reaches the per-key limit of this test's configuration
            assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("active rules"),
                "{v}"
            );
        }
    }
    let (_, list) = a
        .call(Method::GET, "/v1/alerts?limit=100", Some(&k), None)
        .await;
    assert_eq!(list["alerts"].as_array().unwrap().len(), 5);
    let (status, _) = a
        .call(Method::GET, "/v1/alerts?limit=0", Some(&k), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = a
        .call(Method::GET, "/v1/alerts?page=2", Some(&k), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn scopes_and_isolation_between_keys() {
    let a = app().await;
    let owner = a.key("read alerts:write").await;
    let other = a.key("read alerts:write").await;
    let reader = a.key("read").await;
    let (_, created) = a
        .call(Method::POST, "/v1/alerts", Some(&owner), Some(above(1.0)))
        .await;
    let id = created["id"].as_str().unwrap();

    // without alerts:write: 403 to create and to delete; anonymous callers cannot either
    let (status, body) = a
        .call(Method::POST, "/v1/alerts", Some(&reader), Some(above(2.0)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "forbidden");
    let (status, _) = a
        .call(
            Method::DELETE,
            &format!("/v1/alerts/{id}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = a
        .call(Method::POST, "/v1/alerts", None, Some(above(2.0)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // another key never sees the rule: 404 everywhere, an empty list
    for (m, path) in [
        (Method::GET, format!("/v1/alerts/{id}")),
        (Method::DELETE, format!("/v1/alerts/{id}")),
        (Method::GET, format!("/v1/alerts/{id}/deliveries")),
        (Method::POST, format!("/v1/alerts/{id}/deliveries/x/retry")),
    ] {
        let (status, body) = a.call(m.clone(), &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{m} {path}: {body}");
    }
    let (_, list) = a.call(Method::GET, "/v1/alerts", Some(&other), None).await;
    assert_eq!(list["alerts"], json!([]));
    let (_, list) = a.call(Method::GET, "/v1/alerts", Some(&reader), None).await;
    assert_eq!(list["alerts"], json!([]));
    // the same rule for another key is not a duplicate
    let (status, _) = a
        .call(Method::POST, "/v1/alerts", Some(&other), Some(above(1.0)))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // and the owner still has it
    let (status, _) = a
        .call(Method::GET, &format!("/v1/alerts/{id}"), Some(&owner), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_and_forbidden_urls_are_clear_400s() {
    let a = app().await;
    let k = a.key("alerts:write read").await;
    let cases = [
        (
            json!({ "symbol": "btc", "condition": { "kind": "above", "level": 1 }, "url": "http://127.0.0.1/h" }),
            "symbol",
        ),
        (
            json!({ "symbol": "BTC-USDT", "venue": "nowhere", "condition": { "kind": "above", "level": 1 }, "url": "http://127.0.0.1/h" }),
            "venue",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": -1 }, "url": "http://127.0.0.1/h" }),
            "level",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "sideways", "level": 1 }, "url": "http://127.0.0.1/h" }),
            "sideways",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above" }, "url": "http://127.0.0.1/h" }),
            "level",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "percent_move", "percent": 5, "window_secs": 0, "direction": "up" }, "url": "http://127.0.0.1/h" }),
            "window_secs",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "signal", "interval": "1h", "signal": "moon" }, "url": "http://127.0.0.1/h" }),
            "moon",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "http://127.0.0.1/h", "cooldown_secs": 5 }),
            "recurring",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "http://127.0.0.1/h", "hysteresis": -1 }),
            "hysteresis",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "http://127.0.0.1/h", "colour": "red" }),
            "colour",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 } }),
            "url",
        ),
        // the SSRF guard: private, metadata, loopback names and other schemes
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "http://10.0.0.1/h" }),
            "private",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "http://169.254.169.254/latest/meta-data" }),
            "metadata",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "http://[::1]:8080/h" }),
            "loopback",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "http://localhost:8080/h" }),
            "not allowed",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "file:///etc/passwd" }),
            "http or https",
        ),
        (
            json!({ "symbol": "BTC-USDT", "condition": { "kind": "above", "level": 1 }, "url": "http://user:pw@127.0.0.1/h" }),
            "credentials",
        ),
    ];
    for (body, needle) in cases {
        let (status, v) = a
            .call(Method::POST, "/v1/alerts", Some(&k), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {v}");
        assert_eq!(code(&v), "bad_request");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg:?} lacks {needle:?}");
    }
    // not JSON at all
    let resp = a
        .router
        .clone()
        .oneshot(
            Request::post("/v1/alerts")
                .header("x-api-key", &k)
                .body(Body::from("{nope"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (_, list) = a.call(Method::GET, "/v1/alerts", Some(&k), None).await;
    assert_eq!(list["alerts"], json!([]), "nothing was created");
}

#[tokio::test]
async fn deliveries_show_every_attempt_and_dead_letters_can_be_retried() {
    let a = app().await;
    let k = a.key("read alerts:write").await;
    let reader = a.key("read").await;
    let (_, created) = a
        .call(Method::POST, "/v1/alerts", Some(&k), Some(above(100.0)))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let now = SystemClock.now_ns();
    let event = AlertEvent {
        alert_id: id.clone(),
        owner: "ignored".into(),
        venue: Venue::Binance,
        symbol: pricestream_schemas::Symbol::new("BTC-USDT").unwrap(),
        condition: "price above 100".into(),
        price: 100.5,
        value: None,
        ts_event: now,
        ts_ingest: now,
    };
    a.store.record_alert_triggers(&[event], now).await.unwrap();
    // two failed attempts, the second one final (as the dispatcher records them)
    for (n, next) in [(1, AttemptNext::Retry { at: now }), (2, AttemptNext::Dead)] {
        let c = a
            .store
            .claim_deliveries(now + 1, 1, 1_000_000_000, "t")
            .await
            .unwrap()
            .remove(0);
        let attempt = DeliveryAttempt {
            delivery_id: c.delivery.id.clone(),
            attempt: n,
            started_at: now + i64::from(n),
            latency_us: 2_500,
            status: Some(503),
            outcome: "http_error".into(),
            error: Some("receiver answered HTTP 503".into()),
        };
        assert!(a
            .store
            .finish_delivery_attempt(&c, &attempt, next, now + 2)
            .await
            .unwrap());
    }
    let path = format!("/v1/alerts/{id}/deliveries");
    let (status, v) = a.call(Method::GET, &path, Some(&k), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let d = &v["deliveries"][0];
    assert_eq!(d["state"], "dead");
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["idempotency_key"], format!("{id}:{now}"));
    assert_eq!(d["alert"]["price"], 100.5);
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[1]["attempt"], 2);
    assert_eq!(log[1]["status"], 503);
    assert_eq!(log[1]["latency_ms"], 2.5);
    assert_eq!(log[1]["error"], "receiver answered HTTP 503");
    let did = d["id"].as_str().unwrap();

    // another key (even one that may read) sees nothing of them
    let (status, _) = a.call(Method::GET, &path, Some(&reader), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let retry = format!("/v1/alerts/{id}/deliveries/{did}/retry");
    let (status, _) = a.call(Method::POST, &retry, Some(&reader), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = a.call(Method::POST, &retry, Some(&k), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "pending");
    // only a dead-lettered delivery can be retried
    let (status, v) = a.call(Method::POST, &retry, Some(&k), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, _) = a
        .call(
            Method::POST,
            &format!("/v1/alerts/{id}/deliveries/nope/retry"),
            Some(&k),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, v) = a.call(Method::GET, &path, Some(&k), None).await;
    assert_eq!(v["deliveries"][0]["state"], "pending");
}
