//! Shared HTTP plumbing of the REST connectors: one client per venue with timeouts, a
//! request-weight limiter honouring `Retry-After`, retries with backoff and jitter, a
//! circuit breaker, and strict response checks: an HTML page, a truncated body or anything
//! that is not the expected JSON is an error, never data.

pub mod breaker;
pub mod config;
pub mod limiter;
pub mod retry;

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

pub use breaker::{Admission, BreakerState, CircuitBreaker};
pub use config::HttpConfig;
pub use limiter::WeightLimiter;
pub use retry::Backoff;

use crate::error::{ConnectorError, ErrorKind, Result};
use crate::metrics as m;

/// How long to stay away after a 429 or 418 that did not say (`Retry-After` missing).
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
const DEFAULT_BAN_PAUSE: Duration = Duration::from_secs(60);

/// A venue's REST client.
pub struct VenueHttp {
    venue: &'static str,
    base_url: String,
    client: reqwest::Client,
    limiter: WeightLimiter,
    breaker: CircuitBreaker,
    backoff: Backoff,
    max_retries: u32,
    headers: reqwest::header::HeaderMap,
    /// Response header with the venue's count of weight used in its current window.
    used_weight_header: Option<&'static str>,
}

impl VenueHttp {
    pub fn new(venue: &'static str, base_url: &str, cfg: &HttpConfig) -> Result<Self> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConnectorError::Config(format!(
                "{venue}: base URL {base_url:?} must start with http:// or https://"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(1)))
            .user_agent(concat!("pricestream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::Config(format!("{venue}: HTTP client: {e}")))?;
        Ok(VenueHttp {
            venue,
            base_url,
            client,
            limiter: WeightLimiter::new(
                venue,
                cfg.weight_per_window,
                Duration::from_millis(cfg.window_ms),
            )?,
            breaker: CircuitBreaker::new(
                venue,
                cfg.breaker_failure_threshold,
                Duration::from_millis(cfg.breaker_open_ms),
            ),
            backoff: Backoff::new(
                Duration::from_millis(cfg.retry_initial_delay_ms),
                Duration::from_millis(cfg.retry_max_delay_ms),
            ),
            max_retries: cfg.max_retries,
            headers: reqwest::header::HeaderMap::new(),
            used_weight_header: None,
        })
    }

    pub fn venue(&self) -> &'static str {
        self.venue
    }

    /// Sends `name: value` with every request (e.g. an API key).
    pub fn with_header(mut self, name: &'static str, value: &str) -> Result<Self> {
        let v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            ConnectorError::Config(format!(
                "{}: header {name} has an invalid value",
                self.venue
            ))
        })?;
        self.headers.insert(name, v);
        Ok(self)
    }

    /// Reads the venue's own count of used weight from response header `name` (Binance:
    /// `x-mbx-used-weight-1m`) and holds requests back when the next one would not fit
    /// (see [`WeightLimiter::venue_reports_used`]).
    pub fn with_used_weight_header(mut self, name: &'static str) -> Self {
        self.used_weight_header = Some(name);
        self
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// GET `path` with `query`, costing `weight`, decoded as `T`; retried while the error
    /// is retryable and attempts remain.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        weight: u32,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let err = match self.attempt(path, query, weight).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let kind = err.kind().map_or("other", ErrorKind::as_str);
            metrics::counter!(m::HTTP_ERRORS, "venue" => self.venue, "kind" => kind).increment(1);
            if !err.is_retryable() || attempt >= self.max_retries {
                return Err(err);
            }
            let mut delay = self.backoff.delay(attempt);
            if let ConnectorError::Venue {
                retry_after: Some(r),
                ..
            } = &err
            {
                delay = delay.max(*r);
            }
            tracing::debug!(venue = self.venue, path, attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        weight: u32,
    ) -> Result<T> {
        if let Admission::Rejected(wait) = self.breaker.admit() {
            return Err(ConnectorError::Venue {
                venue: self.venue,
                kind: ErrorKind::BreakerOpen,
                message: "circuit breaker open".into(),
                retry_after: Some(wait),
            });
        }
        self.limiter.acquire(weight).await;
        let started = Instant::now();
        let result = self.send::<T>(path, query, weight).await;
        metrics::histogram!(m::HTTP_SECONDS, "venue" => self.venue)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => {
                self.breaker.record_success();
                "ok"
            }
            Err(e) => {
                match e {
                    ConnectorError::Venue {
                        kind: ErrorKind::Banned,
                        retry_after,
                        ..
                    } => self
                        .breaker
                        .open_for(retry_after.unwrap_or(DEFAULT_BAN_PAUSE)),
                    e if e.trips_breaker() => self.breaker.record_failure(),
                    _ => self.breaker.record_neutral(),
                }
                e.kind().map_or("other", ErrorKind::as_str)
            }
        };
        metrics::counter!(m::HTTP_REQUESTS, "venue" => self.venue, "outcome" => outcome)
            .increment(1);
        result
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> ConnectorError {
        ConnectorError::venue(self.venue, kind, message)
    }

    fn transport_err(&self, e: reqwest::Error) -> ConnectorError {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_body() || e.is_decode() {
            ErrorKind::Truncated
        } else {
            ErrorKind::Connect
        };
        // reqwest's message names the URL; keep the cause chain, without query data
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        self.err(kind, message)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        weight: u32,
    ) -> Result<T> {
        let url = format!("{}{}", self.base_url, path);
        let resp = self
            .client
            .get(&url)
            .headers(self.headers.clone())
            .query(query)
            .send()
            .await
            .map_err(|e| self.transport_err(e))?;
        let status = resp.status();
        if let Some(used) = self
            .used_weight_header
            .and_then(|h| resp.headers().get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            self.limiter.venue_reports_used(used, weight);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if status.as_u16() == 429 || status.as_u16() == 418 {
            let banned = status.as_u16() == 418;
            let pause = retry_after.unwrap_or(if banned {
                DEFAULT_BAN_PAUSE
            } else {
                DEFAULT_RATE_LIMIT_PAUSE
            });
            self.limiter.penalize(pause);
            tracing::warn!(
                venue = self.venue,
                status = status.as_u16(),
                pause_ms = pause.as_millis() as u64,
                "venue asked us to back off"
            );
            return Err(ConnectorError::Venue {
                venue: self.venue,
                kind: if banned {
                    ErrorKind::Banned
                } else {
                    ErrorKind::RateLimited
                },
                message: format!("HTTP {status} on {path}"),
                retry_after: Some(pause),
            });
        }
        let body = resp.bytes().await.map_err(|e| self.transport_err(e))?;
        if status.is_server_error() {
            return Err(self.err(ErrorKind::Server, format!("HTTP {status} on {path}")));
        }
        if !status.is_success() {
            let detail = if looks_like_html(&content_type, &body) {
                "an HTML page".to_string()
            } else {
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
            };
            return Err(self.err(
                ErrorKind::Client,
                format!("HTTP {status} on {path}: {detail}"),
            ));
        }
        decode_json(self.venue, path, &content_type, &body)
    }
}

fn looks_like_html(content_type: &str, body: &[u8]) -> bool {
    content_type.contains("html")
        || body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'<')
}

