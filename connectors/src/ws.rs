//! The shared WebSocket session loop of the live connectors. Each connection is a session
//! recorded as an ingestion run; when it drops, or is silent past the heartbeat timeout,
//! it is reconnected with backoff and jitter, the subscription is sent again, and the gap
//! healer (if any) is told. A venue supplies only its URL, subscribe messages and parser.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pricestream_bus::QuotePublisher;
use pricestream_schemas::{Candle, Clock, Interval, Quote, TimestampNs};
use pricestream_store::Store;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::candles::{candle_to_bar, CandleRollups};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::Backoff;
use crate::metrics as m;
use crate::runs::RunRecorder;

/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(60);

/// What a venue message carries.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    Quote(Quote),
    /// A candle update; closed 1m candles become bars when the feed asks for them.
    Candle(Candle),
    /// Acknowledgements, heartbeats and kinds not read.
    Ignored,
}

/// A venue's live feed.
pub trait Feed: Send + Sync {
    /// Venue name (a bounded metric label).
    fn venue(&self) -> &'static str;
    /// Connector name its sessions are recorded under.
    fn connector(&self) -> &'static str;
    fn url(&self) -> String;
    /// Messages sent after every connect.
    fn subscribe(&self) -> Vec<String>;
    /// Parses one text message. An error of kind `WebSocket` (the venue reported an error)
    /// ends the session; other errors reject only the message.
    fn parse(&self, text: &str, now: TimestampNs) -> Result<FeedEvent>;
    /// Whether closed 1m candles are written as bars.
    fn writes_candles(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    pub heartbeat_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect: Backoff,
}

pub struct LiveFeed<F: Feed> {
    pub feed: F,
    pub settings: WsSettings,
    pub publisher: Arc<dyn QuotePublisher>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub recorder: RunRecorder,
    /// Told after every reconnect, so the gaps of the outage are healed.
    pub on_reconnect: Option<Arc<Notify>>,
    /// Coarser bars of the candles written (see [`CandleRollups`]).
    pub candle_rollups: Option<Arc<CandleRollups>>,
}

enum SessionEnd {
    Cancelled,
    /// The venue closed the connection cleanly (venues rotate long-lived connections).
    ClosedByVenue,
}

impl<F: Feed> LiveFeed<F> {
    /// Runs sessions until cancelled; returns the records received. Only a closed bus
    /// ends it early (with an error).
    pub async fn run(self, cancel: CancellationToken) -> Result<u64> {
        let venue = self.feed.venue();
        let mut failures = 0u32;
        let (mut total, mut sessions) = (0u64, 0u64);
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let run = self.recorder.start(self.feed.connector()).await;
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
            metrics::counter!(m::WS_RECONNECTS, "venue" => venue, "reason" => reason).increment(1);
            if started.elapsed() >= STABLE_SESSION {
                failures = 0;
            }
            let delay = self.settings.reconnect.delay(failures);
            failures = failures.saturating_add(1);
            tracing::info!(
                venue,
                delay_ms = delay.as_millis() as u64,
                reason,
                "reconnecting"
            );
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
        let venue = self.feed.venue();
        let ws_err = |kind, msg: String| ConnectorError::venue(venue, kind, msg);
        let url = self.feed.url();
        let connect = tokio_tungstenite::connect_async(url.as_str());
        let (mut ws, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(SessionEnd::Cancelled),
            r = tokio::time::timeout(self.settings.connect_timeout, connect) => match r {
                Err(_) => return Err(ws_err(ErrorKind::Timeout, format!("connecting to {url} timed out"))),
                Ok(Err(e)) => return Err(ws_err(ErrorKind::Connect, format!("connecting to {url}: {e}"))),
                Ok(Ok(pair)) => pair,
            },
        };
        for msg in self.feed.subscribe() {
            ws.send(Message::text(msg))
                .await
                .map_err(|e| ws_err(ErrorKind::WebSocket, format!("subscribing: {e}")))?;
        }
        tracing::info!(venue, reconnect, "WebSocket subscribed");
        if reconnect {
            if let Some(n) = &self.on_reconnect {
                n.notify_one();
            }
        }
        let heartbeat = self.settings.heartbeat_timeout;
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
                        format!(
                            "heartbeat timeout: no message for {} s",
                            heartbeat.as_secs_f64()
                        ),
                    ))
                }
                Ok(None) => return Err(ws_err(ErrorKind::WebSocket, "connection dropped".into())),
                Ok(Some(Err(e))) => {
                    return Err(ws_err(
                        ErrorKind::WebSocket,
                        format!("connection dropped: {e}"),
                    ))
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
            match self.feed.parse(text.as_str(), self.clock.now_ns()) {
                Ok(FeedEvent::Quote(q)) => {
                    self.publisher
                        .publish(vec![q])
                        .await
                        .map_err(|e| ConnectorError::Publish(e.to_string()))?;
                    *count += 1;
                    metrics::counter!(m::QUOTES_PUBLISHED, "connector" => self.feed.connector())
                        .increment(1);
                }
                Ok(FeedEvent::Candle(c))
                    if self.feed.writes_candles() && c.closed && c.interval == Interval::M1 =>
                {
                    let bar = [candle_to_bar(&c)];
                    match &self.candle_rollups {
                        Some(r) => {
                            r.write(self.store.as_ref(), &bar, self.clock.now_ns())
                                .await?;
                        }
                        None => self.store.upsert_bars(&bar).await?,
                    }
                    *count += 1;
                    metrics::counter!(m::CANDLES_WRITTEN, "venue" => venue, "origin" => "live")
                        .increment(1);
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(ErrorKind::WebSocket) = e.kind() {
                        return Err(e);
                    }
                    let reason = e.kind().map_or("other", ErrorKind::as_str);
                    metrics::counter!(m::WS_REJECTED, "venue" => venue, "reason" => reason)
                        .increment(1);
                    tracing::warn!(venue, error = %e, "message rejected");
                }
            }
        }
    }
}
