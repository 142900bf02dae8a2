#!/usr/bin/env bash
# Produce throughput of the real broker under a librdkafka load: see benches/produce_load.py and
# benches/README.md. benches/client_bench.sh builds the broker and the client virtualenv first.
# Every argument goes to produce_load.py (e.g. `--messages 200000 --json target/produce.json`).
exec "$(dirname "$0")/client_bench.sh" produce_load.py "$@"
