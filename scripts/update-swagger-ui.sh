#!/usr/bin/env bash
# Replaces the vendored Swagger UI (openapi/ui/swagger-ui-dist/) with another published version
# of the npm package `swagger-ui-dist`, and points the gateway's versioned asset URLs at it.
# A development-time step (needs npm); the build and the tests never touch the network.
#
#   bash scripts/update-swagger-ui.sh 5.35.0
#
# Then: cargo test (the docs page tests load the new files in Chromium), look at
# target/docs-screenshot.png, and commit openapi/ui/ and src/routes/docs.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: $0 VERSION (e.g. 5.35.0)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
got="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$work/package/package.json")"
[ "$got" = "$version" ] || { echo "npm gave version $got, not $version" >&2; exit 1; }

dest=openapi/ui/swagger-ui-dist
rm -rf "$dest"
mkdir -p "$dest"
# Only what the page loads, plus the licence texts and package.json (the version, checked by a
# unit test against the version in src/routes/docs.rs).
for f in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-32x32.png \
         LICENSE NOTICE package.json; do
  cp "$work/package/$f" "$dest/$f"
done
sed -i -E "s/^( *)\"[0-9]+\.[0-9]+\.[0-9]+\"$/\1\"$version\"/" src/routes/docs.rs
grep -q "\"$version\"" src/routes/docs.rs || { echo "could not set the version in src/routes/docs.rs" >&2; exit 1; }
echo "vendored swagger-ui-dist $version into $dest"
