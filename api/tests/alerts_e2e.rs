//! End to end: rules created through the API → quotes through the in-process bus and the
//! dataflow → triggers stored by the sink → signed webhooks received by a real local HTTP
//! server. The second test measures quote → webhook latency and prints p50/p99.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::routing::post;
use pricestream_api::alerts::AlertsApi;
use pricestream_api::auth::{new_key, Auth, AuthConfig};
use pricestream_api::{router_with, ApiConfig, AppState};
use pricestream_bus::{InProcessBus, QuotePublisher, QuoteSource};
use pricestream_pipeline::alerts::dispatcher::{headers, verify};
use pricestream_pipeline::alerts::{refresh_rules, AlertsConfig, Dispatcher, SharedRules};
use pricestream_pipeline::{sink, PipelineConfig, SinkBatch, SourceFactory};
use pricestream_schemas::{Clock, Quote, QuoteKind, Symbol, SystemClock, Venue};
use pricestream_store::Store;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

#[derive(Debug, Clone)]
struct Received {
    at: i64,
    timestamp: String,
    signature: String,
    key: String,
    body: Bytes,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

async fn hook(State(inbox): State<Inbox>, h: HeaderMap, body: Bytes) -> StatusCode {
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    inbox.lock().unwrap().push(Received {
        at: SystemClock.now_ns(),
        timestamp: get(headers::TIMESTAMP),
        signature: get(headers::SIGNATURE),
        key: get(headers::IDEMPOTENCY_KEY),
        body,
    });
    StatusCode::NO_CONTENT
}

struct World {
    router: axum::Router,
    store: Arc<dyn Store>,
    key: String,
    hook_url: String,
    inbox: Inbox,
    shared: SharedRules,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let alerts_cfg = AlertsConfig {
        ssrf_allowlist: vec!["127.0.0.1/32".into()],
        rules_refresh_ms: 100,
        poll_interval_ms: 50,
        retry_initial_delay_ms: 50,
        request_timeout_ms: 2_000,
        ..AlertsConfig::default()
    };
    let state = AppState {
        store: store.clone(),
        metrics: None,
        lake_dir: None,
        pipeline: None,
        live: None,
        auth: Auth::new(AuthConfig::default()),
    };
    let router = router_with(
        state,
        &ApiConfig::default(),
        AlertsApi::from_config(&alerts_cfg).unwrap(),
    );
    let (key, rec) = new_key("e2e", "read alerts:write", "pro", 1).unwrap();
    store.create_api_key(&rec).await.unwrap();

    let inbox: Inbox = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&inbox));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let shared = SharedRules::default();
    let stop = CancellationToken::new();
    tokio::spawn(refresh_rules(
        store.clone(),
        shared.clone(),
        Duration::from_millis(alerts_cfg.rules_refresh_ms),
        stop.clone(),
    ));
    let dispatcher = Dispatcher::new(store.clone(), alerts_cfg).unwrap();
    tokio::spawn(dispatcher.run(stop.clone()));
    World {
        router,
        store,
        key,
        hook_url: format!("http://{addr}/hook"),
        inbox,
        shared,
        stop,
        _dir: dir,
    }
}

