//! Metric names of the pipeline (Prometheus style, bounded labels).

pub const QUOTES_INGESTED: &str = "pricestream_pipeline_quotes_ingested_total";
pub const QUOTES_REJECTED: &str = "pricestream_pipeline_quotes_rejected_total";
pub const LATE_EVENTS: &str = "pricestream_pipeline_late_events_total";
pub const BARS_EMITTED: &str = "pricestream_pipeline_bars_emitted_total";
pub const BAR_REVISIONS: &str = "pricestream_pipeline_bar_revisions_total";
pub const BARS_FILLED: &str = "pricestream_pipeline_bars_filled_total";
pub const WATERMARK_LAG: &str = "pricestream_pipeline_watermark_lag_seconds";
pub const WATERMARK: &str = "pricestream_pipeline_watermark_timestamp_seconds";
pub const SINK_BATCH_ROWS: &str = "pricestream_sink_batch_rows";
/// Worker batches written together in one round of the sink.
pub const SINK_ROUND_BATCHES: &str = "pricestream_sink_round_batches";
pub const SINK_WRITE_SECONDS: &str = "pricestream_sink_write_duration_seconds";
pub const SINK_ROWS_WRITTEN: &str = "pricestream_sink_rows_written_total";
pub const SINK_RETRIES: &str = "pricestream_sink_retries_total";
pub const SIGNALS_EMITTED: &str = "pricestream_pipeline_signals_emitted_total";
pub const DEAD_LETTERS: &str = "pricestream_pipeline_dead_letters_total";
/// Window close (the bar leaves the window operator) → the bar is durable in a sink.
pub const BAR_SINK_LATENCY: &str = "pricestream_pipeline_bar_sink_latency_seconds";
/// Alerts fired by the evaluator, by source (`quote`, `signal`).
pub const ALERTS_FIRED: &str = "pricestream_alerts_fired_total";
/// Triggers newly stored by the sink (replays are not counted).
pub const ALERT_TRIGGERS: &str = "pricestream_alerts_triggers_total";
/// Active rules in the evaluator's index.
pub const ALERT_RULES_ACTIVE: &str = "pricestream_alerts_rules_active";
/// Webhook attempts by outcome (`delivered`, `http_error`, `timeout`, `connect_error`,
/// `refused`, `error`).
pub const WEBHOOK_ATTEMPTS: &str = "pricestream_webhook_attempts_total";
/// What followed each recorded attempt, by result (`delivered`, `retry`, `dead`).
pub const WEBHOOK_DELIVERIES: &str = "pricestream_webhook_deliveries_total";
/// Duration of one webhook request.
pub const WEBHOOK_REQUEST_SECONDS: &str = "pricestream_webhook_request_duration_seconds";
/// Ingest of the quote (or signal) that fired an alert → its webhook acknowledged.
pub const WEBHOOK_DELIVERY_LATENCY: &str = "pricestream_webhook_delivery_latency_seconds";

/// Outcomes of a webhook attempt (label `outcome`).
pub const WEBHOOK_OUTCOMES: [&str; 6] = [
    "delivered",
    "http_error",
    "timeout",
    "connect_error",
    "refused",
    "error",
];

/// The bounded set of dead-letter and rejection reasons (label `reason`); anything else is
/// counted as `other`.
pub const REASONS: [&str; 7] = [
    "late",
    "malformed",
    "schema",
    "invalid_price",
    "bad_timestamp",
    "unsupported_version",
    "other",
];

/// Keeps the `reason` label set bounded.
pub fn reason_label(reason: &str) -> &'static str {
    REASONS
        .iter()
        .copied()
        .find(|r| *r == reason)
        .unwrap_or("other")
}

/// The sinks (label `sink`).
pub const SINKS: [&str; 6] = [
    "store",
    "lake",
    "dlq",
    "store_signals",
    "store_quotes",
    "store_alerts",
];

