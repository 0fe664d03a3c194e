//! The OpenAPI document: it parses, is 3.1, lists every route the router has (and nothing
//! the router lacks), and real responses of a seeded store match its schemas. Also the
//! range and page limits, /docs, and the metrics router.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pricestream_api::auth::Auth;
use pricestream_api::{router, ApiConfig, AppState};
use pricestream_schemas::{
    Bar, IngestionRun, Interval, Quote, QuoteKind, RunStatus, Signal, SignalKind, Symbol, Venue,
};
use serde_json::Value;
use tower::ServiceExt;

const MIN: i64 = 60_000_000_000;

async fn make_app(cfg: ApiConfig) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let sym = Symbol::new("BTC-USDT").unwrap();
    let bars: Vec<Bar> = (0..30)
        .map(|m| Bar {
            venue: Venue::Binance,
            symbol: sym.clone(),
            interval: Interval::M1,
            bucket_start: m * MIN,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 3.0,
            notional: 4.5,
            vwap: 1.5,
            trade_count: 7,
            revision: 0,
            ts_event: m * MIN + 1,
            ts_ingest: m * MIN + 2,
        })
        .collect();
    store.upsert_bars(&bars).await.unwrap();
    store
        .insert_quotes(&[Quote {
            venue: Venue::Binance,
            symbol: sym.clone(),
            kind: QuoteKind::Trade,
            price: 1.5,
            size: 2.0,
            side: None,
            trade_id: Some(9),
            bid: None,
            ask: None,
            ts_event: 5,
            ts_ingest: 6,
        }])
        .await
        .unwrap();
    store
        .upsert_signals(&[Signal {
            venue: Venue::Binance,
            symbol: sym.clone(),
            interval: Interval::M1,
            kind: SignalKind::RsiOverbought,
            bucket_start: 10 * MIN,
            value: 81.5,
            ts_event: 10 * MIN + 1,
            ts_ingest: 10 * MIN + 2,
        }])
        .await
        .unwrap();
    for (id, status, finished) in [
        ("r1", RunStatus::Completed, Some(9)),
        ("r2", RunStatus::Running, None),
    ] {
        store
            .upsert_run(&IngestionRun {
                id: id.into(),
                connector: "synthetic".into(),
                status,
                started_at: 1,
                finished_at: finished,
                quotes: 3,
                error: None,
            })
            .await
            .unwrap();
    }
    let state = AppState {
        store,
        metrics: None,
        lake_dir: None,
        pipeline: None,
        live: None,
        auth: Auth::new(cfg.auth.clone()),
    };
    (router(state, &cfg), dir)
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

async fn document(app: &axum::Router) -> Value {
    let (status, headers, body) = get(app, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_slice(&body).unwrap()
}

/// `(METHOD, path)` of every `.route("…", get(…).post(…))` in api/src.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".route(") {
            // the path may be on the next line (rustfmt breaks long calls)
            rest = rest[i + 7..].trim_start();
            let Some(r) = rest.strip_prefix('"') else {
                continue;
            };
            rest = r;
            let end = rest.find('"').unwrap();
            let path = rest[..end].to_string();
            // the method router: up to the call's closing parenthesis
            let mut depth = 1;
            let mut stop = rest.len();
            for (j, c) in rest[end..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            stop = end + j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let methods = &rest[end..stop];
            for m in ["get", "post", "put", "patch", "delete"] {
                let word = |s: &str| {
                    s.match_indices(&format!("{m}(")).any(|(k, _)| {
                        k == 0
                            || !s.as_bytes()[k - 1].is_ascii_alphanumeric()
                                && s.as_bytes()[k - 1] != b'_'
                    })
                };
                if word(methods) {
                    out.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}

fn routes_in_document(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let (app, _dir) = make_app(ApiConfig::default()).await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "PriceStream API");
    let source = routes_in_source();
    assert!(
        source.len() >= 14,
        "route scan found too little: {source:?}"
    );
    let documented = routes_in_document(&doc);
    let missing: Vec<_> = source.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&source).collect();
    assert!(
        extra.is_empty(),
        "documented routes the router lacks: {extra:?}"
    );
    // and the router answers each documented GET (not the fallback)
    for (method, path) in &documented {
        if method != "GET" {
            continue;
        }
        let concrete = path
            .replace("{id}", "r1")
            .replace("{file}", "swagger-ui.css");
        let (_, _, body) = get(&app, &concrete).await;
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("no such route"), "{path}: {text}");
    }
    // every operation documents its error shape, and /v1 declares its security
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            if path.starts_with("/v1/") {
                assert!(op["security"].is_array(), "{path}");
                for code in ["400", "401", "403", "429"] {
                    let r = &op["responses"][code];
                    assert!(r.is_object(), "{path} lacks {code}");
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{path} {code}"
                    );
                }
            }
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
}

