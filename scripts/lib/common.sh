# Helpers shared by scripts/checks/*.sh (sourced, not run).

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pricestream/target}"
CACHE="${PRICESTREAM_CACHE:-$HOME/.cache/pricestream}"

note() { printf '    %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# A tool that cannot be provided: a failure in CI, a loud skip elsewhere.
missing() {
  if [ "${CI:-}" = "true" ]; then
    fail "$*"
  fi
  printf 'SKIPPED (not CI): %s\n' "$*" >&2
  exit 0
}

APT_UPDATED=""
# apt_install PACKAGE... : installs Debian packages that are not installed yet.
apt_install() {
  local need=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || missing "apt-get is needed to install ${need[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if [ -z "$APT_UPDATED" ]; then
    note "apt-get update"
    $sudo apt-get update -qq >/dev/null || missing "apt-get update failed"
    APT_UPDATED=1
  fi
  note "apt-get install ${need[*]}"
  # no service starts inside the installer (there is no init here anyway)
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || missing "apt-get install ${need[*]} failed"
}

# The pricestream binary of this tree (built by `cargo test` before the checks run).
pricestream_bin() {
  # a binary given from outside (e.g. one built elsewhere) is used as it is
  if [ -n "${PRICESTREAM_TEST_BIN:-}" ]; then
    [ -x "$PRICESTREAM_TEST_BIN" ] || fail "PRICESTREAM_TEST_BIN=$PRICESTREAM_TEST_BIN is not executable"
    printf '%s\n' "$PRICESTREAM_TEST_BIN"
    return
  fi
  local bin="$CARGO_TARGET_DIR/debug/pricestream"
  if [ ! -x "$bin" ] || [ -n "$(find "$ROOT/src" "$ROOT"/*/src -newer "$bin" -name '*.rs' -print -quit 2>/dev/null)" ]; then
    (cd "$ROOT" && cargo build --locked --quiet --bin pricestream) || fail "cannot build pricestream"
  fi
  printf '%s\n' "$bin"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL SECONDS : waits until URL answers 2xx.
wait_http() {
  local url=$1 secs=$2 i=0
  while [ "$i" -lt $((secs * 10)) ]; do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}