/// Decodes a 2xx body: it must be JSON of the expected shape, complete, and not an HTML
/// page served with a 200 (captive portals and maintenance pages do that).
pub fn decode_json<T: DeserializeOwned>(
    venue: &'static str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<T> {
    if looks_like_html(content_type, body) {
        return Err(ConnectorError::venue(
            venue,
            ErrorKind::Html,
            format!("{path} answered with an HTML page instead of JSON"),
        ));
    }
    if !content_type.is_empty() && !content_type.contains("json") {
        return Err(ConnectorError::venue(
            venue,
            ErrorKind::Decode,
            format!("{path} answered with content type {content_type:?}, not JSON"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let kind = if e.is_eof() {
            ErrorKind::Truncated
        } else {
            ErrorKind::Decode
        };
        ConnectorError::venue(venue, kind, format!("{path}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_classified_before_use() {
        let ok: Result<Vec<u32>> = decode_json("t", "/x", "application/json", b"[1,2]");
        assert_eq!(ok.unwrap(), vec![1, 2]);
        let html: Result<Vec<u32>> = decode_json("t", "/x", "", b"  <!DOCTYPE html><p>down</p>");
        assert_eq!(html.unwrap_err().kind(), Some(ErrorKind::Html));
        let cut: Result<Vec<u32>> = decode_json("t", "/x", "application/json", b"[1,2");
        assert_eq!(cut.unwrap_err().kind(), Some(ErrorKind::Truncated));
        let wrong: Result<Vec<u32>> = decode_json("t", "/x", "application/json", b"{\"a\":1}");
        assert_eq!(wrong.unwrap_err().kind(), Some(ErrorKind::Decode));
        let text: Result<Vec<u32>> = decode_json("t", "/x", "text/plain", b"[1]");
        assert_eq!(text.unwrap_err().kind(), Some(ErrorKind::Decode));
    }
}
