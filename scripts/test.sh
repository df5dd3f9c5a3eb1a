#!/usr/bin/env bash
# The whole test suite, installing what it needs on a fresh Debian machine (run as root, or with
# sudo available): the Python venv with the real `openai` SDK, then fmt, clippy and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse one build directory across clean checkouts (CI clones afresh each run).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchyard-target}"

# --- System packages (Debian), installed only when missing ------------------------------------
# Headless Chromium for the docs page test (Debian's package; no browser download), and a real
# redis-server (>= 7 for XAUTOCLAIM) that the Redis transport tests start on a free port, and
# PostgreSQL, whose throwaway clusters (initdb in a temp dir) the store tests start the same way.
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-liberation)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# --- Python venv with the real clients -------------------------------------------------------
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai, pytest' 2>/dev/null \
   || ! cmp -s tests/python/requirements.txt .venv/.requirements.installed; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/.requirements.installed
fi
export SWITCHYARD_PYTHON="$PWD/.venv/bin/python"

# --- Taplo (TOML schema linter, from npm) for the routes.toml schema tests ----------------------
TAPLO_VERSION=0.7.0
if ! [ -x .tools/node_modules/.bin/taplo ] || [ "$(cat .tools/.taplo-version 2>/dev/null)" != "$TAPLO_VERSION" ]; then
  command -v npm >/dev/null 2>&1 || { $SUDO apt-get update -qq; \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null; }
  npm install --prefix .tools --no-audit --no-fund --silent "@taplo/cli@$TAPLO_VERSION"
  echo "$TAPLO_VERSION" > .tools/.taplo-version
fi
export SWITCHYARD_TAPLO="$PWD/.tools/node_modules/.bin/taplo"

# --- Rust -------------------------------------------------------------------------------------
# The shared build directory may hold a `switchyard` binary linked from another checkout (cargo
# re-links the uplifted binary only when it is missing): remove it so the CLI tests run this one.
rm -f "$CARGO_TARGET_DIR/debug/switchyard"
# The structure rules of the developer guide: no import cycle among the top-level modules of
# src/, and no function over 80 lines outside an exhaustive match.
python3 scripts/module_cycles.py
python3 scripts/long_functions.py
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
