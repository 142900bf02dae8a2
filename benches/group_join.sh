#!/usr/bin/env bash
# Consumer-group rebalance time of the real broker: see benches/group_join.py and
# benches/README.md. benches/client_bench.sh builds the broker and the client virtualenv first.
# Every argument goes to group_join.py (e.g. `--runs 3 --members 1,10 --json target/join.json`).
exec "$(dirname "$0")/client_bench.sh" group_join.py "$@"
