#!/usr/bin/env bash
# Runs one of the real-client benchmarks (benches/<name>.py) against the real broker: builds
# target/release/ringlog (a no-op when it is up to date; skipped when RINGLOG_BIN names a binary),
# creates the client virtualenv target/client-venv when missing (scripts/client-tests.sh
# --setup-only), then runs the program with the virtualenv's Python. Called by
# benches/produce_load.sh and benches/group_join.sh: `client_bench.sh NAME.py [ARGS...]`.
set -euo pipefail
cd "$(dirname "$0")/.."

program=${1:?usage: benches/client_bench.sh NAME.py [ARGS...]}
shift
venv=target/client-venv

if [ -z "${RINGLOG_BIN:-}" ]; then
  cargo build --release --locked --bin ringlog
fi
if ! "$venv/bin/python" -c 'import confluent_kafka' >/dev/null 2>&1; then
  ./scripts/client-tests.sh --setup-only
fi

export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" "benches/$program" "$@"
