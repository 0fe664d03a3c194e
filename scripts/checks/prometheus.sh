#!/usr/bin/env bash
# Metrics against real Prometheus tools:
#  1. `promtool check metrics` passes on a scrape of a running `pricestream run`;
#  2. a real Prometheus scrapes that instance, and every PromQL expression in the
#     dashboards evaluates without error and returns data (variables substituted).
# Both come from Debian's `prometheus` package, installed here when missing.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

command -v promtool >/dev/null && command -v prometheus >/dev/null || apt_install prometheus
command -v curl >/dev/null || apt_install curl
command -v promtool >/dev/null && command -v prometheus >/dev/null \
  || missing "promtool and prometheus (Debian package prometheus) are needed"
command -v python3 >/dev/null || missing "python3 is needed"

BIN=$(pricestream_bin)
WORK=$(mktemp -d)
PS_PID="" PROM_PID=""
cleanup() {
  for pid in $PROM_PID $PS_PID; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $PROM_PID $PS_PID; do
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

PROM_PORT=$(free_port)
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pricestream
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
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
