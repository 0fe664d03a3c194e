//! A fake exchange for the connector tests: a real HTTP + WebSocket server in the test
//! process that serves recorded payloads (../shared/fixtures, see its SOURCES.md) and
//! injects faults on demand.
//!
//! - `GET /api/v3/klines` answers from the recorded Binance kline dumps
//!   (`BTCUSDT-1m-2020-01-0{1,2,3}.csv`, the venue's own public data, byte-for-byte values)
//!   in the REST row shape of the recorded `/api/v3/klines` response. It counts request
//!   weight per fixed window and answers 429 (recording a violation) past the budget, the
//!   way Binance does.
//! - `GET /stream` is a combined-stream WebSocket: it waits for the SUBSCRIBE message, then
//!   plays the script of that connection (recorded messages, pauses, an abrupt drop).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pricestream_schemas::{Clock, TimestampNs, NANOS_PER_MILLI};
use serde_json::Value;
use tokio::sync::Notify;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

/// A recorded kline dump row: `open_time,open,high,low,close,volume,close_time,
/// quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore`.
#[derive(Debug, Clone)]
pub struct KlineRow {
    pub open_time_ms: i64,
    pub fields: Vec<String>,
}

impl KlineRow {
    pub fn open(&self) -> f64 {
        self.fields[1].parse().unwrap_or(f64::NAN)
    }
    pub fn high(&self) -> f64 {
        self.fields[2].parse().unwrap_or(f64::NAN)
    }
    pub fn low(&self) -> f64 {
        self.fields[3].parse().unwrap_or(f64::NAN)
    }
    pub fn close(&self) -> f64 {
        self.fields[4].parse().unwrap_or(f64::NAN)
    }
    pub fn volume(&self) -> f64 {
        self.fields[5].parse().unwrap_or(f64::NAN)
    }

    /// The REST shape: integers for times and count, strings for decimals.
    pub fn rest_json(&self) -> Value {
        let f = &self.fields;
        let int = |s: &str| Value::from(s.parse::<i64>().unwrap_or(0));
        Value::Array(vec![
            int(&f[0]),
            f[1].clone().into(),
            f[2].clone().into(),
            f[3].clone().into(),
            f[4].clone().into(),
            f[5].clone().into(),
            int(&f[6]),
            f[7].clone().into(),
            int(&f[8]),
            f[9].clone().into(),
            f[10].clone().into(),
            f[11].clone().into(),
        ])
    }

    /// A closed `kline_1m` combined-stream message with this row's values, in the shape of
    /// the recorded `binance_spot_combined_stream` kline messages.
    pub fn ws_message(&self, venue_symbol: &str) -> String {
        let f = &self.fields;
        serde_json::json!({
            "stream": format!("{}@kline_1m", venue_symbol.to_ascii_lowercase()),
            "data": {
                "e": "kline",
                "E": f[6].parse::<i64>().unwrap_or(0) + 1,
                "s": venue_symbol,
                "k": {
                    "t": self.open_time_ms, "T": f[6].parse::<i64>().unwrap_or(0),
                    "s": venue_symbol, "i": "1m", "f": 0, "L": 0,
                    "o": f[1], "c": f[4], "h": f[2], "l": f[3], "v": f[5],
                    "n": f[8].parse::<i64>().unwrap_or(0), "x": true, "q": f[7],
                    "V": f[9], "Q": f[10], "B": "0"
                }
            }
        })
        .to_string()
    }
}

/// The recorded spot BTCUSDT 1m dumps of 2020-01-01..03 (4,320 candles).
/// Checks that `bar` aggregates exactly the kline `rows` of its bucket (open of the first,
/// close of the last, high, low, trade count; volume to 1e-9 relative).
pub fn assert_aggregates<'a>(
    bar: &pricestream_schemas::Bar,
    rows: impl IntoIterator<Item = &'a KlineRow>,
) {
    let rows: Vec<&KlineRow> = rows.into_iter().collect();
    let what = format!("{} bar at {}", bar.interval, bar.bucket_start);
    let count: u64 = rows
        .iter()
        .map(|r| r.fields[8].parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        (bar.open, bar.close, bar.trade_count),
        (rows[0].open(), rows[rows.len() - 1].close(), count),
        "{what}"
    );
    assert_eq!(
        bar.high,
        rows.iter().map(|r| r.high()).fold(f64::MIN, f64::max),
        "{what}"
    );
    assert_eq!(
        bar.low,
        rows.iter().map(|r| r.low()).fold(f64::MAX, f64::min),
        "{what}"
    );
    let volume: f64 = rows.iter().map(|r| r.volume()).sum();
    assert!(
        (bar.volume - volume).abs() <= 1e-9 * volume,
        "{what}: volume"
    );
}

