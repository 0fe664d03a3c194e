//! `GET /v1/stream`: a WebSocket of live results.
//!
//! The client sends commands as JSON text frames:
//! `{"op":"subscribe","channels":["bars","signals","quotes"],"symbols":["BTC-USDT"],"intervals":["1m"]}`
//! (`"symbols":["*"]` for every symbol; `intervals` is optional and filters bars and
//! signals), and `{"op":"unsubscribe", …}` with the same fields. The server answers each
//! command with `{"type":"subscribed"|"unsubscribed", …}` or `{"type":"error","message":…}`
//! and sends events as `{"type":"bar"|"signal"|"quote"|"alert","data":{…}}`. The `alerts`
//! channel carries only alerts of the caller's own rules.
//!
//! A client that reads too slowly never slows the pipeline: its buffer keeps the newest
//! events, and it receives `{"type":"lagged","dropped":N}` for what it lost.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use pricestream_pipeline::live::{LiveEvent, LiveHub};
use pricestream_schemas::{Interval, Symbol};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, OwnedSemaphorePermit};

use crate::{ApiError, AppState, Result};

pub const CONNECTIONS: &str = "pricestream_api_stream_connections";
pub const LAGGED_EVENTS: &str = "pricestream_api_stream_dropped_events_total";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Channel {
    Quotes,
    Bars,
    Signals,
    /// Fired alerts of the caller's own rules.
    Alerts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    op: String,
    #[serde(default)]
    channels: Vec<Channel>,
    #[serde(default)]
    symbols: Vec<String>,
    #[serde(default)]
    intervals: Vec<Interval>,
}

#[derive(Debug, Default)]
struct Subscriptions {
    channels: BTreeSet<Channel>,
    symbols: BTreeSet<Symbol>,
    all_symbols: bool,
    intervals: BTreeSet<Interval>,
    /// The caller's key id: only alerts of its own rules are sent.
    owner: String,
}

impl Subscriptions {
    fn matches(&self, ev: &LiveEvent) -> bool {
        let (channel, symbol, interval) = match ev {
            LiveEvent::Quote(q) => (Channel::Quotes, &q.symbol, None),
            LiveEvent::Bar(b) => (Channel::Bars, &b.symbol, Some(b.interval)),
            LiveEvent::Signal(s) => (Channel::Signals, &s.symbol, Some(s.interval)),
            LiveEvent::Alert(a) => {
                if a.owner != self.owner {
                    return false;
                }
                (Channel::Alerts, &a.symbol, None)
            }
        };
        self.channels.contains(&channel)
            && (self.all_symbols || self.symbols.contains(symbol))
            && interval.is_none_or(|i| self.intervals.is_empty() || self.intervals.contains(&i))
    }

    /// Applies a command; returns the reply.
    fn apply(&mut self, text: &str) -> serde_json::Value {
        let cmd: Command = match serde_json::from_str(text) {
            Ok(c) => c,
            Err(e) => return json!({ "type": "error", "message": format!("bad command: {e}") }),
        };
        let mut symbols = Vec::new();
        let mut all = false;
        for s in &cmd.symbols {
            if s == "*" {
                all = true;
            } else {
                match Symbol::new(s) {
                    Ok(sym) => symbols.push(sym),
                    Err(e) => return json!({ "type": "error", "message": e.to_string() }),
                }
            }
        }
        match cmd.op.as_str() {
            "subscribe" => {
                if cmd.channels.is_empty() || (symbols.is_empty() && !all) {
                    return json!({ "type": "error", "message": "subscribe needs channels and symbols" });
                }
                self.channels.extend(cmd.channels.iter().copied());
                self.symbols.extend(symbols);
                self.all_symbols |= all;
                self.intervals.extend(cmd.intervals.iter().copied());
            }
            "unsubscribe" => {
                for c in &cmd.channels {
                    self.channels.remove(c);
                }
                for s in &symbols {
                    self.symbols.remove(s);
                }
                if all {
                    self.all_symbols = false;
                    self.symbols.clear();
                }
                for i in &cmd.intervals {
                    self.intervals.remove(i);
                }
            }
            other => {
                return json!({ "type": "error", "message": format!("unknown op {other:?}; expected subscribe or unsubscribe") })
            }
        }
        json!({
            "type": if cmd.op == "subscribe" { "subscribed" } else { "unsubscribed" },
            "channels": self.channels.iter().map(|c| format!("{c:?}").to_lowercase()).collect::<Vec<_>>(),
            "symbols": if self.all_symbols { vec!["*".to_string()] } else { self.symbols.iter().map(|s| s.to_string()).collect() },
            "intervals": self.intervals.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
        })
    }
}

