#!/usr/bin/env bash
# The whole test suite, installing what it needs on a fresh Debian machine (run as root, or with
# sudo available): the Python venv with the real `openai` SDK, then fmt, clippy and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse one build directory across clean checkouts (CI clones afresh each run).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchyard-target}"

# --- System packages -------------------------------------------------------------------------
# The Redis transport tests start a real redis-server (>= 7 for XAUTOCLAIM) on a free port.
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

# --- Python venv with the real clients -------------------------------------------------------
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai, pytest' 2>/dev/null \
   || ! cmp -s tests/python/requirements.txt .venv/.requirements.installed; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/.requirements.installed
fi
export SWITCHYARD_PYTHON="$PWD/.venv/bin/python"

# --- Rust -------------------------------------------------------------------------------------
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
