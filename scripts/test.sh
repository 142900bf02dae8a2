#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what the tests need on a Debian
# machine (when run as root), then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v mount >/dev/null 2>&1 || missing+=(mount)
command -v git >/dev/null 2>&1 || missing+=(git) # glommio's build script clones liburing
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# hwloc (shard pinning by topology) and libudev, which the hwlocality crate links against.
pkg-config --exists hwloc 2>/dev/null || missing+=(libhwloc-dev)
pkg-config --exists libudev 2>/dev/null || missing+=(libudev-dev)
# promtool checks the /metrics output and ops/ alert rules; systemd-analyze the systemd unit.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing ${missing[*]}: run as root, or install them with apt-get" >&2
    exit 1
  fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked

# Real clients (kafka-python, confluent-kafka/librdkafka, kcat) against the real binary; the
# debug build that `cargo test` just made is fast enough and saves a release build.
cargo build --locked --bin ringlog
RINGLOG_BIN=target/debug/ringlog ./scripts/client-tests.sh
