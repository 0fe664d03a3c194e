#!/usr/bin/env bash
# docker-compose.yml parses and validates against the Compose schema (docker-compose's own
# `config`, no Docker engine needed) with .env.example, sets every variable it uses, and
# its services match the real CLI and configuration keys (scripts/lib/check_compose.py).
# Also checks the Prometheus configuration with promtool.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

if ! command -v docker-compose >/dev/null; then
  apt_install docker-compose
fi
command -v docker-compose >/dev/null || missing "docker-compose (Debian package) is needed"
command -v promtool >/dev/null || apt_install prometheus
command -v promtool >/dev/null || missing "promtool (Debian package prometheus) is needed"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml || missing "PyYAML is needed"

BIN=$(pricestream_bin)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cd "$ROOT"
note "docker-compose config (schema, interpolation with .env.example)"
docker-compose --env-file .env.example -f docker-compose.yml config >"$WORK/resolved.yml" 2>"$WORK/stderr" \
  || { cat "$WORK/stderr" >&2; fail "docker-compose.yml does not validate"; }
if grep -i "warning" "$WORK/stderr"; then
  fail "docker-compose config warned (a variable missing from .env.example?)"
fi
note "promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml >/dev/null || fail "Prometheus configuration is invalid"
bash -n deploy/timescaledb/10-grafana-reader.sh || fail "deploy/timescaledb/10-grafana-reader.sh has a syntax error"
python3 "$ROOT/scripts/lib/check_compose.py" "$WORK/resolved.yml" "$BIN" || fail "docker-compose.yml does not match the project"