fn event_json(ev: &LiveEvent) -> serde_json::Value {
    match ev {
        LiveEvent::Quote(q) => json!({ "type": "quote", "data": q }),
        LiveEvent::Bar(b) => json!({ "type": "bar", "data": b }),
        LiveEvent::Signal(s) => json!({ "type": "signal", "data": s }),
        LiveEvent::Alert(a) => json!({ "type": "alert", "data": a }),
    }
}

/// `GET /v1/stream`: upgrades to a WebSocket (see the module documentation for the protocol).
#[utoipa::path(get, path = "/v1/stream", tag = "stream",
    description = "WebSocket upgrade. Send `{\"op\":\"subscribe\",\"channels\":[\"bars\",\"signals\",\"quotes\",\"alerts\"],\"symbols\":[\"BTC-USDT\"],\"intervals\":[\"1m\"]}` (or `unsubscribe`); receive `{\"type\":\"bar\"|\"signal\"|\"quote\"|\"alert\" (own rules only),\"data\":…}`, and `{\"type\":\"lagged\",\"dropped\":N}` when the client fell behind its buffer.",
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 404, description = "This process runs no pipeline", body = crate::error::ErrorBody),
        (status = 503, description = "Too many stream connections", body = crate::error::ErrorBody),
        (status = 400, description = "A parameter is missing, unknown or malformed", body = crate::error::ErrorBody),
        (status = 401, description = "Credentials missing (when required), unknown, revoked or invalid", body = crate::error::ErrorBody),
        (status = 403, description = "The credentials lack the scope, or their tier is not configured", body = crate::error::ErrorBody),
        (status = 429, description = "The tier's rate limit is exhausted", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = []), ("bearer" = [])),
)]
pub async fn stream(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    ws: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    let owner = principal.map(|p| p.0.id).unwrap_or_default();
    let Some(live) = state.live.clone() else {
        return Err(ApiError::NotFound(
            "this process runs no pipeline, so there is no live stream".into(),
        ));
    };
    // a plain GET (no upgrade headers) gets the one error shape, not axum's text
    let ws = ws.map_err(|e| {
        ApiError::BadRequest(format!(
            "this route is a WebSocket endpoint: {}",
            e.body_text()
        ))
    })?;
    let permit = Arc::clone(&live.slots).try_acquire_owned().map_err(|_| {
        ApiError::Unavailable("too many stream connections; try again later".into())
    })?;
    let hub = live.hub.clone();
    Ok(ws.on_upgrade(move |socket| session(socket, hub, permit, owner)))
}

async fn send(socket: &mut WebSocket, v: serde_json::Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

#[tracing::instrument(skip_all)]
async fn session(
    mut socket: WebSocket,
    hub: LiveHub,
    _permit: OwnedSemaphorePermit,
    owner: String,
) {
    metrics::gauge!(CONNECTIONS).increment(1.0);
    let mut rx = hub.subscribe();
    let mut subs = Subscriptions {
        owner,
        ..Subscriptions::default()
    };
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let reply = subs.apply(t.as_str());
                    if !send(&mut socket, reply).await { break; }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if subs.matches(&ev) && !send(&mut socket, event_json(&ev)).await {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!(LAGGED_EVENTS).increment(n);
                    if !send(&mut socket, json!({ "type": "lagged", "dropped": n })).await { break; }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = send(&mut socket, json!({ "type": "closed", "reason": "the pipeline stopped" })).await;
                    break;
                }
            },
        }
    }
    metrics::gauge!(CONNECTIONS).decrement(1.0);
}

/// The live stream of a process that runs a pipeline.
#[derive(Clone)]
pub struct LiveStream {
    pub hub: LiveHub,
    /// One permit per allowed connection.
    pub slots: Arc<tokio::sync::Semaphore>,
}

impl LiveStream {
    pub fn new(hub: LiveHub, max_connections: usize) -> Self {
        LiveStream {
            hub,
            slots: Arc::new(tokio::sync::Semaphore::new(max_connections.max(1))),
        }
    }
}
