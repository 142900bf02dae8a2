#!/usr/bin/env bash
# Real-client compatibility suite (tests/clients): installs kcat and a Python virtualenv with
# pinned kafka-python, confluent-kafka and pytest, builds the broker, and runs the suite against
# it. Extra arguments go to pytest (e.g. `-k kcat -x`).
#
#   --setup-only   install everything, build nothing, run nothing
#
# Environment: RINGLOG_BIN (broker binary; default: build target/release/ringlog),
# PYTHON (interpreter for the virtualenv; default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

setup_only=0
if [ "${1:-}" = "--setup-only" ]; then
  setup_only=1
  shift
fi

venv=target/client-venv
requirements=tests/clients/requirements.txt

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing $*: run as root, or install them with apt-get" >&2
    exit 1
  fi
  echo "installing: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# kcat is packaged as `kcat` on current Debian, as `kafkacat` on older releases.
if ! command -v kcat >/dev/null 2>&1 && ! command -v kafkacat >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq; fi
  if apt-cache show kcat >/dev/null 2>&1; then apt_install kcat; else apt_install kafkacat; fi
fi
KCAT="$(command -v kcat || command -v kafkacat)"
export KCAT

python="${PYTHON:-python3}"
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  # Debian's own python3 ships venv/ensurepip in a separate package.
  python=/usr/bin/python3
  if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
fi

if [ -d "$venv" ] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
  echo "removing broken virtualenv $venv"
  rm -rf "$venv"
fi
if [ ! -d "$venv" ]; then
  echo "creating virtualenv $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi
# Reinstall only when the pins change; pip itself is left as the venv ships it.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi

if [ "$setup_only" = 1 ]; then
  echo "client test tools ready: $venv, $KCAT"
  exit 0
fi

if [ -z "${RINGLOG_BIN:-}" ]; then
  cargo build --release --locked --bin ringlog
  RINGLOG_BIN="$PWD/target/release/ringlog"
fi
export RINGLOG_BIN

# The per-test timeout is set in tests/clients/pytest.ini. pytest exits 5 when it collected no
# test, which must fail too: `set -e` turns every non-zero status into a failure.
export PYTHONDONTWRITEBYTECODE=1
"$venv/bin/python" -m pytest tests/clients -q "$@"