pub fn btcusdt_2020_rows() -> Vec<KlineRow> {
    let mut rows = Vec::new();
    for day in 1..=3 {
        let p = fixtures().join(format!(
            "binance/klines_dump/spot/BTCUSDT-1m-2020-01-0{day}.csv"
        ));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let fields: Vec<String> = line.split(',').map(str::to_string).collect();
            assert_eq!(fields.len(), 12, "{line}");
            rows.push(KlineRow {
                open_time_ms: fields[0].parse().unwrap_or(0),
                fields,
            });
        }
    }
    rows
}

/// 2020-01-01T00:00:00Z in milliseconds.
pub const JAN1_2020_MS: i64 = 1_577_836_800_000;

/// A fault to inject into the next REST response.
#[derive(Debug, Clone)]
pub enum Fault {
    TooManyRequests {
        retry_after_secs: u64,
    },
    Banned {
        retry_after_secs: u64,
    },
    ServerError,
    /// Answer only after this long (longer than the client's timeout).
    Slow(Duration),
    /// A 200 with the JSON body cut in half.
    Truncated,
    /// A 200 with an HTML maintenance page.
    Html,
}

/// One step of a WebSocket connection's script.
#[derive(Debug, Clone)]
pub enum WsStep {
    Send(String),
    Pause(Duration),
    /// Wait until the test calls [`FakeExchange::release`].
    WaitForRelease,
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Keep the connection open and silent.
    Hold,
}

#[derive(Default)]
pub struct Counters {
    /// Klines requests answered (any status).
    pub requests: u64,
    /// Times each (symbol, open time) was served in a 200 response.
    pub served: HashMap<(String, i64), u32>,
    /// Weight spent per fixed window index.
    pub window_weight: BTreeMap<u64, u32>,
    /// Requests that arrived while the budget of their window was spent.
    pub violations: u64,
    /// Requests that arrived while a ban (418) was in force.
    pub during_ban: u64,
    /// SUBSCRIBE messages, one list of streams per connection.
    pub subscriptions: Vec<Vec<String>>,
    pub ws_connections: u64,
}

pub struct Inner {
    pub klines: HashMap<String, Vec<KlineRow>>,
    /// Candles the venue does not have.
    pub omit: std::collections::HashSet<(String, i64)>,
    pub faults: VecDeque<Fault>,
    pub scripts: VecDeque<Vec<WsStep>>,
    pub counters: Counters,
    pub weight_limit: u32,
    pub window: Duration,
    /// Weight other clients behind the same address spend at the start of every window
    /// (counted against the same budget, as Binance counts per IP).
    pub others_weight: u32,
    pub banned_until: Option<Instant>,
}

/// Binance's response header with the weight used in the current window.
pub const USED_WEIGHT: &str = "x-mbx-used-weight-1m";

#[derive(Clone)]
pub struct FakeExchange {
    pub addr: SocketAddr,
    pub inner: Arc<Mutex<Inner>>,
    started: Instant,
    release: Arc<Notify>,
}

pub const KLINES_WEIGHT: u32 = 2;

