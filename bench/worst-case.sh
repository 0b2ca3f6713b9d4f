#!/usr/bin/env bash
# Worst-case reviews (issue: linear-time decisions): a 40,000-except NetworkPolicy
# (about 1 MB) and a 3 MiB review of each kind the rules read, from bench/worst-case.py.
# For each: in-process decide time (median and p99 over ITERATIONS, default 30) and
# allocations per review (bench/micro with the malloc counter), user-space
# instructions per review (callgrind, the difference between two run lengths, so
# start-up cancels out), and the peak RSS of `pxguard review` on it (the whole
# process: binary, body, parse and decision), 8 MiB guard-policy UPDATE included.
# Targets: the 40,000-except review <= 20 ms, no review of <= 3 MiB over 50 ms, repair
# mode (PXGUARD_MICRO_MUTATE: R4 repair, the /mutate answer) included.
# Usage: worst-case.sh PXGUARD_BINARY MICRO_BINARY MALLOC_COUNT_SO OUT_DIR
set -euo pipefail
bin=$(realpath "$1") micro=$(realpath "$2") counter=$(realpath "$3") out=$4
dir="$out/worst"
mkdir -p "$dir"
python3 "$(dirname "$0")/worst-case.py" "$dir" > "$out/worst-sizes.txt"

echo "-- decide time and allocations (in process, ${ITERATIONS:-30} iterations each)"
LD_PRELOAD="$counter" PXGUARD_MICRO_ITERATIONS=${ITERATIONS:-30} "$micro" "$dir"/*.json | tee "$out/worst-time.txt"

# R4 in repair mode: each NetworkPolicy answered as /mutate answers it (`review
# --mutate`), the repair patch written. Target: <= 50 ms like every other review.
echo "-- repair mode: /mutate time and allocations (in process, ${ITERATIONS:-30} iterations each)"
LD_PRELOAD="$counter" PXGUARD_MICRO_MUTATE=1 PXGUARD_MICRO_ITERATIONS=${ITERATIONS:-30} "$micro" "$dir"/netpol-*.json \
  | tee "$out/worst-repair-time.txt"

if command -v valgrind >/dev/null && [ -z "${SKIP_CALLGRIND:-}" ]; then
  echo "-- user-space instructions per review (callgrind; 4 reviews' difference)"
  for f in "$dir"/*.json; do
    total() {
      PXGUARD_MICRO_ITERATIONS=$1 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$micro" "$f" 2>&1 >/dev/null \
        | awk '/Collected/ {print $4}'
    }
    # Each run decides N + N (warm-up) + 1 times: 2 and 4 iterations differ by 4 reviews.
    a=$(total 2) b=$(total 4)
    printf '%-34s %12d instructions per review\n' "$(basename "$f")" $(( (b - a) / 4 ))
  done | tee "$out/worst-instructions.txt"
fi

echo "-- peak RSS of one \`pxguard review\` (max resident set, whole process)"
for f in "$dir"/*.json; do
  kb=$( { /usr/bin/time -f '%M' "$bin" review "$f" >/dev/null; } 2>&1 | tail -1 )
  printf '%-34s %9d bytes  peak RSS %6.1f MB\n' "$(basename "$f")" "$(stat -c %s "$f")" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')"
done | tee "$out/worst-rss.txt"
