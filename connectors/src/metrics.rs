//! Metric names of the connectors.

pub const QUOTES_PUBLISHED: &str = "pricestream_connector_quotes_published_total";

pub fn describe() {
    metrics::describe_counter!(
        QUOTES_PUBLISHED,
        metrics::Unit::Count,
        "Quotes published by connectors, by connector"
    );
}
