//! The readiness check against the real broker (`PRICESTREAM_TEST_KAFKA_BROKERS`) and
//! against a port nobody listens on.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use pricestream_kafka::admin::BrokerCheck;
use pricestream_kafka::KafkaConfig;

#[test]
fn the_broker_check_tells_a_live_broker_from_a_dead_port() {
    let Ok(brokers) = std::env::var("PRICESTREAM_TEST_KAFKA_BROKERS") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PRICESTREAM_TEST_KAFKA_BROKERS must be set in CI (scripts/test starts a broker)"
        );
        eprintln!("*** SKIPPED: PRICESTREAM_TEST_KAFKA_BROKERS is not set ***");
        return;
    };
    let live = KafkaConfig {
        brokers,
        ..KafkaConfig::default()
    };
    BrokerCheck::new(&live)
        .unwrap()
        .check(Duration::from_secs(10))
        .unwrap();
    // a port that was free a moment ago
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = KafkaConfig {
        brokers: format!("127.0.0.1:{port}"),
        ..KafkaConfig::default()
    };
    assert!(BrokerCheck::new(&dead)
        .unwrap()
        .check(Duration::from_secs(2))
        .is_err());
}
