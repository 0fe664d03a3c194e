//! Daily bars of a time zone's local day or an exchange session, from `GET /v1/ohlcv`
//! with `tz`, `session` and `days`: each equals a direct merge of the stored 1m bars
//! inside the session's UTC hours (written out here by hand, across a daylight-saving
//! change), whether the coarser rollups are stored or not.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pricestream_api::auth::Auth;
use pricestream_api::{router, ApiConfig, AppState};
use pricestream_schemas::{Bar, Interval, Symbol, Venue};
use serde_json::Value;
use tower::ServiceExt;

const NS: i64 = 1_000_000_000;
const MIN: i64 = 60 * NS;
const HOUR: i64 = 60 * MIN;
/// 2025-10-31T00:00:00Z, a Friday; New York left daylight saving on Sunday 2025-11-02.
const FRI: i64 = 1_761_868_800 * NS;
const DAY: i64 = 24 * HOUR;

fn m1(sym: &Symbol, i: i64) -> Bar {
    let start = FRI + i * MIN;
    let p = 100.0 + ((i * 7919) % 101) as f64 / 10.0;
    Bar {
        venue: Venue::Synthetic,
        symbol: sym.clone(),
        interval: Interval::M1,
        bucket_start: start,
        open: p,
        high: p + 0.5,
        low: p - 0.25,
        close: p + 0.1,
        volume: 1.0 + (i % 5) as f64,
        notional: p * (1.0 + (i % 5) as f64),
        vwap: p,
        trade_count: 1 + (i % 3) as u64,
        revision: u32::from(i % 97 == 0),
        ts_event: start + 30 * NS,
        ts_ingest: start + 31 * NS,
    }
}

