#!/usr/bin/env bash
# The Grafana dashboards pass a schema check: each is type-checked as
# `<dashboard JSON> satisfies CheckedDashboard` (grafana/schema-check/checked.ts, built on
# @grafana/schema's Dashboard) with `tsc --noEmit`. npm packages are installed from the
# committed package-lock.json into a cache outside the repository.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
command -v npm >/dev/null || missing "node and npm are needed for the dashboard schema check"

NPM_DIR="$CACHE/npm/grafana-schema"
mkdir -p "$NPM_DIR"
if ! cmp -s "$ROOT/grafana/schema-check/package-lock.json" "$NPM_DIR/package-lock.json" \
   || [ ! -x "$NPM_DIR/node_modules/.bin/tsc" ]; then
  cp "$ROOT/grafana/schema-check/package.json" "$ROOT/grafana/schema-check/package-lock.json" "$NPM_DIR/"
  note "npm ci in $NPM_DIR"
  (cd "$NPM_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
    || missing "npm ci of @grafana/schema and typescript failed"
fi

GEN="$NPM_DIR/gen"
rm -rf "$GEN" && mkdir -p "$GEN"
cp "$ROOT/grafana/schema-check/checked.ts" "$GEN/"
n=0
for f in "$ROOT"/grafana/dashboards/*.json; do
  name=$(basename "$f" .json | tr -c 'a-zA-Z0-9\n' '_')
  {
    printf "import { asDashboard, type CheckedDashboard } from './checked';\n"
    printf "export const dashboard = "
    printf "%s" "$(cat "$f")"
    printf " satisfies CheckedDashboard;\nexport const plain = asDashboard(dashboard);\n"
  } > "$GEN/$name.ts"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "no dashboards in grafana/dashboards"
cat > "$GEN/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "es2022",
    "module": "esnext",
    "moduleResolution": "bundler",
    "skipLibCheck": true,
    "noUnusedLocals": false,
    "typeRoots": []
  },
  "include": ["*.ts"]
}
JSON
# module resolution looks for node_modules upwards from gen/
(cd "$GEN" && "$NPM_DIR/node_modules/.bin/tsc" -p tsconfig.json) || fail "dashboards do not satisfy the Grafana schema (see above)"
note "$n dashboards satisfy @grafana/schema $(node -p "require('$NPM_DIR/node_modules/@grafana/schema/package.json').version") Dashboard"
