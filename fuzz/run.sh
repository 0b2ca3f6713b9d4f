#!/usr/bin/env bash
# Builds the libFuzzer targets (coverage + AddressSanitizer) and runs each for
# N seconds (default 60) over a copy of its seed corpus. Crashers land in
# fuzz/crash-*; keep each as a regression test (Tests/*Regression*).
# Leak detection is off: Swift stores references inside enum payloads with tag
# bits LeakSanitizer cannot see through, so it reports reachable globals as leaks.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ $# -gt 0 ] || targets=(http chunked tls-records client watch json review config)
swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library 2>&1 | grep -E 'error' || true
for t in "${targets[@]}"; do
  [ -x .build/release/fuzz-$t ] || { echo "fuzz-$t was not built (see the build errors above)" >&2; exit 1; }
  work=$(mktemp -d /tmp/pxguard-fuzz-$t.XXXXXX)
  cp corpus/$t/* "$work"/
  echo "== fuzz-$t for ${seconds}s"
  # Swift's own crash backtracer off: libFuzzer and ASan report the crash, and a
  # backtracer left holding the pipe would hang the run. `timeout` bounds it anyway.
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 timeout -k 5 $((seconds + 60)) .build/release/fuzz-$t "$work" -max_total_time="$seconds" -max_len=65536 -timeout=25 -rss_limit_mb=2048 \
    -artifact_prefix="$PWD/crash-$t-" -print_final_stats=1 -detect_leaks=0 2>&1 | grep -E 'Done|stat::number_of_executed_units|ERROR|SUMMARY|crash-' || true
  ls crash-$t-* >/dev/null 2>&1 && { echo "fuzz-$t found a crash: $(ls crash-$t-*)" >&2; exit 1; }
  rm -rf "$work"
done
echo "fuzz: no crashes"