impl FakeExchange {
    /// Starts a fake exchange with a weight budget of `weight_limit` per `window`.
    pub async fn start(weight_limit: u32, window: Duration) -> Self {
        let mut klines = HashMap::new();
        klines.insert("BTCUSDT".to_string(), btcusdt_2020_rows());
        let inner = Arc::new(Mutex::new(Inner {
            klines,
            omit: Default::default(),
            faults: VecDeque::new(),
            scripts: VecDeque::new(),
            counters: Counters::default(),
            weight_limit,
            window,
            others_weight: 0,
            banned_until: None,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeExchange {
            addr,
            inner,
            started: Instant::now(),
            release: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route("/api/v3/klines", get(klines_handler))
            .route("/stream", get(stream))
            .route("/ws-feed", get(stream))
            .route("/api/v3/simple/price", get(coingecko_simple_price))
            .route(
                "/api/v3/coins/{id}/market_chart/range",
                get(coingecko_market_chart),
            )
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    pub fn script(&self, steps: Vec<WsStep>) {
        self.lock().scripts.push_back(steps);
    }

    pub fn release(&self) {
        self.release.notify_one();
    }

    pub fn requests(&self) -> u64 {
        self.lock().counters.requests
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn klines_handler(
    State(fx): State<FakeExchange>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (fault, used) = {
        let mut g = fx.lock();
        g.counters.requests += 1;
        let now = Instant::now();
        if g.banned_until.is_some_and(|u| now < u) {
            g.counters.during_ban += 1;
        }
        // windows start at multiples of the window since the Unix epoch, as Binance's UTC
        // minutes do
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let idx = (since_epoch / g.window.as_nanos().max(1)) as u64;
        let (limit, others) = (g.weight_limit, g.others_weight);
        let w = g.counters.window_weight.entry(idx).or_insert(others);
        *w += KLINES_WEIGHT;
        let used = w.to_string();
        if *w > limit {
            g.counters.violations += 1;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, "1".to_string()),
                    (header::HeaderName::from_static(USED_WEIGHT), used),
                ],
                "{\"code\":-1003,\"msg\":\"Too much request weight used.\"}",
            )
                .into_response();
        }

        let fault = g.faults.pop_front();
        if let Some(Fault::Banned { retry_after_secs }) = &fault {
            g.banned_until = Some(now + Duration::from_secs(*retry_after_secs));
        }
        (fault, used)
    };
    match fault {
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                "{\"code\":-1003,\"msg\":\"Too many requests.\"}",
            )
                .into_response()
        }
        Some(Fault::Banned { retry_after_secs }) => {
            return (
                StatusCode::IM_A_TEAPOT,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                "{\"code\":-1003,\"msg\":\"Way too many requests; IP banned.\"}",
            )
                .into_response()
        }
        Some(Fault::ServerError) => {
            return json_response(
                StatusCode::BAD_GATEWAY,
                "{\"code\":-1000,\"msg\":\"An unknown error occurred.\"}".into(),
            )
        }
        Some(Fault::Html) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<!DOCTYPE html><html><body><h1>System maintenance</h1></body></html>",
            )
                .into_response()
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Truncated) | None => {}
    }
    let truncated = matches!(fault, Some(Fault::Truncated));
    let symbol = q.get("symbol").cloned().unwrap_or_default();
    if q.get("interval").map(String::as_str) != Some("1m") {
        return json_response(
            StatusCode::BAD_REQUEST,
            "{\"code\":-1120,\"msg\":\"Invalid interval.\"}".into(),
        );
    }
    let num = |k: &str, d: i64| q.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(d);
    let (start, end, limit) = (
        num("startTime", 0),
        num("endTime", i64::MAX),
        num("limit", 500),
    );
    let mut g = fx.lock();
    let Some(rows) = g.klines.get(&symbol) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}".into(),
        );
    };
    let page: Vec<KlineRow> = rows
        .iter()
        .filter(|r| r.open_time_ms >= start && r.open_time_ms <= end)
        .filter(|r| !g.omit.contains(&(symbol.clone(), r.open_time_ms)))
        .take(limit.clamp(1, 1000) as usize)
        .cloned()
        .collect();
    let body = Value::Array(page.iter().map(KlineRow::rest_json).collect()).to_string();
    if truncated {
        return json_response(StatusCode::OK, body[..body.len() / 2].to_string());
    }
    for r in &page {
        *g.counters
            .served
            .entry((symbol.clone(), r.open_time_ms))
            .or_insert(0) += 1;
    }
    let mut resp = json_response(StatusCode::OK, body);
    resp.headers_mut()
        .insert(USED_WEIGHT, header::HeaderValue::from_str(&used).unwrap());
    resp
}

