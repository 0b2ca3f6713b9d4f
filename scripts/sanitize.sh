#!/usr/bin/env bash
# The whole test suite under AddressSanitizer, then ThreadSanitizer, each in its
# own build folder. Leak detection is off: Swift keeps references in enum payloads
# with tag bits that LeakSanitizer cannot follow, so reachable globals show up as
# leaks; the fuzz targets and the fault test watch memory growth instead.
# PXGUARD_SANITIZER tells the few tests that stream tens of megabytes to use smaller
# objects (the same code paths; the full sizes run in `make test`): TSan's 10-20x slower
# JSON streaming would otherwise be measured instead of races.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
if [ "$which" = all ] || [ "$which" = address ]; then
  echo "== swift test --sanitize=address"
  PXGUARD_SANITIZER=address ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 swift test --sanitize=address --scratch-path .build-asan 2>&1 \
    | grep -E 'error:|ERROR|SUMMARY|✘|Test run with|Executed' ; test ${PIPESTATUS[0]} -eq 0
fi
if [ "$which" = all ] || [ "$which" = thread ]; then
  echo "== swift test --sanitize=thread"
  PXGUARD_SANITIZER=thread TSAN_OPTIONS=halt_on_error=1 swift test --sanitize=thread --scratch-path .build-tsan 2>&1 \
    | grep -E -A12 'error:|WARNING: ThreadSanitizer|SUMMARY|✘|Test run with|Executed' ; test ${PIPESTATUS[0]} -eq 0
fi
