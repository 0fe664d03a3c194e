//! Metric names of the connectors.

pub const QUOTES_PUBLISHED: &str = "pricestream_connector_quotes_published_total";
/// Ingestion runs that ended, by connector and status (`completed`, `failed`).
pub const RUNS: &str = "pricestream_connector_runs_total";
/// Ingestion runs in progress, by connector.
pub const RUNS_ACTIVE: &str = "pricestream_connector_runs_active";
/// Wall-clock duration of finished ingestion runs, by connector.
pub const RUN_SECONDS: &str = "pricestream_connector_run_duration_seconds";

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
}