/// Validates `value` against `#/components/schemas/<name>` of the document.
fn assert_matches(doc: &Value, name: &str, value: &Value) {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("http://pricestream.test/openapi.json", doc.clone())
        .unwrap();
    let idx = compiler
        .compile(
            &format!("http://pricestream.test/openapi.json#/components/schemas/{name}"),
            &mut schemas,
        )
        .unwrap();
    if let Err(e) = schemas.validate(value, idx) {
        panic!("{name} does not match {value}: {e:#}");
    }
}

#[tokio::test]
async fn real_responses_match_the_document() {
    let (app, _dir) = make_app(ApiConfig::default()).await;
    let doc = document(&app).await;
    let json = |b: Vec<u8>| -> Value { serde_json::from_slice(&b).unwrap() };
    for (path, schema) in [
        ("/v1/ohlcv?symbol=BTC-USDT&from=0&limit=10", "OhlcvPage"),
        ("/v1/ohlcv?symbol=BTC-USDT", "OhlcvPage"),
        ("/v1/symbols", "Symbols"),
        ("/v1/quotes/latest", "LatestQuotes"),
        ("/v1/signals?symbol=BTC-USDT", "Signals"),
        ("/v1/runs", "IngestionRuns"),
        ("/v1/runs/r2", "IngestionRunOne"),
        ("/health/live", "Live"),
        ("/health/ready", "Ready"),
    ] {
        let (status, _, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let v = json(body);
        assert_matches(&doc, schema, &v);
        if schema == "OhlcvPage" {
            assert!(v["count"].as_u64().unwrap() > 0, "{path}: {v}");
        }
    }
    for path in [
        "/v1/ohlcv?symbol=nope",
        "/v1/runs/none",
        "/v1/stream",
        "/v1/ohlcv?symbol=BTC-USDT&limit=99999999999",
        "/v1/ohlcv?symbol=BTC-USDT&from=%FF%FE",
        "/nowhere",
    ] {
        let (status, _, body) = get(&app, path).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert_matches(&doc, "ErrorBody", &json(body));
    }
}

#[tokio::test]
async fn range_and_page_limits_have_stable_codes() {
    let cfg = ApiConfig {
        max_page_rows: 100,
        max_range_bars: 1_440,
        ..ApiConfig::default()
    };
    let (app, _dir) = make_app(cfg).await;
    let code = |b: &[u8]| -> String {
        let v: Value = serde_json::from_slice(b).unwrap();
        v["error"]["code"].as_str().unwrap().to_string()
    };
    // a day of 1m bars is allowed, a day and a minute is not
    let day = "from=2025-11-21T00:00:00Z&to=2025-11-22T00:00:00Z";
    let (s, _, _) = get(&app, &format!("/v1/ohlcv?symbol=BTC-USDT&{day}")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = get(
        &app,
        "/v1/ohlcv?symbol=BTC-USDT&from=2025-11-21T00:00:00Z&to=2025-11-22T00:01:00Z",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(code(&b), "range_too_large");
    // the span is counted in bars of the interval: 5 days of 5m bars fit
    let (s, _, _) = get(
        &app,
        "/v1/ohlcv?symbol=BTC-USDT&interval=5m&from=2025-11-17T00:00:00Z&to=2025-11-22T00:00:00Z",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // signals too (1m when no interval is named)
    let (s, _, b) = get(&app, "/v1/signals?from=0&to=2025-11-22T00:00:00Z").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(code(&b), "range_too_large");
    // an open-ended range pages instead
    let (s, _, _) = get(&app, "/v1/ohlcv?symbol=BTC-USDT&from=0").await;
    assert_eq!(s, StatusCode::OK);
    // page size
    let (s, _, _) = get(&app, "/v1/ohlcv?symbol=BTC-USDT&limit=100").await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/v1/ohlcv?symbol=BTC-USDT&limit=101",
        "/v1/signals?limit=5000",
        "/v1/runs?limit=18446744073709551616",
    ] {
        let (s, _, b) = get(&app, path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        let c = code(&b);
        assert!(c == "page_too_large" || c == "bad_request", "{path}: {c}");
        if !path.contains("18446744073709551616") {
            assert_eq!(c, "page_too_large", "{path}");
        }
    }
    for path in ["/v1/ohlcv?symbol=BTC-USDT&limit=0", "/v1/runs?limit=x"] {
        let (s, _, b) = get(&app, path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(code(&b), "bad_request", "{path}");
    }
}

#[tokio::test]
async fn docs_page_and_assets() {
    let assets = tempfile::tempdir().unwrap();
    let (app, _dir) = make_app(ApiConfig::default()).await;
    // without installed assets: the page points at the CDN copy of swagger-ui-dist
    let (s, h, b) = get(&app, "/docs").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = String::from_utf8(b).unwrap();
    assert!(page.contains("SwaggerUIBundle") && page.contains("/openapi.json"));
    assert!(page.contains("swagger-ui-dist@"), "{page}");
    assert_eq!(
        get(&app, "/docs/assets/swagger-ui.css").await.0,
        StatusCode::NOT_FOUND
    );

    // with them: served locally, and only the known files
    std::fs::write(assets.path().join("swagger-ui-bundle.js"), "/* bundle */").unwrap();
    std::fs::write(assets.path().join("swagger-ui.css"), "body{}").unwrap();
    std::fs::write(assets.path().join("secret.txt"), "no").unwrap();
    let cfg = ApiConfig {
        docs_assets_dir: Some(assets.path().to_path_buf()),
        ..ApiConfig::default()
    };
    let (app, _dir2) = make_app(cfg).await;
    let page = String::from_utf8(get(&app, "/docs").await.2).unwrap();
    assert!(page.contains("/docs/assets/swagger-ui-bundle.js"), "{page}");
    let (s, h, b) = get(&app, "/docs/assets/swagger-ui-bundle.js").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(b, b"/* bundle */");
    assert_eq!(
        get(&app, "/docs/assets/secret.txt").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/docs/assets/..%2Fsecret.txt").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn metrics_move_to_their_own_router() {
    let cfg = ApiConfig {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..ApiConfig::default()
    };
    let (app, _dir) = make_app(cfg).await;
    let (s, _, b) = get(&app, "/metrics").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&b).contains("no such route"));
    // requests still carry ids
    let (_, h, _) = get(&app, "/health/live").await;
    assert!(h.contains_key("x-request-id"));

    // the metrics router serves the exposition (on a real listener, as `run` does)
    let recorder = pricestream_api::metrics::build_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    let state = AppState {
        store,
        metrics: Some(recorder.handle()),
        lake_dir: None,
        pipeline: None,
        live: None,
        auth: Auth::new(Default::default()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, pricestream_api::metrics_router(state))
            .await
            .unwrap();
    });
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    assert!(text.contains("x-request-id"), "{text}");
    server.abort();
}