async fn stream(State(fx): State<FakeExchange>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| play(fx, socket))
}

async fn play(fx: FakeExchange, mut socket: WebSocket) {
    // the client subscribes first
    let streams = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == "subscribe" {
                    // Coinbase Exchange: product ids × channels
                    let s: Vec<String> = ["product_ids", "channels"]
                        .iter()
                        .flat_map(|k| v[*k].as_array().cloned().unwrap_or_default())
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect();
                    let ack =
                        serde_json::json!({"type": "subscriptions", "channels": v["channels"]});
                    let _ = socket.send(Message::Text(ack.to_string().into())).await;
                    break s;
                }
                if v["method"] == "SUBSCRIBE" {
                    let s: Vec<String> = v["params"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    let id = v["id"].clone();
                    let _ = socket
                        .send(Message::Text(
                            serde_json::json!({"result": null, "id": id})
                                .to_string()
                                .into(),
                        ))
                        .await;
                    break s;
                }
            }
            Some(Ok(_)) => continue,
            _ => return,
        }
    };
    let steps = {
        let mut g = fx.lock();
        g.counters.ws_connections += 1;
        g.counters.subscriptions.push(streams.clone());
        g.scripts.pop_front().unwrap_or_else(|| vec![WsStep::Hold])
    };
    for step in steps {
        match step {
            WsStep::Send(text) => {
                // only what was subscribed to is sent
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let wanted = v["stream"]
                    .as_str()
                    .is_none_or(|s| streams.iter().any(|x| x == s));
                if wanted && socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            WsStep::Pause(d) => tokio::time::sleep(d).await,
            WsStep::WaitForRelease => fx.release.notified().await,
            WsStep::Drop => return,
            WsStep::Hold => {
                // drain until the client goes away
                while let Some(Ok(_)) = socket.recv().await {}
                return;
            }
        }
    }
    while let Some(Ok(_)) = socket.recv().await {}
}

/// Recorded combined-stream messages (`msg` of each NDJSON line).
pub fn recorded_ws_messages(rel: &str) -> Vec<String> {
    let p = fixtures().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["msg"].to_string()
        })
        .collect()
}

/// A clock the test sets. Every reading moves it on by a microsecond, so records made one
/// after the other keep their order.
#[derive(Debug, Default)]
pub struct TestClock(pub AtomicI64);

impl TestClock {
    pub fn at_ms(ms: i64) -> Arc<Self> {
        Arc::new(TestClock(AtomicI64::new(ms * NANOS_PER_MILLI)))
    }
    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms * NANOS_PER_MILLI, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ns(&self) -> TimestampNs {
        self.0.fetch_add(1_000, Ordering::SeqCst)
    }
}

/// A migrated SQLite store in a temporary directory.
pub async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn pricestream_store::Store> {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = pricestream_store::open(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// Answers a CoinGecko call with a recorded body (after any injected fault).
async fn coingecko_recorded(fx: &FakeExchange, file: &str) -> Response {
    let fault = {
        let mut g = fx.lock();
        g.counters.requests += 1;
        g.faults.pop_front()
    };
    match fault {
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                "{\"status\":{\"error_code\":429,\"error_message\":\"You've exceeded the Rate Limit.\"}}",
            )
                .into_response()
        }
        Some(Fault::Html) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><head><title>Just a moment...</title></head></html>",
            )
                .into_response()
        }
        Some(Fault::ServerError) => {
            return json_response(StatusCode::SERVICE_UNAVAILABLE, "{}".into())
        }
        _ => {}
    }
    let body = std::fs::read_to_string(fixtures().join(file)).unwrap();
    json_response(StatusCode::OK, body)
}

async fn coingecko_simple_price(State(fx): State<FakeExchange>) -> Response {
    coingecko_recorded(&fx, "coingecko/simple_price.json").await
}

async fn coingecko_market_chart(State(fx): State<FakeExchange>) -> Response {
    coingecko_recorded(&fx, "coingecko/coins_id_market_chart_range.json").await
}
