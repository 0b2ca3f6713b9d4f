#!/usr/bin/env bash
# `make bench`: release build, then
#   1. the side-by-side TLS comparison (nginx fixed response, lean Go webhook, pxguard)
#      from ../shared/bench/compare.sh,
#   2. pxguard's idle RSS and start-up-to-ready time,
#   3. the in-process micro-benchmark (decode + decide + encode; allocations per review),
#      and the worst-case reviews (bench/worst-case.sh: time, allocations, instructions, peak RSS),
#   4. the same comparison with pxguard on one event loop (nginx runs one worker), and
#      again with nginx on two workers against pxguard's defaults (like for like),
#   5. CPU time per request, nginx against pxguard, alternating in one run,
#   6. user-space instructions per request under callgrind, nginx against pxguard (noise-free),
#   7. a chart (bench/out/compare.png) of throughput and p99 against the baselines.
# Loopback only, bounded in time. Env: DURATION, ROUNDS, CONNS (see compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
echo "== building release (static Swift runtime, as shipped in an image)"
swift build -c release --static-swift-stdlib --scratch-path .build-static 2>&1 | grep -E 'error|warning: unre' || true
bin=.build-static/release/pxguard
harness=${BENCH_HARNESS:-../shared/bench/compare.sh}
[ -f "$harness" ] || { echo "bench: $harness not found (the shared harness lives beside this repository; set BENCH_HARNESS to its compare.sh)" >&2; exit 1; }

echo "== idle RSS and start-up to ready"
python3 bench/startup.py "$bin" | tee "$out/startup.txt"

echo "== in-process micro-benchmark"
cc -shared -fPIC -O2 -o "$out/malloc-count.so" bench/malloc-count.c
(cd bench/micro && swift build -c release 2>&1 | grep -E 'error' || true)
LD_PRELOAD="$PWD/$out/malloc-count.so" bench/micro/.build/release/pxguard-micro \
  bench/reviews/pod-create.json bench/reviews/netpol-50k.json | tee "$out/micro.txt"

echo "== worst-case reviews: a 40,000-except policy and a 3 MiB review of each kind the rules read"
bash bench/worst-case.sh "$bin" bench/micro/.build/release/pxguard-micro "$out/malloc-count.so" "$out"

echo "== side by side over TLS (wrk, ${CONNS:-32} keep-alive connections)"
bash "$harness" "$bin" bench/reviews/pod-create.json | tee "$out/compare.txt"

echo "== side by side again, pxguard with server.workers: 1 (as nginx's worker_processes 1)"
one=$(mktemp -d /tmp/pxguard-one-loop.XXXXXX)
printf 'server: {workers: 1}\n' > "$one/config.yaml"
printf '#!/bin/sh\nexec "%s" "$@" --config "%s"\n' "$PWD/$bin" "$one/config.yaml" > "$one/pxguard"
chmod +x "$one/pxguard"
bash "$harness" "$one/pxguard" bench/reviews/pod-create.json | sed 's/^pxguard /pxguard-1 /; s/median req\/s pxguard /median req\/s pxguard-1 /' | tee "$out/compare-one-loop.txt"
rm -rf "$one"

echo "== like for like at two workers: nginx worker_processes 2 against pxguard's defaults (2 loops here)"
# The shared harness with only nginx's worker count changed; its other lines are untouched.
two=$(mktemp -d /tmp/pxguard-two-workers.XXXXXX)
harness_dir=$(cd "$(dirname "$harness")" && pwd)
sed "s/^worker_processes 1;/worker_processes 2;/; s#^here=.*#here=$harness_dir#" "$harness" > "$two/compare.sh"
bash "$two/compare.sh" "$bin" bench/reviews/pod-create.json | sed 's/^limit-nginx /nginx-2w /; s/median req\/s limit-nginx /median req\/s nginx-2w /; s#pxguard/limit-nginx#pxguard/nginx-2w#' | tee "$out/compare-two-workers.txt"
rm -rf "$two"

echo "== CPU time per request (steadier than req/s on a shared machine)"
bash bench/cpu-compare.sh "$bin" bench/reviews/pod-create.json | tee "$out/cpu.txt"

echo "== instructions per request under callgrind (independent of machine load)"
bash bench/instructions.sh "$bin" bench/reviews/pod-create.json | tee "$out/instructions.txt"

python3 bench/chart.py "$out/compare.png" "defaults vs nginx 1 worker=$out/compare.txt" \
  "1 loop vs nginx 1 worker=$out/compare-one-loop.txt" "defaults vs nginx 2 workers=$out/compare-two-workers.txt" \
  && echo "chart: $out/compare.png"

echo "== ratios, each within one harness run (medians of its rounds)"
python3 bench/ratios.py "$out/compare.txt" "$out/compare-one-loop.txt" "$out/compare-two-workers.txt" | tee "$out/ratios.txt"