impl World {
    async fn create(&self, body: Value) -> Value {
        let resp = self
            .router
            .clone()
            .oneshot(
                Request::builder()
                    .method(Method::POST)
                    .uri("/v1/alerts")
                    .header("x-api-key", &self.key)
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
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .router
            .clone()
            .oneshot(
                Request::get(path)
                    .header("x-api-key", &self.key)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Waits until the pipeline's index holds `n` rules.
    async fn rules_loaded(&self, n: usize) {
        for _ in 0..500 {
            if self.shared.current().1.len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the rule index never reached {n} rules");
    }

    async fn received(&self, n: usize, within: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.inbox.lock().unwrap().clone();
            if got.len() >= n || started.elapsed() > within {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The pipeline on the in-process bus, evaluating `shared`; returns the publisher, the
/// bus (to close) and the task that ends when the sink has flushed.
fn pipeline(
    store: Arc<dyn Store>,
    shared: SharedRules,
) -> (
    pricestream_bus::InProcessPublisher,
    Arc<InProcessBus>,
    tokio::task::JoinHandle<()>,
) {
    let bus = InProcessBus::new(2, 100_000);
    let publisher = bus.publisher().unwrap();
    let cfg = PipelineConfig {
        workers: 2,
        max_out_of_orderness_ms: 50,
        idle_timeout_ms: 200,
        alert_rules: Some(shared),
        keep_quotes: false,
        ..PipelineConfig::default()
    };
    let factory: SourceFactory = {
        let bus = Arc::clone(&bus);
        Arc::new(move |i, n| {
            bus.source(i, n)
                .map(|s| Box::new(s) as Box<dyn QuoteSource>)
        })
    };
    let (tx, rx) = mpsc::channel::<SinkBatch>(64);
    let opts = sink::SinkOptions {
        workers: 2,
        allowed_lateness_ns: 60_000_000_000,
        store_quotes: false,
    };
    let task = tokio::spawn(async move {
        let sink = tokio::spawn(sink::run_sink(rx, store, None, opts, None));
        let flow = tokio::task::spawn_blocking(move || {
            pricestream_pipeline::run(
                &cfg,
                factory,
                tx,
                Arc::new(AtomicBool::new(false)),
                Default::default(),
            )
        });
        flow.await.unwrap().unwrap();
        sink.await.unwrap().unwrap();
    });
    (publisher, bus, task)
}

fn quote(symbol: &str, price: f64) -> Quote {
    let now = SystemClock.now_ns();
    Quote {
        venue: Venue::Synthetic,
        symbol: Symbol::new(symbol).unwrap(),
        kind: QuoteKind::Trade,
        price,
        size: 1.0,
        side: None,
        trade_id: None,
        bid: None,
        ask: None,
        ts_event: now,
        ts_ingest: now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_from_the_api_fire_signed_webhooks() {
    let w = world().await;
    let once = w
        .create(json!({
            "symbol": "BTC-USDT",
            "condition": { "kind": "above", "level": 100.0 },
            "url": w.hook_url,
        }))
        .await;
    let cross = w
        .create(json!({
            "symbol": "BTC-USDT",
            "venue": "synthetic",
            "condition": { "kind": "crosses", "level": 100.0 },
            "url": w.hook_url,
            "recurring": true,
            "hysteresis": 1.0,
        }))
        .await;
    // a rule on another symbol never fires
    w.create(json!({
        "symbol": "ETH-USDT",
        "condition": { "kind": "below", "level": 1.0 },
        "url": w.hook_url,
    }))
    .await;
    w.rules_loaded(3).await;
    let (publisher, bus, flow) = pipeline(w.store.clone(), w.shared.clone());
    // 99 → 100.5 (once fires; cross fires up) → 99.6 (cross fires down) → 100.4 (inside the
    // margin: nothing) → 98.9 (re-arms up) → 100.2 (cross fires up again)
    for p in [99.0, 99.5, 100.5, 99.6, 100.4, 98.9, 100.2] {
        publisher
            .publish(vec![quote("BTC-USDT", p), quote("ETH-USDT", 2_000.0)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let got = w.received(4, Duration::from_secs(20)).await;
    // nothing more arrives
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = w.inbox.lock().unwrap().clone();
    drop(publisher);
    bus.close();
    flow.await.unwrap();
    w.stop.cancel();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got_after.len(), 4);

    let secrets = [
        (
            once["id"].as_str().unwrap(),
            once["secret"].as_str().unwrap(),
        ),
        (
            cross["id"].as_str().unwrap(),
            cross["secret"].as_str().unwrap(),
        ),
    ];
    let mut by_rule: std::collections::BTreeMap<&str, Vec<(f64, String)>> = Default::default();
    let mut keys = std::collections::BTreeSet::new();
    for r in &got {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let rule = body["alert"]["alert_id"].as_str().unwrap();
        let (_, secret) = secrets.iter().find(|(id, _)| *id == rule).unwrap();
        assert!(
            verify(secret, &r.timestamp, &r.body, &r.signature),
            "bad signature"
        );
        assert_eq!(body["idempotency_key"], r.key.as_str());
        assert!(keys.insert(r.key.clone()), "delivered twice: {}", r.key);
        let entry = by_rule
            .entry(secrets.iter().find(|(id, _)| *id == rule).unwrap().0)
            .or_default();
        entry.push((
            body["alert"]["price"].as_f64().unwrap(),
            body["alert"]["condition"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        by_rule[once["id"].as_str().unwrap()],
        vec![(100.5, "price above 100".to_string())]
    );
    let mut crossings = by_rule[cross["id"].as_str().unwrap()].clone();
    crossings.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        crossings,
        vec![
            (99.6, "price crossed 100 downward".to_string()),
            (100.2, "price crossed 100 upward".to_string()),
            (100.5, "price crossed 100 upward".to_string()),
        ]
    );
    // the API shows the one-shot rule fired and inactive, with its delivered webhook
    let id = once["id"].as_str().unwrap();
    let rule = w.get(&format!("/v1/alerts/{id}")).await;
    assert_eq!(rule["active"], false);
    assert!(rule["fired_at"].is_string());
    let d = w.get(&format!("/v1/alerts/{id}/deliveries")).await;
    assert_eq!(d["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(d["deliveries"][0]["state"], "delivered");
    assert_eq!(d["deliveries"][0]["attempt_log"][0]["status"], 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quote_to_webhook_latency() {
    let w = world().await;
    const RULES: usize = 200;
    for i in 0..RULES {
        w.create(json!({
            "symbol": "SOL-USDT",
            "condition": { "kind": "above", "level": 100.0 + (i as f64 + 0.5) * 0.01 },
            "url": w.hook_url,
        }))
        .await;
    }
    w.rules_loaded(RULES).await;
    let (publisher, bus, flow) = pipeline(w.store.clone(), w.shared.clone());
    // a ramp that crosses one level per quote, a quote every 10 ms
    for i in 0..=RULES {
        publisher
            .publish(vec![quote("SOL-USDT", 100.0 + i as f64 * 0.01 + 0.001)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = w.received(RULES, Duration::from_secs(60)).await;
    drop(publisher);
    bus.close();
    flow.await.unwrap();
    w.stop.cancel();
    assert_eq!(got.len(), RULES, "every rule fires exactly once");
    let mut lat: Vec<f64> = got
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (r.at - body["alert"]["ts_ingest"].as_i64().unwrap()) as f64 / 1e6
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "quote → webhook received latency over {} alerts (SQLite store, 2 workers, debug or release as built): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
    assert!(lat.iter().all(|l| *l >= 0.0));
}
