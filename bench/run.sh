#!/usr/bin/env bash
# `make bench`: release build, then
#   1. the side-by-side TLS comparison (nginx fixed response, lean Go webhook, pxguard)
#      from ../shared/bench/compare.sh,
#   2. pxguard's idle RSS and start-up-to-ready time,
#   3. the in-process micro-benchmark (decode + decide + encode; allocations per review),
#   4. a chart (bench/out/compare.png) of throughput and p99 against the baselines.
# Loopback only, bounded in time. Env: DURATION, ROUNDS, CONNS (see compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
echo "== building release (static Swift runtime, as shipped in an image)"
swift build -c release --static-swift-stdlib --scratch-path .build-static 2>&1 | grep -E 'error|warning: unre' || true
bin=.build-static/release/pxguard
harness=../shared/bench/compare.sh
[ -f "$harness" ] || { echo "bench: $harness not found (the shared harness lives beside this repository)" >&2; exit 1; }

echo "== idle RSS and start-up to ready"
python3 bench/startup.py "$bin" | tee "$out/startup.txt"

echo "== in-process micro-benchmark"
cc -shared -fPIC -O2 -o "$out/malloc-count.so" bench/malloc-count.c
(cd bench/micro && swift build -c release 2>&1 | grep -E 'error' || true)
LD_PRELOAD="$PWD/$out/malloc-count.so" bench/micro/.build/release/pxguard-micro \
  bench/reviews/pod-create.json bench/reviews/netpol-50k.json | tee "$out/micro.txt"

echo "== side by side over TLS (wrk, ${CONNS:-32} keep-alive connections)"
bash "$harness" "$bin" bench/reviews/pod-create.json | tee "$out/compare.txt"

python3 bench/chart.py "$out/compare.txt" "$out/compare.png" && echo "chart: $out/compare.png"
