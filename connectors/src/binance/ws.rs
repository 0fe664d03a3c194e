//! Binance live streams: one combined-stream connection for every configured symbol and
//! stream kind. Each connection is a WebSocket session recorded as an ingestion run; when
//! it drops (or is silent past the heartbeat timeout) it is reconnected with backoff and
//! jitter, the subscription is sent again, and the gap healer is asked to run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pricestream_bus::QuotePublisher;
use pricestream_schemas::{Clock, Interval};
use pricestream_store::Store;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::config::{BinanceConfig, StreamKind};
use super::parse::{self, WsEvent};
use crate::candles::candle_to_bar;
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::Backoff;
use crate::metrics as m;
use crate::runs::RunRecorder;
use crate::symbols::SymbolMap;

pub const CONNECTOR: &str = "binance_ws";

/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(60);

pub struct BinanceLive {
    pub cfg: BinanceConfig,
    pub symbols: SymbolMap,
    pub publisher: Arc<dyn QuotePublisher>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub recorder: RunRecorder,
    /// Told after every reconnect, so the gaps of the outage are healed.
    pub on_reconnect: Option<Arc<Notify>>,
}

/// How a session ended without an error.
enum SessionEnd {
    Cancelled,
    /// The venue closed the connection cleanly (Binance rotates connections every 24 h).
    ClosedByVenue,
}

impl BinanceLive {
    /// The stream names to subscribe to, e.g. `btcusdt@trade`.
    pub fn stream_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for s in self.symbols.venue_symbols() {
            for k in &self.cfg.streams {
                v.push(format!("{}@{}", s.to_ascii_lowercase(), k.suffix()));
            }
        }
        v
    }

    /// Runs sessions until cancelled; returns the quotes published. Only a closed bus
    /// ends it early (with an error).
    pub async fn run(self, cancel: CancellationToken) -> Result<u64> {
        let backoff = Backoff::new(
            Duration::from_millis(self.cfg.reconnect_initial_delay_ms),
            Duration::from_millis(self.cfg.reconnect_max_delay_ms),
        );
        let mut failures = 0u32;
        let mut total = 0u64;
        let mut sessions = 0u64;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let run = self.recorder.start(CONNECTOR).await;
            let started = Instant::now();
            let mut count = 0u64;
            let outcome = self.session(&cancel, &mut count, sessions > 0).await;
            sessions += 1;
            total += count;
            let (error, reason) = match &outcome {
                Ok(SessionEnd::Cancelled) => (None, None),
                Ok(SessionEnd::ClosedByVenue) => (None, Some("closed")),
                Err(e) => (
                    Some(e.to_string()),
                    Some(e.kind().map_or("other", ErrorKind::as_str)),
                ),
            };
            self.recorder.finish(run, count, error).await;
            if let Err(e @ ConnectorError::Publish(_)) = outcome {
                return Err(e);
            }
            let Some(reason) = reason else { break };
            metrics::counter!(m::WS_RECONNECTS, "venue" => "binance", "reason" => reason)
                .increment(1);
            if started.elapsed() >= STABLE_SESSION {
                failures = 0;
            }
            let delay = backoff.delay(failures);
            failures = failures.saturating_add(1);
            tracing::info!(delay_ms = delay.as_millis() as u64, reason, "reconnecting");
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        Ok(total)
    }

    async fn session(
        &self,
        cancel: &CancellationToken,
        count: &mut u64,
        reconnect: bool,
    ) -> Result<SessionEnd> {
        let ws_err = |kind, msg: String| ConnectorError::venue("binance", kind, msg);
        let url = format!("{}/stream", self.cfg.ws_url.trim_end_matches('/'));
        let connect = tokio_tungstenite::connect_async(url.as_str());
        let (mut ws, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(SessionEnd::Cancelled),
            r = tokio::time::timeout(Duration::from_millis(self.cfg.connect_timeout_ms.max(1)), connect) => match r {
                Err(_) => return Err(ws_err(ErrorKind::Timeout, format!("connecting to {url} timed out"))),
                Ok(Err(e)) => return Err(ws_err(ErrorKind::Connect, format!("connecting to {url}: {e}"))),
                Ok(Ok(pair)) => pair,
            },
        };
        let subscribe = serde_json::json!({
            "method": "SUBSCRIBE",
            "params": self.stream_names(),
            "id": 1,
        });
        ws.send(Message::text(subscribe.to_string()))
            .await
            .map_err(|e| ws_err(ErrorKind::WebSocket, format!("subscribing: {e}")))?;
        tracing::info!(streams = self.stream_names().len(), reconnect, "binance WebSocket subscribed");
        if reconnect {
            if let Some(n) = &self.on_reconnect {
                n.notify_one();
            }
        }
        let heartbeat = Duration::from_secs(self.cfg.heartbeat_timeout_secs.max(1));
        let wants_klines = self.cfg.streams.contains(&StreamKind::Kline1m);
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = ws.close(None).await;
                    return Ok(SessionEnd::Cancelled);
                }
                r = tokio::time::timeout(heartbeat, ws.next()) => r,
            };
            let msg = match next {
                Err(_) => {
                    return Err(ws_err(
                        ErrorKind::Heartbeat,
                        format!("no message for {} s", heartbeat.as_secs()),
                    ))
                }
                Ok(None) => {
                    return Err(ws_err(ErrorKind::WebSocket, "connection dropped".into()))
                }
                Ok(Some(Err(e))) => {
                    return Err(ws_err(ErrorKind::WebSocket, format!("connection dropped: {e}")))
                }
                Ok(Some(Ok(m))) => m,
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Ping(p) => {
                    ws.send(Message::Pong(p))
                        .await
                        .map_err(|e| ws_err(ErrorKind::WebSocket, e.to_string()))?;
                    continue;
                }
                Message::Close(_) => return Ok(SessionEnd::ClosedByVenue),
                _ => continue,
            };
            let now = self.clock.now_ns();
            match parse::ws_message(text.as_str(), &self.symbols, now) {
                Ok(WsEvent::Trade(q)) => {
                    self.publisher
                        .publish(vec![q])
                        .await
                        .map_err(|e| ConnectorError::Publish(e.to_string()))?;
                    *count += 1;
                    metrics::counter!(m::QUOTES_PUBLISHED, "connector" => CONNECTOR).increment(1);
                }
                Ok(WsEvent::Candle(c)) if wants_klines && c.closed && c.interval == Interval::M1 => {
                    self.store.upsert_bars(&[candle_to_bar(&c)]).await?;
                    *count += 1;
                    metrics::counter!(m::CANDLES_WRITTEN, "venue" => "binance", "origin" => "live")
                        .increment(1);
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(ErrorKind::WebSocket) = e.kind() {
                        return Err(e);
                    }
                    let reason = e.kind().map_or("other", ErrorKind::as_str);
                    metrics::counter!(m::WS_REJECTED, "venue" => "binance", "reason" => reason)
                        .increment(1);
                    tracing::warn!(error = %e, "binance message rejected");
                }
            }
        }
    }
}
