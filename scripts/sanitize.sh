#!/usr/bin/env bash
# Memory-safety checks, apart from scripts/test.sh (they take an hour or more on 2 cores):
#
#   1. the whole cargo test suite under AddressSanitizer (nightly rustc, -Zsanitizer=address,
#      its own target dir target/asan, so the normal build stays warm); the integration tests
#      then start the ASAN-built `ringlog`, and every instrumented process writes its reports
#      under the run's report directory, which must stay empty;
#   2. a mixed-client soak (tests/soak/soak.py) against the ASAN-built `ringlog serve --smp 2`;
#   3. the same soak against a release build under glibc's malloc checking. glibc 2.34 and
#      later (Debian 12 has 2.36) honour MALLOC_CHECK_ and glibc.malloc.check only with
#      libc_malloc_debug.so preloaded, so it is; MALLOC_PERTURB_ is honoured by libc itself.
#
# Usage: scripts/sanitize.sh [--short] [--duration-s N] [--no-tests] [--no-asan-soak]
#                            [--no-malloc-soak] [--leaks]
#   --short        60 s soaks instead of 600 s (a smoke run; the suite still runs whole)
#   --duration-s   length of each soak in seconds
#   --leaks        LeakSanitizer on (off by default: glommio leaves its tasks and buffers to
#                  the process exit on purpose, which is not a memory-safety matter)
# Reports and logs go to target/sanitize/<date>/. Exit status 0 only if every step passed.
set -euo pipefail
cd "$(dirname "$0")/.."

duration_s=600
run_tests=1
run_asan_soak=1
run_malloc_soak=1
detect_leaks=0
while [ $# -gt 0 ]; do
  case "$1" in
    --short) duration_s=60 ;;
    --duration-s) duration_s="$2"; shift ;;
    --no-tests) run_tests=0 ;;
    --no-asan-soak) run_asan_soak=0 ;;
    --no-malloc-soak) run_malloc_soak=0 ;;
    --leaks) detect_leaks=1 ;;
    *) echo "unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
  esac
  shift
done

target=x86_64-unknown-linux-gnu
asan_dir=target/asan
asan_bin="$PWD/$asan_dir/$target/debug/ringlog"
out="$PWD/target/sanitize/$(date -u +%Y%m%dT%H%M%SZ)"
reports="$out/asan-reports"
mkdir -p "$reports"
malloc_debug="$(ldconfig -p | awk '/libc_malloc_debug\.so\.0 /{print $NF; exit}')"

# Whatever this script started goes with it: each soak kills its broker's process group on
# exit, and the broker pid files catch a soak that was itself killed.
children=()
cleanup() {
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${children[@]}"; do wait "$pid" 2>/dev/null || true; done
  for pidfile in "$out"/*/broker.pid; do
    [ -f "$pidfile" ] || continue
    kill -KILL -- "-$(cat "$pidfile")" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 1
fi
./scripts/client-tests.sh --setup-only >/dev/null
python=target/client-venv/bin/python

# ASan for the Rust code only. cc-rs would instrument the C dependencies too (it reads
# CARGO_CFG_SANITIZE), and librdkafka's own configure then cannot link the instrumented zstd;
# the C code is the CLI's librdkafka and glommio's liburing, neither of which the broker's
# memory management goes through.
asan_env=(
  CARGO_TARGET_DIR="$asan_dir"
  RUSTFLAGS="-Zsanitizer=address"
  RUSTDOCFLAGS="-Zsanitizer=address"
  CFLAGS="-fno-sanitize=address"
  CXXFLAGS="-fno-sanitize=address"
)
asan_options="detect_leaks=$detect_leaks:halt_on_error=1:print_summary=1:log_path=$reports/asan"

failed=()
step() { echo; echo "==== $* ($(date -u +%H:%M:%S))"; }

if [ "$run_tests" = 1 ]; then
  step "test suite under AddressSanitizer"
  started=$SECONDS
  if env "${asan_env[@]}" ASAN_OPTIONS="$asan_options" \
      cargo +nightly test --target "$target" --locked 2>&1 | tee "$out/asan-tests.log"; then
    echo "test suite under ASan passed in $((SECONDS - started)) s"
  else
    failed+=("test suite under ASan (log: $out/asan-tests.log)")
  fi
  # The integration tests must have run the instrumented broker, not some other build.
  # Not `grep -q`: it stops reading early, and nm's SIGPIPE would fail the pipeline.
  if ! nm "$asan_bin" 2>/dev/null | grep __asan_init >/dev/null; then
    failed+=("$asan_bin is not ASan-instrumented")
  elif ! grep -lqa "$asan_bin" "$asan_dir/$target"/debug/deps/broker_startup-*; then
    failed+=("the integration tests do not start $asan_bin")
  fi
fi

asan_reports() {
  if compgen -G "$reports/asan.*" >/dev/null; then
    failed+=("AddressSanitizer reports in $reports: $(ls "$reports" | tr '\n' ' ')")
    head -n 60 "$reports"/asan.* || true
  fi
}
if [ "$run_tests" = 1 ]; then asan_reports; fi

soak() {
  local label="$1" binary="$2"
  shift 2
  step "soak $label: $duration_s s"
  mkdir -p "$out/$label"
  # In the background, so that a signal to this script reaches its trap at once.
  "$python" tests/soak/soak.py --label "$label" --binary "$binary" \
    --duration-s "$duration_s" --workdir "$out/$label" "$@" > >(tee "$out/$label.log") 2>&1 &
  local pid=$!
  children+=("$pid")
  if ! wait "$pid"; then
    failed+=("soak $label (log: $out/$label.log, broker log: $out/$label/broker.log)")
  fi
}

if [ "$run_asan_soak" = 1 ]; then
  # `test --no-run`, not `build`: the binary the test suite built, with the same features
  # (dev-dependencies unify some), so the soak after the suite compiles nothing again.
  env "${asan_env[@]}" cargo +nightly test --target "$target" --locked --no-run
  soak asan "$asan_bin" --env "ASAN_OPTIONS=$asan_options"
  asan_reports
fi

if [ "$run_malloc_soak" = 1 ]; then
  if [ -z "$malloc_debug" ] || [ ! -e "$malloc_debug" ]; then
    failed+=("libc_malloc_debug.so.0 not found (glibc 2.34+, Debian: libc6): cannot check malloc")
  else
    cargo build --release --locked --bin ringlog
    soak malloc-check "$PWD/target/release/ringlog" \
      --env "LD_PRELOAD=$malloc_debug" --env "MALLOC_CHECK_=3" --env "MALLOC_PERTURB_=165" \
      --env "GLIBC_TUNABLES=glibc.malloc.check=3:glibc.malloc.perturb=165"
  fi
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "sanitize: FAILED"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
echo "sanitize: passed (logs in $out)"
