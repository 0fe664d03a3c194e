# shellcheck shell=bash
# A throwaway Kafka-protocol broker (tansu, in memory) for the Kafka tests. Sourced by
# scripts/test, which calls start_service_kafka before the tests and stop_service_kafka at
# exit.
#
# Exports PRICESTREAM_TEST_KAFKA_BROKERS. If it is already set, that broker is used as is.
# tansu is installed once with cargo (about 17 minutes on 2 cores) into ~/.cargo/bin and
# reused afterwards. In CI (CI=true) a broker that cannot be provided is a failure;
# elsewhere the Kafka tests then print a loud skip message.

TANSU_VERSION=0.6.0

_kafka_log() { printf '[kafka] %s\n' "$*" >&2; }

_kafka_bin() {
  local b
  for b in "$(command -v tansu 2>/dev/null)" "$HOME/.cargo/bin/tansu"; do
    [ -n "$b" ] && [ -x "$b" ] && { printf '%s\n' "$b"; return 0; }
  done
  return 1
}

_kafka_install() {
  _kafka_log "installing tansu $TANSU_VERSION with cargo (once; about 17 minutes on 2 cores)"
  # its own target dir, so the project's build cache is not mixed with the broker's
  CARGO_TARGET_DIR="$HOME/.cache/pricestream/tansu-build" \
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql \
    >"$HOME/.cache/pricestream/tansu-install.log" 2>&1 || {
      _kafka_log "cargo install tansu failed; see ~/.cache/pricestream/tansu-install.log"
      tail -20 "$HOME/.cache/pricestream/tansu-install.log" >&2
      return 1
    }
  rm -rf "$HOME/.cache/pricestream/tansu-build"
}

_kafka_free_port() {
  local port
  for port in $(seq 59092 59192); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  return 1
}

start_service_kafka() {
  if [ -n "${PRICESTREAM_TEST_KAFKA_BROKERS:-}" ]; then
    _kafka_log "using PRICESTREAM_TEST_KAFKA_BROKERS from the environment"
    return 0
  fi
  local bin
  if ! bin=$(_kafka_bin); then
    mkdir -p "$HOME/.cache/pricestream"
    _kafka_install || true
    bin=$(_kafka_bin) || {
      _kafka_log "no Kafka-protocol broker is available"
      [ "${CI:-}" = true ] && return 1
      return 0
    }
  fi
  local dir port
  dir=$(mktemp -d /tmp/pricestream-kafka.XXXXXX)
  port=$(_kafka_free_port) || { _kafka_log "no free port"; return 1; }
  "$bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$dir/broker.log" 2>&1 &
  echo $! >"$dir/broker.pid"
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export PSTEST_KAFKA_DIR="$dir"
      export PRICESTREAM_TEST_KAFKA_BROKERS="127.0.0.1:$port"
      _kafka_log "tansu started on port $port (pid $(cat "$dir/broker.pid")); PRICESTREAM_TEST_KAFKA_BROKERS=$PRICESTREAM_TEST_KAFKA_BROKERS"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  _kafka_log "the broker did not start:"
  cat "$dir/broker.log" >&2
  kill "$(cat "$dir/broker.pid")" 2>/dev/null || true
  return 1
}

stop_service_kafka() {
  local dir=${PSTEST_KAFKA_DIR:-}
  [ -n "$dir" ] && [ -f "$dir/broker.pid" ] || return 0
  kill "$(cat "$dir/broker.pid")" 2>/dev/null || true
  rm -rf "$dir"
  unset PSTEST_KAFKA_DIR PRICESTREAM_TEST_KAFKA_BROKERS
  _kafka_log "stopped"
}
