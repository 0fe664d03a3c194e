# shellcheck shell=bash
# A throwaway PostgreSQL cluster for the store tests. Sourced by scripts/test, which calls
# start_service_postgres before the tests and stop_service_postgres at exit.
#
#   source scripts/services/postgres.sh; start_service_postgres; …; stop_service_postgres
#
# Exports PRICESTREAM_TEST_PG_URL. If it is already set, the database it names is used as
# is and nothing is started. In CI (CI=true) a cluster that cannot be started is a failure;
# elsewhere the PostgreSQL tests then print a loud skip message.

_pg_log() { printf '[postgres] %s\n' "$*" >&2; }

_pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { printf '%s\n' "$d"; return 0; }
  done
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

_pg_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  [ "$(id -u)" = 0 ] || return 1
  _pg_log "installing postgresql with apt-get"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

_pg_free_port() {
  local port
  for port in $(seq 55432 55532); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  return 1
}

# Runs a command as the cluster's OS user (postgres refuses to run as root).
_pg_as() {
  if [ "$(id -u)" = 0 ]; then
    local cmd
    cmd=$(printf '%q ' "$@")
    su -s /bin/bash postgres -c "$cmd"
  else
    "$@"
  fi
}

start_service_postgres() {
  if [ -n "${PRICESTREAM_TEST_PG_URL:-}" ]; then
    _pg_log "using PRICESTREAM_TEST_PG_URL from the environment"
    return 0
  fi
  local bindir
  if ! bindir=$(_pg_bindir); then
    _pg_install || true
    bindir=$(_pg_bindir) || {
      _pg_log "PostgreSQL is not installed and could not be installed"
      [ "${CI:-}" = true ] && return 1
      return 0
    }
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
  fi
  local dir port
  dir=$(mktemp -d /tmp/pricestream-pg.XXXXXX)
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  port=$(_pg_free_port) || { _pg_log "no free port"; return 1; }
  _pg_as "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
    _pg_log "initdb failed:"; cat "$dir/initdb.log" >&2; return 1
  }
  # A disposable test cluster: enough connections for parallel tests, and durability off
  # unless PRICESTREAM_TEST_PG_DURABLE=1 (use that for benchmark figures).
  local opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB"
  if [ "${PRICESTREAM_TEST_PG_DURABLE:-0}" != 1 ]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  _pg_as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null || {
    _pg_log "pg_ctl start failed:"; cat "$dir/server.log" >&2; return 1
  }
  _pg_as "$bindir/createdb" -h "$dir" -p "$port" -U postgres pricestream_test || {
    _pg_log "createdb failed"; return 1
  }
  export PSTEST_PG_DIR="$dir" PSTEST_PG_BINDIR="$bindir"
  export PRICESTREAM_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/pricestream_test"
  _pg_log "started on port $port (data in $dir); PRICESTREAM_TEST_PG_URL=$PRICESTREAM_TEST_PG_URL"
}

stop_service_postgres() {
  local dir=${PSTEST_PG_DIR:-}
  [ -n "$dir" ] && [ -d "$dir/data" ] || return 0
  _pg_as "$PSTEST_PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  unset PSTEST_PG_DIR PSTEST_PG_BINDIR PRICESTREAM_TEST_PG_URL
  _pg_log "stopped"
}