/// Registers descriptions so `/metrics` carries HELP lines, and creates the counters of
/// the bounded label sets at zero, so a rate over them exists before the first event
/// (an absent series and a zero rate look different on a dashboard and in alerts).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(QUOTES_INGESTED, Unit::Count, "Quotes read by the pipeline");
    describe_counter!(
        QUOTES_REJECTED,
        Unit::Count,
        "Messages rejected at the pipeline entry, by reason"
    );
    describe_counter!(
        LATE_EVENTS,
        Unit::Count,
        "Quotes later than the allowed lateness (sent to the dead-letter queue)"
    );
    describe_counter!(
        BARS_EMITTED,
        Unit::Count,
        "Bars emitted by the window operator, by interval"
    );
    describe_counter!(
        BAR_REVISIONS,
        Unit::Count,
        "Bar emissions that revise an earlier one because of late data"
    );
    describe_counter!(
        BARS_FILLED,
        Unit::Count,
        "Gap-filled 1m bars (minutes without quotes, carrying the last close)"
    );
    describe_gauge!(
        WATERMARK_LAG,
        Unit::Seconds,
        "Wall-clock time minus the pipeline watermark"
    );
    describe_gauge!(
        WATERMARK,
        Unit::Seconds,
        "The pipeline's event-time watermark as a Unix timestamp"
    );
    describe_histogram!(SINK_BATCH_ROWS, Unit::Count, "Rows per sink batch, by sink");
    describe_histogram!(
        SINK_ROUND_BATCHES,
        Unit::Count,
        "Worker batches the sink wrote together in one round"
    );
    describe_histogram!(
        SINK_WRITE_SECONDS,
        Unit::Seconds,
        "Time to make one sink batch durable, by sink"
    );
    describe_counter!(SINK_ROWS_WRITTEN, Unit::Count, "Rows made durable, by sink");
    describe_counter!(
        SINK_RETRIES,
        Unit::Count,
        "Sink writes retried after a retryable error, by sink"
    );
    describe_counter!(
        DEAD_LETTERS,
        Unit::Count,
        "Messages stored in the dead-letter queue, by reason"
    );
    describe_histogram!(
        BAR_SINK_LATENCY,
        Unit::Seconds,
        "Time from a bar's emission by the window operator to its durable write, by sink"
    );

    describe_counter!(
        ALERTS_FIRED,
        Unit::Count,
        "Alerts fired by the evaluator, by source (quote, signal)"
    );
    describe_counter!(
        ALERT_TRIGGERS,
        Unit::Count,
        "Alert triggers stored and queued for delivery (replays not counted)"
    );
    describe_gauge!(
        ALERT_RULES_ACTIVE,
        Unit::Count,
        "Active alert rules in the evaluator's index"
    );
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        Unit::Count,
        "Webhook attempts, by outcome"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        Unit::Count,
        "What followed each webhook attempt (delivered, retry, dead)"
    );
    describe_histogram!(
        WEBHOOK_REQUEST_SECONDS,
        Unit::Seconds,
        "Duration of one webhook request"
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from the ingest of the quote that fired an alert to its acknowledged webhook"
    );
    for outcome in WEBHOOK_OUTCOMES {
        metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(0);
    }
    for result in ["delivered", "retry", "dead"] {
        metrics::counter!(WEBHOOK_DELIVERIES, "result" => result).increment(0);
    }
    metrics::counter!(ALERT_TRIGGERS).increment(0);
    metrics::counter!(LATE_EVENTS).increment(0);
    metrics::counter!(BAR_REVISIONS).increment(0);
    metrics::counter!(BARS_FILLED).increment(0);
    metrics::counter!(QUOTES_INGESTED).increment(0);
    metrics::counter!(BARS_EMITTED, "interval" => "1m").increment(0);
    for reason in REASONS {
        metrics::counter!(DEAD_LETTERS, "reason" => reason).increment(0);
        if reason != "late" {
            metrics::counter!(QUOTES_REJECTED, "reason" => reason).increment(0);
        }
    }
    for sink in SINKS {
        metrics::counter!(SINK_RETRIES, "sink" => sink).increment(0);
    }
}
