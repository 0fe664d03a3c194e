#!/usr/bin/env bash
# Metrics against real Prometheus tools:
#  1. `promtool check metrics` passes on scrapes of two running instances: the embedded
#     `pricestream run`, and `run` through the test Kafka broker
#     ($PRICESTREAM_TEST_KAFKA_BROKERS) with a CoinGecko connector whose endpoint refuses
#     connections (so errors, rate-limit waits and an open circuit breaker are reported);
#  2. a real Prometheus scrapes both, and every PromQL expression in the dashboards
#     evaluates without error and returns data (variables substituted).
# Both come from Debian's `prometheus` package, installed here when missing.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

command -v promtool >/dev/null && command -v prometheus >/dev/null || apt_install prometheus
command -v curl >/dev/null || apt_install curl
command -v promtool >/dev/null && command -v prometheus >/dev/null \
  || missing "promtool and prometheus (Debian package prometheus) are needed"
command -v python3 >/dev/null || missing "python3 is needed"
[ -n "${PRICESTREAM_TEST_KAFKA_BROKERS:-}" ] \
  || missing "PRICESTREAM_TEST_KAFKA_BROKERS is not set: the Kafka panels need a broker (scripts/test starts one)"

BIN=$(pricestream_bin)
WORK=$(mktemp -d)
PS_PID="" KPS_PID="" PROM_PID=""
cleanup() {
  for pid in $PROM_PID $PS_PID $KPS_PID; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $PROM_PID $PS_PID $KPS_PID; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(free_port)
note "pricestream run on 127.0.0.1:$PORT (sped-up synthetic market)"
PRICESTREAM_DATA_DIR="$WORK/data" \
PRICESTREAM_API__LISTEN="127.0.0.1:$PORT" \
PRICESTREAM_CONNECTORS__SYNTHETIC__SPEED=60 \
PRICESTREAM_PIPELINE__IDLE_TIMEOUT_MS=500 \
PRICESTREAM_PIPELINE__WORKERS=2 \
PRICESTREAM_LOG=warn \
  "$BIN" --log-format json run 2>"$WORK/pricestream.log" &
PS_PID=$!
wait_http "http://127.0.0.1:$PORT/health/ready" 60 \
  || { cat "$WORK/pricestream.log" >&2; fail "pricestream did not become ready"; }

KPORT=$(free_port)
DEAD_PORT=$(free_port)   # nothing listens here: every CoinGecko request fails to connect
TOPICS="promcheck-$$-$(date +%s)"
note "pricestream run through Kafka on 127.0.0.1:$KPORT (broker $PRICESTREAM_TEST_KAFKA_BROKERS)"
PRICESTREAM_DATA_DIR="$WORK/kdata" \
PRICESTREAM_API__LISTEN="127.0.0.1:$KPORT" \
PRICESTREAM_CONNECTORS__SYNTHETIC__SPEED=240 \
PRICESTREAM_CONNECTORS__SYNTHETIC__TRADES_PER_SEC=1.0 \
PRICESTREAM_CONNECTORS__SYNTHETIC__START_MS=$(( ($(date +%s) - 2 * 86400) * 1000 )) \
PRICESTREAM_PIPELINE__ROLLUPS='["5m", "15m"]' \
PRICESTREAM_LAKE__QUOTES=false \
PRICESTREAM_PIPELINE__IDLE_TIMEOUT_MS=500 \
PRICESTREAM_KAFKA__BROKERS="$PRICESTREAM_TEST_KAFKA_BROKERS" \
PRICESTREAM_KAFKA__GROUP_ID="$TOPICS" \
PRICESTREAM_KAFKA__PARTITIONS=2 \
PRICESTREAM_KAFKA__TOPICS__QUOTES="$TOPICS.quotes" \
PRICESTREAM_KAFKA__TOPICS__BARS="$TOPICS.bars" \
PRICESTREAM_KAFKA__TOPICS__SIGNALS="$TOPICS.signals" \
PRICESTREAM_KAFKA__TOPICS__ALERTS="$TOPICS.alerts" \
PRICESTREAM_KAFKA__TOPICS__DLQ="$TOPICS.dlq" \
PRICESTREAM_CONNECTORS__COINGECKO__ENABLED=true \
PRICESTREAM_CONNECTORS__COINGECKO__BASE_URL="http://127.0.0.1:$DEAD_PORT/api/v3" \
PRICESTREAM_CONNECTORS__COINGECKO__POLL_INTERVAL_SECS=1 \
PRICESTREAM_CONNECTORS__COINGECKO__HTTP__MAX_RETRIES=1 \
PRICESTREAM_CONNECTORS__COINGECKO__HTTP__RETRY_INITIAL_DELAY_MS=50 \
PRICESTREAM_CONNECTORS__COINGECKO__HTTP__RETRY_MAX_DELAY_MS=100 \
PRICESTREAM_CONNECTORS__COINGECKO__HTTP__BREAKER_FAILURE_THRESHOLD=2 \
PRICESTREAM_CONNECTORS__COINGECKO__HTTP__BREAKER_OPEN_MS=2000 \
PRICESTREAM_CONNECTORS__COINGECKO__HTTP__WEIGHT_PER_WINDOW=2 \
PRICESTREAM_CONNECTORS__COINGECKO__HTTP__WINDOW_MS=3000 \
PRICESTREAM_LOG=warn \
  "$BIN" --log-format json run 2>"$WORK/pricestream-kafka.log" &
KPS_PID=$!
wait_http "http://127.0.0.1:$KPORT/health/live" 60 \
  || { cat "$WORK/pricestream-kafka.log" >&2; fail "pricestream (Kafka) did not come up"; }

# wait for closed bars to reach the sinks, so every histogram has observations
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/scrape.txt"
  grep -q '^pricestream_pipeline_bar_sink_latency_seconds_count{sink="lake"}' "$WORK/scrape.txt" && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/v1/symbols" >/dev/null
curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/scrape.txt"
note "promtool check metrics ($(grep -c '^pricestream_' "$WORK/scrape.txt") pricestream_* samples)"
promtool check metrics <"$WORK/scrape.txt" || fail "promtool check metrics found problems (above)"
for name in pricestream_pipeline_bar_sink_latency_seconds_bucket pricestream_process_cpu_seconds_total \
            pricestream_process_resident_memory_bytes pricestream_process_open_fds; do
  grep -q "^$name" "$WORK/scrape.txt" || fail "$name missing from the scrape"
done

# the Kafka instance (two days back, 4 simulated minutes a second; offsets move once a
# 15m rollup is final): offsets committed and the breaker opened
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$KPORT/metrics" >"$WORK/kscrape.txt"
  grep -q '^pricestream_kafka_commit_seconds_count' "$WORK/kscrape.txt" \
    && grep -q '^pricestream_connector_breaker_state' "$WORK/kscrape.txt" && break
  sleep 0.2
done
kill -0 "$KPS_PID" 2>/dev/null || { cat "$WORK/pricestream-kafka.log" >&2; fail "pricestream (Kafka) exited"; }
note "promtool check metrics, Kafka instance ($(grep -c '^pricestream_' "$WORK/kscrape.txt") pricestream_* samples)"
promtool check metrics <"$WORK/kscrape.txt" || fail "promtool check metrics found problems in the Kafka instance's scrape"
for name in pricestream_kafka_commit_seconds_count pricestream_kafka_messages_produced_total \
            pricestream_kafka_messages_consumed_total pricestream_connector_breaker_state \
            pricestream_connector_http_errors_total; do
  grep -q "^$name" "$WORK/kscrape.txt" || { tail -20 "$WORK/pricestream-kafka.log" >&2; fail "$name missing from the Kafka instance's scrape"; }
done

PROM_PORT=$(free_port)
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pricestream
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$PORT", "127.0.0.1:$KPORT"]
YAML
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "generated Prometheus config is invalid"
note "prometheus on 127.0.0.1:$PROM_PORT scraping every 1s"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn 2>"$WORK/prometheus.log" &
PROM_PID=$!
wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 60 \
  || { cat "$WORK/prometheus.log" >&2; fail "prometheus did not become ready"; }

# enough scrapes for rate() over the dashboards' windows
sleep 8
PYTHONPATH="$ROOT/scripts/lib" python3 "$ROOT/scripts/lib/check_promql.py" \
  "http://127.0.0.1:$PROM_PORT" --timeout 60 \
  || { tail -5 "$WORK/pricestream.log" >&2; fail "dashboard PromQL check failed"; }
kill -0 "$PS_PID" 2>/dev/null || fail "pricestream exited during the check"
kill -0 "$KPS_PID" 2>/dev/null || fail "pricestream (Kafka) exited during the check"
