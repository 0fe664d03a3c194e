//! Metric names of the Kafka transport.

pub const PRODUCED: &str = "pricestream_kafka_messages_produced_total";
pub const PRODUCE_ERRORS: &str = "pricestream_kafka_produce_errors_total";
pub const PRODUCER_RENEWALS: &str = "pricestream_kafka_producer_renewals_total";
pub const PRODUCE_SECONDS: &str = "pricestream_kafka_produce_batch_seconds";
pub const CONSUMED: &str = "pricestream_kafka_messages_consumed_total";
pub const CONSUME_ERRORS: &str = "pricestream_kafka_consume_errors_total";
pub const CONSUMER_LAG: &str = "pricestream_kafka_consumer_lag_messages";
pub const COMMITS: &str = "pricestream_kafka_commits_total";
pub const COMMIT_SECONDS: &str = "pricestream_kafka_commit_seconds";
pub const REBALANCES: &str = "pricestream_kafka_rebalances_total";
pub const REPLAY_SKIPPED: &str = "pricestream_kafka_replay_skipped_total";
pub const REDELIVERED: &str = "pricestream_kafka_redelivered_total";
pub const BROKER_UP: &str = "pricestream_kafka_broker_up";

/// Registers descriptions with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(PRODUCED, "Messages acknowledged by the broker, by topic.");
    describe_counter!(
        PRODUCE_ERRORS,
        "Failed deliveries (each retried), by topic."
    );
    describe_counter!(
        PRODUCER_RENEWALS,
        "Producers replaced after a fatal error (the failed messages went out through the new one)."
    );
    describe_histogram!(
        PRODUCE_SECONDS,
        Unit::Seconds,
        "Time to deliver one batch of messages, by topic."
    );
    describe_counter!(CONSUMED, "Messages read from quotes.v1.");
    describe_counter!(CONSUME_ERRORS, "Consumer errors reported by the client.");
    describe_gauge!(
        CONSUMER_LAG,
        "Messages between the consumer's position and the partition end."
    );
    describe_counter!(COMMITS, "Offset commits by outcome.");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Offset commit latency.");
    describe_counter!(
        REBALANCES,
        "Consumer-group rebalances by kind (assign, revoke)."
    );
    describe_counter!(
        REPLAY_SKIPPED,
        "Replayed messages skipped because their output was durable before a restart."
    );
    describe_gauge!(
        BROKER_UP,
        "1 when the broker answered the last metadata request, else 0."
    );
}
