#!/usr/bin/env bash
# Installs the Swagger UI files that `/docs` serves (npm package swagger-ui-dist, the
# version pinned in api/src/openapi.rs) into a directory, default
# ~/.cache/pricestream/swagger-ui; point `api.docs_assets_dir` at it. Without it, /docs
# loads the same files from a public CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-$HOME/.cache/pricestream/swagger-ui}"
VERSION=$(sed -n 's/^pub const SWAGGER_UI_VERSION: &str = "\(.*\)";/\1/p' api/src/openapi.rs)
[ -n "$VERSION" ] || { echo "SWAGGER_UI_VERSION not found in api/src/openapi.rs" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is needed" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
mkdir -p "$DEST"
for f in swagger-ui.css swagger-ui-bundle.js favicon-32x32.png; do
  cp "$TMP/package/$f" "$DEST/$f"
done
echo "swagger-ui-dist $VERSION installed in $DEST (set api.docs_assets_dir = \"$DEST\")"