async fn app() -> (axum::Router, Vec<Bar>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    // four days of 1m bars for two symbols; rollups stored for the first only
    let rolled = Symbol::new("SPY-USD").unwrap();
    let bare = Symbol::new("QQQ-USD").unwrap();
    let bars: Vec<Bar> = (0..4 * 1440).map(|i| m1(&rolled, i)).collect();
    store.upsert_bars(&bars).await.unwrap();
    for iv in [Interval::M5, Interval::M15, Interval::H1] {
        store
            .upsert_bars(&pricestream_analytics::rollup(&bars, iv))
            .await
            .unwrap();
    }
    let other: Vec<Bar> = (0..4 * 1440).map(|i| m1(&bare, i)).collect();
    store.upsert_bars(&other).await.unwrap();
    let cfg = ApiConfig::default();
    let state = AppState {
        store,
        metrics: None,
        lake_dir: None,
        pipeline: None,
        live: None,
        auth: Auth::new(cfg.auth.clone()),
    };
    (router(state, &cfg), bars, dir)
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The bar a session should give: a direct fold of the 1m bars in `[open, close)`.
fn expected(bars: &[Bar], open: i64, close: i64) -> (f64, f64, f64, f64, f64, u64, u32) {
    let inside: Vec<&Bar> = bars
        .iter()
        .filter(|b| b.bucket_start >= open && b.bucket_start < close)
        .collect();
    (
        inside[0].open,
        inside.iter().map(|b| b.high).fold(f64::MIN, f64::max),
        inside.iter().map(|b| b.low).fold(f64::MAX, f64::min),
        inside.last().unwrap().close,
        inside.iter().map(|b| b.volume).sum(),
        inside.iter().map(|b| b.trade_count).sum(),
        inside.iter().map(|b| b.revision).sum(),
    )
}

fn got(bar: &Value) -> (f64, f64, f64, f64, f64, u64, u32) {
    (
        bar["open"].as_f64().unwrap(),
        bar["high"].as_f64().unwrap(),
        bar["low"].as_f64().unwrap(),
        bar["close"].as_f64().unwrap(),
        bar["volume"].as_f64().unwrap(),
        bar["trade_count"].as_u64().unwrap(),
        bar["revision"].as_u64().unwrap() as u32,
    )
}

fn assert_bar(bar: &Value, bars: &[Bar], open: i64, close: i64) {
    assert_eq!(bar["bucket_start"].as_i64().unwrap(), open, "{bar}");
    assert_eq!(bar["interval"], "1d");
    let (g, w) = (got(bar), expected(bars, open, close));
    assert_eq!(
        (g.0, g.1, g.2, g.3, g.5, g.6),
        (w.0, w.1, w.2, w.3, w.5, w.6)
    );
    assert!((g.4 - w.4).abs() <= 1e-9 * w.4, "{} vs {}", g.4, w.4);
}

#[tokio::test]
async fn new_york_sessions_across_the_daylight_saving_change() {
    let (app, bars, _dir) = app().await;
    let range = "from=2025-10-31T00:00:00Z&to=2025-11-04T00:00:00Z";
    for sym in ["SPY-USD", "QQQ-USD"] {
        let (status, page) = get(
            &app,
            &format!("/v1/ohlcv?symbol={sym}&interval=1d&tz=America/New_York&session=09:30-16:00&days=mon-fri&{range}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let got = page["bars"].as_array().unwrap();
        assert_eq!(got.len(), 2, "Friday and Monday, no weekend: {page}");
        let bars: Vec<Bar> = bars
            .iter()
            .map(|b| Bar {
                symbol: Symbol::new(sym).unwrap(),
                ..b.clone()
            })
            .collect();
        // EDT (UTC-4) on Friday: 13:30–20:00Z; EST (UTC-5) on Monday: 14:30–21:00Z
        assert_bar(&got[0], &bars, FRI + 13 * HOUR + 30 * MIN, FRI + 20 * HOUR);
        let mon = FRI + 3 * DAY;
        assert_bar(&got[1], &bars, mon + 14 * HOUR + 30 * MIN, mon + 21 * HOUR);
        assert_eq!(got[0]["time"], "2025-10-31T13:30:00Z");
    }
}

#[tokio::test]
async fn local_days_of_a_time_zone() {
    let (app, bars, _dir) = app().await;
    // New York's local days: Saturday is 24 h from 04:00Z (EDT), Sunday 25 h (back to EST)
    let (status, page) = get(
        &app,
        "/v1/ohlcv?symbol=SPY-USD&interval=1d&tz=America/New_York&from=2025-10-31T12:00:00Z&to=2025-11-02T12:00:00Z",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let got = page["bars"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    let sat = FRI + DAY + 4 * HOUR;
    assert_bar(&got[0], &bars, sat, sat + DAY);
    assert_bar(&got[1], &bars, sat + DAY, sat + 2 * DAY + HOUR);
    // without `from`: the latest two local days of Kolkata (UTC+5:30) opening before `to`
    let (status, page) = get(
        &app,
        "/v1/ohlcv?symbol=SPY-USD&interval=1d&tz=Asia/Kolkata&to=2025-11-03T00:00:00Z&limit=2",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let got = page["bars"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    let k = FRI + 2 * DAY - 5 * HOUR - 30 * MIN; // 2025-11-02T00:00+05:30
    assert_bar(&got[0], &bars, k, k + DAY);
    assert_bar(&got[1], &bars, k + DAY, k + 2 * DAY);
}

#[tokio::test]
async fn bad_session_parameters_are_refused() {
    let (app, _, _dir) = app().await;
    for (q, needle) in [
        ("interval=1d&tz=Mars/Olympus", "unknown time zone"),
        ("interval=1d&tz=UTC&session=9-16", "HH:MM-HH:MM"),
        ("interval=1d&days=someday", "days"),
        ("interval=1h&tz=UTC", "interval=1d"),
    ] {
        let (status, body) = get(&app, &format!("/v1/ohlcv?symbol=SPY-USD&{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(body.to_string().contains(needle), "{q}: {body}");
    }
}
