#!/usr/bin/env bash
# Consumer-group rebalance time of the real broker: see benches/group_join.py and
# benches/README.md. Builds target/release/ringlog (a no-op when it is up to date; skipped when
# RINGLOG_BIN names a binary), creates the client virtualenv target/client-venv when missing
# (scripts/client-tests.sh --setup-only), then runs group_join.py with the virtualenv's Python.
# Every argument goes to group_join.py (e.g. `--runs 3 --members 1,10 --json target/join.json`).
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
exec "$venv/bin/python" benches/group_join.py "$@"
