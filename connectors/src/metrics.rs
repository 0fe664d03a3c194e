//! Metric names of the connectors.

pub const QUOTES_PUBLISHED: &str = "pricestream_connector_quotes_published_total";
/// Ingestion runs that ended, by connector and status (`completed`, `failed`).
pub const RUNS: &str = "pricestream_connector_runs_total";
/// Ingestion runs in progress, by connector.
pub const RUNS_ACTIVE: &str = "pricestream_connector_runs_active";
/// Wall-clock duration of finished ingestion runs, by connector.
pub const RUN_SECONDS: &str = "pricestream_connector_run_duration_seconds";
/// REST requests sent, by venue and outcome (`ok` or an error kind).
pub const HTTP_REQUESTS: &str = "pricestream_connector_http_requests_total";
/// Failed REST attempts, by venue and error kind.
pub const HTTP_ERRORS: &str = "pricestream_connector_http_errors_total";
/// REST request latency, by venue.
pub const HTTP_SECONDS: &str = "pricestream_connector_http_request_duration_seconds";
/// Requests that had to wait for the rate limiter, and how long, by venue.
pub const RATE_LIMIT_WAITS: &str = "pricestream_connector_rate_limit_waits_total";
pub const RATE_LIMIT_WAIT_SECONDS: &str = "pricestream_connector_rate_limit_wait_seconds";
/// The venue's own count of weight used in its current window, by venue (Binance).
pub const VENUE_USED_WEIGHT: &str = "pricestream_connector_venue_used_weight";
/// Circuit breaker state by venue: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "pricestream_connector_breaker_state";
/// Times a venue's breaker opened.
pub const BREAKER_OPENED: &str = "pricestream_connector_breaker_opened_total";
/// WebSocket sessions that ended and were reconnected, by venue and reason.
pub const WS_RECONNECTS: &str = "pricestream_connector_ws_reconnects_total";
/// WebSocket messages that could not be used, by venue and reason.
pub const WS_REJECTED: &str = "pricestream_connector_ws_messages_rejected_total";
/// Venue candles written as bars, by venue and origin (`live`, `heal`, `backfill`).
pub const CANDLES_WRITTEN: &str = "pricestream_connector_candles_written_total";
/// Missing buckets found by the completeness check, by venue.
pub const GAP_BUCKETS: &str = "pricestream_connector_gap_buckets_total";
/// Buckets the venue has no candle for, recorded as absent, by venue.
pub const ABSENT_BUCKETS: &str = "pricestream_connector_absent_buckets_total";

pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        QUOTES_PUBLISHED,
        Unit::Count,
        "Quotes published by connectors, by connector"
    );
    describe_counter!(
        RUNS,
        Unit::Count,
        "Ingestion runs that ended, by connector and status"
    );
    describe_gauge!(
        RUNS_ACTIVE,
        Unit::Count,
        "Ingestion runs in progress, by connector"
    );
    describe_histogram!(
        RUN_SECONDS,
        Unit::Seconds,
        "Duration of finished ingestion runs, by connector"
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "REST requests sent, by venue and outcome"
    );
    describe_counter!(
        HTTP_ERRORS,
        Unit::Count,
        "Failed REST attempts, by venue and error kind"
    );
    describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "REST request latency, by venue"
    );
    describe_counter!(
        RATE_LIMIT_WAITS,
        Unit::Count,
        "Requests held back by the venue's rate limiter, by venue"
    );
    describe_histogram!(
        RATE_LIMIT_WAIT_SECONDS,
        Unit::Seconds,
        "Time requests waited for the venue's rate limiter, by venue"
    );
    describe_gauge!(
        VENUE_USED_WEIGHT,
        Unit::Count,
        "The venue's own count of request weight used in its current window, by venue"
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state by venue: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        BREAKER_OPENED,
        Unit::Count,
        "Times a venue's circuit breaker opened"
    );
    describe_counter!(
        WS_RECONNECTS,
        Unit::Count,
        "WebSocket sessions that ended and were reconnected, by venue and reason"
    );
    describe_counter!(
        WS_REJECTED,
        Unit::Count,
        "WebSocket messages that could not be used, by venue and reason"
    );
    describe_counter!(
        CANDLES_WRITTEN,
        Unit::Count,
        "Venue candles written as 1m bars, by venue and origin"
    );
    describe_counter!(
        GAP_BUCKETS,
        Unit::Count,
        "Missing buckets found by the completeness check, by venue"
    );
    describe_counter!(
        ABSENT_BUCKETS,
        Unit::Count,
        "Buckets the venue has no candle for, recorded as absent, by venue"
    );
}
