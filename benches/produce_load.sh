#!/usr/bin/env bash
# Produce throughput of the real broker under a librdkafka load: see benches/produce_load.py and
# benches/README.md. Builds target/release/ringlog (a no-op when it is up to date; skipped when
# RINGLOG_BIN names a binary), creates the client virtualenv target/client-venv when missing
# (scripts/client-tests.sh --setup-only), then runs produce_load.py with the virtualenv's Python.
# Every argument goes to produce_load.py (e.g. `--messages 200000 --json target/produce.json`).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/client-venv

if [ -z "${RINGLOG_BIN:-}" ]; then
  cargo build --release --locked --bin ringlog
fi
if ! "$venv/bin/python" -c 'import confluent_kafka' >/dev/null 2>&1; then
  ./scripts/client-tests.sh --setup-only
fi

export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" benches/produce_load.py "$@"
